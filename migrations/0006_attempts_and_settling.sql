-- One definition of each rule of the dialing path (campaign/sql/schema.sql is the live
-- definition of everything; this file only moves the database there):
-- 1. start_dial_attempts: the one place an attempt starts (contacts `sending`, attempt counted,
--    the previous call's outcome cleared, the dial_requests row written). The claim and the
--    write-ahead of a batch claimed ahead of its slot both call it; the write-ahead was a query
--    of the worker's that restated the rule.
-- 2. claim_batch: the claim, answering one row (the contacts as arrays) instead of a row per
--    contact. claim_dial_request stays, as a wrapper, for workers of the previous release
--    during a rolling upgrade; claim_dial_batch (two releases back) goes.
-- 3. Settling a request (its reply, its failure, or giving it back unsent) happens once: each
--    settling function first locks the request's row and does nothing if it is settled already,
--    so a late or repeated settle can never overwrite what was recorded.

CREATE FUNCTION start_dial_attempts(
    p_campaign_id   bigint,
    p_worker_id     text,
    p_contact_ids   bigint[],
    p_destinations  text[],
    p_lease_s       double precision
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_request bigint := nextval(pg_get_serial_sequence('dial_requests', 'id'));
BEGIN
    UPDATE contacts c
    SET status = 'sending', attempts = c.attempts + 1, dial_request_id = v_request,
        worker_id = p_worker_id, lease_expires_at = now() + make_interval(secs => p_lease_s),
        updated_at = now(),
        -- A new attempt: the previous call's outcome stays in call_events and dial_attempts.
        request_uuid = NULL, api_id = NULL, call_uuid = NULL, call_status = NULL,
        hangup_cause = NULL, hangup_cause_code = NULL, duration_s = NULL, bill_duration_s = NULL,
        answered_at = NULL, ended_at = NULL, machine = NULL
    WHERE c.id = ANY (p_contact_ids);
    INSERT INTO dial_requests (id, campaign_id, worker_id, destinations, sent_at)
    VALUES (v_request, p_campaign_id, p_worker_id, p_destinations, now());
    RETURN v_request;
END;
$$;

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
    p_write_ahead_within_s   double precision
) RETURNS TABLE (contact_ids bigint[], destinations text[], send_at double precision,
                 db_now double precision, dial_request_id bigint)
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
    -- Before the limiters' locks, so that other workers never wait on this recovery.
    PERFORM recover_expired_leases();
    SELECT * INTO v_plan
    FROM plan_dial_slots(v_names, v_rates, v_calls, p_wanted, p_pace_window_s, false);

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
           v_request;
END;
$$;

-- The previous release's claim (a row per contact), for its workers during a rolling upgrade.
CREATE OR REPLACE FUNCTION claim_dial_request(
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
LANGUAGE sql AS $$
    SELECT u.contact_id, u.destination, b.send_at, b.db_now, b.dial_request_id
    FROM claim_batch(p_campaign_id, p_worker_id, p_wanted, p_lease_s, p_pace_window_s,
                     p_call_limiters, p_call_rates, p_request_limiters, p_request_rates,
                     p_write_ahead_within_s) AS b
    CROSS JOIN LATERAL unnest(b.contact_ids, b.destinations) AS u(contact_id, destination)
$$;

DROP FUNCTION claim_dial_batch(bigint, text, integer, double precision, double precision,
                               text[], double precision[], text[], double precision[]);

CREATE FUNCTION write_ahead_dial_request(
    p_campaign_id  bigint,
    p_worker_id    text,
    p_contact_ids  bigint[],
    p_lease_s      double precision
) RETURNS TABLE (dial_request_id bigint, contact_ids bigint[], destinations text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_ids     bigint[];
    v_dests   text[];
    v_request bigint;
BEGIN
    SELECT coalesce(array_agg(held.id ORDER BY held.id), '{}'),
           coalesce(array_agg(held.destination ORDER BY held.id), '{}')
    INTO v_ids, v_dests
    FROM (
        SELECT c.id, c.destination
        FROM contacts c
        WHERE c.id = ANY (p_contact_ids)
          AND c.status = 'claimed'
          AND c.worker_id = p_worker_id
          AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running')
        FOR UPDATE OF c
    ) held;
    IF cardinality(v_ids) > 0 THEN
        v_request := start_dial_attempts(p_campaign_id, p_worker_id, v_ids, v_dests, p_lease_s);
    END IF;
    RETURN QUERY SELECT v_request, v_ids, v_dests;
END;
$$;

CREATE FUNCTION lock_unsettled_dial_request(p_request_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM dial_requests d WHERE d.id = p_request_id AND d.outcome IS NULL FOR UPDATE;
    RETURN FOUND;
END;
$$;

CREATE FUNCTION record_dial_reply(
    p_request_id     bigint,
    p_contact_ids    bigint[],
    p_statuses       text[],
    p_request_uuids  text[],
    p_errors         text[],
    p_api_id         text,
    p_message        text,
    p_http_status    integer,
    p_latency_ms     integer,
    p_outcome        text,
    p_reply_uuids    text[],
    p_uuids_mapped   boolean,
    p_sends          integer
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_by_contact jsonb;
    v_recorded   integer;
BEGIN
    IF NOT lock_unsettled_dial_request(p_request_id) THEN
        RETURN NULL;
    END IF;
    -- The per-contact values travel as one jsonb map keyed by contact id: joining contacts to an
    -- unnest() lets the planner pick a nested loop over both (it expects one `sending` row),
    -- which costs a thousand times more on a batch of 1000.
    SELECT jsonb_object_agg(r.contact_id::text, jsonb_build_array(r.status, r.request_uuid, r.error))
    INTO v_by_contact
    FROM unnest(p_contact_ids, p_statuses, p_request_uuids, p_errors)
         AS r(contact_id, status, request_uuid, error);
    UPDATE contacts c
    SET status = v_by_contact -> c.id::text ->> 0,
        request_uuid = v_by_contact -> c.id::text ->> 1,
        api_id = p_api_id, plivo_message = p_message, http_status = p_http_status,
        last_error = v_by_contact -> c.id::text ->> 2,
        worker_id = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE c.id = ANY (p_contact_ids) AND c.dial_request_id = p_request_id
      AND c.status IN ('sending', 'unknown');
    GET DIAGNOSTICS v_recorded = ROW_COUNT;
    UPDATE dial_requests
    SET replied_at = now(), latency_ms = p_latency_ms, outcome = p_outcome,
        http_status = p_http_status, api_id = p_api_id, plivo_message = p_message,
        request_uuids = p_reply_uuids, uuids_mapped = p_uuids_mapped, attempts = p_sends
    WHERE id = p_request_id;
    RETURN v_recorded;
END;
$$;

CREATE FUNCTION record_dial_failure(
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

CREATE FUNCTION unsend_dial_request(
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
