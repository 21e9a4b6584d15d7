"""Airflow's own processes in tests: a free port, waiting for a condition, stopping a process tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check, timeout_s: float, every_s: float = 2.0) -> None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def stop_tree(process: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started (the API server
    leaves its process group)."""
    import psutil

    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    os.killpg(process.pid, signal.SIGTERM)
    for proc in tree:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=30)
    for proc in alive:
        proc.kill()
