-- Give a catalog table created before the etag column existed that column, as sql/create_catalog_table.sql
-- declares it. MaxCompute appends it after the other columns; rows written before read NULL. The
-- OpenSearch table's schema does not map it, so what OpenSearch reads is unchanged.
ALTER TABLE {table} ADD COLUMNS (
    etag STRING COMMENT 'ETag of the image object without quotes, as OSS lists it; a replaced image changes it; not read by OpenSearch'
);
