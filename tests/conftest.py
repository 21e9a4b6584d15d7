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
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")  # as the Makefile sets it: tasks load it too
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["PIPELINE_REPORT_DIR"] = str(Path(_AIRFLOW_HOME) / "reports")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB, for tests that run DAGs."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], check=True, capture_output=True, env=os.environ.copy())
    return Path(_AIRFLOW_HOME)


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory, airflow_db):
    """The local stack (OSS with the demo bucket, warehouse, OpenSearch) and its connections as env vars."""
    from localcloud.demo import demo_stack as make_stack
    from localcloud.demo_data import upload_demo_bucket
    from localcloud.stack import LocalPaths
    from pipeline.config import load_index_config
    from pipeline.oss.client import OssConnection

    paths = LocalPaths(tmp_path_factory.mktemp("local"))
    config = load_index_config(REPO / "dags" / "indexes" / "demo.yaml")
    with make_stack(paths) as stack:
        oss = OssConnection.from_extras("oss_local", stack.connections()["oss_local"]["extra"])
        upload_demo_bucket(oss.bucket(config.source.bucket))
        with pytest.MonkeyPatch.context() as patch:  # the connections, for this session only
            for key, value in stack.environment().items():
                patch.setenv(key, value)
            yield paths, stack, config
