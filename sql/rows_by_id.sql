-- Rows of partition {ds} with the given ids: the images behind a smoke query's hits.
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT id, source_image, cate_id, etag
FROM {table}
WHERE ds = '{ds}' AND id IN ({ids})
ORDER BY id
LIMIT {limit};
