"""The seal file (``<data dir>/seal.json``) that the passphrase and PKCS#11
seals keep beside the store: owner-only, written durably, never replaced by
accident."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from keycask import privatefile
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
        privatefile.write_new(path, _encode(document), sync_dir=True)
    except FileExistsError:
        raise SealError(f"{path} already exists; refusing to replace it") from None


def replace(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` with ``document`` atomically: written aside and
    renamed, so a crash mid-write leaves the old file whole."""
    privatefile.replace(path, _encode(document))


def promote(source: Path, path: Path) -> None:
    """Make ``source`` (written with ``write_new``) the file at ``path``,
    atomically and durably."""
    os.replace(source, path)
    privatefile.fsync_dir(path.parent)


def remove(path: Path) -> None:
    """Delete ``path`` durably (nothing if it is absent)."""
    path.unlink(missing_ok=True)
    privatefile.fsync_dir(path.parent)


def _encode(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("ascii")
