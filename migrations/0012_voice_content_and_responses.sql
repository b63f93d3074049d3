-- Issue 13: what the call says and what the callee answers: engine-served answer XML, keypress
-- responses, opt-out and answering machines (campaign/sql/schema.sql holds the live
-- definitions, with their comments).

ALTER TABLE campaigns
    -- What the call says, when the engine serves the answer XML (campaign/voice.py): a message
    -- with {column} placeholders spoken in `voice` and `language` (Plivo's names), audio played
    -- before or after it, or a whole Plivo XML template; NULL: not used.
    ADD COLUMN message text,
    ADD COLUMN voice text,
    ADD COLUMN language text,
    ADD COLUMN play_url text,
    ADD COLUMN play_after_url text,
    ADD COLUMN answer_template text,
    -- Keypresses: {"1": "confirmed", "9": "opt-out"}, the prompt, Plivo's <GetDigits> timeout
    -- and retries, and what is said after each key ({"1": "Thank you."}).
    ADD COLUMN gather jsonb,
    ADD COLUMN gather_prompt text,
    ADD COLUMN gather_timeout_s integer CHECK (gather_timeout_s BETWEEN 1 AND 60),
    ADD COLUMN gather_retries integer CHECK (gather_retries BETWEEN 1 AND 10),
    ADD COLUMN after_keypress jsonb,
    -- When an answering machine takes the call: hang up, play the message, or wait for the
    -- beep and leave voicemail_message.
    ADD COLUMN on_machine text CHECK (on_machine IN ('hangup', 'message', 'voicemail')),
    ADD COLUMN voicemail_message text;

-- `machine`: redial the contacts whose call an answering machine took.
ALTER TABLE campaigns DROP CONSTRAINT campaigns_redial_on_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_redial_on_check
    CHECK (redial_on <@ ARRAY['busy', 'no-answer', 'timeout', 'failed', 'machine']);

-- What the engine's answer did for a machine on the latest attempt.
ALTER TABLE contacts ADD COLUMN machine_action text
    CHECK (machine_action IN ('hangup', 'message', 'voicemail'));

-- Start a dial attempt: the contacts (locked by the caller) become `sending` in a new request,
-- written with its destinations in the order given (the order it is sent in) and the caller ID
-- it is sent with; the attempt is counted and the previous call's outcome cleared (it stays in
-- call_events and dial_attempts). The one definition of an attempt's start, for the claim and
-- for the write-ahead.
CREATE OR REPLACE FUNCTION start_dial_attempts(
    p_campaign_id   bigint,
    p_worker_id     text,
    p_contact_ids   bigint[],
    p_destinations  text[],
    p_lease_s       double precision,
    p_caller_id     text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_request bigint := nextval(pg_get_serial_sequence('dial_requests', 'id'));
BEGIN
    UPDATE contacts c
    SET status = 'sending', attempts = c.attempts + 1, dial_request_id = v_request,
        worker_id = p_worker_id, lease_expires_at = now() + make_interval(secs => p_lease_s),
        updated_at = now(), caller_id = p_caller_id,
        -- A new attempt: the previous call's outcome stays in call_events and dial_attempts.
        request_uuid = NULL, api_id = NULL, call_uuid = NULL, call_status = NULL,
        hangup_cause = NULL, hangup_cause_code = NULL, duration_s = NULL, bill_duration_s = NULL,
        answered_at = NULL, ended_at = NULL, machine = NULL, machine_action = NULL
    WHERE c.id = ANY (p_contact_ids);
    INSERT INTO dial_requests (id, campaign_id, worker_id, destinations, sent_at, caller_id)
    VALUES (v_request, p_campaign_id, p_worker_id, p_destinations, now(), p_caller_id);
    RETURN v_request;
END;
$$;

-- The keys callees pressed, one row per attempt (the first press of a call; Plivo's retries of
-- the same request add nothing): the digits and what the campaign's --gather says they mean.
CREATE TABLE responses (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id       bigint NOT NULL,
    attempt          integer NOT NULL,
    dial_request_id  bigint,
    call_uuid        text,
    digits           text NOT NULL,
    -- The --gather meaning of the digits; `invalid` for a key it does not name.
    meaning          text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (contact_id, attempt)
);
CREATE INDEX responses_campaign ON responses (campaign_id, meaning);

-- Record a keypress of a campaign's call to p_destination: one response per attempt (the first
-- wins; a retried callback changes nothing). A meaning `opt-out` puts the number on the list
-- `default` at once (reason p_opt_out_reason), so that no campaign calls it again. Returns
-- 'recorded', 'duplicate' or 'unknown' (no such contact), and the contact.
CREATE FUNCTION record_keypress(
    p_campaign_id      bigint,
    p_destination      text,
    p_call_uuid        text,
    p_digits           text,
    p_meaning          text,
    p_opt_out_reason   text
) RETURNS TABLE (result text, contact_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_contact contacts%ROWTYPE;
BEGIN
    SELECT * INTO v_contact FROM contacts c
    WHERE c.campaign_id = p_campaign_id AND c.destination = p_destination;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::bigint;
        RETURN;
    END IF;
    -- An opt-out counts whenever it comes, also after another key of the same call.
    IF p_meaning = 'opt-out' THEN
        INSERT INTO suppressions (list, destination, reason)
        VALUES ('default', p_destination, p_opt_out_reason)
        ON CONFLICT DO NOTHING;
    END IF;
    INSERT INTO responses (campaign_id, contact_id, attempt, dial_request_id, call_uuid, digits,
                           meaning)
    VALUES (p_campaign_id, v_contact.id, greatest(v_contact.attempts, 1),
            v_contact.dial_request_id, p_call_uuid, p_digits, p_meaning)
    ON CONFLICT ON CONSTRAINT responses_contact_id_attempt_key DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, v_contact.id;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'recorded'::text, v_contact.id;
END;
$$;

-- Record one callback for the contact `p_destination` of campaign `p_campaign_id`, in one round
-- trip: the event (once, however often Plivo retries it), the contact's call outcome, the
-- request_uuid of an unsettled batch (or one a positional mapping got wrong), and a redial when
-- the campaign asks for one. Returns what happened: 'recorded', 'redial', 'duplicate',
-- 'retry' (the contact's request is still being recorded: nothing changed, try again), or
-- 'unknown' (no contact of this campaign has that destination and request_uuid; nothing changed).
-- A callback for an `unknown` contact (whose request got no reply) settles it as `fired`.
-- Called by record_call_events, which holds the campaigns' rows locked (FOR SHARE) first.
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
        v_redial := (p_call_status = ANY (v_campaign.redial_on)
                     OR ('machine' = ANY (v_campaign.redial_on)
                         AND coalesce(p_machine, v_contact.machine, false)))
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
    SELECT
        count(*)                                       AS total,
        count(*) FILTER (WHERE t.status = 'pending')   AS pending,
        count(*) FILTER (WHERE t.status = 'claimed')   AS claimed,
        count(*) FILTER (WHERE t.status = 'sending')   AS sending,
        count(*) FILTER (WHERE t.status = 'fired')     AS fired,
        count(*) FILTER (WHERE t.status = 'queued')    AS queued,
        count(*) FILTER (WHERE t.status = 'failed')    AS failed,
        count(*) FILTER (WHERE t.status = 'unknown')   AS unknown,
        count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled,
        -- How the calls of settled contacts ended (a contact waiting for a redial is pending).
        count(*) FILTER (WHERE t.status IN ('fired', 'queued')
                           AND t.call_status = 'completed') AS answered,
        count(*) FILTER (WHERE t.status IN ('fired', 'queued') AND t.call_status = 'busy') AS busy,
        count(*) FILTER (WHERE t.status IN ('fired', 'queued')
                           AND t.call_status = 'no-answer') AS no_answer,
        count(*) FILTER (WHERE t.status IN ('fired', 'queued')
                           AND t.call_status = 'failed') AS call_failed,
        count(*) FILTER (WHERE t.status IN ('fired', 'queued')
                           AND t.call_status = 'timeout') AS timeout,
        count(*) FILTER (WHERE t.status = 'suppressed') AS suppressed,
        count(*) FILTER (WHERE t.status = 'expired')    AS expired
    FROM contacts t
    WHERE t.campaign_id = c.id
) counts
CROSS JOIN LATERAL (
    -- Pending contacts due now whose window is closed, counted per set of zones.
    SELECT coalesce(sum(w.n), 0)::bigint AS waiting_for_window
    FROM campaign_time_zones z
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM contacts t
        WHERE t.campaign_id = z.campaign_id AND t.time_zones = z.time_zones
          AND t.status = 'pending' AND t.next_attempt_at <= now()
    ) w
    WHERE z.campaign_id = c.id AND NOT zone_set_open(c, z.time_zones, now())
) waiting;

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
    h.received_at                                                 AS hangup_received_at,
    d.caller_id,
    (SELECT r.meaning FROM responses r
     WHERE r.contact_id = c.id AND r.dial_request_id = d.id)       AS response,
    -- What the engine's answer did for a machine on this attempt.
    (SELECT e.payload ->> 'MachineAction' FROM call_events e
     WHERE e.contact_id = c.id AND e.dial_request_id = d.id AND e.event = 'machine'
       AND e.payload ? 'MachineAction'
     LIMIT 1)                                                      AS machine_action
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

CREATE OR REPLACE VIEW contact_outcomes AS
SELECT
    c.id AS contact_id,
    k.name AS campaign,
    c.campaign_id,
    c.destination,
    c.raw_destination,
    c.line_number,
    c.fields,
    c.status,
    CASE
        WHEN c.status = 'pending' AND c.next_attempt_at <= now()
             AND NOT zone_set_open(k, c.time_zones, now()) THEN 'waiting for calling hours'
        WHEN c.status = 'pending' AND c.attempts > 0 THEN 'redial scheduled'
        WHEN c.status IN ('pending', 'claimed', 'sending') THEN c.status
        WHEN c.status IN ('failed', 'unknown', 'cancelled', 'suppressed', 'expired') THEN c.status
        WHEN c.call_status = 'completed' THEN 'answered'
        WHEN c.call_status IN ('busy', 'no-answer', 'failed', 'timeout', 'cancel') THEN c.call_status
        WHEN c.call_status IN ('ringing', 'in-progress') THEN 'in call'
        ELSE c.status
    END AS outcome,
    c.attempts,
    c.call_status,
    c.hangup_cause,
    c.hangup_cause_code,
    c.duration_s,
    c.bill_duration_s,
    c.answered_at,
    c.ended_at,
    c.machine,
    c.request_uuid,
    c.call_uuid,
    c.http_status,
    c.plivo_message,
    c.last_error,
    c.next_attempt_at,
    c.updated_at,
    c.time_zones,
    c.caller_id,
    -- What the callee's keypress meant (its latest attempt with one), and what the answer did
    -- for a machine.
    (SELECT r.meaning FROM responses r WHERE r.contact_id = c.id
     ORDER BY r.attempt DESC LIMIT 1) AS response,
    c.machine_action
FROM contacts c
JOIN campaigns k ON k.id = c.campaign_id;
