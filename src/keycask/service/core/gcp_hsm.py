"""Cloud KMS's protection level HSM over keycask's HSM-backed keys
(docs/hsm.md): a crypto key of protection level HSM is a keycask key of an
AWS_CLOUDHSM custom key store, generated and used inside the store's
PKCS#11 token, exactly the key CreateKey makes with that store's
CustomKeyStoreId and Origin AWS_CLOUDHSM through the AWS door.

Which store: Cloud KMS names no HSM, so keycask takes the caller's
account's AWS_CLOUDHSM custom key store in the location's Region that is
connected with its token answering; with several, the oldest (creation
time, then id), so the choice does not change when another store is added
or connected. With none, the request is refused FAILED_PRECONDITION
(``KMSInvalidStateException``) naming the step that is missing: an
``--hsm`` for the account, CreateCustomKeyStore, ConnectCustomKeyStore.

What the token cannot do is refused FAILED_PRECONDITION with the reason:
keycask's tokens hold AES-256 keys for AES-GCM only (no asymmetric or MAC
purpose), and HSM-backed keys are never rotated (AWS's rule for keys in
custom key stores), so neither a rotation schedule nor a new version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import TypeVar

from keycask.errors import (
    CustomKeyStoreInvalidStateException,
    KMSInvalidStateException,
    UnsupportedOperationException,
)
from keycask.keys.custom_stores import CustomKeyStore
from keycask.keys.model import Key, Origin
from keycask.service.core import requests as aws
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import keys
from keycask.service.core.hsm_keys import store_available

HSM = "HSM"
_STORE_TYPE = "AWS_CLOUDHSM"
NO_ROTATION = (
    "it is an HSM-backed key (protection level HSM), and keycask never rotates keys held "
    "in an HSM, as AWS KMS rotates no key of a custom key store: create a new crypto key "
    "instead"
)
T = TypeVar("T")


def check_request(purpose: str, rotating: bool, import_only: bool = False) -> None:
    """What protection level HSM cannot have, refused before anything is
    looked at or made."""
    if import_only:
        raise KMSInvalidStateException(
            "protection level HSM cannot be import-only: keycask's HSM tokens make their "
            "own keys and take no imported material; import into a SOFTWARE key"
        )
    if purpose != "ENCRYPT_DECRYPT":
        raise KMSInvalidStateException(
            f"protection level HSM is not available for purpose {purpose}: keycask's HSM "
            "tokens hold AES-256 keys for symmetric encryption only (purpose ENCRYPT_DECRYPT, "
            "GOOGLE_SYMMETRIC_ENCRYPTION); use protection level SOFTWARE for this purpose"
        )
    if rotating:
        raise KMSInvalidStateException(f"rotation_period cannot be set: {NO_ROTATION}")


def _missing(call: Call, what: str) -> KMSInvalidStateException:
    return KMSInvalidStateException(
        f"protection level HSM needs a connected HSM key store of this account in "
        f"{call.region}, and {what}. See docs/hsm.md; use protection level SOFTWARE meanwhile"
    )


async def store_for(deps: Deps, call: Call) -> CustomKeyStore:
    """The custom key store a new HSM crypto key goes into (the module's
    rule), or FAILED_PRECONDITION naming the next step."""
    if not any(deps.hsm.account_of(name) == call.account for name in deps.hsm.names()):
        raise _missing(
            call,
            "this keycask server has no HSM for this account: configure one (keycask "
            "server --hsm NAME[@ACCOUNT]=MODULE_PATH:TOKEN_LABEL), then create a custom key "
            "store of type AWS_CLOUDHSM naming it (CreateCustomKeyStore) and connect it "
            "(ConnectCustomKeyStore), through the AWS door",
        )
    stores = sorted(
        (
            s.value
            for s in await deps.keys.custom_stores(call.account, call.region)
            if s.value.store_type == _STORE_TYPE
        ),
        key=lambda s: (s.created, s.store_id),
    )
    if not stores:
        raise _missing(
            call,
            "it has none: create a custom key store of type AWS_CLOUDHSM naming a configured "
            "HSM (CreateCustomKeyStore) and connect it (ConnectCustomKeyStore), through the "
            "AWS door",
        )
    for store in stores:
        if await store_available(deps, store):
            return store
    names = ", ".join(f"{s.store_id} ({s.state})" for s in stores)
    raise _missing(
        call,
        f"none of its AWS_CLOUDHSM custom key stores ({names}) is connected with its HSM "
        "answering: connect one (ConnectCustomKeyStore), or make its HSM answer again",
    )


async def create_request(
    deps: Deps, call: Call, req: aws.CreateKeyRequest, alias: str
) -> aws.CreateKeyRequest:
    """CreateKey's request for an HSM crypto key: authorized as CreateKey
    with Origin AWS_CLOUDHSM first (the conditions CreateKey checks for a
    custom key store, ``kms:KeyOrigin`` among them), then in the store
    this module's rule picks. The crypto key's alias (``alias``, its ARN)
    is authorized here too, before CreateKey makes the key in the token
    (last, once all else is checked), so that no refusal leaves an object
    in the token."""
    req = dataclasses.replace(req, origin=Origin.AWS_CLOUDHSM.value)
    await keys.authorize_create(call, req)
    store = await store_for(deps, call)
    await call.authorize("kms:CreateAlias", resource=alias)
    return dataclasses.replace(req, custom_key_store_id=store.store_id)


async def as_precondition(step: Awaitable[T]) -> T:
    """A custom key store's refusal as Cloud KMS answers it: the store went
    away or stopped answering between the choice and the key
    (CustomKeyStoreInvalidStateException), FAILED_PRECONDITION."""
    try:
        return await step
    except CustomKeyStoreInvalidStateException as error:
        raise KMSInvalidStateException(error.message) from None


async def no_rotation(key: Key, what: str, step: Awaitable[T]) -> T:
    """A rotation step of the AWS door's (authorized there first): for an
    HSM-backed key its refusal (UnsupportedOperationException, AWS's) is
    Cloud KMS's FAILED_PRECONDITION, ``what`` cannot be done and why."""
    try:
        return await step
    except UnsupportedOperationException:
        if key.custom_key_store_id is None:
            raise
        raise KMSInvalidStateException(f"{what}: {NO_ROTATION}") from None


async def random_store(deps: Deps, call: Call) -> str | None:
    """locations.generateRandomBytes with protection level HSM: the store
    whose token gives the bytes (GenerateRandom with its CustomKeyStoreId,
    C_GenerateRandom), the one ``store_for`` would pick; None (keycask's own
    random source, as for SOFTWARE) when the account has none connected."""
    try:
        return (await store_for(deps, call)).store_id
    except KMSInvalidStateException:
        return None
