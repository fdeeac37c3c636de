"""What every door's Encrypt and Decrypt ask of a key version's Cloud KMS
settings (``crypto.seal_for``, ``crypto._open``): its own state, and which
version seals. Both are set through the Cloud KMS door
(``service/core/gcp_versions.py``) and hold for every door.

The primary: a key's newest version seals, unless updatePrimaryVersion
chose an older one (``KeySettings.primary`` in the key's ``gcp/key/<key
id>`` document). Every rotation but the Cloud KMS door's versions.create
clears the choice in its own commit (``stage_primary_cleared``), so a key
rotated through the AWS door, by its schedule or by Vault's rotate
encrypts under its new version, as those doors' users expect.
"""

from __future__ import annotations

import uuid

import orjson

from keycask.errors import KMSInvalidStateException
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Key
from keycask.ports import Write
from keycask.service.core.gcp_requests import ENABLED, chosen_primary, version_state
from keycask.service.core.transit_requests import Settings


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


async def check_transit_floors(keys: KeyStore, key: Key, version: int) -> None:
    """KMSInvalidStateException when ``version`` is below the key's Vault
    Transit floors (set through that door on a key it shares): below
    min_decryption_version no door opens what it seals (and its material
    may be trimmed), and below min_encryption_version Vault seals nothing.
    A chosen primary so placed is refused, never passed over: encryption
    stops, as for a disabled primary, until another is chosen."""
    stored = await keys.transit_settings(key.key_id)
    if not stored.revision:
        return
    settings = Settings.from_doc(stored.value)
    if version < settings.min_decryption_version or version < settings.min_encryption_version:
        raise KMSInvalidStateException(
            f"{key.arn} version {version}, its chosen primary, is below the key's "
            f"min_decryption_version ({settings.min_decryption_version}) or "
            f"min_encryption_version ({settings.min_encryption_version}) set through the "
            "Vault Transit door: it encrypts nothing"
        )


async def primary_version(keys: KeyStore, key: Key) -> int:
    """The version ``key``'s Encrypt seals under, as the AWS door shows it
    (DescribeKey's CurrentKeyMaterialId, ListKeyRotations' CURRENT): the
    primary chosen through the Cloud KMS door, else the newest."""
    stored = await keys.gcp_key(key.key_id)
    chosen = chosen_primary(stored.value) if stored.revision else None
    return key.current_version if chosen is None or chosen >= key.current_version else chosen


async def stage_primary_cleared(keys: KeyStore, key_id: uuid.UUID) -> list[Write]:
    """The write that clears a key's chosen primary (none when it has none),
    for a rotation's commit: the new version becomes the primary. The rest
    of the document stays as it is."""
    stored = await keys.gcp_key(key_id)
    if not stored.revision or chosen_primary(stored.value) is None:
        return []
    doc = orjson.loads(stored.value)
    del doc["primary"]
    return [keys.stage_gcp_key(key_id, orjson.dumps(doc), stored.revision)]
