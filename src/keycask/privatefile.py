"""Files only their owner may read (mode 0600), written durably: the one way
keycask writes a secret or a file that guards one (seal files, the operator
token's hash, the dev root key, credentials, TLS keys, secrets handed out)."""

from __future__ import annotations

import os
from pathlib import Path


def write_new(path: Path | str, data: bytes | str, *, sync_dir: bool = False) -> None:
    """Create ``path`` holding ``data``, mode 0600, flushed to disk. Never
    replaces anything: an existing file (or a symlink, even a dangling one)
    raises ``FileExistsError``, so two writers cannot both win and a link
    planted by someone else is not followed. ``sync_dir``: also make the new
    name durable."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    if sync_dir:
        fsync_dir(Path(path).parent)


def replace(path: Path | str, data: bytes | str) -> None:
    """Replace (or create) ``path`` with ``data`` atomically: written aside
    as a new 0600 file, flushed and renamed over it, the directory synced.
    A crash leaves the old file or the new one, whole."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)  # left by a crash mid-write
    write_new(tmp, data)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def fsync_dir(directory: Path | str) -> None:
    # A new name is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
