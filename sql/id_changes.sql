-- Ids added and removed between partition {previous_ds} of {previous_table} and partition {ds} of {table}
-- (one table, or a staged partition against the published one).
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT
    SUM(CASE WHEN p.id IS NULL THEN 1 ELSE 0 END) AS added,
    SUM(CASE WHEN c.id IS NULL THEN 1 ELSE 0 END) AS removed
FROM (SELECT DISTINCT id FROM {table} WHERE ds = '{ds}') c
FULL OUTER JOIN (SELECT DISTINCT id FROM {previous_table} WHERE ds = '{previous_ds}') p
    ON c.id = p.id;
