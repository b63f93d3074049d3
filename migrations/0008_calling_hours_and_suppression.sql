-- Calling hours in each callee's local time, campaign schedules, suppression lists and
-- per-number caps (campaign/sql/schema.sql holds the live definitions, with their comments).
-- Campaigns that exist already keep dialling around the clock (calling_hours NULL); the CLI
-- gives new campaigns the default 08:00-21:00.

-- A range of times of day; a campaign's calling hours are a timemultirange (made with it).
CREATE TYPE timerange AS RANGE (subtype = time);

ALTER TABLE campaigns
    ADD COLUMN calling_hours                timemultirange,
    ADD COLUMN calling_days                 text[]
        CHECK (calling_days <@ ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']),
    ADD COLUMN skip_dates                   date[] NOT NULL DEFAULT '{}',
    ADD COLUMN start_at                     timestamptz,
    ADD COLUMN end_at                       timestamptz,
    ADD COLUMN default_time_zone            text,
    ADD COLUMN suppression_lists            text[] NOT NULL DEFAULT '{default}',
    ADD COLUMN max_calls_per_number_per_day integer CHECK (max_calls_per_number_per_day > 0),
    ADD CONSTRAINT campaigns_end_after_start CHECK (end_at > start_at);

ALTER TABLE contacts ADD COLUMN time_zones text[] NOT NULL DEFAULT '{}';
ALTER TABLE contacts DROP CONSTRAINT contacts_status_check;
ALTER TABLE contacts ADD CONSTRAINT contacts_status_check
    CHECK (status IN ('pending', 'claimed', 'sending', 'fired', 'queued', 'failed', 'unknown',
                      'cancelled', 'suppressed', 'expired'));

-- The claim reads due contacts one set of time zones at a time, only the sets whose window is
-- open: closed ones are never scanned.
DROP INDEX contacts_due;
CREATE INDEX contacts_due ON contacts (campaign_id, time_zones, next_attempt_at, id)
    WHERE status = 'pending';

CREATE TABLE campaign_time_zones (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    time_zones  text[] NOT NULL,
    PRIMARY KEY (campaign_id, time_zones)
);
INSERT INTO campaign_time_zones (campaign_id, time_zones)
SELECT DISTINCT campaign_id, time_zones FROM contacts;

CREATE TABLE suppressions (
    list        text NOT NULL CHECK (list <> '' AND length(list) <= 100),
    destination text NOT NULL CHECK (destination <> ''),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list, destination)
);

CREATE TABLE number_calls (
    destination text NOT NULL,
    campaign_id bigint NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX number_calls_destination ON number_calls (destination, placed_at);

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

CREATE FUNCTION campaign_has_local_rules(p_campaign campaigns) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_campaign.calling_hours IS NOT NULL OR p_campaign.calling_days IS NOT NULL
           OR cardinality(p_campaign.skip_dates) > 0
$$;

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

CREATE INDEX number_calls_placed ON number_calls USING brin (placed_at);

CREATE FUNCTION number_call_wait(
    p_destination  text,
    p_campaign_id  bigint,
    p_all_cap      integer,
    p_own_cap      integer
) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    -- When the calls placed to p_destination in the last 24 h (all campaigns', and the
    -- campaign's own) are both under their caps again; NULL when they are now.
    WITH recent AS (
        SELECT n.placed_at, n.campaign_id = p_campaign_id AS own
        FROM number_calls n
        WHERE n.destination = p_destination AND n.placed_at > now() - interval '1 day'
    ), waits AS (
        -- With c calls and a cap of N, the (c - N + 1)-th oldest must age out.
        SELECT (SELECT r.placed_at FROM recent r ORDER BY r.placed_at
                OFFSET greatest((SELECT count(*) FROM recent) - p_all_cap, 0) LIMIT 1) AS all_wait,
               (SELECT r.placed_at FROM recent r WHERE r.own ORDER BY r.placed_at
                OFFSET greatest((SELECT count(*) FROM recent WHERE own) - p_own_cap, 0) LIMIT 1)
               AS own_wait
    )
    SELECT greatest(
        CASE WHEN p_all_cap IS NOT NULL
                  AND (SELECT count(*) FROM recent) >= p_all_cap THEN w.all_wait END,
        CASE WHEN p_own_cap IS NOT NULL
                  AND (SELECT count(*) FROM recent WHERE own) >= p_own_cap THEN w.own_wait END
    ) + interval '1 day'
    FROM waits w
$$;

DROP FUNCTION claim_dial_request(bigint, text, integer, double precision, double precision,
                                 text[], double precision[], text[], double precision[],
                                 double precision);
DROP FUNCTION claim_batch(bigint, text, integer, double precision, double precision, text[],
                          double precision[], text[], double precision[], text[],
                          double precision, double precision);

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
LANGUAGE plpgsql AS $$
DECLARE
    v_names      text[] := coalesce(p_call_limiters, '{}') || coalesce(p_request_limiters, '{}');
    v_rates      double precision[] := coalesce(p_call_rates, '{}') || coalesce(p_request_rates, '{}');
    v_calls      integer := coalesce(array_length(p_call_limiters, 1), 0);
    v_campaign   campaigns%ROWTYPE;
    v_plan       record;
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
BEGIN
    SELECT * INTO v_campaign FROM campaigns k WHERE k.id = p_campaign_id AND k.status = 'running';
    IF NOT FOUND THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], NULL::double precision,
                            extract(epoch FROM clock_timestamp())::double precision, NULL::bigint,
                            NULL::double precision;
        RETURN;
    END IF;
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

    -- The calls are placed at the slot: the schedule and the calling hours are read for then.
    v_at := to_timestamp(v_plan.slot_at);
    IF v_campaign.end_at <= v_at THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, NULL::double precision;
        RETURN;
    END IF;
    IF v_campaign.start_at > v_at THEN
        RETURN QUERY SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now,
                            NULL::bigint, extract(epoch FROM v_campaign.start_at)::double precision;
        RETURN;
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
    -- (campaign_id, time_zones, next_attempt_at, id) is read only for open sets.
    FOR v_set IN
        SELECT z.time_zones
        FROM campaign_time_zones z
        WHERE z.campaign_id = p_campaign_id
          AND (NOT v_rules OR (cardinality(z.time_zones) > 0 AND z.time_zones <@ v_open))
        ORDER BY (SELECT t.next_attempt_at FROM contacts t
                  WHERE t.campaign_id = p_campaign_id AND t.time_zones = z.time_zones
                    AND t.status = 'pending'
                  ORDER BY t.next_attempt_at, t.id LIMIT 1) NULLS LAST
    LOOP
        SELECT coalesce(array_agg(due.id ORDER BY due.next_attempt_at, due.id), '{}'),
               coalesce(array_agg(due.destination ORDER BY due.next_attempt_at, due.id), '{}')
        INTO v_more_ids, v_more_dests
        FROM (
            SELECT t.id, t.destination, t.next_attempt_at
            FROM contacts t
            WHERE t.campaign_id = p_campaign_id AND t.time_zones = v_set
              AND t.status = 'pending' AND t.next_attempt_at <= now()
            ORDER BY t.next_attempt_at, t.id
            LIMIT v_plan.granted - cardinality(v_ids)
            FOR UPDATE OF t SKIP LOCKED
        ) due;
        v_ids := v_ids || v_more_ids;
        v_dests := v_dests || v_more_dests;
        EXIT WHEN cardinality(v_ids) >= v_plan.granted;
    END LOOP;

    IF cardinality(v_ids) = 0 THEN
        -- Nothing open: with contacts due in closed sets, windows open on whole minutes (hours
        -- are HH:MM, zones' offsets whole minutes), so the worker comes back at the next one.
        RETURN QUERY
        SELECT '{}'::bigint[], '{}'::text[], v_plan.slot_at, v_plan.db_now, NULL::bigint,
               CASE WHEN v_rules AND EXISTS (
                        SELECT 1 FROM contacts t
                        WHERE t.campaign_id = p_campaign_id AND t.status = 'pending'
                          AND t.next_attempt_at <= now())
                    THEN (floor(v_plan.db_now / 60) + 1) * 60 END;
        RETURN;
    END IF;

    -- Numbers suppressed since the load are settled, never dialled.
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
    -- Numbers at a cap of calls per day wait until the call that keeps them there is 24 h old.
    IF p_max_calls_per_number IS NOT NULL OR v_campaign.max_calls_per_number_per_day IS NOT NULL
    THEN
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
                            NULL::bigint, v_plan.db_now;
        RETURN;
    END IF;
    -- In contact id order, the order the request is sent in.
    SELECT array_agg(k.id ORDER BY k.id), array_agg(k.destination ORDER BY k.id)
    INTO v_ids, v_dests
    FROM unnest(v_kept_ids, v_kept_dests) AS k(id, destination);

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
                     0.02, p_write_ahead_within_s, NULL) AS b
    CROSS JOIN LATERAL unnest(b.contact_ids, b.destinations) AS u(contact_id, destination);
END;
$$;

DROP FUNCTION record_dial_reply(bigint, bigint[], text[], text[], text[], text, text, integer,
                                integer, text, text[], boolean, integer);

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

CREATE FUNCTION queued_outside_window(p_campaign_ids bigint[])
RETURNS TABLE (contact_id bigint, campaign_id bigint, destination text, request_uuid text)
LANGUAGE sql STABLE AS $$
    -- Calls Plivo may still hold queued (not ringing yet) whose callee's window has closed:
    -- each with the request_uuids that may be its own (a batch whose uuids could not be mapped
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
      AND NOT zone_set_open(k, c.time_zones, now())
$$;

CREATE FUNCTION requeue_cancelled_calls(p_contact_ids bigint[]) RETURNS integer
LANGUAGE sql AS $$
    -- Queued calls cancelled at Plivo as their window closed: the contact waits for its next
    -- window, its attempt not counted.
    WITH requeued AS (
        UPDATE contacts c
        SET status = CASE WHEN k.status = 'cancelled' THEN 'cancelled' ELSE 'pending' END,
            attempts = greatest(c.attempts - 1, 0), request_uuid = NULL,
            last_error = 'cancelled while queued at Plivo: its calling window closed',
            updated_at = now()
        FROM campaigns k
        WHERE c.id = ANY (p_contact_ids) AND c.status = 'queued' AND k.id = c.campaign_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM requeued
$$;

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
                       WHERE t.campaign_id = k.id AND t.time_zones = z.time_zones
                         AND t.status = 'pending' AND t.next_attempt_at > now())
               OR (zone_set_open(k, z.time_zones, now())
                   AND EXISTS (SELECT 1 FROM contacts t
                               WHERE t.campaign_id = k.id AND t.time_zones = z.time_zones
                                 AND t.status = 'pending' AND t.next_attempt_at <= now())))
    )
$$;

-- campaign_progress gains suppressed, expired and the contacts waiting for their window.
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
    waiting.waiting_for_window
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
    c.time_zones
FROM contacts c
JOIN campaigns k ON k.id = c.campaign_id;

CREATE FUNCTION campaign_awaits_hangups(p_campaign_id bigint, p_callback_wait_s double precision)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    -- Whether a call of the campaign that it may redial still waits (up to p_callback_wait_s)
    -- for its hangup.
    SELECT EXISTS (
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

CREATE OR REPLACE FUNCTION campaign_has_work(p_campaign_id bigint, p_callback_wait_s double precision)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM contacts t
        WHERE t.campaign_id = p_campaign_id AND t.status IN ('pending', 'claimed', 'sending')
    ) OR campaign_awaits_hangups(p_campaign_id, p_callback_wait_s)
$$;

CREATE FUNCTION note_campaign_time_zones() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_time_zones (campaign_id, time_zones)
    SELECT DISTINCT n.campaign_id, n.time_zones FROM new_contacts n
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER contacts_time_zones_inserted
    AFTER INSERT ON contacts REFERENCING NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION note_campaign_time_zones();
CREATE FUNCTION note_contact_time_zones() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
