"""A local OpenSearch Retrieval Engine Edition: the management API (ACS3-signed) and the HA query
API, with generations built from the warehouse and OSS. ``python -m localcloud.opensearch --config F``
serves one in the foreground."""
