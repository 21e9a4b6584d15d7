"""`python -m localcloud.stack` (and `make stack`) runs the offline stack and hands out working connections."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


@pytest.mark.parametrize("how", ["python -m", "make stack"])
def test_stack_cli_serves_until_stopped(tmp_path: Path, how: str) -> None:
    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.management import OpenSearchManagement
    from pipeline.oss.client import OssConnection
    from pipeline.oss.pages import KeyRange, OssLister

    local_dir = tmp_path / "local"
    if how == "make stack":
        # The README's command, with this interpreter and no install step (STAMP= drops the prerequisite).
        env_file = local_dir / "stack.env"
        argv = ["make", "-s", "stack", f"PY={sys.executable}", "STAMP="]
    else:
        env_file = tmp_path / "stack.env"
        argv = [sys.executable, "-m", "localcloud.stack", "--env-file", str(env_file)]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**os.environ, "PIPELINE_LOCAL_DIR": str(local_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C reaches make and the stack as one process group
    )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert env_file.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no env file"
        assert env_file.stat().st_mode & 0o077 == 0  # it holds the local keys: owner only
        env = _read_env_file(env_file)
        conns = {k: json.loads(v) for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
        assert Path(env["SSL_CERT_FILE"]).is_file()  # trusts the local STS's certificate
        oss = OssConnection.from_extras("oss_local", conns["AIRFLOW_CONN_OSS_LOCAL"]["extra"])
        listed = [o.key for page in OssLister.connect(oss, "demo-images").iter_pages(KeyRange("catalog/shoes/")) for o in page]
        assert "catalog/shoes/10001.jpg" in listed
        os_conn = conns["AIRFLOW_CONN_OPENSEARCH_LOCAL"]
        mgmt = OpenSearchManagement(
            OpenSearchConnection.from_fields("opensearch_local", os_conn["extra"], os_conn["login"], os_conn["password"])
        )
        assert mgmt.instance()["status"] == "READY"
    finally:
        if how == "make stack":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the shell does
            proc.wait(timeout=30)
        else:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    assert not env_file.exists()
