"""Load the pipeline's SQL files (``<repo>/sql/<name>.sql``) and fill in their placeholders.

The same files run on MaxCompute and on DuckDB, so they are plain text with ``{table}``, ``{ds}``,
``{previous_ds}``, ``{lifecycle}``, ``{limit}``, ``{ids}`` and ``{after_id}`` placeholders. Values are spliced into SQL text (MaxCompute DDL has no bind parameters),
so every value is validated strictly before it goes in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.schema import validate_ds

SQL_DIR_ENV = "PIPELINE_SQL_DIR"
# The package is installed editable, so the repo's sql/ sits next to the package directory.
_DEFAULT_SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_PLACEHOLDER_RE = re.compile(r"\{(table|previous_table|source_table|ds|previous_ds|lifecycle|limit|ids|after_id)\}")
_PARAMS = ("table", "previous_table", "source_table", "ds", "previous_ds", "lifecycle", "limit", "ids", "after_id")
MAX_IDS = 1000
BIGINT_MAX = 2**63 - 1


def validate_table_name(table: str) -> str:
    """Return ``table`` if it is a plain identifier (no project prefix, no quoting needed)."""
    if not isinstance(table, str) or not _TABLE_RE.match(table):
        raise ValueError(
            f"table name must match {_TABLE_RE.pattern} (letters, digits, underscore; "
            f"no project prefix), got {table!r}"
        )
    return table


def validate_lifecycle(lifecycle: int) -> int:
    """Return ``lifecycle`` if it is a positive number of days."""
    # bool is an int subclass; True days is certainly a mistake.
    if isinstance(lifecycle, bool) or not isinstance(lifecycle, int) or lifecycle <= 0:
        raise ValueError(f"lifecycle must be a positive number of days, got {lifecycle!r}")
    return lifecycle


def sql_dir() -> Path:
    """The directory holding the .sql files: ``$PIPELINE_SQL_DIR`` if set, else the repo's sql/."""
    override = os.environ.get(SQL_DIR_ENV)
    return Path(override) if override else _DEFAULT_SQL_DIR


def load_sql(name: str, **params: str | int | list[int] | None) -> str:
    """Read ``sql/<name>.sql`` and substitute ``{table}``, ``{previous_table}``, ``{source_table}``
    (table names), ``{ds}``, ``{previous_ds}``, ``{lifecycle}``,
    ``{limit}``, ``{ids}`` (a non-empty list of at most :data:`MAX_IDS` integers) and ``{after_id}`` (a
    BIGINT, or None: ``CAST(NULL AS BIGINT)``, which the file tests with ``IS NULL``).

    Only those placeholders exist; each value is validated first. A placeholder used by the
    file but not given raises ValueError, so no half-filled statement ever reaches a warehouse.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"SQL file name must be a bare name like 'partition_stats', got {name!r}")
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise TypeError(f"load_sql({name!r}) got unknown parameters {unknown}; accepted: {list(_PARAMS)}")

    values: dict[str, str] = {}
    for key in ("table", "previous_table", "source_table"):
        if key in params:
            values[key] = validate_table_name(params[key])  # type: ignore[arg-type]
    if "ds" in params:
        values["ds"] = validate_ds(params["ds"])  # type: ignore[arg-type]
    if "previous_ds" in params:
        values["previous_ds"] = validate_ds(params["previous_ds"])  # type: ignore[arg-type]
    if "lifecycle" in params:
        values["lifecycle"] = str(validate_lifecycle(params["lifecycle"]))  # type: ignore[arg-type]
    if "limit" in params:
        limit = params["limit"]
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1_000_000:
            raise ValueError(f"limit must be an integer 1..1000000, got {limit!r}")
        values["limit"] = str(limit)
    if "ids" in params:
        ids = params["ids"]
        if (not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            raise ValueError(f"ids must be a list of 1..{MAX_IDS} integers, got {ids!r:.80}")
        values["ids"] = ", ".join(str(i) for i in ids)
    if "after_id" in params:
        after = params["after_id"]
        if after is None:
            values["after_id"] = "CAST(NULL AS BIGINT)"
        elif isinstance(after, int) and not isinstance(after, bool) and -BIGINT_MAX <= after <= BIGINT_MAX:
            values["after_id"] = str(after)  # -2^63 has no literal (its digits overflow): None starts there
        else:
            raise ValueError(f"after_id must be None or an integer from -(2^63-1) to 2^63-1, got {after!r:.80}")

    path = sql_dir() / f"{name}.sql"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"SQL file {path} not found (set {SQL_DIR_ENV} to the directory holding the .sql files)"
        ) from None

    missing = sorted({m.group(1) for m in _PLACEHOLDER_RE.finditer(text)} - set(values))
    if missing:
        raise ValueError(f"{path} needs parameters {missing} that were not given")
    # One regex pass: a substituted value is never re-scanned for placeholders.
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)
