-- Issue 17: the browser dashboard served at /: its sessions, its audit trail, the failed logins
-- it slows down, and the indexes its contacts pages read (campaign/sql/schema.sql §13 holds the
-- live definitions).

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

-- The contacts pages: keyset paging by id within a campaign, and within one status, reads an
-- index range from the cursor on, whatever the depth.
CREATE INDEX contacts_campaign_id ON contacts (campaign_id, id);
CREATE INDEX contacts_campaign_status_id ON contacts (campaign_id, status, id);
-- A contact's timeline lists its webhook deliveries, whatever their status.
CREATE INDEX webhook_deliveries_contact_any ON webhook_deliveries (contact_id, id)
    WHERE contact_id IS NOT NULL;
