"""One-off generator of the v1 golden vectors, kept for the record.

It was run once to write ``blob_v1.json`` and ``context_v1.json``; those files
are never edited or regenerated. A new format gets a new generator and new
files. The script refuses to overwrite existing files.

    .venv/bin/python tests/vectors/make_v1.py
"""

from __future__ import annotations

import json
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

from keycask.crypto import KeyMaterial
from keycask.keys.wire import BlobHeader, encode_context, seal_blob

HERE = Path(__file__).resolve().parent
BLOB_FILE = HERE / "blob_v1.json"
CONTEXT_FILE = HERE / "context_v1.json"

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

# (plaintext size, key id, version, context); ``None`` means "no context".
BLOB_CASES: list[tuple[int, uuid.UUID | None, int, dict[str, str] | None]] = [
    (1, None, 1, {}),
    (1, None, 0xFFFFFFFF, {"purpose": "test"}),
    (32, None, 1, {"aws:ebs:id": "vol-0123456789abcdef0"}),
    (32, uuid.UUID(int=0), 0, None),
    (32, uuid.UUID(int=(1 << 128) - 1), 7, {"a": "b"}),
    (32, None, 2, {"ab": ""}),
    (4096, None, 3, {}),
    (4096, None, 1, UNICODE_CONTEXT),
    (17, None, 12, {"\uffff": "x", "\U00010000": "y"}),
    (64, None, 1, {"k1": "v1", "k2": "v2", "k3": "v3", "department": "10jqk"}),
    (255, None, 65536, {"": ""}),
    (1000, None, 42, {"long": "v" * 1000}),
]

CONTEXT_CASES: list[dict[str, str]] = [
    {},
    {"": ""},
    {"a": "b"},
    {"ab": ""},
    {"a": "", "b": ""},
    {"purpose": "test"},
    {"k2": "v2", "k1": "v1", "k3": "v3"},
    {"\uffff": "x", "\U00010000": "y"},
    {"\U00010000": "only astral"},
    {"\uffff": "only BMP max"},
    {"\ue000": "private use", "\U0001f600": "emoji"},
    {"Zebra": "1", "apple": "2", "_": "3", "0": "4"},
    {"\u00e9": "precomposed", "e\u0301": "decomposed"},
    UNICODE_CONTEXT,
    {"long": "v" * 300},
]


def _blob_vector(
    size: int, key_id: uuid.UUID | None, version: int, context: dict[str, str] | None
) -> dict[str, Any]:
    material = KeyMaterial.generate(32)
    header = BlobHeader(key_id or uuid.uuid4(), version)
    plaintext = secrets.token_bytes(size)
    context_bytes = encode_context(context)
    blob = seal_blob(material, header, plaintext, context_bytes)
    return {
        "material": material.reveal().hex(),
        "key_id": str(header.key_id),
        "version": header.version,
        "context": context,
        "context_hex": context_bytes.hex(),
        "plaintext": plaintext.hex(),
        "blob": blob.hex(),
    }


def main() -> int:
    for path in (BLOB_FILE, CONTEXT_FILE):
        if path.exists():
            print(f"{path} exists; golden vectors are never regenerated", file=sys.stderr)
            return 1
    blobs = [_blob_vector(*case) for case in BLOB_CASES]
    contexts = [{"context": c, "hex": encode_context(c).hex()} for c in CONTEXT_CASES]
    # ensure_ascii keeps the files pure ASCII, so no editor can renormalise them.
    BLOB_FILE.write_text(json.dumps(blobs, indent=1, ensure_ascii=True) + "\n")
    CONTEXT_FILE.write_text(json.dumps(contexts, indent=1, ensure_ascii=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
