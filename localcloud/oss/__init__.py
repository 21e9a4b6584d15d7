"""A local OSS: the OSS wire protocol over a folder (and generated read-only buckets), with V1/V4
signatures and fault knobs. ``python -m localcloud.oss`` serves one in the foreground."""
