-- Rows of partition {ds} whose id is not in partition {previous_ds} (the partition that last went
-- live), smallest ids first: an image query sampled from them can only be answered by the new index.
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT c.id, c.source_image, c.cate_id, c.etag
FROM (SELECT id, source_image, cate_id, etag FROM {table} WHERE ds = '{ds}') c
LEFT OUTER JOIN (SELECT DISTINCT id FROM {table} WHERE ds = '{previous_ds}') p
    ON c.id = p.id
WHERE p.id IS NULL
ORDER BY c.id
LIMIT {limit};
