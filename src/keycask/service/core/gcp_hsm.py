"""Cloud KMS's protection level HSM over keycask's HSM-backed keys
(docs/hsm.md): a crypto key of protection level HSM is a keycask key of an
AWS_CLOUDHSM custom key store, generated and used inside the store's
PKCS#11 token, exactly the key CreateKey makes with that store's
CustomKeyStoreId and Origin AWS_CLOUDHSM through the AWS door.

Which store: Cloud KMS names no HSM, so keycask takes the one
``hsm_choice`` picks (the caller's account's oldest connected AWS_CLOUDHSM
custom key store in the location's Region whose token answers), the same
rule as the Azure Key Vault door's RSA-HSM and EC-HSM keys. With none, the
request is refused FAILED_PRECONDITION (``KMSInvalidStateException``)
naming the step that is missing: an ``--hsm`` for the account,
CreateCustomKeyStore, ConnectCustomKeyStore.

Purposes: ENCRYPT_DECRYPT (an AES-256 key, AES-GCM in the token),
ASYMMETRIC_SIGN with an ECDSA (P-256, P-384, secp256k1) or RSA PSS or
PKCS#1 v1.5 algorithm, ASYMMETRIC_DECRYPT with an RSA OAEP one (a key pair
made in the token, its private half never leaving it: hsm_keys). What the
token cannot do is refused FAILED_PRECONDITION with the reason: Ed25519,
ML-DSA and MAC keys (keycask's tokens make no such keys), import-only keys,
and any rotation, since HSM-backed keys are never rotated (AWS's rule for
keys in custom key stores): neither a rotation schedule nor a new version.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from keycask.errors import (
    CustomKeyStoreInvalidStateException,
    KMSInvalidStateException,
    UnsupportedOperationException,
)
from keycask.keys.custom_stores import CustomKeyStore
from keycask.keys.model import Key, KeySpec, KeyUsage
from keycask.service.core import hsm_choice
from keycask.service.core import requests as aws
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.hsm_keys import token_makes

HSM = "HSM"
NO_ROTATION = (
    "it is an HSM-backed key (protection level HSM), and keycask never rotates keys held "
    "in an HSM, as AWS KMS rotates no key of a custom key store: create a new crypto key "
    "instead"
)
T = TypeVar("T")


def check_request(  # noqa: PLR0917 - the request's fields
    purpose: str,
    algorithm: str,
    spec: KeySpec,
    usage: KeyUsage,
    rotating: bool,
    import_only: bool = False,
) -> None:
    """What protection level HSM cannot have, refused before anything is
    looked at or made."""
    if import_only:
        raise KMSInvalidStateException(
            "protection level HSM cannot be import-only: keycask's HSM tokens make their "
            "own keys and take no imported material; import into a SOFTWARE key"
        )
    if not token_makes(spec, usage):
        raise KMSInvalidStateException(
            f"protection level HSM is not available for {purpose} {algorithm}: keycask's HSM "
            "tokens hold AES-256 keys (ENCRYPT_DECRYPT), RSA key pairs (RSA_SIGN_PSS_*, "
            "RSA_SIGN_PKCS1_*, RSA_DECRYPT_OAEP_*) and EC key pairs (EC_SIGN_P256_SHA256, "
            "EC_SIGN_P384_SHA384, EC_SIGN_SECP256K1_SHA256), no Ed25519, ML-DSA or MAC keys; "
            "use protection level SOFTWARE for this algorithm"
        )
    if rotating:
        raise KMSInvalidStateException(f"rotation_period cannot be set: {NO_ROTATION}")


_SOFTWARE = "protection level HSM", "use protection level SOFTWARE meanwhile"


async def store_for(deps: Deps, call: Call) -> CustomKeyStore:
    """The custom key store a new HSM crypto key goes into (hsm_choice's
    rule), or FAILED_PRECONDITION naming the next step."""
    return await hsm_choice.store_for(deps, call, _SOFTWARE)


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
    req = await hsm_choice.in_hsm(deps, call, req, _SOFTWARE)
    await call.authorize("kms:CreateAlias", resource=alias)
    return req


async def as_precondition(step: Awaitable[T]) -> T:
    """A custom key store's refusal as Cloud KMS answers it: the store went
    away or stopped answering between the choice and the key
    (CustomKeyStoreInvalidStateException), FAILED_PRECONDITION."""
    try:
        return await step
    except CustomKeyStoreInvalidStateException as error:
        raise KMSInvalidStateException(error.message) from None


def check_new_version(key: Key) -> None:
    """An HSM key pair (an asymmetric crypto key of protection level HSM)
    gets no new version, as an HSM-backed symmetric key gets none."""
    if key.hsm_object is not None:
        raise KMSInvalidStateException(f"a new CryptoKeyVersion cannot be created: {NO_ROTATION}")


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
