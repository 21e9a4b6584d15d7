"""The offline stack in one place: local OSS, MaxCompute and OpenSearch servers (and STS).

``LocalStack`` starts the servers on free loopback ports over a state folder and hands out the
Airflow connections (as ``AIRFLOW_CONN_*`` JSON) that point the unchanged pipeline at them. The demo,
the tests and anyone running the DAG offline use it; production code never imports it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.acs3 import AcsCredential
from localcloud.files import write_private
from localcloud.maxcompute.server import LocalMaxComputeServer
from localcloud.opensearch.config import server_from_config
from localcloud.opensearch.server import LocalOpenSearchServer
from localcloud.oss.server import Credential, LocalOssServer
from localcloud.ram import ServiceRoles, TokenAuthority
from localcloud.sts.metadata import LocalInstanceMetadata
from localcloud.sts.server import LocalSts, StsAccount
from localcloud.sts.tls import LocalTls

log = logging.getLogger(__name__)

INSTANCE_ID = "ha-cn-local-demo"
REGION = "cn-hangzhou"
ACCOUNT_ID = "1000000000000001"
ROLE_ARN = f"acs:ram::{ACCOUNT_ID}:role/image-index"  # what ram_role_arn / oidc_role_arn connections assume
ECS_ROLE_NAME = "image-index-ecs"  # the RAM role of the (pretend) ECS instance Airflow runs on
OIDC_PROVIDER_ARN = f"acs:ram::{ACCOUNT_ID}:oidc-provider/ack-rrsa-local"
# The role MaxCompute assumes to read OSS for external tables (odps.properties.rolearn): its trust policy
# names odps.aliyuncs.com. ROLE_ARN is the workers' role and does not: MaxCompute cannot assume it.
MAXCOMPUTE_OSS_ROLE_ARN = f"acs:ram::{ACCOUNT_ID}:role/aliyunodpsdefaultrole"
MAXCOMPUTE_PROJECT = "image_search_local"  # the project the warehouse connection and OpenSearch use
#: Where the catalog table lives: the local MaxCompute server (pyodps on the wire, the default), or the
#: ``fs`` warehouse (Parquet files, no server: the baseline of the benchmarks).
WAREHOUSES = ("maxcompute", "fs")
#: The servers in the order they take ports from ``base_port`` (see :meth:`LocalStack.port`).
SERVICE_ORDER = ("oss", "maxcompute", "opensearch", "sts", "metadata")
#: ``make stack``'s first port: fixed, so a scheduler's connections survive a restart of the stack.
DEFAULT_BASE_PORT = 18640


class PortInUseError(OSError):
    """A fixed port of the stack is taken (another stack, or another program)."""
#: How the stack's connections authenticate (see pipeline.credentials for what each means).
AUTH_TYPES = ("AK", "ram_role_arn", "ecs_ram_role", "oidc_role_arn")
# The demo index: the stack serves its bucket, warehouse table and OpenSearch table.
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "dags" / "indexes" / "demo.yaml"


@dataclass(frozen=True)
class LocalSecrets:
    """Keys of the local servers: random per checkout, never in code; kept out of ``repr``."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    query_user: str = "demo"
    query_password: str = field(default="", repr=False)
    sts_key_hex: str = field(default="", repr=False)  # the account's STS: signs its temporary credentials

    def values(self) -> list[str]:
        return [self.access_key_secret, self.query_password, self.sts_key_hex]


@dataclass(frozen=True)
class LocalPaths:
    root: Path

    @property
    def oss(self) -> Path:
        return self.root / "oss"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def opensearch(self) -> Path:
        return self.root / "opensearch"

    @property
    def maxcompute(self) -> Path:
        return self.root / "maxcompute"

    @property
    def airflow_home(self) -> Path:
        return Path(os.environ.get("AIRFLOW_HOME", self.root / "airflow"))

    @property
    def reports(self) -> Path:
        return Path(os.environ.get("PIPELINE_REPORT_DIR", self.root / "reports"))

    @property
    def secrets_file(self) -> Path:
        return self.root / "credentials.json"

    @property
    def sts(self) -> Path:
        """The local CA and certificate of the STS endpoint, and the OIDC token of the RRSA example."""
        return self.root / "sts"

    @classmethod
    def from_env(cls) -> LocalPaths:
        return cls(Path(os.environ.get("PIPELINE_LOCAL_DIR", ".local")).resolve())


def local_secrets(paths: LocalPaths) -> LocalSecrets:
    """Load the stack's secrets, or make them on first use (file readable by the owner only)."""
    if paths.secrets_file.exists():
        data = json.loads(paths.secrets_file.read_text())
        if data.get("query_password") and data.get("sts_key_hex"):
            return LocalSecrets(**data)
    paths.root.mkdir(parents=True, exist_ok=True)
    made = LocalSecrets("LTAI" + secrets.token_hex(8), secrets.token_urlsafe(24), "demo", secrets.token_urlsafe(16),
                        secrets.token_hex(32))
    write_private(paths.secrets_file, json.dumps(made.__dict__))
    return made


@dataclass
class StackTable:
    """One OpenSearch table of the local instance, fed from one local warehouse table."""

    name: str
    warehouse_table: str
    schema: Any = "demo"  # "demo", a schema file path, or a schema dict


class LocalStack:
    """Both local servers, started together; use as a context manager."""

    def __init__(
        self,
        paths: LocalPaths,
        tables: list[StackTable],
        *,
        conn_ids: tuple[str, str, str] = ("oss_local", "warehouse_local", "opensearch_local"),
        engine_options: dict[str, Any] | None = None,
        auth_type: str = "AK",
        token_lifetime_s: float | None = None,
        warehouse: str = "maxcompute",
        maxcompute_options: dict[str, Any] | None = None,
        base_port: int = 0,
    ) -> None:
        """``auth_type``: how :meth:`connections` authenticate (one of :data:`AUTH_TYPES`).
        ``token_lifetime_s``: cap every temporary token's life (the real minimum is 900 s) to rehearse
        expiry within a test. ``warehouse``: one of :data:`WAREHOUSES`. ``maxcompute_options``: keyword
        arguments of :class:`LocalMaxComputeServer` (e.g. ``allow_full_scan``). ``base_port``: 0 puts
        every server on a free port (tests, the demo); N puts them on N.. N+4 in :data:`SERVICE_ORDER`,
        so a long-running stack keeps its addresses across restarts."""
        if auth_type not in AUTH_TYPES:
            raise ValueError(f"auth_type must be one of {AUTH_TYPES}, not {auth_type!r}")
        if warehouse not in WAREHOUSES:
            raise ValueError(f"warehouse must be one of {WAREHOUSES}, not {warehouse!r}")
        self.warehouse = warehouse
        self.base_port = base_port
        self.maxcompute_options = maxcompute_options or {}
        self.paths = paths
        self.secrets = local_secrets(paths)
        self.tables = tables
        self.conn_ids = conn_ids
        self.engine_options = engine_options or {}
        self.auth_type = auth_type
        self.authority = TokenAuthority.from_hex(self.secrets.sts_key_hex, max_lifetime_s=token_lifetime_s)
        self.tls = LocalTls(paths.sts)
        self.oss: LocalOssServer | None = None
        self.opensearch: LocalOpenSearchServer | None = None
        self.maxcompute: LocalMaxComputeServer | None = None
        self.sts: LocalSts | None = None
        self.metadata: LocalInstanceMetadata | None = None

    def port(self, service: str) -> int:
        """Where ``service`` (one of :data:`SERVICE_ORDER`) listens: 0 (any free port) or base_port + its index."""
        return self.base_port + SERVICE_ORDER.index(service) if self.base_port else 0

    def start(self) -> LocalStack:
        try:
            self._start_servers()
        except OSError as exc:
            self.stop()
            if exc.errno == errno.EADDRINUSE and self.base_port:
                raise PortInUseError(
                    f"a port in {self.base_port}..{self.base_port + len(SERVICE_ORDER) - 1} (the stack's "
                    f"{', '.join(SERVICE_ORDER)}) is taken: is another stack running? Stop it, or choose other "
                    "ports with --base-port N (0: free ports, which change at every start)"
                ) from exc
            raise
        except BaseException:
            self.stop()
            raise
        return self

    def _start_servers(self) -> None:
        for folder in (self.paths.oss, self.paths.warehouse, self.paths.opensearch):
            folder.mkdir(parents=True, exist_ok=True)
        account = StsAccount({self.secrets.access_key_id: self.secrets.access_key_secret},
                             {ROLE_ARN: 3600}, OIDC_PROVIDER_ARN)
        self.sts = LocalSts(account, self.authority, self.tls, port=self.port("sts")).start()
        self.metadata = LocalInstanceMetadata(self.authority, ECS_ROLE_NAME, ACCOUNT_ID,
                                              port=self.port("metadata")).start()
        credential = Credential(self.secrets.access_key_id, self.secrets.access_key_secret)
        self.oss = LocalOssServer(self.paths.oss, [credential], port=self.port("oss"), region=REGION,
                                  authority=self.authority).start()
        keys = {"access_key_id": self.secrets.access_key_id, "access_key_secret": self.secrets.access_key_secret}
        if self.warehouse == "maxcompute":
            self.maxcompute = LocalMaxComputeServer(
                self.paths.maxcompute, {self.secrets.access_key_id: self.secrets.access_key_secret},
                projects=[MAXCOMPUTE_PROJECT], region=REGION, authority=self.authority, port=self.port("maxcompute"),
                assume_role=ServiceRoles(self.authority, {MAXCOMPUTE_OSS_ROLE_ARN: 3600}, [ROLE_ARN]).assume,
                oss_endpoints={f"oss-{REGION}-internal.aliyuncs.com": self.oss.endpoint,
                               f"oss-{REGION}.aliyuncs.com": self.oss.endpoint},
                **self.maxcompute_options,
            ).start()
            # OpenSearch reads the partition with pyodps, as the service reads its ODPS data source.
            source = {"maxcompute": {"endpoint": self.maxcompute.endpoint, "project": MAXCOMPUTE_PROJECT,
                                     "region": REGION, **keys}}
        else:
            source = {"root": str(self.paths.warehouse)}
        config = {
            "instance_id": INSTANCE_ID,
            "sts_key_hex": self.secrets.sts_key_hex,
            "state_dir": str(self.paths.opensearch),
            "credentials": [
                {"access_key_id": self.secrets.access_key_id, "access_key_secret": self.secrets.access_key_secret}
            ],
            "query_user": self.secrets.query_user,
            "query_password": self.secrets.query_password,
            "tables": {
                table.name: {
                    "schema": table.schema,
                    "warehouse": {**source, "table": table.warehouse_table},
                    "oss": {
                        "endpoint": self.oss.endpoint,
                        "region": REGION,
                        "access_key_id": self.secrets.access_key_id,
                        "access_key_secret": self.secrets.access_key_secret,
                    },
                }
                for table in self.tables
            },
            "port": self.port("opensearch"),
            **self.engine_options,
        }
        self.opensearch = server_from_config(config, self.paths.root).start()
        self.opensearch.authority = self.authority  # the same account, token lifetime knob included

    def stop(self) -> None:
        for server in (self.opensearch, self.maxcompute, self.oss, self.metadata, self.sts):
            if server is not None:
                server.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def credential_extras(self, auth_type: str | None = None) -> dict[str, Any]:
        """The credential fields of a connection that authenticates with ``auth_type`` against this stack."""
        auth_type = auth_type or self.auth_type
        assert self.sts is not None and self.metadata is not None, "start() the stack first"
        keys = {"access_key_id": self.secrets.access_key_id, "access_key_secret": self.secrets.access_key_secret}
        if auth_type == "AK":
            return {"auth_type": "AK", **keys}
        if auth_type == "ram_role_arn":
            return {"auth_type": "ram_role_arn", **keys, "role_arn": ROLE_ARN, "sts_endpoint": self.sts.endpoint}
        if auth_type == "ecs_ram_role":
            return {"auth_type": "ecs_ram_role", "role_name": ECS_ROLE_NAME, "disable_imds_v1": True,
                    "proxy": self.metadata.proxy}
        if auth_type == "oidc_role_arn":
            token_file = self.paths.sts / "oidc-token"
            write_private(token_file, self.authority.oidc_token("system:serviceaccount:airflow:worker", 24 * 3600))
            return {"auth_type": "oidc_role_arn", "role_arn": ROLE_ARN, "oidc_provider_arn": OIDC_PROVIDER_ARN,
                    "oidc_token_file": str(token_file), "sts_endpoint": self.sts.endpoint}
        raise ValueError(f"auth_type must be one of {AUTH_TYPES}, not {auth_type!r}")

    def connections(self, auth_type: str | None = None) -> dict[str, dict]:
        """The Airflow connections of the stack, keyed by conn id (the alibaba provider's formats)."""
        assert self.oss is not None and self.opensearch is not None, "start() the stack first"
        oss_id, warehouse_id, opensearch_id = self.conn_ids
        credentials = self.credential_extras(auth_type)
        return {
            oss_id: {
                "conn_type": "oss",
                "extra": {**credentials, "region": REGION, "endpoint": self.oss.endpoint},
            },
            warehouse_id: self._warehouse_connection(credentials),
            opensearch_id: {
                "conn_type": "generic",
                "login": self.secrets.query_user,
                "password": self.secrets.query_password,
                "extra": {
                    "instance_id": INSTANCE_ID,
                    "endpoint": self.opensearch.endpoint,
                    "protocol": "http",
                    "region": REGION,
                    **credentials,
                    "query_endpoint": self.opensearch.endpoint,
                    "query_protocol": "http",  # loopback: no warning
                },
            },
        }

    def _warehouse_connection(self, credentials: dict[str, Any]) -> dict[str, Any]:
        if self.maxcompute is None:
            return {"conn_type": "fs", "extra": {"path": str(self.paths.warehouse)}}
        # region given: pyodps signs with V4, as it does against the cloud's regional endpoints
        return {"conn_type": "maxcompute", "extra": {**credentials, "project": MAXCOMPUTE_PROJECT,
                                                     "endpoint": self.maxcompute.endpoint, "region": REGION}}

    def odps(self) -> Any:
        """A pyodps entry on the local project with the stack's long-lived key (for tests and tools)."""
        from odps import ODPS

        assert self.maxcompute is not None, "the stack runs the fs warehouse, not MaxCompute"
        return ODPS(self.secrets.access_key_id, self.secrets.access_key_secret, project=MAXCOMPUTE_PROJECT,
                    endpoint=self.maxcompute.endpoint, region_name=REGION)

    def environment(self, auth_type: str | None = None) -> dict[str, str]:
        """``AIRFLOW_CONN_<ID>`` variables for :meth:`connections`, and ``SSL_CERT_FILE``: the bundle that
        trusts the local STS's certificate (certifi's roots included, so nothing else stops working)."""
        env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
               for conn_id, conn in self.connections(auth_type).items()}
        env["SSL_CERT_FILE"] = str(self.tls.bundle)
        return env

    def credential(self) -> AcsCredential:
        return AcsCredential(self.secrets.access_key_id, self.secrets.access_key_secret)


def _write_env_file(path: Path, environment: dict[str, str]) -> None:
    """``export AIRFLOW_CONN_...='...'`` lines, readable by the owner only (they hold the local keys)."""
    import shlex

    write_private(path, "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(environment.items())))


def main(argv: list[str] | None = None) -> int:
    """``python -m localcloud.stack``: run the local stack for the demo index until interrupted.

    For running the DAG under a real scheduler offline: start this, ``source .local/stack.env`` in the
    shell that starts Airflow, and the demo index's connections point at the running servers.
    """
    import argparse
    import signal
    import threading

    from localcloud.demo_data import upload_demo_bucket
    from pipeline.config import load_index_config
    from pipeline.oss.client import OssConnection

    parser = argparse.ArgumentParser(prog="python -m localcloud.stack", description=main.__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=None, help="where to write the connection exports (default .local/stack.env)")
    parser.add_argument("--auth", choices=AUTH_TYPES, default="AK",
                        help="how the connections authenticate: long-lived keys, or a provider of temporary ones")
    parser.add_argument("--warehouse", choices=WAREHOUSES, default="maxcompute",
                        help="the catalog table's home: the local MaxCompute server, or fs Parquet files")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                        help=f"the first of {len(SERVICE_ORDER)} consecutive ports ({', '.join(SERVICE_ORDER)}); "
                             f"default {DEFAULT_BASE_PORT}; 0: free ports, new at every start")
    args = parser.parse_args(argv)
    if not (args.base_port == 0 or 1024 <= args.base_port <= 65536 - len(SERVICE_ORDER)):
        parser.error(f"--base-port must be 0 or 1024..{65536 - len(SERVICE_ORDER)}, not {args.base_port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = LocalPaths.from_env()
    config = load_index_config(DEMO_CONFIG)
    assert config.opensearch is not None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tables = [StackTable(config.opensearch.table, config.warehouse.table)]
    try:
        stack = LocalStack(paths, tables, auth_type=args.auth, warehouse=args.warehouse, base_port=args.base_port).start()
    except PortInUseError as exc:
        log.error("%s", exc)
        return 1
    try:
        oss = OssConnection.from_extras("oss_local", stack.connections("AK")["oss_local"]["extra"])
        upload_demo_bucket(oss.bucket(config.source.bucket))
        env_file = Path(args.env_file) if args.env_file else paths.root / "stack.env"
        _write_env_file(env_file, stack.environment())
        warehouse = (f"MaxCompute {stack.maxcompute.endpoint} (project {MAXCOMPUTE_PROJECT})" if stack.maxcompute
                     else f"fs warehouse {paths.warehouse}")
        log.info("local stack up: OSS %s, %s, OpenSearch %s, STS %s; connections (%s) in %s",
                 oss.endpoint, warehouse, stack.opensearch.url, stack.sts.endpoint, args.auth, env_file)
        stop.wait()
        env_file.unlink(missing_ok=True)
    finally:
        stack.stop()
    log.info("local stack stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
