"""What the benchmarks share: the local OSS and MaxCompute servers as separate processes, CPU clocks,
peak RSS, JSON lines.

A server runs in its own process so that its work (and its GIL) is not charged to the client being
measured; on this 2-core machine the two still share the cores, which the results report.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY_ID = "LTAIbench"
ACCESS_KEY_SECRET = "bench-secret"  # only ever given to the local server, through the environment


def emit(result: dict) -> None:
    """One JSON line per result on stdout."""
    print(json.dumps(result, sort_keys=False), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    """The machine a result was measured on (for BENCHMARKS.md)."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pid_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    endpoint: str
    pid: int

    def cpu_s(self) -> float:
        return pid_cpu_s(self.pid)


@contextlib.contextmanager
def _server_process(name: str, command: list[str], env: dict[str, str], root: str) -> Iterator[Server]:
    """Run a local server command until the block ends; yield it once it logs its address."""
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO)},
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    seen: list[bytes] = []
    ready = threading.Event()

    def drain() -> None:  # read the server's log for its address, then keep its pipe from filling
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if b"listening on" in line:
                ready.set()

    threading.Thread(target=drain, name=f"bench-{name}-log", daemon=True).start()
    try:
        if not ready.wait(30):
            raise RuntimeError(f"the local {name} server did not start: " + b"".join(seen).decode(errors="replace"))
        found = re.search(rb"listening on (http://127\.0\.0\.1:\d+(?:/api)?)", b"".join(seen))
        assert found is not None
        yield Server(found.group(1).decode(), proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def oss_server(generated: list[str], latency_s: float = 0.0, jitter_s: float = 0.0, *, root: str | None = None,
               sts_key_hex: str | None = None) -> contextlib.AbstractContextManager[Server]:
    """The local OSS server (``python -m localcloud.oss``) serving generated buckets (and the folder
    buckets of ``root``, a folder the caller made, removed when the server stops; default a new empty
    one). ``sts_key_hex``: also accept the temporary credentials that local STS authority issues."""
    root = root or tempfile.mkdtemp(prefix="bench-oss-")
    command = [
        sys.executable, "-m", "localcloud.oss", "--root", root, "--port", "0",
        "--access-key-id", ACCESS_KEY_ID, "--latency-s", str(latency_s), "--jitter-s", str(jitter_s), "--seed", "1",
    ]
    for spec in generated:
        command += ["--generated", spec]
    env = {"LOCAL_OSS_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET}
    if sts_key_hex:
        env["LOCAL_STS_KEY_HEX"] = sts_key_hex  # through the environment, not the process list
    return _server_process("OSS", command, env, root)


def maxcompute_server(project: str) -> contextlib.AbstractContextManager[Server]:
    """A fresh local MaxCompute server (``python -m localcloud.maxcompute``) over an empty state folder;
    its endpoint is the REST API (``.../api``), as pyodps is given it."""
    root = tempfile.mkdtemp(prefix="bench-maxcompute-")
    command = [sys.executable, "-m", "localcloud.maxcompute", "--root", root, "--project", project, "--port", "0"]
    env = {"LOCAL_MAXCOMPUTE_ACCESS_KEY_ID": ACCESS_KEY_ID, "LOCAL_MAXCOMPUTE_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET}
    return _server_process("MaxCompute", command, env, root)


def server_process(name: str, command: list[str], env: dict[str, str], root: str) -> contextlib.AbstractContextManager[Server]:
    """Any server command that logs ``listening on http://127.0.0.1:PORT[/api]`` (e.g. a benchmark's own
    configuration of a local server); ``root`` is removed when it stops."""
    return _server_process(name, command, env, root)


def status_kib(field: str, pid: int | str = "self") -> int:
    """A size from /proc/<pid>/status of a live process: VmHWM (peak resident set since exec), VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def connection(server: Server):  # -> OssConnection (imported lazily: keep `python -m bench.*` light)
    from pipeline.oss.client import OssConnection

    extra = {"access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET, "region": "cn-hangzhou", "endpoint": server.endpoint}
    return OssConnection.from_extras("oss_bench", extra)


class Stopwatch:
    """Wall and CPU time of a block, for this process and (optionally) the server process."""

    def __init__(self, server: Server | None = None) -> None:
        self._server = server

    def __enter__(self) -> Stopwatch:
        self._wall = time.perf_counter()
        self._cpu = process_cpu_s()
        self._server_cpu = self._server.cpu_s() if self._server else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_s = process_cpu_s() - self._cpu
        self.server_cpu_s = (self._server.cpu_s() - self._server_cpu) if self._server else 0.0
