-- Up to 10 ids that occur more than once in one partition, most repeated first.
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT id, COUNT(*) AS n
FROM {table}
WHERE ds = '{ds}'
GROUP BY id
HAVING COUNT(*) > 1
ORDER BY n DESC, id
LIMIT 10;
