-- Named statements: each block starts with a line `-- name --` and runs to the next block.
-- Binds are $n only; campaign/queries/ gives each block one typed function, the only code that
-- binds them. The tables and functions they use are defined in schema.sql.

-- === Campaigns =================================================================================

-- create_campaign --
INSERT INTO campaigns (
    name, status, "from", answer_url, answer_method, ring_url, ring_method, hangup_url,
    hangup_method, fallback_url, fallback_method, caller_name, send_digits, send_on_preanswer,
    time_limit, hangup_on_ring, machine_detection, machine_detection_time, machine_detection_url,
    machine_detection_method, sip_headers, ring_timeout, calls_per_second, batch_size,
    max_attempts, redial_on, redial_delays_s, calling_hours, calling_days, skip_dates, start_at,
    end_at, default_time_zone, suppression_lists, max_calls_per_number_per_day, priority,
    max_concurrent_calls, caller_id_mode, calls_per_second_per_caller_id,
    max_calls_per_caller_id_per_day, message, voice, language, play_url, play_after_url,
    answer_template, gather, gather_prompt, gather_timeout_s, gather_retries, after_keypress,
    on_machine, voicemail_message, webhook_endpoint_id
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
    $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38,
    $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52, $53,
    webhook_endpoint_for($54)
)
RETURNING *;

-- serve_campaign_answers --
-- The engine serves the campaign's answer XML: Plivo fetches it from $2 (the public base URL),
-- the campaign id in the query string.
UPDATE campaigns
SET answer_url = $2 || '/plivo/answer?campaign=' || id, answer_method = 'POST',
    updated_at = now()
WHERE id = $1
RETURNING *;

-- add_caller_ids --
-- A new campaign's pool of caller IDs ($2, in order), with the area ($3) and country ($4) keys
-- local presence matches callees against.
INSERT INTO campaign_caller_ids (campaign_id, caller_id, position, area_key, country_key)
SELECT $1, u.caller_id, u.position, u.area_key, u.country_key
FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
     AS u(caller_id, area_key, country_key, position);

-- caller_ids --
-- A campaign's pool of caller IDs, in order, with the calls each placed in the last day.
SELECT p.caller_id, caller_id_calls_in_a_day(p.caller_id) AS calls_in_a_day
FROM campaign_caller_ids p
WHERE p.campaign_id = $1
ORDER BY p.position;

-- live_calls --
-- Calls counting now towards campaign $1's cap of concurrent calls, and the account's ($2:
-- whether the account has a cap, so every campaign's calls are counted).
SELECT account_calls, campaign_calls FROM live_call_counts($1, $2, false);

-- track_campaign_calls --
-- Point a campaign's ring and hangup callbacks (and machine detection's, when it is on) at
-- this engine: $2 is the public base URL; the campaign id rides in the query string.
UPDATE campaigns
SET track_calls = true,
    ring_url = $2 || '/plivo/ring?campaign=' || id,
    hangup_url = $2 || '/plivo/hangup?campaign=' || id,
    machine_detection_url = CASE WHEN machine_detection IS NOT NULL
                                 THEN $2 || '/plivo/machine?campaign=' || id END,
    updated_at = now()
WHERE id = $1
RETURNING *;

-- campaign_by_name --
SELECT * FROM campaigns WHERE name = $1;

-- campaign_by_name_for_update --
SELECT * FROM campaigns WHERE name = $1 FOR UPDATE;

-- campaign_by_name_for_load --
-- A load's hold on an existing campaign for its whole transaction: FOR KEY SHARE keeps the
-- campaign from completing (lock_finished_campaigns takes FOR UPDATE) while its contacts are
-- added, without holding up pause, resume or cancel (an UPDATE of its status).
SELECT * FROM campaigns WHERE name = $1 FOR KEY SHARE;

-- hold_campaign_for_load --
-- Loads into one campaign ($1, its name) run one after the other: a load into an existing
-- campaign waits here, before it takes any lock on the campaign's row, until any other load
-- into it commits or rolls back, so that its look-ups see every number the other stored (they
-- COPY, which cannot skip a number another transaction holds) and the two never wait for each
-- other's hold on the row (each takes it FOR UPDATE as it ends).
SELECT pg_advisory_xact_lock(hashtextextended('load:campaign:' || $1::text, 0));

-- lock_campaign_status --
-- The campaign's status now, its row locked until the transaction ends (waiting for a status
-- change in progress): what a load reads before it commits.
SELECT status FROM campaigns WHERE id = $1 FOR UPDATE;

-- sending_count --
-- How many of the campaign's contacts are in a request in flight.
SELECT count(*) FROM contacts WHERE campaign_id = $1 AND status = 'sending';

-- campaign_status --
SELECT status FROM campaigns WHERE id = $1;

-- set_campaign_status --
-- pause / resume / cancel: $2 is the new status, allowed from the statuses in $3.
UPDATE campaigns
SET status = $2, status_reason = NULL, updated_at = now()
WHERE name = $1 AND status = ANY ($3::text[])
RETURNING *;

-- set_pacing --
-- campaign set: the campaign's own calls per second when $2 ($3; NULL lifts its cap), its batch
-- size unless $4 is NULL, its priority unless $5 is NULL, its cap of concurrent calls when $6
-- ($7; NULL lifts it). Workers read it with the campaign list, within a poll interval; the
-- claims read the priority and the cap from the row itself.
UPDATE campaigns
SET calls_per_second = CASE WHEN $2 THEN $3::double precision ELSE calls_per_second END,
    batch_size = coalesce($4::integer, batch_size),
    priority = coalesce($5::integer, priority),
    max_concurrent_calls = CASE WHEN $6 THEN $7::integer ELSE max_concurrent_calls END,
    updated_at = now()
WHERE name = $1
RETURNING *;

-- lock_campaign_calls --
-- The lock a claim of campaign $1 counts its concurrent calls under (schema.sql: claim_batch),
-- held until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('calls:campaign:' || $1::bigint, 0));

-- count_calls_in_flight --
-- A cap of concurrent calls set on campaign $1 while it runs counts the calls it has in flight
-- already (claims write counted_calls only while a cap applies); those over stop counting as
-- their contacts settle (schema.sql: live_call_counts).
INSERT INTO counted_calls (contact_id, campaign_id, attempt)
SELECT c.id, c.campaign_id, c.attempts + CASE WHEN c.status = 'claimed' THEN 1 ELSE 0 END
FROM contacts c
WHERE c.campaign_id = $1
  AND (c.status IN ('claimed', 'sending')
       OR (c.status IN ('fired', 'queued', 'unknown')
           AND (c.call_status IS NULL OR c.call_status IN ('ringing', 'in-progress'))))
ON CONFLICT (contact_id) DO NOTHING;

-- restart_limiter --
-- A limiter whose rate changed ($1: its name): its next slot no later than now, so that a
-- faster rate applies to the next claim, not after the slots granted at the old one.
UPDATE rate_limiters
SET next_slot_at = least(next_slot_at, extract(epoch FROM clock_timestamp()))
WHERE name = $1;

-- cancel_contacts --
-- Contacts of a cancelled campaign that were not dialled yet. Claimed ones are taken from the
-- worker holding them: its write-ahead finds them no longer claimed and does not send them.
WITH cancelled AS (
    UPDATE contacts
    SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE campaign_id = $1 AND status IN ('pending', 'claimed')
    RETURNING 1
)
SELECT count(*) FROM cancelled;

-- reopen_campaign --
UPDATE campaigns SET status = 'running', updated_at = now()
WHERE id = $1 AND status = 'completed';

-- answer_contacts --
-- The contacts calls are for, with their CSV fields (the answer is rendered from them): call i
-- is to $2[i] in campaign $1[i]; a row for each call whose contact exists, `call_index` i (from
-- 1). Many calls in one round trip, each an index look-up on (campaign_id, destination): Plivo
-- asks for the answers of thousands of calls a second. The campaign's row is not joined: it
-- never changes after the load, and the answer handler keeps it (campaigns_by_id).
SELECT l.call_index, c.id AS contact_id, c.campaign_id, c.fields AS contact_fields
FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS l (campaign_id, destination, call_index)
JOIN contacts c ON c.campaign_id = l.campaign_id AND c.destination = l.destination;

-- campaigns_by_id --
SELECT * FROM campaigns WHERE id = ANY ($1::bigint[]);

-- record_machine_action --
-- An answering machine took the call of campaign $1 to $2 (call uuid $4); the answer did $3:
-- on the contact (its latest attempt) and, per attempt, as a `machine` call event (once per
-- call: Plivo may fetch the answer again).
WITH machine AS (
    UPDATE contacts
    SET machine = true, machine_action = $3, updated_at = now()
    WHERE campaign_id = $1 AND destination = $2
    RETURNING id, dial_request_id, request_uuid
)
INSERT INTO call_events (event, campaign_id, contact_id, dial_request_id, request_uuid, call_uuid,
                         call_status, payload, dedupe_key)
SELECT 'machine', $1, m.id, m.dial_request_id, m.request_uuid, $4, 'in-progress',
       jsonb_build_object('Machine', 'true', 'MachineAction', $3::text),
       'answer-machine:' || m.id || ':' || coalesce($4, m.dial_request_id::text, '')
FROM machine m
ON CONFLICT (dedupe_key) DO NOTHING;

-- record_keypress --
-- A key pressed on a call of campaign $1 to $2 (schema.sql: record_keypress).
SELECT result, contact_id FROM record_keypress($1, $2, $3, $4, $5, $6);

-- opt_outs --
-- The numbers of campaign $1 whose callee pressed a key meaning `opt-out`, with their entry on
-- list `default` (record_keypress put them there; NULL when `suppress remove` took one off
-- since). Read from the responses index on (campaign_id, meaning).
SELECT c.destination, s.reason, s.created_at
FROM (SELECT DISTINCT r.contact_id FROM responses r
      WHERE r.campaign_id = $1 AND r.meaning = 'opt-out') o
JOIN contacts c ON c.id = o.contact_id
LEFT JOIN suppressions s ON s.list = 'default' AND s.destination = c.destination
ORDER BY c.destination;

-- notify_work --
-- Wakes every worker: a campaign was loaded, resumed, or got contacts to dial.
SELECT pg_notify('campaign_work', $1::bigint::text);

-- progress_by_name --
SELECT * FROM campaign_progress WHERE campaign = $1;

-- calling_window --
-- A campaign's row ($1: its name) and when the first window of its pending contacts that wait
-- for theirs opens: the candidate moments (each start of a range, and local midnight, in each
-- zone of the sets closed now, over 15 days) in time order, the first at which one of those
-- sets is open.
SELECT k.*,
       (WITH waiting AS (
            SELECT z.time_zones
            FROM campaign_time_zones z
            WHERE z.campaign_id = k.id
              AND NOT zone_set_open(k, z.time_zones, now())
              AND EXISTS (SELECT 1 FROM contacts t
                          WHERE t.campaign_id = k.id
                            AND hash_array(t.time_zones) = hash_array(z.time_zones)
                            AND t.time_zones = z.time_zones
                            AND t.status = 'pending')
        ), candidates AS (
            SELECT greatest(now(), k.start_at) AS at
            UNION
            SELECT (d.day + r.start) AT TIME ZONE u.zone
            FROM (SELECT DISTINCT w.zone
                  FROM waiting CROSS JOIN LATERAL unnest(waiting.time_zones) AS w(zone)) u
            CROSS JOIN LATERAL generate_series(
                ((now() AT TIME ZONE u.zone)::date - 1)::timestamp,
                ((now() AT TIME ZONE u.zone)::date + 15)::timestamp,
                interval '1 day') AS d(day)
            CROSS JOIN LATERAL (
                SELECT lower(h) AS start
                FROM unnest(coalesce(k.calling_hours, '{[00:00,24:00)}'::timemultirange)) AS h
                UNION
                SELECT time '00:00'
            ) r
        )
        SELECT c.at
        FROM candidates c
        WHERE EXISTS (SELECT 1 FROM waiting)
          AND c.at >= now() AND (k.end_at IS NULL OR c.at < k.end_at)
          AND EXISTS (SELECT 1 FROM waiting w WHERE zone_set_open(k, w.time_zones, c.at))
        ORDER BY c.at
        LIMIT 1) AS next_opening
FROM campaigns k
WHERE k.name = $1;

-- progress_all --
SELECT * FROM campaign_progress ORDER BY campaign_id;

-- redials --
-- Campaign $1's calls that were followed by another attempt (of `dial_attempts`), by the call
-- status that made the campaign dial again (NULL: none came; `unknown` here), and in all (the
-- row whose `total` is true): how many calls, and how many contacts they were. GROUPING SETS
-- counts the distinct contacts of the whole once, which adding up the statuses would not.
WITH attempts AS (
    SELECT a.contact_id,
           coalesce(a.call_status, 'unknown') AS call_status,
           a.attempt < max(a.attempt) OVER (PARTITION BY a.contact_id) AS redialled
    FROM dial_attempts a
    WHERE a.campaign_id = $1
)
SELECT call_status, grouping(call_status) = 1 AS total, count(*) AS calls,
       count(DISTINCT contact_id) AS contacts
FROM attempts
WHERE redialled
GROUP BY GROUPING SETS ((call_status), ())
ORDER BY total, calls DESC, call_status;

-- === Loading a CSV =============================================================================

-- look_up_suppressions --
-- Which of the destinations a load is about to store (those its lists' filters may hold) are on
-- one of the lists ($1) of its campaign, with the list (the first by name). The load runs it on
-- a connection of its own, one batch ahead of its COPYs (it needs nothing of the load's
-- transaction; the lists' version its contacts note is the one its filters reached,
-- campaign/suppression_filter.py). The numbers in E.164 come as integers ($2, by e164_number)
-- and are looked up by the index suppressions_number (0.8 µs a number with 10M listed, against
-- 3 µs by the text of the primary key); the others ($3, SIP URIs) by the primary key.
SELECT ARRAY(SELECT ARRAY[x.destination, x.list]
             FROM (SELECT DISTINCT ON (x.destination) x.destination, x.list
                   FROM (SELECT x.destination, x.list
                         FROM suppressions x
                         WHERE e164_number(x.destination) = ANY ($2::bigint[])
                           AND x.list = ANY ($1::text[])
                         UNION ALL
                         SELECT x.destination, x.list
                         FROM suppressions x
                         WHERE x.destination = ANY ($3::text[]) AND x.list = ANY ($1::text[])) x
                   ORDER BY x.destination, x.list) x) AS suppressed;

-- look_up_new_contacts --
-- What a load needs to know in its own transaction of numbers it is about to store in campaign
-- $1: which of $3 (those it may have stored already) the campaign has, and with local presence
-- ($4) each number of $2's group of the campaign's caller IDs (caller_id_group, in the order of
-- $2). The campaign's id reaches the look-up of its contacts as a value the planner cannot see
-- (OFFSET 0): planned with it, on statistics made before the campaign existed, it took the id
-- for a rare one and walked every contact of the campaign through another index, once per batch
-- (a 1M-row load into a second campaign: 27 s instead of 17); unseen, only the unique key
-- (campaign_id, destination) fits.
SELECT ARRAY(SELECT d.destination
             FROM (SELECT $1::bigint AS id OFFSET 0) k
             CROSS JOIN unnest($3::text[]) AS d(destination)
             WHERE EXISTS (SELECT 1 FROM contacts c
                           WHERE c.campaign_id = k.id AND c.destination = d.destination))
           AS present,
       CASE WHEN $4::boolean THEN
           ARRAY(SELECT caller_id_group($1, d.destination)
                 FROM unnest($2::text[]) WITH ORDINALITY AS d(destination, position)
                 ORDER BY d.position)
       END AS caller_id_groups;

-- create_load_staging --
-- Where a load into an existing campaign COPYs its rows (contacts' columns as the load writes
-- them), dropped at commit.
CREATE TEMPORARY TABLE load_staging (
    campaign_id          bigint NOT NULL,
    line_number          integer NOT NULL,
    raw_destination      text NOT NULL,
    destination          text NOT NULL,
    fields               jsonb NOT NULL,
    time_zones           text[] NOT NULL,
    status               text NOT NULL,
    last_error           text,
    suppressions_version bigint NOT NULL,
    caller_id_group      text
) ON COMMIT DROP;

-- insert_staged_contacts --
-- The staged rows into contacts, in the order they were staged (grouped by time zones), those the
-- campaign has already skipped by its unique key (which also waits for, then skips, a number
-- another session is inserting). Returns (inserted, of them suppressed).
WITH inserted AS (
    INSERT INTO contacts (campaign_id, line_number, raw_destination, destination, fields,
                          time_zones, status, last_error, suppressions_version, caller_id_group)
    SELECT campaign_id, line_number, raw_destination, destination, fields, time_zones, status,
           last_error, suppressions_version, caller_id_group
    FROM load_staging
    ON CONFLICT (campaign_id, destination) DO NOTHING
    RETURNING status
)
SELECT count(*) AS inserted, count(*) FILTER (WHERE status = 'suppressed') AS suppressed
FROM inserted;

-- truncate_load_staging --
TRUNCATE load_staging;

-- first_window_opening --
-- When the calling window of a set of zones ($2) first opens for campaign $1, from its start
-- (NULL: not within 15 days of it, or not before the campaign's end).
SELECT next_window_opening(k, $2::text[], greatest(now(), coalesce(k.start_at, now())))
FROM campaigns k
WHERE k.id = $1;

-- time_zone_names --
-- The time zones the database knows: a contact's zones must be among them.
SELECT name FROM pg_timezone_names;

-- === The worker: what to dial, and completion ==================================================

-- dialable_campaigns --
-- Running campaigns with contacts due now, with what a request needs ($1: only these ids, or
-- NULL for all).
SELECT c.*
FROM campaigns c
WHERE c.status = 'running'
  AND ($1::bigint[] IS NULL OR c.id = ANY ($1::bigint[]))
  AND EXISTS (
      SELECT 1 FROM contacts t
      WHERE t.campaign_id = c.id AND t.status = 'pending' AND t.next_attempt_at <= now()
  )
ORDER BY c.priority DESC, c.id;

-- lock_finished_campaigns --
-- Step 1 of completing campaigns (in one transaction with step 2): lock the running campaigns
-- (of $1, or all when NULL) that look finished ($2: how long a redialable call waits for its
-- hangup), and the paused ones past their end_at (their contacts expired: the end completes
-- them). A load or reconcile adding contacts holds the same row lock, so once we have it,
-- their contacts are committed or not yet begun.
SELECT k.id
FROM campaigns k
WHERE (k.status = 'running' OR (k.status = 'paused' AND k.end_at <= now()))
  AND ($1::bigint[] IS NULL OR k.id = ANY ($1::bigint[]))
  AND NOT campaign_has_work(k.id, $2)
FOR UPDATE OF k;

-- complete_finished --
-- Step 2: with a fresh snapshot, complete those of $1 with nothing left to dial.
UPDATE campaigns k
SET status = 'completed', status_reason = NULL, updated_at = now()
WHERE k.id = ANY ($1::bigint[])
  AND (k.status = 'running' OR (k.status = 'paused' AND k.end_at <= now()))
  AND NOT campaign_has_work(k.id, $2)
RETURNING k.name;

-- pause_running_campaigns --
-- Pause the running campaigns (of $1, or all when NULL) with the engine's reason $2.
UPDATE campaigns
SET status = 'paused', status_reason = $2, updated_at = now()
WHERE status = 'running' AND ($1::bigint[] IS NULL OR id = ANY ($1::bigint[]))
RETURNING name;

-- reopen_unfinished --
-- A completed campaign that has contacts to dial again (a race with a load or reconcile that
-- the locking above should prevent, or a manual change) runs again.
UPDATE campaigns k
SET status = 'running', updated_at = now()
WHERE k.status = 'completed'
  AND ($1::bigint[] IS NULL OR k.id = ANY ($1::bigint[]))
  AND EXISTS (SELECT 1 FROM contacts t WHERE t.campaign_id = k.id AND t.status = 'pending')
RETURNING k.name;

-- recover_expired_leases --
SELECT recover_expired_leases();

-- work_left --
-- Whether any running campaign (of $1, or all when NULL) still has contacts to dial: in a
-- worker's hands (a lease of a worker that died counts until it runs out and is recovered),
-- pending (due with their calling window open, or due later), or waiting for a hangup it may
-- redial or, with --track-calls, any hangup ($2: for how long at most). Contacts due now whose
-- window is closed are not work for now.
SELECT EXISTS (
    SELECT 1 FROM campaigns k
    WHERE k.status = 'running'
      AND ($1::bigint[] IS NULL OR k.id = ANY ($1::bigint[]))
      AND (campaign_has_work_now(k.id) OR campaign_awaits_hangups(k.id, $2))
) OR EXISTS (
    SELECT 1 FROM contacts t
    WHERE t.status IN ('claimed', 'sending')
      AND ($1::bigint[] IS NULL OR t.campaign_id = ANY ($1::bigint[]))
) AS work_left;

-- expire_ended_campaigns --
-- Contacts not dialled by their campaign's end_at become expired; per campaign, how many.
SELECT campaign_id, expired FROM expire_ended_campaigns();

-- prune_number_calls --
-- Calls placed more than a day ago no longer count towards any cap (of calls per number, or
-- per caller ID).
WITH caller_ids AS (
    DELETE FROM caller_id_calls WHERE hour < date_trunc('hour', now() - interval '25 hours', 'UTC')
)
DELETE FROM number_calls WHERE placed_at < now() - interval '1 day';

-- queued_outside_window --
-- Calls Plivo may still hold queued whose callee's window has closed (of the campaigns $1, or
-- all), with the request_uuids to cancel them by.
SELECT contact_id, campaign_id, destination, request_uuid FROM queued_outside_window($1);

-- requeue_cancelled_calls --
-- Queued calls cancelled at Plivo as their window closed: the contacts wait for their next one.
SELECT requeue_cancelled_calls($1) AS requeued;

-- === A batch: claim, write ahead, record (campaign/dialing.py) =================================

-- claim_batch --
-- Claim a batch within the rate limits and the calling hours (schema.sql: claim_batch); written
-- ahead at once (dial_request_id set) when its slot is at most $12 seconds away. Always one
-- row; retry_at is set when nothing could be claimed yet (the campaign's own cap, its start, its
-- callees' windows closed; waiting_for: a campaign of higher priority, a cap of concurrent calls,
-- caller IDs that had their calls of the day). caller_id: the `from` to send with. replied_at
-- (the clock as the statement ends) and served_s (how long the server worked on it, real
-- seconds) let the worker tell the database's clock across the round trip (campaign/dbclock.py).
SELECT contact_ids, destinations, send_at, db_now, dial_request_id, retry_at, caller_id,
       waiting_for, extract(epoch FROM clock_timestamp())::double precision AS replied_at,
       extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp())
           ::double precision AS served_s
FROM claim_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14);

-- write_ahead --
-- Write ahead a batch claimed ahead of its slot, once the slot has come (schema.sql:
-- write_ahead_dial_request). Always one row; dial_request_id NULL when none may be sent.
SELECT dial_request_id, contact_ids, destinations, caller_id
FROM write_ahead_dial_request($1, $2, $3, $4);

-- fence --
-- Before a refused request is sent again (schema.sql: fence_dial_request): NULL to send it,
-- else why not.
SELECT fence_dial_request($1, $2, $3, $4) AS refusal;

-- release_claims --
-- Give back contacts claimed but not sent (a paused campaign, a stopping worker).
UPDATE contacts
SET status = 'pending', worker_id = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = ANY ($1::bigint[]) AND status = 'claimed' AND worker_id = $2;

-- record_reply --
-- Plivo accepted the request (schema.sql: record_dial_reply).
SELECT record_dial_reply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS recorded;

-- record_failure --
-- The request failed as a whole (schema.sql: record_dial_failure).
SELECT recorded, paused FROM record_dial_failure($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- unsend --
-- A request that placed no call goes back unsent (schema.sql: unsend_dial_request); the calls of
-- the day its caller ID was charged for them at the claim go back too.
WITH given_back AS (
    SELECT unsend_dial_request($1, $2, $3, $4, $5) AS released
), refunded AS (
    UPDATE caller_id_calls x
    SET calls = greatest(x.calls - g.released, 0)
    FROM given_back g, dial_requests d
    WHERE g.released > 0 AND d.id = $1 AND x.caller_id = d.caller_id
      AND x.hour = date_trunc('hour', d.sent_at, 'UTC')
)
SELECT released FROM given_back;

-- === Rate limits (campaign/ratelimit.py) =======================================================

-- reserve_retry_slots --
-- New slots for a batch sent again (a refusal, or its slots' second missed; schema.sql:
-- reserve_retry_slots); replied_at and served_s as for claim_batch.
SELECT send_at, db_now, retry_at,
       extract(epoch FROM clock_timestamp())::double precision AS replied_at,
       extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp())
           ::double precision AS served_s
FROM reserve_retry_slots($1, $2, $3, $4, $5, $6, $7);

-- read_clock --
-- The database's clock as the statement ends, and how long the server worked on it (real
-- seconds): a sample for campaign/dbclock.py when a worker starts, before its first claim.
SELECT extract(epoch FROM clock_timestamp())::double precision AS replied_at,
       extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp())
           ::double precision AS served_s;

-- reserve_request_slot --
SELECT reserve_request_slot($1, $2);

-- === Cancelling queued calls ===================================================================

-- queued_contacts --
-- Contacts Plivo may still hold queued, with the request to cancel: their own, or, for a batch
-- whose uuids could not be mapped to its destinations, every uuid of the batch (one row each).
SELECT c.id, c.destination, c.request_uuid
FROM contacts c
WHERE c.campaign_id = $1 AND c.status = 'queued' AND c.request_uuid IS NOT NULL
UNION ALL
SELECT c.id, c.destination, u.request_uuid
FROM contacts c
JOIN dial_requests d ON d.id = c.dial_request_id
CROSS JOIN LATERAL unnest(d.request_uuids) AS u(request_uuid)
WHERE c.campaign_id = $1 AND c.status = 'queued' AND c.request_uuid IS NULL
ORDER BY 1;

-- mark_cancelled_at_plivo --
UPDATE contacts
SET status = 'cancelled', last_error = 'cancelled while queued at Plivo', updated_at = now()
WHERE id = ANY ($1::bigint[]) AND status = 'queued';

-- try_advisory_lock --
SELECT pg_try_advisory_lock($1);

-- advisory_unlock --
SELECT pg_advisory_unlock($1);

-- mark_left_queue --
-- Contacts whose queued call Plivo no longer holds (it rang already): fired.
UPDATE contacts
SET status = 'fired', plivo_message = 'left Plivo''s queue (dialled)', updated_at = now()
WHERE id = ANY ($1::bigint[]) AND status = 'queued';

-- === Reconcile =================================================================================

-- unknown_contacts --
-- `campaign reconcile`: contacts whose latest request has an unknown fate, of every campaign or
-- only campaign $1, as of $2 (NULL: the database's clock). look_up_since is when their call
-- may have started (the request's sent_at); uncertain_since is what "long enough ago" counts
-- from. Without a request row (never expected) the look-ups reach back to the contact's creation
-- and the wait counts from its last change: the widest search and the longest wait.
-- not_found_status is what the contact becomes if Plivo has no call for it.
SELECT t.id AS contact_id, k.id AS campaign_id, k.name AS campaign,
       -- The caller ID the request was sent with (a pool's), else the campaign's.
       coalesce(d.caller_id, t.caller_id, k."from") AS from_number,
       t.destination, t.dial_request_id, t.attempts, k.max_attempts,
       coalesce(d.sent_at, t.created_at) AS look_up_since,
       coalesce(d.sent_at, t.updated_at) AS uncertain_since,
       coalesce($2::timestamptz, clock_timestamp()) AS checked_at,
       CASE WHEN k.status = 'cancelled' THEN 'cancelled'
            WHEN t.attempts >= k.max_attempts THEN 'failed'
            ELSE 'pending' END AS not_found_status
FROM campaigns k
CROSS JOIN LATERAL (
    SELECT * FROM contacts c WHERE c.campaign_id = k.id AND c.status = 'unknown'
) t
LEFT JOIN dial_requests d ON d.id = t.dial_request_id
WHERE $1::bigint IS NULL OR k.id = $1
ORDER BY t.id;

-- known_request_uuids --
-- Which of the request_uuids in $1 already belong to a contact (its own, or one of an unsettled
-- request's): a queued call with one of them cannot be an unknown contact's.
SELECT c.request_uuid AS request_uuid
FROM contacts c JOIN unnest($1::text[]) AS q(request_uuid) ON q.request_uuid = c.request_uuid
UNION
SELECT q.request_uuid
FROM dial_requests d
JOIN unnest($1::text[]) AS q(request_uuid) ON q.request_uuid = ANY (d.request_uuids)
WHERE d.uuids_mapped = false;

-- known_call_uuids --
-- Which of the call uuids in $2 already belong to an attempt to one of the destinations $1 (a
-- contact's latest call, or any callback's): a call record with one of them is not an unknown
-- contact's call. Contacts are read per campaign through their (campaign, destination) key.
SELECT c.call_uuid
FROM campaigns k
CROSS JOIN LATERAL (
    SELECT t.call_uuid FROM contacts t
    WHERE t.campaign_id = k.id AND t.destination = ANY ($1::text[])
      AND t.call_uuid = ANY ($2::text[])
) c
UNION
SELECT e.call_uuid FROM call_events e WHERE e.call_uuid = ANY ($2::text[]);

-- reconcile_found --
-- Contacts Plivo has a call for take its outcome (queued or fired), in one statement. A contact
-- that changed since it was read (a late reply, another reconcile, a new attempt) is left alone.
WITH found AS (
    SELECT *
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
         AS f(contact_id, dial_request_id, status, request_uuid, call_uuid, plivo_message)
)
UPDATE contacts c
SET status = f.status, request_uuid = coalesce(f.request_uuid, c.request_uuid),
    call_uuid = f.call_uuid, plivo_message = f.plivo_message, last_error = NULL,
    worker_id = NULL, lease_expires_at = NULL, updated_at = now()
FROM found f
WHERE c.id = f.contact_id AND c.status = 'unknown'
  AND c.dial_request_id IS NOT DISTINCT FROM f.dial_request_id
RETURNING c.id AS contact_id, c.status;

-- reconcile_not_found --
-- Contacts whose request is long past and for which no look-up found a call: Plivo never placed
-- it. They are dialled again (pending, due now; their attempts stay counted), or failed when out
-- of attempts, or cancelled with their campaign. A completed campaign that gets contacts to dial
-- again runs again. One row per campaign and new status, with whether the campaign reopened.
WITH requeued AS (
    UPDATE contacts c
    SET status = CASE WHEN k.status = 'cancelled' THEN 'cancelled'
                      WHEN c.attempts >= k.max_attempts THEN 'failed'
                      ELSE 'pending' END,
        next_attempt_at = CASE WHEN k.status <> 'cancelled' AND c.attempts < k.max_attempts
                               THEN now() ELSE c.next_attempt_at END,
        last_error = CASE
            WHEN k.status <> 'cancelled' AND c.attempts >= k.max_attempts
            THEN format('no call found at Plivo for the request whose outcome was unknown, and '
                        'out of attempts (%s of %s)', c.attempts, k.max_attempts)
            ELSE c.last_error END,
        plivo_message = 'reconciled: no call found at Plivo',
        worker_id = NULL, lease_expires_at = NULL, updated_at = now()
    FROM campaigns k, unnest($1::bigint[], $2::bigint[]) AS r(contact_id, dial_request_id)
    WHERE c.id = r.contact_id AND k.id = c.campaign_id AND c.status = 'unknown'
      AND c.dial_request_id IS NOT DISTINCT FROM r.dial_request_id
    RETURNING c.campaign_id, c.status
), reopened AS (
    UPDATE campaigns k
    SET status = 'running', status_reason = NULL, updated_at = now()
    WHERE k.status = 'completed'
      AND k.id IN (SELECT q.campaign_id FROM requeued q WHERE q.status = 'pending')
    RETURNING k.id, k.name
)
SELECT q.campaign_id, q.status, count(*)::integer AS contacts,
       (SELECT o.name FROM reopened o WHERE o.id = q.campaign_id) AS reopened_campaign
FROM requeued q
GROUP BY q.campaign_id, q.status
ORDER BY q.campaign_id, q.status;

-- lock_campaigns_of_contacts --
-- Lock the campaigns of these contacts (in id order), before making contacts dialable again.
SELECT k.id FROM campaigns k
WHERE k.id IN (SELECT c.campaign_id FROM contacts c WHERE c.id = ANY ($1::bigint[]))
ORDER BY k.id
FOR UPDATE;

-- === Callbacks =================================================================================

-- record_call_events --
-- Record many callbacks (schema.sql: record_call_events). When one ended a call that counts
-- towards a cap of concurrent calls (the account's, $16, or its campaign's), NOTIFY
-- campaign_room at the commit, which wakes the workers waiting at the cap; none otherwise (a
-- NOTIFY serialises committing transactions).
WITH recorded AS (
    SELECT r.callback_index, r.callback_result
    FROM record_call_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                            $15) AS r
), woken AS (
    SELECT pg_notify('campaign_room', 'calls')
    WHERE EXISTS (
        SELECT 1
        FROM recorded r
        JOIN unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS e(campaign_id, event, i)
          ON e.i = r.callback_index
        WHERE e.event = 'hangup' AND r.callback_result IN ('recorded', 'redial')
          AND ($16::boolean OR EXISTS (SELECT 1 FROM campaigns k
                                       WHERE k.id = e.campaign_id
                                         AND k.max_concurrent_calls IS NOT NULL)))
)
-- (woken is read so that it runs: a CTE that nothing reads is not evaluated.)
SELECT r.callback_index, r.callback_result
FROM recorded r CROSS JOIN (SELECT count(*) FROM woken) w
ORDER BY r.callback_index;

-- === Export ====================================================================================

-- export_field_names --
-- `campaign export`: the keys of the campaign's contacts' own CSV columns (`fields`), in a stable
-- order (jsonb keeps no column order, so by name, byte-wise).
SELECT DISTINCT k.name COLLATE "C" AS name
FROM contacts c
CROSS JOIN LATERAL jsonb_object_keys(c.fields) AS k (name)
WHERE c.campaign_id = $1
ORDER BY 1;

-- export_contact_outcomes --
-- `campaign export`: one row per contact of campaign $1 in id order, read through a cursor.
-- field_values holds the contact's value for each key in $2, in that order (NULL when absent).
SELECT
    ARRAY(
        SELECT o.fields ->> f.name
        FROM unnest($2::text[]) WITH ORDINALITY AS f (name, position)
        ORDER BY f.position
    ) AS field_values,
    o.destination,
    o.raw_destination,
    o.line_number,
    o.status,
    o.outcome,
    o.attempts,
    o.call_status,
    o.hangup_cause,
    o.hangup_cause_code,
    o.duration_s,
    o.bill_duration_s,
    o.answered_at,
    o.ended_at,
    o.machine,
    o.request_uuid,
    o.call_uuid,
    o.caller_id,
    o.response,
    o.machine_action,
    o.last_error,
    o.updated_at
FROM contact_outcomes o
WHERE o.campaign_id = $1
ORDER BY o.contact_id;

-- === Suppression (do-not-call) lists: `campaign suppress` =====================================

-- create_suppression_staging --
-- A temporary table, dropped at commit, that `suppress add` COPYs its normalised numbers into.
CREATE TEMPORARY TABLE suppression_staging (
    destination text NOT NULL
) ON COMMIT DROP;

-- insert_staged_suppressions --
-- Put the staged numbers on list $1 with reason $2, each once. A number already on the list
-- keeps its reason and created_at (the first opt-out is the record). Returns how many distinct
-- numbers were staged and how many of them were added.
WITH staged AS (
    SELECT DISTINCT destination FROM suppression_staging
), added AS (
    INSERT INTO suppressions (list, destination, reason)
    SELECT $1, s.destination, $2 FROM staged s
    ON CONFLICT (list, destination) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM staged) AS distinct_numbers, (SELECT count(*) FROM added) AS added;

-- delete_suppressions --
-- Take the numbers $2 off list $1; returns the numbers that were on it.
DELETE FROM suppressions
WHERE list = $1 AND destination = ANY ($2::text[])
RETURNING destination;

-- suppression_lists --
-- Every list with how many numbers it holds and when its newest was added.
SELECT list, count(*) AS numbers, max(created_at) AS newest
FROM suppressions
GROUP BY list
ORDER BY list;

-- suppressed_numbers --
-- The numbers on list $1 in the primary key's order (read from it, nothing sorted), through a
-- cursor.
SELECT destination, reason, created_at
FROM suppressions
WHERE list = $1
ORDER BY list, destination;

-- suppression_filter --
-- List $1's Bloom filter as last saved (campaign/suppression_filter.py), if it has one.
SELECT version, size_log2, destinations, scheme, bits FROM suppression_filters WHERE list = $1;

-- count_suppressions --
-- How many destinations list $1 holds (to size a new filter).
SELECT count(*) FROM suppressions WHERE list = $1;

-- suppressions_added_since --
-- In one snapshot: the lists' version now, on every row, and list $1's destinations added after
-- version $2 (-1: all of them), through a cursor. With none, one row with a NULL destination.
SELECT v.version, x.destination
FROM suppression_version v
LEFT JOIN LATERAL (
    SELECT s.destination FROM suppressions s WHERE s.list = $1 AND s.added_version > $2
) x ON true;

-- suppression_lists_version --
-- The lists' version now.
SELECT version FROM suppression_version;

-- save_suppression_filter --
-- Keep list $1's filter at version $2, unless one of a later version is kept already.
INSERT INTO suppression_filters (list, version, size_log2, destinations, scheme, bits)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (list) DO UPDATE
SET version = EXCLUDED.version, size_log2 = EXCLUDED.size_log2,
    destinations = EXCLUDED.destinations, scheme = EXCLUDED.scheme, bits = EXCLUDED.bits,
    built_at = now()
WHERE suppression_filters.version < EXCLUDED.version;

-- === The HTTP API (campaign/api/) ==============================================================


-- create_api_key --
-- `campaign api-key create`: only the key's SHA-256 is stored.
INSERT INTO api_keys (name, key_sha256, read_only)
VALUES ($1, $2, $3)
RETURNING id, name, read_only, created_at, revoked_at;

-- api_keys --
-- `campaign api-key list`: every key by name, revoked ones too (never their hash).
SELECT id, name, read_only, created_at, revoked_at
FROM api_keys
ORDER BY name;

-- revoke_api_key --
-- `campaign api-key revoke`: the key stops working at once (each request looks it up).
UPDATE api_keys SET revoked_at = now()
WHERE name = $1 AND revoked_at IS NULL
RETURNING id, name, read_only, created_at, revoked_at;

-- api_key_by_hash --
-- The live key whose SHA-256 is $1 (a unique index look-up: the hash of a 256-bit random key
-- reveals nothing a timing could exploit; the handler compares it again in constant time).
SELECT id, name, read_only, created_at, revoked_at, key_sha256
FROM api_keys
WHERE key_sha256 = $1 AND revoked_at IS NULL;

-- claim_idempotency_key --
-- The first request with API key $1's Idempotency-Key $2 (or the first since its record
-- expired after 24 hours) takes the key for its body's SHA-256 $3; one row when it did. A key
-- taken 10 minutes ago by the same body and never answered (its process died) is taken again:
-- the change it guarded either never committed or is refused the second time (a campaign's
-- name, a contact's number are unique), so nothing is loaded twice.
INSERT INTO api_idempotency (api_key_id, idempotency_key, request_sha256)
VALUES ($1, $2, $3)
ON CONFLICT (api_key_id, idempotency_key) DO UPDATE
SET request_sha256 = excluded.request_sha256, status = NULL, content_type = NULL, body = NULL,
    created_at = now()
WHERE api_idempotency.created_at < now() - interval '24 hours'
   OR (api_idempotency.status IS NULL
       AND api_idempotency.request_sha256 = excluded.request_sha256
       AND api_idempotency.created_at < now() - interval '10 minutes')
RETURNING true AS claimed;

-- idempotency_record --
-- What a request with the key took: its body's hash and, once answered, the answer.
SELECT request_sha256, status, content_type, body
FROM api_idempotency
WHERE api_key_id = $1 AND idempotency_key = $2;

-- store_idempotent_answer --
UPDATE api_idempotency SET status = $3, content_type = $4, body = $5
WHERE api_key_id = $1 AND idempotency_key = $2;

-- release_idempotency_key --
-- The request failed without an answer worth repeating (a server error): a retry runs again.
DELETE FROM api_idempotency WHERE api_key_id = $1 AND idempotency_key = $2 AND status IS NULL;

-- forget_expired_idempotency_keys --
DELETE FROM api_idempotency WHERE created_at < now() - interval '24 hours';

-- create_api_load --
INSERT INTO api_loads (campaign_id, summary) VALUES ($1, $2) RETURNING id;

-- api_load_rejects --
-- A load's rejected rows in line order, through a cursor.
SELECT line_number, value, reason
FROM api_load_rejects
WHERE load_id = $1
ORDER BY line_number;

-- api_load_exists --
SELECT EXISTS (SELECT FROM api_loads WHERE id = $1);

-- contacts_page --
-- Campaign $1's contacts after contact id $2 (keyset: a page never shifts when contacts change
-- status or new ones are loaded), $8 at most, filtered (campaign/contact_filter.py; NULL: any):
-- status one of $3, outcome one of $4, time zone $5 among its zones, latest keypress meaning $6,
-- destination containing $7 (strpos: a literal substring, no pattern characters). The same
-- predicates as redial_counts and redial_contacts, so a listing shows what a redial acts on.
SELECT contact_id, destination, raw_destination, line_number, fields, status, outcome, attempts,
       call_status, hangup_cause, duration_s, answered_at, ended_at, machine, request_uuid,
       call_uuid, caller_id, response, last_error, updated_at
FROM contact_outcomes
WHERE campaign_id = $1 AND contact_id > $2
  AND ($3::text[] IS NULL OR status = ANY ($3::text[]))
  AND ($4::text[] IS NULL OR outcome = ANY ($4::text[]))
  AND ($5::text IS NULL OR $5::text = ANY (time_zones))
  AND ($6::text IS NULL OR response = $6::text)
  AND ($7::text IS NULL OR strpos(destination, $7::text) > 0)
ORDER BY contact_id
LIMIT $8;

-- redial_counts --
-- `campaign redial`: of campaign $1's contacts matching the filter $2..$6 (as in contacts_page),
-- how many there are and how many may be dialled again now: settled and not in flight (failed;
-- fired or queued once a hangup told their call's end; fired, in a campaign that does not track
-- its calls, whose end is never known), and on none of the campaign's suppression lists now.
-- Never pending, claimed or sending (in a worker's hands or due already), queued with no hangup
-- (Plivo may still dial it), unknown (it may have been called: `campaign reconcile` settles it),
-- cancelled, suppressed or expired. `ended`: the campaign's end_at has passed.
SELECT count(*) AS matched,
       count(*) FILTER (
           WHERE (o.status = 'failed'
                  OR (o.status IN ('fired', 'queued')
                      AND o.call_status IN ('completed', 'busy', 'no-answer', 'failed', 'timeout',
                                            'cancel'))
                  OR (o.status = 'fired' AND NOT k.track_calls))
             AND NOT EXISTS (SELECT 1 FROM suppressions s
                             WHERE s.list = ANY (k.suppression_lists)
                               AND s.destination = o.destination)
       ) AS redialable,
       coalesce(bool_or(k.end_at <= now()), false) AS ended
FROM contact_outcomes o
JOIN campaigns k ON k.id = o.campaign_id
WHERE o.campaign_id = $1
  AND ($2::text[] IS NULL OR o.status = ANY ($2::text[]))
  AND ($3::text[] IS NULL OR o.outcome = ANY ($3::text[]))
  AND ($4::text IS NULL OR $4::text = ANY (o.time_zones))
  AND ($5::text IS NULL OR o.response = $5::text)
  AND ($6::text IS NULL OR strpos(o.destination, $6::text) > 0);

-- redial_contacts --
-- Set the redialable contacts of campaign $1 matching the filter $2..$6 (as redial_counts)
-- pending, due now (the database's clock); their attempts, requests, call events and responses
-- are kept, and the claim's rules (calling hours, caps, suppression since the load) apply as to
-- any due contact. The caller holds the campaign's row lock (FOR UPDATE, as a cancel and the
-- completion take it, before any contact), so no callback can redial or settle them meanwhile;
-- the contacts are then locked in id order, and each one's status is checked again on its
-- newest version (a reply or a sweep that changed it since the snapshot leaves it out). The
-- claim only takes pending contacts (SKIP LOCKED), so it sees these once this commits.
WITH matching AS (
    SELECT o.contact_id
    FROM contact_outcomes o
    JOIN campaigns k ON k.id = o.campaign_id
    WHERE o.campaign_id = $1
      AND ($2::text[] IS NULL OR o.status = ANY ($2::text[]))
      AND ($3::text[] IS NULL OR o.outcome = ANY ($3::text[]))
      AND ($4::text IS NULL OR $4::text = ANY (o.time_zones))
      AND ($5::text IS NULL OR o.response = $5::text)
      AND ($6::text IS NULL OR strpos(o.destination, $6::text) > 0)
), locked AS (
    SELECT c.id, c.status
    FROM contacts c
    JOIN campaigns k ON k.id = c.campaign_id
    WHERE c.campaign_id = $1 AND c.id IN (SELECT m.contact_id FROM matching m)
      AND (c.status = 'failed'
           OR (c.status IN ('fired', 'queued')
               AND c.call_status IN ('completed', 'busy', 'no-answer', 'failed', 'timeout',
                                     'cancel'))
           OR (c.status = 'fired' AND NOT k.track_calls))
      AND NOT EXISTS (SELECT 1 FROM suppressions s
                      WHERE s.list = ANY (k.suppression_lists) AND s.destination = c.destination)
    ORDER BY c.id
    FOR UPDATE OF c
), redialled AS (
    UPDATE contacts c
    SET status = 'pending', next_attempt_at = now(), worker_id = NULL, lease_expires_at = NULL,
        last_error = 'redialled on request (it was ' || l.status || ')', updated_at = now()
    FROM locked l
    WHERE c.id = l.id
    RETURNING c.id
)
SELECT count(*) FROM redialled;

-- contact_outcome --
SELECT contact_id, destination, raw_destination, line_number, fields, status, outcome, attempts,
       call_status, hangup_cause, duration_s, answered_at, ended_at, machine, request_uuid,
       call_uuid, caller_id, response, last_error, updated_at
FROM contact_outcomes
WHERE campaign_id = $1 AND contact_id = $2;

-- contact_attempts --
-- A contact's calls, oldest first.
SELECT attempt, sent_at, replied_at, request_outcome, http_status, error, request_uuid, call_uuid,
       call_status, hangup_cause, duration_s, caller_id, response, machine_action
FROM dial_attempts
WHERE campaign_id = $1 AND contact_id = $2
ORDER BY attempt;

-- contact_call_events --
-- The callbacks recorded for a contact, in the order they came.
SELECT id, received_at, event, request_uuid, call_uuid, call_status, payload
FROM call_events
WHERE campaign_id = $1 AND contact_id = $2
ORDER BY id;

-- responses_page --
-- Campaign $1's keypresses after response id $2, $3 at most (keyset).
SELECT r.id, r.contact_id, c.destination, r.attempt, r.call_uuid, r.digits, r.meaning,
       r.received_at
FROM responses r
JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = $1 AND r.id > $2
ORDER BY r.id
LIMIT $3;

-- === Webhooks ==================================================================================

-- webhook_endpoint_by_url --
SELECT id, url, secret, disabled_at, disabled_reason FROM webhook_endpoints WHERE url = $1;

-- sequence_webhook_deliveries --
-- Number the committed events not numbered yet (at most $1 per campaign).
SELECT sequence_webhook_deliveries($1);

-- webhook_endpoints_due --
-- The enabled endpoints with a delivery due now that no live lease holds (a claim each).
SELECT e.id, e.url, e.secret
FROM webhook_endpoints e
WHERE e.disabled_at IS NULL
  AND EXISTS (SELECT 1 FROM webhook_deliveries d
              WHERE d.endpoint_id = e.id AND d.status = 'pending'
                AND d.next_attempt_at <= now() AND d.sequence IS NOT NULL
                AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now()))
ORDER BY e.id;

-- claim_webhook_deliveries --
SELECT id, event_id, type, campaign_id, contact_id, sequence, occurred_at, data, attempts
FROM claim_webhook_deliveries($1, $2, $3, $4);

-- record_webhook_attempts --
-- The attempts of one claim, element i of each array for delivery i: its new status
-- ('delivered', 'pending': tried again $5[i] seconds from now, 'failed'), the HTTP status and
-- the error. Only the deliverer that holds a delivery ($6) records it. Then the endpoint's
-- health: a success clears failing_since (last_success_at is kept to the minute, so that a
-- healthy endpoint's row is not written at every batch); a failure starts it, and disables an
-- endpoint that has failed without a success for $7 seconds (0: never). Each endpoint that
-- failed the whole claim: since when it fails, for how long, and whether this disabled it.
WITH recorded AS (
    UPDATE webhook_deliveries d
    SET status = r.status,
        next_attempt_at = CASE WHEN r.status = 'pending'
                               THEN now() + make_interval(secs => r.delay_s)
                               ELSE d.next_attempt_at END,
        last_status = r.http_status,
        last_error = r.error,
        delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
        worker_id = NULL,
        lease_expires_at = NULL
    FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::text[], $5::float8[])
         AS r(id, status, http_status, error, delay_s)
    WHERE d.id = r.id AND d.worker_id = $6 AND d.status = 'pending'
    RETURNING d.endpoint_id, r.status = 'delivered' AS delivered
), outcome AS (
    SELECT e.id, bool_or(r.delivered) AS delivered,
           NOT bool_or(r.delivered) AND e.disabled_at IS NULL AND $7::float8 > 0
               AND e.failing_since <= now() - make_interval(secs => $7::float8) AS disable,
           e.failing_since
    FROM recorded r
    JOIN webhook_endpoints e ON e.id = r.endpoint_id
    GROUP BY e.id
), health AS (
    UPDATE webhook_endpoints e
    SET last_success_at = CASE WHEN o.delivered THEN now() ELSE e.last_success_at END,
        failing_since = CASE WHEN o.delivered THEN NULL ELSE coalesce(e.failing_since, now()) END,
        disabled_at = CASE WHEN o.disable THEN now() ELSE e.disabled_at END,
        disabled_reason = CASE
            WHEN o.disable THEN format('every delivery has failed since %s, longer than '
                                       'CAMPAIGN_WEBHOOK_DISABLE_AFTER_S (%s s)',
                                       to_char(e.failing_since AT TIME ZONE 'UTC',
                                               'YYYY-MM-DD HH24:MI:SS "UTC"'),
                                       $7::float8)
            ELSE e.disabled_reason END
    FROM outcome o
    WHERE e.id = o.id
      AND CASE WHEN o.delivered
               THEN e.failing_since IS NOT NULL OR e.last_success_at IS NULL
                    OR e.last_success_at < now() - interval '1 minute'
               ELSE e.failing_since IS NULL OR o.disable END
    RETURNING e.id
)
SELECT o.id AS endpoint_id, coalesce(o.failing_since, now()) AS failing_since,
       extract(epoch FROM now() - coalesce(o.failing_since, now()))::float8 AS failing_s,
       o.disable AS disabled
FROM outcome o
WHERE NOT o.delivered
ORDER BY o.id;

-- disable_webhook_endpoint --
UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2
WHERE id = $1 AND disabled_at IS NULL;

-- webhook_deliveries --
-- The latest $2 deliveries (only the failed ones when $1), newest first.
SELECT d.id, d.event_id, d.type, k.name AS campaign, d.contact_id, d.sequence, d.occurred_at,
       e.url, e.disabled_at IS NOT NULL AS endpoint_disabled, d.status, d.attempts,
       d.last_status, d.last_error, d.next_attempt_at, d.delivered_at
FROM webhook_deliveries d
JOIN webhook_endpoints e ON e.id = d.endpoint_id
JOIN campaigns k ON k.id = d.campaign_id
WHERE NOT $1::boolean OR d.status = 'failed'
ORDER BY d.id DESC
LIMIT $2;

-- redeliver_webhook_deliveries --
-- Deliver again the deliveries $1 (those of them not in a deliverer's hands), their schedule
-- from the start; an endpoint disabled (a 410, days of failures) is enabled again, its failing
-- period started afresh (someone acted).
WITH again AS (
    UPDATE webhook_deliveries d
    SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL,
        worker_id = NULL, lease_expires_at = NULL
    WHERE d.id = ANY ($1::bigint[])
      AND (d.status <> 'pending' OR d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
    RETURNING d.id, d.endpoint_id
), enabled AS (
    UPDATE webhook_endpoints e SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL
    WHERE e.id IN (SELECT endpoint_id FROM again) AND e.disabled_at IS NOT NULL
)
SELECT id FROM again ORDER BY id;

-- webhook_health --
-- Each endpoint's health for /metrics: disabled or not, for how long it has failed without a
-- success (NULL: it has not), and its deliveries pending and failed (through the outbox's
-- partial indexes).
SELECT e.id AS endpoint_id, e.disabled_at IS NOT NULL AS disabled,
       extract(epoch FROM now() - e.failing_since)::float8 AS failing_s,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'failed') AS failed
FROM webhook_endpoints e
ORDER BY e.id;

-- failed_webhook_deliveries_since --
-- The failed deliveries of events that happened at or after $1.
SELECT id FROM webhook_deliveries WHERE status = 'failed' AND occurred_at >= $1 ORDER BY id;

-- === The dashboard (campaign/dashboard/) =======================================================

-- create_dashboard_session --
-- A session for key $2, its token's hash $1; idle sessions ($3 seconds) are forgotten meanwhile.
WITH forgotten AS (
    DELETE FROM dashboard_sessions WHERE last_seen_at <= now() - make_interval(secs => $3)
)
INSERT INTO dashboard_sessions (token_sha256, api_key_id) VALUES ($1, $2);

-- touch_dashboard_session --
-- The live session of token hash $1 (not idle $2 seconds, its key not revoked), seen now.
UPDATE dashboard_sessions s SET last_seen_at = now()
FROM api_keys k
WHERE s.token_sha256 = $1 AND k.id = s.api_key_id AND k.revoked_at IS NULL
  AND s.last_seen_at > now() - make_interval(secs => $2)
RETURNING s.token_sha256, k.id, k.name, k.read_only, k.created_at, k.revoked_at;

-- peek_dashboard_session --
-- As touch_dashboard_session, without counting as activity (the live stream: a page left open
-- is not a person at it); and the seconds left before the session goes idle.
SELECT s.token_sha256, k.id, k.name, k.read_only, k.created_at, k.revoked_at,
       extract(epoch FROM s.last_seen_at + make_interval(secs => $2) - now())::float8 AS left_s
FROM dashboard_sessions s
JOIN api_keys k ON k.id = s.api_key_id
WHERE s.token_sha256 = $1 AND k.revoked_at IS NULL
  AND s.last_seen_at > now() - make_interval(secs => $2);

-- end_dashboard_session --
DELETE FROM dashboard_sessions WHERE token_sha256 = $1;

-- login_failures --
-- Failed logins from address $1 in the last $2 seconds, and when the oldest of them leaves the
-- window (seconds from now).
SELECT count(*) AS failures,
       coalesce(extract(epoch FROM min(at) + make_interval(secs => $2) - now()), 0)::float8
           AS retry_after_s
FROM dashboard_login_failures
WHERE address = $1 AND at > now() - make_interval(secs => $2);

-- record_login_failure --
-- A failed login from address $1; that address's failures older than the window ($2 s) go.
WITH forgotten AS (
    DELETE FROM dashboard_login_failures
    WHERE address = $1 AND at <= now() - make_interval(secs => $2)
)
INSERT INTO dashboard_login_failures (address) VALUES ($1);

-- write_dashboard_audit --
INSERT INTO dashboard_audit (key_name, action, campaign, detail) VALUES ($1, $2, $3, $4);

-- dashboard_audit --
-- The latest $1 actions, newest first.
SELECT id, at, key_name, action, campaign, detail FROM dashboard_audit ORDER BY id DESC LIMIT $1;

-- dashboard_rates --
-- Each campaign's calls placed in the last $1 seconds (dial_requests_campaign: an index range).
SELECT k.id AS campaign_id,
       (SELECT coalesce(sum(cardinality(d.destinations)), 0)
        FROM dial_requests d
        WHERE d.campaign_id = k.id AND d.counted
          AND d.sent_at > now() - make_interval(secs => $1) AND d.sent_at <= now())::bigint
           AS calls
FROM campaigns k;

-- dashboard_calls_per_minute --
-- Campaign $1's calls placed per minute over the last hour (0: the minute now).
SELECT floor(extract(epoch FROM now() - d.sent_at) / 60)::integer AS minutes_ago,
       sum(cardinality(d.destinations))::bigint AS calls
FROM dial_requests d
WHERE d.campaign_id = $1 AND d.counted
  AND d.sent_at > now() - interval '1 hour' AND d.sent_at <= now()
GROUP BY 1;

-- dashboard_plivo_latency --
-- Campaign $1's Make-a-call requests answered in the last 5 minutes: how many, how fast.
SELECT count(*) AS requests,
       avg(d.latency_ms)::float8 AS mean_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY d.latency_ms)::float8 AS p95_ms
FROM dial_requests d
WHERE d.campaign_id = $1 AND d.sent_at > now() - interval '5 minutes'
  AND d.latency_ms IS NOT NULL;

-- dashboard_plivo_errors --
-- Campaign $1's latest 10 requests of the last hour that failed, with their reason (bounded to
-- the hour so that a campaign without errors costs an index range, not its whole history).
SELECT d.id, d.sent_at, d.outcome, d.http_status,
       coalesce(d.error, d.plivo_message, d.outcome) AS reason,
       cardinality(d.destinations) AS calls
FROM dial_requests d
WHERE d.campaign_id = $1 AND d.sent_at > now() - interval '1 hour'
  AND (d.error IS NOT NULL OR d.outcome IN ('not_sent', 'account_problem', 'rejected', 'unknown'))
ORDER BY d.sent_at DESC, d.id DESC
LIMIT 10;

-- dashboard_waiting_windows --
-- Campaign $1's pending contacts due now whose calling window is closed, per set of time zones,
-- with when that set's window next opens.
SELECT z.time_zones, w.n AS waiting,
       next_window_opening(k, z.time_zones, now()) AS next_opening
FROM campaigns k
-- The closed sets first (OFFSET 0 keeps the planner from counting the open ones too).
CROSS JOIN LATERAL (
    SELECT c.time_zones FROM campaign_time_zones c
    WHERE c.campaign_id = k.id AND NOT zone_set_open(k, c.time_zones, now())
    OFFSET 0
) z
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM contacts t
    WHERE t.campaign_id = k.id
      AND hash_array(t.time_zones) = hash_array(z.time_zones)
      AND t.time_zones = z.time_zones
      AND t.status = 'pending' AND t.next_attempt_at <= now()
) w
WHERE k.id = $1 AND w.n > 0
ORDER BY w.n DESC;

-- dashboard_failing_webhooks --
-- Campaign $1's webhook deliveries that failed, or failed an attempt and wait for the next, the
-- latest 10 (each from a partial index: failed ones, pending ones).
SELECT * FROM (
    (SELECT d.id, d.type, d.contact_id, d.status, d.attempts, d.last_status, d.last_error,
            d.next_attempt_at, d.occurred_at, e.url
     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
     WHERE d.status = 'failed' AND d.campaign_id = $1
     ORDER BY d.occurred_at DESC LIMIT 10)
    UNION ALL
    (SELECT d.id, d.type, d.contact_id, d.status, d.attempts, d.last_status, d.last_error,
            d.next_attempt_at, d.occurred_at, e.url
     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
     WHERE d.status = 'pending' AND d.attempts > 0 AND d.last_error IS NOT NULL
       AND d.campaign_id = $1
     ORDER BY d.occurred_at DESC LIMIT 10)
) f
ORDER BY occurred_at DESC
LIMIT 10;

-- dashboard_time_zones --
-- The time zones of campaign $1's contacts (for the contacts filter).
SELECT DISTINCT u.zone
FROM campaign_time_zones z CROSS JOIN LATERAL unnest(z.time_zones) AS u(zone)
WHERE z.campaign_id = $1
ORDER BY u.zone;

-- dashboard_contact_responses --
SELECT attempt, digits, meaning, received_at, call_uuid
FROM responses WHERE campaign_id = $1 AND contact_id = $2 ORDER BY attempt;

-- dashboard_contact_deliveries --
SELECT d.id, d.type, d.status, d.attempts, d.last_status, d.last_error, d.occurred_at,
       d.delivered_at, e.url
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.contact_id = $2 AND d.campaign_id = $1
ORDER BY d.id;

-- notify_campaign_changed --
-- Wakes the dashboards watching campaign $1: a person paused, resumed, cancelled or re-paced it.
SELECT pg_notify('campaign_changed', $1::bigint::text);
