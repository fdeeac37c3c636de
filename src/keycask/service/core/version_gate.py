"""The one check every door's Encrypt and Decrypt make of a key version's
own state (``crypto.seal_for``, ``crypto._open``): a state the Cloud KMS
door set (``service/core/gcp_versions.py``) holds for every door."""

from __future__ import annotations

from keycask.errors import KMSInvalidStateException
from keycask.keys.keystore import Stored
from keycask.keys.model import Key
from keycask.service.core.gcp_requests import ENABLED, version_state


def check_version_state(key: Key, version: int, stored: Stored[bytes]) -> None:
    """KMSInvalidStateException unless the key's version ``version`` is
    enabled in its Cloud KMS state (``stored``: the key's ``gcp/key/<key
    id>`` document, ``KeyStore.gcp_key``): a version disabled, scheduled for
    destruction or destroyed through the Cloud KMS door neither seals nor
    opens anything, through any door. The callers read the document
    themselves (one coroutine fewer per Encrypt and Decrypt); most keys
    have none, and that costs one cached lookup."""
    if not stored.revision:
        return
    state = version_state(stored.value, version)
    if state != ENABLED:
        raise KMSInvalidStateException(
            f"{key.arn} version {version} is {state} (its Cloud KMS state): it neither "
            "encrypts nor decrypts until it is enabled again"
        )
