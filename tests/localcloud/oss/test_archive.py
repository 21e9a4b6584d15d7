"""Storage classes and restores on the local OSS server, through the real oss2 client.

Why: Archive, ColdArchive and DeepColdArchive objects cannot be read until restored; the stand-in
must refuse them as OSS does (403 InvalidObjectState), list their class and restore state, and play
RestoreObject, or code that indexes them would pass here and fail in the cloud.
"""

from __future__ import annotations

import time
from pathlib import Path

import oss2
import pytest
from oss2.models import RestoreConfiguration, RestoreJobParameters

from localcloud.oss import cli as oss_cli
from localcloud.oss.archive import ObjectClass
from localcloud.oss.server import Credential, GeneratedBucket, LocalOssServer
from localcloud.oss.store import OBJECT_META_NAME
from tests.localcloud.cli import server_arguments

CREDENTIAL = Credential("LTAIarchive", "archive-secret")
RESTORE_DELAY_S = 0.3
GENERATED = GeneratedBucket("gen-archive", prefixes=2, keys_per_prefix=6, digits=4, archive_every=4)


@pytest.fixture()
def server(tmp_path: Path):
    (tmp_path / "arch").mkdir()
    with LocalOssServer(tmp_path, [CREDENTIAL], generated=[GENERATED], restore_delay_s=RESTORE_DELAY_S) as srv:
        yield srv


def bucket(server: LocalOssServer, name: str = "arch") -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(CREDENTIAL.access_key_id, CREDENTIAL.access_key_secret), server.endpoint, name, region="cn-hangzhou")


def put(target: oss2.Bucket, key: str, storage_class: str | None = None) -> None:
    target.put_object(key, b"img:" + key.encode(), headers={"x-oss-storage-class": storage_class} if storage_class else None)


def classes(result) -> dict[str, tuple[str, str | None]]:
    return {obj.key: (obj.storage_class, obj.restore_info) for obj in result.object_list}


def test_each_object_keeps_its_class_and_frozen_ones_cannot_be_read(server: LocalOssServer) -> None:
    target = bucket(server)
    for name in ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive"):
        put(target, f"img/{name}.jpg", name)
    put(target, "img/default.jpg")
    expected = {f"img/{n}.jpg": (n, None) for n in ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")}
    expected["img/default.jpg"] = ("Standard", None)
    assert classes(target.list_objects_v2(prefix="img/")) == expected
    assert classes(target.list_objects(prefix="img/")) == expected  # v1 too
    for name in ("Standard", "IA"):
        assert target.get_object(f"img/{name}.jpg").read() == f"img:img/{name}.jpg".encode()
    for name in ("Archive", "ColdArchive", "DeepColdArchive"):
        with pytest.raises(oss2.exceptions.ServerError) as err:
            target.get_object(f"img/{name}.jpg")
        assert (err.value.status, err.value.code) == (403, "InvalidObjectState")
        assert err.value.message == "The operation is not valid for the object's state."
        head = target.head_object(f"img/{name}.jpg")  # HEAD answers for frozen objects, as on OSS
        assert head.headers["x-oss-storage-class"] == name and "x-oss-restore" not in head.headers


def test_restore_object_plays_oss_answers_and_the_state_shows_in_head_and_listing(server: LocalOssServer) -> None:
    target = bucket(server)
    put(target, "img/a.jpg", "Archive")
    assert target.restore_object("img/a.jpg").status == 202
    assert target.head_object("img/a.jpg").headers["x-oss-restore"] == 'ongoing-request="true"'
    assert classes(target.list_objects_v2(prefix="img/")) == {"img/a.jpg": ("Archive", 'ongoing-request="true"')}
    with pytest.raises(oss2.exceptions.RestoreAlreadyInProgress):
        target.restore_object("img/a.jpg")
    with pytest.raises(oss2.exceptions.ServerError, match="InvalidObjectState"):
        target.get_object("img/a.jpg")  # still restoring: not readable yet
    time.sleep(RESTORE_DELAY_S + 0.1)
    restored = target.head_object("img/a.jpg").headers["x-oss-restore"]
    assert restored.startswith('ongoing-request="false", expiry-date="') and restored.endswith(' GMT"')
    assert classes(target.list_objects_v2(prefix="img/")) == {"img/a.jpg": ("Archive", restored)}
    assert target.get_object("img/a.jpg").read() == b"img:img/a.jpg"
    assert target.restore_object("img/a.jpg").status == 200  # restored: extends, no new restore


def test_restore_requests_are_checked_like_oss(server: LocalOssServer) -> None:
    target = bucket(server)
    put(target, "img/std.jpg")
    put(target, "img/cold.jpg", "ColdArchive")
    put(target, "img/deep.jpg", "DeepColdArchive")
    put(target, "img/arch.jpg", "Archive")
    with pytest.raises(oss2.exceptions.OperationNotSupported):
        target.restore_object("img/std.jpg")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        target.restore_object("img/missing.jpg")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        target.restore_object("img/arch.jpg", input=RestoreConfiguration(days=8))  # Archive: 1-7 days
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")
    with pytest.raises(oss2.exceptions.ServerError, match="Tier"):
        target.restore_object("img/deep.jpg", input=RestoreConfiguration(days=2, job_parameters=RestoreJobParameters("Expedited")))
    cold = RestoreConfiguration(days=30, job_parameters=RestoreJobParameters("Bulk"))
    assert target.restore_object("img/cold.jpg", input=cold).status == 202
    with pytest.raises(oss2.exceptions.ServerError) as err:
        target.put_object("img/x.jpg", b"x", headers={"x-oss-storage-class": "Glacier"})
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")


def test_a_new_object_replaces_class_and_restore_and_the_sidecar_goes_with_the_last_one(server: LocalOssServer) -> None:
    target = bucket(server)
    folder = Path(server.root) / "arch" / "img"
    put(target, "img/a.jpg", "Archive")
    put(target, "img/b.jpg", "IA")
    assert (folder / OBJECT_META_NAME).is_file()
    assert OBJECT_META_NAME not in str([obj.key for obj in target.list_objects_v2().object_list])  # never listed
    put(target, "img/a.jpg")  # overwritten as Standard
    assert target.get_object("img/a.jpg").read()
    target.delete_object("img/b.jpg")
    assert not (folder / OBJECT_META_NAME).exists()  # no entry left: no sidecar
    target.delete_object("img/a.jpg")
    assert not folder.exists()  # the folder still goes with its last object
    with pytest.raises(oss2.exceptions.ServerError, match="InvalidArgument"):
        target.put_object(f"img/{OBJECT_META_NAME}", b"x")  # a reserved name


def test_generated_buckets_archive_every_nth_key(server: LocalOssServer) -> None:
    target = bucket(server, GENERATED.name)
    listed = {obj.key: obj.storage_class for obj in target.list_objects_v2(max_keys=100).object_list}
    archived = {key: cls for key, cls in listed.items() if cls != "Standard"}
    assert archived == {"p000/0003.jpg": "Archive", "p001/0007.jpg": "ColdArchive", "p001/0011.jpg": "DeepColdArchive"}
    with pytest.raises(oss2.exceptions.ServerError, match="InvalidObjectState"):
        target.get_object("p000/0003.jpg")
    assert target.head_object("p000/0003.jpg").headers["x-oss-storage-class"] == "Archive"
    with pytest.raises(oss2.exceptions.AccessDenied):  # read-only: it can never be restored
        target.restore_object("p000/0003.jpg")
    assert GeneratedBucket.parse("name=gen-x,archive_every=5").archive_every == 5


def test_a_restored_copy_expires_back_to_frozen() -> None:
    state = ObjectClass("ColdArchive", 100.0, 100.0 + 86400)
    assert state.restoring(99) and not state.readable(99) and state.restore_info(99) == 'ongoing-request="true"'
    assert state.readable(100) and state.restore_info(100).startswith('ongoing-request="false", expiry-date="Fri, 02 Jan 1970')
    assert not state.readable(100.0 + 86400) and state.restore_info(100.0 + 86400) == ""  # expired: as never restored
    assert ObjectClass.from_json(state.as_json()) == state
    assert ObjectClass.from_json({"class": "Nonsense"}) == ObjectClass()  # a hand-edited sidecar reads as Standard


def test_cli_sets_the_restore_delay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--root", str(tmp_path), "--access-key-id", "ak", "--access-key-secret", "sk", "--restore-delay-s", "60"]
    assert server_arguments(monkeypatch, oss_cli, argv)["restore_delay_s"] == 60.0
