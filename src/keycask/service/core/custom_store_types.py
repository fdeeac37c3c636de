"""The types of custom key store, as a registry: what each type's fields
are, how a store of it is made, changed, connected, and described.

``AWS_CLOUDHSM``: the "cluster" is a PKCS#11 token this keycask is
configured with (``--hsm NAME=MODULE_PATH:TOKEN_LABEL``; ``CloudHsmClusterId``
is NAME). ``EXTERNAL_KEY_STORE``: an XKS proxy keycask calls
(``keycask.xksclient``; its keys are ``xks_keys.py``).

Decisions AWS's documents leave to an implementation (docs/hsm.md lists them):

- A token serves at most one store, whatever the account: two stores on one
  token would share its objects (CloudHsmClusterInUseException).
- TrustAnchorCertificate is required, as AWS requires it, and must be one PEM
  X.509 certificate (else IncorrectTrustAnchorException). A PKCS#11 token
  has no cluster certificate to compare it with: keycask keeps it and shows
  it, as AWS does, and trusts the token through its configured library.
- KeyStorePassword is not checked at creation (AWS does not check it there
  either); ConnectCustomKeyStore compares it, in constant time, with the PIN
  keycask is configured with, and a mismatch leaves the store FAILED with
  INVALID_CREDENTIALS, as AWS leaves a store whose kmsuser password is wrong.
- Connecting is synchronous here: a store is never seen CONNECTING or
  DISCONNECTING. A CONNECTED store whose token does not answer (removed, or
  its PIN no longer logs in) is shown FAILED with NETWORK_ERRORS while that
  lasts; it needs no reconnection once the token is back.
- UpdateCustomKeyStore may move a store to another token only if that token
  holds every key object of the store (AWS: a cluster that shares the
  original's backup history), else CloudHsmClusterNotRelatedException.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from keycask.crypto import is_pem_certificate
from keycask.errors import (
    CloudHsmClusterInUseException,
    CloudHsmClusterNotActiveException,
    CloudHsmClusterNotFoundException,
    CloudHsmClusterNotRelatedException,
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNotFoundException,
    IncorrectTrustAnchorException,
    KMSError,
    ThrottlingException,
    UnsupportedOperationException,
    ValidationException,
    XksProxyIncorrectAuthenticationCredentialException,
    XksProxyInvalidConfigurationException,
    XksProxyInvalidResponseException,
    XksProxyUriInUseException,
    XksProxyUriUnreachableException,
)
from keycask.hsm.token import HsmError, TokenBusy
from keycask.keys.custom_stores import (
    CONNECTED,
    DISCONNECTED,
    FAILED,
    STORE_ID,
    CustomKeyStore,
)
from keycask.keys.model import Key
from keycask.service.core import xks_keys
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.hsm_keys import store_available
from keycask.service.core.results import KeyMetadata, XksProxyConfiguration

# A request's fields for a store, by the snake_case name both requests use.
Fields = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreType:
    name: str
    # Create/Update request fields that belong to this type.
    fields: frozenset[str]
    # The record's type-specific fields, from CreateCustomKeyStore's request.
    create: Callable[[Deps, Call, Fields, CustomKeyStore], Awaitable[CustomKeyStore]]
    # The record after UpdateCustomKeyStore's type-specific fields.
    update: Callable[[Deps, Call, Fields, CustomKeyStore], Awaitable[CustomKeyStore]]
    # (state, error code) a ConnectCustomKeyStore reaches.
    connect: Callable[[Deps, Call, CustomKeyStore], Awaitable[tuple[str, str | None]]]
    # Why a CONNECTED store cannot serve its keys now (a ConnectionErrorCode),
    # or None when it can.
    failure: Callable[[Deps, Call, CustomKeyStore], Awaitable[str | None]]
    # DescribeCustomKeyStores' type-specific members of a store's entry.
    entry: Callable[[CustomKeyStore], Fields]
    # The Origin of the keys CreateKey makes in a store of this type.
    origin: str
    # Whether GenerateRandom takes bytes from a store of this type.
    random_source: bool


def _required(fields: Fields, names: tuple[str, ...], store_type: str) -> None:
    for name in names:
        if fields.get(name) is None:
            raise ValidationException(
                f"{_member(name)} is required for a custom key store of type {store_type}."
            )


def _member(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


# -- AWS_CLOUDHSM --

_HSM_FIELDS = frozenset({"cloud_hsm_cluster_id", "trust_anchor_certificate", "key_store_password"})


async def _claim_cluster(deps: Deps, call: Call, cluster_id: str, store_id: str) -> None:
    # A token serves one account (hsm/registry.py): to any other it is not
    # there, so none can claim it first or guess its PIN at Connect.
    if deps.hsm.get(cluster_id) is None or deps.hsm.account_of(cluster_id) != call.account:
        raise CloudHsmClusterNotFoundException(
            f"No HSM named {cluster_id} is configured on this keycask "
            "(keycask server --hsm NAME=MODULE_PATH:TOKEN_LABEL)."
        )
    for other in await deps.keys.every_custom_store():
        if other.value.cluster_id == cluster_id and other.value.store_id != store_id:
            raise CloudHsmClusterInUseException(
                f"The HSM {cluster_id} is already associated with a custom key store."
            )


async def _hsm_create(
    deps: Deps, call: Call, fields: Fields, store: CustomKeyStore
) -> CustomKeyStore:
    _required(
        fields,
        ("cloud_hsm_cluster_id", "trust_anchor_certificate", "key_store_password"),
        "AWS_CLOUDHSM",
    )
    cluster_id = fields["cloud_hsm_cluster_id"]
    await _claim_cluster(deps, call, cluster_id, store.store_id)
    anchor = fields["trust_anchor_certificate"]
    if not is_pem_certificate(anchor):
        raise IncorrectTrustAnchorException(
            "The TrustAnchorCertificate is not one PEM-encoded X.509 certificate."
        )
    return store.replace(
        cluster_id=cluster_id, trust_anchor=anchor, password=fields["key_store_password"]
    )


async def _hsm_update(
    deps: Deps, call: Call, fields: Fields, store: CustomKeyStore
) -> CustomKeyStore:
    new = store
    cluster_id = fields.get("cloud_hsm_cluster_id")
    if cluster_id is not None and cluster_id != store.cluster_id:
        await _claim_cluster(deps, call, cluster_id, store.store_id)
        token = deps.hsm.get(cluster_id)
        assert token is not None
        if not await token.present():
            raise CloudHsmClusterNotActiveException(f"The HSM {cluster_id} does not answer.")
        for key_id in await deps.keys.custom_store_keys(store.store_id):
            found = await deps.keys.get(key_id)
            if found is None or found.value.hsm_object is None:
                continue
            if not await token.has(found.value.hsm_object):
                raise CloudHsmClusterNotRelatedException(
                    f"The HSM {cluster_id} does not hold the keys of {store.store_id}."
                )
        new = new.replace(cluster_id=cluster_id)
    if fields.get("key_store_password") is not None:
        new = new.replace(password=fields["key_store_password"])
    return new


class _PasswordTries:
    """Consecutive wrong KeyStorePasswords per token, in this process: after
    MAX_WRONG_PASSWORDS, Connect compares none for LOCKOUT_SECONDS (the store
    stays FAILED with INVALID_CREDENTIALS), so the PIN cannot be guessed at
    the speed of requests. The comparison is keycask's, not the token's, so
    the token's own lockout counter never sees these tries."""

    MAX_WRONG_PASSWORDS = 5
    LOCKOUT_SECONDS = 60.0

    def __init__(self) -> None:
        self._wrong: dict[str, tuple[int, float]] = {}

    def locked(self, cluster_id: str) -> bool:
        count, until = self._wrong.get(cluster_id, (0, 0.0))
        return count >= self.MAX_WRONG_PASSWORDS and time.monotonic() < until

    def record(self, cluster_id: str, *, right: bool) -> None:
        if right:
            self._wrong.pop(cluster_id, None)
            return
        count, _ = self._wrong.get(cluster_id, (0, 0.0))
        self._wrong[cluster_id] = (count + 1, time.monotonic() + self.LOCKOUT_SECONDS)


_TRIES = _PasswordTries()


async def _hsm_connect(deps: Deps, call: Call, store: CustomKeyStore) -> tuple[str, str | None]:
    token = None if store.cluster_id is None else deps.hsm.get(store.cluster_id)
    if token is None or deps.hsm.account_of(token.name) != call.account:
        return FAILED, "CLUSTER_NOT_FOUND"
    if _TRIES.locked(token.name):
        return FAILED, "INVALID_CREDENTIALS"
    right = store.password is not None and token.pin_matches(store.password)
    _TRIES.record(token.name, right=right)
    if not right:
        return FAILED, "INVALID_CREDENTIALS"
    if not await token.present():
        return FAILED, "NETWORK_ERRORS"
    return CONNECTED, None


# -- EXTERNAL_KEY_STORE --

_XKS_FIELDS = frozenset(
    {
        "xks_proxy_uri_endpoint",
        "xks_proxy_uri_path",
        "xks_proxy_vpc_endpoint_service_name",
        "xks_proxy_vpc_endpoint_service_owner",
        "xks_proxy_authentication_credential",
        "xks_proxy_connectivity",
    }
)


async def _xks_apply(
    deps: Deps, call: Call, fields: Fields, store: CustomKeyStore
) -> CustomKeyStore:
    credential = fields.get("xks_proxy_authentication_credential")
    new = store.replace(
        xks_uri_endpoint=fields.get("xks_proxy_uri_endpoint") or store.xks_uri_endpoint,
        xks_uri_path=fields.get("xks_proxy_uri_path") or store.xks_uri_path,
        xks_connectivity=fields.get("xks_proxy_connectivity") or store.xks_connectivity,
        xks_vpc_service_name=fields.get("xks_proxy_vpc_endpoint_service_name")
        or store.xks_vpc_service_name,
        xks_vpc_service_owner=fields.get("xks_proxy_vpc_endpoint_service_owner")
        or store.xks_vpc_service_owner,
    )
    if credential is not None:
        new = new.replace(
            xks_access_key_id=credential["access_key_id"],
            xks_secret=credential["raw_secret_access_key"],
        )
    if new.xks_connectivity == "VPC_ENDPOINT_SERVICE":
        # The model lists no UnsupportedOperationException for Create or
        # UpdateCustomKeyStore: a configuration keycask cannot serve is this.
        raise XksProxyInvalidConfigurationException(
            "keycask reaches XKS proxies over their public endpoint only "
            "(XksProxyConnectivity PUBLIC_ENDPOINT); it has no VPC endpoint services."
        )
    if new.xks_vpc_service_name is not None or new.xks_vpc_service_owner is not None:
        raise ValidationException(
            "XksProxyVpcEndpointServiceName and XksProxyVpcEndpointServiceOwner are only for "
            "XksProxyConnectivity VPC_ENDPOINT_SERVICE."
        )
    for other in await deps.keys.custom_stores(store.account, store.region):
        value = other.value
        if (
            value.store_id != store.store_id
            and value.xks_uri_endpoint == new.xks_uri_endpoint
            and value.xks_uri_path == new.xks_uri_path
        ):
            raise XksProxyUriInUseException(
                "Another external key store of this account and Region uses this "
                "XksProxyUriEndpoint and XksProxyUriPath."
            )
    return new


async def _xks_create(
    deps: Deps, call: Call, fields: Fields, store: CustomKeyStore
) -> CustomKeyStore:
    _required(
        fields,
        (
            "xks_proxy_uri_endpoint",
            "xks_proxy_uri_path",
            "xks_proxy_authentication_credential",
            "xks_proxy_connectivity",
        ),
        "EXTERNAL_KEY_STORE",
    )
    new = await _xks_apply(deps, call, fields, store)
    await _xks_check(deps, call, new)
    return new


async def _xks_update(
    deps: Deps, call: Call, fields: Fields, store: CustomKeyStore
) -> CustomKeyStore:
    new = await _xks_apply(deps, call, fields, store)
    if (new.xks_uri_endpoint, new.xks_uri_path, new.xks_access_key_id, new.xks_secret) != (
        store.xks_uri_endpoint,
        store.xks_uri_path,
        store.xks_access_key_id,
        store.xks_secret,
    ):
        await _xks_check(deps, call, new)
    return new


# What Create/UpdateCustomKeyStore answer when the proxy's GetHealthStatus
# fails, by ConnectionErrorCode (botocore's model lists these for both).
_CHECK_ERRORS: dict[str, type[KMSError]] = {
    "INVALID_CREDENTIALS": XksProxyIncorrectAuthenticationCredentialException,
    "XKS_PROXY_INVALID_RESPONSE": XksProxyInvalidResponseException,
    "XKS_PROXY_ACCESS_DENIED": XksProxyInvalidConfigurationException,
}


async def _xks_check(deps: Deps, call: Call, store: CustomKeyStore) -> None:
    """AWS KMS tests a public endpoint's proxy when a store is created or its
    connection settings change: a GetHealthStatus signed with the credential."""
    code = await xks_keys.probe(deps, call, store)
    if code is not None:
        # Unreachable, timed out, a TLS failure, a path the proxy does not
        # serve, every external key manager UNAVAILABLE.
        raise _CHECK_ERRORS.get(code, XksProxyUriUnreachableException)(
            f"The XKS proxy at {store.xks_uri_endpoint}{store.xks_uri_path} failed its "
            f"GetHealthStatus ({code})."
        )


async def _xks_connect(deps: Deps, call: Call, store: CustomKeyStore) -> tuple[str, str | None]:
    code = await xks_keys.probe(deps, call, store)
    return (CONNECTED, None) if code is None else (FAILED, code)


async def _xks_failure(deps: Deps, call: Call, store: CustomKeyStore) -> str | None:
    return await xks_keys.failure(deps, call, store)


async def _hsm_failure(deps: Deps, call: Call, store: CustomKeyStore) -> str | None:
    return None if await store_available(deps, store) else "NETWORK_ERRORS"


def _hsm_entry(store: CustomKeyStore) -> Fields:
    return {
        "cloud_hsm_cluster_id": store.cluster_id,
        "trust_anchor_certificate": store.trust_anchor,
    }


def _xks_entry(store: CustomKeyStore) -> Fields:
    # The access key id, as AWS shows it; never the secret.
    return {
        "xks_proxy_configuration": XksProxyConfiguration(
            connectivity=store.xks_connectivity,
            access_key_id=store.xks_access_key_id,
            uri_endpoint=store.xks_uri_endpoint,
            uri_path=store.xks_uri_path,
            vpc_endpoint_service_name=store.xks_vpc_service_name,
            vpc_endpoint_service_owner=store.xks_vpc_service_owner,
        )
    }


DEFAULT_TYPE = "AWS_CLOUDHSM"  # CreateCustomKeyStore's, when the request names none
TYPES: dict[str, StoreType] = {
    t.name: t
    for t in (
        StoreType(
            DEFAULT_TYPE,
            _HSM_FIELDS,
            create=_hsm_create,
            update=_hsm_update,
            connect=_hsm_connect,
            failure=_hsm_failure,
            entry=_hsm_entry,
            origin="AWS_CLOUDHSM",
            random_source=True,
        ),
        StoreType(
            "EXTERNAL_KEY_STORE",
            _XKS_FIELDS,
            create=_xks_create,
            update=_xks_update,
            connect=_xks_connect,
            failure=_xks_failure,
            entry=_xks_entry,
            origin="EXTERNAL_KEY_STORE",
            random_source=False,
        ),
    )
}
ALL_FIELDS = frozenset().union(*(t.fields for t in TYPES.values()))


def type_fields(store_type: StoreType, fields: Fields) -> Fields:
    """The request's fields of ``store_type``; another type's given is refused."""
    foreign = sorted(
        name for name in ALL_FIELDS - store_type.fields if fields.get(name) is not None
    )
    if foreign:
        raise ValidationException(
            f"{_member(foreign[0])} does not apply to a custom key store of type {store_type.name}."
        )
    return {name: fields.get(name) for name in store_type.fields}


async def effective_state(deps: Deps, call: Call, store: CustomKeyStore) -> tuple[str, str | None]:
    """The ConnectionState (and error code) DescribeCustomKeyStores shows."""
    if store.state == CONNECTED:
        code = await TYPES[store.store_type].failure(deps, call, store)
        if code is not None:
            return FAILED, code
    if store.state == DISCONNECTED:
        return DISCONNECTED, None
    return store.state, store.error_code


async def random_from_store(deps: Deps, call: Call, store_id: str, size: int) -> bytes:
    """GenerateRandom with a CustomKeyStoreId: the token's random bytes."""
    found = None
    if STORE_ID.fullmatch(store_id):
        found = await deps.keys.custom_store(call.account, call.region, store_id)
    if found is None:
        raise CustomKeyStoreNotFoundException(
            f"Custom key store {store_id} does not exist in this account and Region."
        )
    store = found.value
    call.detail = f"random bytes from custom key store {store_id}"
    if not TYPES[store.store_type].random_source:
        raise UnsupportedOperationException(
            "GenerateRandom takes random bytes only from an AWS_CLOUDHSM key store."
        )
    token = None if store.cluster_id is None else deps.hsm.get(store.cluster_id)
    if store.state != CONNECTED or token is None:
        raise CustomKeyStoreInvalidStateException(f"Custom key store {store_id} is not connected.")
    try:
        return await token.random(size)
    except TokenBusy:
        raise ThrottlingException("Too many requests wait for the HSM; retry later.") from None
    except HsmError:
        raise CustomKeyStoreInvalidStateException(
            f"The HSM of custom key store {store_id} does not answer."
        ) from None


async def key_metadata(deps: Deps, call: Call, key: Key) -> KeyMetadata:
    """DescribeKey's KeyMetadata: a custom key store key's cluster id, and its
    KeyState Unavailable while its store cannot serve it."""
    if key.custom_key_store_id is None:
        return KeyMetadata.of(key)
    stored = await deps.keys.custom_store(key.account, key.region, key.custom_key_store_id)
    if stored is None:
        return KeyMetadata.of(key, unavailable=True)
    store = stored.value
    unavailable = (
        store.state != CONNECTED
        or await TYPES[store.store_type].failure(deps, call, store) is not None
    )
    return KeyMetadata.of(key, cluster_id=store.cluster_id, unavailable=unavailable)
