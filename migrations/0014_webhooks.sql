-- Issue 16: webhooks out. Endpoints, the outbox of events written by triggers in the
-- transaction of the change they report, their per-campaign sequence and their delivery
-- (campaign/sql/schema.sql section 11 holds the live definitions, with their comments).

-- Where events go: one row per URL, with the secret they are signed with (`whsec_` and base64;
-- CAMPAIGN_WEBHOOK_SECRET, when set, signs instead). 410 Gone disables an endpoint.
CREATE TABLE webhook_endpoints (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url              text NOT NULL UNIQUE CHECK (url ~ '^https?://'),
    secret           text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz,
    disabled_reason  text
);

-- The endpoint a campaign's events go to (NULL: none, and no events are written).
ALTER TABLE campaigns ADD COLUMN webhook_endpoint_id bigint REFERENCES webhook_endpoints (id);

-- The outbox and its deliveries, one row per event (a campaign has one endpoint); the triggers
-- give its times from now() as they run, like every time the engine reads. Public: the README
-- documents it. `sequence` numbers a campaign's events from 1 in the order they were
-- committed; the deliverers give it (sequence_webhook_deliveries), so that no transaction that
-- dials or records waits for a counter.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The stable id a receiver drops repeats by (the webhook-id header is evt_ and its hex).
    event_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    type             text NOT NULL CHECK (type IN ('contact.settled', 'contact.response',
                                                   'campaign.status_changed',
                                                   'campaign.completed')),
    -- No foreign keys: each check would lock the campaign's row FOR KEY SHARE from every
    -- transaction that records replies or callbacks, which costs the dialing (bench/webhooks.py).
    campaign_id      bigint NOT NULL,
    contact_id       bigint,
    endpoint_id      bigint NOT NULL,
    sequence         bigint,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    data             jsonb NOT NULL,
    -- pending → delivered (a 2xx), or failed (retries spent, or 410 Gone).
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    -- The HTTP status of the latest attempt (NULL: no answer: a timeout, a refused connection).
    last_status      smallint,
    last_error       text,
    delivered_at     timestamptz,
    -- Which deliverer holds it, and until when (a dead one's deliveries are claimed again).
    worker_id        text,
    lease_expires_at timestamptz
);
-- An endpoint's deliveries due now, oldest first (the claim, per endpoint).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at, id)
    WHERE status = 'pending';
-- A contact's earlier events not yet delivered (its events go out in order).
CREATE INDEX webhook_deliveries_contact ON webhook_deliveries (contact_id, id)
    WHERE status = 'pending';
-- Events not yet numbered.
CREATE INDEX webhook_deliveries_unsequenced ON webhook_deliveries (campaign_id, id)
    WHERE sequence IS NULL;
-- `campaign webhook list --failed`, `redeliver --failed --since`.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (occurred_at)
    WHERE status = 'failed';

-- The last sequence number given per campaign.
CREATE TABLE webhook_sequences (
    campaign_id      bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    last_sequence    bigint NOT NULL DEFAULT 0
);

-- The campaigns with an endpoint, as the triggers of contacts and responses need them: a table
-- of their own, kept by the campaigns' trigger below, so that settling a contact never reads
-- campaigns (nor waits on a lock of it), and costs one look-up in a small table without them.
CREATE TABLE webhook_campaigns (
    campaign_id      bigint PRIMARY KEY,
    name             text NOT NULL,
    track_calls      boolean NOT NULL,
    endpoint_id      bigint NOT NULL
);

CREATE FUNCTION note_webhook_campaign() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.webhook_endpoint_id IS NULL THEN
        DELETE FROM webhook_campaigns w WHERE w.campaign_id = NEW.id;
    ELSE
        INSERT INTO webhook_campaigns (campaign_id, name, track_calls, endpoint_id)
        VALUES (NEW.id, NEW.name, NEW.track_calls, NEW.webhook_endpoint_id)
        ON CONFLICT (campaign_id) DO UPDATE
        SET name = EXCLUDED.name, track_calls = EXCLUDED.track_calls,
            endpoint_id = EXCLUDED.endpoint_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER campaigns_webhook_noted
    AFTER INSERT OR UPDATE OF webhook_endpoint_id, track_calls, name ON campaigns
    FOR EACH ROW EXECUTE FUNCTION note_webhook_campaign();

-- The endpoint of a URL, made when it is new with a secret of 32 random bytes (two version 4
-- UUIDs: 244 bits from the server's strong random source); NULL for a NULL URL.
CREATE FUNCTION webhook_endpoint_for(p_url text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF p_url IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_endpoints (url, secret)
    VALUES (p_url, 'whsec_' || encode(decode(replace(gen_random_uuid()::text, '-', '')
                                             || replace(gen_random_uuid()::text, '-', ''), 'hex'),
                                      'base64'))
    ON CONFLICT (url) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT e.id INTO v_id FROM webhook_endpoints e WHERE e.url = p_url;
    END IF;
    RETURN v_id;
END;
$$;

-- Whether a contact will not be dialled again unless someone acts: fired or queued (with
-- --track-calls: once its call ended without a redial), failed, cancelled, suppressed, expired.
CREATE FUNCTION contact_is_settled(p_status text, p_call_status text, p_track_calls boolean)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status IN ('failed', 'cancelled', 'suppressed', 'expired')
        OR (p_status IN ('fired', 'queued')
            AND (NOT p_track_calls
                 OR coalesce(p_call_status IN ('completed', 'busy', 'no-answer', 'failed',
                                               'timeout', 'cancel'), false)))
$$;

-- contact.settled, when a contact of a campaign with an endpoint becomes settled. The outcome
-- is contact_outcomes' for a settled contact.
CREATE FUNCTION note_contact_settled() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_campaign record;
BEGIN
    SELECT w.name, w.track_calls, w.endpoint_id AS webhook_endpoint_id INTO v_campaign
    FROM webhook_campaigns w WHERE w.campaign_id = NEW.campaign_id;
    IF NOT FOUND OR NOT contact_is_settled(NEW.status, NEW.call_status, v_campaign.track_calls)
       OR (TG_OP = 'UPDATE'
           AND contact_is_settled(OLD.status, OLD.call_status, v_campaign.track_calls)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (type, campaign_id, contact_id, endpoint_id, occurred_at,
                                    next_attempt_at, data)
    VALUES ('contact.settled', NEW.campaign_id, NEW.id, v_campaign.webhook_endpoint_id, now(), now(),
            jsonb_build_object(
                'campaign', v_campaign.name,
                'campaign_id', NEW.campaign_id,
                'contact_id', NEW.id,
                'destination', NEW.destination,
                'line_number', NEW.line_number,
                'fields', NEW.fields,
                'outcome', CASE
                    WHEN NEW.status IN ('failed', 'cancelled', 'suppressed', 'expired')
                        THEN NEW.status
                    WHEN NEW.call_status = 'completed' THEN 'answered'
                    WHEN NEW.call_status IN ('busy', 'no-answer', 'failed', 'timeout', 'cancel')
                        THEN NEW.call_status
                    ELSE NEW.status
                END,
                'status', NEW.status,
                'attempts', NEW.attempts,
                'request_uuid', NEW.request_uuid,
                'call_uuid', NEW.call_uuid,
                'call_status', NEW.call_status,
                'hangup_cause', NEW.hangup_cause,
                'duration_s', NEW.duration_s,
                'bill_duration_s', NEW.bill_duration_s,
                'answered_at', NEW.answered_at,
                'ended_at', NEW.ended_at,
                'machine', NEW.machine,
                'response', (SELECT r.meaning FROM responses r WHERE r.contact_id = NEW.id
                             ORDER BY r.attempt DESC LIMIT 1),
                'error', NEW.last_error));
    RETURN NULL;
END;
$$;

-- Only changes into a settled status reach the function (a claim, a write-ahead, a ring never
-- do), and only those of campaigns with an endpoint go further than the look-up.
CREATE TRIGGER contacts_webhook_inserted
    AFTER INSERT ON contacts FOR EACH ROW
    WHEN (NEW.status <> 'pending')
    EXECUTE FUNCTION note_contact_settled();
CREATE TRIGGER contacts_webhook_updated
    AFTER UPDATE ON contacts FOR EACH ROW
    WHEN (NEW.status IN ('fired', 'queued', 'failed', 'cancelled', 'suppressed', 'expired')
          AND (NEW.status IS DISTINCT FROM OLD.status
               OR NEW.call_status IS DISTINCT FROM OLD.call_status))
    EXECUTE FUNCTION note_contact_settled();

-- contact.response: a keypress recorded.
CREATE FUNCTION note_contact_response() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_campaign record;
BEGIN
    SELECT w.name, w.endpoint_id AS webhook_endpoint_id INTO v_campaign
    FROM webhook_campaigns w WHERE w.campaign_id = NEW.campaign_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (type, campaign_id, contact_id, endpoint_id, occurred_at,
                                    next_attempt_at, data)
    SELECT 'contact.response', NEW.campaign_id, NEW.contact_id, v_campaign.webhook_endpoint_id,
           now(), now(),
           jsonb_build_object(
               'campaign', v_campaign.name,
               'campaign_id', NEW.campaign_id,
               'contact_id', NEW.contact_id,
               'destination', c.destination,
               'attempt', NEW.attempt,
               'call_uuid', NEW.call_uuid,
               'digits', NEW.digits,
               'meaning', NEW.meaning)
    FROM contacts c WHERE c.id = NEW.contact_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER responses_webhook
    AFTER INSERT ON responses FOR EACH ROW
    EXECUTE FUNCTION note_contact_response();

-- campaign.status_changed (running, paused with its reason, cancelled, completed), and
-- campaign.completed with the final counts of campaign_progress.
CREATE FUNCTION note_campaign_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (type, campaign_id, endpoint_id, occurred_at, next_attempt_at,
                                    data)
    VALUES ('campaign.status_changed', NEW.id, NEW.webhook_endpoint_id, now(), now(),
            jsonb_build_object(
                'campaign', NEW.name,
                'campaign_id', NEW.id,
                'status', NEW.status,
                'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
                'reason', NEW.status_reason));
    IF NEW.status = 'completed' THEN
        INSERT INTO webhook_deliveries (type, campaign_id, endpoint_id, occurred_at,
                                        next_attempt_at, data)
        SELECT 'campaign.completed', NEW.id, NEW.webhook_endpoint_id, now(), now(),
               jsonb_build_object('campaign', NEW.name, 'campaign_id', NEW.id)
               || jsonb_build_object('counts',
                                     to_jsonb(p) - 'campaign' - 'campaign_id' - 'status'
                                                 - 'created_at')
        FROM campaign_progress p WHERE p.campaign_id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER campaigns_webhook_inserted
    AFTER INSERT ON campaigns FOR EACH ROW
    WHEN (NEW.webhook_endpoint_id IS NOT NULL AND NEW.status <> 'draft')
    EXECUTE FUNCTION note_campaign_status();
CREATE TRIGGER campaigns_webhook_updated
    AFTER UPDATE OF status ON campaigns FOR EACH ROW
    WHEN (NEW.webhook_endpoint_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status
          AND NEW.status <> 'draft')
    EXECUTE FUNCTION note_campaign_status();

-- Number the committed events not numbered yet, per campaign in the order of their ids (at
-- most p_limit per campaign per call). A deliverer numbers a campaign while holding its
-- counter; another skips it meanwhile. Returns how many were numbered.
CREATE FUNCTION sequence_webhook_deliveries(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_campaign bigint;
    v_last bigint;
    v_numbered integer;
    v_total integer := 0;
BEGIN
    FOR v_campaign IN
        SELECT DISTINCT d.campaign_id FROM webhook_deliveries d WHERE d.sequence IS NULL
    LOOP
        INSERT INTO webhook_sequences (campaign_id) VALUES (v_campaign)
        ON CONFLICT (campaign_id) DO NOTHING;
        SELECT s.last_sequence INTO v_last FROM webhook_sequences s
        WHERE s.campaign_id = v_campaign FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- A statement after the lock: it sees what a deliverer that held it committed.
        UPDATE webhook_deliveries d SET sequence = v_last + n.position
        FROM (SELECT w.id, row_number() OVER (ORDER BY w.id) AS position
              FROM webhook_deliveries w
              WHERE w.campaign_id = v_campaign AND w.sequence IS NULL
              ORDER BY w.id LIMIT p_limit) n
        WHERE d.id = n.id;
        GET DIAGNOSTICS v_numbered = ROW_COUNT;
        UPDATE webhook_sequences s SET last_sequence = s.last_sequence + v_numbered
        WHERE s.campaign_id = v_campaign;
        v_total := v_total + v_numbered;
    END LOOP;
    RETURN v_total;
END;
$$;

-- Claim up to p_limit of an endpoint's deliveries due now, for p_lease_s: numbered, not held by
-- a live lease, and with no earlier event of the same contact still pending (a contact's
-- events go out in order). The attempt is counted at the claim.
CREATE FUNCTION claim_webhook_deliveries(
    p_endpoint_id bigint,
    p_worker_id   text,
    p_limit       integer,
    p_lease_s     double precision
) RETURNS SETOF webhook_deliveries
LANGUAGE sql AS $$
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1, last_attempt_at = now(), worker_id = p_worker_id,
        lease_expires_at = now() + make_interval(secs => p_lease_s)
    FROM (
        SELECT w.id FROM webhook_deliveries w
        WHERE w.endpoint_id = p_endpoint_id AND w.status = 'pending'
          AND w.next_attempt_at <= now() AND w.sequence IS NOT NULL
          AND (w.lease_expires_at IS NULL OR w.lease_expires_at <= now())
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                          WHERE w.contact_id IS NOT NULL AND e.contact_id = w.contact_id
                            AND e.status = 'pending' AND e.id < w.id)
          AND EXISTS (SELECT 1 FROM webhook_endpoints p
                      WHERE p.id = p_endpoint_id AND p.disabled_at IS NULL)
        ORDER BY w.next_attempt_at, w.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE d.id = c.id
    RETURNING d.*;
$$;
