-- Four changes, each explained where it is made:
-- 1. claim_dial_request: one write per contact less on the worker's hot path. A batch whose
--    rate-limit slot has already come when it is claimed is written ahead by the claim itself
--    (its dial_requests row, and its contacts `sending` with the attempt counted) instead of
--    being marked `claimed` and then `sending` by a second statement. A batch that must wait
--    for its slot is claimed as before. claim_dial_batch (0002) stays for workers of the
--    previous release during a rolling upgrade, now as claim_dial_request that never writes
--    ahead, so that one implementation of the claim is left.
-- 2. dial_requests.counted: whether a request counts as an attempt of its contacts.
-- 3. record_call_event: a NULL-safe request_uuid check, callbacks that settle an `unknown`
--    contact, and batch-mates found by key.
-- 4. dial_attempts: only the requests that count as attempts.

-- Claim up to p_wanted due contacts of a running campaign within every rate limit, as
-- claim_dial_batch does. When the grant's slot is at most p_write_ahead_within_s away (on the
-- database's clock), the contacts are written ahead in the same statement: a new dial_requests
-- row (its id is returned as dial_request_id; destinations in contact id order, the order the
-- request is sent in), and the contacts become `sending`, attempt counted, the previous call's
-- outcome cleared (it stays in call_events and dial_attempts), exactly as the `write_ahead`
-- query does. Otherwise they become `claimed` and dial_request_id is NULL.
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
DECLARE
    v_names    text[] := coalesce(p_call_limiters, '{}') || coalesce(p_request_limiters, '{}');
    v_rates    double precision[] := coalesce(p_call_rates, '{}') || coalesce(p_request_rates, '{}');
    v_calls    integer := coalesce(array_length(p_call_limiters, 1), 0);
    v_plan     record;
    v_ahead    boolean;
    v_request  bigint;
    v_ids      bigint[];
    v_dests    text[];
BEGIN
    -- Before the limiters' locks, so that other workers never wait on this recovery.
    PERFORM recover_expired_leases();
    SELECT * INTO v_plan
    FROM plan_dial_slots(v_names, v_rates, v_calls, p_wanted, p_pace_window_s, false);
    v_ahead := v_plan.slot_at - v_plan.db_now <= p_write_ahead_within_s;
    IF v_ahead THEN
        v_request := nextval(pg_get_serial_sequence('dial_requests', 'id'));
    END IF;

    WITH due AS (
        SELECT t.id
        FROM contacts t
        WHERE t.campaign_id = p_campaign_id
          AND t.status = 'pending'
          AND t.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running')
        ORDER BY t.next_attempt_at, t.id
        LIMIT v_plan.granted
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE contacts c
        SET status = CASE WHEN v_ahead THEN 'sending' ELSE 'claimed' END,
            worker_id = p_worker_id,
            lease_expires_at = now() + make_interval(
                secs => p_lease_s + greatest(v_plan.slot_at - v_plan.db_now, 0)),
            updated_at = now(),
            -- Written ahead: a new attempt, in request v_request (NULL and unchanged otherwise).
            attempts = c.attempts + CASE WHEN v_ahead THEN 1 ELSE 0 END,
            dial_request_id = CASE WHEN v_ahead THEN v_request ELSE c.dial_request_id END,
            request_uuid = CASE WHEN v_ahead THEN NULL ELSE c.request_uuid END,
            api_id = CASE WHEN v_ahead THEN NULL ELSE c.api_id END,
            call_uuid = CASE WHEN v_ahead THEN NULL ELSE c.call_uuid END,
            call_status = CASE WHEN v_ahead THEN NULL ELSE c.call_status END,
            hangup_cause = CASE WHEN v_ahead THEN NULL ELSE c.hangup_cause END,
            hangup_cause_code = CASE WHEN v_ahead THEN NULL ELSE c.hangup_cause_code END,
            duration_s = CASE WHEN v_ahead THEN NULL ELSE c.duration_s END,
            bill_duration_s = CASE WHEN v_ahead THEN NULL ELSE c.bill_duration_s END,
            answered_at = CASE WHEN v_ahead THEN NULL ELSE c.answered_at END,
            ended_at = CASE WHEN v_ahead THEN NULL ELSE c.ended_at END,
            machine = CASE WHEN v_ahead THEN NULL ELSE c.machine END
        FROM due
        WHERE c.id = due.id
        RETURNING c.id, c.destination
    )
    SELECT array_agg(claimed.id ORDER BY claimed.id), array_agg(claimed.destination ORDER BY claimed.id)
    INTO v_ids, v_dests
    FROM claimed;

    IF coalesce(array_length(v_ids, 1), 0) > 0 THEN
        PERFORM charge_dial_slots(v_names, v_rates, v_calls, v_plan.slot_at, array_length(v_ids, 1));
        IF v_ahead THEN
            INSERT INTO dial_requests (id, campaign_id, worker_id, destinations, sent_at)
            VALUES (v_request, p_campaign_id, p_worker_id, v_dests, now());
        END IF;
    END IF;

    -- The clock as the function ends, so that the worker's estimate of "now" is not behind.
    RETURN QUERY
    SELECT u.id, u.destination, v_plan.slot_at, extract(epoch FROM clock_timestamp())::double precision,
           CASE WHEN v_ahead THEN v_request END
    FROM unnest(v_ids, v_dests) AS u(id, destination);
END;
$$;

-- The previous release's claim, for its workers during a rolling upgrade: the same claim,
-- never written ahead (their next statement is write_ahead).
CREATE OR REPLACE FUNCTION claim_dial_batch(
    p_campaign_id        bigint,
    p_worker_id          text,
    p_wanted             integer,
    p_lease_s            double precision,
    p_pace_window_s      double precision,
    p_call_limiters      text[],
    p_call_rates         double precision[],
    p_request_limiters   text[],
    p_request_rates      double precision[]
) RETURNS TABLE (contact_id bigint, destination text, send_at double precision, db_now double precision)
LANGUAGE sql AS $$
    SELECT r.contact_id, r.destination, r.send_at, r.db_now
    FROM claim_dial_request(p_campaign_id, p_worker_id, p_wanted, p_lease_s, p_pace_window_s,
                            p_call_limiters, p_call_rates, p_request_limiters, p_request_rates,
                            '-Infinity') AS r
$$;

-- Whether the request counts as an attempt of its contacts (as contacts.attempts counts them).
-- false: written ahead but never sent (it missed its rate-limit second, or its worker stopped
-- first), refused for the account (401/403/404), or given up between retries because its
-- campaign stopped running or its worker was stopping. Such a request placed no call.
ALTER TABLE dial_requests ADD COLUMN counted boolean NOT NULL DEFAULT true;
UPDATE dial_requests SET counted = false
WHERE outcome = 'account_problem' OR (outcome = 'not_sent' AND attempts = 0);

-- Callbacks: the request_uuid check was not NULL-safe. A contact whose request_uuid is not known
-- yet (being sent, or of a batch whose uuids could not be mapped) took any callback for its
-- destination, so a callback that came before its request's reply was recorded at once (and a
-- redial it asked for was lost) instead of being answered 'retry', and a callback carrying a
-- uuid of no request of the contact was recorded instead of ignored. A callback for an `unknown`
-- contact now settles it on purpose. And a uuid's batch-mates are found through the
-- (campaign, destination) key, not by reading the whole table.
CREATE OR REPLACE FUNCTION record_call_event(
    p_campaign_id  bigint,
    p_event        text,
    p_destination  text,
    p_request_uuid text,
    p_call_uuid    text,
    p_call_status  text,
    p_payload      jsonb,
    p_dedupe_key   text,
    p_hangup_cause text,
    p_cause_code   integer,
    p_duration_s   integer,
    p_bill_s       integer,
    p_answered_at  timestamptz,
    p_ended_at     timestamptz,
    p_machine      boolean
) RETURNS TABLE (result text, contact_id bigint, next_attempt_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_contact  contacts%ROWTYPE;
    v_campaign campaigns%ROWTYPE;
    v_uuids    text[];
    v_dests    text[];
    v_delay_s  integer;
    v_redial   boolean := false;
BEGIN
    SELECT * INTO v_contact FROM contacts c
    WHERE c.campaign_id = p_campaign_id AND c.destination = p_destination
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT d.request_uuids, d.destinations INTO v_uuids, v_dests
    FROM dial_requests d WHERE d.id = v_contact.dial_request_id;
    -- The callback belongs to the contact's latest request: its own uuid, or one of its batch's
    -- (an unsettled batch, or a positional mapping the callback corrects).
    -- (NULL-safe: a contact being sent, or of an unsettled batch, has no request_uuid yet.)
    IF p_request_uuid IS NULL OR NOT (
        coalesce(p_request_uuid = v_contact.request_uuid, false)
        OR coalesce(p_request_uuid = ANY (v_uuids), false)
        -- An `unknown` contact's request got no reply, so its uuids were never learned: a
        -- signed callback of its campaign to its destination is Plivo saying the call exists.
        -- It settles the contact (fired, with the callback's uuid) instead of waiting for
        -- `campaign reconcile`.
        OR (v_contact.status = 'unknown' AND v_uuids IS NULL AND v_contact.request_uuid IS NULL)
    ) THEN
        IF v_contact.status = 'sending' THEN
            -- Plivo called back before its reply to the request was recorded: ask it to retry.
            RETURN QUERY SELECT 'retry'::text, v_contact.id, NULL::timestamptz;
            RETURN;
        END IF;
        RETURN QUERY SELECT 'unknown'::text, v_contact.id, NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO call_events (event, campaign_id, contact_id, dial_request_id, request_uuid,
                             call_uuid, call_status, payload, dedupe_key)
    VALUES (p_event, p_campaign_id, v_contact.id, v_contact.dial_request_id, p_request_uuid,
            p_call_uuid, p_call_status, p_payload, p_dedupe_key)
    ON CONFLICT (dedupe_key) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, v_contact.id, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO v_campaign FROM campaigns k WHERE k.id = p_campaign_id;
    IF v_contact.status = 'unknown' THEN
        UPDATE contacts c
        SET status = 'fired', request_uuid = p_request_uuid, worker_id = NULL,
            lease_expires_at = NULL, updated_at = now(),
            last_error = 'fate was unknown; a ' || p_event || ' callback from Plivo showed the call'
        WHERE c.id = v_contact.id;
        v_contact.status := 'fired';
        v_contact.request_uuid := p_request_uuid;
    END IF;
    -- The uuid is this contact's: a batch-mate that a positional mapping gave it to loses it
    -- (and is settled by its own callback).
    IF p_request_uuid IS DISTINCT FROM v_contact.request_uuid THEN
        -- Found among the request's destinations, through the (campaign, destination) key.
        UPDATE contacts c SET request_uuid = NULL, updated_at = now()
        WHERE c.campaign_id = p_campaign_id AND c.destination = ANY (v_dests)
          AND c.dial_request_id = v_contact.dial_request_id AND c.request_uuid = p_request_uuid
          AND c.id <> v_contact.id;
    END IF;

    IF p_event = 'hangup' THEN
        v_redial := p_call_status = ANY (v_campaign.redial_on)
                    AND v_contact.attempts < v_campaign.max_attempts
                    AND v_contact.status IN ('fired', 'queued')
                    AND v_campaign.status IN ('running', 'paused', 'completed');
        IF v_redial THEN
            -- Delay before attempt n+1 is the n-th of redial_delays_s (the last repeats).
            v_delay_s := coalesce(
                v_campaign.redial_delays_s[least(v_contact.attempts,
                                                 cardinality(v_campaign.redial_delays_s))], 0);
        END IF;
        UPDATE contacts c
        SET request_uuid = p_request_uuid,
            call_uuid = coalesce(p_call_uuid, c.call_uuid),
            call_status = p_call_status,
            hangup_cause = p_hangup_cause,
            hangup_cause_code = p_cause_code,
            duration_s = p_duration_s,
            bill_duration_s = p_bill_s,
            answered_at = p_answered_at,
            ended_at = p_ended_at,
            machine = coalesce(p_machine, c.machine),
            status = CASE WHEN v_redial THEN 'pending' ELSE c.status END,
            next_attempt_at = CASE WHEN v_redial THEN now() + make_interval(secs => v_delay_s)
                                   ELSE c.next_attempt_at END,
            updated_at = now()
        WHERE c.id = v_contact.id;
        IF v_redial AND v_campaign.status = 'completed' THEN
            UPDATE campaigns SET status = 'running', updated_at = now()
            WHERE id = p_campaign_id AND status = 'completed';
        END IF;
        IF v_redial THEN
            -- No NOTIFY: it serialises committing transactions, and a redial waits at least
            -- until the workers' next poll anyway.
            RETURN QUERY SELECT 'redial'::text, v_contact.id, now() + make_interval(secs => v_delay_s);
            RETURN;
        END IF;
    ELSIF p_event = 'ring' THEN
        -- A ring after the hangup (callbacks can arrive out of order) changes nothing settled.
        UPDATE contacts c
        SET request_uuid = p_request_uuid,
            call_uuid = coalesce(p_call_uuid, c.call_uuid),
            call_status = CASE WHEN c.call_status IS NULL OR c.call_status = 'ringing'
                               THEN 'ringing' ELSE c.call_status END,
            updated_at = now()
        WHERE c.id = v_contact.id;
    ELSE
        UPDATE contacts c
        SET request_uuid = p_request_uuid,
            call_uuid = coalesce(p_call_uuid, c.call_uuid),
            machine = coalesce(p_machine, c.machine),
            updated_at = now()
        WHERE c.id = v_contact.id;
    END IF;
    RETURN QUERY SELECT 'recorded'::text, v_contact.id, NULL::timestamptz;
END;
$$;

-- dial_attempts: one row per attempt, as contacts.attempts counts them (dial_requests.counted).
CREATE OR REPLACE VIEW dial_attempts AS
SELECT
    c.id                                                          AS contact_id,
    d.campaign_id,
    u.destination,
    row_number() OVER (PARTITION BY c.id ORDER BY d.sent_at, d.id) AS attempt,
    d.id                                                          AS dial_request_id,
    d.sent_at,
    d.replied_at,
    d.outcome                                                     AS request_outcome,
    d.http_status,
    d.error,
    coalesce(h.request_uuid,
             CASE WHEN c.dial_request_id = d.id THEN c.request_uuid END) AS request_uuid,
    h.call_uuid,
    h.call_status,
    h.payload ->> 'HangupCause'                                   AS hangup_cause,
    nullif(h.payload ->> 'Duration', '')::integer                 AS duration_s,
    h.received_at                                                 AS hangup_received_at
FROM dial_requests d
CROSS JOIN LATERAL unnest(d.destinations) AS u(destination)
JOIN contacts c ON c.campaign_id = d.campaign_id AND c.destination = u.destination
LEFT JOIN LATERAL (
    SELECT e.request_uuid, e.call_uuid, e.call_status, e.payload, e.received_at
    FROM call_events e
    WHERE e.contact_id = c.id AND e.dial_request_id = d.id AND e.event = 'hangup'
    ORDER BY e.id DESC
    LIMIT 1
) h ON true
WHERE d.counted;
