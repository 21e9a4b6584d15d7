"""Keep Alibaba Cloud OpenSearch image-search indexes in step with the images in OSS.

One package per system the product talks to (``pipeline.oss``, ``pipeline.warehouse``,
``pipeline.opensearch``) over a small shared core (config, errors, schema, guards, report, retry);
``pipeline.stages`` chains them as plain functions and ``pipeline.airflow`` holds the Airflow glue.
The offline stand-ins for the cloud live in the separate ``localcloud`` package, which this package
never imports (checked by import-linter in ``make test``).
"""
