"""Which partition a run writes: explicit, never ``now()``.

A Param wins; otherwise the run's logical date in the index's time zone. Manual runs in Airflow 3
have no logical date, so they fall back to the moment the run was requested (``run_after``).
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime

_PARAM_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def parse_partition_param(value: str) -> str:
    """Accept ``YYYY-MM-DD`` or ``YYYYMMDD`` (a real calendar date); return ``YYYYMMDD``."""
    match = _PARAM_RE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"partition_date must be YYYY-MM-DD or YYYYMMDD, got {value!r}")
    year, month, day = (int(part) for part in match.groups())
    try:
        datetime(year, month, day)
    except ValueError:
        raise ValueError(f"partition_date {value!r} is not a calendar date") from None
    return f"{year:04d}{month:02d}{day:02d}"


def resolve_partition_date(
    param: str | None, logical_date: datetime | None, run_after: datetime | None, timezone: str
) -> str:
    """The ``ds`` (YYYYMMDD) a run writes. Aware datetimes are converted into ``timezone``."""
    if param:
        return parse_partition_param(param)
    moment = logical_date or run_after
    if moment is None:
        raise ValueError("the run has neither a logical date nor run_after; pass the partition_date Param")
    if moment.tzinfo is None:
        raise ValueError(f"refusing a naive datetime {moment!r}: the partition date depends on its time zone")
    return moment.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y%m%d")
