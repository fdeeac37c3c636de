"""Cloud KMS's operations on asymmetric and MAC crypto keys:
asymmetricSign, asymmetricDecrypt, getPublicKey, macSign and macVerify,
each running the AWS door's core handler (Sign, Decrypt, GetPublicKey,
GenerateMac, VerifyMac) under its ``kms:`` action, with the AWS algorithm
``gcp_algorithms.py`` maps the crypto key's to.

keycask's asymmetric and HMAC keys have one key material each (AWS KMS's
semantics), so each version of an asymmetric or MAC crypto key is a
keycask key of its own: version 1 the one the crypto key's alias names,
version N the one whose id the crypto key's settings record
(``gcp_versions.create_version``; its alias ``KeyName.version_alias(N)``
is for the AWS door's eyes only, and alias/gcp/ names are the Cloud KMS
door's alone). A version's state is its key's (patch
DISABLED is the AWS door's DisableKey).
"""

from __future__ import annotations

from keycask.errors import (
    KMSInvalidMacException,
    NotFoundException,
    ValidationException,
)
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp import resolve_key_for, settings_of
from keycask.service.core.gcp_algorithms import DECRYPTION, MACS, RAW_PUBLIC_KEY, SIGNING
from keycask.service.core.gcp_requests import (
    AsymmetricDecryptRequest,
    AsymmetricDecryptResult,
    KeyName,
    KeySettings,
    MacRequest,
    MacResult,
    PublicKeyRequest,
    PublicKeyResult,
    SignRequest,
    SignResult,
)
from keycask.service.core.gcp_versions import version_key
from keycask.service.core.handlers import asymmetric, crypto
from keycask.service.core.results import (
    DecryptResult,
    GenerateMacResult,
    GetPublicKeyResult,
)
from keycask.service.core.results import SignResult as AwsSign


async def _version_ref(deps: Deps, call: Call, name: KeyName, version: int) -> str:
    """What the core operation is told to use for version ``version``:
    version 1 the crypto key's alias (the Cloud KMS door's alone), version
    N the ARN of the key its settings record (``gcp_versions.version_key``)."""
    if version == 1:
        return name.alias
    return (await version_key(deps, call, name, version)).arn


async def _settings(
    deps: Deps, call: Call, name: KeyName, version: int, *, purpose: str, method: str
) -> KeySettings:
    """The settings of the crypto key behind version ``version`` of an
    asymmetric or MAC crypto key (not authorized: the core operation
    authorizes)."""
    key = await resolve_key_for(deps, call, name)
    settings = await settings_of(deps, key, name)
    if not 1 <= version <= settings.version_count:
        raise NotFoundException(f"CryptoKeyVersion {name.version_name(version)} not found.")
    if settings.purpose != purpose:
        raise ValidationException(
            f"{method} is not valid for CryptoKey {name.name} with purpose {settings.purpose}."
        )
    return settings


async def asymmetric_sign(deps: Deps, call: Call, req: SignRequest) -> Outcome:
    settings = await _settings(
        deps, call, req.name, req.version, purpose="ASYMMETRIC_SIGN", method="AsymmetricSign"
    )
    _, algorithm, digest_kind = SIGNING[settings.algorithm]
    if req.digest is not None:
        if digest_kind is None:
            raise ValidationException(
                f"{settings.algorithm} signs data, not a digest: send the data field."
            )
        if req.digest_kind != digest_kind:
            raise ValidationException(
                f"The digest for {settings.algorithm} must be digest.{digest_kind}, "
                f"not digest.{req.digest_kind}."
            )
        message, message_type = (
            req.digest,
            "EXTERNAL_MU" if digest_kind == "externalMu" else "DIGEST",
        )
    else:
        assert req.data is not None
        if digest_kind == "externalMu":
            raise ValidationException(
                f"{settings.algorithm} signs an external mu: send digest.externalMu."
            )
        message, message_type = req.data, "RAW"
    out = await asymmetric.sign(
        deps,
        call,
        aws.SignRequest(
            key_id=await _version_ref(deps, call, req.name, req.version),
            message=message,
            signing_algorithm=algorithm,
            message_type=message_type,
        ),
    )
    result = out.result
    assert isinstance(result, AwsSign)
    return Outcome(
        SignResult(
            req.name.version_name(req.version),
            result.signature,
            settings.protection_level,
            req.verified,
        )
    )


async def asymmetric_decrypt(deps: Deps, call: Call, req: AsymmetricDecryptRequest) -> Outcome:
    settings = await _settings(
        deps, call, req.name, req.version, purpose="ASYMMETRIC_DECRYPT", method="AsymmetricDecrypt"
    )
    _, algorithm = DECRYPTION[settings.algorithm]
    out = await crypto.decrypt(
        deps,
        call,
        aws.DecryptRequest(
            ciphertext_blob=req.ciphertext,
            key_id=await _version_ref(deps, call, req.name, req.version),
            encryption_algorithm=algorithm,
        ),
    )
    result = out.result
    assert isinstance(result, DecryptResult)
    return Outcome(
        AsymmetricDecryptResult(result.plaintext, settings.protection_level, req.verified)
    )


async def get_public_key(deps: Deps, call: Call, req: PublicKeyRequest) -> Outcome:
    key = await resolve_key_for(deps, call, req.name)
    settings = await settings_of(deps, key, req.name)
    if settings.purpose not in ("ASYMMETRIC_SIGN", "ASYMMETRIC_DECRYPT"):
        raise ValidationException(
            f"GetPublicKey is not valid for CryptoKey {req.name.name} with purpose "
            f"{settings.purpose}."
        )
    if not 1 <= req.version <= settings.version_count:
        raise NotFoundException(f"CryptoKeyVersion {req.name.version_name(req.version)} not found.")
    out = await asymmetric.get_public_key(
        deps,
        call,
        aws.GetPublicKeyRequest(key_id=await _version_ref(deps, call, req.name, req.version)),
    )
    result = out.result
    assert isinstance(result, GetPublicKeyResult)
    raw_size = RAW_PUBLIC_KEY.get(key.key_spec)
    if req.format == "NIST_PQC" and raw_size is None:
        raise ValidationException(
            f"public_key_format NIST_PQC is for post-quantum keys; {settings.algorithm} "
            "answers PEM or DER."
        )
    der = result.public_key
    raw = der[-raw_size:] if raw_size is not None and req.format == "NIST_PQC" else None
    return Outcome(
        PublicKeyResult(
            req.name.version_name(req.version),
            der,
            settings.algorithm,
            settings.protection_level,
            req.format,
            raw,
        )
    )


async def mac_sign(deps: Deps, call: Call, req: MacRequest) -> Outcome:
    settings = await _settings(deps, call, req.name, req.version, purpose="MAC", method="MacSign")
    _, algorithm = MACS[settings.algorithm]
    out = await asymmetric.generate_mac(
        deps,
        call,
        aws.GenerateMacRequest(
            message=req.data,
            key_id=await _version_ref(deps, call, req.name, req.version),
            mac_algorithm=algorithm,
        ),
    )
    result = out.result
    assert isinstance(result, GenerateMacResult)
    return Outcome(
        MacResult(
            req.name.version_name(req.version),
            settings.protection_level,
            req.verified,
            mac=result.mac,
        )
    )


async def mac_verify(deps: Deps, call: Call, req: MacRequest) -> Outcome:
    """VerifyMac; a MAC that does not verify is ``success: false`` (Cloud
    KMS's answer), not an error."""
    settings = await _settings(deps, call, req.name, req.version, purpose="MAC", method="MacVerify")
    _, algorithm = MACS[settings.algorithm]
    assert req.mac is not None
    try:
        await asymmetric.verify_mac(
            deps,
            call,
            aws.VerifyMacRequest(
                message=req.data,
                key_id=await _version_ref(deps, call, req.name, req.version),
                mac_algorithm=algorithm,
                mac=req.mac,
            ),
        )
        success = True
    except KMSInvalidMacException:
        success = False
    return Outcome(
        MacResult(req.name.version_name(req.version), settings.protection_level, req.verified,
                  success=success)
    )  # fmt: skip
