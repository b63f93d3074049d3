-- Named queries: each block starts with a line `-- name --` and runs to the next block.
-- Binds are $n only; queries.py gives each a typed function.

-- create_campaign --
INSERT INTO campaigns (
    name, status, "from", answer_url, answer_method, ring_url, ring_method, hangup_url,
    hangup_method, fallback_url, fallback_method, caller_name, send_digits, send_on_preanswer,
    time_limit, hangup_on_ring, machine_detection, machine_detection_time, machine_detection_url,
    machine_detection_method, sip_headers, ring_timeout, calls_per_second, batch_size,
    max_attempts
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
    $21, $22, $23, $24, $25
)
RETURNING *;

-- campaign_by_name --
SELECT * FROM campaigns WHERE name = $1;

-- campaign_by_name_for_update --
SELECT * FROM campaigns WHERE name = $1 FOR UPDATE;

-- progress_by_name --
SELECT * FROM campaign_progress WHERE campaign = $1;

-- progress_all --
SELECT * FROM campaign_progress ORDER BY campaign_id;

-- create_load_staging --
CREATE TEMPORARY TABLE load_staging (
    line_number     integer NOT NULL,
    raw_destination text NOT NULL,
    destination     text NOT NULL,
    fields          text NOT NULL  -- JSON text, made by the validating processes
) ON COMMIT DROP;

-- insert_staged_contacts --
-- File order is dial order: contacts get ids by line number; the first of duplicates wins.
WITH inserted AS (
    INSERT INTO contacts (campaign_id, destination, raw_destination, line_number, fields)
    SELECT $1, destination, raw_destination, line_number, fields::jsonb
    FROM load_staging
    ORDER BY line_number
    ON CONFLICT (campaign_id, destination) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted;

-- truncate_load_staging --
TRUNCATE load_staging;
