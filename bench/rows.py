"""Catalog row derivation as the load stage does it: pages of 1,000 listed objects gathered
(``gather_pages``) and streamed through ``CatalogBuilder.batches``, in rows per second.

Keys come from a generated bucket (``p037/000123456.jpg``, ``flat/...``), in pages of 1,000 as the
lister yields them. Each rule set is timed after a warm-up page (first use of some Arrow kernels
costs imports). Since issue 12 every page size takes the one vectorised path (the rules' regexes on
RE2), so there is no per-object loop left to time.
"""

from __future__ import annotations

import argparse
import time

from bench.support import emit, log, machine

ROWS = {"quick": 200_000, "full": 2_000_000}
GOAL_ROWS_PER_S = 1_000_000
PAGE = 1000


def rule_sets() -> dict:
    from pipeline.config import CategoryRule, IdRule

    mapping = {**{f"p{i:03d}": i for i in range(64)}, "flat": 64}
    return {
        "filename digits + folder mapping (the demo's rules)": (
            IdRule(kind="filename_digits", regex=r"^(\d+)\.[^.]+$"),
            CategoryRule(kind="path_segment", segment=0, mapping=mapping),
        ),
        "default id regex + category regex": (
            IdRule(kind="filename_digits"),
            CategoryRule(kind="regex", regex=r"^p(\d+)/", unmapped="default", default_id=0),
        ),
        "hash ids + folder mapping": (IdRule(kind="hash"), CategoryRule(kind="path_segment", segment=0, mapping=mapping)),
        "nested-quantifier id regex (\\d+)+ + folder mapping": (
            IdRule(kind="filename_digits", regex=r"(\d+)+\.jpg$"),
            CategoryRule(kind="path_segment", segment=0, mapping=mapping),
        ),
    }


def run(mode: str) -> list[dict]:
    from localcloud.oss.server import GeneratedBucket
    from pipeline.config import SourceConfig
    from pipeline.oss.catalog import CatalogBuilder, ListedObject, gather_pages

    total = ROWS[mode]
    bucket = GeneratedBucket("bench-rows", prefixes=64, keys_per_prefix=total * 9 // 10 // 64, flat_keys=total - 64 * (total * 9 // 10 // 64))
    objects = [ListedObject(key, bucket.lookup(key)[1]) for key in bucket.keys()]  # type: ignore[index]
    pages = [objects[i : i + PAGE] for i in range(0, len(objects), PAGE)]
    source = SourceConfig(oss_conn_id="oss_bench", bucket="bench-rows", prefixes=[""])
    results: list[dict] = []
    for name, (id_rule, category_rule) in rule_sets().items():
        for variant in ("vectorised",):
            builder = CatalogBuilder(source, id_rule, category_rule)
            CatalogBuilder(source, id_rule, category_rule).rows(pages[0])  # warm-up
            started = time.perf_counter()
            # The stage's path: pages gathered, then streamed through batches().
            kept = sum(batch.num_rows for batch in builder.batches(gather_pages(pages)))
            seconds = time.perf_counter() - started
            if kept != len(objects):
                raise RuntimeError(f"{name}: kept {kept} rows of {len(objects)}")
            rate = round(len(objects) / seconds)
            log(f"rows: {name} ({variant}): {rate:,} rows/s")
            results.append(
                {
                    "bench": "rows",
                    "mode": mode,
                    "rules": name,
                    "implementation": variant,
                    "rows": len(objects),
                    "page_size": PAGE,
                    "seconds": round(seconds, 3),
                    "rows_per_s": rate,
                    "goal_rows_per_s": GOAL_ROWS_PER_S,
                    "within_goal": rate >= GOAL_ROWS_PER_S,
                }
            )
    results[-1]["machine"] = machine()
    for result in results:
        emit(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rows", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(ROWS), default="quick")
    run(parser.parse_args(argv).mode)


if __name__ == "__main__":
    main()
