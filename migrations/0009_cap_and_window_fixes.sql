-- Fixes to calling hours, suppression and caps (campaign/sql/schema.sql holds the live
-- definitions, with their comments):
-- * the caps of calls per number count the calls claimed, being sent or of unknown fate, and a
--   claim holds an advisory lock per number, so two campaigns cannot both call a number at its
--   cap; a queued call cancelled as its window closed no longer counts;
-- * a retried request is fenced by its callees' windows and the suppression lists, like a claim;
-- * a zone the database does not know, or no zone in a campaign with local rules, fails the
--   insert of the contact instead of every later claim and status;
-- * queued calls are cancelled ten seconds before their window closes, not after.

CREATE INDEX contacts_in_flight_destination ON contacts (destination)
    WHERE status IN ('claimed', 'sending', 'unknown');

CREATE OR REPLACE FUNCTION number_call_wait(
    p_destination  text,
    p_campaign_id  bigint,
    p_all_cap      integer,
    p_own_cap      integer
) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    -- When p_destination may be called again under both caps (all campaigns', p_all_cap, and
    -- the campaign's own, p_own_cap); NULL when it may be now. The calls placed in the last 24 h
    -- count, and so do the calls claimed or being sent (of any campaign) and those whose fate is
    -- unknown: a number at its cap with its calls placed waits until the call that keeps it
    -- there is 24 h old; one at its cap only with calls in flight is looked at again in a minute
    -- (they may be given back unsent). The claim holds an advisory lock per number meanwhile.
    WITH recent AS (
        SELECT n.placed_at, n.campaign_id = p_campaign_id AS own
        FROM number_calls n
        WHERE n.destination = p_destination AND n.placed_at > now() - interval '1 day'
    ), in_flight AS (
        SELECT t.campaign_id = p_campaign_id AS own
        FROM contacts t
        WHERE t.destination = p_destination AND t.status IN ('claimed', 'sending', 'unknown')
          AND t.updated_at > now() - interval '1 day'
    ), counts AS (
        SELECT (SELECT count(*) FROM recent) AS placed,
               (SELECT count(*) FROM recent WHERE own) AS own_placed,
               (SELECT count(*) FROM in_flight) AS flying,
               (SELECT count(*) FROM in_flight WHERE own) AS own_flying
    )
    SELECT greatest(
        CASE WHEN p_all_cap IS NULL THEN NULL
             -- With c calls and a cap of N, the (c - N + 1)-th oldest must age out.
             WHEN c.placed >= p_all_cap THEN
                 (SELECT r.placed_at FROM recent r ORDER BY r.placed_at
                  OFFSET c.placed - p_all_cap LIMIT 1) + interval '1 day'
             WHEN c.placed + c.flying >= p_all_cap THEN now() + interval '1 minute'
        END,
        CASE WHEN p_own_cap IS NULL THEN NULL
             WHEN c.own_placed >= p_own_cap THEN
                 (SELECT r.placed_at FROM recent r WHERE r.own ORDER BY r.placed_at
                  OFFSET c.own_placed - p_own_cap LIMIT 1) + interval '1 day'
             WHEN c.own_placed + c.own_flying >= p_own_cap THEN now() + interval '1 minute'
        END
    )
    FROM counts c
$$;

CREATE OR REPLACE FUNCTION note_campaign_time_zones() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Every zone must be one the database knows: AT TIME ZONE raises for another, here, rather
    -- than in every later claim and status of the campaign.
    PERFORM now() AT TIME ZONE z.zone
    FROM (SELECT DISTINCT u.zone
          FROM new_contacts n CROSS JOIN LATERAL unnest(n.time_zones) AS u(zone)) z;
    -- A contact without zones is never dialled by a campaign with rules in local time.
    IF EXISTS (
        SELECT 1 FROM new_contacts n JOIN campaigns k ON k.id = n.campaign_id
        WHERE n.status = 'pending' AND cardinality(n.time_zones) = 0
          AND campaign_has_local_rules(k)
    ) THEN
        RAISE EXCEPTION 'contacts.time_zones is empty for a contact of a campaign with calling '
                        'hours, days or skipped dates: give each contact its time zones'
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO campaign_time_zones (campaign_id, time_zones)
    SELECT DISTINCT n.campaign_id, n.time_zones FROM new_contacts n
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION note_contact_time_zones() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Every zone must be one the database knows (see note_campaign_time_zones).
    PERFORM now() AT TIME ZONE u.zone FROM unnest(NEW.time_zones) AS u(zone);
    INSERT INTO campaign_time_zones (campaign_id, time_zones)
    VALUES (NEW.campaign_id, NEW.time_zones)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION fence_dial_request(
    p_request_id   bigint,
    p_worker_id    text,
    p_contact_ids  bigint[],
    p_lease_s      double precision
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_status   text;
    v_extended integer;
BEGIN
    SELECT k.status INTO v_status
    FROM dial_requests d JOIN campaigns k ON k.id = d.campaign_id
    WHERE d.id = p_request_id AND d.outcome IS NULL;
    IF NOT FOUND THEN
        RETURN 'the request was settled meanwhile';
    END IF;
    IF v_status <> 'running' THEN
        RETURN 'the campaign is ' || v_status;
    END IF;
    -- A retry places its calls now, not at the claim's slot: every callee's window must still
    -- be open (the campaign within its schedule), and no number suppressed since.
    IF EXISTS (
        SELECT 1
        FROM (SELECT DISTINCT c.campaign_id, c.time_zones FROM contacts c
              WHERE c.id = ANY (p_contact_ids)) z
        JOIN campaigns k ON k.id = z.campaign_id
        WHERE NOT zone_set_open(k, z.time_zones, now())
    ) THEN
        RETURN 'a callee''s calling window closed meanwhile';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM contacts c
        JOIN campaigns k ON k.id = c.campaign_id
        JOIN suppressions x ON x.list = ANY (k.suppression_lists) AND x.destination = c.destination
        WHERE c.id = ANY (p_contact_ids)
    ) THEN
        RETURN 'a number was put on a suppression list meanwhile';
    END IF;
    UPDATE contacts c
    SET lease_expires_at = now() + make_interval(secs => p_lease_s), updated_at = now()
    WHERE c.id = ANY (p_contact_ids) AND c.dial_request_id = p_request_id
      AND c.status = 'sending' AND c.worker_id = p_worker_id;
    GET DIAGNOSTICS v_extended = ROW_COUNT;
    IF v_extended < cardinality(p_contact_ids) THEN
        RETURN format('%s of its %s contacts are no longer being sent by this worker (their lease'
                      ' ran out)', cardinality(p_contact_ids) - v_extended,
                      cardinality(p_contact_ids));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION requeue_cancelled_calls(p_contact_ids bigint[]) RETURNS integer
LANGUAGE sql AS $$
    -- Queued calls cancelled at Plivo as their window closed: the contact waits for its next
    -- window, its attempt not counted, nor its call in the caps of calls per number.
    WITH requeued AS (
        UPDATE contacts c
        SET status = CASE WHEN k.status = 'cancelled' THEN 'cancelled' ELSE 'pending' END,
            attempts = greatest(c.attempts - 1, 0), request_uuid = NULL,
            last_error = 'cancelled while queued at Plivo: its calling window closed',
            updated_at = now()
        FROM campaigns k
        WHERE c.id = ANY (p_contact_ids) AND c.status = 'queued' AND k.id = c.campaign_id
        RETURNING c.campaign_id, c.destination
    ), uncounted AS (
        DELETE FROM number_calls n
        USING requeued r
        WHERE n.ctid = (SELECT m.ctid FROM number_calls m
                        WHERE m.destination = r.destination AND m.campaign_id = r.campaign_id
                        ORDER BY m.placed_at DESC LIMIT 1)
    )
    SELECT count(*)::integer FROM requeued
$$;

CREATE OR REPLACE FUNCTION queued_outside_window(p_campaign_ids bigint[])
RETURNS TABLE (contact_id bigint, campaign_id bigint, destination text, request_uuid text)
LANGUAGE sql STABLE AS $$
    -- Calls Plivo may still hold queued (not ringing yet) whose callee's window has closed or
    -- closes within ten seconds: each with the request_uuids that may be its own (a batch whose uuids could not be mapped
    -- gives every one of its batch's).
    SELECT c.id, c.campaign_id, c.destination, coalesce(c.request_uuid, u.request_uuid)
    FROM campaigns k
    JOIN contacts c ON c.campaign_id = k.id AND c.status = 'queued'
    LEFT JOIN dial_requests d ON d.id = c.dial_request_id AND c.request_uuid IS NULL
    LEFT JOIN LATERAL unnest(d.request_uuids) AS u(request_uuid) ON true
    WHERE k.status IN ('running', 'paused', 'cancelled', 'completed')
      AND (p_campaign_ids IS NULL OR k.id = ANY (p_campaign_ids))
      AND (campaign_has_local_rules(k) OR k.end_at IS NOT NULL OR k.start_at IS NOT NULL)
      -- A ring callback means it is no longer queued.
      AND c.call_status IS NULL
      AND coalesce(c.request_uuid, u.request_uuid) IS NOT NULL
      -- Ten seconds ahead: a sweep comes every poll interval and cancels are paced, so a call
      -- is cancelled before its window closes, not after.
      AND NOT zone_set_open(k, c.time_zones, now() + interval '10 seconds')
$$;

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

    -- Numbers suppressed since the load are settled, never dialled.
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
