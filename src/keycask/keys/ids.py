"""Multi-Region key ids (issue 22): the shared ``mrk-`` id and the per-region
record id that keeps every regional copy on keycask's UUID-keyed paths.

A multi-Region key id is 16 random bytes, shown as ``mrk-`` followed by 32
lowercase hex digits, as AWS shows them. Every regional copy of the key is
stored under a *record id*: a UUID computed from the mrk id and the region, so
grants, usage, the schedule, import tokens, ``gone/`` and ``retiring/`` keep
working per region on the paths they use today. A record id is an internal
name: it is never shown to a caller and never resolves a key reference.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from keycask.crypto import random_bytes

MRK_PREFIX = "mrk-"
MRK_ID_SIZE = 16

# Exactly AWS's shape and nothing looser: one spelling per id, so an id can
# be used as a store path and compared as text. fullmatch, because "$" would
# let a trailing newline through.
_MRK_TEXT = re.compile(r"mrk-[0-9a-f]{32}", re.ASCII)

# Versioned, and NUL-terminated so no future label can be a prefix of this one.
_RECORD_LABEL = b"keycask mrk record v1\x00"


def new_mrk() -> bytes:
    """A fresh multi-Region key id, from the operating system's CSPRNG."""
    return random_bytes(MRK_ID_SIZE)


def format_mrk(raw: bytes) -> str:
    """``mrk-`` and the 32 lowercase hex digits of ``raw``."""
    _check_size(raw)
    return MRK_PREFIX + raw.hex()


def parse_mrk(text: str) -> bytes | None:
    """The 16 bytes ``text`` names, or None unless it is exactly
    ``mrk-[0-9a-f]{32}`` (upper case, other lengths and whitespace refused)."""
    if _MRK_TEXT.fullmatch(text) is None:
        return None
    return bytes.fromhex(text[len(MRK_PREFIX) :])


def record_id(mrk: bytes, region: str) -> uuid.UUID:
    """The id the copy of multi-Region key ``mrk`` in ``region`` is stored under.

    ``SHA-256(label | mrk | region as UTF-8)[:16]`` marked as an RFC 9562
    version-8 UUID. The mrk id has a fixed length, so label, id and region
    concatenate unambiguously. Single-Region key ids are random version-4
    UUIDs, with 4 in the same nibble, so a record id can never equal one of
    them. Python 3.11 has no uuid8 function: the version and variant bits are
    set by hand.
    """
    _check_size(mrk)
    digest = bytearray(hashlib.sha256(_RECORD_LABEL + mrk + region.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom
    digest[8] = (digest[8] & 0x3F) | 0x80  # variant 10xx: RFC 4122 / 9562
    return uuid.UUID(bytes=bytes(digest))


def is_record_id(key_id: uuid.UUID) -> bool:
    """Whether ``key_id`` has a record id's form (version 8): never the id of
    a single-Region key (version 4), so never a key a caller can name."""
    return key_id.version == 8


def _check_size(raw: bytes) -> None:
    # A programming error, never a caller's: request text reaches an mrk id
    # only through parse_mrk, which yields 16 bytes or None.
    if len(raw) != MRK_ID_SIZE:
        raise ValueError(f"a multi-Region key id is {MRK_ID_SIZE} bytes, not {len(raw)}")
