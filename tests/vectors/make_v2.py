"""One-off generator of the blob v2 golden vectors (multi-Region keys, issue
22) and of the multi-Region record id vectors, kept for the record.

It was run once to write ``blob_v2.json`` and ``mrk_record_v1.json``; those
files are never edited or regenerated. Unlike make_v1.py it uses none of
keycask's code: every byte comes from the format description in
``src/keycask/keys/wire.py`` and ``src/keycask/keys/ids.py`` (and
docs/architecture.md "Formats"), built with ``cryptography``'s primitives
(AES-GCM, SP 800-108 KBKDF, SHA-256), so the vectors check keycask against
the description rather than against itself. The script refuses to overwrite
existing files.

    .venv/bin/python tests/vectors/make_v2.py
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

HERE = Path(__file__).resolve().parent
BLOB_FILE = HERE / "blob_v2.json"
RECORD_FILE = HERE / "mrk_record_v1.json"

FORMAT_V2 = 0x02
MESSAGE_LABEL = b"keycask message key v1"
RECORD_LABEL = b"keycask mrk record v1\x00"

UNICODE_CONTEXT = {
    "\u00e9t\u00e9": "caf\u00e9 cr\u00e8me",
    "\u65e5\u672c\u8a9e": "\u3053\u3093\u306b\u3061\u306f",
    "\U0001f511": "\U0001f510\U0001f512",
    "\uffff": "max BMP",
    "\U00010000": "first astral",
    "e\u0301": "combining accent (not NFC)",
    "\u0000nul": "\u0000",
    "Zebra": "upper",
    "apple": "lower",
}

# (plaintext size, mrk id, version, context); mrk ``None`` means a random one,
# context ``None`` means "no context".
BLOB_CASES: list[tuple[int, bytes | None, int, dict[str, str] | None]] = [
    (1, None, 1, {}),
    (1, None, 0xFFFFFFFF, {"purpose": "test"}),
    (32, None, 1, {"aws:ebs:id": "vol-0123456789abcdef0"}),
    (32, bytes(16), 0, None),
    (32, b"\xff" * 16, 7, {"a": "b"}),
    (32, None, 2, {"ab": ""}),
    (4096, None, 3, {}),
    (4096, None, 1, UNICODE_CONTEXT),
    (17, None, 12, {"\uffff": "x", "\U00010000": "y"}),
    (64, None, 1, {"k1": "v1", "k2": "v2", "k3": "v3", "department": "10jqk"}),
    (255, None, 65536, {"": ""}),
    (1000, None, 42, {"long": "v" * 1000}),
]

RECORD_CASES: list[tuple[bytes | None, str]] = [
    (bytes(16), "us-east-1"),
    (bytes(16), "eu-west-1"),
    (b"\xff" * 16, "us-east-1"),
    (bytes.fromhex("1234abcd12ab34cd56ef1234567890ab"), "us-west-2"),
    (bytes.fromhex("1234abcd12ab34cd56ef1234567890ab"), "ap-southeast-2"),
    (None, "us-east-1"),
    (None, "cn-north-1"),
    (None, "us-gov-west-1"),
    (None, ""),
    (None, "r\u00e9gion-\u65e5\u672c"),  # not a region name AWS uses: pins the UTF-8 step
]


def encode_context(context: dict[str, str] | None) -> bytes:
    """``count (2) | (key len (2) | key | value len (2) | value)*``, pairs
    sorted by the key's UTF-8 bytes; no context is the empty context."""
    pairs = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in (context or {}).items())
    out = len(pairs).to_bytes(2, "big")
    for key, value in pairs:
        out += len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value
    return out


def message_key(material: bytes, salt: bytes) -> bytes:
    """SP 800-108 counter mode, HMAC-SHA256, 32-bit counter before
    ``label | 0x00 | salt | L (32 bits)``, 256 bits out."""
    kdf = KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=32,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=MESSAGE_LABEL,
        context=salt,
        fixed=None,
    )
    return kdf.derive(material)


def _blob_vector(
    size: int, mrk: bytes | None, version: int, context: dict[str, str] | None
) -> dict[str, Any]:
    material = os.urandom(32)
    mrk = os.urandom(16) if mrk is None else mrk
    plaintext = os.urandom(size)
    salt, nonce = os.urandom(16), os.urandom(12)
    context_bytes = encode_context(context)
    header = bytes([FORMAT_V2]) + mrk + version.to_bytes(4, "big")
    aad = header + salt + nonce + context_bytes
    sealed = AESGCM(message_key(material, salt)).encrypt(nonce, plaintext, aad)
    return {
        "material": material.hex(),
        "key_id": "mrk-" + mrk.hex(),
        "version": version,
        "context": context,
        "context_hex": context_bytes.hex(),
        "plaintext": plaintext.hex(),
        "blob": (header + salt + nonce + sealed).hex(),
    }


def _record_vector(mrk: bytes | None, region: str) -> dict[str, Any]:
    mrk = os.urandom(16) if mrk is None else mrk
    digest = hashes.Hash(hashes.SHA256())
    digest.update(RECORD_LABEL + mrk + region.encode("utf-8"))
    raw = bytearray(digest.finalize()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return {
        "key_id": "mrk-" + mrk.hex(),
        "region": region,
        "record_id": str(uuid.UUID(bytes=bytes(raw))),
    }


def main() -> int:
    for path in (BLOB_FILE, RECORD_FILE):
        if path.exists():
            print(f"{path} exists; golden vectors are never regenerated", file=sys.stderr)
            return 1
    blobs = [_blob_vector(*case) for case in BLOB_CASES]
    records = [_record_vector(*case) for case in RECORD_CASES]
    # ensure_ascii keeps the files pure ASCII, so no editor can renormalise them.
    BLOB_FILE.write_text(json.dumps(blobs, indent=1, ensure_ascii=True) + "\n")
    RECORD_FILE.write_text(json.dumps(records, indent=1, ensure_ascii=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
