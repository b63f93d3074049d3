-- Issue 11: a load's inserts into contacts_due at the cost of an integer (campaign/sql/schema.sql
-- holds the live definition).
--
-- contacts_due was keyed by (campaign_id, time_zones, next_attempt_at, id): every insert
-- compares arrays of text down the btree (each compared array detoasted and walked element by
-- element in the database's collation), 3.7 s of PostgreSQL's time in a COPY of a million
-- contacts (a third of it). Keyed by the set's hash instead (hash_array(time_zones), an
-- integer), the index costs 1.4 s. Every query that reads one set of zones through the index
-- (the claim, campaign_has_work_now, campaign_progress, `campaign status`, the dashboard) now
-- says `hash_array(t.time_zones) = hash_array(<set>) AND t.time_zones = <set>`: the first
-- finds the set in the index, the second filters out the rows of another set of the campaign
-- with the same hash (a 32-bit hash: rare, and then only read, never taken).
--
-- The index is built inside this migration's transaction (not CONCURRENTLY): about 1 s per
-- million pending contacts on a 2-core machine, during which contacts cannot be written.

DROP INDEX contacts_due;
CREATE INDEX contacts_due ON contacts (campaign_id, hash_array(time_zones), next_attempt_at, id)
    WHERE status = 'pending';

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
    p_max_calls_per_number   integer,
    p_account_max_concurrent integer
) RETURNS TABLE (contact_ids bigint[], destinations text[], send_at double precision,
                 db_now double precision, dial_request_id bigint, retry_at double precision,
                 caller_id text, waiting_for text)
LANGUAGE plpgsql AS $$
DECLARE
    v_call_names text[] := coalesce(p_call_limiters, '{}');
    v_call_rates double precision[] := coalesce(p_call_rates, '{}');
    v_own        text[] := coalesce(p_own_limiters, '{}');
    v_names      text[];
    v_rates      double precision[];
    v_calls      integer;
    v_campaign   campaigns%ROWTYPE;
    v_plan       record;
    v_granted    integer;
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
    v_pooled     boolean;
    v_head_group text;
    v_caller_id  text;
    v_groups     text[];
    v_caller_slot double precision;
    v_local      boolean := false;
    v_counting   boolean;
    v_live       record;
    v_room       integer;
    v_account_room integer;
    v_until      timestamptz;
    v_wanted_from timestamptz;
BEGIN
    SELECT * INTO v_campaign FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running';
    IF NOT FOUND THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], NULL::double precision,
                            extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
                            NULL::double precision, NULL::text, NULL::text;
        RETURN;
    END IF;

    -- A running campaign of higher priority wants the account's calls now: it gets them all;
    -- from a later moment on (its own cap's next slot): this one may take slots before then.
    SELECT min(d.wants_from), min(d.wants_until) INTO v_wanted_from, v_until
    FROM dial_demand d JOIN campaigns k ON k.id = d.campaign_id
    WHERE d.wants_until > now() AND k.status = 'running' AND k.priority > v_campaign.priority;
    IF v_wanted_from <= now() THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], NULL::double precision,
                            extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
                            extract(epoch FROM v_until)::double precision, NULL::text,
                            'priority'::text;
        RETURN;
    END IF;

    -- The caller ID: a pool's, chosen for the contact due first when local presence groups
    -- them (only the contacts it may call are claimed with it), else "from".
    v_pooled := EXISTS (SELECT 1 FROM campaign_caller_ids p WHERE p.campaign_id = p_campaign_id);
    IF v_pooled THEN
        v_local := v_campaign.caller_id_mode = 'local';
        IF v_local THEN
            -- The contact due first of the open sets of zones (one index probe per set).
            SELECT h.caller_id_group INTO v_head_group
            FROM campaign_time_zones z
            CROSS JOIN LATERAL (
                SELECT t.caller_id_group, t.next_attempt_at, t.id
                FROM contacts t
                WHERE t.campaign_id = p_campaign_id
                  AND hash_array(t.time_zones) = hash_array(z.time_zones)
                  AND t.time_zones = z.time_zones
                  AND t.status = 'pending' AND t.next_attempt_at <= now()
                ORDER BY t.next_attempt_at, t.id
                LIMIT 1
            ) h
            WHERE z.campaign_id = p_campaign_id AND zone_set_open(v_campaign, z.time_zones, now())
            ORDER BY h.next_attempt_at, h.id
            LIMIT 1;
        END IF;
        SELECT c.caller_id, c.groups, c.next_slot_at INTO v_caller_id, v_groups, v_caller_slot
        FROM choose_caller_id(v_campaign, v_head_group, false) c;
        IF v_caller_id IS NULL AND v_head_group IS NOT NULL THEN
            -- Every number for the first contact's area had its calls of the day: another free
            -- number calls the contacts it may call (only a number that has some due).
            SELECT c.caller_id, c.groups, c.next_slot_at
            INTO v_caller_id, v_groups, v_caller_slot
            FROM choose_caller_id(v_campaign, NULL, true) c;
        END IF;
        IF v_caller_id IS NULL THEN
            -- Every caller ID had its calls of the day: until the oldest hour counted drops out.
            PERFORM note_dial_demand(v_campaign, NULL);
            RETURN QUERY
            SELECT '{}'::bigint[], '{}'::text[], NULL::double precision,
                   extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
                   extract(epoch FROM date_trunc('hour', now(), 'UTC') + interval '1 hour')
                       ::double precision,
                   NULL::text, 'caller_id'::text;
            RETURN;
        END IF;
        IF v_campaign.max_calls_per_caller_id_per_day IS NOT NULL THEN
            -- One claim at a time per caller ID with a cap (taken before any limiter's lock,
            -- as by every claim).
            PERFORM pg_advisory_xact_lock(hashtextextended('caller_id:' || v_caller_id, 0));
        END IF;
        IF v_campaign.calls_per_second_per_caller_id IS NOT NULL THEN
            v_call_names := v_call_names || ('caller_id:' || v_caller_id || ':calls');
            v_call_rates := v_call_rates || v_campaign.calls_per_second_per_caller_id;
            v_own := v_own || ('caller_id:' || v_caller_id || ':calls');
        END IF;
    ELSE
        v_caller_id := v_campaign."from";
    END IF;
    v_names := v_call_names || coalesce(p_request_limiters, '{}');
    v_rates := v_call_rates || coalesce(p_request_rates, '{}');
    v_calls := coalesce(array_length(v_call_names, 1), 0);

    SELECT * INTO v_plan
    FROM plan_dial_slots(v_names, v_rates, v_calls, p_wanted, p_pace_window_s, false, v_own);
    v_granted := v_plan.granted;
    IF v_plan.slot_at - v_plan.shared_at > p_shared_slack_s THEN
        -- The campaign's own cap has no slot until after the shared limiters' next one: a grant
        -- now would hold the account's calls and requests, every campaign's, idle until then.
        -- Nothing is claimed or charged; the worker comes back at retry_at, when the campaign
        -- wants the account's calls again (those of lower priority may take them until then).
        IF v_pooled AND v_campaign.calls_per_second_per_caller_id IS NOT NULL
           AND (SELECT r.next_slot_at FROM rate_limiters r
                WHERE r.name = 'caller_id:' || v_caller_id || ':calls') > v_caller_slot THEN
            -- Another claim took the caller ID's slot after it was chosen (its limiter moved
            -- since): claim again at once, another number of the pool may be free.
            RETURN QUERY
            SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at,
                   extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
                   v_plan.db_now, NULL::text, NULL::text;
            RETURN;
        END IF;
        PERFORM note_dial_demand(v_campaign, to_timestamp(v_plan.slot_at));
        RETURN QUERY
        SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at,
               extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
               v_plan.slot_at, NULL::text, NULL::text;
        RETURN;
    END IF;

    IF to_timestamp(v_plan.slot_at) >= v_wanted_from THEN
        -- From this moment a campaign of higher priority wants the account's calls: they are
        -- its. A grant that starts before may delay it by a pace window at most, which its own
        -- cap does not lose (charge_dial_slots). Come back once it has taken them.
        RETURN QUERY
        SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at,
               extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
               extract(epoch FROM v_wanted_from)::double precision, NULL::text, 'priority'::text;
        RETURN;
    END IF;

    -- The calls are placed at the slot: the schedule and the calling hours are read for then.
    v_at := to_timestamp(v_plan.slot_at);
    IF v_campaign.end_at <= v_at THEN
        PERFORM note_dial_demand(v_campaign, NULL);
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, NULL::double precision, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF v_campaign.start_at > v_at THEN
        PERFORM note_dial_demand(v_campaign, NULL);
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, extract(epoch FROM v_campaign.start_at)::double precision,
                            NULL::text, NULL::text;
        RETURN;
    END IF;

    -- Caps of concurrent calls: one claim at a time counts and adds to them (the account's
    -- lock first), so that no two claims both see the last free call.
    v_counting := p_account_max_concurrent IS NOT NULL
                  OR v_campaign.max_concurrent_calls IS NOT NULL;
    IF v_counting THEN
        IF p_account_max_concurrent IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('calls:account', 0));
        END IF;
        IF v_campaign.max_concurrent_calls IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('calls:campaign:' || p_campaign_id, 0));
        END IF;
        SELECT * INTO v_live
        FROM live_call_counts(p_campaign_id, p_account_max_concurrent IS NOT NULL, true);
        v_account_room := p_account_max_concurrent - v_live.account_calls;
        v_room := least(v_account_room, v_campaign.max_concurrent_calls - v_live.campaign_calls);
        IF v_room <= 0 THEN
            -- Full: the worker waits for a hangup (NOTIFY campaign_room), or until the first
            -- call whose hangup is overdue stops counting. Waiting for the account's calls, the
            -- campaign still wants them before any of lower priority.
            PERFORM note_dial_demand(
                v_campaign,
                CASE WHEN v_account_room <= 0 THEN now() END);
            RETURN QUERY
            SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now, NULL::bigint,
                   extract(epoch FROM least(v_live.next_end, now() + interval '1 minute'))
                       ::double precision,
                   NULL::text, 'calls'::text;
            RETURN;
        END IF;
        v_granted := least(v_granted, v_room);
    END IF;
    IF v_pooled AND v_campaign.max_calls_per_caller_id_per_day IS NOT NULL THEN
        v_granted := least(v_granted, v_campaign.max_calls_per_caller_id_per_day
                                      - caller_id_calls_in_a_day(v_caller_id));
        IF v_granted <= 0 THEN
            -- Another claim took its last calls of the day meanwhile: claim again at once.
            RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                                NULL::bigint, v_plan.db_now, NULL::text, NULL::text;
            RETURN;
        END IF;
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
    -- (campaign_id, hash_array(time_zones), next_attempt_at, id) is read only for open sets. With local
    -- presence, only those the caller ID may call.
    FOR v_set IN
        SELECT z.time_zones
        FROM campaign_time_zones z
        WHERE z.campaign_id = p_campaign_id
          AND (NOT v_rules OR (cardinality(z.time_zones) > 0 AND z.time_zones <@ v_open))
        ORDER BY (SELECT t.next_attempt_at FROM contacts t
                  WHERE t.campaign_id = p_campaign_id
                    AND hash_array(t.time_zones) = hash_array(z.time_zones)
                    AND t.time_zones = z.time_zones
                    AND t.status = 'pending'
                  ORDER BY t.next_attempt_at, t.id LIMIT 1) NULLS LAST
    LOOP
        SELECT coalesce(array_agg(due.id ORDER BY due.next_attempt_at, due.id), '{}'),
               coalesce(array_agg(due.destination ORDER BY due.next_attempt_at, due.id), '{}')
        INTO v_more_ids, v_more_dests
        FROM (
            SELECT t.id, t.destination, t.next_attempt_at
            FROM contacts t
            WHERE t.campaign_id = p_campaign_id
              AND hash_array(t.time_zones) = hash_array(v_set)
              AND t.time_zones = v_set
              AND t.status = 'pending' AND t.next_attempt_at <= now()
              AND (NOT v_local OR t.caller_id_group IS NULL
                   OR t.caller_id_group = ANY (v_groups))
            ORDER BY t.next_attempt_at, t.id
            LIMIT v_granted - cardinality(v_ids)
            FOR UPDATE OF t SKIP LOCKED
        ) due;
        v_ids := v_ids || v_more_ids;
        v_dests := v_dests || v_more_dests;
        EXIT WHEN cardinality(v_ids) >= v_granted;
    END LOOP;

    IF cardinality(v_ids) = 0 THEN
        -- Nothing open: with contacts due in closed sets, windows open on whole minutes (hours
        -- are HH:MM, zones' offsets whole minutes), so the worker comes back at the next one.
        PERFORM note_dial_demand(v_campaign, NULL);
        RETURN QUERY
        SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now, NULL::bigint,
               CASE WHEN v_rules AND EXISTS (
                        SELECT 1 FROM contacts t
                        WHERE t.campaign_id = p_campaign_id AND t.status = 'pending'
                          AND t.next_attempt_at <= now())
                    THEN (floor(v_plan.db_now / 60) + 1) * 60 END,
               NULL::text, NULL::text;
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
                            NULL::bigint, v_plan.db_now, NULL::text, NULL::text;
        RETURN;
    END IF;
    -- In contact id order, the order the request is sent in.
    SELECT array_agg(k.id ORDER BY k.id), array_agg(k.destination ORDER BY k.id)
    INTO v_ids, v_dests
    FROM unnest(v_kept_ids, v_kept_dests) AS k(id, destination);

    PERFORM charge_dial_slots(v_names, v_rates, v_calls, v_plan.slot_at, cardinality(v_ids));
    IF v_counting THEN
        -- They count from now: claimed, being sent, then placed until their hangup.
        INSERT INTO counted_calls (contact_id, campaign_id, attempt)
        SELECT c.id, c.campaign_id, c.attempts + 1 FROM contacts c WHERE c.id = ANY (v_ids)
        ON CONFLICT (contact_id) DO UPDATE SET attempt = EXCLUDED.attempt;
    END IF;
    IF v_pooled THEN
        INSERT INTO caller_id_calls AS x (caller_id, hour, calls)
        VALUES (v_caller_id, date_trunc('hour', now(), 'UTC'), cardinality(v_ids))
        -- By its constraint: caller_id is also this function's output column.
        ON CONFLICT ON CONSTRAINT caller_id_calls_pkey DO UPDATE SET calls = x.calls + EXCLUDED.calls;
    END IF;
    -- It wants the account's calls again from its own caps' next slot (now without one), or,
    -- having filled its own cap of concurrent calls, at its next hangup.
    PERFORM note_dial_demand(
        v_campaign,
        CASE WHEN v_campaign.max_concurrent_calls IS NOT NULL
                  AND v_room - cardinality(v_ids) <= 0
                  AND v_room < coalesce(v_account_room, v_room + 1)
             THEN NULL
             ELSE greatest(now(), (SELECT to_timestamp(max(r.next_slot_at)) FROM rate_limiters r
                                   WHERE r.name = ANY (v_own)))
        END);
    -- The lease runs from the slot, not from now.
    v_lease_s := p_lease_s + greatest(v_plan.slot_at - v_plan.db_now, 0);
    IF v_plan.slot_at - v_plan.db_now <= p_write_ahead_within_s THEN
        -- The slot has come: written ahead now, one write per contact less.
        v_request := start_dial_attempts(p_campaign_id, p_worker_id, v_ids, v_dests, v_lease_s,
                                         v_caller_id);
    ELSE
        UPDATE contacts c
        SET status = 'claimed', worker_id = p_worker_id, caller_id = v_caller_id,
            lease_expires_at = now() + make_interval(secs => v_lease_s), updated_at = now()
        WHERE c.id = ANY (v_ids);
    END IF;

    -- The clock as the function ends, so that the worker's estimate of "now" is not behind.
    RETURN QUERY
    SELECT v_ids, v_dests, v_plan.slot_at, extract(epoch FROM clock_timestamp())::double precision,
           v_request, NULL::double precision, v_caller_id, NULL::text;
END;
$$;

CREATE OR REPLACE FUNCTION campaign_has_work_now(p_campaign_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    -- Whether a pending contact of the campaign can be dialled now (due, its window open) or
    -- will be due later (a back-off, a redial); one due now whose window is closed is not
    -- work for now. Read one set of zones at a time, through the claim's index.
    SELECT EXISTS (
        SELECT 1
        FROM campaigns k
        JOIN campaign_time_zones z ON z.campaign_id = k.id
        WHERE k.id = p_campaign_id
          AND (EXISTS (SELECT 1 FROM contacts t
                       WHERE t.campaign_id = k.id
                         AND hash_array(t.time_zones) = hash_array(z.time_zones)
                         AND t.time_zones = z.time_zones
                         AND t.status = 'pending' AND t.next_attempt_at > now())
               OR (zone_set_open(k, z.time_zones, now())
                   AND EXISTS (SELECT 1 FROM contacts t
                               WHERE t.campaign_id = k.id
                                 AND hash_array(t.time_zones) = hash_array(z.time_zones)
                                 AND t.time_zones = z.time_zones
                                 AND t.status = 'pending' AND t.next_attempt_at <= now())))
    )
$$;

CREATE OR REPLACE VIEW campaign_progress AS
SELECT
    c.id          AS campaign_id,
    c.name        AS campaign,
    c.status      AS status,
    counts.total,
    counts.pending,
    counts.claimed,
    counts.sending,
    counts.fired,
    counts.queued,
    counts.failed,
    counts.unknown,
    counts.cancelled,
    c.created_at  AS created_at,
    counts.answered,
    counts.busy,
    counts.no_answer,
    counts.call_failed,
    counts.timeout,
    counts.answered::double precision
        / nullif(counts.answered + counts.busy + counts.no_answer + counts.call_failed
                 + counts.timeout, 0) AS answer_rate,
    counts.suppressed,
    counts.expired,
    waiting.waiting_for_window,
    -- Keypresses by meaning ({"confirmed": 12, "opt-out": 1}).
    (SELECT coalesce(jsonb_object_agg(m.meaning, m.n), '{}')
     FROM (SELECT r.meaning, count(*) AS n FROM responses r WHERE r.campaign_id = c.id
           GROUP BY r.meaning) m) AS responses
FROM campaigns c
CROSS JOIN LATERAL (
    -- Counted from the contacts grouped by (status, call_status), read from the index
    -- contacts_campaign_status alone: the filters below then add up a few dozen groups
    -- instead of testing every contact (a million contacts: ~80 ms instead of ~330 ms).
    SELECT
        coalesce(sum(g.n), 0)::bigint                                      AS total,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'pending'), 0)::bigint   AS pending,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'claimed'), 0)::bigint   AS claimed,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'sending'), 0)::bigint   AS sending,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'fired'), 0)::bigint     AS fired,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'queued'), 0)::bigint    AS queued,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'failed'), 0)::bigint    AS failed,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'unknown'), 0)::bigint   AS unknown,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'cancelled'), 0)::bigint AS cancelled,
        -- How the calls of settled contacts ended (a contact waiting for a redial is pending).
        coalesce(sum(g.n) FILTER (WHERE g.status IN ('fired', 'queued')
                                    AND g.call_status = 'completed'), 0)::bigint AS answered,
        coalesce(sum(g.n) FILTER (WHERE g.status IN ('fired', 'queued')
                                    AND g.call_status = 'busy'), 0)::bigint AS busy,
        coalesce(sum(g.n) FILTER (WHERE g.status IN ('fired', 'queued')
                                    AND g.call_status = 'no-answer'), 0)::bigint AS no_answer,
        coalesce(sum(g.n) FILTER (WHERE g.status IN ('fired', 'queued')
                                    AND g.call_status = 'failed'), 0)::bigint AS call_failed,
        coalesce(sum(g.n) FILTER (WHERE g.status IN ('fired', 'queued')
                                    AND g.call_status = 'timeout'), 0)::bigint AS timeout,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'suppressed'), 0)::bigint AS suppressed,
        coalesce(sum(g.n) FILTER (WHERE g.status = 'expired'), 0)::bigint    AS expired
    FROM (SELECT t.status, t.call_status, count(*) AS n
          FROM contacts t
          WHERE t.campaign_id = c.id
          GROUP BY t.status, t.call_status) g
) counts
CROSS JOIN LATERAL (
    -- Pending contacts due now whose window is closed, counted per set of zones.
    SELECT coalesce(sum(w.n), 0)::bigint AS waiting_for_window
    FROM campaign_time_zones z
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM contacts t
        WHERE t.campaign_id = z.campaign_id
          AND hash_array(t.time_zones) = hash_array(z.time_zones)
          AND t.time_zones = z.time_zones
          AND t.status = 'pending' AND t.next_attempt_at <= now()
    ) w
    WHERE z.campaign_id = c.id AND NOT zone_set_open(c, z.time_zones, now())
) waiting;
