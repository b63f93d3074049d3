-- Issue 16's last two items (campaign/sql/schema.sql §8 and §12 hold the live definitions).

-- An endpoint's health: when a delivery to it last succeeded, and since when every attempt has
-- failed (NULL while it succeeds). An endpoint failing without a success for
-- CAMPAIGN_WEBHOOK_DISABLE_AFTER_S (5 days) is disabled at its next failed attempt; the log and
-- /metrics warn before (campaign/webhooks/delivery.py).
ALTER TABLE webhook_endpoints
    ADD COLUMN last_success_at timestamptz,
    ADD COLUMN failing_since timestamptz;

-- A campaign that tracks its calls (--track-calls) completes only once its calls have ended
-- (or waited p_callback_wait_s for their hangup), so that campaign.completed comes after every
-- contact.settled and carries the final counts; before, only calls it may redial were waited
-- for.
CREATE OR REPLACE FUNCTION campaign_awaits_hangups(p_campaign_id bigint,
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
