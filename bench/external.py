"""Time and peak memory of the Bucket Inventory route through the local MaxCompute (issue 13):
``INSERT OVERWRITE TABLE catalog PARTITION (ds=...) SELECT <URL_DECODE, MD5, SPLIT_PART, REGEXP_EXTRACT>
FROM inventory_ext`` over gzip CSV inventory files in the local OSS.

The local MaxCompute server runs in a child process of its own (spawned, so its peak RSS, VmHWM, is its
own: the files are generated and served by this process); the local OSS runs here, and MaxCompute reads
it over HTTP as the role of the external table. One JSON line per size:

    .venv/bin/python -m bench.external --rows 1000000 --files 1
    .venv/bin/python -m bench.external --rows 10000000 --files 10
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing as mp
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ACCOUNT = "1000000000000001"
ROLE = f"acs:ram::{ACCOUNT}:role/aliyunodpsdefaultrole"
KEY_ID, SECRET, PROJECT, REGION = "LTAIbenchexternal", "bench-external-secret", "bench", "cn-hangzhou"
INTERNAL = f"oss-{REGION}-internal.aliyuncs.com"


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def maxcompute_child(root: str, key_hex: str, oss_endpoint: str, ready, stop, report) -> None:
    from localcloud.maxcompute.server import LocalMaxComputeServer
    from localcloud.ram import ServiceRoles, TokenAuthority

    authority = TokenAuthority.from_hex(key_hex)
    server = LocalMaxComputeServer(Path(root), {KEY_ID: SECRET}, projects=[PROJECT], region=REGION,
                                   authority=authority, assume_role=ServiceRoles(authority, {ROLE: 3600}).assume,
                                   oss_endpoints={INTERNAL: oss_endpoint}).start()
    ready.put((server.endpoint, _vm("VmRSS")))
    stop.wait()
    report.put(_vm("VmHWM"))
    server.stop()


def write_inventory(folder: Path, rows: int, files: int) -> list[Path]:
    paths, per_file = [], rows // files
    for f in range(files):
        path = folder / f"{f:04d}-4a1c-4e2b-9f00-{secrets.token_hex(6)}.csv.gz"
        with gzip.open(path, "wt", compresslevel=1, newline="") as out:
            lines = []
            for n in range(f * per_file, (f + 1) * per_file):
                key = quote(f"images/cat{n % 50}/sub {n % 1000}/img+{n}.jpg", safe="")
                lines.append(f'"src","{key}","{n % 100000}","2026-11-30T16:00:00.000Z",'
                             f'"""{(n * 2654435761) % 2**128:032X}""","Standard","false","false"\n')
                if len(lines) == 10000:
                    out.write("".join(lines))
                    lines = []
            out.write("".join(lines))
        paths.append(path)
    return paths


def run(rows: int, files: int) -> dict:
    import oss2
    from odps import ODPS, options

    from localcloud.oss.server import Credential, LocalOssServer
    from localcloud.ram import TokenAuthority

    options.use_legacy_logview = True
    key_hex = secrets.token_hex(32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "oss" / "inventory").mkdir(parents=True)
        (tmp_path / "gen").mkdir()
        started = time.monotonic()
        paths = write_inventory(tmp_path / "gen", rows, files)
        generate_s = time.monotonic() - started
        gz_bytes = sum(p.stat().st_size for p in paths)
        with LocalOssServer(tmp_path / "oss", [Credential(KEY_ID, SECRET)], region=REGION,
                            authority=TokenAuthority.from_hex(key_hex)) as oss:
            bucket = oss2.Bucket(oss2.AuthV4(KEY_ID, SECRET), oss.endpoint, "inventory", region=REGION)
            for path in paths:
                bucket.put_object_from_file(f"dst/src/daily/data/{path.name}", str(path))
            context = mp.get_context("spawn")
            ready, report, stop = context.Queue(), context.Queue(), context.Event()
            child = context.Process(target=maxcompute_child,
                                    args=(str(tmp_path / "mc"), key_hex, oss.endpoint, ready, stop, report))
            child.start()
            endpoint, rss_start_kib = ready.get(timeout=120)
            odps = ODPS(KEY_ID, SECRET, project=PROJECT, endpoint=endpoint, region_name=REGION)
            odps.execute_sql(
                "CREATE EXTERNAL TABLE inventory_ext (src STRING, k STRING, size BIGINT, modified STRING, "
                "etag STRING, storage STRING, multipart STRING, encrypted STRING) "
                "STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ("
                f"'odps.properties.rolearn'='{ROLE}', 'odps.text.option.gzip.input.enabled'='true', "
                f"'odps.text.option.use.quote'='true') LOCATION 'oss://{INTERNAL}/inventory/dst/src/daily/data/'")
            odps.execute_sql("CREATE TABLE catalog_staging (id STRING, source_image STRING, category STRING, "
                             "file_name STRING, bytes BIGINT) PARTITIONED BY (ds STRING)")
            started = time.monotonic()
            odps.execute_sql(
                "INSERT OVERWRITE TABLE catalog_staging PARTITION (ds='20261201') "
                "SELECT MD5(URL_DECODE(k)), CONCAT('/', URL_DECODE(k)), SPLIT_PART(URL_DECODE(k), '/', 2), "
                "REGEXP_EXTRACT(URL_DECODE(k), '([^/]+)$', 1), size FROM inventory_ext "
                "WHERE REGEXP_EXTRACT(URL_DECODE(k), '\\\\.(jpg|png|webp)$', 1) IS NOT NULL")
            insert_s = time.monotonic() - started
            written = odps.get_table("catalog_staging").get_partition("ds=20261201").record_num
            stop.set()
            peak_kib = report.get(timeout=120)
            child.join(60)
    return {"benchmark": "external_inventory_insert", "rows": rows, "files": files,
            "gz_mib": round(gz_bytes / 2**20, 1),
            "generate_s": round(generate_s, 1), "insert_s": round(insert_s, 1),
            "rows_per_s": round(rows / insert_s), "written": written,
            "maxcompute_rss_start_mib": round(rss_start_kib / 1024), "maxcompute_peak_rss_mib": round(peak_kib / 1024)}


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.files)), flush=True)


if __name__ == "__main__":
    main()
