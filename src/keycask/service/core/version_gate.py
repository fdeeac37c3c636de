"""The one check every door's Encrypt and Decrypt make of a key version's
own state (``crypto.seal_for``, ``crypto._open``): a state the Cloud KMS
door set (``service/core/gcp_versions.py``) holds for every door."""

from __future__ import annotations

from keycask.errors import KMSInvalidStateException
from keycask.keys.keystore import KeyStore
from keycask.keys.model import Key
from keycask.service.core.gcp_requests import ENABLED, version_state


async def require_version_enabled(keys: KeyStore, key: Key, version: int) -> None:
    """KMSInvalidStateException unless the key's version ``version`` is
    enabled in its Cloud KMS state (``gcp/key/<key id>``): a version
    disabled, scheduled for destruction or destroyed through the Cloud KMS
    door neither seals nor opens anything, through any door."""
    stored = await keys.gcp_key(key.key_id)
    if not stored.revision:
        return
    state = version_state(stored.value, version)
    if state != ENABLED:
        raise KMSInvalidStateException(
            f"{key.arn} version {version} is {state} (its Cloud KMS state): it neither "
            "encrypts nor decrypts until it is enabled again"
        )
