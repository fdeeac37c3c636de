"""The seal file (``<data dir>/seal.json``) that the passphrase and PKCS#11
seals keep beside the store: owner-only, written durably, never replaced by
accident."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from keycask.errors import SealError


def read(path: Path, *, missing: str, invalid: str) -> dict[str, Any]:
    """The JSON object in ``path``. ``missing`` and ``invalid`` are the
    messages for an absent file and one that is not a JSON object; a file
    others may read is refused either way."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SealError(missing) from None
    if st.st_mode & 0o077:
        raise SealError(f"{path} must be readable by its owner only (chmod 600)")
    try:
        document = json.loads(path.read_bytes())
    except ValueError:
        raise SealError(invalid) from None
    if not isinstance(document, dict):
        raise SealError(invalid)
    return document


def write_new(path: Path, document: dict[str, Any]) -> None:
    """Create ``path`` with ``document``; an existing file is never replaced,
    since the data under it would be lost with its key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SealError(f"{path} already exists; refusing to replace it") from None
    _write(fd, document)
    _fsync_dir(path.parent)


def replace(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` with ``document`` atomically: written aside and
    renamed, so a crash mid-write leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    _write(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), document)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def promote(source: Path, path: Path) -> None:
    """Make ``source`` (written with ``write_new``) the file at ``path``,
    atomically and durably."""
    os.replace(source, path)
    _fsync_dir(path.parent)


def remove(path: Path) -> None:
    """Delete ``path`` durably (nothing if it is absent)."""
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _write(fd: int, document: dict[str, Any]) -> None:
    data = (json.dumps(document, indent=2) + "\n").encode("ascii")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # A new name is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
