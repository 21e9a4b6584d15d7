-- The catalog table the OpenSearch image table reads: one row per image, one partition per day.
-- MaxCompute DDL. LIFECYCLE: days a partition is kept after its last change. OpenSearch's table schema
-- maps id, source_image and cate_id only; etag is the pipeline's (tables created before it existed get
-- it from sql/add_etag_column.sql, which must declare it exactly as here).
CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT COMMENT 'primary key of the image document',
    source_image STRING COMMENT 'OSS path of the image, / + key, as the OpenSearch image field expects',
    cate_id BIGINT COMMENT 'category id, an OpenSearch attribute',
    etag STRING COMMENT 'ETag of the image object without quotes, as OSS lists it; a replaced image changes it; not read by OpenSearch'
)
COMMENT 'image catalog for OpenSearch image search, written by the oss-image-index pipeline'
PARTITIONED BY (ds STRING COMMENT 'partition date YYYYMMDD')
LIFECYCLE {lifecycle};
