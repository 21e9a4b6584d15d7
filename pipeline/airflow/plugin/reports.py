"""What the report page reads: the index configs and each index's run reports, bounded and cached.

Only files the pipeline itself wrote are opened: an index's ``runs.jsonl`` names its reports, and a
report is opened only by a path that file lists, resolved inside the index's folder. Parsed reports are
cached by path, size and modification time, so a page of 90 runs reads each file once.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.config import IndexConfig, load_index_configs
from pipeline.report import RUNS_INDEX, report_dir

log = logging.getLogger(__name__)

MAX_RUNS = 90  # the newest runs an index page charts and lists (three months of nightly runs)
MAX_REPORT_BYTES = 8 * 1024 * 1024  # a report is some kB; anything this large is not one of ours
MAX_RUNS_FILE_BYTES = 32 * 1024 * 1024  # runs.jsonl: read its tail beyond this (about 100,000 runs)


def config_dir() -> Path:
    """Where the index configs live: ``$PIPELINE_INDEX_CONFIG_DIR``, else ``<[core] dags_folder>/indexes``
    (where ``dags/image_index.py`` reads them)."""
    explicit = os.environ.get("PIPELINE_INDEX_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")).expanduser() / "indexes"


def dag_id_of(config: IndexConfig) -> str:
    from pipeline.airflow.dag_factory import dag_id_for

    return dag_id_for(config)


@dataclass(frozen=True)
class Indexes:
    """The configured indexes by name, or why they could not be read."""

    configs: dict[str, IndexConfig]
    error: str | None = None


def load_indexes(folder: Path | None = None) -> Indexes:
    folder = folder or config_dir()
    try:
        signature = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.yaml")))
    except OSError as exc:
        return Indexes({}, f"cannot read the index configs in {folder}: {exc}")
    return _load_indexes(str(folder), signature)


@lru_cache(maxsize=8)
def _load_indexes(folder: str, signature: tuple) -> Indexes:
    try:
        return Indexes({config.name: config for _, config in load_index_configs(folder)})
    except Exception as exc:  # a broken config: the page says so instead of failing
        log.warning("report page: cannot load the index configs in %s: %s", folder, exc)
        return Indexes({}, f"cannot load the index configs in {folder}: {exc}")


def index_dir(index: str, folder: Path | None = None) -> Path:
    return (folder or report_dir()) / index


def runs(index: str, folder: Path | None = None, limit: int = MAX_RUNS) -> list[dict]:
    """The index's runs, newest first, one per report file (a rerun of a run replaces its report, and
    ``runs.jsonl`` then holds a line for each write: the last one stands, in the place of the run's
    first); at most ``limit``. Lines
    that are not JSON objects (a torn write, an edit by hand) are skipped."""
    path = index_dir(index, folder) / RUNS_INDEX
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > MAX_RUNS_FILE_BYTES:
                fh.seek(size - MAX_RUNS_FILE_BYTES)
                fh.readline()  # a partial first line
            raw = fh.read()
    except FileNotFoundError:
        return []
    latest: dict[str, dict] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("report"), str):
            latest[entry["report"]] = entry  # a rerun keeps its run's place, with its newest line
    return list(reversed(latest.values()))[:limit]


def find_run(index: str, report: str, folder: Path | None = None) -> dict | None:
    """The ``runs.jsonl`` entry naming report file ``report`` (as that file spells it), or None."""
    return next((run for run in runs(index, folder, limit=10**9) if run["report"] == report), None)


def read_report(index: str, report: str, folder: Path | None = None) -> dict | None:
    """The report ``runs.jsonl`` of ``index`` names as ``report``; None for a path it does not name, one
    that leaves the index's folder, a missing or oversized file or one that is not a JSON object."""
    if find_run(index, report, folder) is None:
        return None
    return _open_listed(index, report, folder)


def _open_listed(index: str, report: str, folder: Path | None) -> dict | None:
    """A report named in ``runs.jsonl`` (the caller read it there), if it is a sound file of the index."""
    base = index_dir(index, folder).resolve()
    path = (base / report).resolve()
    if not path.is_relative_to(base) or path.suffix != ".json":
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size > MAX_REPORT_BYTES:
        return None
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=512)
def _parse(path: str, mtime_ns: int, size: int) -> dict | None:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def figures(entry: dict, report: dict | None) -> dict:
    """One run's point of the charts: rows, ids added and removed, build minutes (reindex until live)."""
    report = report or {}
    changes = report.get("id_changes") or {}
    seconds = report.get("seconds") or {}
    build = _number(seconds.get("wait_until_searchable"))
    return {
        "ds": entry.get("ds") or report.get("ds"),
        "run_id": entry.get("run_id"),
        "report": entry.get("report"),
        "outcome": entry.get("outcome") or report.get("outcome"),
        "rows": _number((report.get("partition") or {}).get("rows")),
        "added": _number(changes.get("added")),
        "removed": _number(changes.get("removed")),
        "build_minutes": None if build is None else round(build / 60, 3),
    }


def series(index: str, entries: list[dict], folder: Path | None = None) -> list[dict]:
    """The charts' points, oldest first, for runs listed newest first."""
    return [figures(entry, _open_listed(index, entry["report"], folder)) for entry in reversed(entries)]
