"""Keys of external key stores (EXTERNAL_KEY_STORE): keycask as the client of
an XKS proxy (``keycask.xksclient``), double encryption (blob v4,
``keys/wire.py``), and whether a store's proxy answers now.

Double encryption, as AWS KMS does it: keycask's own material for the key
(generated at CreateKey, kept behind the barrier like any key's) seals the
plaintext first; the proxy's external key then encrypts that inner
ciphertext, with AAD naming the blob header, the key's ARN and the
encryption context's digest. Decrypt asks the proxy first, then opens the
inner layer. Neither keycask's store nor the proxy's key opens a blob alone.

Availability. A store's proxy is *healthy* or *failing* (with AWS's
ConnectionErrorCode), per process, from the last thing it did: every call
keycask makes to it (crypto or GetHealthStatus) records its outcome. A
healthy verdict is trusted for ``HEALTHY_FOR`` seconds and a failing one for
``RETRY_AFTER``; once older, the next look at the store (DescribeKey,
DescribeCustomKeyStores, a cryptographic call) asks GetHealthStatus again
first. While failing, the store's keys are ``Unavailable`` in DescribeKey and
its entry FAILED with the code in DescribeCustomKeyStores; they come back by
themselves as soon as the proxy answers (no reconnection). Cryptographic calls
answer KMSInvalidStateException for every failure of the proxy or its
configuration, as AWS KMS does (its XKS troubleshooting guide).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from keycask.errors import (
    CustomKeyStoreInvalidStateException,
    DependencyTimeoutException,
    InvalidCiphertextException,
    KMSInternalException,
    KMSInvalidStateException,
    ThrottlingException,
    XksKeyInvalidConfigurationException,
    XksKeyNotFoundException,
)
from keycask.keys.custom_stores import CONNECTED, CustomKeyStore
from keycask.keys.model import Key
from keycask.keys.wire import (
    XksBlob,
    open_xks_inner,
    parse_xks_blob,
    seal_xks_inner,
    xks_aad,
    xks_blob_header,
)
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.xksclient import (
    Proxy,
    ProxyRefused,
    Sealed,
    TimedOut,
    XksProxyBusy,
    XksProxyError,
)

HEALTHY_FOR = 5.0
RETRY_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class _Verdict:
    code: str | None  # None: healthy
    at: float


# By store id, this process's view (each worker process has its own).
_verdicts: dict[str, _Verdict] = {}


def proxy_of(store: CustomKeyStore) -> Proxy:
    return Proxy(
        endpoint=store.xks_uri_endpoint or "",
        path=store.xks_uri_path or "",
        access_key_id=store.xks_access_key_id or "",
        secret=store.xks_secret or "",
        region=store.region,
    )


def request_metadata(
    call: Call, key_arn: str | None = None, *, principal: bool = True
) -> dict[str, str]:
    """requestMetadata as AWS KMS fills it: the caller's ARN, the KMS key's
    ARN (once there is one), the operation and keycask's request id; never
    kmsViaService (keycask has no integrated services). GetHealthStatus's
    has the operation and the request id only, as the specification's."""
    metadata = {"kmsRequestId": call.request_id, "kmsOperation": call.operation or "Unknown"}
    if principal and call.caller is not None:
        metadata["awsPrincipalArn"] = call.caller.arn
    if key_arn is not None:
        metadata["kmsKeyArn"] = key_arn
    return metadata


def note(store_id: str, code: str | None) -> None:
    """Record what the store's proxy just did (None: it answered)."""
    _verdicts[store_id] = _Verdict(code, time.monotonic())


async def probe(deps: Deps, call: Call, store: CustomKeyStore) -> str | None:
    """GetHealthStatus now: None, or the ConnectionErrorCode of its failure."""
    try:
        await deps.xks.health(proxy_of(store), request_metadata(call, principal=False))
    except XksProxyBusy:
        return None  # nothing was asked: no verdict on the proxy
    except XksProxyError as error:
        note(store.store_id, error.code)
        return error.code
    note(store.store_id, None)
    return None


async def failure(deps: Deps, call: Call, store: CustomKeyStore) -> str | None:
    """Why a CONNECTED store's keys cannot be used now (a code), or None."""
    verdict = _verdicts.get(store.store_id)
    if verdict is not None:
        age = time.monotonic() - verdict.at
        if age < (HEALTHY_FOR if verdict.code is None else RETRY_AFTER):
            return verdict.code
    return await probe(deps, call, store)


async def _store_for(deps: Deps, call: Call, key: Key) -> CustomKeyStore:
    stored = None
    if key.custom_key_store_id is not None:
        stored = await deps.keys.custom_store(key.account, key.region, key.custom_key_store_id)
    if stored is None or stored.value.state != CONNECTED:
        raise KMSInvalidStateException(
            f"{key.arn} is unavailable: its external key store "
            f"{key.custom_key_store_id} is not connected."
        )
    store = stored.value
    code = await failure(deps, call, store)
    if code is not None:
        raise KMSInvalidStateException(
            f"{key.arn} is unavailable: the XKS proxy of its external key store "
            f"{store.store_id} does not answer ({code})."
        )
    return store


def _unavailable(key: Key, store: CustomKeyStore, error: XksProxyError) -> Exception:
    if isinstance(error, XksProxyBusy):
        return ThrottlingException(
            f"Too many requests wait for XKS proxies; retry {key.arn} later."
        )
    if isinstance(error, ProxyRefused):
        note(store.store_id, None)  # it answered
        if error.error_name == "ThrottlingException":
            return ThrottlingException(f"The XKS proxy of {key.arn} is busy; retry later.")
        return KMSInvalidStateException(
            f"{key.arn} is unavailable: the XKS proxy of its external key store answered "
            f"{error.error_name} for its external key {key.xks_key_id}."
        )
    note(store.store_id, error.code)
    return KMSInvalidStateException(
        f"{key.arn} is unavailable: the XKS proxy of its external key store "
        f"{store.store_id} failed ({error.code})."
    )


async def seal(deps: Deps, call: Call, key: Key, plaintext: bytes, context: bytes) -> bytes:
    """A v4 blob: keycask's material, then the external key."""
    store = await _store_for(deps, call, key)
    material = await deps.keys.material(key.key_id, key.current_version)
    if material is None or key.xks_key_id is None:
        raise KMSInternalException("key material is missing")
    header = xks_blob_header(key.key_id, key.current_version)
    inner = seal_xks_inner(material, header, plaintext, context)
    try:
        sealed = await deps.xks.encrypt(
            proxy_of(store),
            key.xks_key_id,
            request_metadata(call, key.arn),
            inner,
            xks_aad(header, key.arn, context),
        )
    except XksProxyError as error:
        raise _unavailable(key, store, error) from None
    note(store.store_id, None)
    call.used_keys = (*call.used_keys, key.key_id)
    blob = XksBlob(key.key_id, key.current_version, sealed.metadata, sealed.iv, sealed.tag, b"")
    return blob.encode() + sealed.ciphertext


async def open_blob(deps: Deps, call: Call, key: Key, blob: bytes, context: bytes) -> bytes:
    """The plaintext of a v4 blob of ``key`` (already authorized): the
    external key first, then keycask's material."""
    parts = parse_xks_blob(blob)
    if key.xks_key_id is None:
        raise InvalidCiphertextException("")
    store = await _store_for(deps, call, key)
    material = await deps.keys.material(key.key_id, parts.version)
    if material is None:
        raise InvalidCiphertextException("")
    sealed = Sealed(parts.ciphertext, parts.iv, parts.tag, parts.metadata)
    try:
        inner = await deps.xks.decrypt(
            proxy_of(store),
            key.xks_key_id,
            request_metadata(call, key.arn),
            sealed,
            xks_aad(parts.header, key.arn, context),
        )
    except ProxyRefused as error:
        if error.error_name == "InvalidCiphertextException":
            note(store.store_id, None)
            raise InvalidCiphertextException("") from None
        raise _unavailable(key, store, error) from None
    except XksProxyError as error:
        raise _unavailable(key, store, error) from None
    note(store.store_id, None)
    plaintext = open_xks_inner(material, parts.header, inner, context)
    call.used_keys = (*call.used_keys, key.key_id)
    return plaintext


async def check_external_key(
    deps: Deps, call: Call, store: CustomKeyStore, xks_key_id: str
) -> None:
    """CreateKey's check of the external key, as AWS KMS makes it: the
    proxy's GetKeyMetadata must say AES_256, ENCRYPT and DECRYPT, ENABLED."""
    code = await failure(deps, call, store)
    if code is not None:
        raise CustomKeyStoreInvalidStateException(
            f"The XKS proxy of external key store {store.store_id} does not answer ({code})."
        )
    try:
        spec, usage, status = await deps.xks.key_metadata(
            proxy_of(store), xks_key_id, request_metadata(call)
        )
    except ProxyRefused as error:
        note(store.store_id, None)
        if error.error_name == "KeyNotFoundException":
            raise XksKeyNotFoundException(
                f"The XKS proxy of {store.store_id} has no external key {xks_key_id}."
            ) from None
        raise XksKeyInvalidConfigurationException(
            f"The XKS proxy of {store.store_id} answered {error.error_name} for the "
            f"external key {xks_key_id}."
        ) from None
    except TimedOut:
        note(store.store_id, "XKS_PROXY_TIMED_OUT")
        raise DependencyTimeoutException(
            f"The XKS proxy of {store.store_id} did not answer in time."
        ) from None
    except XksProxyError as error:
        if not isinstance(error, XksProxyBusy):
            note(store.store_id, error.code)
        raise CustomKeyStoreInvalidStateException(
            f"The XKS proxy of external key store {store.store_id} failed ({error.code})."
        ) from None
    note(store.store_id, None)
    problems = []
    if spec != "AES_256":
        problems.append(f"its keySpec is {_shown(spec)}, not AES_256")
    if "ENCRYPT" not in usage or "DECRYPT" not in usage:
        problems.append("its keyUsage lacks ENCRYPT or DECRYPT")
    if status != "ENABLED":
        problems.append(f"its keyStatus is {_shown(status)}, not ENABLED")
    if problems:
        raise XksKeyInvalidConfigurationException(
            f"The external key {xks_key_id} cannot back a KMS key: " + "; ".join(problems) + "."
        )


def _shown(value: str) -> str:
    """A proxy's word, as keycask's error messages may repeat it."""
    return "".join(c for c in value[:32] if c.isascii() and (c.isalnum() or c in "_-")) or "?"
