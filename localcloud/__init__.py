"""The local cloud: stand-ins for OSS and OpenSearch Retrieval Engine Edition that the real SDKs
drive over HTTP, each at least as strict as the service, plus the stack that runs them together and
the demo. One sub-package per emulated service (``oss``, ``opensearch``); ``acs3`` is the Alibaba
Cloud API signature any of them may check.

It may import from ``pipeline`` (the HA grammar, the config); ``pipeline`` never imports it, and it
is installed as a distribution of its own (``localcloud/pyproject.toml``), never with the pipeline.
"""
