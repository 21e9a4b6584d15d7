"""Shared fixtures. Airflow reads its configuration at import, so its environment is set here first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A fresh Airflow home per test session: no state leaks between runs or into the demo's .local/.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="pipeline-test-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["PIPELINE_REPORT_DIR"] = str(Path(_AIRFLOW_HOME) / "reports")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB, for tests that run DAGs."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return Path(_AIRFLOW_HOME)


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory):
    """The local OSS server holding the demo bucket, and the demo's connections as env vars."""
    from pipeline.config import load_index_config
    from pipeline.local.demo import LocalPaths, connection_env, local_credential
    from pipeline.local.demo_data import upload_demo_bucket
    from pipeline.local.oss_server import LocalOssServer
    from pipeline.oss import OssConnection
    import json

    paths = LocalPaths(tmp_path_factory.mktemp("local"))
    config = load_index_config(REPO / "dags" / "indexes" / "demo.yaml")
    credential = local_credential(paths)
    (paths.oss / config.source.bucket).mkdir(parents=True)
    with LocalOssServer(paths.oss, [credential]) as server:
        env = connection_env(server.endpoint, credential, paths)
        extra = json.loads(env["AIRFLOW_CONN_OSS_LOCAL"])["extra"]
        upload_demo_bucket(OssConnection.from_extras("oss_local", extra).bucket(config.source.bucket))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield paths, server, config
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
