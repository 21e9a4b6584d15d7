"""``python -m pipeline.oss.inventory``: set up an index's OSS inventory rule, and show its runs.

    setup --config dags/indexes/<index>.yaml --oss-role-arn acs:ram::<account>:role/<role> [--replace]
    show  --config dags/indexes/<index>.yaml [--runs 10] [--not-after 2026-12-01T16:00Z]

Both read the index's OSS connection (``source.oss_conn_id``, an Airflow connection: any secrets
backend, or ``AIRFLOW_CONN_<ID>``), which must reach the source and the inventory's bucket.

``setup`` puts the rule ``source.inventory.id`` on ``source.bucket``: CSV, daily, current versions,
filtered by the longest common prefix of ``source.prefixes``, with the optional fields Size,
LastModifiedDate, ETag and StorageClass, written to ``acs:oss:::<inventory.bucket>`` under
``inventory.prefix``. OSS writes it as ``--oss-role-arn``: a RAM role that OSS may assume (trust
policy ``oss.aliyuncs.com``, e.g. AliyunOSSRole) and that may write to the destination bucket. It is
not ``inventory.role_arn``, the role MaxCompute assumes to read the files, and the nightly run never
needs it, so it is an argument, not a config field; the rule's AccountId is that role's account. An
existing rule of the same id is left alone when it matches, and replaced only with ``--replace``.

``show`` prints the rule, the newest runs (complete or not, fresh or stale) and whether the run a
partition ending at ``--not-after`` (default: now) would use passes every check of
:func:`~pipeline.oss.inventory.runs.find_inventory`. Exit status 0 when it does, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone

import oss2
import oss2.exceptions
from oss2 import models

from pipeline.config import IndexConfig, load_index_config
from pipeline.errors import ConfigError, InventoryError, PipelineError
from pipeline.oss.client import OssConnection, translate_error
from pipeline.oss.inventory.runs import find_inventory, inventory_base, is_complete, list_runs

_ROLE_RE = re.compile(r"^acs:ram::(\d{1,32}):role/[A-Za-z0-9._-]{1,64}$")
FIELDS = [models.FIELD_SIZE, models.FIELD_LAST_MODIFIED_DATE, models.FIELD_ETAG, models.FIELD_STORAG_CLASS]


def _inventory(config: IndexConfig):
    if config.source.inventory is None:
        raise ConfigError(f"index {config.name!r}: source.inventory is not set; add the section (bucket, id, role_arn)")
    return config.source.inventory


def common_prefix(prefixes: list[str]) -> str:
    """The longest string every prefix starts with ("" for none): the rule's filter."""
    return os.path.commonprefix(list(prefixes))


def build_rule(config: IndexConfig, oss_role_arn: str) -> models.InventoryConfiguration:
    """The inventory rule ``setup`` puts on ``config.source.bucket``."""
    inventory = _inventory(config)
    match = _ROLE_RE.match(oss_role_arn)
    if match is None:
        raise ConfigError(f"--oss-role-arn {oss_role_arn!r} must be acs:ram::<account id>:role/<role name>: the "
                          "role OSS assumes to write the inventory (trust policy oss.aliyuncs.com)")
    prefix = common_prefix(config.source.prefixes)
    destination = models.InventoryBucketDestination(
        account_id=match.group(1), role_arn=oss_role_arn, bucket=inventory.bucket,  # oss2 writes acs:oss:::<bucket> and strips it on reads
        inventory_format=models.INVENTORY_FORMAT_CSV,
        # OSS writes <prefix>/<source>/<id>/: the folder without its '/'.
        prefix=inventory.prefix.rstrip("/") or None,
    )
    return models.InventoryConfiguration(
        inventory_id=inventory.id, is_enabled=True,
        included_object_versions=models.INVENTORY_INCLUDED_OBJECT_VERSIONS_CURRENT,
        inventory_filter=models.InventoryFilter(prefix=prefix) if prefix else None,
        inventory_destination=models.InventoryDestination(bucket_destination=destination),
        inventory_schedule=models.InventorySchedule(frequency=models.INVENTORY_FREQUENCY_DAILY),
        optional_fields=list(FIELDS),
    )


def describe(rule: models.InventoryConfiguration) -> dict[str, object]:
    """What of a rule matters to the pipeline, comparable between the wanted rule and the stored one."""
    dest = rule.inventory_destination.bucket_destination if rule.inventory_destination else None
    return {
        "enabled": bool(rule.is_enabled),
        "destination": getattr(dest, "bucket", None),
        "prefix": (getattr(dest, "prefix", None) or "").rstrip("/"),
        "role": getattr(dest, "role_arn", None),
        "format": getattr(dest, "inventory_format", None),
        "frequency": rule.inventory_schedule.frequency if rule.inventory_schedule else None,
        "versions": rule.included_object_versions,
        "filter": (rule.inventory_filter.prefix if rule.inventory_filter else None) or "",
        "fields": sorted(rule.optional_fields or []),
    }


def _stored_rule(conn: OssConnection, source: oss2.Bucket, rule_id: str) -> models.InventoryConfiguration | None:
    try:
        return source.get_bucket_inventory_configuration(rule_id)
    except oss2.exceptions.NoSuchInventory:
        return None
    except oss2.exceptions.OssError as exc:
        raise translate_error(exc, conn, source.bucket_name, f"reading inventory rule {rule_id!r}") from None


def setup(config: IndexConfig, oss_role_arn: str, *, replace: bool = False, conn: OssConnection | None = None,
          out: Callable[[str], None] = print) -> str:
    """Create the index's inventory rule; returns ``created``, ``unchanged`` or ``replaced``."""
    inventory = _inventory(config)
    conn = conn or OssConnection.from_airflow(config.source.oss_conn_id)
    source = conn.bucket(config.source.bucket)
    wanted = build_rule(config, oss_role_arn)
    stored = _stored_rule(conn, source, inventory.id)
    what = f"inventory rule {inventory.id!r} on bucket {config.source.bucket!r}"
    if stored is not None:
        have, want = describe(stored), describe(wanted)
        if have == want:
            out(f"{what} is already set up as the config says")
            return "unchanged"
        differs = ", ".join(f"{k} {have[k]!r} (config: {want[k]!r})" for k in want if have[k] != want[k])
        if not replace:
            raise InventoryError(f"{what} exists but differs: {differs}; rerun with --replace to replace it")
        try:
            source.delete_bucket_inventory_configuration(inventory.id)
        except oss2.exceptions.OssError as exc:
            raise translate_error(exc, conn, source.bucket_name, f"deleting {what}") from None
    try:
        source.put_bucket_inventory_configuration(wanted)
    except oss2.exceptions.OssError as exc:
        raise translate_error(exc, conn, source.bucket_name, f"creating {what}") from None
    out(f"{'replaced' if stored is not None else 'created'} {what}: daily CSV of current versions"
        f"{' under ' + repr(common_prefix(config.source.prefixes)) if common_prefix(config.source.prefixes) else ''}"
        f" into oss://{inventory.bucket}/{inventory_base(config.source.bucket, inventory)} as {oss_role_arn};"
        " OSS writes the first run within a day")
    return "replaced" if stored is not None else "created"


def show(config: IndexConfig, *, runs: int = 10, not_after: datetime | None = None, now: datetime | None = None,
         conn: OssConnection | None = None, out: Callable[[str], None] = print) -> bool:
    """Print the rule, the newest ``runs`` runs and whether the run for ``not_after`` is usable."""
    inventory = _inventory(config)
    now = now or datetime.now(timezone.utc)
    not_after = not_after or now
    conn = conn or OssConnection.from_airflow(config.source.oss_conn_id)
    source, dest = conn.bucket(config.source.bucket), conn.bucket(inventory.bucket)
    stored = _stored_rule(conn, source, inventory.id)
    if stored is None:
        out(f"no inventory rule {inventory.id!r} on bucket {config.source.bucket!r}: create it with "
            f"`python -m pipeline.oss.inventory setup --config ... --oss-role-arn ...`")
    else:
        rule = describe(stored)
        out(f"rule {inventory.id!r} on bucket {config.source.bucket!r}: "
            + ", ".join(f"{key} {value}" for key, value in rule.items()))
    found = list_runs(dest, config.source.bucket, inventory, conn=conn)
    limit = not_after.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    out(f"{len(found)} run(s) in oss://{inventory.bucket}/{inventory_base(config.source.bucket, inventory)}; "
        f"the newest {min(runs, len(found))}, ages at {limit} (max_age_hours {inventory.max_age_hours:g}):")
    for run in reversed(found[-runs:] if runs > 0 else []):
        age_h = (not_after - run.created).total_seconds() / 3600
        complete = is_complete(dest, run, conn=conn)
        state = "after --not-after" if age_h < 0 else ("fresh" if age_h <= inventory.max_age_hours else "stale")
        out(f"  {run.name}  {'complete  ' if complete else 'incomplete'}  {state:<17} {age_h:7.1f} h")
    try:
        chosen = find_inventory(dest, config.source.bucket, inventory, not_after, now, conn=conn)
    except InventoryError as exc:
        out(f"not usable: {exc}")
        return False
    total = sum(file.size for file in chosen.files)
    out(f"usable: {chosen.name}, {len(chosen.files)} file(s), {total} bytes, columns {', '.join(chosen.file_schema)}")
    return True


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time like 2026-12-01T16:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.oss.inventory", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    set_up = commands.add_parser("setup", help="create the index's inventory rule on its source bucket")
    set_up.add_argument("--config", required=True, help="the index config, e.g. dags/indexes/products.yaml")
    set_up.add_argument("--oss-role-arn", required=True,
                        help="the RAM role OSS assumes to write the inventory (not inventory.role_arn)")
    set_up.add_argument("--replace", action="store_true", help="replace a rule of the same id that differs")
    listing = commands.add_parser("show", help="print the rule, its newest runs and whether they are usable")
    listing.add_argument("--config", required=True)
    listing.add_argument("--runs", type=int, default=10, help="how many of the newest runs to print (default 10)")
    listing.add_argument("--not-after", type=_moment, default=None,
                         help="the end of the partition's day, e.g. 2026-12-01T16:00Z (default: now)")
    args = parser.parse_args(argv)
    try:
        config = load_index_config(args.config)
        if args.command == "setup":
            setup(config, args.oss_role_arn, replace=args.replace)
            return 0
        return 0 if show(config, runs=args.runs, not_after=args.not_after) else 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
