"""One-off generator of the barrier and keyring v1 golden vectors, kept for
the record.

It was run once to write ``barrier_v1.json`` and ``keyring_v1.json``; those
files are never edited or regenerated. It builds the bytes from the documented
formats with `cryptography`'s AES-GCM directly, not with keycask's code, so the
test that reads them checks keycask against the documentation:

- barrier value: ``0x01 | term (4, BE) | nonce (12) | AES-256-GCM(plaintext)``,
  AAD = ``0x01 | term (4, BE) | path (UTF-8)``;
- keyring at ``core/keyring``: ``0x01 | nonce (12) | AES-256-GCM(json)`` under
  the root key, AAD = ``0x01 "keycask keyring|core/keyring"``; the JSON holds
  ``active``, ``terms`` (term -> key hex), ``reserved``, ``rewrite``, ``epoch``
  (the last three absent in keyrings written before they existed).

The script refuses to overwrite existing files.

    .venv/bin/python tests/vectors/make_barrier_v1.py
"""

from __future__ import annotations

import json
import secrets
import struct
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent
BARRIER_FILE = HERE / "barrier_v1.json"
KEYRING_FILE = HERE / "keyring_v1.json"
KEYRING_AAD = b"\x01keycask keyring|core/keyring"


def _barrier_value(key: bytes, term: int, path: str, plaintext: bytes) -> dict[str, Any]:
    nonce = secrets.token_bytes(12)
    prefix = struct.pack(">BI", 1, term)
    sealed = AESGCM(key).encrypt(nonce, plaintext, prefix + path.encode())
    return {
        "term": term,
        "path": path,
        "nonce": nonce.hex(),
        "plaintext": plaintext.hex(),
        "stored": (prefix + nonce + sealed).hex(),
    }


def _keyring(root: bytes, doc: dict[str, Any]) -> dict[str, Any]:
    nonce = secrets.token_bytes(12)
    text = json.dumps(doc, separators=(",", ":")).encode()
    sealed = AESGCM(root).encrypt(nonce, text, KEYRING_AAD)
    return {"doc": text.decode(), "nonce": nonce.hex(), "stored": (b"\x01" + nonce + sealed).hex()}


def main() -> int:
    if BARRIER_FILE.exists() or KEYRING_FILE.exists():
        print("the vectors exist already; they are never regenerated", file=sys.stderr)
        return 1
    root = secrets.token_bytes(32)
    terms = {1: secrets.token_bytes(32), 2: secrets.token_bytes(32)}
    current = {
        "active": 2,
        "terms": {str(t): k.hex() for t, k in terms.items()},
        "reserved": {"1": 131072, "2": 65536},
        "rewrite": True,
        "epoch": 7,
    }
    # A keyring from before reservations, the rewrite flag and epochs.
    legacy = {"active": 1, "terms": {"1": terms[1].hex()}}
    keyrings = {
        "root": root.hex(),
        "keyrings": [
            {"name": "current", **_keyring(root, current)},
            {"name": "legacy", **_keyring(root, legacy)},
        ],
    }
    values = []
    for term, path, plaintext in (
        (1, "key/1234abcd-12ab-34cd-56ef-1234567890ab", b'{"state":"Enabled"}'),
        (1, "mat/1234abcd-12ab-34cd-56ef-1234567890ab/0000000001", secrets.token_bytes(32)),
        (2, "principal/000000000000/alice", b'{"name":"alice"}'),
        (2, "gone/1234abcd-12ab-34cd-56ef-1234567890ab", b""),
        (2, "alias/000000000000/us-east-1/alias/\u00e9t\u00e9", b"x" * 4096),
    ):
        values.append(_barrier_value(terms[term], term, path, plaintext))
    barrier = {"terms": {str(t): k.hex() for t, k in terms.items()}, "values": values}
    BARRIER_FILE.write_text(json.dumps(barrier, indent=1) + "\n", encoding="ascii")
    KEYRING_FILE.write_text(json.dumps(keyrings, indent=1) + "\n", encoding="ascii")
    return 0


if __name__ == "__main__":
    sys.exit(main())
