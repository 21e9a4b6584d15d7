"""The build's own figures: what the new generation holds, checked against the rows the run wrote.

A generation that is ``ready`` and switched in finished its build; that does not mean it indexed every
row. The service fetches and vectorizes each row's image and leaves out the documents whose image it
cannot fetch or decode, and the build still succeeds while those stay under its own limit (the local
server's is 5%, ``max_decode_failure_fraction``; the cloud documents none). So when the wait ends
``ready`` we read what the service says about the generation and compare it with the partition:

    rows        distinct ids of the partition the run wrote (check_partition's stats): the service keeps
                one document per primary key
    indexed     documents in the generation (``docCount``)
    unindexed   rows - indexed, and its share of rows, bounded by ``guards.max_unindexed_fraction``
    failures    documents the build left out (``failures``), with up to 5 ``failureExamples``
                {pk, image, reason}

Where the figures come from: GetTableGeneration's whole answer, read past the SDK's response model (which
keeps only ``generationId`` and ``status``). Not verified against the cloud: its documented result there
is those two fields, and no other management call documents a per-generation document count or the
build's data-processing failures (GetIndex / ListIndexes: ``indexSize``; GetClusterRunTimeInfo:
``docSize`` in GB; ListDataSourceTasks: free-text ``tags``). The local server answers ``rows``,
``docCount``, ``failures`` and ``failureExamples`` (names of its own). From a service that answers no
``docCount`` the figures say "not reported" and nothing is checked: a run is never failed on a count
nobody gave, and the report says the check did not happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_EXAMPLES = 5


def _count(value: Any) -> int | None:
    """A non-negative count from a JSON value (an int, or digits in a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _examples(value: Any) -> list[dict]:
    examples = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, Mapping):
            examples.append({k: (str(item[k])[:200] if isinstance(item[k], str) else item[k])
                             for k in ("pk", "image", "reason") if k in item})
        elif item is not None:
            examples.append({"reason": str(item)[:200]})
        if len(examples) == MAX_EXAMPLES:
            break
    return examples


def read_figures(generation: Mapping[str, Any], rows: int | None) -> dict:
    """The generation's figures (GetTableGeneration's answer) against the partition's ``rows``."""
    indexed = _count(generation.get("docCount"))
    unindexed = rows - indexed if rows is not None and indexed is not None else None
    figures = {
        "rows": rows,
        "indexed": indexed,
        "unindexed": unindexed,
        "unindexed_fraction": round(unindexed / rows, 6) if unindexed is not None and rows else None,
        "service_rows": _count(generation.get("rows")),
        "failures": _count(generation.get("failures")),
        "failure_examples": _examples(generation.get("failureExamples")),
    }
    figures["summary"] = describe(figures)
    return figures


def _example_text(example: Mapping[str, Any]) -> str:
    head = " ".join(str(example[k]) for k in ("pk", "image") if example.get(k) not in (None, ""))
    reason = example.get("reason")
    return f"{head} ({reason})" if head and reason else head or str(reason or "")


def describe(figures: Mapping[str, Any]) -> str:
    """One readable sentence: how many rows are indexed, what the build left out, with examples."""
    rows, indexed, unindexed = figures.get("rows"), figures.get("indexed"), figures.get("unindexed")
    if indexed is None:
        checked = f"its {rows} rows were not checked against the index" if rows is not None else "nothing was checked"
        text = (f"the service reported no document count for the generation (GetTableGeneration documents "
                f"only generationId and status), so {checked}")
    elif rows is None:
        text = f"{indexed} documents indexed (the partition's row count was not handed to the wait: not checked)"
    elif unindexed is not None and unindexed < 0:
        text = (f"{indexed} documents indexed, {-unindexed} more than the partition's {rows} rows: was the "
                "partition rewritten after the check?")
    elif unindexed:
        text = f"{indexed} of {rows} rows indexed ({unindexed} = {figures['unindexed_fraction']:.1%} not indexed)"
    else:
        text = f"{indexed} of {rows} rows indexed"
    service_rows = figures.get("service_rows")
    if service_rows is not None and rows is not None and service_rows != rows:
        text += f"; the service read {service_rows} rows from the partition"
    failures, examples = figures.get("failures"), figures.get("failure_examples") or []
    if failures:
        shown = "; ".join(_example_text(e) for e in examples)
        text += f"; the build left out {failures} it could not fetch or decode" + (f", e.g. {shown}" if shown else "")
    elif examples:
        text += "; the build reports failures, e.g. " + "; ".join(_example_text(e) for e in examples)
    return text


def over_limit(figures: Mapping[str, Any], limit: float) -> bool:
    """More of the partition's rows missing from the index than ``guards.max_unindexed_fraction``?"""
    fraction = figures.get("unindexed_fraction")
    return fraction is not None and fraction > limit


def incomplete_message(where: str, figures: Mapping[str, Any], limit: float, *, instance_id: str,
                       fsm_id: str | None, live_ds_before: str | None) -> str:
    """What an operator reads when the new generation lacks too many rows: the numbers, the examples,
    that it is already serving, and what to do."""
    back = (f"partition_date={live_ds_before} (the partition live before this run)" if live_ds_before
            else "partition_date=<the partition that last went live>")
    return (
        f"{where} went live lacking too many of the partition's rows: {figures.get('summary') or describe(figures)}; "
        f"that is more than guards.max_unindexed_fraction ({limit:.1%}). The new generation is ALREADY SWITCHED "
        "IN and serving (the service switches a finished build in by itself; its figures can only be read "
        "after): the missing products cannot be found by image search now. Either fix the images (re-upload "
        "or remove the broken objects named above; instance "
        f"{instance_id}'s change history, task {fsm_id or '<unknown>'}, lists what the build left out) and "
        "trigger a new DAG run (clearing this run would follow the same generation), or roll back: trigger "
        f"a run with {back} and force_rebuild=true. If this share is acceptable, raise "
        "guards.max_unindexed_fraction in the index config. This run did not mark the partition live"
    )
