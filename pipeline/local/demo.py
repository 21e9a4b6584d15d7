"""``python -m pipeline.local.demo``: run the demo index's DAG end to end on the local stack.

1. local state under ``$PIPELINE_LOCAL_DIR`` (``.local/``): OSS root, warehouse, Airflow home, reports;
2. demo credentials, generated once per checkout (never in code), kept in ``.local/credentials.json``;
3. the local OSS server on a free loopback port, and the demo bucket (generated the first time);
4. ``airflow dags test image_index_demo <date>`` with the connections passed as ``AIRFLOW_CONN_*``;
5. the server stops, and the partition's report is printed.

Repeated runs reuse the bucket and overwrite the same partition (the load is idempotent).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from pipeline.local.oss_server import Credential, LocalOssServer

log = logging.getLogger("pipeline.demo")

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "dags" / "indexes" / "demo.yaml"


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
    def airflow_home(self) -> Path:
        return Path(os.environ.get("AIRFLOW_HOME", self.root / "airflow"))

    @property
    def reports(self) -> Path:
        return Path(os.environ.get("PIPELINE_REPORT_DIR", self.root / "reports"))

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @classmethod
    def from_env(cls) -> LocalPaths:
        return cls(Path(os.environ.get("PIPELINE_LOCAL_DIR", ".local")).resolve())


def local_credential(paths: LocalPaths) -> Credential:
    """The local servers' key pair: random, made on first use, readable only by the owner."""
    if paths.credentials.exists():
        data = json.loads(paths.credentials.read_text())
        return Credential(data["access_key_id"], data["access_key_secret"])
    paths.root.mkdir(parents=True, exist_ok=True)
    credential = Credential("LTAI" + secrets.token_hex(8), secrets.token_urlsafe(24))
    fd = os.open(paths.credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"access_key_id": credential.access_key_id, "access_key_secret": credential.access_key_secret}, fh)
    return credential


def connection_env(oss_endpoint: str, credential: Credential, paths: LocalPaths) -> dict[str, str]:
    """The demo's Airflow connections, as AIRFLOW_CONN_* JSON (the provider's ``oss`` format)."""
    oss = {
        "conn_type": "oss",
        "extra": {
            "auth_type": "AK",
            "access_key_id": credential.access_key_id,
            "access_key_secret": credential.access_key_secret,
            "region": "cn-hangzhou",
            "endpoint": oss_endpoint,
        },
    }
    warehouse = {"conn_type": "fs", "extra": {"path": str(paths.warehouse)}}
    return {"AIRFLOW_CONN_OSS_LOCAL": json.dumps(oss), "AIRFLOW_CONN_WAREHOUSE_LOCAL": json.dumps(warehouse)}


def _airflow(args: list[str], env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), *args], env=env, check=True)


def run_demo(partition_date: str) -> int:
    from pipeline.config import load_index_config
    from pipeline.dates import resolve_partition_date
    from pipeline.local.demo_data import upload_demo_bucket
    from pipeline.oss import OssConnection
    from pipeline.report import summarize

    paths = LocalPaths.from_env()
    config = load_index_config(DEMO_CONFIG)
    credential = local_credential(paths)
    (paths.oss / config.source.bucket).mkdir(parents=True, exist_ok=True)
    with LocalOssServer(paths.oss, [credential]) as server:
        env = {**os.environ, **connection_env(server.endpoint, credential, paths)}
        env.setdefault("AIRFLOW_HOME", str(paths.airflow_home))
        env.setdefault("PIPELINE_REPORT_DIR", str(paths.reports))
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        conn = OssConnection.from_extras("oss_local", json.loads(env["AIRFLOW_CONN_OSS_LOCAL"])["extra"])
        written = upload_demo_bucket(conn.bucket(config.source.bucket))
        log.info("demo bucket %s at %s: %d objects uploaded", config.source.bucket, server.endpoint, written)
        _airflow(["db", "migrate"], env)
        _airflow(["dags", "test", "image_index_demo", partition_date], env)
    ds = resolve_partition_date(None, datetime.fromisoformat(partition_date).replace(tzinfo=UTC), None, config.timezone)
    report_path = paths.reports / config.name / f"{ds}.json"
    report = json.loads(report_path.read_text())
    print("\n" + "=" * 72)
    print(summarize(report))
    print(f"report: {report_path}")
    print("=" * 72)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=date.today().isoformat(), help="logical date of the run (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(args.date)


if __name__ == "__main__":
    sys.exit(main())
