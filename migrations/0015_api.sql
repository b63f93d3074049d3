-- Issue 16: the HTTP API under /api/v1/: API keys, idempotency records, the rejected rows of
-- its loads (campaign/sql/schema.sql §11 holds the live definitions).

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
