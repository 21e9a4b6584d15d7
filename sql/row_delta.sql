-- One page of the delta from partition {previous_ds} of {previous_table} to partition {ds} of {table}: the ids
-- sql/row_changes.sql calls added, changed or removed, after id {after_id} (NULL: from the smallest), smallest
-- first, at most {limit}; an added or changed id with its row in {ds}. Keyset paging: every page is one bounded
-- SELECT (MaxCompute truncates a result at 10,000 rows) and the next starts after this one's last id, so a
-- reader can also resume anywhere. copies / previous_copies: rows of the id on each side (a delta needs one).
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT id, source_image, cate_id, etag, reason, copies, previous_copies
FROM (
    SELECT COALESCE(c.id, p.id) AS id, c.source_image, c.cate_id, c.etag, c.copies, p.copies AS previous_copies,
        CASE WHEN p.id IS NULL THEN 'added'
             WHEN c.id IS NULL THEN 'removed'
             WHEN c.source_image = p.source_image AND c.cate_id = p.cate_id AND LOWER(c.etag) = LOWER(p.etag)
                 THEN 'unchanged'
             ELSE 'changed' END AS reason
    FROM (SELECT id, COUNT(*) AS copies, MIN(source_image) AS source_image, MIN(cate_id) AS cate_id,
                 MIN(etag) AS etag
          FROM {table} WHERE ds = '{ds}' AND ({after_id} IS NULL OR id > {after_id}) GROUP BY id) c
    FULL OUTER JOIN (SELECT id, COUNT(*) AS copies, MIN(source_image) AS source_image, MIN(cate_id) AS cate_id,
                            MIN(etag) AS etag
                     FROM {previous_table} WHERE ds = '{previous_ds}' AND ({after_id} IS NULL OR id > {after_id})
                     GROUP BY id) p
        ON c.id = p.id
) ids
WHERE reason <> 'unchanged'
ORDER BY id
LIMIT {limit};
