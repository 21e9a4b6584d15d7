"""The local OSS server's command line, ``python -m localcloud.oss``: serve a folder until SIGTERM/SIGINT.

``python -m localcloud.oss inventory run --root ROOT --bucket SRC --id ID [--at 2026-01-02T03:04Z]
[--rows-per-file N] [--generated SPEC ...] [--fault KIND]`` writes one inventory of SRC by its rule ID
into the rule's destination bucket under ROOT (the server need not run) and prints the manifest key.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone

from localcloud.oss import faults as oss_faults
from localcloud.oss.archive import DEFAULT_RESTORE_DELAY_S
from localcloud.oss.generated import GeneratedBucket
from localcloud.oss.inventory import DEFAULT_ROWS_PER_FILE, FAULTS
from localcloud.oss.protocol import OssError
from localcloud.oss.server import Credential, LocalOssServer
from localcloud.ram import TokenAuthority

logger = logging.getLogger("localcloud.oss.server")


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until SIGTERM/SIGINT (for docker-less local runs and tests).

    The secret may come from ``LOCAL_OSS_ACCESS_KEY_SECRET`` instead of the command line, where any
    local user could read it in the process list.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["inventory"]:
        return inventory_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m localcloud.oss", description="Serve a local folder over the OSS protocol."
    )
    parser.add_argument("--root", required=True, help="folder whose sub-folders are buckets")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--access-key-id", default=os.environ.get("LOCAL_OSS_ACCESS_KEY_ID"))
    parser.add_argument("--access-key-secret", default=os.environ.get("LOCAL_OSS_ACCESS_KEY_SECRET"))
    parser.add_argument("--pidfile", help="write the process id here once listening; removed on exit")
    parser.add_argument("--latency-s", type=float, default=0.0, help="sleep this long before each answer")
    parser.add_argument(
        "--jitter-s", type=float, default=0.0, help="add a uniform random delay in [0, JITTER_S] to each answer"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter (default: unseeded)")
    parser.add_argument(
        "--restore-delay-s", type=float, default=DEFAULT_RESTORE_DELAY_S,
        help="how long a RestoreObject takes before the archived object is readable",
    )
    parser.add_argument(
        "--generated",
        action="append",
        default=[],
        type=GeneratedBucket.parse,
        metavar="SPEC",
        help="serve a generated read-only bucket, e.g. name=bench,prefixes=64,keys_per_prefix=15625,"
        "flat_keys=200000 (repeatable; see GeneratedBucket)",
    )
    parser.add_argument("--region", default="cn-hangzhou", help="the buckets' region, which V4 signatures must name")
    parser.add_argument("--accept-v1", action="store_true",
                        help="also accept V1 signatures (an old bucket); refused by default, as by a new bucket")
    parser.add_argument("--sts-key-hex", default=os.environ.get("LOCAL_STS_KEY_HEX"),
                        help="the local STS authority's key: accept the temporary credentials it issues")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    oss_faults.add_cli_arguments(parser)
    args = parser.parse_args(argv)
    if not args.access_key_id or not args.access_key_secret:
        parser.error("--access-key-id and --access-key-secret (or LOCAL_OSS_ACCESS_KEY_* variables) are required")

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logger.setLevel(args.log_level)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("local OSS server: received signal %d, stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = LocalOssServer(
        args.root,
        [Credential(args.access_key_id, args.access_key_secret)],
        port=args.port,
        latency_s=args.latency_s,
        jitter_s=args.jitter_s,
        seed=args.seed,
        generated=args.generated,
        faults=oss_faults.from_cli_arguments(args),
        region=args.region,
        accept_v1=args.accept_v1,
        authority=TokenAuthority.from_hex(args.sts_key_hex) if args.sts_key_hex else None,
        restore_delay_s=args.restore_delay_s,
    )
    try:
        with server:
            if args.pidfile:
                with open(args.pidfile, "w", encoding="ascii") as fh:
                    fh.write(f"{os.getpid()}\n")
            logger.info("local OSS server listening on %s (root %s)", server.endpoint, server.root)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.pidfile:
            try:
                with open(args.pidfile, encoding="ascii") as fh:
                    mine = fh.read().strip() == str(os.getpid())
                if mine:
                    os.remove(args.pidfile)
            except OSError:
                pass
    logger.info("local OSS server stopped")
    return 0



def inventory_main(argv: list[str]) -> int:
    """``inventory run``: write an inventory now (see :func:`localcloud.oss.inventory.run_inventory`)."""
    parser = argparse.ArgumentParser(prog="python -m localcloud.oss inventory",
                                     description="Write a bucket inventory as OSS does, into the rule's destination bucket.")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="scan a bucket by one of its inventory rules and write manifest and data files")
    run.add_argument("--root", required=True, help="the server's root folder (buckets are its sub-folders)")
    run.add_argument("--bucket", required=True, help="the source bucket the rule belongs to")
    run.add_argument("--id", required=True, help="the inventory rule id")
    run.add_argument("--at", type=_utc, default=None, help="the scan's start, UTC (e.g. 2026-01-02T03:04Z; default now)")
    run.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE, help="rows per data file")
    run.add_argument("--generated", action="append", default=[], type=GeneratedBucket.parse, metavar="SPEC",
                     help="a generated bucket, as for the server (repeatable)")
    run.add_argument("--fault", choices=FAULTS, default=None, help="write a damaged or unfinished inventory")
    args = parser.parse_args(argv)
    server = LocalOssServer(args.root, [Credential("inventory", "unused")], generated=args.generated)
    try:
        print(server.run_inventory(args.bucket, args.id, args.at, rows_per_file=args.rows_per_file, fault=args.fault))
    except (OssError, ValueError, OSError) as exc:
        print(f"inventory run failed: {exc}", file=sys.stderr)
        return 2
    return 0


def _utc(text: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H-%MZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"not a UTC time like 2026-01-02T03:04Z: {text!r}")
