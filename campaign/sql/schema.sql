-- The live definition of campaign's database: every table, index, function and view, grouped by
-- concept. Read this file to know what the database is.
--
-- The numbered files in migrations/ are what `campaign migrate` applies: they move a database
-- that exists in the field here, step by step, and are never edited once released. A change to
-- the schema is a new migration AND the same change here; tests/integration/test_schema.py
-- applies the migrations to one database and this file to another and compares their catalogs
-- (columns, constraints, indexes, functions, views, triggers), so the two cannot drift.
--
--   1. Campaigns and contacts          6. Leases
--   2. Requests and call events        7. Callbacks
--   3. Calling hours, suppression,     8. Completion
--      caps of calls per number        9. Views: the public SQL interface
--   4. Rate limits, concurrent calls, 10. Compatibility with the previous release's workers
--      priorities, caller IDs
--   5. A batch: claim, write ahead,    11. The HTTP API: keys, idempotency, loads
--      record                         12. Webhooks: events, the outbox, delivery
--
-- Every time the engine reads is the database's clock (`now()`, `clock_timestamp()`), never a
-- worker's, so that workers on many hosts agree and tests can inject the clock.


-- 1. Campaigns and contacts ----------------------------------------------------------------------

-- A range of times of day; a campaign's calling hours are a timemultirange (made with it):
-- '{[08:00,12:00),[14:00,20:00)}'.
CREATE TYPE timerange AS RANGE (subtype = time);

CREATE TABLE campaigns (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                     text NOT NULL UNIQUE
                             CHECK (name <> '' AND length(name) <= 200),
    -- Only running campaigns are dialled.
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
    max_attempts             integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),

    -- Redials: which final call statuses are dialled again, and the delay before attempt 2, 3, …
    -- (the last one repeats). track_calls: the campaign's ring/hangup/machine URLs are ours.
    redial_on                text[] NOT NULL DEFAULT '{}'
                             CHECK (redial_on <@ ARRAY['busy', 'no-answer', 'timeout', 'failed',
                                                       'machine']),
    redial_delays_s          integer[] NOT NULL DEFAULT '{}' CHECK (0 <= ALL (redial_delays_s)),
    track_calls              boolean NOT NULL DEFAULT false,

    -- When calls may be placed, in each callee's local time (section 3): hours of the day (NULL:
    -- any; the CLI's default is 08:00-21:00), days of the week (NULL: every day), dates skipped.
    calling_hours            timemultirange,
    calling_days             text[]
                             CHECK (calling_days <@ ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']),
    skip_dates               date[] NOT NULL DEFAULT '{}',
    -- Nothing is dialled before start_at; at end_at, contacts not dialled become `expired`.
    start_at                 timestamptz,
    end_at                   timestamptz,
    -- The zone of contacts whose number tells none (a SIP URI, an unknown prefix).
    default_time_zone        text,
    -- Numbers on these lists are never called by the campaign (`default` is every campaign's).
    suppression_lists        text[] NOT NULL DEFAULT '{default}',
    -- Calls placed to one number by this campaign in the previous 24 h, at most.
    max_calls_per_number_per_day integer CHECK (max_calls_per_number_per_day > 0),
    -- Higher first: while a running campaign of higher priority wants the account's calls, a
    -- lower one gets only what it leaves (dial_demand).
    priority                 integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    -- Calls of this campaign live at once, at most (counted_calls); needs track_calls.
    max_concurrent_calls     integer CHECK (max_concurrent_calls > 0),
    -- With a pool of caller IDs (campaign_caller_ids): `rotate` spreads calls evenly over them,
    -- `local` prefers one with the callee's area code, then its country. NULL: "from" alone.
    caller_id_mode           text CHECK (caller_id_mode IN ('rotate', 'local')),
    -- Limits per caller ID, because carriers flag numbers that dial too fast or too often.
    calls_per_second_per_caller_id double precision CHECK (calls_per_second_per_caller_id > 0),
    max_calls_per_caller_id_per_day integer CHECK (max_calls_per_caller_id_per_day > 0),
    -- What the call says, when the engine serves the answer XML (campaign/voice.py): a message
    -- with {column} placeholders spoken in `voice` and `language` (Plivo's names), audio played
    -- before or after it, or a whole Plivo XML template; NULL: not used.
    message                  text,
    voice                    text,
    language                 text,
    play_url                 text,
    play_after_url           text,
    answer_template          text,
    -- Keypresses: {"1": "confirmed", "9": "opt-out"}, the prompt, Plivo's <GetDigits> timeout
    -- and retries, and what is said after each key ({"1": "Thank you."}).
    gather                   jsonb,
    gather_prompt            text,
    gather_timeout_s         integer CHECK (gather_timeout_s BETWEEN 1 AND 60),
    gather_retries           integer CHECK (gather_retries BETWEEN 1 AND 10),
    after_keypress           jsonb,
    -- When an answering machine takes the call: hang up, play the message, or wait for the
    -- beep and leave voicemail_message.
    on_machine               text CHECK (on_machine IN ('hangup', 'message', 'voicemail')),
    voicemail_message        text,
    CONSTRAINT campaigns_end_after_start CHECK (end_at > start_at)
);

CREATE TABLE contacts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Its campaign (checked per statement by note_campaign_time_zones, §3: no per-row foreign key).
    campaign_id       bigint NOT NULL,
    -- E.164 with a leading + (+14155550123), or a SIP URI (sip:alice@example.com).
    destination       text NOT NULL CHECK (destination <> '' AND strpos(destination, '<') = 0),
    -- The value as it stood in the CSV, and the line it started on (1 = first line of the file).
    raw_destination   text NOT NULL,
    line_number       integer,
    -- The row's other columns, by header.
    fields            jsonb NOT NULL DEFAULT '{}',
    -- Where the contact stands in its current attempt (campaign/models.py ContactStatus):
    -- pending → claimed → sending → fired | queued | failed | unknown; cancelled, suppressed,
    -- expired (see contacts_status_check below).
    status            text NOT NULL DEFAULT 'pending',
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    -- What Plivo answered for this contact's latest request.
    request_uuid      text,
    api_id            text,
    plivo_message     text,
    http_status       smallint,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Which worker holds the contact (claimed or sending) and until when.
    worker_id         text,
    lease_expires_at  timestamptz,
    -- The request this contact was last sent in (dial_requests.id). No foreign key: the row is
    -- written in the same statement, and a per-row check would cost every batch.
    dial_request_id   bigint,
    -- What the callbacks (or `campaign reconcile`) told of the latest call. NULL while unknown.
    call_uuid         text,
    call_status       text CHECK (call_status IN ('ringing', 'in-progress', 'completed',
                                                  'busy', 'no-answer', 'failed',
                                                  'timeout', 'cancel')),
    hangup_cause      text,
    hangup_cause_code integer,
    duration_s        integer,
    bill_duration_s   integer,
    answered_at       timestamptz,
    ended_at          timestamptz,
    machine           boolean,
    -- The callee's IANA time zones (from the CSV, the number's prefix, or the campaign's
    -- default): calls are placed only while the window is open in every one of them. Empty:
    -- none known (only in a campaign without local rules).
    time_zones        text[] NOT NULL DEFAULT '{}',
    -- The suppression lists' version its load looked its number up at (suppression_version);
    -- NULL: none, so the claim looks the number up itself.
    suppressions_version bigint,
    -- The caller ID (`from`) its latest attempt was placed with.
    caller_id         text,
    -- With `--caller-id local`, which of the pool may call it (from the load): 'area:+1415'
    -- (a number of that area code), 'country:+44' (of that country), NULL (any).
    caller_id_group   text,
    -- What the engine's answer did for a machine on the latest attempt.
    machine_action    text CHECK (machine_action IN ('hangup', 'message', 'voicemail')),
    UNIQUE (campaign_id, destination),
    CONSTRAINT contacts_status_check
        CHECK (status IN ('pending', 'claimed', 'sending', 'fired', 'queued', 'failed', 'unknown',
                          'cancelled', 'suppressed', 'expired'))
);

-- "Pending contacts of a running campaign, due now, oldest first", one set of time zones at a
-- time: the claim reads only the sets whose window is open, so closed ones are never scanned.
-- A set is keyed by its hash (hash_array: an integer, where comparing arrays of text cost a
-- load's inserts 3.7 s a million rows, 2.3 s more than this): every query of one set says
-- `hash_array(t.time_zones) = hash_array(<set>) AND t.time_zones = <set>`, the second a filter
-- for the rare set of the campaign with the same hash.
CREATE INDEX contacts_due ON contacts (campaign_id, hash_array(time_zones), next_attempt_at, id)
    WHERE status = 'pending';
-- campaign_progress counts by status and call status from the index alone; the dashboard's
-- contacts pages of one status page through it by id.
CREATE INDEX contacts_campaign_status ON contacts (campaign_id, status, id) INCLUDE (call_status);
-- Expired leases are found without reading settled contacts.
CREATE INDEX contacts_leased ON contacts (lease_expires_at) WHERE status IN ('claimed', 'sending');
-- Calls a campaign may still redial, waiting for their hangup (campaign_has_work).
CREATE INDEX contacts_awaiting_hangup ON contacts (campaign_id, updated_at)
    WHERE status IN ('fired', 'queued') AND (call_status IS NULL OR call_status IN ('ringing', 'in-progress'));
-- The dashboard's contacts pages: keyset paging by id within a campaign reads an index range
-- from the cursor on, whatever the depth.
CREATE INDEX contacts_campaign_id ON contacts (campaign_id, id);


-- 2. Requests and call events ---------------------------------------------------------------------

-- One row per Make-a-call request, written before it is sent (write-ahead) and completed with
-- Plivo's reply. A row with no outcome is a request in flight, or one whose fate is unknown.
CREATE TABLE dial_requests (
    id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    campaign_id    bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    worker_id      text NOT NULL,
    -- The `to` of the request, in order (joined with `<` when sent).
    destinations   text[] NOT NULL,
    sent_at        timestamptz NOT NULL DEFAULT now(),
    replied_at     timestamptz,
    latency_ms     integer,
    -- campaign/models.py RequestOutcome; NULL until the request is settled, then never changed.
    outcome        text CHECK (outcome IN ('fired', 'queued', 'not_sent', 'account_problem',
                                           'rejected', 'unknown')),
    http_status    smallint,
    api_id         text,
    plivo_message  text,
    -- Plivo's request_uuid list, as it came.
    request_uuids  text[],
    -- false: the uuids could not be matched to destinations one by one (callbacks settle it).
    uuids_mapped   boolean,
    error          text,
    -- How many times the client sent it (only "not sent" failures are ever sent again).
    attempts       integer,
    -- Whether the request counts as an attempt of its contacts (as contacts.attempts counts
    -- them). false: written ahead but never sent (it missed its rate-limit second, or its worker
    -- stopped first), refused for the account (401/403/404), or given up between retries because
    -- its campaign stopped running or its worker was stopping. Such a request placed no call.
    counted        boolean NOT NULL DEFAULT true,
    -- The caller ID (`from`) it was sent with.
    caller_id      text
);
CREATE INDEX dial_requests_campaign ON dial_requests (campaign_id, sent_at);
CREATE INDEX dial_requests_unmapped ON dial_requests (campaign_id) WHERE uuids_mapped = false;

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
-- Whether a call uuid belongs to an attempt already (reconcile).
CREATE INDEX call_events_call_uuid ON call_events (call_uuid);


-- 3. Calling hours, suppression, caps of calls per number -------------------------------------

-- The distinct sets of time zones of each campaign's contacts (written by each load): what the
-- claim walks to find the contacts whose window is open.
CREATE TABLE campaign_time_zones (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    time_zones  text[] NOT NULL,
    PRIMARY KEY (campaign_id, time_zones)
);

-- Kept by the contacts' triggers, whatever inserts them (a load, a script). The statement's
-- trigger also checks contacts.campaign_id as a foreign key would, once per statement rather
-- than once per row (a load COPYs a million rows): every campaign of the new rows must exist,
-- held FOR KEY SHARE until the transaction ends; the error is a foreign key's (23503,
-- contacts_campaign_id_fkey). Deleting or truncating campaigns deletes their contacts.
-- The foreign key's error for a contact of campaign p_campaign_id, which does not exist.
CREATE FUNCTION raise_missing_campaign(p_campaign_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'insert or update on table "contacts" violates foreign key constraint '
                    '"contacts_campaign_id_fkey"'
        USING ERRCODE = 'foreign_key_violation',
              DETAIL = format('Key (campaign_id)=(%s) is not present in table "campaigns".',
                              p_campaign_id),
              TABLE = 'contacts', COLUMN = 'campaign_id',
              CONSTRAINT = 'contacts_campaign_id_fkey';
END;
$$;

CREATE FUNCTION note_campaign_time_zones() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_missing  bigint;
    v_unzoned  boolean;
    v_zones    bigint;
BEGIN
    -- The new rows, read once: their campaigns (held as a foreign key holds them) and sets of
    -- zones. Every zone must be one the database knows: AT TIME ZONE raises for another, here,
    -- rather than in every later claim and status of the campaign.
    WITH sets AS (
        SELECT n.campaign_id, n.time_zones,
               bool_or(n.status = 'pending' AND cardinality(n.time_zones) = 0) AS unzoned
        FROM new_contacts n
        GROUP BY n.campaign_id, n.time_zones
    ), held AS (
        SELECT k.id, campaign_has_local_rules(k) AS local_rules
        FROM campaigns k
        WHERE k.id IN (SELECT s.campaign_id FROM sets s)
        FOR KEY SHARE
    ), noted AS (
        INSERT INTO campaign_time_zones (campaign_id, time_zones)
        SELECT s.campaign_id, s.time_zones FROM sets s JOIN held h ON h.id = s.campaign_id
        ON CONFLICT DO NOTHING
    )
    SELECT (SELECT min(s.campaign_id) FROM sets s
            WHERE NOT EXISTS (SELECT 1 FROM held h WHERE h.id = s.campaign_id)),
           -- A contact without zones is never dialled by a campaign with rules in local time.
           EXISTS (SELECT 1 FROM sets s JOIN held h ON h.id = s.campaign_id
                   WHERE s.unzoned AND h.local_rules),
           (SELECT count(now() AT TIME ZONE z.zone)
            FROM (SELECT DISTINCT u.zone
                  FROM sets s CROSS JOIN LATERAL unnest(s.time_zones) AS u(zone)) z)
    INTO v_missing, v_unzoned, v_zones;
    IF v_missing IS NOT NULL THEN
        PERFORM raise_missing_campaign(v_missing);
    END IF;
    IF v_unzoned THEN
        RAISE EXCEPTION 'contacts.time_zones is empty for a contact of a campaign with calling '
                        'hours, days or skipped dates: give each contact its time zones'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER contacts_time_zones_inserted
    AFTER INSERT ON contacts REFERENCING NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION note_campaign_time_zones();
CREATE FUNCTION note_contact_time_zones() RETURNS trigger
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

-- Row by row, and only for an UPDATE that sets time_zones (the claim and the recording never
-- do: a statement trigger on every UPDATE would cost each batch).
CREATE TRIGGER contacts_time_zones_updated
    AFTER UPDATE OF time_zones ON contacts
    FOR EACH ROW EXECUTE FUNCTION note_contact_time_zones();

-- A contact moved to another campaign (nothing in the engine does it) is checked row by row.
CREATE FUNCTION check_contact_campaign() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM campaigns k WHERE k.id = NEW.campaign_id FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM raise_missing_campaign(NEW.campaign_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER contacts_campaign_changed
    AFTER UPDATE OF campaign_id ON contacts
    FOR EACH ROW WHEN (NEW.campaign_id IS DISTINCT FROM OLD.campaign_id)
    EXECUTE FUNCTION check_contact_campaign();

-- Deleting a campaign deletes its contacts (as ON DELETE CASCADE did); truncating `campaigns`
-- truncates them.
CREATE FUNCTION delete_campaign_contacts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contacts WHERE campaign_id = OLD.id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER campaigns_contacts_deleted
    BEFORE DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION delete_campaign_contacts();

CREATE FUNCTION truncate_campaign_contacts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE contacts;
    RETURN NULL;
END;
$$;

CREATE TRIGGER campaigns_contacts_truncated
    BEFORE TRUNCATE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION truncate_campaign_contacts();

-- Do-not-call lists: a number on a list a campaign honours is never dialled by it (a load stores
-- it `suppressed`; the claim settles one suppressed since). The list `default` is every
-- campaign's; an opt-out goes there.
CREATE TABLE suppressions (
    list          text NOT NULL CHECK (list <> '' AND length(list) <= 100),
    destination   text NOT NULL CHECK (destination <> ''),
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- The version of the lists this row came with (set by its trigger; see below).
    added_version bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (list, destination)
);
CREATE INDEX suppressions_added ON suppressions (added_version);

-- A destination in E.164 (a '+' and 1 to 15 digits, the first not 0) as the integer of its
-- digits; NULL for any other text. One-to-one: two destinations with the same integer are the
-- same text (campaign.destinations.e164_number computes the same in Python).
-- (Not STRICT, so that PostgreSQL inlines it into the index expression and the queries: NULL
-- gives NULL all the same.)
CREATE FUNCTION e164_number(p_destination text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_destination ~ '^[+][1-9][0-9]{0,14}$'
                THEN substr(p_destination, 2)::bigint END
$$;

-- Where a load looks its E.164 numbers up (look_up_suppressions): integers compare several times
-- faster than text in the database's collation (3 µs a number by the primary key with 10M
-- listed, 0.8 µs by this index).
CREATE INDEX suppressions_number ON suppressions (e164_number(destination), list);

-- The lists' version: every statement that adds or changes suppressions takes the next one
-- (holding this row until it commits), and its rows carry it. A load notes the version it saw
-- in the statement that looked its numbers up (contacts.suppressions_version): a row it did not
-- see was committed after, so it carries a higher version, and the claim need only look at the
-- rows added since, not look each number up again.
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

-- A large list's Bloom filter (campaign/suppression_filter.py), so a load looks up only the
-- destinations the list may hold (with 10M listed, the listed ones and 0.2 % of the others):
-- every destination of the list's rows with added_version <= version is in `bits` (2 **
-- size_log2 bits, six a destination); rows removed since may still be (a false positive, looked
-- up and not found). `destinations`: how many were put in, to know when the filter is too full
-- for its size. `campaign suppress add` and each load bring it up to date with the rows added
-- since, whoever added them.
CREATE TABLE suppression_filters (
    list         text PRIMARY KEY,
    version      bigint NOT NULL,
    size_log2    smallint NOT NULL CHECK (size_log2 BETWEEN 10 AND 30),
    destinations bigint NOT NULL CHECK (destinations >= 0),
    -- How destinations set bits (campaign.suppression_filter.SCHEME): another is built again.
    scheme       smallint NOT NULL,
    bits         bytea NOT NULL CHECK (octet_length(bits) * 8 = 2 ^ size_log2),
    built_at     timestamptz NOT NULL DEFAULT now()
);
-- Random bits do not compress: stored as they are, without trying.
ALTER TABLE suppression_filters ALTER COLUMN bits SET STORAGE EXTERNAL;

-- Calls placed (fired or queued) per number, for the caps of calls per number per day; written
-- only while a cap applies, and rows older than a day are deleted by the workers.
CREATE TABLE number_calls (
    destination text NOT NULL,
    campaign_id bigint NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX number_calls_destination ON number_calls (destination, placed_at);
CREATE INDEX number_calls_placed ON number_calls USING brin (placed_at);
-- A number's calls in flight (claimed, being sent, or of unknown fate), which the caps count.
CREATE INDEX contacts_in_flight_destination ON contacts (destination)
    WHERE status IN ('claimed', 'sending', 'unknown');

-- Of p_zones, those whose local time at p_at is in the hours, on one of the days, and not on a
-- skipped date. The zone rules do daylight saving time.
CREATE FUNCTION open_time_zones(
    p_zones       text[],
    p_hours       timemultirange,
    p_days        text[],
    p_skip_dates  date[],
    p_at          timestamptz
) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(z.zone), '{}')
    FROM unnest(p_zones) AS z(zone)
    CROSS JOIN LATERAL (SELECT p_at AT TIME ZONE z.zone AS at) l
    WHERE (p_hours IS NULL OR l.at::time <@ p_hours)
      AND (p_days IS NULL
           OR (ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])[extract(isodow FROM l.at)::integer]
              = ANY (p_days))
      AND NOT (l.at::date = ANY (p_skip_dates))
$$;

-- Whether the campaign has any rule in its callees' local time (else zones do not matter).
CREATE FUNCTION campaign_has_local_rules(p_campaign campaigns) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_campaign.calling_hours IS NOT NULL OR p_campaign.calling_days IS NOT NULL
           OR cardinality(p_campaign.skip_dates) > 0
$$;

-- Whether a contact with these zones may be called at p_at: within the campaign's schedule, and,
-- when the campaign has local rules, with the window open in every one of its zones.
CREATE FUNCTION zone_set_open(p_campaign campaigns, p_zones text[], p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p_campaign.start_at <= p_at, true) AND coalesce(p_campaign.end_at > p_at, true)
           AND (NOT campaign_has_local_rules(p_campaign)
                OR (cardinality(p_zones) > 0
                    AND cardinality(open_time_zones(p_zones, p_campaign.calling_hours,
                                                    p_campaign.calling_days,
                                                    p_campaign.skip_dates, p_at))
                        = cardinality(p_zones)))
$$;

-- When the window of a set of zones next opens at or after p_from (NULL: not in 15 days).
CREATE FUNCTION next_window_opening(p_campaign campaigns, p_zones text[], p_from timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    -- The window of a set of zones opens when the last of its zones opens: at the start of one
    -- of their ranges (or at local midnight, when only days or dates rule), so the candidates
    -- are those starts, in each zone, over the next 15 days.
    SELECT min(c.at)
    FROM (
        SELECT greatest(p_from, p_campaign.start_at) AS at
        UNION ALL
        SELECT ((d.day + r.start) AT TIME ZONE z.zone) AS at
        FROM unnest(p_zones) AS z(zone)
        CROSS JOIN LATERAL generate_series(
            ((p_from AT TIME ZONE z.zone)::date - 1)::timestamp,
            ((p_from AT TIME ZONE z.zone)::date + 15)::timestamp,
            interval '1 day') AS d(day)
        CROSS JOIN LATERAL (
            SELECT lower(h) AS start
            FROM unnest(coalesce(p_campaign.calling_hours, '{[00:00,24:00)}'::timemultirange)) AS h
            UNION
            SELECT time '00:00'
        ) r
    ) c
    WHERE c.at >= p_from
      AND (p_campaign.end_at IS NULL OR c.at < p_campaign.end_at)
      AND zone_set_open(p_campaign, p_zones, c.at)
$$;

-- When a number at a cap of calls per day may be called again: the moment the call that keeps
-- it at the cap (of all campaigns' calls, p_all_cap, or of the campaign's own, p_own_cap) is 24 h
-- old; NULL when it is under both caps now.
CREATE FUNCTION number_call_wait(
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

-- Contacts not dialled by their campaign's end_at become `expired`; per campaign, how many.
CREATE FUNCTION expire_ended_campaigns() RETURNS TABLE (campaign_id bigint, expired integer)
LANGUAGE sql AS $$
    -- Contacts not dialled by their campaign's end_at never will be: `expired` (terminal).
    WITH expired AS (
        UPDATE contacts c
        SET status = 'expired', worker_id = NULL, lease_expires_at = NULL, updated_at = now(),
            last_error = 'the campaign ended (end_at ' || k.end_at || ') before it was dialled'
        FROM campaigns k
        WHERE k.id = c.campaign_id AND k.end_at <= now() AND k.status IN ('running', 'paused')
          AND c.status = 'pending'
        RETURNING c.campaign_id
    )
    SELECT e.campaign_id, count(*)::integer FROM expired e GROUP BY e.campaign_id
$$;

-- Calls Plivo may still hold queued (no ring yet) whose callee's window has closed, with the
-- request_uuids to cancel them by: the worker cancels them at Plivo.
CREATE FUNCTION queued_outside_window(p_campaign_ids bigint[])
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

-- Those cancelled at Plivo wait for their next window, the attempt not counted.
CREATE FUNCTION requeue_cancelled_calls(p_contact_ids bigint[]) RETURNS integer
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


-- 4. Rate limits, concurrent calls, priorities, caller IDs ----------------------------------------
-- Shared by every worker on every host (campaign/ratelimit.py names them and waits for slots).
-- Each limiter spaces what it hands out by 1/rate seconds (next_slot_at: the earliest time of
-- the next grant, seconds since the epoch on the database's clock); a limiter of calls also
-- counts the calls granted in the current clock second (window_second, window_used), so that
-- no clock second ever holds more than the rate.

CREATE TABLE rate_limiters (
    name          text PRIMARY KEY,
    next_slot_at  double precision NOT NULL DEFAULT 0,
    window_second bigint NOT NULL DEFAULT 0,
    window_used   integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The earliest start, at or after p_from, of a grant of p_wanted calls from the limiters
-- counted in p_counted (the first p_calls limiters count calls, the rest API requests), given
-- their state (next slot, clock second and calls used in it). A grant never leaves the clock
-- second it starts in, so no second ever holds more than ceil(rate) calls of a limiter.
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

-- Plan a grant of the rate limiters p_names (the first p_calls count calls, the rest API
-- requests), locking them until the transaction ends: the time the grant starts (slot_at), how
-- many calls it holds (granted, at most p_wanted), the clock, and when the limiters other than
-- the campaign's own (p_own) alone would start it (shared_at: a grant at slot_at > shared_at
-- would hold the shared limiters idle in between). p_pace_window_s caps a grant to the calls of
-- that many seconds, so calls are spread smoothly across each second. p_whole: the grant must
-- hold all p_wanted calls (a retry of a whole batch).
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

-- Charge p_used calls (one request) of a grant planned at p_at to the limiters. A limiter of
-- calls whose own next slot came less than one interval before p_at (the grant waited for
-- another limiter) counts on from that slot, not from p_at: a campaign's own cap keeps its pace
-- when the account's limiter delays it a little, and its clock second still holds no more calls
-- than its rate (earliest_dial_slot).
CREATE FUNCTION charge_dial_slots(
    p_names  text[],
    p_rates  double precision[],
    p_calls  integer,
    p_at     double precision,
    p_used   integer
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_names, 1), 0) LOOP
        IF i <= p_calls THEN
            UPDATE rate_limiters r
            SET next_slot_at = CASE WHEN p_at - r.next_slot_at BETWEEN 0 AND 1 / p_rates[i]
                                    THEN r.next_slot_at ELSE p_at END
                               + p_used / p_rates[i],
                window_used = CASE WHEN r.window_second = floor(p_at)
                                   THEN r.window_used + p_used ELSE p_used END,
                window_second = floor(p_at),
                updated_at = now()
            WHERE r.name = p_names[i];
        ELSE
            UPDATE rate_limiters r
            SET next_slot_at = p_at + 1 / p_rates[i], updated_at = now()
            WHERE r.name = p_names[i];
        END IF;
    END LOOP;
END;
$$;

-- New slots for a whole batch sent again (after a reply that proved it was not placed): all
-- p_calls calls in one second, and one request. By the claim's rule (claim_batch), nothing is
-- charged when the campaign's own limiters (p_own_limiters) would hold the shared ones idle:
-- retry_at says when to come back. Returns when to send and the clock now.
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

-- Take the next slot of one request limiter (look-ups and cancels outside the worker's
-- batches); returns how many seconds to wait before sending.
CREATE FUNCTION reserve_request_slot(p_name text, p_rate double precision)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    v_now  double precision := extract(epoch FROM clock_timestamp());
    v_at   double precision;
BEGIN
    INSERT INTO rate_limiters (name) VALUES (p_name) ON CONFLICT (name) DO NOTHING;
    SELECT greatest(next_slot_at, v_now) INTO v_at FROM rate_limiters WHERE name = p_name FOR UPDATE;
    UPDATE rate_limiters SET next_slot_at = v_at + 1 / p_rate, updated_at = now() WHERE name = p_name;
    RETURN greatest(v_at - v_now, 0);
END;
$$;

-- The calls that count towards a cap of concurrent calls: one row per contact, written by the
-- claim (while a cap applies) for the attempt it starts. Whether the call still counts is read
-- from the contact (live_call_counts), so nothing else need remember to end it: it counts while
-- claimed or being sent, then from Plivo's reply until its hangup callback, or, when that never
-- comes, until ring_timeout + time_limit + a minute after the reply. Rows that no longer count
-- are deleted by the next count.
CREATE TABLE counted_calls (
    contact_id   bigint PRIMARY KEY,
    campaign_id  bigint NOT NULL,
    -- The attempt (contacts.attempts once it started) the row counts.
    attempt      integer NOT NULL
);
CREATE INDEX counted_calls_campaign ON counted_calls (campaign_id);

-- Campaigns that want the account's calls from wants_from on (now: their last claim took
-- contacts, or waited only for the account's concurrent calls; later: their own cap's next
-- slot), noted until wants_until: a running campaign of lower priority claims no slot from
-- wants_from on meanwhile, only the ones before. Written only while such a campaign runs.
CREATE TABLE dial_demand (
    campaign_id  bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    wants_from   timestamptz NOT NULL,
    wants_until  timestamptz NOT NULL
);
-- The running campaigns by priority (the claim's look for lower ones).
CREATE INDEX campaigns_running_priority ON campaigns (priority) WHERE status = 'running';

-- A campaign's pool of caller IDs, in the order given, with the keys local presence matches a
-- callee's caller_id_group against (NULL when the number has no area code).
CREATE TABLE campaign_caller_ids (
    campaign_id  bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    caller_id    text NOT NULL,
    position     integer NOT NULL,
    area_key     text,
    country_key  text,
    PRIMARY KEY (campaign_id, caller_id)
);

-- Calls placed per caller ID and clock hour (every campaign's), for the caps per caller ID per
-- day and for spreading calls evenly over a pool; rows older than a day are deleted.
CREATE TABLE caller_id_calls (
    caller_id  text NOT NULL,
    hour       timestamptz NOT NULL,
    calls      integer NOT NULL,
    PRIMARY KEY (caller_id, hour)
);

-- Calls counting now towards the caps of concurrent calls (counted_calls): the account's (every
-- row, when p_whole_account) and the campaign's, and when the first of them stops counting by
-- itself (its hangup overdue; NULL: none will). With p_prune, rows that no longer count are
-- deleted: only by a caller holding the caps' locks (claim_batch), since a claim may be counting
-- such a row again.
CREATE FUNCTION live_call_counts(p_campaign_id bigint, p_whole_account boolean, p_prune boolean)
RETURNS TABLE (account_calls integer, campaign_calls integer, next_end timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_account   integer;
    v_campaign  integer;
    v_next      timestamptz;
BEGIN
    WITH seen AS (
        SELECT l.contact_id, l.campaign_id,
               CASE
                   -- Claimed or being sent: counted from the claim, so no cap is ever passed.
                   WHEN c.status = 'claimed' AND c.attempts + 1 = l.attempt
                       THEN 'infinity'::timestamptz
                   WHEN c.status = 'sending' AND c.attempts = l.attempt
                       THEN 'infinity'::timestamptz
                   -- Placed (or maybe placed) and no hangup yet: until it is overdue.
                   WHEN c.status IN ('fired', 'queued', 'unknown') AND c.attempts = l.attempt
                        AND (c.call_status IS NULL OR c.call_status IN ('ringing', 'in-progress'))
                       THEN coalesce(r.replied_at, r.sent_at)
                            + make_interval(secs => coalesce(k.ring_timeout, 60)
                                                    + coalesce(k.time_limit, 14400) + 60)
               END AS counts_until
        FROM counted_calls l
        LEFT JOIN contacts c ON c.id = l.contact_id
        LEFT JOIN campaigns k ON k.id = c.campaign_id
        LEFT JOIN dial_requests r ON r.id = c.dial_request_id
        WHERE p_whole_account OR l.campaign_id = p_campaign_id
    ), ended AS (
        -- Hung up, given back unsent, failed, redialled, gone: it no longer counts.
        DELETE FROM counted_calls d
        USING seen s
        WHERE p_prune AND d.contact_id = s.contact_id AND coalesce(s.counts_until <= now(), true)
    )
    SELECT count(*) FILTER (WHERE s.counts_until > now()),
           count(*) FILTER (WHERE s.counts_until > now() AND s.campaign_id = p_campaign_id),
           min(s.counts_until) FILTER (WHERE s.counts_until > now()
                                         AND s.counts_until < 'infinity')
    INTO v_account, v_campaign, v_next
    FROM seen s;
    RETURN QUERY SELECT v_account, v_campaign, v_next;
END;
$$;

-- Note from when a campaign wants the account's calls (dial_demand; NULL: it has none to place
-- now), which the running campaigns of lower priority read: only while such a campaign runs,
-- and a "now" at most once a second. One that stops wanting says so at once (NOTIFY
-- campaign_room), so that their workers claim again.
CREATE FUNCTION note_dial_demand(p_campaign campaigns, p_wants_from timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_wants_from IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM dial_demand d
                       WHERE d.campaign_id = p_campaign.id AND d.wants_from = p_wants_from)
           AND NOT (p_wants_from <= now()
                    AND EXISTS (SELECT 1 FROM dial_demand d
                                WHERE d.campaign_id = p_campaign.id AND d.wants_from <= now()
                                  AND d.wants_until > now() + interval '1 second'))
           AND EXISTS (SELECT 1 FROM campaigns k
                       WHERE k.status = 'running' AND k.priority < p_campaign.priority) THEN
            INSERT INTO dial_demand (campaign_id, wants_from, wants_until)
            VALUES (p_campaign.id, p_wants_from, greatest(p_wants_from, now()) + interval '2 seconds')
            ON CONFLICT (campaign_id) DO UPDATE
            SET wants_from = EXCLUDED.wants_from, wants_until = EXCLUDED.wants_until;
        END IF;
    ELSE
        DELETE FROM dial_demand d WHERE d.campaign_id = p_campaign.id;
        IF FOUND THEN
            PERFORM pg_notify('campaign_room', 'priority');
        END IF;
    END IF;
END;
$$;

-- Calls placed with a caller ID in the last day (by whole UTC hours: counting the whole oldest
-- hour errs on the side of the cap).
CREATE FUNCTION caller_id_calls_in_a_day(p_caller_id text) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(x.calls), 0)::integer
    FROM caller_id_calls x
    WHERE x.caller_id = p_caller_id
      AND x.hour >= date_trunc('hour', now() - interval '24 hours', 'UTC')
$$;

-- With local presence, which of a campaign's caller IDs may call a destination (by prefix):
-- those of its area code ('area:+1415'), else those of its country code ('country:+1'), else
-- any (NULL).
CREATE FUNCTION caller_id_group(p_campaign_id bigint, p_destination text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT p.area_key FROM campaign_caller_ids p
         WHERE p.campaign_id = p_campaign_id AND p.area_key IS NOT NULL
           AND starts_with(p_destination, substr(p.area_key, 6))
         ORDER BY length(p.area_key) DESC LIMIT 1),
        (SELECT p.country_key FROM campaign_caller_ids p
         WHERE p.campaign_id = p_campaign_id AND p.country_key IS NOT NULL
           AND starts_with(p_destination, substr(p.country_key, 9))
         ORDER BY length(p.country_key) DESC LIMIT 1))
$$;

-- The caller ID for a claim of p_campaign, of its pool (no row: none is free): of the numbers
-- under their cap of calls per day that may call p_group (a contact's caller_id_group; NULL:
-- any number; with p_due_only, only numbers some due contact may be called from), the one
-- whose own limiter has the earliest slot, then the one with the fewest calls in the last day
-- (so calls spread evenly), then the first given. With the groups of contacts it may call
-- besides those of no group, and its limiter's next slot as read (0: none yet).
CREATE FUNCTION choose_caller_id(p_campaign campaigns, p_group text, p_due_only boolean)
RETURNS TABLE (caller_id text, groups text[], next_slot_at double precision)
LANGUAGE sql STABLE AS $$
    SELECT p.caller_id, array_remove(ARRAY[p.area_key, p.country_key], NULL),
           coalesce(r.next_slot_at, 0)
    FROM campaign_caller_ids p
    CROSS JOIN LATERAL (SELECT caller_id_calls_in_a_day(p.caller_id) AS calls) u
    LEFT JOIN rate_limiters r ON p_campaign.calls_per_second_per_caller_id IS NOT NULL
                             AND r.name = 'caller_id:' || p.caller_id || ':calls'
    WHERE p.campaign_id = p_campaign.id
      AND (p_campaign.max_calls_per_caller_id_per_day IS NULL
           OR u.calls < p_campaign.max_calls_per_caller_id_per_day)
      AND (p_group IS NULL OR p_group = p.area_key OR p_group = p.country_key)
      AND (NOT p_due_only OR EXISTS (
          SELECT 1 FROM contacts t
          WHERE t.campaign_id = p_campaign.id AND t.status = 'pending'
            AND t.next_attempt_at <= now()
            AND (t.caller_id_group IS NULL OR t.caller_id_group = p.area_key
                 OR t.caller_id_group = p.country_key)))
    ORDER BY coalesce(r.next_slot_at, 0), u.calls, p.position
    LIMIT 1
$$;

-- 5. A batch: claim, write ahead, record --------------------------------------------------------
-- campaign/dialing.py follows one batch through these, one round trip each: claim_batch (which
-- writes the request ahead itself when its slot has come), else write_ahead_dial_request once
-- the slot comes; fence_dial_request before each time a refused request is sent again; then,
-- after Plivo's answer, exactly one of record_dial_reply, record_dial_failure or
-- unsend_dial_request. A crash between any two leaves each contact `claimed` (never sent) or
-- `sending` (maybe sent), which its lease resolves (section 6).

-- Start a dial attempt: the contacts (locked by the caller) become `sending` in a new request,
-- written with its destinations in the order given (the order it is sent in) and the caller ID
-- it is sent with; the attempt is counted and the previous call's outcome cleared (it stays in
-- call_events and dial_attempts). The one definition of an attempt's start, for the claim and
-- for the write-ahead.
CREATE FUNCTION start_dial_attempts(
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

-- Claim up to p_wanted due contacts of a running campaign within every limit, in one round trip;
-- always one row. p_call_limiters / rates: the account's calls per second and the campaign's
-- own; p_request_limiters / rates: Plivo's 300 requests per 5 s; p_own_limiters: those of them
-- that are the campaign's alone. The limits are charged only for contacts actually claimed, at
-- the slot they use. A campaign's own cap only ever delays that campaign: when its own limiters
-- (its calls per second, its caller ID's) put the grant more than p_shared_slack_s after the
-- shared limiters' next slot, nothing is claimed or charged and retry_at says when to come back.
-- The same when a running campaign of higher priority wants the account's calls (waiting_for
-- 'priority'), when a cap of concurrent calls is reached (the account's, p_account_max_concurrent,
-- or the campaign's: waiting_for 'calls', retry_at when the first call stops counting by
-- itself; hangups NOTIFY campaign_room) or when every caller ID of its pool had its calls of the
-- day ('caller_id'). send_at is when the batch may be sent (database clock, seconds since the
-- epoch); db_now the clock as the claim ends. When send_at is at most p_write_ahead_within_s
-- away, the claim writes the request ahead (start_dial_attempts) and dial_request_id is set;
-- otherwise the contacts are `claimed` and the worker writes the request ahead once its slot
-- comes. contact_ids and destinations are in contact id order, the order the request is sent in;
-- empty when nothing was claimed. caller_id: the `from` to send them with.
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

-- Write ahead a batch claimed ahead of its slot: of p_contact_ids, those still claimed by this
-- worker in a campaign still running start their attempt in a new request, with the caller ID
-- the claim chose. A contact taken meanwhile (the campaign paused or cancelled, the lease
-- recovered) is not sent. No row is written when none is left (dial_request_id NULL, empty
-- arrays).
CREATE FUNCTION write_ahead_dial_request(
    p_campaign_id  bigint,
    p_worker_id    text,
    p_contact_ids  bigint[],
    p_lease_s      double precision
) RETURNS TABLE (dial_request_id bigint, contact_ids bigint[], destinations text[],
                 caller_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_ids       bigint[];
    v_dests     text[];
    v_caller_id text;
    v_request   bigint;
BEGIN
    SELECT coalesce(array_agg(held.id ORDER BY held.id), '{}'),
           coalesce(array_agg(held.destination ORDER BY held.id), '{}'),
           min(held.caller_id)
    INTO v_ids, v_dests, v_caller_id
    FROM (
        SELECT c.id, c.destination, c.caller_id
        FROM contacts c
        WHERE c.id = ANY (p_contact_ids)
          AND c.status = 'claimed'
          AND c.worker_id = p_worker_id
          AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running')
        FOR UPDATE OF c
    ) held;
    IF cardinality(v_ids) > 0 THEN
        v_request := start_dial_attempts(p_campaign_id, p_worker_id, v_ids, v_dests, p_lease_s,
                                         v_caller_id);
    END IF;
    RETURN QUERY SELECT v_request, v_ids, v_dests, v_caller_id;
END;
$$;

-- Before a request Plivo refused (not placed) is sent again: in one statement, extend its
-- contacts' lease, and check that its campaign still runs and that every contact is still
-- `sending` in it for this worker (a lease that ran out made them unknown, and reconcile may
-- dial them again). NULL: send it; otherwise why not (the retry is given up, not sent).
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
-- Lock a request's row if it is not settled yet: every settling function below starts here, so
-- a request is settled once, and a late or repeated settle (a worker stopping, a retried write)
-- never overwrites what was recorded.
CREATE FUNCTION lock_unsettled_dial_request(p_request_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM dial_requests d WHERE d.id = p_request_id AND d.outcome IS NULL FOR UPDATE;
    RETURN FOUND;
END;
$$;

-- Plivo accepted the request: per contact fired, queued, or failed (an invalid number), with its
-- request_uuid when the reply could be mapped. Returns the contacts recorded (a contact whose
-- lease ran out meanwhile, now `unknown`, takes the reply too), or NULL when the request was
-- settled already.
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
    p_sends          integer,
    p_log_calls      boolean
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
    WITH recorded AS (
        UPDATE contacts c
        SET status = v_by_contact -> c.id::text ->> 0,
            request_uuid = v_by_contact -> c.id::text ->> 1,
            api_id = p_api_id, plivo_message = p_message, http_status = p_http_status,
            last_error = v_by_contact -> c.id::text ->> 2,
            worker_id = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE c.id = ANY (p_contact_ids) AND c.dial_request_id = p_request_id
          AND c.status IN ('sending', 'unknown')
        RETURNING c.destination, c.campaign_id, c.status
    ), logged AS (
        -- Calls placed, for the caps of calls per number per day (only when one applies).
        INSERT INTO number_calls (destination, campaign_id)
        SELECT r.destination, r.campaign_id FROM recorded r
        WHERE p_log_calls AND r.status IN ('fired', 'queued')
    )
    SELECT count(*) INTO v_recorded FROM recorded;
    UPDATE dial_requests
    SET replied_at = now(), latency_ms = p_latency_ms, outcome = p_outcome,
        http_status = p_http_status, api_id = p_api_id, plivo_message = p_message,
        request_uuids = p_reply_uuids, uuids_mapped = p_uuids_mapped, attempts = p_sends
    WHERE id = p_request_id;
    RETURN v_recorded;
END;
$$;

-- The request failed as a whole; p_outcome is the failure class (campaign/plivo/errors.py):
--   not_sent: back to pending after a back-off, or failed once out of attempts;
--   account_problem: back to pending untouched (the attempt is not counted), campaign paused;
--   rejected: failed; unknown: unknown, never sent again without reconciling.
-- Returns the contacts recorded (NULL when the request was settled already) and whether the
-- campaign was paused.
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

-- A request written ahead that placed no call and does not count as an attempt: never sent
-- (p_sends = 0: it missed the clock second of its rate-limit slots, or its worker stopped
-- first), or sent p_sends times, each refused as not placed, and given up because its campaign
-- stopped running or its worker is stopping. Its contacts go back to pending (cancelled, in a
-- cancelled campaign) as if never claimed, the attempt uncounted, without a back-off. Returns
-- how many went back (NULL when the request was settled already).
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


-- 6. Leases ------------------------------------------------------------------------------------------

-- Leases that ran out: a contact claimed but never sent goes back to pending; one that was
-- being sent (maybe placed by Plivo) becomes unknown and is never sent again without reconciling.
-- Every worker runs this on a timer of its own (and `campaign status` and `reconcile` before they
-- read), so a dead worker's contacts come back within a lease and a poll interval.
CREATE FUNCTION recover_expired_leases() RETURNS integer
LANGUAGE sql AS $$
    WITH recovered AS (
        UPDATE contacts c
        SET status = CASE WHEN c.status = 'claimed' THEN 'pending' ELSE 'unknown' END,
            last_error = CASE WHEN c.status = 'claimed' THEN c.last_error
                              ELSE 'lease of worker ' || c.worker_id || ' ran out while sending' END,
            worker_id = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE c.id IN (
            SELECT t.id FROM contacts t
            WHERE t.status IN ('claimed', 'sending') AND t.lease_expires_at < now()
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*)::integer FROM recovered
$$;


-- 7. Callbacks ---------------------------------------------------------------------------------------

-- Record one callback for the contact `p_destination` of campaign `p_campaign_id`, in one round
-- trip: the event (once, however often Plivo retries it), the contact's call outcome, the
-- request_uuid of an unsettled batch (or one a positional mapping got wrong), and a redial when
-- the campaign asks for one. Returns what happened: 'recorded', 'redial', 'duplicate',
-- 'retry' (the contact's request is still being recorded: nothing changed, try again), or
-- 'unknown' (no contact of this campaign has that destination and request_uuid; nothing changed).
-- A callback for an `unknown` contact (whose request got no reply) settles it as `fired`.
-- Called by record_call_events, which holds the campaigns' rows locked (FOR SHARE) first.
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


-- 8. Completion ------------------------------------------------------------------------------------

-- Whether a call of the campaign still waits (up to p_callback_wait_s) for its hangup: one it
-- may redial, or any call of a campaign that tracks its calls (so that it completes, and
-- campaign.completed is written, only once their outcomes are in).
CREATE FUNCTION campaign_awaits_hangups(p_campaign_id bigint,
                                        p_callback_wait_s double precision)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1
        FROM campaigns k
        JOIN contacts t ON t.campaign_id = k.id
        WHERE k.id = p_campaign_id
          AND (k.track_calls OR (cardinality(k.redial_on) > 0 AND t.attempts < k.max_attempts))
          AND t.status IN ('fired', 'queued')
          AND (t.call_status IS NULL OR t.call_status IN ('ringing', 'in-progress'))
          AND t.updated_at > now() - make_interval(secs => p_callback_wait_s)
    )
$$;

-- Whether a campaign has contacts that may still be dialled: pending (whether their window is
-- open or not), claimed or sending, or fired/queued and waiting for their hangup
-- (campaign_awaits_hangups).
CREATE FUNCTION campaign_has_work(p_campaign_id bigint, p_callback_wait_s double precision)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM contacts t
        WHERE t.campaign_id = p_campaign_id AND t.status IN ('pending', 'claimed', 'sending')
    ) OR campaign_awaits_hangups(p_campaign_id, p_callback_wait_s)
$$;

-- Whether some contact can be dialled now, or will be due later (what `campaign worker --drain`
-- waits for).
CREATE FUNCTION campaign_has_work_now(p_campaign_id bigint) RETURNS boolean
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


-- 9. Views: the public SQL interface (documented in README.md) ------------------------------------

-- One row per campaign: how many of its contacts are in each status, how the calls of settled
-- contacts ended, and how many pending ones wait for their calling window now. The counts are a lateral subquery so that filtering on the campaign
-- (by name or id) reads only that campaign's contacts. Columns are only ever added at the end.
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

-- One row per dial attempt of a contact (as contacts.attempts counts them: dial_requests.counted),
-- with the call's outcome when a hangup callback told it.
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


-- 10. Compatibility ------------------------------------------------------------------------------
-- Kept for workers of the previous release while a rolling upgrade runs; they get today's rules.

-- The previous release's claim_batch (no account cap of concurrent calls; it sends with the
-- campaign's "from"): today's rules otherwise.
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
    p_write_ahead_within_s   double precision,
    p_max_calls_per_number   integer
) RETURNS TABLE (contact_ids bigint[], destinations text[], send_at double precision,
                 db_now double precision, dial_request_id bigint, retry_at double precision)
LANGUAGE sql AS $$
    SELECT b.contact_ids, b.destinations, b.send_at, b.db_now, b.dial_request_id, b.retry_at
    FROM claim_batch(p_campaign_id, p_worker_id, p_wanted, p_lease_s, p_pace_window_s,
                     p_call_limiters, p_call_rates, p_request_limiters, p_request_rates,
                     p_own_limiters, p_shared_slack_s, p_write_ahead_within_s,
                     p_max_calls_per_number, NULL::integer) AS b
$$;

-- The previous release's claim (a row per contact; its campaign limiters are named
-- campaign:<id>:calls), which recovers expired leases as that release's workers expect.
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
                     0.02, p_write_ahead_within_s, NULL) AS b
    CROSS JOIN LATERAL unnest(b.contact_ids, b.destinations) AS u(contact_id, destination);
END;
$$;

-- The previous release's slots for a retried batch (all limiters charged at once).
CREATE FUNCTION reserve_dial_slots(
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


-- 11. The HTTP API (/api/v1/) ---------------------------------------------------------------------

-- API keys: a key is shown once, when created; only its SHA-256 is kept (a key is 32 random
-- bytes, so a plain hash is as strong as a slow one would be). A revoked key stays, so that its
-- name is not reused by mistake and the idempotency records keep their owner.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 100),
    key_sha256  bytea NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
    read_only   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The answer to each POST sent with an Idempotency-Key, per API key, kept 24 hours: a retry with
-- the same key and body gets it again, with another body 422. A row without a status is a
-- request still being answered.
CREATE TABLE api_idempotency (
    api_key_id      bigint NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    request_sha256  bytea NOT NULL,
    status          smallint,
    content_type    text,
    body            bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);

-- The rejected rows of a load made through the API (its answer shows the first 1,000; all of
-- them are at /api/v1/loads/{id}/rejects).
CREATE TABLE api_loads (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    summary     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE api_load_rejects (
    load_id     bigint NOT NULL REFERENCES api_loads (id) ON DELETE CASCADE,
    line_number integer NOT NULL,
    value       text NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX api_load_rejects_load ON api_load_rejects (load_id, line_number);


-- 12. Webhooks -----------------------------------------------------------------------------------
-- Events about campaigns and contacts, signed and sent to the user's own HTTP endpoint
-- (campaign/webhooks/). Triggers write each event into an outbox (webhook_deliveries) in the
-- very transaction of the change it tells of, whatever code path made the change, so a change
-- that rolled back sends nothing and a committed one is delivered even if its process dies
-- right after. Only campaigns with an endpoint pay for it: the contacts' triggers fire only for
-- a change into a settled status, and then look the campaign up in webhook_campaigns.

-- Where events go: one row per URL, with the secret they are signed with (`whsec_` and base64;
-- CAMPAIGN_WEBHOOK_SECRET, when set, signs instead). 410 Gone disables an endpoint, and so do
-- failures without a success for days.
CREATE TABLE webhook_endpoints (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url              text NOT NULL UNIQUE CHECK (url ~ '^https?://'),
    secret           text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz,
    disabled_reason  text,
    -- Its health: when a delivery last succeeded (to the minute), and since when every attempt
    -- has failed (NULL while it succeeds). Failing without a success for
    -- CAMPAIGN_WEBHOOK_DISABLE_AFTER_S disables it at its next failed attempt.
    last_success_at  timestamptz,
    failing_since    timestamptz
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
-- A contact's timeline (the dashboard) lists its webhook deliveries, whatever their status.
CREATE INDEX webhook_deliveries_contact_any ON webhook_deliveries (contact_id, id)
    WHERE contact_id IS NOT NULL;

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


-- 13. The dashboard (/) ---------------------------------------------------------------------------

-- A dashboard session: only the SHA-256 of the cookie's token is kept (the token is 32 random
-- bytes). It ends at logout, when its key is revoked, or after CAMPAIGN_DASHBOARD_IDLE_S without
-- a request (last_seen_at, on the database's clock).
CREATE TABLE dashboard_sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    api_key_id    bigint NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboard_sessions_last_seen ON dashboard_sessions (last_seen_at);

-- Every action taken on the dashboard: who (the key's name), what, on which campaign, when.
CREATE TABLE dashboard_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    key_name  text NOT NULL,
    action    text NOT NULL,
    campaign  text,
    detail    jsonb NOT NULL DEFAULT '{}'
);

-- Failed logins, by the address they came from: too many in a window and that address is
-- refused (429) until the window has slid past them.
CREATE TABLE dashboard_login_failures (
    address  text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboard_login_failures_address ON dashboard_login_failures (address, at);
