"""The local MaxCompute server's command line, ``python -m localcloud.maxcompute``: serve a state folder
until SIGTERM/SIGINT. Point pyodps at the endpoint it logs (``http://127.0.0.1:PORT/api``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from localcloud.maxcompute.server import LocalMaxComputeServer, MaxComputeFaults
from localcloud.ram import TokenAuthority

logger = logging.getLogger("localcloud.maxcompute.server")


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground. The secret may come from ``LOCAL_MAXCOMPUTE_ACCESS_KEY_SECRET``
    instead of the command line, where any local user could read it in the process list."""
    parser = argparse.ArgumentParser(prog="python -m localcloud.maxcompute",
                                     description="Serve local MaxCompute projects to pyodps.")
    parser.add_argument("--root", required=True, help="state folder (projects, tables, tunnel sessions)")
    parser.add_argument("--project", action="append", default=[], help="a project to serve (repeatable; default local)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--access-key-id", default=os.environ.get("LOCAL_MAXCOMPUTE_ACCESS_KEY_ID"))
    parser.add_argument("--access-key-secret", default=os.environ.get("LOCAL_MAXCOMPUTE_ACCESS_KEY_SECRET"))
    parser.add_argument("--region", default="cn-hangzhou", help="the region V4 signatures must name")
    parser.add_argument("--sts-key-hex", default=os.environ.get("LOCAL_STS_KEY_HEX"),
                        help="the local STS authority's key: accept the temporary credentials it issues")
    parser.add_argument("--allow-full-scan", action="store_true",
                        help="the project flag odps.sql.allow.fullscan (off: a query must pin the partitions)")
    parser.add_argument("--error-burst", type=int, default=0, help="fault: the first N requests answer 500")
    parser.add_argument("--throttle-burst", type=int, default=0, help="fault: the first N requests answer 429")
    parser.add_argument("--sql-delay-s", type=float, default=0.0, help="fault: every SQL task takes this long")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not args.access_key_id or not args.access_key_secret:
        parser.error("--access-key-id and --access-key-secret (or LOCAL_MAXCOMPUTE_ACCESS_KEY_* variables) are required")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = LocalMaxComputeServer(
        args.root, {args.access_key_id: args.access_key_secret}, projects=args.project or ["local"],
        region=args.region, port=args.port, allow_full_scan=args.allow_full_scan,
        authority=TokenAuthority.from_hex(args.sts_key_hex) if args.sts_key_hex else None,
        faults=MaxComputeFaults(error_burst=args.error_burst, throttle_burst=args.throttle_burst,
                                sql_delay_s=args.sql_delay_s),
    )
    try:
        with server:
            logger.info("local MaxCompute listening on %s (projects %s, root %s)", server.endpoint,
                        ", ".join(args.project or ["local"]), server.root)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("local MaxCompute stopped")
    return 0
