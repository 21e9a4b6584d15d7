"""The local Tunnel driven by the real pyodps client over HTTP (tunnel_harness), plus the seams a client
cannot reach: tampered bodies, injected faults, expiry, a restart."""

from __future__ import annotations

import datetime as dt
import io
import json
import zlib
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from odps import ODPS, errors as odps_errors
from odps.models import Record, TableSchema
from odps.tunnel import CompressOption, TableTunnel
from odps.tunnel.errors import TunnelError
from odps.tunnel.io.writer import BufferedArrowWriter, BufferedRecordWriter

from localcloud.maxcompute import tunnel_wire as wire
from localcloud.maxcompute.errors import MaxComputeError
from localcloud.maxcompute.tunnel import ConnectionResetFault, TunnelRequest, TunnelService
from localcloud.maxcompute.types import Column
from localcloud.maxcompute.store import MaxComputeStore
from tests.localcloud.maxcompute.tunnel_harness import TunnelHarness

P = "proj"
SIMPLE = [Column("id", "bigint"), Column("name", "string"), Column("score", "double"),
          Column("ok", "boolean"), Column("ts", "datetime")]
ALL_TYPES = SIMPLE + [Column("i", "int"), Column("s", "smallint"), Column("t", "tinyint"),
                      Column("f", "float"), Column("bin", "binary"), Column("d", "date"),
                      Column("tsn", "timestamp"), Column("dec", "decimal(10,2)"), Column("vc", "varchar(8)")]
DS = [Column("ds", "string")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = MaxComputeStore(tmp / "data")
        self.store.create_project(P)
        self.clock = Clock()
        self.results: dict[str, tuple[list[Column], pa.Table]] = {}
        self.service = self.new_service()
        self.harness = TunnelHarness(self.service, self.store).start()
        self.odps = ODPS("ak", "sk", project=P, endpoint=f"http://{self.harness.address}/api")
        self.tunnel = TableTunnel(self.odps)  # endpoint found through GET /projects/proj/tunnel?service

    def new_service(self) -> TunnelService:
        return TunnelService(self.store, self.tmp / "state", clock=self.clock, session_ttl_s=3600,
                             instance_results=lambda p, i: self.results[i])

    def rows(self, table="t", spec=None) -> list[dict]:
        return [r for _, files in self.store.parquet_files(P, table, spec) for f in files
                for r in pq.read_table(f).to_pylist()]

    def writes(self, table="t") -> int:
        """Data files the table holds: a commit that wrote nothing leaves the count alone."""
        return sum(len(files) for _, files in self.store.parquet_files(P, table))

    def restart(self) -> None:
        self.service = self.harness.service = self.new_service()

    def request(self, method, params, body=b"", headers=None, table="t") -> object:
        return self.service.handle(TunnelRequest(method, P, table, None, dict(params), headers or {},
                                                 io.BytesIO(body)))


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    e.store.create_table(P, "t", SIMPLE, DS)
    e.store.add_partition(P, "t", {"ds": "1"})
    yield e
    e.harness.stop()


def simple_rows(n, start=0):
    return [[i, f"n{i}", i / 2, i % 2 == 0, dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i)]
            for i in range(start, start + n)]


def as_dicts(rows, columns=SIMPLE):
    return [dict(zip([c.name for c in columns], r)) for r in rows]


def upload_records(env, rows, block=0, **kw):
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1", **kw)
    with s.open_record_writer(block) as w:
        for r in rows:
            w.write(s.new_record(r))
    return s


def code_of(excinfo) -> str:
    return excinfo.value.code


# ------------------------------------------------------------------ wire basics

def test_crc32c_is_the_standard_castagnoli_crc():
    crc = wire.Crc()
    crc.update(b"123456789")
    assert crc.value == 0xE3069283  # the published check value: the server does not merely echo the client


@pytest.mark.parametrize("a, b", [(b"", b""), (b"", b"x"), (b"1234", b""), (b"12345", b"6789"), (bytes(range(256)) * 300, b"tail")])
def test_crc32c_combine_gives_the_crc_of_the_concatenation(a, b):
    def crc(data: bytes) -> int:
        c = wire.Crc()
        c.update(data)
        return c.value
    assert wire.crc32c_combine(crc(a), crc(b), len(b)) == crc(a + b)


def test_staged_blocks_are_read_back_in_order_in_even_row_groups(tmp_path):
    from localcloud.maxcompute.tunnel import _read_blocks, _write_block

    schema = pa.schema([("id", pa.int64())])
    sizes, start, paths = [[3, 5], [0], [4, 1, 6]], 0, []
    for n, block in enumerate(sizes):
        batches = []
        for size in block:
            batches.append(pa.record_batch([pa.array(range(start, start + size), pa.int64())], schema=schema))
            start += size
        paths.append(tmp_path / f"{n}.arrow")
        assert _write_block(paths[-1], schema, batches) == sum(block)
    tables = list(_read_blocks(paths, rows_per_write=4))
    assert [t.num_rows for t in tables] == [4, 4, 4, 4, 3]
    assert pa.concat_tables(tables).column("id").to_pylist() == list(range(19))


def test_tunnel_endpoint_is_discovered_and_urls_are_the_rest_paths(env):
    upload_records(env, simple_rows(1)).commit([0])
    paths = [p for _, p in env.harness.requests]
    assert any(p.startswith("/api/projects/proj/tunnel?service") for p in paths)
    # the tunnel endpoint is host:port only, so the REST prefix (/api) is not in tunnel paths
    assert any(p.startswith("/projects/proj/tables/t?") and "uploads=1" in p and "partition=ds%3D1" in p
               for p in paths)
    assert any(p.startswith("/projects/proj/tables/t?uploadid=") and "blockid=0" in p for p in paths)


# ------------------------------------------------------------------ uploads

def test_record_writer_round_trips_every_record_type(env):
    env.store.create_table(P, "all", ALL_TYPES)
    rows = [[1, "é", 1.25, True, dt.datetime(2024, 2, 3, 4, 5, 6), -7, 300, -8, 1.5, b"\x00\xff",
             dt.date(1999, 12, 31), pd.Timestamp("2024-01-01 00:00:00.123456789"), Decimal("12.34"), "vc"],
            [None] * len(ALL_TYPES),
            [-(2 ** 63), "", -0.0, False, dt.datetime(1960, 1, 1), 2 ** 31 - 1, -(2 ** 15), 127, -2.5, b"",
             dt.date(1970, 1, 1), pd.Timestamp("1969-12-31 23:59:59.999999999"), Decimal("-0.01"), ""]]
    s = env.tunnel.create_upload_session("all")
    with s.open_record_writer(0) as w:
        for r in rows:
            w.write(s.new_record(r))
    s.commit([0])
    stored = env.rows("all")
    assert stored[1] == {c.name: None for c in ALL_TYPES}
    assert stored[0]["name"] == "é" and stored[0]["bin"] == b"\x00\xff" and stored[0]["dec"] == Decimal("12.34")
    assert stored[2]["id"] == -(2 ** 63) and stored[2]["d"] == dt.date(1970, 1, 1)

    ds = env.tunnel.create_download_session("all")
    with ds.open_record_reader(0, ds.count) as r:
        got = [rec.values for rec in r]
    assert got[0][:11] == rows[0][:11] and got[0][12:] == rows[0][12:]
    assert pd.Timestamp(got[0][11]) == rows[0][11] and pd.Timestamp(got[2][11]) == rows[2][11]
    assert got[1] == [None] * len(ALL_TYPES)
    assert got[2][:11] == rows[2][:11]


def test_buffered_record_writer_sends_several_blocks_committed_in_order(env):
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1")
    with s.open_record_writer(buffer_size=300) as w:  # a few records per block
        for r in simple_rows(40):
            w.write(s.new_record(r))
    blocks = w.get_blocks_written()
    assert len(blocks) > 3
    s.commit(blocks)
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(40))


def test_arrow_writers_round_trip_with_and_without_block_id(env):
    env.store.create_table(P, "arr", [c for c in ALL_TYPES if c.name not in ("bin", "vc")])
    cols = [c for c in ALL_TYPES if c.name not in ("bin", "vc")]
    df = pd.DataFrame({
        "id": [1, 2, None], "name": ["a", None, "ç"], "score": [0.5, None, -1.0], "ok": [True, None, False],
        "ts": [pd.Timestamp("2024-05-01 00:00:01"), None, pd.Timestamp("1970-01-01")],
        "i": [1, 2, 3], "s": [1, 2, 3], "t": [1, 2, 3], "f": [1.5, 2.5, None],
        "d": [dt.date(2024, 1, 1), None, dt.date(1960, 6, 1)],
        "tsn": [pd.Timestamp("2024-01-01 00:00:00.000000001"), None, pd.Timestamp("2024-01-02")],
        "dec": [Decimal("1.10"), None, Decimal("-99.99")]})
    df["id"] = df["id"].astype("Int64")
    s = env.tunnel.create_upload_session("arr")
    with s.open_arrow_writer(0) as w:
        w.write(df.iloc[:1])
    with s.open_arrow_writer(buffer_size=1) as buffered:  # every write becomes its own block
        buffered.write(pa.Table.from_pandas(df.iloc[1:2], preserve_index=False))
        buffered.write(df.iloc[2:])
    assert buffered.get_blocks_written() == [0, 1]  # block 0 again: it replaces the first writer's block
    s2 = env.tunnel.create_upload_session("arr")
    with s2.open_arrow_writer(7) as w:
        w.write(df)
    s2.commit([7])
    stored = env.rows("arr")
    assert [r["id"] for r in stored] == [1, 2, None]
    assert stored[1]["name"] is None and stored[2]["name"] == "ç" and stored[0]["dec"] == Decimal("1.10")
    assert stored[0]["tsn"] == pd.Timestamp("2024-01-01 00:00:00.000000001")
    assert stored[0]["ts"] == dt.datetime(2024, 5, 1, 0, 0, 1)

    ds = env.tunnel.create_download_session("arr")
    with ds.open_arrow_reader(0, ds.count) as r:
        table = r.read()
    assert table.column_names == [c.name for c in cols]
    assert table.column("id").to_pylist() == [1, 2, None]
    assert table.column("tsn").to_pylist()[0] == pd.Timestamp("2024-01-01 00:00:00.000000001")


def test_overwrite_replaces_the_partition_at_commit_only(env):
    upload_records(env, simple_rows(3)).commit([0])
    s = upload_records(env, simple_rows(2, start=10), overwrite=True)
    assert len(env.rows("t", {"ds": "1"})) == 3  # staged, not yet visible
    s.commit([0])
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(2, start=10))


def test_without_overwrite_a_commit_appends(env):
    upload_records(env, simple_rows(3)).commit([0])
    upload_records(env, simple_rows(2, start=3)).commit([0])
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(5))


def test_an_uncommitted_session_changes_nothing(env):
    s = upload_records(env, simple_rows(3), overwrite=True)
    assert s.get_block_list() == [0]
    assert env.writes() == 0 and env.rows("t", {"ds": "1"}) == []


def test_missing_table_partition_and_partition_spec_are_refused(env):
    with pytest.raises(odps_errors.NoSuchPartition):
        env.tunnel.create_upload_session("t", partition_spec="ds=2")
    with pytest.raises(odps_errors.NoSuchTable):
        env.tunnel.create_upload_session("nope")
    with pytest.raises(odps_errors.ODPSError) as e:
        env.tunnel.create_upload_session("t")
    assert code_of(e) == "MissingPartitionSpec"
    with pytest.raises(odps_errors.ODPSError) as e:
        env.tunnel.create_upload_session("t", partition_spec="hr=1")
    assert code_of(e) == "InvalidPartitionSpec"


def test_create_partition_creates_it_at_commit(env):
    s = env.tunnel.create_upload_session("t", partition_spec="ds=2", create_partition=True)
    with s.open_record_writer(0) as w:
        w.write(s.new_record(simple_rows(1)[0]))
    with pytest.raises(MaxComputeError):
        env.store.get_partition(P, "t", {"ds": "2"})  # not before the commit
    s.commit([0])
    assert env.rows("t", {"ds": "2"}) == as_dicts(simple_rows(1))


@pytest.mark.parametrize("where", ["record-crc", "arrow-chunk", "truncated"])
def test_a_tampered_block_is_refused_on_the_wire(env, where):
    # the narrowest seam a client cannot reach: the body's bytes between pyodps' writer and the service
    env.harness.tamper = (lambda b: b[:-3]) if where == "truncated" else (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:])
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1")
    with pytest.raises(odps_errors.ODPSError) as e:
        if where == "arrow-chunk":
            with s.open_arrow_writer(0) as w:
                w.write(pd.DataFrame(as_dicts(simple_rows(50))))
        else:
            with s.open_record_writer(0) as w:
                for r in simple_rows(50):
                    w.write(s.new_record(r))
    assert code_of(e) == "MalformedDataStream" and e.value.status_code == 400
    env.harness.tamper = None
    assert s.get_block_list() == []


def _pyodps_block(columns, rows, arrow=False, compress=None) -> bytes:
    """A block exactly as pyodps' buffered writers build it, without sending it anywhere."""
    schema = TableSchema.from_lists([c.name for c in columns], [c.type.lower() for c in columns])
    sent = []

    class Resp:
        headers: dict = {}

    def capture(block_id, data):
        sent.append(data)
        return Resp()

    if arrow:
        w = BufferedArrowWriter(schema, capture, compress_option=compress)
        w.write(pd.DataFrame(as_dicts(rows, columns)))
    else:
        w = BufferedRecordWriter(schema, capture, compress_option=compress)
        for r in rows:
            w.write(Record(schema=schema, values=r))
    w.close()
    return sent[0]


def test_record_stream_checks_each_record_crc_and_the_footer(env):
    sid = upload_records(env, []).id
    body = _pyodps_block(SIMPLE, simple_rows(5))
    put = lambda b: env.request("PUT", {"uploadid": sid, "blockid": "1"}, b)
    flipped = body.replace(b"n3", b"n4")  # a string value changed: still parses, the record crc no longer matches
    with pytest.raises(MaxComputeError, match="record 3: checksum") as e:
        put(flipped)
    assert (e.value.status, e.value.code) == (400, "MalformedDataStream")
    with pytest.raises(MaxComputeError, match="no footer"):
        put(body[:body.rindex(b"\xf0\xff\xff\x7f")])  # cut before the footer's record count
    with pytest.raises(MaxComputeError, match="after the stream footer"):
        put(body + b"\x00")
    put(body)
    assert env.request("GET", {"uploadid": sid}).status == 200


def test_arrow_stream_checks_each_chunk_and_the_stream_checksum(env):
    sid = upload_records(env, []).id
    body = _pyodps_block(SIMPLE, simple_rows(5000), arrow=True)
    assert len(body) > 2 * 65536  # several full 64 KiB chunks, each with its own crc
    put = lambda b: env.request("PUT", {"uploadid": sid, "blockid": "1", "arrow": ""}, b)
    at = body.index(b"n30")  # a string value inside the first chunk: still valid Arrow once changed
    with pytest.raises(MaxComputeError, match="chunk checksum"):
        put(body[:at] + b"n40" + body[at + 3:])
    assert (len(body) - 4) % (65536 + 4) > 4  # the payload ends in a short chunk
    with pytest.raises(MaxComputeError, match="stream checksum"):  # its last byte: only the stream crc covers it
        put(body[:-5] + bytes([body[-5] ^ 1]) + body[-4:])
    with pytest.raises(MaxComputeError, match="stream checksum"):
        put(body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(MaxComputeError) as e:
        put(body[:70000])  # cut inside the second chunk
    assert e.value.code == "MalformedDataStream"
    staged = json.loads(env.request("GET", {"uploadid": sid}).body)["UploadedBlockList"]
    assert [b["BlockID"] for b in staged] == [0]  # only the empty block the session opened with
    put(body)
    env.request("POST", {"uploadid": sid})
    assert len(env.rows("t", {"ds": "1"})) == 5000


def test_content_encodings(env):
    sid = upload_records(env, []).id
    put = lambda b, enc, bid, arrow=False: env.request(
        "PUT", {"uploadid": sid, "blockid": bid, **({"arrow": ""} if arrow else {})}, b, {"Content-Encoding": enc})
    zlib_opt = CompressOption(CompressOption.CompressAlgorithm.ODPS_ZLIB)
    put(_pyodps_block(SIMPLE, simple_rows(2), compress=zlib_opt), "deflate", "1")
    raw = _pyodps_block(SIMPLE, simple_rows(2, start=2), arrow=True)
    put(_zstd(raw), "zstd", "2", arrow=True)
    with pytest.raises(MaxComputeError, match="x-snappy-framed") as e:
        put(raw, "x-snappy-framed", "3", arrow=True)
    assert e.value.code == "InvalidArgument"
    with pytest.raises(MaxComputeError, match="deflate stream truncated"):
        put(zlib.compress(raw)[:-4], "deflate", "4", arrow=True)
    env.request("POST", {"uploadid": sid})
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(4))


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def test_pyodps_buffered_arrow_writer_with_deflate_is_refused_as_truncated(env):
    # pyodps 0.13.2 sends the buffered arrow block without flushing its compressor: the service must
    # refuse the truncated deflate stream rather than store a partial block
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1", compress_algo="zlib")
    with pytest.raises(odps_errors.ODPSError) as e:
        with s.open_arrow_writer(compress=True) as w:
            w.write(pd.DataFrame(as_dicts(simple_rows(3))))
    assert code_of(e) == "MalformedDataStream"


def test_deflate_record_writer_and_compressed_downloads(env):
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1", compress_algo="zlib")
    with s.open_record_writer(0, compress=True) as w:
        for r in simple_rows(3):
            w.write(s.new_record(r))
    s.commit([0])
    ds = env.tunnel.create_download_session("t", partition_spec="ds=1", compress_algo="zlib")
    with ds.open_record_reader(0, 3, compress=True) as r:
        assert [rec.values[:5] for rec in r] == simple_rows(3)
    resp = env.request("GET", {"downloadid": ds.id, "data": "", "rowrange": "(0,3)", "partition": "ds=1"},
                       headers={"Accept-Encoding": "deflate"})
    assert resp.headers["Content-Encoding"] == "deflate"
    plain = b"".join(env.request("GET", {"downloadid": ds.id, "data": "", "rowrange": "(0,3)"},
                                 headers={"Accept-Encoding": "gzip, deflate"}).body)
    assert zlib.decompress(b"".join(resp.body)) == plain  # requests' default list is not an ask


def test_block_list_commit_and_session_states(env):
    s = upload_records(env, simple_rows(2))
    with pytest.raises(TunnelError, match="Blocks not match|Block not exists"):
        s.commit([0, 7])  # pyodps checks the list against the server's (GET ?uploadid) before committing
    assert env.writes() == 0
    with pytest.raises(MaxComputeError) as e:
        env.request("PUT", {"uploadid": s.id, "blockid": "20000"})
    assert (e.value.status, e.value.code) == (400, "InvalidBlockID")
    s.commit([0])
    with pytest.raises(odps_errors.ODPSError) as e2:
        s.commit([0])
    assert code_of(e2) == "StatusConflict" and e2.value.status_code == 409
    with pytest.raises(odps_errors.ODPSError) as e3:
        with s.open_record_writer(1) as w:
            w.write(s.new_record(simple_rows(1)[0]))
    assert code_of(e3) == "StatusConflict"
    with pytest.raises(MaxComputeError) as e4:
        env.request("PUT", {"uploadid": "0123456789abcdef0000", "blockid": "0"})
    assert (e4.value.status, e4.value.code) == (404, "NoSuchUpload")
    with pytest.raises(MaxComputeError):
        env.request("GET", {"uploadid": "../../etc"})
    assert len(env.rows("t", {"ds": "1"})) == 2


def test_expired_sessions_refuse_blocks_and_commits(env):
    s = upload_records(env, simple_rows(2))
    env.clock.now += 3601
    s.reload()
    assert s.status.value == "EXPIRED"
    for method, params in (("PUT", {"blockid": "1"}), ("POST", {})):
        with pytest.raises(MaxComputeError) as e:
            env.request(method, {"uploadid": s.id, **params})
        assert (e.value.status, e.value.code) == (409, "StatusConflict")
    ds = env.tunnel.create_download_session("t", partition_spec="ds=1")
    env.clock.now += 7300
    env.tunnel.create_upload_session("t", partition_spec="ds=1")  # sweeps: two ttls on, the session is gone
    assert not (env.tmp / "state" / "tunnel" / "upload" / s.id).exists()
    with pytest.raises(MaxComputeError) as e:
        env.request("GET", {"downloadid": ds.id, "data": "", "rowrange": "(0,1)"})
    assert e.value.code == "StatusConflict"
    assert env.writes() == 0


def test_sessions_survive_a_restart_between_upload_and_commit(env):
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1")
    with s.open_arrow_writer(buffer_size=1) as w:
        for i in range(3):
            w.write(pd.DataFrame(as_dicts(simple_rows(2, start=2 * i))))
    env.restart()
    again = env.tunnel.create_upload_session("t", partition_spec="ds=1", upload_id=s.id)
    assert again.get_block_list() == [0, 1, 2]
    again.commit([0, 1, 2])
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(6))


# ------------------------------------------------------------------ fault hooks

def test_fail_next_commit_answers_500_and_commits_nothing(env):
    s = upload_records(env, simple_rows(2))
    env.service.faults.fail_next_commit = 1
    with pytest.raises(MaxComputeError) as e:
        env.request("POST", {"uploadid": s.id})
    assert (e.value.status, e.value.code) == (500, "InternalServerError")
    assert env.writes() == 0 and s.get_block_list() == [0]
    env.service.faults.fail_next_commit = 1
    s.commit([0])  # pyodps retries a 5xx after 1 s: the second try commits, once
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(2))
    assert env.writes() == 1


def test_reset_next_block_put_drops_the_block(env):
    sid = upload_records(env, []).id
    env.service.faults.reset_next_block_put = 1
    with pytest.raises(ConnectionResetFault):
        env.request("PUT", {"uploadid": sid, "blockid": "1"}, _pyodps_block(SIMPLE, simple_rows(1)))
    assert env.request("PUT", {"uploadid": sid, "blockid": "1"}, _pyodps_block(SIMPLE, simple_rows(1))).status == 200
    s = env.tunnel.create_upload_session("t", partition_spec="ds=1")
    env.service.faults.reset_next_block_put = 1
    with s.open_arrow_writer() as w:  # the buffered writer retries a reset connection
        w.write(pd.DataFrame(as_dicts(simple_rows(3))))
    s.commit(w.get_blocks_written())
    assert env.service.faults.reset_next_block_put == 0  # the reset happened, and the retry landed once
    assert env.rows("t", {"ds": "1"}) == as_dicts(simple_rows(3))


# ------------------------------------------------------------------ downloads

def _fill(env, n_files=3, rows_per_file=5):
    for i in range(n_files):
        upload_records(env, simple_rows(rows_per_file, start=i * rows_per_file)).commit([0])


def test_table_readers_with_row_ranges_and_column_subsets(env):
    _fill(env)
    t = env.odps.get_table("t")
    with t.open_reader(partition="ds=1") as r:
        assert r.count == 15
        assert [rec.values for rec in r] == [row + ["1"] for row in simple_rows(15)]
        assert [rec["id"] for rec in r.read(start=4, count=7)] == list(range(4, 11))  # spans files
    with t.open_reader(partition="ds=1", columns=["name", "id"]) as r:
        assert [rec.values for rec in r.read(start=13)] == [["n13", 13], ["n14", 14]]
    with t.open_reader(partition="ds=1", arrow=True, columns=["score", "id"]) as r:
        table = r.read_all(start=3, count=5)
    assert table.column("id").to_pylist() == list(range(3, 8))
    df = t.to_pandas(partition="ds=1")
    assert list(df["id"]) == list(range(15)) and df["ts"][1] == pd.Timestamp("2024-01-01 00:00:01")


def test_download_refusals(env):
    _fill(env, 1, 3)
    ds = env.tunnel.create_download_session("t", partition_spec="ds=1")
    get = lambda **p: env.request("GET", {"downloadid": ds.id, "data": "", **p})
    for rowrange in ("(2,2)", "(0,0)", "0,1"):
        with pytest.raises(MaxComputeError) as e:
            get(rowrange=rowrange)
        assert (e.value.status, e.value.code) == (400, "InvalidRowRange")
    with pytest.raises(MaxComputeError) as e:
        get(rowrange="(0,1)", columns="id,nope")
    assert e.value.code == "InvalidColumnSpec"
    with pytest.raises(odps_errors.NoSuchPartition):
        env.tunnel.create_download_session("t", partition_spec="ds=9")
    with pytest.raises(MaxComputeError) as e:
        env.request("GET", {"downloadid": ds.id}, table="other")
    assert e.value.code == "NoSuchDownload"


def test_instance_reader_serves_the_instance_results(env):
    cols = [Column("id", "bigint"), Column("name", "string"), Column("tsn", "timestamp"), Column("ts", "datetime")]
    env.results["20240101000000abcdef01"] = (cols, pa.table({
        "id": pa.array(range(30000), pa.int64()), "name": [f"r{i}" for i in range(30000)],
        "tsn": pa.array([i * 1_000_000_007 - 5 for i in range(30000)], pa.timestamp("ns")),
        "ts": pa.array([i * 1000 for i in range(30000)], pa.timestamp("ms"))}))
    inst = env.odps.get_instance("20240101000000abcdef01")
    with inst.open_reader() as r:  # options.tunnel.use_instance_tunnel is on by default
        assert r.count == 30000
        recs = list(r.read(start=29998))
        assert [x["id"] for x in recs] == [29998, 29999] and recs[0]["name"] == "r29998"
        assert pd.Timestamp(recs[0]["tsn"]) == pd.Timestamp(29998 * 1_000_000_007 - 5)
    with inst.open_reader(arrow=True) as r:
        table = r.read_all()
    assert table.num_rows == 30000 and table.column("tsn").to_pylist()[0] == pd.Timestamp(-5)
    with inst.open_reader(limit=True, reopen=True) as r:  # reopen: not the cached unlimited session
        assert r.count == 10000
    assert not [u for u in env.harness.unexpected if "instances" in u]
