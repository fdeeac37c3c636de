"""The barrier's keyring: numbered terms of AES-256 keys, itself sealed under
the root key that the seal guards.

Stored at ``core/keyring`` as ``0x01 | nonce | AES-GCM(json)`` with the path as
AAD, like every other value, but under the root key instead of a term key.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from keycask.crypto import AuthenticationFailed, KeyMaterial, open_sealed, seal
from keycask.errors import SealError

KEYRING_PATH = "core/keyring"
_FORMAT = 0x01
_AAD = b"\x01keycask keyring|" + KEYRING_PATH.encode()


@dataclass(frozen=True, slots=True)
class Keyring:
    active_term: int
    terms: dict[int, KeyMaterial]

    @classmethod
    def new(cls) -> Keyring:
        return cls(active_term=1, terms={1: KeyMaterial.generate(32)})

    def active(self) -> tuple[int, KeyMaterial]:
        return self.active_term, self.terms[self.active_term]

    def seal_with(self, root: KeyMaterial) -> bytes:
        doc = {
            "active": self.active_term,
            "terms": {str(t): k.reveal().hex() for t, k in self.terms.items()},
        }
        return bytes([_FORMAT]) + seal(root, orjson.dumps(doc), aad=_AAD)

    @classmethod
    def open_with(cls, root: KeyMaterial, blob: bytes) -> Keyring:
        if not blob or blob[0] != _FORMAT:
            raise SealError("the stored keyring has an unknown format")
        try:
            doc = orjson.loads(open_sealed(root, blob[1:], aad=_AAD))
        except AuthenticationFailed:
            raise SealError(
                "the root key does not open the keyring: wrong seal, or the store was tampered with"
            ) from None
        terms = {int(t): KeyMaterial(bytes.fromhex(k)) for t, k in doc["terms"].items()}
        return cls(active_term=int(doc["active"]), terms=terms)
