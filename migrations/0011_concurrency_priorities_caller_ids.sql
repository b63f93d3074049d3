-- Issue 12: pacing by concurrent calls, campaign priorities, and caller-ID pools with local
-- presence (campaign/sql/schema.sql holds the live definitions, with their comments).

ALTER TABLE campaigns
    -- Higher first: while a running campaign of higher priority wants the account's calls, a
    -- lower one gets only what it leaves (dial_demand).
    ADD COLUMN priority integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    -- Calls of this campaign live at once, at most (counted_calls); needs track_calls.
    ADD COLUMN max_concurrent_calls integer CHECK (max_concurrent_calls > 0),
    -- With a pool of caller IDs (campaign_caller_ids): `rotate` spreads calls evenly over them,
    -- `local` prefers one with the callee's area code, then its country. NULL: "from" alone.
    ADD COLUMN caller_id_mode text CHECK (caller_id_mode IN ('rotate', 'local')),
    -- Limits per caller ID, because carriers flag numbers that dial too fast or too often.
    ADD COLUMN calls_per_second_per_caller_id double precision
        CHECK (calls_per_second_per_caller_id > 0),
    ADD COLUMN max_calls_per_caller_id_per_day integer
        CHECK (max_calls_per_caller_id_per_day > 0);

ALTER TABLE contacts
    -- The caller ID (`from`) its latest attempt was placed with.
    ADD COLUMN caller_id text,
    -- With `--caller-id local`, which of the pool may call it (from the load): 'area:+1415'
    -- (a number of that area code), 'country:+44' (of that country), NULL (any).
    ADD COLUMN caller_id_group text;

-- The caller ID (`from`) the request was sent with.
ALTER TABLE dial_requests ADD COLUMN caller_id text;

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

-- Charge p_used calls (one request) of a grant planned at p_at to the limiters. A limiter of
-- calls whose own next slot came less than one interval before p_at (the grant waited for
-- another limiter) counts on from that slot, not from p_at: a campaign's own cap keeps its pace
-- when the account's limiter delays it a little, and its clock second still holds no more calls
-- than its rate (earliest_dial_slot).
CREATE OR REPLACE FUNCTION charge_dial_slots(
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

DROP FUNCTION start_dial_attempts(bigint, text, bigint[], text[], double precision);
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
        answered_at = NULL, ended_at = NULL, machine = NULL
    WHERE c.id = ANY (p_contact_ids);
    INSERT INTO dial_requests (id, campaign_id, worker_id, destinations, sent_at, caller_id)
    VALUES (v_request, p_campaign_id, p_worker_id, p_destinations, now(), p_caller_id);
    RETURN v_request;
END;
$$;

DROP FUNCTION write_ahead_dial_request(bigint, text, bigint[], double precision);
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

DROP FUNCTION claim_batch(bigint, text, integer, double precision, double precision, text[],
                          double precision[], text[], double precision[], text[],
                          double precision, double precision, integer);
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
                WHERE t.campaign_id = p_campaign_id AND t.time_zones = z.time_zones
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
    -- (campaign_id, time_zones, next_attempt_at, id) is read only for open sets. With local
    -- presence, only those the caller ID may call.
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
    c.caller_id
FROM contacts c
JOIN campaigns k ON k.id = c.campaign_id;

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
    d.caller_id
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
