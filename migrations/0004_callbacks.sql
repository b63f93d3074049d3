-- Plivo's callbacks: each call's final outcome, redials, and the views campaign managers query.

-- What the callbacks said about a contact's latest call (call_uuid came with 0003).
ALTER TABLE contacts
    ADD COLUMN call_status       text CHECK (call_status IN ('ringing', 'in-progress', 'completed',
                                                            'busy', 'no-answer', 'failed',
                                                            'timeout', 'cancel')),
    ADD COLUMN hangup_cause      text,
    ADD COLUMN hangup_cause_code integer,
    ADD COLUMN duration_s        integer,
    ADD COLUMN bill_duration_s   integer,
    ADD COLUMN answered_at       timestamptz,
    ADD COLUMN ended_at          timestamptz,
    ADD COLUMN machine           boolean;

-- Redials: which final call statuses are dialled again, and the delay before attempt 2, 3, …
-- (the last one repeats). track_calls: the campaign's ring/hangup/machine URLs are ours.
ALTER TABLE campaigns
    ADD COLUMN redial_on       text[] NOT NULL DEFAULT '{}'
                               CHECK (redial_on <@ ARRAY['busy', 'no-answer', 'timeout', 'failed']),
    ADD COLUMN redial_delays_s integer[] NOT NULL DEFAULT '{}' CHECK (0 <= ALL (redial_delays_s)),
    ADD COLUMN track_calls     boolean NOT NULL DEFAULT false;

-- Every callback that matched a contact, as Plivo sent it. A retried callback repeats its
-- dedupe_key and is recorded once.
CREATE TABLE call_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    event           text NOT NULL CHECK (event IN ('ring', 'hangup', 'machine')),
    campaign_id     bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id      bigint NOT NULL,
    dial_request_id bigint,
    request_uuid    text,
    call_uuid       text,
    call_status     text,
    payload         jsonb NOT NULL,
    dedupe_key      text NOT NULL UNIQUE
);
CREATE INDEX call_events_contact ON call_events (contact_id, id);

-- campaign_progress counts by status and call status from the index alone.
DROP INDEX contacts_campaign_status;
CREATE INDEX contacts_campaign_status ON contacts (campaign_id, status, call_status);
-- Calls a campaign may still redial, waiting for their hangup (campaign_has_work).
CREATE INDEX contacts_awaiting_hangup ON contacts (campaign_id, updated_at)
    WHERE status IN ('fired', 'queued') AND (call_status IS NULL OR call_status IN ('ringing', 'in-progress'));

-- Record one callback for the contact `p_destination` of campaign `p_campaign_id`, in one round
-- trip: the event (once, however often Plivo retries it), the contact's call outcome, the
-- request_uuid of an unsettled batch (or one a positional mapping got wrong), and a redial when
-- the campaign asks for one. Returns what happened: 'recorded', 'redial', 'duplicate',
-- 'retry' (the contact's request is still being recorded: nothing changed, try again), or
-- 'unknown' (no contact of this campaign has that destination and request_uuid; nothing changed).
CREATE FUNCTION record_call_event(
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
    SELECT d.request_uuids INTO v_uuids FROM dial_requests d WHERE d.id = v_contact.dial_request_id;
    -- The callback belongs to the contact's latest request: its own uuid, or one of its batch's
    -- (an unsettled batch, or a positional mapping the callback corrects).
    IF p_request_uuid IS NULL OR NOT (
        p_request_uuid = v_contact.request_uuid OR p_request_uuid = ANY (coalesce(v_uuids, '{}'))
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
    -- The uuid is this contact's: a batch-mate that a positional mapping gave it to loses it
    -- (and is settled by its own callback).
    IF p_request_uuid IS DISTINCT FROM v_contact.request_uuid THEN
        UPDATE contacts c SET request_uuid = NULL, updated_at = now()
        WHERE c.dial_request_id = v_contact.dial_request_id AND c.request_uuid = p_request_uuid
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

-- One row per dial attempt of a contact: every request it was sent in, with the call's outcome
-- when a hangup callback told it.
CREATE VIEW dial_attempts AS
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
) h ON true;

-- One row per contact: where it stands and how its latest call ended, in one word (`outcome`).
CREATE VIEW contact_outcomes AS
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
        WHEN c.status = 'pending' AND c.attempts > 0 THEN 'redial scheduled'
        WHEN c.status IN ('pending', 'claimed', 'sending') THEN c.status
        WHEN c.status IN ('failed', 'unknown', 'cancelled') THEN c.status
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
    c.updated_at
FROM contacts c
JOIN campaigns k ON k.id = c.campaign_id;

-- campaign_progress gains the calls' outcomes (columns are only ever added at the end).
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
                 + counts.timeout, 0) AS answer_rate
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
                           AND t.call_status = 'timeout') AS timeout
    FROM contacts t
    WHERE t.campaign_id = c.id
) counts;

-- Whether a campaign has contacts that may still be dialled: pending, claimed or sending, or
-- fired/queued and waiting (up to p_callback_wait_s) for a hangup the campaign redials.
CREATE FUNCTION campaign_has_work(p_campaign_id bigint, p_callback_wait_s double precision)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM contacts t
        WHERE t.campaign_id = p_campaign_id AND t.status IN ('pending', 'claimed', 'sending')
    ) OR EXISTS (
        SELECT 1
        FROM campaigns k
        JOIN contacts t ON t.campaign_id = k.id
        WHERE k.id = p_campaign_id
          AND cardinality(k.redial_on) > 0
          AND t.status IN ('fired', 'queued')
          AND t.attempts < k.max_attempts
          AND (t.call_status IS NULL OR t.call_status IN ('ringing', 'in-progress'))
          AND t.updated_at > now() - make_interval(secs => p_callback_wait_s)
    )
$$;

-- Record many callbacks in one round trip and one commit (callbacks arrive by the thousand per
-- second; a commit each would be bound by the disk's flush time). Element i of every array is
-- callback i; returns each one's result, in order.
CREATE FUNCTION record_call_events(
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
