"""Files that hold secrets (the stack's keys, its connection exports, the local CA's private key):
created readable by the owner only from the first byte, under a name nobody could have planted, then
renamed over the target, so a reader sees the old file or the whole new one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` with ``mode`` (default owner-only) atomically.

    The temporary name is random and opened with ``O_EXCL | O_NOFOLLOW``: a planted file or symlink
    makes the open fail instead of receiving the secret. ``os.replace`` swaps the directory entry, so a
    symlink or a world-readable file planted at ``path`` itself is replaced, never written through.
    ``fchmod`` sets the mode whatever the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, _NEW_FILE, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
