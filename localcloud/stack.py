"""The offline stack in one place: local OSS server, local warehouse, local OpenSearch server.

``LocalStack`` starts both servers on free loopback ports over a state folder and hands out the
Airflow connections (as ``AIRFLOW_CONN_*`` JSON) that point the unchanged pipeline at them. The demo,
the tests and anyone running the DAG offline use it; production code never imports it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.acs3 import AcsCredential
from localcloud.opensearch.config import server_from_config
from localcloud.opensearch.server import LocalOpenSearchServer
from localcloud.oss.server import Credential, LocalOssServer

log = logging.getLogger(__name__)

INSTANCE_ID = "ha-cn-local-demo"
REGION = "cn-hangzhou"
# The demo index: the stack serves its bucket, warehouse table and OpenSearch table.
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "dags" / "indexes" / "demo.yaml"


@dataclass(frozen=True)
class LocalSecrets:
    """Keys of the local servers: random per checkout, never in code; kept out of ``repr``."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    query_user: str = "demo"
    query_password: str = field(default="", repr=False)

    def values(self) -> list[str]:
        return [self.access_key_secret, self.query_password]


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
    def airflow_home(self) -> Path:
        return Path(os.environ.get("AIRFLOW_HOME", self.root / "airflow"))

    @property
    def reports(self) -> Path:
        return Path(os.environ.get("PIPELINE_REPORT_DIR", self.root / "reports"))

    @property
    def secrets_file(self) -> Path:
        return self.root / "credentials.json"

    @classmethod
    def from_env(cls) -> LocalPaths:
        return cls(Path(os.environ.get("PIPELINE_LOCAL_DIR", ".local")).resolve())


def local_secrets(paths: LocalPaths) -> LocalSecrets:
    """Load the stack's secrets, or make them on first use (file readable by the owner only)."""
    if paths.secrets_file.exists():
        data = json.loads(paths.secrets_file.read_text())
        if "query_password" in data:
            return LocalSecrets(**data)
    paths.root.mkdir(parents=True, exist_ok=True)
    made = LocalSecrets("LTAI" + secrets.token_hex(8), secrets.token_urlsafe(24), "demo", secrets.token_urlsafe(16))
    tmp = paths.secrets_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(made.__dict__, fh)
    os.replace(tmp, paths.secrets_file)
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
    ) -> None:
        self.paths = paths
        self.secrets = local_secrets(paths)
        self.tables = tables
        self.conn_ids = conn_ids
        self.engine_options = engine_options or {}
        self.oss: LocalOssServer | None = None
        self.opensearch: LocalOpenSearchServer | None = None

    def start(self) -> LocalStack:
        for folder in (self.paths.oss, self.paths.warehouse, self.paths.opensearch):
            folder.mkdir(parents=True, exist_ok=True)
        credential = Credential(self.secrets.access_key_id, self.secrets.access_key_secret)
        self.oss = LocalOssServer(self.paths.oss, [credential]).start()
        config = {
            "instance_id": INSTANCE_ID,
            "state_dir": str(self.paths.opensearch),
            "credentials": [
                {"access_key_id": self.secrets.access_key_id, "access_key_secret": self.secrets.access_key_secret}
            ],
            "query_user": self.secrets.query_user,
            "query_password": self.secrets.query_password,
            "tables": {
                table.name: {
                    "schema": table.schema,
                    "warehouse": {"root": str(self.paths.warehouse), "table": table.warehouse_table},
                    "oss": {
                        "endpoint": self.oss.endpoint,
                        "access_key_id": self.secrets.access_key_id,
                        "access_key_secret": self.secrets.access_key_secret,
                    },
                }
                for table in self.tables
            },
            **self.engine_options,
        }
        try:
            self.opensearch = server_from_config(config, self.paths.root).start()
        except BaseException:
            self.oss.stop()
            raise
        return self

    def stop(self) -> None:
        if self.opensearch is not None:
            self.opensearch.stop()
        if self.oss is not None:
            self.oss.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connections(self) -> dict[str, dict]:
        """The Airflow connections of the stack, keyed by conn id (the alibaba provider's formats)."""
        assert self.oss is not None and self.opensearch is not None, "start() the stack first"
        oss_id, warehouse_id, opensearch_id = self.conn_ids
        return {
            oss_id: {
                "conn_type": "oss",
                "extra": {
                    "auth_type": "AK",
                    "access_key_id": self.secrets.access_key_id,
                    "access_key_secret": self.secrets.access_key_secret,
                    "region": REGION,
                    "endpoint": self.oss.endpoint,
                },
            },
            warehouse_id: {"conn_type": "fs", "extra": {"path": str(self.paths.warehouse)}},
            opensearch_id: {
                "conn_type": "generic",
                "login": self.secrets.query_user,
                "password": self.secrets.query_password,
                "extra": {
                    "instance_id": INSTANCE_ID,
                    "endpoint": self.opensearch.endpoint,
                    "protocol": "http",
                    "region": REGION,
                    "access_key_id": self.secrets.access_key_id,
                    "access_key_secret": self.secrets.access_key_secret,
                    "query_endpoint": self.opensearch.endpoint,
                    "query_protocol": "http",
                },
            },
        }

    def environment(self) -> dict[str, str]:
        """``AIRFLOW_CONN_<ID>`` variables for :meth:`connections`."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in self.connections().items()}

    def credential(self) -> AcsCredential:
        return AcsCredential(self.secrets.access_key_id, self.secrets.access_key_secret)


def _write_env_file(path: Path, environment: dict[str, str]) -> None:
    """``export AIRFLOW_CONN_...='...'`` lines, readable by the owner only (they hold the local keys)."""
    import shlex

    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for name, value in sorted(environment.items()):
            fh.write(f"export {name}={shlex.quote(value)}\n")
    os.replace(tmp, path)


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = LocalPaths.from_env()
    config = load_index_config(DEMO_CONFIG)
    assert config.opensearch is not None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalStack(paths, [StackTable(config.opensearch.table, config.warehouse.table)]) as stack:
        oss = OssConnection.from_extras("oss_local", stack.connections()["oss_local"]["extra"])
        upload_demo_bucket(oss.bucket(config.source.bucket))
        env_file = Path(args.env_file) if args.env_file else paths.root / "stack.env"
        _write_env_file(env_file, stack.environment())
        log.info("local stack up: OSS %s, OpenSearch %s; connections in %s", oss.endpoint, stack.opensearch.url, env_file)
        stop.wait()
        env_file.unlink(missing_ok=True)
    log.info("local stack stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
