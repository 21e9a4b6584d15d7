"""Keep Alibaba Cloud OpenSearch image-search indexes in step with the images in OSS.

Stages are plain functions over small typed interfaces; Airflow glue lives in ``pipeline.airflow``
and the offline stand-ins for the cloud services in ``pipeline.local``.
"""
