-- Rows per category of one partition. Runs unchanged on MaxCompute SQL and DuckDB.
-- MaxCompute refuses ORDER BY without LIMIT, hence the (generous) LIMIT.
SELECT cate_id, COUNT(*) AS row_count
FROM {table}
WHERE ds = '{ds}'
GROUP BY cate_id
ORDER BY cate_id
LIMIT 100000;
