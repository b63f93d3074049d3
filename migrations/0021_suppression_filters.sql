-- Issue 11: a load looks up only the destinations a suppression list may hold
-- (campaign/sql/schema.sql §3 holds the live definition).
--
-- With 10M numbers listed, looking each number of a 1M-row load up by its integer (migration
-- 0020) still costs PostgreSQL about 1.2 s of CPU, and reading that list's index through the
-- shared buffers pushes the load's own pages out: +11 to +13 % on the load
-- (bench/suppression.py). A Bloom filter of each large list (campaign/suppression_filter.py)
-- answers "surely not on the list" for all but 0.2 % of the others, and only the positives are
-- looked up. The filter is kept here, so a load reads it (16 MiB for 10M numbers) rather than
-- the whole list: `campaign suppress add` and each load bring it up to date with the rows added
-- since its version (suppressions.added_version), whoever added them.

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
