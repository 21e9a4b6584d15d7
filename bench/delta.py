"""Delta run vs full rebuild (issue 14): images vectorized, end-to-end seconds, bytes pushed.

One local stack in this process (OSS, MaxCompute, OpenSearch: ``localcloud.stack.LocalStack``), one
generated bucket of small JPEGs under ``catalog/<category>/<id>.jpg``, and the pipeline's own stage
functions (what the DAG's tasks call, without Airflow's scheduling around them):

1. baseline: partition ds1 loaded, published and fully rebuilt (not measured: the index both runs start from);
2. ``--change`` of the images changed in OSS: a third new, a third replaced under the same key, a third deleted;
3. **delta** (ds2): load into staging, compare with the live ds1 (``row_changes``), publish, push the
   changes, verify every pushed id answers and every deleted one is gone;
4. **full** (ds3, the same bucket): load, publish, reindex (replaying pushes since ds3's snapshot: none),
   wait until the new generation is live.

Each run is timed from the start of its load to the moment its index answers. The servers run in this
process as threads (the engine's counters say how many images each path vectorized); they share the
2 cores and the GIL with the client in both runs alike.

    python -m bench.delta --mode quick   # 2,000 images
    python -m bench.delta --mode full    # 20,000 images (BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench.support import emit, log, machine

SIZES = {"quick": 2_000, "full": 20_000}
CATEGORIES = {"shoes": 1, "bags": 2, "hats": 3, "watches": 4}
# The demo schema reads images from bucket demo-images (in this run's own temporary stack).
BUCKET, WAREHOUSE_TABLE, INDEX_TABLE = "demo-images", "bench_image_catalog", "bench_images"
GOALS = {"vectorized_ratio": 50.0, "speedup": 10.0, "bytes_ratio": 1.2}


def image(seed: int) -> bytes:
    """A 48x48 JPEG of a few random shapes: distinct per seed, about 1.5 KB, cheap to make."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    picture = Image.new("RGB", (48, 48), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.randint(3, 6)):
        x0, y0 = rng.randrange(48), rng.randrange(48)
        box = (x0, y0, min(48, x0 + rng.randint(6, 24)), min(48, y0 + rng.randint(6, 24)))
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=85)
    return out.getvalue()


def keys(count: int) -> list[tuple[str, int]]:
    names = list(CATEGORIES.items())
    return [(f"catalog/{names[i % 4][0]}/{names[i % 4][1] * 1_000_000 + i}.jpg", names[i % 4][1] * 1_000_000 + i)
            for i in range(count)]


def fill(bucket, items: list[tuple[str, int]], salt: int = 0) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: bucket.put_object(item[0], image(item[1] * 7 + salt)), items))


def change(bucket, items: list[tuple[str, int]], fraction: float) -> dict[str, int]:
    """A third new images, a third replaced (new bytes, same key), a third deleted."""
    rng = random.Random(14)
    count = max(3, round(len(items) * fraction))
    chosen = rng.sample(items, 2 * (count // 3) + count % 3)
    replaced, deleted = chosen[: len(chosen) // 2], chosen[len(chosen) // 2:]
    added = [(f"catalog/shoes/{9_000_000 + n}.jpg", 9_000_000 + n) for n in range(count - len(chosen))]
    fill(bucket, added)
    fill(bucket, replaced, salt=1)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: bucket.delete_object(item[0]), deleted))
    return {"added": len(added), "replaced": len(replaced), "deleted": len(deleted)}


def index_config(repo: Path):
    from pipeline.config import IndexConfig

    data = yaml.safe_load((repo / "dags" / "indexes" / "demo.yaml").read_text())
    data["name"] = "bench"
    data["source"].update(bucket=BUCKET, prefixes=["catalog/"], mode="list")
    data["source"].pop("inventory", None)
    data["id_rule"] = {"kind": "filename_digits", "regex": r"^(\d+)\.[^.]+$"}
    data["warehouse"]["table"] = WAREHOUSE_TABLE
    data["opensearch"].update(table=INDEX_TABLE, poll_interval_s=0.2, stall_timeout_minutes=30,
                              rebuild={"mode": "delta", "push": {"verify_poll_s": 0.2, "verify_timeout_minutes": 10}})
    return IndexConfig.model_validate(data)


def full_run(config, ds: str, engine, last_push_at: float | None) -> dict:
    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.management import OpenSearchManagement
    from pipeline.opensearch.rebuild import RebuildHandle, settings_for, wait_until_ready
    from pipeline.stages import load_partition, open_index_warehouse, start_index_rebuild

    before = dict(engine.vectorized_images(INDEX_TABLE))
    started = time.monotonic()
    load = load_partition(config, ds, publish=True)
    stats = open_index_warehouse(config).partition_stats(ds)
    checked = {"dry_run": False, "snapshot_at": load.snapshot_at, "partitions": [ds],
               "stats": stats.as_dict(), "live_ds": None}
    begun = start_index_rebuild(config, ds, checked, force=True, last_push_at=last_push_at)
    mgmt = OpenSearchManagement(OpenSearchConnection.from_airflow(config.opensearch.conn_id))
    wait_until_ready(mgmt, RebuildHandle.from_dict(begun["handle"]), settings_for(config.opensearch))
    seconds = time.monotonic() - started
    after = engine.vectorized_images(INDEX_TABLE)
    return {"seconds": round(seconds, 2), "load_seconds": round(load.seconds, 2), "rows": stats.rows,
            "vectorized": sum(after.values()) - sum(before.values()), "data_time_sec": begun.get("data_time_sec")}


def delta_run(config, ds: str, live_ds: str, engine) -> dict:
    from pipeline.delta import push_index_changes, verify_index_changes
    from pipeline.stages import load_partition, open_index_warehouse

    before = dict(engine.vectorized_images(INDEX_TABLE))
    started = time.monotonic()
    load = load_partition(config, ds)  # staged
    warehouse = open_index_warehouse(config)
    changes = warehouse.staging().row_changes(ds, live_ds, previous=warehouse)
    warehouse.publish(ds, warehouse.staging())
    checked = {"dry_run": False, "live_ds": live_ds, "row_changes": changes.as_dict()}
    pushed = push_index_changes(config, ds, checked)
    verified = verify_index_changes(config, ds, checked, sleep=time.sleep)
    seconds = time.monotonic() - started
    after = engine.vectorized_images(INDEX_TABLE)
    return {"seconds": round(seconds, 2), "load_seconds": round(load.seconds, 2), "changes": changes.as_dict(),
            "vectorized": sum(after.values()) - sum(before.values()), "push_seconds": pushed["seconds"],
            "requests": pushed["requests"], "bytes": pushed["bytes"], "document_bytes": pushed["document_bytes"],
            "retried_requests": pushed["retried_requests"], "verify_seconds": verified["seconds"],
            "first_push_at": pushed["first_push_at"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delta", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SIZES), default="quick")
    parser.add_argument("--change", type=float, default=0.01, help="the share of images changed (default 0.01)")
    args = parser.parse_args(argv)
    # Results go to stdout as one JSON line; Airflow's task logging (a line per poll) would drown it.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from localcloud.stack import LocalPaths, LocalStack, StackTable
    from pipeline.oss.client import OssConnection

    repo = Path(__file__).resolve().parents[1]
    count = SIZES[args.mode]
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        paths = LocalPaths(Path(tmp))
        with LocalStack(paths, [StackTable(INDEX_TABLE, WAREHOUSE_TABLE)]) as stack:
            os.environ.update(stack.environment())
            engine = stack.opensearch.engine
            config = index_config(repo)
            bucket = OssConnection.from_extras("oss_local", stack.connections()["oss_local"]["extra"]).bucket(BUCKET)
            bucket.create_bucket()
            items = keys(count)
            t = time.monotonic()
            fill(bucket, items)
            log(f"{count} images uploaded in {time.monotonic() - t:.1f} s")
            baseline = full_run(config, "20261129", engine, None)
            log(f"baseline full rebuild of ds=20261129: {baseline}")
            changed = change(bucket, items, args.change)
            log(f"changed: {changed}")
            delta = delta_run(config, "20261130", "20261129", engine)
            log(f"delta run of ds=20261130: {delta}")
            full = full_run(config, "20261201", engine, delta["first_push_at"])
            log(f"full run of ds=20261201: {full}")
    result = {
        "bench": "delta", "images": count, "change": args.change, "changed": changed,
        "full": full, "delta": delta,
        "vectorized_ratio": round(full["vectorized"] / max(1, delta["vectorized"]), 1),
        "speedup": round(full["seconds"] / delta["seconds"], 1),
        "bytes_ratio": round(delta["bytes"] / max(1, delta["document_bytes"]), 4),
        "goals": GOALS, "machine": machine(),
    }
    result["met"] = (result["vectorized_ratio"] >= GOALS["vectorized_ratio"] and result["speedup"] >= GOALS["speedup"]
                     and result["bytes_ratio"] <= GOALS["bytes_ratio"])
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
