"""Start the local OSS server's CLI in a subprocess and read the endpoint it announces."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time


def wait_for_endpoint(proc: subprocess.Popen, timeout_s: float = 20) -> tuple[str, bytes]:
    """The ``http://127.0.0.1:PORT`` the server logs on stderr once it listens (bounded wait), and
    everything it wrote to stderr until then."""
    assert proc.stderr is not None
    endpoint, output, deadline = None, b"", time.monotonic() + timeout_s
    while endpoint is None and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            output += os.read(proc.stderr.fileno(), 4096)
            found = re.search(rb"listening on (http://127\.0\.0\.1:\d+)", output)
            endpoint = found.group(1).decode() if found else None
    assert endpoint, output.decode(errors="replace")
    return endpoint, output


def server_arguments(monkeypatch, cli_module, argv: list[str]) -> dict:
    """The keyword arguments ``cli_module.main(argv)`` builds its LocalOssServer with (nothing starts)."""
    import pytest

    captured: dict = {}

    class Captured(Exception):
        pass

    class FakeServer:  # the CLI's wiring only: no server needs to start for that
        def __init__(self, *args, **kwargs) -> None:
            captured.update(kwargs)

        def __enter__(self):
            raise Captured

        def __exit__(self, *exc) -> None:
            pass

    monkeypatch.setattr(cli_module, "LocalOssServer", FakeServer)
    with pytest.raises(Captured):
        cli_module.main(argv)
    return captured
