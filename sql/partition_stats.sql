-- Rows, distinct ids and a digest of the id set of one partition. Runs unchanged on MaxCompute SQL and
-- DuckDB (the local warehouse defines CONV for the one base it needs).
-- The digest is order-independent: two sums over the distinct ids of 32-bit slices of MD5(id), so it
-- moves when any id is added or removed and is computed inside the engine, whatever the table's size
-- (2^31 ids * 2^32 stays within BIGINT).
SELECT SUM(id_rows) AS row_count,
       COUNT(*) AS distinct_ids,
       SUM(CAST(CONV(SUBSTR(MD5(CAST(id AS STRING)), 1, 8), 16, 10) AS BIGINT)) AS id_digest_high,
       SUM(CAST(CONV(SUBSTR(MD5(CAST(id AS STRING)), 9, 8), 16, 10) AS BIGINT)) AS id_digest_low
FROM (SELECT id, COUNT(*) AS id_rows FROM {table} WHERE ds = '{ds}' GROUP BY id) per_id;
