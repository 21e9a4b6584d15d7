"""Guards between a written partition and a rebuild: a wrong prefix must not empty the live index.

Each guard looks at the partition's stats and the load's counts and either passes or says what is
wrong, with examples and the way to proceed deliberately (the ``override_guards`` Param names it).

    empty       the partition has no rows
    shrink      fewer rows than the partition that last went live, by more than max_shrink_fraction
    duplicates  an id occurs more than once (with the hash rule: a collision of two keys)
    unmapped    too many images had a category the rule could not map
    skipped     too many listed objects were skipped for any reason

One more bound, ``guards.max_unindexed_fraction``, is not judged here: it needs the rebuilt generation's
own figures, so the wait checks it once the generation is live (pipeline/opensearch/figures.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from pipeline.config import GuardsConfig
from pipeline.errors import PartitionCheckError

if TYPE_CHECKING:  # pyarrow stays out of DAG parsing, which imports GUARD_NAMES
    from pipeline.schema import PartitionStats

GUARD_NAMES = ("empty", "shrink", "duplicates", "unmapped", "skipped")


@dataclass(frozen=True)
class GuardResult:
    name: str
    passed: bool
    message: str
    overridden: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(
    stats: PartitionStats,
    load: dict,
    baseline: PartitionStats | None,
    limits: GuardsConfig,
    *,
    table: str,
    id_rule: str,
) -> list[GuardResult]:
    """Every guard's verdict on partition ``stats.ds`` of ``table``; ``baseline`` is the live partition."""
    where = f"partition ds={stats.ds} of {table}"
    results = []

    empty = stats.rows == 0
    results.append(GuardResult(
        "empty", not empty,
        f"{where} has no rows: check the prefixes and filters in the index config "
        "(the load's skipped counts say why objects were left out)" if empty else f"{where} has {stats.rows} rows",
    ))

    if baseline is None or baseline.rows == 0:
        results.append(GuardResult("shrink", True, "no partition went live before: nothing to compare with"))
    else:
        shrink = 1 - stats.rows / baseline.rows
        too_much = shrink > limits.max_shrink_fraction
        results.append(GuardResult(
            "shrink", not too_much,
            f"{where} has {stats.rows} rows, {shrink:.1%} fewer than the {baseline.rows} of ds={baseline.ds}, the "
            f"partition that last went live (limit {limits.max_shrink_fraction:.0%}): was a prefix wrong or an "
            "upload incomplete?" if too_much
            else f"{stats.rows} rows against {baseline.rows} live (ds={baseline.ds}){_same_ids(stats, baseline)}",
        ))

    duplicated = stats.rows - stats.distinct_ids
    if duplicated > 0 or stats.duplicate_ids:
        cause = (
            "the hash rule gave the same 63-bit id to different keys (a collision): rename one of the objects"
            if id_rule == "hash"
            else "the id rule maps several keys to one id; narrow id_rule.regex or use kind: hash"
        )
        results.append(GuardResult(
            "duplicates", False, f"{where} has {duplicated} duplicate id(s), e.g. {stats.duplicate_ids[:10]}: {cause}"
        ))
    else:
        results.append(GuardResult("duplicates", True, "every id is unique"))

    unmapped = int((load.get("skipped") or {}).get("unmapped_category", 0))
    candidates = int(load.get("kept", 0)) + unmapped
    fraction = unmapped / candidates if candidates else 0.0
    results.append(GuardResult(
        "unmapped", fraction <= limits.max_unmapped_fraction,
        f"{unmapped} of {candidates} images ({fraction:.1%}) had an unmapped category (limit "
        f"{limits.max_unmapped_fraction:.0%}), e.g. {load.get('unmapped_category_examples') or {}}: extend "
        "category_rule.mapping",
    ))

    skipped, listed = int(load.get("skipped_total", 0)), int(load.get("listed", 0))
    fraction = skipped / listed if listed else 0.0
    results.append(GuardResult(
        "skipped", fraction <= limits.max_skipped_fraction,
        f"{skipped} of {listed} listed objects ({fraction:.1%}) were skipped (limit "
        f"{limits.max_skipped_fraction:.0%}): {({k: v for k, v in (load.get('skipped') or {}).items() if v})}",
    ))
    return results


def _same_ids(stats: PartitionStats, baseline: PartitionStats) -> str:
    """Whether the staged ids are exactly the live ones, when both digests are known."""
    if not stats.id_digest or not baseline.id_digest:
        return ""
    return ", the same ids" if stats.id_digest == baseline.id_digest else ", a different set of ids"


def enforce(results: list[GuardResult], overrides: set[str], *, refuse: bool = True) -> list[GuardResult]:
    """Raise for failed guards not named in ``overrides``; return the results with overrides marked.
    ``refuse=False`` (``guards.on_refusal: ask``) returns them instead: :func:`refused` names them, and
    an approval decides. Unknown names in ``overrides`` are refused either way."""
    unknown = overrides - set(GUARD_NAMES)
    if unknown:
        raise PartitionCheckError(f"override_guards names unknown guards {sorted(unknown)}; known: {list(GUARD_NAMES)}")
    marked = [
        GuardResult(r.name, r.passed, r.message, overridden=not r.passed and r.name in overrides) for r in results
    ]
    failed = [r for r in marked if not r.passed and not r.overridden]
    if failed and refuse:
        lines = "; ".join(f"[{r.name}] {r.message}" for r in failed)
        names = ", ".join(repr(r.name) for r in failed)
        raise PartitionCheckError(
            f"{lines}. Nothing was rebuilt. If this is intended, rerun with the override_guards Param "
            f"including {names}",
            refused=tuple((r.name, r.message) for r in failed),
        )
    return marked


def refused(guards: list[dict]) -> list[str]:
    """The names of the guards that failed and were not overridden, from their ``as_dict()`` forms."""
    return [g["name"] for g in guards if not g.get("passed") and not g.get("overridden")]
