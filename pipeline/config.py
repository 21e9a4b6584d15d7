"""Index configuration: one YAML file per index under ``dags/indexes/``, validated into typed config.

Every validation failure becomes a :class:`~pipeline.errors.ConfigError` whose message names the file,
the field and the bad value, so an operator can fix the YAML without reading this module.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.patterns import check_rule_regex

_NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"
_TABLE_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_BUCKET_RE = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


def check_prefixes(value: list[str]) -> list[str]:
    """The rules every list of prefixes to list keeps (the config's and a run's ``prefixes`` Param):
    no leading '/', no '..' segment, none inside another. Raises ValueError naming the prefix."""
    for prefix in value:
        if prefix.startswith("/"):
            raise ValueError(f"prefix {prefix!r} must not start with '/': OSS keys have no leading slash")
        if ".." in prefix.split("/"):
            raise ValueError(f"prefix {prefix!r} must not contain '..' segments")
    for i, a in enumerate(value):
        for j, b in enumerate(value):
            if i != j and b.startswith(a):
                # Overlapping prefixes would list the same keys twice and duplicate ids.
                raise ValueError(f"prefix {b!r} lies inside prefix {a!r}: keys would be listed twice")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where the images are and which objects count as images."""

    oss_conn_id: str = Field(min_length=1)
    bucket: Annotated[str, Field(pattern=_BUCKET_RE)]
    prefixes: list[str] = Field(min_length=1)
    extensions: list[str] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png", "webp", "bmp", "gif"], min_length=1, validate_default=True
    )
    min_size_bytes: int = Field(default=1, ge=0)
    max_size_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Workers listing this index at once (1: one request at a time, as before). Each worker has one
    # request in flight, so a listing sends at most list_concurrency / round-trip requests per second:
    # 16 at 0.1-0.3 s per 1,000-key page is 50-160 requests/s, under a tenth of the ~2,000/s OSS
    # sustains for sequential key names, leaving room for retries and for other indexes listing at
    # the same time. Raise it when pages are slow (at 0.3 s, 48-64 workers stay near 200 requests/s);
    # one process handles a page in ~3.6 ms of CPU under the GIL, so beyond ~250 pages/s more workers
    # add requests, not speed. The oss2 connection pool is sized to match. See BENCHMARKS.md.
    list_concurrency: int = Field(default=16, ge=1, le=128)

    # May the `prefixes` Param of a run list prefixes outside `prefixes` (e.g. another folder of the
    # bucket)? Off: a run may only narrow the listing to prefixes within the configured ones.
    allow_param_prefixes_outside: bool = False

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return check_prefixes(value)

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        cleaned = []
        for ext in value:
            ext = ext.lower().lstrip(".")
            if not re.fullmatch(r"[a-z0-9]{1,10}", ext):
                raise ValueError(f"extension {ext!r} must be letters or digits, like 'jpg'")
            cleaned.append(ext)
        return sorted(set(cleaned))

    @model_validator(mode="after")
    def _size_bounds(self) -> SourceConfig:
        if self.min_size_bytes > self.max_size_bytes:
            raise ValueError(
                f"min_size_bytes ({self.min_size_bytes}) is larger than max_size_bytes ({self.max_size_bytes})"
            )
        return self


class IdRule(_Strict):
    """How the BIGINT primary key is derived from an object key.

    ``filename_digits``: the first group of ``regex`` matched against the file name (default: the
    digits right before the extension). ``hash``: a stable 63-bit BLAKE2b hash of the full key, the
    same on every machine and Python version (never Python's salted ``hash()``).
    """

    kind: Literal["filename_digits", "hash"]
    regex: str = r"(\d+)\.[^.]+$"

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        return check_rule_regex(value, "the digits")  # RE2 runs it (linear time): see pipeline/patterns.py


class CategoryRule(_Strict):
    """How ``cate_id`` is derived from an object key.

    ``path_segment``: segment ``segment`` of the key split on '/', 0-based; negative counts from the
    file name backwards (-2 is the folder holding the file). ``regex``: group 1 of ``regex`` searched
    in the key. The extracted token is looked up in ``mapping`` when one is given, otherwise it must be
    an integer. A token that yields no id is "unmapped" and handled by ``unmapped``: ``skip`` (count it),
    ``default`` (use ``default_id``) or ``fail`` (stop the run).
    """

    kind: Literal["path_segment", "regex"]
    segment: int | None = None
    regex: str | None = None
    mapping: dict[str, int] | None = None
    unmapped: Literal["skip", "default", "fail"] = "skip"
    default_id: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CategoryRule:
        if self.kind == "path_segment":
            if self.segment is None:
                raise ValueError("kind 'path_segment' needs 'segment' (0-based index into the key's '/' parts)")
            if self.regex is not None:
                raise ValueError("kind 'path_segment' takes 'segment', not 'regex'")
        else:
            if self.regex is None:
                raise ValueError("kind 'regex' needs 'regex' with one capture group")
            if self.segment is not None:
                raise ValueError("kind 'regex' takes 'regex', not 'segment'")
            check_rule_regex(self.regex, "the category")  # RE2 runs it (linear time): see pipeline/patterns.py
        if self.unmapped == "default" and self.default_id is None:
            raise ValueError("unmapped: default needs 'default_id'")
        if self.unmapped != "default" and self.default_id is not None:
            raise ValueError(f"default_id is set but unmapped is {self.unmapped!r}: set unmapped: default or drop it")
        if self.mapping is not None:
            if not self.mapping:
                raise ValueError("mapping is empty: remove it or list name: id pairs")
            for name, cate_id in self.mapping.items():
                if cate_id < 0:
                    raise ValueError(f"mapping[{name!r}] = {cate_id}: category ids must be >= 0")
        return self


class WarehouseConfig(_Strict):
    """The partitioned catalog table (MaxCompute, or the local warehouse: the connection decides)."""

    conn_id: str = Field(min_length=1)
    table: Annotated[str, Field(pattern=_TABLE_RE)]
    lifecycle_days: int = Field(default=30, ge=1, le=37231)


class GuardsConfig(_Strict):
    """Bounds a partition must keep before it may replace the live index (see pipeline/guards.py)."""

    max_shrink_fraction: float = Field(default=0.10, ge=0, le=1)  # against the partition that last went live
    max_unmapped_fraction: float = Field(default=0.05, ge=0, le=1)  # of images: unmapped / (kept + unmapped)
    max_skipped_fraction: float = Field(default=0.50, ge=0, le=1)  # of listed objects, for any reason
    # Of the partition's rows (distinct ids), the share the new generation may lack: rows whose image the
    # service could not fetch or decode are left out of a build that still succeeds (the local server
    # fails a build only past 5%; the cloud documents no limit). Checked when the wait ends ready, after
    # the switch (the service switches in by itself), so it fails the run but cannot keep the index out.
    # 1%: a few corrupt uploads pass with a report (3 of 320 in the demo); a systematic fault (a broken
    # converter, an unreadable prefix, a wrong format) is loud the same night. Not overridable per run.
    max_unindexed_fraction: float = Field(default=0.01, ge=0, le=1)


class SmokeConfig(_Strict):
    """Queries that prove the new index answers. The image query always runs; the text one if given."""

    top_k: int = Field(default=5, ge=1, le=100)
    samples: int = Field(default=1, ge=1, le=20)
    text_query: str | None = None
    text_min_hits: int = Field(default=1, ge=0)


class OpenSearchConfig(_Strict):
    """The OpenSearch table the catalog feeds, and how long a rebuild may take."""

    conn_id: str = Field(min_length=1)
    table: Annotated[str, Field(pattern=_TABLE_RE)]
    pool: str | None = None  # default: opensearch_<conn_id>, one rebuild at a time per instance
    primary_key: str = "id"
    vector_index: str = "vector"
    cluster: str = "general"
    poll_interval_s: float = Field(default=60, ge=0.1, le=3600)
    stall_timeout_minutes: float = Field(default=60, gt=0)
    deadline_hours: float = Field(default=12, gt=0, le=72)
    new_generation_timeout_minutes: float = Field(default=10, gt=0)
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)

    @property
    def pool_name(self) -> str:
        return self.pool or f"opensearch_{self.conn_id}"

    @model_validator(mode="after")
    def _times(self) -> OpenSearchConfig:
        if self.stall_timeout_minutes * 60 < self.poll_interval_s:
            raise ValueError(
                f"stall_timeout_minutes ({self.stall_timeout_minutes}) is shorter than one poll_interval_s "
                f"({self.poll_interval_s}): every wait would stall"
            )
        if self.deadline_hours * 60 < self.stall_timeout_minutes:
            raise ValueError(
                f"deadline_hours ({self.deadline_hours}) is shorter than stall_timeout_minutes ({self.stall_timeout_minutes})"
            )
        return self


class IndexConfig(_Strict):
    """One OpenSearch image index fed from OSS through a partitioned catalog table."""

    name: Annotated[str, Field(pattern=_NAME_RE)]
    description: str = ""
    schedule: str | None = "0 2 * * *"
    timezone: str = "UTC"
    start_date: str = "2026-01-01"
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay_minutes: float = Field(default=5, ge=0)
    owner: str = "data-platform"
    load_pool: str | None = None  # an Airflow pool capping concurrent listings across indexes
    tags: list[str] = Field(default_factory=list)
    source: SourceConfig
    id_rule: IdRule
    category_rule: CategoryRule
    warehouse: WarehouseConfig
    opensearch: OpenSearchConfig | None = None  # without it the DAG stops after the partition check
    guards: GuardsConfig = Field(default_factory=GuardsConfig)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Asia/Shanghai'") from None
        return value

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"start_date {value!r} must be YYYY-MM-DD")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value.startswith("@"):
            return value
        if len(value.split()) != 5:
            raise ValueError(f"schedule {value!r} must be a 5-field cron expression, a preset like '@daily', or null")
        return value


def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for item in loc:
        try:
            data = data[item]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _describe(path: str, data: Any, error: ValidationError) -> str:
    lines = [f"{path}: invalid index config"]
    for item in error.errors():
        loc = tuple(x for x in item["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
        field = _format_location(loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.append(f"  {field}: required field is missing")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown field (check the spelling; see dags/indexes/README.md)")
        else:
            value = _lookup(data, loc) if loc else None
            shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
            lines.append(f"  {field}: {message}{shown}")
    return "\n".join(lines)


def parse_index_config(data: Any, source: str = "<config>") -> IndexConfig:
    """Validate already-loaded YAML data; ``source`` names the file in error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a mapping of fields, got {type(data).__name__}")
    try:
        return IndexConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(source, data, exc)) from None


def load_index_config(path: str | Path) -> IndexConfig:
    """Read and validate one index config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read index config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_index_config(data, str(path))


def load_index_configs(folder: str | Path) -> list[tuple[Path, IndexConfig]]:
    """All ``*.yaml`` files in ``folder``, sorted by name; index names must be unique."""
    configs: list[tuple[Path, IndexConfig]] = []
    seen: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        config = load_index_config(path)
        if config.name in seen:
            raise ConfigError(f"{path}: name {config.name!r} is already used by {seen[config.name]}")
        seen[config.name] = path
        configs.append((path, config))
    return configs
