-- Row count and distinct ids of one partition. Runs unchanged on MaxCompute SQL and DuckDB.
SELECT COUNT(*) AS row_count, COUNT(DISTINCT id) AS distinct_ids
FROM {table}
WHERE ds = '{ds}';
