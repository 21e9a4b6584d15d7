-- How partition {ds} of {table} differs, id by id, from partition {previous_ds} of {previous_table} (one table,
-- or a staged partition against the published one): what a delta would push to OpenSearch instead of a rebuild.
-- An id is added (only in {ds}), removed (only in {previous_ds}), unchanged (the same source_image, cate_id and
-- etag on both sides; etags compared ignoring case, they are hex digits) or changed: anything else, so a NULL
-- etag on either side is a change, since a replacement of the image cannot be ruled out.
-- previous_without_etag: rows of {previous_ds} without an etag. duplicated_ids: ids with more than one row on a
-- side, which no delta can push (the caller refuses them). sql/row_delta.sql lists the same ids, page by page.
-- Runs unchanged on MaxCompute SQL and DuckDB.
SELECT
    SUM(CASE WHEN reason = 'added' THEN 1 ELSE 0 END) AS added,
    SUM(CASE WHEN reason = 'removed' THEN 1 ELSE 0 END) AS removed,
    SUM(CASE WHEN reason = 'changed' THEN 1 ELSE 0 END) AS changed,
    SUM(CASE WHEN reason = 'unchanged' THEN 1 ELSE 0 END) AS unchanged,
    SUM(previous_without_etag) AS previous_without_etag,
    SUM(CASE WHEN copies > 1 OR previous_copies > 1 THEN 1 ELSE 0 END) AS duplicated_ids,
    MIN(CASE WHEN copies > 1 OR previous_copies > 1 THEN id END) AS first_duplicated_id
FROM (
    SELECT COALESCE(c.id, p.id) AS id, c.copies, p.copies AS previous_copies,
        COALESCE(p.copies - p.etags, 0) AS previous_without_etag,
        CASE WHEN p.id IS NULL THEN 'added'
             WHEN c.id IS NULL THEN 'removed'
             WHEN c.source_image = p.source_image AND c.cate_id = p.cate_id AND LOWER(c.etag) = LOWER(p.etag)
                 THEN 'unchanged'
             ELSE 'changed' END AS reason
    FROM (SELECT id, COUNT(*) AS copies, MIN(source_image) AS source_image, MIN(cate_id) AS cate_id,
                 MIN(etag) AS etag
          FROM {table} WHERE ds = '{ds}' GROUP BY id) c
    FULL OUTER JOIN (SELECT id, COUNT(*) AS copies, COUNT(etag) AS etags, MIN(source_image) AS source_image,
                            MIN(cate_id) AS cate_id, MIN(etag) AS etag
                     FROM {previous_table} WHERE ds = '{previous_ds}' GROUP BY id) p
        ON c.id = p.id
) ids;
