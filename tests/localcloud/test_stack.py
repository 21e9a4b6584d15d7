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


def free_port_block(count: int) -> int:
    """A first port whose ``count`` successors are all free now (the stack's fixed ports, in a test)."""
    import random
    import socket

    for _ in range(100):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no block of free ports")


def start_stack_cli(local_dir: Path, env_file: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "localcloud.stack", "--env-file", str(env_file), *args], cwd=REPO,
        env={**os.environ, "PIPELINE_LOCAL_DIR": str(local_dir)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for(env_file: Path, proc: subprocess.Popen) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while not env_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert env_file.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no env file"
    return _read_env_file(env_file)


def test_the_stack_keeps_its_ports_across_restarts_and_says_when_they_are_taken(tmp_path: Path) -> None:
    """A scheduler's connections (stack.env, sourced once) stay valid when the stack restarts (issue 11:
    every start picked new ports)."""
    from localcloud.stack import SERVICE_ORDER

    base = free_port_block(len(SERVICE_ORDER))
    env_file = tmp_path / "stack.env"
    first = start_stack_cli(tmp_path / "local", env_file, "--base-port", str(base))
    try:
        before = wait_for(env_file, first)
        assert f"127.0.0.1:{base}" in before["AIRFLOW_CONN_OSS_LOCAL"]
        # A second stack on the same ports stops at once, saying why and what to do.
        second = start_stack_cli(tmp_path / "other", tmp_path / "other.env", "--base-port", str(base))
        assert second.wait(timeout=60) == 1
        error = second.stderr.read().decode()
        assert "is taken: is another stack running?" in error and "--base-port" in error
        assert first.poll() is None  # the first one never noticed
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    again = start_stack_cli(tmp_path / "local", env_file, "--base-port", str(base))
    try:
        assert wait_for(env_file, again) == before  # same addresses, same keys
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0


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
        argv = ["make", "-s", "stack", f"PY={sys.executable}", "STAMP=", "STACK_ARGS=--base-port 0"]
    else:
        env_file = tmp_path / "stack.env"
        argv = [sys.executable, "-m", "localcloud.stack", "--env-file", str(env_file), "--base-port", "0"]
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
