"""The local cloud: stand-ins for OSS, MaxCompute and OpenSearch Retrieval Engine Edition (and the
STS behind temporary credentials) that the real SDKs drive over HTTP, each at least as strict as the
service, plus the stack that runs them together and the demo. One sub-package per emulated service
(``oss``, ``maxcompute``, ``opensearch``, ``sts``); ``acs3`` is the Alibaba Cloud API signature the
POP-style services check.

It may import from ``pipeline`` (the HA grammar, the config); ``pipeline`` never imports it, and it
is installed as a distribution of its own (``localcloud/pyproject.toml``), never with the pipeline.
"""
