-- Issue 11's load speed (campaign/sql/schema.sql §1 and §3 hold the live definitions).
--
-- A load now COPYs its contacts straight into `contacts`, and the table's per-row work is what
-- bounds it (docs/benchmarks.md "Loading a CSV"). Two per-row costs become per-statement ones,
-- with the same guarantees:
--
-- 1. contacts.campaign_id's foreign key ran one look-up of `campaigns` per inserted row (4.7 µs of
--    a row's 23 in a 1M-row COPY). The same check now runs once per statement, in the trigger
--    that notes the contacts' time zones: every campaign of the new rows must exist, and is held
--    FOR KEY SHARE until the transaction ends, as the foreign key held it. The error is the
--    foreign key's (SQLSTATE 23503, constraint contacts_campaign_id_fkey). Deleting a campaign
--    still deletes its contacts (a trigger), and so does truncating `campaigns`.
-- 2. That trigger read the new rows three times (their zones, the unzoned ones, their sets); it
--    now reads them once, grouped by (campaign, set of zones).

ALTER TABLE contacts DROP CONSTRAINT contacts_campaign_id_fkey;

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

CREATE OR REPLACE FUNCTION note_campaign_time_zones() RETURNS trigger
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
