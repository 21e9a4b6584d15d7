"""Run reports: one JSON file per index and partition date, plus a readable summary for the log.

Reports go to ``$PIPELINE_REPORT_DIR`` (the make targets point it at ``.local/reports``), else to
``$AIRFLOW_HOME/reports``. They hold counts and ids only: never credentials.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def report_dir() -> Path:
    explicit = os.environ.get("PIPELINE_REPORT_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "reports"


def write_report(index: str, ds: str, report: dict, folder: Path | None = None) -> Path:
    """Write ``<folder>/<index>/<ds>.json`` atomically (temp file + rename) and return its path."""
    target_dir = (folder or report_dir()) / index
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{ds}.json"
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{ds}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def summarize(report: dict) -> str:
    """A few readable lines for the task log and the demo's last words."""
    load = report.get("load", {})
    stats = report.get("partition", {})
    lines = [f"index {report.get('index')} partition ds={report.get('ds')}"]
    if load:
        skipped = {k: v for k, v in load.get("skipped", {}).items() if v}
        lines.append(
            f"  listed {load.get('listed', 0)} objects in {load.get('pages', 0)} pages, kept {load.get('kept', 0)}, "
            f"skipped {load.get('skipped_total', 0)} {skipped or ''}".rstrip()
        )
        if load.get("unmapped_category_examples"):
            lines.append(f"  unmapped categories: {load['unmapped_category_examples']}")
    if stats:
        lines.append(f"  partition: {stats.get('rows')} rows, {stats.get('distinct_ids')} distinct ids")
        lines.append(f"  rows per category: {stats.get('rows_per_category')}")
    return "\n".join(lines)
