"""Credentials through the official providers, against the local STS, metadata service and servers.

Every ``auth_type`` reaches OSS (V4), the OpenSearch management API (ACS3) and the local MaxCompute
(pyodps' V4 ODPS signature) with the credentials its provider fetched; the local servers verify the temporary tokens and refuse
expired ones, so a wait that outlives its token still ends ``ready`` only because the provider renews it.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests

from localcloud.stack import AUTH_TYPES, LocalStack
from pipeline.airflow.triggers import RebuildTrigger
from pipeline.credentials import CredentialSettings, credential_source
from pipeline.errors import ConnectionConfigError, CredentialsError, SourceAccessError
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.management import OpenSearchManagement
from pipeline.opensearch.rebuild import RebuildSettings, start_rebuild
from pipeline.oss.client import OssConnection
from pipeline.oss.pages import KeyRange, OssLister
from pipeline.stages import load_partition
from pipeline.warehouse.maxcompute import MaxComputeWarehouse
from tests.pipeline.opensearch.waiting import settle

TABLE = "demo_images"
DS = "20261202"


def _oss(stack: LocalStack, auth_type: str, conn_id: str) -> OssConnection:
    return OssConnection.from_extras(conn_id, stack.connections(auth_type)["oss_local"]["extra"])


def _opensearch(stack: LocalStack, auth_type: str, conn_id: str) -> OpenSearchConnection:
    conn = stack.connections(auth_type)["opensearch_local"]
    return OpenSearchConnection.from_fields(conn_id, conn["extra"], conn["login"], conn["password"])


@pytest.mark.parametrize("auth_type", AUTH_TYPES)
def test_every_auth_type_reaches_oss_opensearch_and_maxcompute(demo_stack, monkeypatch, auth_type: str) -> None:
    _, stack, config = demo_stack
    oss = _oss(stack, auth_type, f"oss_{auth_type}")
    listed = [o.key for page in OssLister.connect(oss, config.source.bucket).iter_pages(KeyRange("catalog/shoes/"))
              for o in page]
    assert "catalog/shoes/10001.jpg" in listed
    mgmt = OpenSearchManagement(_opensearch(stack, auth_type, f"os_{auth_type}"))
    assert mgmt.instance()["status"] == "READY"
    current = credential_source(oss.credentials).get()
    assert current.access_key_id.startswith("STS.") == (auth_type != "AK")
    conn = stack.connections(auth_type)["warehouse_local"]
    monkeypatch.setenv(f"AIRFLOW_CONN_MC_{auth_type.upper()}", json.dumps(conn))
    warehouse = MaxComputeWarehouse.from_airflow(f"mc_{auth_type}", f"creds_{auth_type.lower()}", 30)
    warehouse.ensure_table()  # DDL, table reads and SQL instances signed with the provider's keys
    assert warehouse.write_partition(DS, []) == 0 and warehouse.partitions() == [DS]  # and the tunnel


def test_maxcompute_requests_carry_the_providers_token(demo_stack, monkeypatch) -> None:
    _, stack, _ = demo_stack
    conn = stack.connections("ram_role_arn")["warehouse_local"]
    monkeypatch.setenv("AIRFLOW_CONN_MC_ROLE", json.dumps(conn))
    warehouse = MaxComputeWarehouse.from_airflow("mc_role", "catalog", 30)
    request = requests.Request("GET", f"{warehouse._odps.endpoint}/projects/catalog").prepare()
    warehouse._odps.account.sign_request(request, warehouse._odps.endpoint, region_name="cn-hangzhou")
    credential, _, _ = request.headers["Authorization"].removeprefix("ODPS ").rpartition(":")
    key_id = credential.split("/")[0]
    assert key_id.startswith("STS.") and credential.endswith("/cn-hangzhou/odps/aliyun_v4_request")
    assert stack.authority.resolve(key_id, request.headers["authorization-sts-token"])


def test_calls_after_a_token_expired_sign_with_a_renewed_one(demo_stack, monkeypatch) -> None:
    _, stack, _ = demo_stack
    conn = stack.connections("ram_role_arn")["warehouse_local"]
    monkeypatch.setenv("AIRFLOW_CONN_MC_SHORT", json.dumps(conn))
    monkeypatch.setattr(stack.authority, "max_lifetime_s", 3.0)  # every token lives (at most) three seconds
    warehouse = MaxComputeWarehouse.from_airflow("mc_short", "short_lived", 30)
    warehouse.ensure_table()
    time.sleep(3.5)  # the provider's token has expired; the next calls must renew it
    assert warehouse.write_partition(DS, []) == 0 and warehouse.partitions() == [DS]


def test_a_wait_longer_than_a_token_ends_ready_because_the_provider_renews_it(demo_stack, monkeypatch) -> None:
    _, stack, config = demo_stack
    load_partition(config, DS, publish=True)
    extras = stack.connections("ram_role_arn")["opensearch_local"]
    monkeypatch.setenv("AIRFLOW_CONN_OS_ROLE", json.dumps({"conn_type": "generic", **extras}))
    monkeypatch.setattr(stack.authority, "max_lifetime_s", 2.0)  # every token lives at most two seconds
    monkeypatch.setattr(stack.opensearch.engine.faults, "phase_delay_s", 1.2)  # the build takes ~5 s
    mgmt = OpenSearchManagement(OpenSearchConnection.from_airflow("os_role"))
    settings = RebuildSettings(poll_interval_s=0.3, stall_timeout_s=30, deadline_s=60, new_generation_timeout_s=10)
    handle = start_rebuild(mgmt, TABLE, DS, settings)
    started = time.time()
    (event,) = asyncio.run(_events(RebuildTrigger(handle.as_dict(), _settings(settings))))
    assert time.time() - started > 3, "the wait must outlive the first token"
    assert event["outcome"] == "ready", event


def test_a_static_token_that_expires_mid_wait_ends_it_at_once_saying_why(demo_stack, monkeypatch) -> None:
    _, stack, config = demo_stack
    load_partition(config, DS, publish=True)
    temporary = stack.authority.issue("acs:ram::1:role/x", "static", 900)
    extras = stack.connections("AK")["opensearch_local"]
    extras["extra"] = {**extras["extra"], "auth_type": "STS", "access_key_id": temporary.access_key_id,
                       "access_key_secret": temporary.access_key_secret, "security_token": temporary.security_token}
    monkeypatch.setenv("AIRFLOW_CONN_OS_STATIC", json.dumps({"conn_type": "generic", **extras}))
    monkeypatch.setattr(stack.opensearch.engine.faults, "phase_delay_s", 0.8)
    mgmt = OpenSearchManagement(OpenSearchConnection.from_airflow("os_static"))
    settings = RebuildSettings(poll_interval_s=0.3, stall_timeout_s=30, deadline_s=60, new_generation_timeout_s=10)
    handle = start_rebuild(mgmt, TABLE, DS, settings)
    real_clock = stack.authority.clock
    monkeypatch.setattr(stack.authority, "clock", lambda: real_clock() + 901)  # the token's hour is over
    (event,) = asyncio.run(_events(RebuildTrigger(handle.as_dict(), _settings(settings))))
    assert event["outcome"] == "error"
    assert "InvalidSecurityToken.Expired" in event["message"] and "cannot renew" in event["message"]
    assert event["transient"] is False  # the sensor fails without retry: a retry would sign with the same token
    assert temporary.security_token not in event["message"] and temporary.access_key_secret not in event["message"]
    monkeypatch.setattr(stack.authority, "clock", real_clock)
    settle(stack.opensearch.engine)


def test_an_expired_static_token_on_oss_says_what_to_do(demo_stack) -> None:
    _, stack, config = demo_stack
    temporary = stack.authority.issue("acs:ram::1:role/x", "static", 900)
    extra = {**stack.connections("AK")["oss_local"]["extra"], "auth_type": "STS",
             "access_key_id": temporary.access_key_id, "access_key_secret": temporary.access_key_secret,
             "security_token": temporary.security_token}
    oss = OssConnection.from_extras("oss_static", extra)
    real_clock = stack.authority.clock
    stack.authority.clock = lambda: real_clock() + 901
    try:
        with pytest.raises(SourceAccessError, match="expired security token.*cannot renew"):
            list(OssLister.connect(oss, config.source.bucket).iter_pages(KeyRange("catalog/")))
    finally:
        stack.authority.clock = real_clock


def test_a_refused_role_is_a_terminal_error_naming_the_connection(demo_stack) -> None:
    _, stack, config = demo_stack
    extra = {**stack.connections("ram_role_arn")["oss_local"]["extra"], "role_arn": "acs:ram::1:role/nobody"}
    oss = OssConnection.from_extras("oss_no_role", extra)
    with pytest.raises(CredentialsError, match="'oss_no_role'.*EntityNotExist.Role") as err:
        list(OssLister.connect(oss, config.source.bucket).iter_pages(KeyRange("catalog/")))
    assert not err.value.transient
    assert stack.secrets.access_key_secret not in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"auth_type": "Bogus"}, "auth_type 'Bogus' is not supported"),
        ({"auth_type": "ram_role_arn", "access_key_id": "a", "access_key_secret": "b"}, "lacks extra field.*role_arn"),
        ({"auth_type": "STS", "access_key_id": "a", "access_key_secret": "b"}, "security_token"),
        ({"auth_type": "credentials_uri"}, "credentials_uri"),
        ({"auth_type": "ram_role_arn", "access_key_id": "a", "access_key_secret": "b", "role_arn": "r",
          "duration_seconds": 60}, "at least 900"),
    ],
)
def test_settings_refuse_incomplete_connections(extra: dict, message: str) -> None:
    with pytest.raises(ConnectionConfigError, match=message):
        CredentialSettings.from_extras("conn_x", extra)


def test_settings_keep_secrets_out_of_repr_and_descriptions() -> None:
    settings = CredentialSettings.from_extras(
        "conn_x", {"auth_type": "STS", "access_key_id": "LTAIid", "access_key_secret": "s3cret", "security_token": "t0ken"}
    )
    assert "s3cret" not in repr(settings) + settings.describe() and "t0ken" not in repr(settings)
    assert sorted(settings.secrets()) == ["s3cret", "t0ken"] and not settings.refreshes


async def _events(trigger: RebuildTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def _settings(settings: RebuildSettings) -> dict:
    return {"poll_interval_s": settings.poll_interval_s, "stall_timeout_s": settings.stall_timeout_s,
            "deadline_s": settings.deadline_s, "new_generation_timeout_s": settings.new_generation_timeout_s}
