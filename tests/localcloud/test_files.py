"""Secret files (issue 12, finding 7): owner-only from the first byte, never written through a planted
temporary name, symlink or world-readable file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from localcloud.files import write_private


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_symlink_planted_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    bait = tmp_path / "world-readable.txt"
    bait.write_text("the attacker's file")
    target = tmp_path / "stack.env"
    target.symlink_to(bait)
    write_private(target, "export SECRET=1\n")
    assert not target.is_symlink() and target.read_text() == "export SECRET=1\n" and mode_of(target) == 0o600
    assert bait.read_text() == "the attacker's file"


def test_a_world_readable_file_planted_at_the_target_ends_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "credentials.json"
    target.write_text("{}")
    target.chmod(0o666)
    write_private(target, b"{\"k\": 1}")
    assert mode_of(target) == 0o600 and target.read_bytes() == b"{\"k\": 1}"


def test_owner_only_whatever_the_umask_and_no_temporary_file_left(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "key.pem", b"secret")
        write_private(tmp_path / "ca.pem", b"public", 0o644)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "key.pem") == 0o600 and mode_of(tmp_path / "ca.pem") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "key.pem"]


def test_the_local_ca_key_is_written_past_a_planted_temporary_name(tmp_path: Path) -> None:
    """The CA files used a predictable temporary name (``.<name>.<pid>.tmp``): a symlink planted there
    made the stack fail to start (and, without O_EXCL, would have received the private key)."""
    from localcloud.sts.tls import LocalTls

    bait = tmp_path / "bait"
    bait.write_text("untouched")
    folder = tmp_path / "sts"
    folder.mkdir()
    tls = LocalTls(folder)
    files = [tls.ca_cert, tls.server_cert, tls.server_key, tls.bundle]
    for path in files:
        path.with_name(f".{path.name}.{os.getpid()}.tmp").symlink_to(bait)
    tls.ensure()
    assert bait.read_text() == "untouched"
    assert all(path.is_file() and not path.is_symlink() for path in files)
    assert mode_of(tls.server_key) == 0o600


@pytest.mark.parametrize("name", ["credentials.json", "stack.env"])
def test_the_stacks_secret_files_are_owner_only_past_a_planted_symlink(tmp_path: Path, name: str) -> None:
    from localcloud.stack import LocalPaths, _write_env_file, local_secrets

    bait = tmp_path / "bait"
    bait.write_text("untouched")
    root = tmp_path / "local"
    root.mkdir()
    (root / name).symlink_to(bait)
    paths = LocalPaths(root)
    if name == "credentials.json":
        (root / name).unlink()  # a dangling or planted file there would be read as the secrets: start clean
        (root / name).symlink_to(tmp_path / "nowhere")
        local_secrets(paths)
    else:
        _write_env_file(root / name, {"AIRFLOW_CONN_X": "{}"})
    assert bait.read_text() == "untouched"
    assert not (root / name).is_symlink() and mode_of(root / name) == 0o600
