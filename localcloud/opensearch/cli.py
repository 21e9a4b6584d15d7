"""The local OpenSearch server's command line: ``python -m localcloud.opensearch --config FILE``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcloud.opensearch.config import server_from_config

log = logging.getLogger("localcloud.opensearch.server")


def main(argv: list[str] | None = None) -> int:
    """``python -m localcloud.opensearch --config FILE``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m localcloud.opensearch",
                                     description="Serve a local OpenSearch Retrieval Engine Edition instance.")
    parser.add_argument("--config", required=True, help="JSON config (see the module docstring of the engine/server)")
    parser.add_argument("--port", type=int, help="override the config's port (0 = pick a free one)")
    parser.add_argument("--pidfile", help="write the process id here once listening; removed on exit")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--phase-delay-s", type=float, help="fault: sleep this long before each build phase")
    parser.add_argument("--fail-next-build", metavar="MESSAGE", help="fault: the next build fails with MESSAGE")
    parser.add_argument("--stall-next-build", action="store_true", help="fault: the next build stalls")
    parser.add_argument("--stop-next-generation", action="store_true", help="fault: the next build ends stopped")
    parser.add_argument("--hold-switch-next-build", action="store_true",
                        help="fault: the next build reaches ready but is never switched in (until ForceSwitch)")
    parser.add_argument("--register-delay-s", type=float,
                        help="fault: a reindex's generation and task are listed only this long after the call")
    parser.add_argument("--drop-next-pushes", type=int, metavar="N",
                        help="fault: the next N push requests answer OK but are never logged nor applied")
    parser.add_argument("--push-apply-delay-s", type=float, metavar="S",
                        help="fault: each pushed document is applied only S seconds after it was received")
    parser.add_argument("--throttle-next-pushes", type=int, metavar="N",
                        help="fault: the next N push requests answer 429 (3013) before their body is read")
    parser.add_argument("--push-max-bytes-per-s", type=int, metavar="BYTES",
                        help="push rate limit per data source (default: the config's, else 10 MiB)")
    parser.add_argument("--push-retention-s", type=float, metavar="S",
                        help="how long pushed increments are kept for a reindex to replay (default 3 days)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path = Path(args.config)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if args.port is not None:
        config["port"] = args.port
    server = server_from_config(config, config_path.parent)
    faults = server.engine.faults
    faults.phase_delay_s = args.phase_delay_s if args.phase_delay_s is not None else faults.phase_delay_s
    faults.fail_next_build = args.fail_next_build or faults.fail_next_build
    faults.stall_next_build = args.stall_next_build or faults.stall_next_build
    faults.stop_next_generation = args.stop_next_generation or faults.stop_next_generation
    faults.hold_switch_next_build = args.hold_switch_next_build or faults.hold_switch_next_build
    if args.register_delay_s is not None:
        faults.register_delay_s = args.register_delay_s
    for knob in ("drop_next_pushes", "push_apply_delay_s", "throttle_next_pushes"):
        if getattr(args, knob) is not None:
            setattr(faults, knob, getattr(args, knob))
    server.engine.configure_pushes(max_bytes_per_s=args.push_max_bytes_per_s, retention_s=args.push_retention_s)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("local OpenSearch server: signal %d, stopping", signum)
        stop.set()

    previous: dict[int, Callable[..., Any] | int | None] = {
        sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with server:
            if args.pidfile:
                Path(args.pidfile).write_text(f"{os.getpid()}\n", encoding="ascii")
            log.info("local OpenSearch server listening on %s (instance %s, tables %s)",
                     server.endpoint, server.engine.instance_id, ", ".join(server.engine.tables))
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if args.pidfile:
            try:
                if Path(args.pidfile).read_text(encoding="ascii").strip() == str(os.getpid()):
                    os.remove(args.pidfile)
            except OSError:
                pass
    log.info("local OpenSearch server stopped")
    return 0
