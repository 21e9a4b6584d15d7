"""Listing throughput: our parallel lister against oss2's ObjectIterator and a tuned sequential listing.

All listers run in one process against one local OSS server (a separate process) that sleeps
``latency_s`` (100 ms: within what OSS and S3 show for a 1,000-key page) before every answer, over a
generated bucket of N prefixes x M keys plus one flat prefix. The slow baselines are timed on the
first ``sample`` keys of the bucket (rates are compared, not totals); ours lists the whole bucket.

    baseline "default": oss2.ObjectIterator(bucket) with its defaults (ListObjects v1, 100 keys/page)
    baseline "tuned":   oss2.ObjectIteratorV2(bucket, max_keys=1000), and our OssLister (1,000 keys a
                        page, the lean page parse): ratio_vs_tuned is against the faster of the two
    ours:               ParallelLister over one oss2 session (pool = concurrency), whole bucket

``fraction_of_bound`` is ours against what the concurrency and the latency allow:
concurrency x 1,000 keys / latency_s. Client and server CPU seconds say what else bounds it.
"""

from __future__ import annotations

import argparse
import itertools

import oss2

from bench.support import Server, Stopwatch, connection, emit, log, machine, oss_server

SIZES = {
    # mode: (prefixes, keys per prefix, flat keys, default-iterator sample, tuned sample, concurrency levels)
    "quick": (64, 4_000, 50_000, 5_000, 20_000, [16]),
    "full": (64, 15_625, 200_000, 100_000, 200_000, [16, 4, 8, 32, 64]),
}
LATENCY_S = 0.1
BUCKET = "bench-listing"


def _time(server: Server, label: str, keys_iter, limit: int | None) -> dict:
    with Stopwatch(server) as watch:
        count = sum(1 for _ in (itertools.islice(keys_iter, limit) if limit else keys_iter))
    log(f"listing: {label}: {count} keys in {watch.seconds:.1f} s")
    return {
        "keys": count,
        "seconds": round(watch.seconds, 3),
        "keys_per_s": round(count / watch.seconds),
        "client_cpu_s": round(watch.cpu_s, 2),
        "server_cpu_s": round(watch.server_cpu_s, 2),
    }


def run(mode: str) -> list[dict]:
    from pipeline.oss.pages import LeanListingBucket, OssLister
    from pipeline.oss.parallel import ParallelLister

    prefixes, per_prefix, flat, default_sample, tuned_sample, levels = SIZES[mode]
    spec = f"name={BUCKET},prefixes={prefixes},keys_per_prefix={per_prefix},flat_keys={flat}"
    total = prefixes * per_prefix + flat
    results: list[dict] = []
    base = {"bench": "listing", "mode": mode, "latency_s": LATENCY_S, "bucket_keys": total, "layout": spec}
    with oss_server([spec], latency_s=LATENCY_S) as server:
        conn = connection(server)
        bucket = conn.bucket(BUCKET)

        default = _time(server, "oss2.ObjectIterator defaults", (o.key for o in oss2.ObjectIterator(bucket)), default_sample)
        results.append({**base, "lister": "oss2.ObjectIterator (defaults: v1, 100 keys/page)", **default})
        tuned_oss2 = _time(
            server, "oss2.ObjectIteratorV2 max_keys=1000", (o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=1000)), tuned_sample
        )
        results.append({**base, "lister": "oss2.ObjectIteratorV2 (max_keys=1000)", **tuned_oss2})
        sequential = OssLister.connect(conn, BUCKET)
        tuned_ours = _time(
            server, "OssLister sequential", (o.key for page in sequential.iter_objects([""]) for o in page), tuned_sample
        )
        results.append({**base, "lister": "OssLister, sequential (1000 keys/page, lean parse)", **tuned_ours})
        tuned_rate = max(tuned_oss2["keys_per_s"], tuned_ours["keys_per_s"])

        for concurrency in levels:
            lister = ParallelLister(
                OssLister(conn, conn.bucket(BUCKET, pool_size=concurrency, kind=LeanListingBucket)), concurrency=concurrency
            )
            ours = _time(server, f"ParallelLister x{concurrency}", (o.key for page in lister.iter_objects([""]) for o in page), None)
            if ours["keys"] != total:
                raise RuntimeError(f"the parallel lister listed {ours['keys']} keys of {total}")
            bound = concurrency * 1000 / LATENCY_S
            results.append(
                {
                    **base,
                    "lister": "ParallelLister",
                    "concurrency": concurrency,
                    **ours,
                    "requests": lister.pages_listed,
                    "ratio_vs_default": round(ours["keys_per_s"] / default["keys_per_s"], 1),
                    "ratio_vs_tuned": round(ours["keys_per_s"] / tuned_rate, 1),
                    "bound_keys_per_s": round(bound),
                    "fraction_of_bound": round(ours["keys_per_s"] / bound, 2),
                    "goals": {"ratio_vs_default": 20, "ratio_vs_tuned": 8},
                    "machine": machine(),
                }
            )
    for result in results:
        emit(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SIZES), default="quick")
    run(parser.parse_args(argv).mode)


if __name__ == "__main__":
    main()
