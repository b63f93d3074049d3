-- Reliability (campaign/sql/schema.sql holds the live definitions, with their comments):
-- 1. Fair share: a campaign's own cap only ever delays that campaign. plan_dial_slots also says
--    when the shared limiters alone would grant (shared_at); claim_batch claims nothing when the
--    campaign's own limiters push the grant past that (it would hold the account's slots until
--    then) and says when to come back (retry_at). Expired leases are no longer recovered by the
--    claim: every worker sweeps them on a timer (the previous release's claim still does).
-- 2. Retries: reserve_retry_slots takes a refused request's new slots by the fair-share rule
--    of the claim (reserve_dial_slots stays for the previous release's workers, as it was);
--    fence_dial_request, before the request is sent again, extends its lease and checks its
--    campaign and contacts in one statement.
-- 3. Settling a failure, giving a request back, and a callback's redial lock the campaign's row
--    before reading its status, so that none of them can leave a contact pending in a campaign
--    a concurrent cancel has just cancelled.
-- 4. Reconcile takes a call record for an unknown contact only if no other attempt owns its
--    call uuid: call_events are found by call uuid.

CREATE FUNCTION earliest_dial_slot(
    p_from      double precision,
    p_rates     double precision[],
    p_calls     integer,
    p_next      double precision[],
    p_window    bigint[],
    p_used      integer[],
    p_counted   boolean[],
    p_wanted    integer,
    p_whole     boolean
) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_at      double precision := p_from;
    v_calls   boolean := false;
    v_in_use  integer;
    v_cap     integer;
    v_moved   boolean;
    i         integer;
    v_round   integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_rates, 1), 0) LOOP
        IF p_counted[i] THEN
            v_at := greatest(v_at, p_next[i]);
            v_calls := v_calls OR i <= p_calls;
        END IF;
    END LOOP;
    -- A call limiter whose clock second has no room pushes the grant to the next second; so
    -- does a start in the last 50 ms of a second, too late to be sure of arriving in it (the
    -- worker refuses to send a batch within 20 ms of its second's end).
    FOR v_round IN 1 .. 3 LOOP
        v_moved := false;
        IF v_calls AND v_at - floor(v_at) > 0.95 THEN
            v_at := floor(v_at) + 1;
            v_moved := true;
        END IF;
        FOR i IN 1 .. p_calls LOOP
            CONTINUE WHEN NOT p_counted[i];
            v_cap := ceil(p_rates[i] - 1e-9)::integer;
            v_in_use := CASE WHEN p_window[i] = floor(v_at) THEN p_used[i] ELSE 0 END;
            IF v_in_use >= v_cap
               OR (p_whole AND v_in_use > 0 AND v_in_use + least(p_wanted, v_cap) > v_cap) THEN
                v_at := floor(v_at) + 1;
                v_moved := true;
            END IF;
        END LOOP;
        EXIT WHEN NOT v_moved;
    END LOOP;
    RETURN v_at;
END;
$$;

DROP FUNCTION plan_dial_slots(text[], double precision[], integer, integer, double precision,
                              boolean);

CREATE FUNCTION plan_dial_slots(
    p_names          text[],
    p_rates          double precision[],
    p_calls          integer,
    p_wanted         integer,
    p_pace_window_s  double precision,
    p_whole          boolean,
    p_own            text[]
) RETURNS TABLE (slot_at double precision, granted integer, db_now double precision,
                 shared_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_count   integer := coalesce(array_length(p_names, 1), 0);
    v_next    double precision[];
    v_window  bigint[];
    v_used    integer[];
    v_now     double precision;
    v_at      double precision;
    v_shared  double precision;
    v_all     boolean[];
    v_mask    boolean[];
    v_granted integer := least(p_wanted, 1000);
    v_in_use  integer;
    v_cap     integer;
    i         integer;
BEGIN
    IF v_count > 0 THEN
        INSERT INTO rate_limiters (name) SELECT unnest(p_names) ON CONFLICT (name) DO NOTHING;
        -- Locked in name order, so that workers never deadlock on each other.
        PERFORM 1 FROM rate_limiters WHERE name = ANY (p_names) ORDER BY name FOR UPDATE;
    END IF;
    -- The clock is read once the locks are held: waiting for them must not make us late.
    v_now := extract(epoch FROM clock_timestamp());
    IF v_count = 0 THEN
        RETURN QUERY SELECT v_now, v_granted, v_now, v_now;
        RETURN;
    END IF;
    SELECT array_agg(r.next_slot_at ORDER BY u.ord), array_agg(r.window_second ORDER BY u.ord),
           array_agg(r.window_used ORDER BY u.ord), array_agg(true ORDER BY u.ord),
           array_agg(NOT (u.name = ANY (coalesce(p_own, '{}'))) ORDER BY u.ord)
    INTO v_next, v_window, v_used, v_all, v_mask
    FROM unnest(p_names) WITH ORDINALITY AS u(name, ord)
    JOIN rate_limiters r ON r.name = u.name;
    v_at := earliest_dial_slot(v_now, p_rates, p_calls, v_next, v_window, v_used, v_all,
                               v_granted, p_whole);
    IF true = ANY (v_mask) THEN
        v_shared := earliest_dial_slot(v_now, p_rates, p_calls, v_next, v_window, v_used, v_mask,
                                       v_granted, p_whole);
    ELSE
        v_shared := v_at;  -- nothing is shared, so nothing of anyone else's can be held idle
    END IF;
    FOR i IN 1 .. p_calls LOOP
        v_cap := ceil(p_rates[i] - 1e-9)::integer;
        v_in_use := CASE WHEN v_window[i] = floor(v_at) THEN v_used[i] ELSE 0 END;
        v_granted := least(v_granted, greatest(v_cap - v_in_use, 1));
        IF NOT p_whole THEN
            v_granted := least(v_granted, greatest(floor(p_rates[i] * p_pace_window_s)::integer, 1));
        END IF;
    END LOOP;
    RETURN QUERY SELECT v_at, v_granted, v_now, v_shared;
END;
$$;

CREATE FUNCTION reserve_retry_slots(
    p_call_limiters      text[],
    p_call_rates         double precision[],
    p_request_limiters   text[],
    p_request_rates      double precision[],
    p_own_limiters       text[],
    p_shared_slack_s     double precision,
    p_calls              integer
) RETURNS TABLE (send_at double precision, db_now double precision, retry_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_names  text[] := coalesce(p_call_limiters, '{}') || coalesce(p_request_limiters, '{}');
    v_rates  double precision[] := coalesce(p_call_rates, '{}') || coalesce(p_request_rates, '{}');
    v_calls  integer := coalesce(array_length(p_call_limiters, 1), 0);
    v_plan   record;
BEGIN
    SELECT * INTO v_plan
    FROM plan_dial_slots(v_names, v_rates, v_calls, p_calls, 1e9, true, p_own_limiters);
    IF v_plan.slot_at - v_plan.shared_at > p_shared_slack_s THEN
        -- As in claim_batch: nothing is charged; come back at retry_at.
        RETURN QUERY SELECT v_plan.slot_at, extract(epoch FROM clock_timestamp())::double precision,
                            v_plan.slot_at;
        RETURN;
    END IF;
    PERFORM charge_dial_slots(v_names, v_rates, v_calls, v_plan.slot_at, p_calls);
    RETURN QUERY SELECT v_plan.slot_at, extract(epoch FROM clock_timestamp())::double precision,
                        NULL::double precision;
END;
$$;

CREATE OR REPLACE FUNCTION reserve_dial_slots(
    p_call_limiters      text[],
    p_call_rates         double precision[],
    p_request_limiters   text[],
    p_request_rates      double precision[],
    p_calls              integer
) RETURNS TABLE (send_at double precision, db_now double precision)
LANGUAGE sql AS $$
    SELECT r.send_at, r.db_now
    FROM reserve_retry_slots(p_call_limiters, p_call_rates, p_request_limiters, p_request_rates,
                             '{}', 'Infinity', p_calls) AS r
$$;

DROP FUNCTION claim_dial_request(bigint, text, integer, double precision, double precision,
                                 text[], double precision[], text[], double precision[],
                                 double precision);
DROP FUNCTION claim_batch(bigint, text, integer, double precision, double precision, text[],
                          double precision[], text[], double precision[], double precision);

CREATE FUNCTION claim_batch(
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
    p_write_ahead_within_s   double precision
) RETURNS TABLE (contact_ids bigint[], destinations text[], send_at double precision,
                 db_now double precision, dial_request_id bigint, retry_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_names    text[] := coalesce(p_call_limiters, '{}') || coalesce(p_request_limiters, '{}');
    v_rates    double precision[] := coalesce(p_call_rates, '{}') || coalesce(p_request_rates, '{}');
    v_calls    integer := coalesce(array_length(p_call_limiters, 1), 0);
    v_plan     record;
    v_ids      bigint[];
    v_dests    text[];
    v_lease_s  double precision;
    v_request  bigint;
BEGIN
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

    SELECT coalesce(array_agg(due.id ORDER BY due.id), '{}'),
           coalesce(array_agg(due.destination ORDER BY due.id), '{}')
    INTO v_ids, v_dests
    FROM (
        SELECT t.id, t.destination
        FROM contacts t
        WHERE t.campaign_id = p_campaign_id
          AND t.status = 'pending'
          AND t.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running')
        ORDER BY t.next_attempt_at, t.id
        LIMIT v_plan.granted
        FOR UPDATE OF t SKIP LOCKED
    ) due;

    IF cardinality(v_ids) > 0 THEN
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
    END IF;

    -- The clock as the function ends, so that the worker's estimate of "now" is not behind.
    RETURN QUERY
    SELECT v_ids, v_dests, v_plan.slot_at, extract(epoch FROM clock_timestamp())::double precision,
           v_request, NULL::double precision;
END;
$$;

CREATE FUNCTION claim_dial_request(
    p_campaign_id            bigint,
    p_worker_id              text,
    p_wanted                 integer,
    p_lease_s                double precision,
    p_pace_window_s          double precision,
    p_call_limiters          text[],
    p_call_rates             double precision[],
    p_request_limiters       text[],
    p_request_rates          double precision[],
    p_write_ahead_within_s   double precision
) RETURNS TABLE (contact_id bigint, destination text, send_at double precision,
                 db_now double precision, dial_request_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- The previous release's workers sweep no leases of their own: their claim still does.
    PERFORM recover_expired_leases();
    RETURN QUERY
    SELECT u.contact_id, u.destination, b.send_at, b.db_now, b.dial_request_id
    FROM claim_batch(p_campaign_id, p_worker_id, p_wanted, p_lease_s, p_pace_window_s,
                     p_call_limiters, p_call_rates, p_request_limiters, p_request_rates,
                     -- Their campaign limiters are named campaign:<id>:calls.
                     ARRAY(SELECT n FROM unnest(p_call_limiters) AS n WHERE n LIKE 'campaign:%'),
                     0.02, p_write_ahead_within_s) AS b
    CROSS JOIN LATERAL unnest(b.contact_ids, b.destinations) AS u(contact_id, destination);
END;
$$;

CREATE FUNCTION fence_dial_request(
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

CREATE OR REPLACE FUNCTION record_dial_failure(
    p_request_id     bigint,
    p_contact_ids    bigint[],
    p_outcome        text,
    p_http_status    integer,
    p_error          text,
    p_backoff_s      double precision,
    p_backoff_max_s  double precision,
    p_latency_ms     integer,
    p_sends          integer
) RETURNS TABLE (recorded integer, paused boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_recorded integer;
    v_paused   boolean := false;
BEGIN
    IF NOT lock_unsettled_dial_request(p_request_id) THEN
        RETURN QUERY SELECT NULL::integer, false;
        RETURN;
    END IF;
    -- Read the campaign's status under its lock: a cancel committing meanwhile is waited for
    -- (and then seen), and one that comes after waits for us and cancels what we make pending.
    PERFORM 1 FROM campaigns k JOIN dial_requests d ON d.campaign_id = k.id
    WHERE d.id = p_request_id FOR SHARE OF k;
    UPDATE contacts c
    SET status = CASE
            WHEN p_outcome = 'not_sent' AND c.attempts >= k.max_attempts THEN 'failed'
            -- Cancelled while in flight: what was not placed will never be.
            WHEN p_outcome IN ('not_sent', 'account_problem') AND k.status = 'cancelled'
            THEN 'cancelled'
            WHEN p_outcome IN ('not_sent', 'account_problem') THEN 'pending'
            WHEN p_outcome = 'rejected' THEN 'failed'
            ELSE 'unknown'
        END,
        attempts = CASE WHEN p_outcome = 'account_problem' THEN greatest(c.attempts - 1, 0)
                        ELSE c.attempts END,
        next_attempt_at = CASE
            WHEN p_outcome = 'not_sent'
            THEN now() + make_interval(
                secs => least(p_backoff_s * power(2, greatest(c.attempts - 1, 0)), p_backoff_max_s))
            ELSE c.next_attempt_at END,
        http_status = p_http_status, last_error = p_error, worker_id = NULL,
        lease_expires_at = NULL, updated_at = now()
    FROM campaigns k
    WHERE c.dial_request_id = p_request_id AND c.id = ANY (p_contact_ids)
      AND k.id = c.campaign_id AND c.status IN ('sending', 'unknown');
    GET DIAGNOSTICS v_recorded = ROW_COUNT;
    IF p_outcome = 'account_problem' THEN
        UPDATE campaigns k
        SET status = 'paused', status_reason = p_error, updated_at = now()
        FROM dial_requests d
        WHERE d.id = p_request_id AND k.id = d.campaign_id AND k.status = 'running';
        v_paused := FOUND;
    END IF;
    UPDATE dial_requests
    SET replied_at = now(), latency_ms = p_latency_ms, outcome = p_outcome,
        http_status = p_http_status, error = p_error, attempts = p_sends,
        counted = p_outcome <> 'account_problem'
    WHERE id = p_request_id;
    RETURN QUERY SELECT v_recorded, v_paused;
END;
$$;

CREATE OR REPLACE FUNCTION unsend_dial_request(
    p_request_id   bigint,
    p_contact_ids  bigint[],
    p_error        text,
    p_sends        integer,
    p_latency_ms   integer
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_released integer;
BEGIN
    IF NOT lock_unsettled_dial_request(p_request_id) THEN
        RETURN NULL;
    END IF;
    -- As in record_dial_failure: the campaign's status is read under its lock.
    PERFORM 1 FROM campaigns k JOIN dial_requests d ON d.campaign_id = k.id
    WHERE d.id = p_request_id FOR SHARE OF k;
    UPDATE contacts c
    SET status = CASE WHEN k.status = 'cancelled' THEN 'cancelled' ELSE 'pending' END,
        attempts = greatest(c.attempts - 1, 0), worker_id = NULL, lease_expires_at = NULL,
        updated_at = now()
    FROM campaigns k
    WHERE c.dial_request_id = p_request_id AND c.id = ANY (p_contact_ids) AND c.status = 'sending'
      AND k.id = c.campaign_id;
    GET DIAGNOSTICS v_released = ROW_COUNT;
    -- Contacts no longer `sending` (a lease that ran out made them unknown) keep their state,
    -- and then the request counts as an attempt.
    UPDATE dial_requests
    SET replied_at = now(), outcome = 'not_sent', error = p_error, attempts = p_sends,
        latency_ms = p_latency_ms, counted = v_released = 0
    WHERE id = p_request_id;
    RETURN v_released;
END;
$$;

CREATE OR REPLACE FUNCTION record_call_events(
    p_campaign_ids  bigint[],
    p_events        text[],
    p_destinations  text[],
    p_request_uuids text[],
    p_call_uuids    text[],
    p_call_statuses text[],
    p_payloads      jsonb[],
    p_dedupe_keys   text[],
    p_hangup_causes text[],
    p_cause_codes   integer[],
    p_durations_s   integer[],
    p_bills_s       integer[],
    p_answered_at   timestamptz[],
    p_ended_at      timestamptz[],
    p_machines      boolean[]
) RETURNS TABLE (callback_index integer, callback_result text)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    -- The campaigns first, in id order (a cancel locks its campaign before its contacts too):
    -- a redial decided below reads a status no cancel can change until this commits, and a
    -- cancel that came first is waited for and seen.
    PERFORM 1 FROM campaigns k WHERE k.id = ANY (p_campaign_ids) ORDER BY k.id FOR SHARE;
    FOR i IN 1 .. coalesce(array_length(p_events, 1), 0) LOOP
        callback_index := i;
        SELECT r.result INTO callback_result
        FROM record_call_event(
            p_campaign_ids[i], p_events[i], p_destinations[i], p_request_uuids[i], p_call_uuids[i],
            p_call_statuses[i], p_payloads[i], p_dedupe_keys[i], p_hangup_causes[i],
            p_cause_codes[i], p_durations_s[i], p_bills_s[i], p_answered_at[i], p_ended_at[i],
            p_machines[i]
        ) AS r;
        RETURN NEXT;
    END LOOP;
END;
$$;

CREATE INDEX call_events_call_uuid ON call_events (call_uuid);
