"""The engine's records on disk: JSON written atomically, and the change-history task helpers.

Generations, tasks, the pause policy and the live pointer are small JSON files replaced atomically
(temp file, fsync, rename), so a restarted server reads a whole state, never half of one.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["finish_task", "now_iso", "public", "read_json", "visible", "write_json"]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: temp file in the same folder, fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read engine state {path}: {exc}") from exc


def visible(record: Mapping[str, Any]) -> bool:
    """Registered yet? (``register_delay_s`` hides a new generation and its task for a while.)"""
    return float(record.get("visibleAt") or 0) <= time.time()


def public(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as the management API shows it (without the engine's own bookkeeping)."""
    return {k: v for k, v in record.items() if k != "visibleAt"}


def finish_task(task: dict[str, Any], status: str, message: str) -> None:
    """End a change-history task ``failed``/``stopped``: the unfinished node gets the status, later ones
    are ``skipped``, and the message becomes the task's last tag."""
    task["status"] = status
    task["tags"].append({"tagLevel": "error" if status == "failed" else "warn", "msg": message})
    first = True
    for item in task["taskNodes"]:
        if item["status"] not in ("success",):
            item["status"] = (status if first else "skipped")
            item["finishDate"] = now_iso() if first else ""
            first = False
