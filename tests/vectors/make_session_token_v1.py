"""One-off generator of the session token v1 golden vectors, kept for the
record.

It was run once to write ``session_token_v1.json``; that file is never
edited or regenerated (every token issued must open until it expires, and
the token keys in a store outlive any one release). It builds the bytes from
the documented format with the standard library's HMAC and `cryptography`'s
AES-GCM directly, not with keycask's code:

- token keys at ``sts/token-keys`` (behind the barrier): a JSON list of
  ``{"id": 8 bytes hex, "created": epoch seconds, "key": 32 bytes base64}``;
- token: base64 (standard, padded) of
  ``0x01 | key id (8) | salt (16) | nonce (12) | AES-256-GCM(claims) | tag (16)``,
  AAD = ``0x01 | key id | salt | nonce``;
- the AES key: SP 800-108 counter-mode HMAC-SHA256, one block:
  ``HMAC(token key, 00000001 | "keycask message key v1" | 00 | salt | 00000100)``;
- claims: JSON with exactly the members a, s, acct, role, rid, name, iat,
  exp, pol, tags ([[k, v], ...]), ttk, sid, idp, src.

The script refuses to overwrite an existing file.

    .venv/bin/python tests/vectors/make_session_token_v1.py
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OUT = Path(__file__).resolve().parent / "session_token_v1.json"


def message_key(key: bytes, salt: bytes) -> bytes:
    fixed = b"keycask message key v1" + b"\x00" + salt + (256).to_bytes(4, "big")
    return hmac.digest(key, (1).to_bytes(4, "big") + fixed, "sha256")


def token(key_id: bytes, key: bytes, claims: bytes) -> dict[str, Any]:
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = b"\x01" + key_id
    sealed = AESGCM(message_key(key, salt)).encrypt(nonce, claims, header + salt + nonce)
    return {
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "claims": claims.decode("utf-8"),
        "token": base64.b64encode(header + salt + nonce + sealed).decode("ascii"),
    }


def main() -> None:
    if OUT.exists():
        sys.exit(f"{OUT} exists: golden vectors are never regenerated")
    keys = [
        {
            "id": secrets.token_bytes(8).hex(),
            "created": 1796212800.0,
            "key": secrets.token_bytes(32),
        },
        {
            "id": secrets.token_bytes(8).hex(),
            "created": 1796299200.5,
            "key": secrets.token_bytes(32),
        },
    ]
    full = {
        "a": "ASIAKEYCASKEXAMPLE23",
        "s": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "acct": "111122223333",
        "role": "deploy",
        "rid": "AROAKEYCASKEXAMPLE234",
        "name": "ci-run-42",
        "iat": 1796299300,
        "exp": 1796302900,
        "pol": '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}',  # noqa: E501
        "tags": [["team", "blue"], ["Project", "caf\u00e9 \U0001f511"]],
        "ttk": ["team"],
        "sid": "alice@example.com",
        "idp": "arn:aws:iam::111122223333:oidc-provider/token.actions.example.com",
        "src": "arn:aws:iam::111122223333:user/alice",
    }
    bare = {
        "a": "ASIAKEYCASKEXAMPLE77",
        "s": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        "acct": "444455556666",
        "role": "app",
        "rid": "AROAKEYCASKEXAMPLE777",
        "name": "s",
        "iat": 1796212900,
        "exp": 1796213800,
        "pol": None,
        "tags": [],
        "ttk": [],
        "sid": None,
        "idp": None,
        "src": None,
    }
    vectors = {
        "token_keys": [
            {
                "id": k["id"],
                "created": k["created"],
                "key": base64.b64encode(k["key"]).decode("ascii"),  # type: ignore[arg-type]
            }
            for k in keys
        ],
        "tokens": [
            {
                "name": "every claim",
                "key_id": keys[1]["id"],
                **token(
                    bytes.fromhex(str(keys[1]["id"])),
                    keys[1]["key"],  # type: ignore[arg-type]
                    json.dumps(full, separators=(",", ":"), ensure_ascii=False).encode(),
                ),
            },
            {
                "name": "no optional claim, the older key",
                "key_id": keys[0]["id"],
                **token(
                    bytes.fromhex(str(keys[0]["id"])),
                    keys[0]["key"],  # type: ignore[arg-type]
                    json.dumps(bare, separators=(",", ":")).encode(),
                ),
            },
        ],
    }
    OUT.write_text(json.dumps(vectors, indent=1, ensure_ascii=True) + "\n", encoding="ascii")


if __name__ == "__main__":
    main()
