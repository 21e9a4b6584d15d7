"""Index configuration: one YAML file per index under ``dags/indexes/``, validated into typed config.

Every validation failure becomes a :class:`~pipeline.errors.ConfigError` whose message names the file,
the field and the bad value, so an operator can fix the YAML without reading this module.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.assets import check_asset_uri, index_asset_ids
from pipeline.config_yaml import clip, excerpt, format_location, load_config_yaml
from pipeline.errors import ConfigError
from pipeline.patterns import check_rule_regex

# Airflow's presets (airflow.sdk.definitions.timetables._cron.CRON_PRESETS, resolved before croniter
# parses the expression; croniter knows @midnight and @annually itself) and the two that are no cron.
_CRON_PRESETS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *", "@midnight": "0 0 * * *", "@annually": "0 0 1 1 *",
}
_NOT_CRON = {"@once", "@continuous"}

_NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"
_TABLE_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_BUCKET_RE = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"

# Bounds on every number and list, so that no value a file can hold breaks a later step (a segment of
# -2**31 made pyarrow abort the process with std::bad_alloc; 1e20 was an OverflowError).
INT64_MAX = 2**63 - 1  # ids and category ids are BIGINT
MAX_KEY_BYTES = 1023  # the longest OSS object key: at most 1,024 '/'-separated segments
MAX_OBJECT_BYTES = 50 * 1024**4  # OSS objects are at most 48.8 TiB
MAX_MINUTES = 72 * 60  # the longest rebuild deadline (deadline_hours <= 72)
#: Airflow's own limits: connection ids 250 characters, pool names 256, tags 100.
_AirflowId = Annotated[str, Field(min_length=1, max_length=250)]
_Pool = Annotated[str, Field(max_length=256)]
_Tag = Annotated[str, Field(min_length=1, max_length=100)]
_Short = Annotated[str, Field(max_length=250)]


def check_schedule(value: str | None) -> str | None:
    """A schedule Airflow takes as a string: null, @once, @continuous, or a 5-field cron expression or
    preset that croniter parses as Airflow's cron timetables do and that fires at least once (Airflow
    itself would accept '0 0 30 2 *', which never does). Raises ValueError naming the schedule."""
    if value is None or value in _NOT_CRON:
        return value
    if not value.startswith("@") and len(value.split()) != 5:
        raise ValueError(f"schedule {value!r} must be a 5-field cron expression, a preset like '@daily', or null")
    try:
        cron = croniter(_CRON_PRESETS.get(value, value))
    except (ValueError, KeyError, TypeError, OverflowError) as exc:  # CroniterBadCronError is a ValueError
        if value.startswith("@"):
            raise ValueError(f"schedule {value!r} is no preset Airflow knows: use one of "
                             f"{', '.join(sorted({*_CRON_PRESETS, *_NOT_CRON}))}, or a cron expression") from None
        raise ValueError(f"schedule {value!r} is not a cron expression Airflow accepts: {exc}") from None
    try:
        cron.get_next(datetime.datetime, start_time=datetime.datetime(2026, 1, 1))
    except CroniterBadDateError:
        raise ValueError(f"schedule {value!r} never fires (no such date)") from None
    return value


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
    # strict: YAML's `true` is no 1 and "5" no 5 (a category `shoes: true` was id 1); ints still read
    # as floats. No inf or nan: every float has bounds.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class InventoryConfig(_Strict):
    """Where an OSS Bucket Inventory of the source bucket lands, for ``source.mode: inventory``.

    OSS writes ``<prefix>/<source bucket>/<id>/<YYYY-MM-DDTHH-MMZ>/manifest.json`` into ``bucket`` with
    the run's gzip CSV files under ``<prefix>/<source bucket>/<id>/data/``. A run uses the newest complete
    manifest created at or before the end of its partition's day and at most ``max_age_hours`` before
    it; otherwise it fails, or lists the bucket instead with ``fallback: list``. The run's files are
    copied (server-side) under ``work_prefix`` for MaxCompute to read them, and nothing else, through an
    external table, as RAM role ``role_arn`` (the role MaxCompute assumes to read OSS)."""

    bucket: Annotated[str, Field(pattern=_BUCKET_RE)]
    prefix: Annotated[str, Field(max_length=MAX_KEY_BYTES)] = ""
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    max_age_hours: float = Field(default=48, gt=0, le=24 * 31)
    fallback: Literal["fail", "list"] = "fail"
    work_prefix: Annotated[str, Field(min_length=1, max_length=MAX_KEY_BYTES)] = "image-index-inventory/"
    role_arn: Annotated[str, Field(pattern=r"^acs:ram::\d+:role/[A-Za-z0-9._-]{1,64}$")]
    # The OSS endpoint MaxCompute reads from (the internal one of the bucket's region, e.g.
    # oss-cn-hangzhou-internal.aliyuncs.com); default: the OSS connection's endpoint.
    oss_endpoint: Annotated[str, Field(max_length=253)] | None = None

    @field_validator("prefix", "work_prefix")
    @classmethod
    def _folder(cls, value: str) -> str:
        if value and (value.startswith("/") or ".." in value.split("/") or not value.endswith("/")):
            raise ValueError(f"{value!r} must be a folder: no leading '/', no '..', ending in '/'")
        return value


class SourceConfig(_Strict):
    """Where the images are and which objects count as images."""

    oss_conn_id: _AirflowId
    bucket: Annotated[str, Field(pattern=_BUCKET_RE)]
    # At most 100 (each is checked against every other), each at most an OSS key long.
    prefixes: list[Annotated[str, Field(max_length=MAX_KEY_BYTES)]] = Field(min_length=1, max_length=100)
    extensions: list[Annotated[str, Field(max_length=20)]] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png", "webp", "bmp", "gif"], min_length=1, max_length=50,
        validate_default=True,
    )
    min_size_bytes: int = Field(default=1, ge=0, le=MAX_OBJECT_BYTES)
    max_size_bytes: int = Field(default=20 * 1024 * 1024, gt=0, le=MAX_OBJECT_BYTES)
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

    # list: list the bucket through the worker (cost grows with the bucket); inventory: read the
    # bucket's OSS inventory inside MaxCompute (the worker only orchestrates). See InventoryConfig.
    mode: Literal["list", "inventory"] = "list"
    inventory: InventoryConfig | None = None

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
    def _inventory(self) -> SourceConfig:
        if self.mode == "inventory" and self.inventory is None:
            raise ValueError("mode 'inventory' needs an 'inventory' section (bucket, id, role_arn)")
        return self

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
    same on every machine and Python version (never Python's salted ``hash()``). ``md5``: the first
    64 bits of the MD5 of the full key (UTF-8) with the top bit cleared, which MaxCompute SQL computes
    too: the one hash both routes (list and inventory) share.
    """

    kind: Literal["filename_digits", "hash", "md5"]
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
    # A key of at most 1,023 bytes has at most 1,024 segments: -1024..1023 reaches every one of them.
    segment: Annotated[int, Field(ge=-(MAX_KEY_BYTES + 1), le=MAX_KEY_BYTES)] | None = None
    regex: str | None = None
    # Names are segments or regex groups of a key; ids are BIGINT (>= 0: checked below, naming the name).
    mapping: dict[
        Annotated[str, Field(max_length=MAX_KEY_BYTES)], Annotated[int, Field(le=INT64_MAX)]
    ] | None = Field(default=None, max_length=10_000)
    unmapped: Literal["skip", "default", "fail"] = "skip"
    default_id: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None

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

    conn_id: _AirflowId
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
    # What a refused guard does to the run: `fail` ends it (rerun with the override_guards Param to pass
    # it); `ask` parks it in an approval task (Airflow's human-in-the-loop) until someone approves
    # (publish, as if overridden) or rejects, or approval_timeout_hours pass (rejected). README: Approving
    # a refused run.
    on_refusal: Literal["fail", "ask"] = "fail"
    approval_timeout_hours: float = Field(default=24, gt=0, le=168)  # at most a week
    # Optional: the user ids (as Airflow's auth manager names them) who may answer; none: anyone allowed
    # to answer the DAG's approvals (the auth manager's HITL permission on the DAG).
    approvers: list[Annotated[str, Field(min_length=1, max_length=250)]] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _approval_needs_ask(self) -> GuardsConfig:
        # Values other than the defaults: a config dumped and validated again (model_dump) carries those.
        defaults = {"approval_timeout_hours": 24, "approvers": []}
        given = {name for name in defaults.keys() & self.model_fields_set if getattr(self, name) != defaults[name]}
        if self.on_refusal == "fail" and given:
            raise ValueError(f"{' and '.join(sorted(given))} apply only with on_refusal: ask (on_refusal is fail)")
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError(f"approvers {self.approvers} names a user twice")
        return self


class SmokeConfig(_Strict):
    """Queries that prove the new index answers. The image query always runs; the text one if given."""

    top_k: int = Field(default=5, ge=1, le=100)
    samples: int = Field(default=1, ge=1, le=20)
    text_query: Annotated[str, Field(max_length=1000)] | None = None
    text_min_hits: int = Field(default=1, ge=0, le=100)


class PushConfig(_Strict):
    """How a delta run pushes documents (the data plane push API) and how long it waits to see them.

    The service's documented limits: a request body of at most 2 MB, about 10 MB/s per instance, and
    pushed increments kept 3 days (a full rebuild can replay them from at most that far back)."""

    data_source: _Short | None = None  # default "<instance_id>_<table>", the push API's documented form
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=2 * 1024 * 1024)
    max_bytes_per_second: int = Field(default=8 * 1024 * 1024, ge=1024, le=10 * 1024 * 1024)
    verify_timeout_minutes: float = Field(default=15, gt=0, le=MAX_MINUTES)
    verify_poll_s: float = Field(default=10, ge=0.1, le=600)
    # A replaced image keeps its id, path and category, so a primary-key lookup answers the same before
    # and after its push is applied: up to this many replaced images are also queried by their new bytes.
    verify_image_samples: int = Field(default=20, ge=0, le=1000)
    retention_hours: float = Field(default=72, gt=0, le=72)  # how far back the service replays increments


class RebuildConfig(_Strict):
    """Full rebuild, or push only what changed (README: "Cost proportional to change").

    ``full``: every run rebuilds the index from its partition. ``delta``: push the rows that changed
    against the partition that is live (falls back to full, saying why, when there is nothing to compare
    with). ``auto``: delta when at most ``max_change_fraction`` of the live rows changed and a full
    rebuild went live within ``full_every_days``; else full."""

    mode: Literal["full", "delta", "auto"] = "full"
    max_change_fraction: float = Field(default=0.05, ge=0, le=1)
    full_every_days: float = Field(default=7, gt=0, le=365)
    push: PushConfig = Field(default_factory=PushConfig)


class OpenSearchConfig(_Strict):
    """The OpenSearch table the catalog feeds, and how long a rebuild may take."""

    conn_id: _AirflowId
    table: Annotated[str, Field(pattern=_TABLE_RE)]
    pool: _Pool | None = None  # default: opensearch_<conn_id>, one rebuild at a time per instance
    primary_key: _Short = "id"
    vector_index: _Short = "vector"
    cluster: _Short = "general"
    poll_interval_s: float = Field(default=60, ge=0.1, le=3600)
    stall_timeout_minutes: float = Field(default=60, gt=0, le=MAX_MINUTES)
    deadline_hours: float = Field(default=12, gt=0, le=72)
    new_generation_timeout_minutes: float = Field(default=10, gt=0, le=MAX_MINUTES)
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)
    rebuild: RebuildConfig = Field(default_factory=RebuildConfig)

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


#: What a notifier posts about. ``failure``: every failed run (a guard's refusal included: the message
#: then names the guard, its numbers and how to pass it); ``refused_guard``: only runs a guard refused
#: (for a chat that should hear of nothing else, e.g. the data owners'); ``success``: every successful run.
NOTIFY_EVENTS = ("failure", "refused_guard", "success")
#: A DingTalk @-mention: a mobile number as the robot API takes it (digits, an optional +country- prefix).
_MOBILE_RE = r"^(\+\d{1,4}-)?\d{5,15}$"


class NotificationConfig(_Strict):
    """One chat an index's runs are reported to, through an Airflow connection (pipeline/airflow/notify.py).

    ``slack``: an incoming webhook, connection type ``slackwebhook`` (the Slack provider's
    SlackWebhookNotifier). ``dingtalk``: a custom robot, connection type ``dingding`` (the DingTalk
    provider's DingdingHook), ``at_mobiles`` mentioned in the message."""

    kind: Literal["slack", "dingtalk"]
    conn_id: _AirflowId
    on: list[Literal["failure", "refused_guard", "success"]] = Field(
        default_factory=lambda: ["failure"], min_length=1, max_length=len(NOTIFY_EVENTS)
    )
    at_mobiles: list[Annotated[str, Field(pattern=_MOBILE_RE)]] = Field(default_factory=list, max_length=20)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true: take it back as the field it names.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _on(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"on {value} names an event twice")
        return value

    @field_validator("at_mobiles")
    @classmethod
    def _mobiles(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"at_mobiles {value} names a number twice")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> NotificationConfig:
        if self.at_mobiles and self.kind != "dingtalk":
            raise ValueError(f"at_mobiles is for kind 'dingtalk' (a DingTalk robot's @-mentions), not {self.kind!r}")
        return self


class AssetsConfig(_Strict):
    """The URIs of the assets the index's DAG produces (pipeline/assets.py, README: Assets); default
    ``warehouse://<warehouse.conn_id>/<table>`` and ``opensearch://<opensearch.conn_id>/<table>``."""

    warehouse_uri: str | None = None  # e.g. maxcompute://<project>/<table>
    index_uri: str | None = None  # e.g. opensearch://<instance_id>/<table>; needs an opensearch section

    @field_validator("warehouse_uri", "index_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else check_asset_uri(value)


class IndexConfig(_Strict):
    """One OpenSearch image index fed from OSS through a partitioned catalog table."""

    name: Annotated[str, Field(pattern=_NAME_RE)]
    description: Annotated[str, Field(max_length=2000)] = ""
    schedule: Annotated[str, Field(max_length=100)] | None = "0 2 * * *"
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    start_date: str = "2026-01-01"
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay_minutes: float = Field(default=5, ge=0, le=24 * 60)
    owner: _Short = "data-platform"
    load_pool: _Pool | None = None  # an Airflow pool capping concurrent listings across indexes
    tags: list[_Tag] = Field(default_factory=list, max_length=20)
    source: SourceConfig
    id_rule: IdRule
    category_rule: CategoryRule
    warehouse: WarehouseConfig
    opensearch: OpenSearchConfig | None = None  # without it the DAG stops after the partition check
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    # Chats told about runs (failure by default; see NotificationConfig). At most 10: each posts once per run.
    notifications: list[NotificationConfig] = Field(default_factory=list, max_length=10)
    assets: AssetsConfig = Field(default_factory=AssetsConfig)  # the URIs downstream DAGs schedule on

    @field_validator("notifications")
    @classmethod
    def _one_notifier_per_chat(cls, value: list[NotificationConfig]) -> list[NotificationConfig]:
        seen: set[tuple[str, str]] = set()
        for notification in value:
            key = (notification.kind, notification.conn_id)
            if key in seen:
                raise ValueError(f"{notification.kind} connection {notification.conn_id!r} is listed twice (every "
                                 "run would post to it twice): merge the two entries' 'on' lists")
            seen.add(key)
        return value

    @model_validator(mode="after")
    def _inventory_rules(self) -> IndexConfig:
        # One definition per rule, computed the same by both routes: BLAKE2b has no MaxCompute SQL.
        if self.source.mode == "inventory" and self.id_rule.kind == "hash":
            raise ValueError(
                "id_rule.kind 'hash' (BLAKE2b) cannot be computed in MaxCompute SQL, which the inventory "
                "route runs; use kind 'md5' (both routes compute it). Every image gets a new id, so the "
                "first run after the switch replaces the whole index (see README: switching an id rule)"
            )
        return self

    @model_validator(mode="after")
    def _index_asset(self) -> IndexConfig:
        if self.assets.index_uri and self.opensearch is None:
            raise ValueError("assets.index_uri names the live index, but the config has no opensearch section")
        ids = index_asset_ids(self)
        if ids.live is not None and ids.live.uri == ids.catalog.uri:
            raise ValueError(f"assets: the catalog table and the live index have the same URI {ids.live.uri!r}")
        return self

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # 'Asia' is a folder: IsADirectoryError
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Asia/Shanghai'") from None
        return value

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"start_date {value!r} must be YYYY-MM-DD")
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"start_date {value!r} is not a calendar date") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return check_schedule(value)


#: A message names at most this many fields; each part of it is clipped, so it stays under 2 KB.
MAX_ERRORS_SHOWN = 4


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for item in loc:
        try:
            data = data[item]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _describe(path: str, data: Any, error: ValidationError) -> str:
    lines = [f"{clip(path, 200)}: invalid index config"]
    # No input and no URL: pydantic would otherwise keep a reference to, and str() would repr, every value.
    errors = error.errors(include_url=False, include_input=False, include_context=False)
    for item in errors[:MAX_ERRORS_SHOWN]:
        loc = tuple(x for x in item["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
        field = clip(format_location(loc), 120)
        # Our validators quote the value they refuse; a long one is cut here.
        message = clip(item["msg"].removeprefix("Value error, "), 160)
        if item["type"] == "missing":
            lines.append(f"  {field}: required field is missing")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown field (check the spelling; see 'Index configuration' in README.md)")
        else:
            value = _lookup(data, loc) if loc else None
            shown = f" (got {excerpt(value)})" if value is not None and not isinstance(value, dict) else ""
            lines.append(f"  {field}: {message}{shown}")
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"  … and {len(errors) - MAX_ERRORS_SHOWN} more")
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
    """Read and validate one index config file: any file, however hostile, gives an IndexConfig or a
    ConfigError of under 2 KB naming the file and the field, at once (see pipeline/config_yaml.py)."""
    path = Path(path)
    return parse_index_config(load_config_yaml(path), str(path))


def load_index_configs(folder: str | Path) -> list[tuple[Path, IndexConfig]]:
    """All ``*.yaml`` files in ``folder``, sorted by name; index names must be unique."""
    configs: list[tuple[Path, IndexConfig]] = []
    seen: dict[str, Path] = {}
    uris: dict[str, Path] = {}  # Airflow activates one asset per URI: two DAGs may not produce the same one
    for path in sorted(Path(folder).glob("*.yaml")):
        config = load_index_config(path)
        if config.name in seen:
            raise ConfigError(f"{path}: name {config.name!r} is already used by {seen[config.name]}")
        seen[config.name] = path
        ids = index_asset_ids(config)
        for asset in (ids.catalog, ids.live):
            if asset is not None and asset.uri in uris:
                raise ConfigError(f"{path}: asset URI {asset.uri!r} is already produced by {uris[asset.uri]} (set "
                                  "assets.warehouse_uri / assets.index_uri, or write one index per table)")
            if asset is not None:
                uris[asset.uri] = path
        configs.append((path, config))
    return configs
