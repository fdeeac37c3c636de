"""Keys of custom key stores in use: whether a key is available now, its
DescribeKey metadata, and AES-GCM inside its store's token (ciphertext blob
v3, ``keys/wire.py``).

A key of an AWS_CLOUDHSM store is usable while its store is CONNECTED (what
an operator last asked for) and its token answers; otherwise DescribeKey
shows it ``Unavailable`` and every cryptographic call answers
KMSInvalidStateException. Nothing else changes: other keys, the key's
metadata and management calls are unaffected, and the key comes back as
soon as the store is connected and the token answers again.
"""

from __future__ import annotations

import hashlib
import logging

from keycask.errors import (
    InvalidCiphertextException,
    KMSInternalException,
    KMSInvalidStateException,
    ThrottlingException,
)
from keycask.hsm.token import (
    DecryptFailed,
    HsmError,
    ObjectMissing,
    Token,
    TokenBusy,
    TokenUnavailable,
)
from keycask.keys.custom_stores import CONNECTED, CustomKeyStore
from keycask.keys.model import Key
from keycask.keys.wire import hsm_blob_header, parse_hsm_blob
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps

log = logging.getLogger("keycask")

_MATERIAL_ID_LABEL = b"keycask hsm key material id v1\0"


def material_id(key_id: bytes, object_id: str) -> str:
    """The KeyMaterialId of a key held in a token: keycask never sees the
    material, so it names the key and its token object instead."""
    return hashlib.sha256(_MATERIAL_ID_LABEL + key_id + bytes.fromhex(object_id)).hexdigest()


async def store_of(deps: Deps, key: Key) -> CustomKeyStore | None:
    if key.custom_key_store_id is None:
        return None
    stored = await deps.keys.custom_store(key.account, key.region, key.custom_key_store_id)
    return None if stored is None else stored.value


async def store_available(deps: Deps, store: CustomKeyStore) -> bool:
    """The store is CONNECTED and (an AWS_CLOUDHSM store) its token answers."""
    if store.state != CONNECTED or store.cluster_id is None:
        return False
    token = deps.hsm.get(store.cluster_id)
    return token is not None and await token.present()


async def available(deps: Deps, key: Key) -> bool:
    """Whether the key can be used now as far as its store goes: always for a
    key of no custom key store; for one of an AWS_CLOUDHSM store, while the
    store is connected and its token answers (DescribeKey's Unavailable
    otherwise)."""
    if key.custom_key_store_id is None:
        return True
    store = await store_of(deps, key)
    return store is not None and await store_available(deps, store)


async def _token_for(deps: Deps, key: Key) -> Token:
    store = await store_of(deps, key)
    if store is None or store.state != CONNECTED or store.cluster_id is None:
        raise KMSInvalidStateException(
            f"{key.arn} is unavailable: its custom key store "
            f"{key.custom_key_store_id} is not connected."
        )
    token = deps.hsm.get(store.cluster_id)
    if token is None:
        raise KMSInvalidStateException(
            f"{key.arn} is unavailable: this keycask is not configured with the HSM "
            f"{store.cluster_id} of its custom key store."
        )
    return token


def _unavailable(key: Key, error: HsmError) -> Exception:
    if isinstance(error, TokenBusy):
        return ThrottlingException(f"Too many requests wait for the HSM of {key.arn}; retry later.")
    if isinstance(error, TokenUnavailable):
        return KMSInvalidStateException(f"{key.arn} is unavailable: its HSM does not answer.")
    if isinstance(error, ObjectMissing):
        return KMSInvalidStateException(
            f"{key.arn} is unavailable: its key material is not in its HSM."
        )
    log.warning("HSM call for %s failed: %s", key.arn, error)
    return KMSInternalException("The HSM call failed.")


async def seal(deps: Deps, call: Call, key: Key, plaintext: bytes, context: bytes) -> bytes:
    """A v3 blob: AES-GCM inside the key's token."""
    assert key.hsm_object is not None
    token = await _token_for(deps, key)
    header = hsm_blob_header(key.key_id, bytes.fromhex(key.hsm_object))
    try:
        iv, sealed = await token.encrypt(key.hsm_object, plaintext, header + context)
    except HsmError as error:
        raise _unavailable(key, error) from None
    call.used_keys = (*call.used_keys, key.key_id)
    return header + iv + sealed


async def open_blob(deps: Deps, call: Call, key: Key, blob: bytes, context: bytes) -> bytes:
    """The plaintext of a v3 blob of ``key`` (already authorized)."""
    _, object_id, iv, sealed = parse_hsm_blob(blob)
    if key.hsm_object is None or key.hsm_object != object_id.hex():
        raise InvalidCiphertextException("")
    token = await _token_for(deps, key)
    header = hsm_blob_header(key.key_id, object_id)
    try:
        plaintext = await token.decrypt(key.hsm_object, iv, sealed, header + context)
    except DecryptFailed:
        raise InvalidCiphertextException("") from None
    except HsmError as error:
        raise _unavailable(key, error) from None
    call.used_keys = (*call.used_keys, key.key_id)
    return plaintext


async def destroy(deps: Deps, key: Key) -> str:
    """Destroy a key's token object, at the end of its deletion window (or
    of its Cloud KMS version's destroy schedule); what happened, for the
    audit record. A token that cannot be reached keeps the object (as AWS
    leaves key material in a disconnected cluster): the key is deleted (the
    version DESTROYED) all the same, and the log names the object for the
    operator to destroy by hand."""
    if key.hsm_object is None:
        return ""
    store = await store_of(deps, key)
    token = None if store is None or store.cluster_id is None else deps.hsm.get(store.cluster_id)
    if token is not None:
        try:
            if await token.destroy(key.hsm_object):
                return f"; its HSM key (CKA_ID {key.hsm_object}) destroyed"
            return f"; its HSM key (CKA_ID {key.hsm_object}) was already gone"
        except HsmError as error:
            reason = str(error)
    else:
        reason = "the HSM is not configured"
    log.warning(
        "the HSM key of %s (CKA_ID %s, label keycask-%s) is no longer used but could not be "
        "destroyed (%s): destroy it in the token by hand",
        key.arn,
        key.hsm_object,
        key.hsm_object,
        reason,
    )
    return f"; its HSM key (CKA_ID {key.hsm_object}) could not be destroyed ({reason})"
