"""A deleted key's material is gone from the data dir, for good (review issue
13, finding 11).

The attacker here holds the data dir *and* the root key (``dev-root.key``)
after a key was deleted: the barrier's terms are never destroyed, so any copy
of a ``mat/<key id>/...`` value left anywhere in the SQLite files (freed
pages, old WAL frames) would still decrypt. The test opens every candidate in
every file of the data dir with the barrier's own keys and must find none, and
searches for the material's bytes themselves (known: it was imported).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_import_e2e import Client
from test_no_plaintext_at_rest import _binary

from conftest import DAY, Server
from keycask.barrier.keyring import KEYRING_PATH, Keyring
from keycask.crypto import AuthenticationFailed, KeyMaterial, open_sealed
from keycask.seal.dev import DevSeal

# A barrier value holding 32 bytes: format | term (4) | nonce (12) | 32 | tag (16).
_PREFIX = 5
_VALUE_SIZE = _PREFIX + 12 + 32 + 16


def _keyring(server: Server) -> Keyring:
    uri = f"file:{server.data_dir / 'keycask.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        row = conn.execute("SELECT value FROM kv WHERE path = ?", (KEYRING_PATH,)).fetchone()
    finally:
        conn.close()
    return Keyring.open_with(DevSeal(server.data_dir).root_key(), bytes(row[0]))


def _store_files(server: Server) -> list[Path]:
    return [p for p in server.data_dir.iterdir() if p.name.startswith("keycask.db")]


def _opened(data: bytes, terms: dict[int, KeyMaterial], paths: list[str]) -> list[str]:
    """The paths of ``paths`` whose barrier value, under any term, is somewhere in ``data``."""
    found = []
    for term, key in terms.items():
        prefix = bytes([1]) + term.to_bytes(4, "big")
        at = data.find(prefix)
        while at != -1:
            candidate = data[at : at + _VALUE_SIZE]
            for path in paths:
                try:
                    open_sealed(key, candidate[_PREFIX:], aad=prefix + path.encode())
                except AuthenticationFailed:
                    continue
                found.append(path)
            at = data.find(prefix, at + 1)
    return found


def _recoverable(server: Server, paths: list[str]) -> list[tuple[str, str]]:
    terms = _keyring(server).terms
    return [
        (f.name, path)
        for f in _store_files(server)
        for path in _opened(f.read_bytes(), terms, paths)
    ]


def _material_paths(key_id: str, versions: int) -> list[str]:
    return [f"mat/{uuid.UUID(key_id)}/{v:010d}" for v in range(1, versions + 1)]


@pytest.mark.slow
def test_deleted_key_material_cannot_be_recovered_from_the_data_dir(
    fresh_server: Server,
) -> None:
    server = fresh_server
    kms = server.client()
    byok = Client(kms)
    # Neighbours that stay, so the deleted rows share pages with live ones.
    for i in range(20):
        kms.create_key(Description=f"neighbour {i}")
    imported = byok.external_key("deleted byok")["KeyId"]
    material = os.urandom(32)
    byok.import_(imported, material)
    made = kms.create_key(Description="deleted generated")["KeyMetadata"]["KeyId"]
    kms.rotate_key_on_demand(KeyId=made)
    for key_id in (imported, made):
        kms.encrypt(KeyId=key_id, Plaintext=b"used once")
    paths = _material_paths(imported, 1) + _material_paths(made, 2)

    # The scan works: before deletion every version is found and opens.
    assert set(paths) <= {path for _, path in _recoverable(server, paths)}
    needle = _binary("imported material", material)
    assert not _raw_hits(server, needle)  # never in the clear, deleted or not

    for key_id in (imported, made):
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert server.advance_clock(8 * DAY)["JobsRun"] >= 2
    for key_id in (imported, made):
        with pytest.raises(kms.exceptions.NotFoundException):
            kms.describe_key(KeyId=key_id)

    # While the server runs, and after it stopped.
    assert _recoverable(server, paths) == []
    assert not _raw_hits(server, needle)
    server.stop()
    assert _recoverable(server, paths) == []
    assert not _raw_hits(server, needle)


def _raw_hits(server: Server, needle: Any) -> list[tuple[str, str]]:
    return [
        (f.name, form)
        for f in server.data_dir.rglob("*")
        if f.is_file() and f.name != "dev-root.key"
        for form, value in needle.forms.items()
        if value in f.read_bytes()
    ]
