"""The barrier's keyring: numbered terms of AES-256 keys, itself sealed under
the root key that the seal guards.

Stored at ``core/keyring`` as ``0x01 | nonce | AES-GCM(json)`` with the path as
AAD, like every other value, but under the root key instead of a term key.

Besides the keys, the keyring records how many AES-GCM seals each term has
*reserved*: every process that writes takes blocks of seals by a conditional
update of the keyring before it uses them, so the sum over processes and
restarts never exceeds what is recorded here (a crash forfeits the rest of a
block, never reuses it). That count is what keeps a term under the random
nonce bound of AES-GCM. ``rewrite`` says values under older terms may still
exist and the background rewrite has work to do.

``epoch`` grows by one with every write of the keyring (reservations,
rotations, rekeys, and the barrier's own advance after commits that change
state). Sealed under the root key, it cannot be forged; each node keeps the
highest it saw outside the store (``storage/watermark.py``) and refuses a
store whose keyring is older: a whole-store rollback.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

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
    # Seals reserved per term (see the module docstring).
    reserved: dict[int, int] = field(default_factory=dict)
    rewrite: bool = False
    epoch: int = 0

    @classmethod
    def new(cls) -> Keyring:
        return cls(active_term=1, terms={1: KeyMaterial.generate(32)}, reserved={1: 0})

    def active(self) -> tuple[int, KeyMaterial]:
        return self.active_term, self.terms[self.active_term]

    @property
    def active_reserved(self) -> int:
        return self.reserved.get(self.active_term, 0)

    def reserve(self, count: int) -> Keyring:
        """This keyring with ``count`` more seals reserved on the active term."""
        reserved = {**self.reserved, self.active_term: self.active_reserved + count}
        return dataclasses.replace(self, reserved=reserved)

    def advanced(self) -> Keyring:
        """This keyring as its next write stores it: one epoch later."""
        return dataclasses.replace(self, epoch=self.epoch + 1)

    def rotated(self) -> Keyring:
        """A new active term with a fresh key; the old terms stay, for reading
        values not yet rewritten (and backups taken before the rotation)."""
        term = max(self.terms) + 1
        return dataclasses.replace(
            self,
            active_term=term,
            terms={**self.terms, term: KeyMaterial.generate(32)},
            reserved={**self.reserved, term: 0},
            rewrite=True,
        )

    def retired(self, terms: frozenset[int]) -> Keyring:
        """The rewrite done: the flag cleared and the keys of ``terms`` (old
        terms no stored value uses any more) dropped. The active term always
        stays, and term numbers are never reused (a new one is the highest
        plus one, and the highest is the active term)."""
        gone = terms - {self.active_term}
        return dataclasses.replace(
            self,
            terms={t: k for t, k in self.terms.items() if t not in gone},
            reserved={t: n for t, n in self.reserved.items() if t not in gone},
            rewrite=False,
        )

    def seal_with(self, root: KeyMaterial) -> bytes:
        doc = {
            "active": self.active_term,
            "terms": {str(t): k.reveal().hex() for t, k in self.terms.items()},
            "reserved": {str(t): n for t, n in self.reserved.items()},
            "rewrite": self.rewrite,
            "epoch": self.epoch,
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
        # Keyrings written before seals were counted have no "reserved": they
        # start at zero, which undercounts only what an old version sealed.
        reserved = {int(t): int(n) for t, n in doc.get("reserved", {}).items()}
        return cls(
            active_term=int(doc["active"]),
            terms=terms,
            reserved=reserved,
            rewrite=bool(doc.get("rewrite", False)),
            # Keyrings written before epochs were kept start at 0.
            epoch=int(doc.get("epoch", 0)),
        )
