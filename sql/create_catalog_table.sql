-- The catalog table the OpenSearch image table reads: one row per image, one partition per day.
-- MaxCompute DDL. LIFECYCLE: days a partition is kept after its last change.
CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT COMMENT 'primary key of the image document',
    source_image STRING COMMENT 'OSS path of the image, / + key, as the OpenSearch image field expects',
    cate_id BIGINT COMMENT 'category id, an OpenSearch attribute'
)
COMMENT 'image catalog for OpenSearch image search, written by the oss-image-index pipeline'
PARTITIONED BY (ds STRING COMMENT 'partition date YYYYMMDD')
LIFECYCLE {lifecycle};
