"""The MAC that authenticates a backup file: keyed from the root key, so
only someone holding the seal's secret (or a server it unsealed) can make a
backup that restore accepts, and only they can check one."""

from __future__ import annotations

import hmac

from keycask.crypto.kdf import kbkdf_hmac_sha256
from keycask.crypto.material import KeyMaterial

_LABEL = b"keycask backup mac v1"
DIGEST_SIZE = 32


def backup_tag(root: KeyMaterial, digest: bytes) -> bytes:
    """HMAC-SHA256 over ``digest`` (the SHA-256 of the backup's bytes) with a
    key derived from ``root`` (SP 800-108), never the root itself."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError("a backup digest is 32 bytes")
    key = kbkdf_hmac_sha256(root.reveal(), label=_LABEL, context=b"", length=32)
    return hmac.digest(key, digest, "sha256")
