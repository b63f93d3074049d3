-- The claim looks up only the suppressions added since a contact's load (campaign/sql/schema.sql
-- holds the live definitions, with their comments): with 10M suppressed numbers, one look-up
-- per contact in a cold index cost the claim a third more.

ALTER TABLE suppressions ADD COLUMN added_version bigint NOT NULL DEFAULT 0;
CREATE INDEX suppressions_added ON suppressions (added_version);

CREATE TABLE suppression_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);
INSERT INTO suppression_version VALUES (true, 0);

CREATE FUNCTION next_suppression_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
BEGIN
    UPDATE suppression_version SET version = version + 1 RETURNING version INTO v_version;
    PERFORM set_config('campaign.suppression_version', v_version::text, true);
    RETURN NULL;
END;
$$;


CREATE FUNCTION stamp_suppression() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.added_version := current_setting('campaign.suppression_version')::bigint;
    RETURN NEW;
END;
$$;


CREATE TRIGGER suppressions_versioned
    BEFORE INSERT OR UPDATE ON suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION next_suppression_version();
CREATE TRIGGER suppressions_stamped
    BEFORE INSERT OR UPDATE ON suppressions
    FOR EACH ROW EXECUTE FUNCTION stamp_suppression();

-- Contacts loaded before this migration have none: the claim looks their numbers up.
ALTER TABLE contacts ADD COLUMN suppressions_version bigint;

CREATE OR REPLACE FUNCTION claim_batch(
    p_campaign_id            bigint,
    p_worker_id              text,
    p_wanted                 integer,
    p_lease_s                double precision,
    p_pace_window_s          double precision,
    p_call_limiters          text[],
    p_call_rates             double precision[],
    p_request_limiters       text[],
    p_request_rates          double precision[],
    p_own_limiters           text[],
    p_shared_slack_s         double precision,
    p_write_ahead_within_s   double precision,
    p_max_calls_per_number   integer
) RETURNS TABLE (contact_ids bigint[], destinations text[], send_at double precision,
                 db_now double precision, dial_request_id bigint, retry_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_names      text[] := coalesce(p_call_limiters, '{}') || coalesce(p_request_limiters, '{}');
    v_rates      double precision[] := coalesce(p_call_rates, '{}') || coalesce(p_request_rates, '{}');
    v_calls      integer := coalesce(array_length(p_call_limiters, 1), 0);
    v_campaign   campaigns%ROWTYPE;
    v_plan       record;
    v_at         timestamptz;
    v_rules      boolean;
    v_open       text[];
    v_set        text[];
    v_ids        bigint[] := '{}';
    v_dests      text[] := '{}';
    v_more_ids   bigint[];
    v_more_dests text[];
    v_kept_ids   bigint[];
    v_kept_dests text[];
    v_lease_s    double precision;
    v_request    bigint;
    v_seen       bigint;
    v_unseen     boolean;
    v_added      integer;
BEGIN
    SELECT * INTO v_campaign FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running';
    IF NOT FOUND THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], NULL::double precision,
                            extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
                            NULL::double precision;
        RETURN;
    END IF;
    SELECT * INTO v_plan
    FROM plan_dial_slots(v_names, v_rates, v_calls, p_wanted, p_pace_window_s, false,
                         p_own_limiters);
    IF v_plan.slot_at - v_plan.shared_at > p_shared_slack_s THEN
        -- The campaign's own cap has no slot until after the shared limiters' next one: a grant
        -- now would hold the account's calls and requests, every campaign's, idle until then.
        -- Nothing is claimed or charged; the worker comes back at retry_at.
        RETURN QUERY
        SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at,
               extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
               v_plan.slot_at;
        RETURN;
    END IF;

    -- The calls are placed at the slot: the schedule and the calling hours are read for then.
    v_at := to_timestamp(v_plan.slot_at);
    IF v_campaign.end_at <= v_at THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, NULL::double precision;
        RETURN;
    END IF;
    IF v_campaign.start_at > v_at THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, extract(epoch FROM v_campaign.start_at)::double precision;
        RETURN;
    END IF;
    v_rules := campaign_has_local_rules(v_campaign);
    IF v_rules THEN
        v_open := open_time_zones(
            ARRAY(SELECT DISTINCT u.zone
                  FROM campaign_time_zones z CROSS JOIN LATERAL unnest(z.time_zones) AS u(zone)
                  WHERE z.campaign_id = p_campaign_id),
            v_campaign.calling_hours, v_campaign.calling_days, v_campaign.skip_dates, v_at);
    END IF;

    -- Due contacts, one open set of zones at a time (the one due first, first): the index
    -- (campaign_id, time_zones, next_attempt_at, id) is read only for open sets.
    FOR v_set IN
        SELECT z.time_zones
        FROM campaign_time_zones z
        WHERE z.campaign_id = p_campaign_id
          AND (NOT v_rules OR (cardinality(z.time_zones) > 0 AND z.time_zones <@ v_open))
        ORDER BY (SELECT t.next_attempt_at FROM contacts t
                  WHERE t.campaign_id = p_campaign_id AND t.time_zones = z.time_zones
                    AND t.status = 'pending'
                  ORDER BY t.next_attempt_at, t.id LIMIT 1) NULLS LAST
    LOOP
        SELECT coalesce(array_agg(due.id ORDER BY due.next_attempt_at, due.id), '{}'),
               coalesce(array_agg(due.destination ORDER BY due.next_attempt_at, due.id), '{}')
        INTO v_more_ids, v_more_dests
        FROM (
            SELECT t.id, t.destination, t.next_attempt_at
            FROM contacts t
            WHERE t.campaign_id = p_campaign_id AND t.time_zones = v_set
              AND t.status = 'pending' AND t.next_attempt_at <= now()
            ORDER BY t.next_attempt_at, t.id
            LIMIT v_plan.granted - cardinality(v_ids)
            FOR UPDATE OF t SKIP LOCKED
        ) due;
        v_ids := v_ids || v_more_ids;
        v_dests := v_dests || v_more_dests;
        EXIT WHEN cardinality(v_ids) >= v_plan.granted;
    END LOOP;

    IF cardinality(v_ids) = 0 THEN
        -- Nothing open: with contacts due in closed sets, windows open on whole minutes (hours
        -- are HH:MM, zones' offsets whole minutes), so the worker comes back at the next one.
        RETURN QUERY
        SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now, NULL::bigint,
               CASE WHEN v_rules AND EXISTS (
                        SELECT 1 FROM contacts t
                        WHERE t.campaign_id = p_campaign_id AND t.status = 'pending'
                          AND t.next_attempt_at <= now())
                    THEN (floor(v_plan.db_now / 60) + 1) * 60 END;
        RETURN;
    END IF;

    -- Numbers suppressed since the load are settled, never dialled. The load looked each number
    -- up and noted the lists' version it saw: only rows added since can suppress one now. A few
    -- such rows are read whole; with many, or a contact whose load noted none, each number is
    -- looked up.
    SELECT min(c.suppressions_version), bool_or(c.suppressions_version IS NULL)
    INTO v_seen, v_unseen
    FROM contacts c WHERE c.id = ANY (v_ids);
    SELECT count(*) INTO v_added
    FROM (SELECT 1 FROM suppressions x WHERE x.added_version > v_seen LIMIT 1000) a;
    IF v_unseen OR v_added >= 1000 THEN
        UPDATE contacts c
        SET status = 'suppressed', last_error = 'suppressed: on list ' || s.list,
            updated_at = now()
        FROM (
            SELECT DISTINCT ON (u.id) u.id, x.list
            FROM unnest(v_ids, v_dests) AS u(id, destination)
            JOIN suppressions x ON x.list = ANY (v_campaign.suppression_lists)
                               AND x.destination = u.destination
            ORDER BY u.id, x.list
        ) s
        WHERE c.id = s.id;
    ELSIF v_added > 0 THEN
        UPDATE contacts c
        SET status = 'suppressed', last_error = 'suppressed: on list ' || s.list,
            updated_at = now()
        FROM (
            SELECT DISTINCT ON (u.id) u.id, x.list
            FROM unnest(v_ids, v_dests) AS u(id, destination)
            -- OFFSET 0: the rows added since are read once (by their version), not per number.
            JOIN (SELECT r.list, r.destination FROM suppressions r
                  WHERE r.added_version > v_seen
                    AND r.list = ANY (v_campaign.suppression_lists)
                  OFFSET 0) x ON x.destination = u.destination
            ORDER BY u.id, x.list
        ) s
        WHERE c.id = s.id;
    END IF;
    -- Numbers at a cap of calls per day wait until the call that keeps them there is 24 h old.
    IF p_max_calls_per_number IS NOT NULL OR v_campaign.max_calls_per_number_per_day IS NOT NULL
    THEN
        -- One claim at a time per number (in number order, so claims never deadlock): another
        -- campaign's claim of the same number waits for this one to commit, then counts its
        -- contact as in flight.
        PERFORM pg_advisory_xact_lock(hashtextextended('number:' || u.destination, 0))
        FROM (SELECT DISTINCT d.destination FROM unnest(v_dests) AS d(destination)
              ORDER BY d.destination) u;
        UPDATE contacts c
        SET next_attempt_at = w.until, updated_at = now(),
            last_error = 'waiting: the number had its calls per day'
        FROM (
            SELECT u.id, number_call_wait(u.destination, p_campaign_id, p_max_calls_per_number,
                                          v_campaign.max_calls_per_number_per_day) AS until
            FROM unnest(v_ids, v_dests) AS u(id, destination)
        ) w
        WHERE c.id = w.id AND w.until IS NOT NULL AND c.status = 'pending';
    END IF;
    SELECT coalesce(array_agg(c.id ORDER BY u.ord), '{}'),
           coalesce(array_agg(c.destination ORDER BY u.ord), '{}')
    INTO v_kept_ids, v_kept_dests
    FROM unnest(v_ids) WITH ORDINALITY AS u(id, ord)
    JOIN contacts c ON c.id = u.id
    WHERE c.status = 'pending' AND c.next_attempt_at <= now();
    IF cardinality(v_kept_ids) = 0 THEN
        -- All of them suppressed or capped: others may be due, so claim again at once.
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, v_plan.db_now;
        RETURN;
    END IF;
    -- In contact id order, the order the request is sent in.
    SELECT array_agg(k.id ORDER BY k.id), array_agg(k.destination ORDER BY k.id)
    INTO v_ids, v_dests
    FROM unnest(v_kept_ids, v_kept_dests) AS k(id, destination);

    PERFORM charge_dial_slots(v_names, v_rates, v_calls, v_plan.slot_at, cardinality(v_ids));
    -- The lease runs from the slot, not from now.
    v_lease_s := p_lease_s + greatest(v_plan.slot_at - v_plan.db_now, 0);
    IF v_plan.slot_at - v_plan.db_now <= p_write_ahead_within_s THEN
        -- The slot has come: written ahead now, one write per contact less.
        v_request := start_dial_attempts(p_campaign_id, p_worker_id, v_ids, v_dests, v_lease_s);
    ELSE
        UPDATE contacts c
        SET status = 'claimed', worker_id = p_worker_id,
            lease_expires_at = now() + make_interval(secs => v_lease_s), updated_at = now()
        WHERE c.id = ANY (v_ids);
    END IF;

    -- The clock as the function ends, so that the worker's estimate of "now" is not behind.
    RETURN QUERY
    SELECT v_ids, v_dests, v_plan.slot_at, extract(epoch FROM clock_timestamp())::double precision,
           v_request, NULL::double precision;
END;
$$;

