-- Publish a checked partition: replace partition {ds} of {table} with the rows staged in {source_table},
-- in one statement. MaxCompute commits an INSERT OVERWRITE as one job: readers see the old rows or the
-- new ones, never a mix, and a failed job leaves the old rows.
INSERT OVERWRITE TABLE {table} PARTITION (ds = '{ds}')
SELECT id, source_image, cate_id, etag FROM {source_table} WHERE ds = '{ds}';
