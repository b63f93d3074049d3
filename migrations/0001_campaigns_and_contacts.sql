-- Campaigns, their contacts, and the progress view. Forward-only: never edit once applied.

CREATE TABLE campaigns (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                     text NOT NULL UNIQUE
                             CHECK (name <> '' AND length(name) <= 200),
    status                   text NOT NULL DEFAULT 'draft'
                             CHECK (status IN ('draft', 'running', 'paused', 'cancelled', 'completed')),
    -- Why the campaign is in its status when it was not a person's choice (an account problem).
    status_reason            text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),

    -- Every Make-a-call parameter a bulk request may carry, named as in Plivo's API.
    "from"                   text NOT NULL,
    answer_url               text NOT NULL,
    answer_method            text CHECK (answer_method IN ('GET', 'POST')),
    ring_url                 text,
    ring_method              text CHECK (ring_method IN ('GET', 'POST')),
    hangup_url               text,
    hangup_method            text CHECK (hangup_method IN ('GET', 'POST')),
    fallback_url             text,
    fallback_method          text CHECK (fallback_method IN ('GET', 'POST')),
    caller_name              text CHECK (length(caller_name) BETWEEN 1 AND 50),
    send_digits              text,
    send_on_preanswer        boolean,
    time_limit               integer CHECK (time_limit > 0),
    hangup_on_ring           integer CHECK (hangup_on_ring > 0),
    machine_detection        text CHECK (machine_detection IN ('true', 'hangup')),
    machine_detection_time   integer CHECK (machine_detection_time BETWEEN 2000 AND 10000),
    machine_detection_url    text,
    machine_detection_method text CHECK (machine_detection_method IN ('GET', 'POST')),
    sip_headers              text,
    ring_timeout             integer CHECK (ring_timeout > 0),

    -- Dialing settings. calls_per_second NULL: only the account's limit applies.
    calls_per_second         double precision CHECK (calls_per_second > 0),
    batch_size               integer NOT NULL DEFAULT 100 CHECK (batch_size BETWEEN 1 AND 1000),
    max_attempts             integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100)
);

CREATE TABLE contacts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    -- E.164 with a leading + (+14155550123), or a SIP URI (sip:alice@example.com).
    destination      text NOT NULL CHECK (destination <> '' AND strpos(destination, '<') = 0),
    -- The value as it stood in the CSV, and the line it started on (1 = first line of the file).
    raw_destination  text NOT NULL,
    line_number      integer,
    -- The row's other columns, by header.
    fields           jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'claimed', 'sending', 'fired', 'queued',
                                       'failed', 'unknown', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- What Plivo answered for this contact's latest request.
    request_uuid     text,
    api_id           text,
    plivo_message    text,
    http_status      smallint,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, destination)
);

-- "Pending contacts of a running campaign, due now, oldest first": the worker's claim.
CREATE INDEX contacts_due ON contacts (campaign_id, next_attempt_at, id) WHERE status = 'pending';
-- Counts by status per campaign (campaign_progress) without reading the whole table.
CREATE INDEX contacts_campaign_status ON contacts (campaign_id, status);

-- One row per campaign: how many of its contacts are in each status. The counts are a lateral
-- subquery so that filtering on the campaign (by name or id) reads only that campaign's contacts.
CREATE VIEW campaign_progress AS
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
    c.created_at  AS created_at
FROM campaigns c
CROSS JOIN LATERAL (
    SELECT
        count(*)                                    AS total,
        count(*) FILTER (WHERE t.status = 'pending')   AS pending,
        count(*) FILTER (WHERE t.status = 'claimed')   AS claimed,
        count(*) FILTER (WHERE t.status = 'sending')   AS sending,
        count(*) FILTER (WHERE t.status = 'fired')     AS fired,
        count(*) FILTER (WHERE t.status = 'queued')    AS queued,
        count(*) FILTER (WHERE t.status = 'failed')    AS failed,
        count(*) FILTER (WHERE t.status = 'unknown')   AS unknown,
        count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled
    FROM contacts t
    WHERE t.campaign_id = c.id
) counts;
