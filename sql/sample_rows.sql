-- Rows of partition {ds} with the smallest ids: a deterministic pool to sample smoke queries from.
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT id, source_image, cate_id, etag
FROM {table}
WHERE ds = '{ds}'
ORDER BY id
LIMIT {limit};
