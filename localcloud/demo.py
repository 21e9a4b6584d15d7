"""``python -m localcloud.demo``: run the demo index's DAG end to end on the local stack.

1. local state under ``$PIPELINE_LOCAL_DIR`` (``.local/``): OSS root, MaxCompute projects, OpenSearch
   state, Airflow home, reports, and the stack's secrets (random, made once per checkout, never in code);
2. the local OSS, MaxCompute and OpenSearch servers on free loopback ports, and the demo bucket (made
   once); the catalog partition is written with pyodps into the local MaxCompute (``--warehouse fs``:
   into Parquet files instead, no MaxCompute);
3. ``airflow db migrate``, the one-slot rebuild pool, then ``airflow dags test image_index_demo`` for
   ``--date`` (default: today in the index's time zone) with the connections passed as
   ``AIRFLOW_CONN_*``;
4. the servers stop, and the run report's summary is printed: the outcome first (and for a failed run
   the failing task and its message), the partition, the generation that went live and a query's top
   hits, then where the report and the log are.

The console shows one progress line and that summary. Airflow's own output (some 400 lines), the
servers' and the demo's logs go to ``.local/logs/demo-<ds>.log``.

Repeated runs reuse the bucket (put back as the demo makes it), overwrite the same partition and rebuild
the index again. ``--change 5%`` shows a delta run: a full run of the day before, then 5% of the demo
images changed in OSS (a third added, replaced, deleted), then the day's run with ``rebuild_mode=delta``.

Fault knobs show each failure mode offline, e.g.::

    python -m localcloud.demo --fault oss.slow_down_next=3             # retried, same result
    python -m localcloud.demo --fault opensearch.fail_next_build=disk  # the run fails, says why
    python -m localcloud.demo --fault opensearch-http.throttle_next=2

    python -m localcloud.demo --fault maxcompute.error_burst=2        # pyodps and the task retry
    python -m localcloud.demo --fault tunnel.fail_next_commit=1       # the load fails, nothing published

Targets: ``oss`` (localcloud/oss/faults.py), ``opensearch`` (EngineFaults), ``opensearch-http``
(HttpFaults), ``maxcompute`` (MaxComputeFaults) and ``tunnel`` (the Table Tunnel's faults).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from localcloud.stack import ACCOUNT_ID, AUTH_TYPES, DEMO_CONFIG, WAREHOUSES, LocalPaths, LocalStack, StackTable

log = logging.getLogger("localcloud.demo")


def demo_stack(paths: LocalPaths, **options: Any) -> LocalStack:
    """The stack the demo index config expects: its OpenSearch table fed from its warehouse table."""
    from pipeline.config import load_index_config

    config = load_index_config(DEMO_CONFIG)
    assert config.opensearch is not None
    return LocalStack(paths, [StackTable(config.opensearch.table, config.warehouse.table)], **options)


def _parse_value(text: str) -> object:
    """Knob values: integers, floats, true/false, else the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def apply_faults(stack: LocalStack, specs: list[str]) -> None:
    """Set ``target.knob=value`` fault knobs on the running stack; unknown targets or knobs are errors."""
    assert stack.oss is not None and stack.opensearch is not None
    for spec in specs:
        target, _, assignment = spec.partition(".")
        knob, equals, raw = assignment.partition("=")
        if not equals or not knob:
            raise SystemExit(f"--fault {spec!r}: expected TARGET.KNOB=VALUE, e.g. oss.slow_down_next=3")
        value = _parse_value(raw)
        if target == "oss":
            try:
                stack.oss.faults.set(**{knob: value})
            except ValueError as exc:
                raise SystemExit(f"--fault {spec!r}: {exc}") from None
            continue
        holders = {"opensearch": stack.opensearch.engine.faults, "opensearch-http": stack.opensearch.http_faults}
        if stack.maxcompute is not None:
            holders.update({"maxcompute": stack.maxcompute.faults, "tunnel": stack.maxcompute.tunnel.faults})
        holder = holders.get(target)
        if holder is None:
            raise SystemExit(f"--fault {spec!r}: target must be oss or one of {', '.join(sorted(holders))}")
        if knob.startswith("_") or not hasattr(holder, knob) or callable(getattr(holder, knob)):
            raise SystemExit(f"--fault {spec!r}: {type(holder).__name__} has no knob {knob!r}")
        setattr(holder, knob, value)
        log.warning("fault knob set: %s.%s = %r", target, knob, value)


def demo_date(timezone: str, now: datetime | None = None) -> str:
    """Today in the index's time zone (YYYY-MM-DD): the partition a nightly run of today writes."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone)).date().isoformat()


def dags_test_args(index: str, day: str, source: str | None = None, **params: Any) -> list[str]:
    """``airflow dags test`` for ``day``'s partition, named by the ``partition_date`` Param as a manual
    run names it. No logical date: `dags test` starts the run's clock at the logical date, so a run
    for midnight showed in the UI as hours long; without one, the run starts now."""
    conf = {"partition_date": day, **({"source_mode": source} if source else {}), **params}
    return ["dags", "test", f"image_index_{index}", "--conf", json.dumps(conf)]


def prepare_demo_inventory(stack: LocalStack, oss: Any, config: Any, at: datetime | None = None) -> str:
    """What OSS would have done overnight for ``source.mode: inventory``: the destination bucket, the
    inventory rule (set up as ``python -m pipeline.oss.inventory setup`` does), and a run of it now.
    ``at``: when the run started (default now). Returns the new manifest's key."""
    import oss2

    from pipeline.oss.inventory.cli import setup

    inventory = config.source.inventory
    destination = oss.bucket(inventory.bucket)
    try:
        destination.list_objects_v2(max_keys=1)
    except oss2.exceptions.NoSuchBucket:
        destination.create_bucket()
    setup(config, f"acs:ram::{ACCOUNT_ID}:role/AliyunOSSRole", conn=oss, out=log.info)
    manifest = stack.oss.run_inventory(config.source.bucket, inventory.id, at)
    log.info("demo inventory %s written: %s", inventory.id, manifest)
    return manifest


def log_path_for(paths: LocalPaths, ds: str) -> Path:
    return paths.root / "logs" / f"demo-{ds}.log"


@contextmanager
def output_to_log(path: Path) -> Iterator[TextIO]:
    """Send everything this process and its children write to stdout and stderr (file descriptors 1
    and 2: Airflow's logs, the local servers' logs, warnings) into ``path``; yield the console (the
    original stdout) for the few lines the user should see. Restored on the way out, errors included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    with open(path, "w", buffering=1, encoding="utf-8", errors="replace") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            console.close()


class Progress:
    """One short line on the console: ``demo ds=…: stack · bucket · airflow · resolve_partition · …``,
    a step at a time (no carriage returns, so it reads the same in a terminal and in CI logs)."""

    TASK_STARTED = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")

    def __init__(self, console: TextIO, prefix: str) -> None:
        self.console, self.steps = console, []
        self.run_started = 0  # index in steps where the current DAG run's tasks begin
        self.console.write(prefix)
        self.console.flush()

    def step(self, name: str, new_run: bool = False) -> None:
        """Show a step; ``new_run``: it starts another DAG run (its tasks are no retries of the last's)."""
        self.console.write((" · " if self.steps else " ") + name)
        self.console.flush()
        self.steps.append(name)
        if new_run:
            self.run_started = len(self.steps)

    def watch(self, line: str) -> None:
        """A line of ``airflow dags test`` output: a task starting is a step (again in one run: a retry)."""
        match = self.TASK_STARTED.search(line)
        if match:
            task_id = match.group(1)
            tries = sum(1 for step in self.steps[self.run_started:] if step.split(" (retry")[0] == task_id)
            self.step(f"{task_id} (retry {tries})" if tries else task_id)

    def end(self, text: str) -> None:
        self.console.write(f" {text}\n")
        self.console.flush()


def _airflow(args: list[str], env: dict[str, str], progress: Progress | None = None) -> int:
    """Run the venv's ``airflow`` with its output copied into this process's stdout (the log file while
    :func:`output_to_log` is on); ``progress`` sees each line. Returns the exit status."""
    airflow = Path(sys.executable).with_name("airflow")
    with subprocess.Popen(
        [str(airflow), *args], env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if progress is not None:
                progress.watch(line)
    sys.stdout.flush()
    return proc.returncode


def new_report(index_dir: Path, runs_before: int) -> tuple[dict, Path] | None:
    """The report the run just wrote: the last line added to ``runs.jsonl`` since ``runs_before``."""
    from pipeline.report import read_runs

    added = read_runs(index_dir)[runs_before:]
    if not added:
        return None
    path = index_dir / added[-1]["report"]
    return json.loads(path.read_text(encoding="utf-8")), path


def show_outcome(console: TextIO, found: tuple[dict, Path] | None, log_path: Path) -> None:
    """The run summary, outcome and failing task first; then where the report and Airflow's log are."""
    from pipeline.report import summarize

    rule = "=" * 78
    console.write(rule + "\n")
    if found is None:
        console.write("FAILED: the run wrote no report (it stopped before its report task); the end of Airflow's log:\n")
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:] if log_path.exists() else []
        console.write("".join(f"    {line}\n" for line in tail))
    else:
        report, report_path = found
        console.write(summarize(report) + "\n")
        console.write(f"report: {report_path}\n")
    console.write(f"Airflow's log: {log_path}\n")
    console.write(rule + "\n")
    console.flush()


def run_demo(day: str | None = None, faults: list[str] | None = None, auth_type: str = "AK",
             warehouse: str = "maxcompute", source: str = "list", change: float | None = None) -> int:
    """Run the demo DAG for ``day`` (YYYY-MM-DD; default: today in the index's time zone). The console
    gets one progress line and the run summary; everything else goes to ``.local/logs/demo-<ds>.log``."""
    from pipeline.config import load_index_config
    from pipeline.dates import parse_partition_param
    from pipeline.report import read_runs

    paths = LocalPaths.from_env()
    config = load_index_config(DEMO_CONFIG)
    day = day or demo_date(config.timezone)
    ds = parse_partition_param(day)
    log_path = log_path_for(paths, ds)
    index_dir = paths.reports / config.name
    runs_before = len(read_runs(index_dir))
    with output_to_log(log_path) as console:
        progress = Progress(console, f"demo image_index_{config.name} ds={ds} (log: {log_path}):")
        try:
            status = _run_in_stack(paths, config, day, faults or [], auth_type, warehouse, progress, source, change)
        except BaseException:
            progress.end("stopped: see the log")
            raise
        progress.end("done" if status == 0 else "failed")
        found = new_report(index_dir, runs_before)
        show_outcome(console, found, log_path)
    failed = status != 0 or found is None or found[0].get("outcome") in ("failed", "unknown")
    return 1 if failed else 0


def _run_in_stack(paths: LocalPaths, config: Any, day: str, faults: list[str], auth_type: str,
                  warehouse: str, progress: Progress, source: str = "list", change: float | None = None) -> int:
    """Stack up, bucket, Airflow DB and pool, then ``airflow dags test``; its exit status. With ``change``
    (a fraction of the images): a full run of the day before, then that share of the bucket changed, then
    a delta run of ``day``."""
    from localcloud.demo_data import change_demo_bucket, reset_demo_bucket
    from pipeline.oss.client import OssConnection

    with demo_stack(paths, auth_type=auth_type, warehouse=warehouse) as stack:
        progress.step("stack")
        env = {
            **os.environ,
            **stack.environment(),
            "AIRFLOW_HOME": str(paths.airflow_home),
            "PIPELINE_REPORT_DIR": str(paths.reports),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The triggerer runs inline in `dags test`; the executable must be the venv's.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        oss = OssConnection.from_extras("oss_local", stack.connections("AK")["oss_local"]["extra"])
        written = reset_demo_bucket(oss.bucket(config.source.bucket))
        log.info("demo bucket %s at %s: %s", config.source.bucket, oss.endpoint, written)
        if source == "inventory":
            prepare_demo_inventory(stack, oss, config)
        apply_faults(stack, faults)
        progress.step("bucket" + (" and its inventory" if source == "inventory" else "")
                      + (f" (faults: {', '.join(faults)})" if faults else ""))
        if _airflow(["db", "migrate"], env) != 0:
            return 1
        subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], env=env, check=True)
        progress.step("airflow db")
        route = source if source != "list" else None
        if change is None:
            return _airflow(dags_test_args(config.name, day, route), env, progress)
        before = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        progress.step(f"full run of {before}", new_run=True)
        status = _airflow(dags_test_args(config.name, before, route, rebuild_mode="full", force_rebuild=True), env, progress)
        if status != 0:
            return status
        changed = change_demo_bucket(oss.bucket(config.source.bucket), change)
        log.info("demo bucket changed: %s", changed)
        if source == "inventory":
            prepare_demo_inventory(stack, oss, config)
        progress.step(f"{change:.0%} changed ({len(changed['added'])} added, {len(changed['replaced'])} replaced, "
                      f"{len(changed['deleted'])} deleted); delta run of {day}", new_run=True)
        return _airflow(dags_test_args(config.name, day, route, rebuild_mode="delta"), env, progress)


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / 100
    except ValueError:
        value = -1.0
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"expected a share of the images from 0% to 50%, e.g. 5%, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=None, type=_day,
                        help="the day to run (YYYY-MM-DD), the partition it writes; default: today in the index's time zone")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="TARGET.KNOB=VALUE",
        help="set a fault knob before the run (repeatable), e.g. oss.slow_down_next=3",
    )
    parser.add_argument("--auth", choices=AUTH_TYPES, default="AK",
                        help="how the connections authenticate (temporary credentials come from the local STS)")
    parser.add_argument("--warehouse", choices=WAREHOUSES, default="maxcompute",
                        help="where the catalog partition goes: the local MaxCompute server (pyodps), or fs Parquet files")
    parser.add_argument("--source", choices=("list", "inventory"), default="list",
                        help="how the run reads the bucket: list it, or have the local OSS write an inventory "
                             "that MaxCompute reads (needs --warehouse maxcompute)")
    parser.add_argument("--change", default=None, type=_percent, metavar="PERCENT",
                        help="show a delta run: a full run of the day before, then change this share of the demo "
                             "images (a third added, replaced, deleted), then the day's run in delta mode, e.g. 5%%")
    args = parser.parse_args(argv)
    if args.source == "inventory" and args.warehouse != "maxcompute":
        parser.error("--source inventory needs --warehouse maxcompute: MaxCompute reads the inventory")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(args.date, args.fault, args.auth, args.warehouse, args.source, args.change)


if __name__ == "__main__":
    sys.exit(main())
