"""The oss2 client the local OSS tests talk through: one key pair, V4-signed, as every bucket wants."""

from __future__ import annotations

import oss2

from localcloud.oss.server import LocalOssServer

AK, SK, REGION = "test-ak", "test-secret", "cn-hangzhou"


def bucket_of(server: LocalOssServer, name: str) -> oss2.Bucket:
    auth = oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(AK, SK))
    return oss2.Bucket(auth, server.endpoint, name, region=REGION)
