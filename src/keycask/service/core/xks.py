"""The XKS proxy API's operations over keycask's own (the XKS door,
``service/doors/xks.py``, decodes the wire into these requests; docs/xks.md).

An external key id is a keycask key id (a UUID: the XKS specification's
characters, and it never changes; aliases can be moved, ARNs carry ``:``
and ``/``). The key is an ordinary single-Region symmetric keycask key,
in the XKS credential's principal's account and in this server's region.

GetKeyMetadata runs under ``kms:DescribeKey``, Encrypt under ``kms:Encrypt``
and Decrypt under ``kms:Decrypt``, through the AWS door's own Encrypt and
Decrypt handlers: the same key policy, grants, key states and audit decide,
and the key material never leaves the key store (or, for a key held in an
HSM, its token). The XKS fields are pieces of keycask's ciphertext blob
(docs/architecture.md "Formats"): format v1 for a key whose material
keycask holds,

    blob                  = 0x01 | key id (16) | version (4) | salt (16) | nonce (12)
                            | ciphertext | tag (16)
    ciphertextMetadata    = version (4) | salt (16)          (20 bytes, the most allowed)
    initializationVector  = nonce (12)
    ciphertext            = ciphertext                       (as long as the plaintext)
    authenticationTag     = tag (16)

and format v3 for a key held in an HSM (origin AWS_CLOUDHSM: the AES-GCM
runs inside its token, through ``hsm_keys``, as the AWS door's Encrypt of
that key does),

    blob                  = 0x03 | key id (16) | token object id (16) | IV (12)
                            | ciphertext | tag (16)
    ciphertextMetadata    = token object id (16)
    initializationVector  = IV (12)

The format byte and key id are not sent: the key is the URI's, and the key
says the format (one held in an HSM has v3 ciphertexts only). Decrypt puts
the blob back together and opens it as Decrypt does. In v1 the per-message
key is derived from the version's material and the random salt, and the
nonce is random too, so a (key, nonce) pair repeats only if both 128-bit
salt and 96-bit nonce do. In v3 one key in the token seals every message
under a random 96-bit IV (``keycask.hsm.token``), within AES-GCM's bound of
2^32 messages per key (docs/hsm.md).

The XKS ``additionalAuthenticatedData`` is bound as the encryption context
``{"xks:aad-sha256": <base64 SHA-256 of the AAD>}`` (absent and empty AAD
alike, as the specification has it): the AAD may be 8 KiB of bytes, more than
an encryption context holds, and its digest keeps the audit record small.
``ciphertextMetadata`` is bound by the blob's format, which the
specification asks of it: in v1 the version is in the header and the salt
in the key derivation; in v3 the object id is in the header, which is the
AAD's first part inside the token.

A key tagged ``XksKeyUsage`` = ``ENCRYPT`` or ``DECRYPT`` is exposed for that
operation only: metadata reports that keyUsage, and the other operation is
refused with InvalidKeyUsageException. The ``requestMetadata`` fields are
condition keys of every call (``keycask:XksAwsPrincipalArn``,
``keycask:XksKmsKeyArn``, ``keycask:XksKmsOperation``,
``keycask:XksKmsViaService``, ``keycask:XksSourceVpc``,
``keycask:XksSourceVpce``), so a key policy can allow AWS KMS only for one
KMS key; and the audit record's detail names them with the kmsRequestId.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import uuid
from dataclasses import dataclass, field
from typing import Final

from keycask.crypto import AuthenticationFailed, KeyMaterial, open_sealed, random_bytes, seal
from keycask.errors import (
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSInternalException,
    NotFoundException,
    UnsupportedOperationException,
)
from keycask.keys.model import (
    SYMMETRIC_DEFAULT_ALGORITHM,
    Key,
    KeySpec,
    KeyState,
    KeyUsage,
    Origin,
)
from keycask.keys.states import require_state
from keycask.keys.wire import (
    BLOB_FORMAT_HSM,
    BLOB_FORMAT_V1,
    HSM_IV_SIZE,
    HSM_TAG_SIZE,
    encode_context,
    open_blob,
)
from keycask.service.core import hsm_keys
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import crypto
from keycask.service.core.requests import DecryptRequest, EncryptRequest
from keycask.service.core.resolve import use_key
from keycask.service.core.results import DecryptResult, EncryptResult

AAD_CONTEXT_KEY: Final = "xks:aad-sha256"
# The reserved prefix of the context keys this module binds (no other
# operation's caller may name them: handlers/crypto.py).
XKS_CONTEXT_PREFIX: Final = "xks:"
USAGE_TAG: Final = "XksKeyUsage"
ENCRYPT, DECRYPT = "ENCRYPT", "DECRYPT"
# An XKS external key id: the specification's characters, which a key id
# (a UUID) is made of.
EXTERNAL_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_VERSION = struct.Struct(">I")
_KEY_ID = 16
_SALT = 16
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
METADATA_SIZE: Final = _VERSION.size + _SALT
# A v3 blob's ciphertextMetadata: the token object id.
HSM_METADATA_SIZE: Final = 16
# What an XKS Encrypt takes at most: AWS KMS sends data keys (<= 1 KiB) and
# Encrypt plaintexts (<= 4 KiB); the specification's floor is 4,300 bytes.
MAX_PLAINTEXT: Final = 8192
# The specification's floor for AAD; more is refused as unsupported.
MAX_AAD: Final = 8192
# requestMetadata field -> condition key (docs/xks.md).
CONDITION_KEYS: Final = {
    "awsPrincipalArn": "keycask:XksAwsPrincipalArn",
    "kmsKeyArn": "keycask:XksKmsKeyArn",
    "kmsOperation": "keycask:XksKmsOperation",
    "kmsViaService": "keycask:XksKmsViaService",
    "awsSourceVpc": "keycask:XksSourceVpc",
    "awsSourceVpce": "keycask:XksSourceVpce",
}


@dataclass(frozen=True, slots=True)
class RequestMetadata:
    """``requestMetadata`` as sent (strings, opaque; ``fields`` in wire names)."""

    kms_request_id: str
    kms_operation: str
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class XksKeyRequest:
    key_id: str
    metadata: RequestMetadata


@dataclass(frozen=True, slots=True)
class XksEncryptRequest:
    key_id: str
    metadata: RequestMetadata
    plaintext: bytes = field(repr=False)
    aad: bytes
    integrity_value: bool  # ciphertextDataIntegrityValueAlgorithm SHA_256 was asked


@dataclass(frozen=True, slots=True)
class XksDecryptRequest:
    key_id: str
    metadata: RequestMetadata
    ciphertext: bytes
    metadata_bytes: bytes  # ciphertextMetadata
    iv: bytes
    tag: bytes
    aad: bytes


@dataclass(frozen=True, slots=True)
class XksHealthRequest:
    metadata: RequestMetadata


@dataclass(frozen=True, slots=True)
class XksMetadataResult:
    key_spec: str
    key_usage: tuple[str, ...]
    key_status: str


@dataclass(frozen=True, slots=True)
class XksEncryptResult:
    ciphertext: bytes
    metadata_bytes: bytes
    iv: bytes
    tag: bytes
    integrity_value: bytes | None


@dataclass(frozen=True, slots=True)
class XksDecryptResult:
    plaintext: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class XksHealthResult:
    status: str  # ACTIVE | UNAVAILABLE (the specification's healthStatus)


def _note(call: Call, metadata: RequestMetadata) -> None:
    """The request metadata as condition keys and in the audit record."""
    call.conditions[CONDITION_KEYS["kmsOperation"]] = metadata.kms_operation
    for name, value in metadata.fields:
        condition = CONDITION_KEYS.get(name)
        if condition is not None:
            call.conditions[condition] = value
    # Names are the caller's too: letters and digits only (others shown as
    # "?"), so no name can read as another field ("x; kmsRequestId=...").
    shown = "; ".join(
        f"{_FIELD_NAME.sub('?', name[:64])}={printable(value)}" for name, value in metadata.fields
    )
    call.detail = (
        f"kmsRequestId={printable(metadata.kms_request_id)}; "
        f"kmsOperation={printable(metadata.kms_operation)}" + (f"; {shown}" if shown else "")
    )


_FIELD_NAME = re.compile(r"[^A-Za-z0-9]")


def printable(value: str) -> str:
    """At most 2,048 printable ASCII characters (the metadata is the caller's)."""
    text = value[:2048]
    return text if text.isascii() and text.isprintable() else text.encode("unicode_escape").decode()


def _check_key_id(key_id: str) -> None:
    if not _UUID.fullmatch(key_id):
        # Not a key id keycask ever made (an alias or a multi-Region key id).
        raise NotFoundException(f"external key {key_id[:128]} does not exist")


def usage_of(key: Key) -> tuple[str, ...]:
    """The XKS keyUsage the key is exposed for (its ``XksKeyUsage`` tag)."""
    for tag in key.tags:
        if tag.tag_key == USAGE_TAG:
            wanted = {part for part in re.split(r"[\s,]+", tag.tag_value.upper()) if part}
            return tuple(usage for usage in (ENCRYPT, DECRYPT) if usage in wanted)
    return (ENCRYPT, DECRYPT)


@dataclass(frozen=True, slots=True)
class _Split:
    """How a blob format's bytes map onto the XKS fields: every format
    served is ``format | key id (16) | metadata | IV (12) | ciphertext |
    tag (16)``, and only the format byte and the metadata's size differ."""

    format: int
    metadata_size: int


_V1 = _Split(BLOB_FORMAT_V1, METADATA_SIZE)
_V3 = _Split(BLOB_FORMAT_HSM, HSM_METADATA_SIZE)
assert NONCE_SIZE == HSM_IV_SIZE and TAG_SIZE == HSM_TAG_SIZE

# Origins served, and the blob format their keys' ciphertexts have: keycask
# holds the material (v1), or the key is held in an HSM (v3).
_SERVED_ORIGINS: Final = {Origin.AWS_KMS: _V1, Origin.EXTERNAL: _V1, Origin.AWS_CLOUDHSM: _V3}


def _split_of(key: Key) -> _Split:
    split = _SERVED_ORIGINS.get(key.origin)
    if (
        split is None
        or key.key_spec is not KeySpec.SYMMETRIC_DEFAULT
        or key.key_usage is not KeyUsage.ENCRYPT_DECRYPT
        or key.mrk is not None
        or (split is _V3) != (key.hsm_object is not None)
    ):
        raise UnsupportedOperationException(
            f"{key.arn} is not a single-Region symmetric encryption key whose material "
            "keycask or its HSM holds; the XKS proxy serves those only"
        )
    return split


def _require_usage(key: Key, usage: str) -> None:
    if usage not in usage_of(key):
        raise InvalidKeyUsageException(
            f"external key {key.public_id} is exposed for {' and '.join(usage_of(key)) or 'no'} "
            f"operations (its {USAGE_TAG} tag), not {usage}"
        )


async def _exposed(
    deps: Deps, call: Call, key_id: str, action: str, *, usage: str, context: dict[str, str]
) -> Key:
    """The key, once the caller may do ``action`` with it, if it is exposed
    for ``usage``. Authorized here first, with the condition keys the core
    operation will have (the context, the algorithm), so a caller that may
    not use the key learns nothing of it; the core operation then authorizes
    again (the same decision, from the decision cache), and the record names
    it once."""
    _check_key_id(key_id)
    call.encryption_context = context
    call.conditions["kms:EncryptionAlgorithm"] = SYMMETRIC_DEFAULT_ALGORITHM
    key = (await use_key(deps.keys, call, key_id, action)).value
    _split_of(key)
    _require_usage(key, usage)
    call.decided_by = None
    return key


def aad_context(aad: bytes) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(aad).digest()).decode()
    return {AAD_CONTEXT_KEY: digest}


def integrity_value(aad: bytes, result: XksEncryptResult) -> bytes:
    """The specification's Appendix C: SHA-256 over AAD, metadata, IV,
    ciphertext and tag, concatenated."""
    return hashlib.sha256(
        aad + result.metadata_bytes + result.iv + result.ciphertext + result.tag
    ).digest()


# A key id no key has (the nil UUID): the health check's store read.
_NO_KEY = uuid.UUID(int=0)


async def health(deps: Deps, call: Call, req: XksHealthRequest) -> Outcome:
    """GetHealthStatus, deep as the specification asks: the key store read
    (a key that does not exist: no key of a caller is touched, no usage is
    recorded) and an AES-GCM round trip under a throwaway key. Not
    authorized (the specification excludes it from secondary
    authorization): the caller authenticated with an XKS credential. A store
    that does not answer in time is the door's DependencyTimeoutException."""
    _note(call, req.metadata)
    await deps.keys.get(_NO_KEY)
    probe = random_bytes(16)
    material = KeyMaterial(random_bytes(32))
    try:
        ok = open_sealed(material, seal(material, probe, aad=b"xks"), aad=b"xks") == probe
    except AuthenticationFailed:
        ok = False
    return Outcome(XksHealthResult("ACTIVE" if ok else "UNAVAILABLE"))


async def metadata(deps: Deps, call: Call, req: XksKeyRequest) -> Outcome:
    """The key as DescribeKey sees it: ``keyStatus`` is ENABLED when its
    KeyState would be Enabled, so a key held in an HSM whose store is
    disconnected or whose token is gone (KeyState Unavailable) is DISABLED
    until it can be used again."""
    _note(call, req.metadata)
    _check_key_id(req.key_id)
    key = (await use_key(deps.keys, call, req.key_id, "kms:DescribeKey", state="DescribeKey")).value
    _split_of(key)
    enabled = key.state is KeyState.ENABLED and await hsm_keys.available(deps, key)
    return Outcome(
        XksMetadataResult("AES_256", usage_of(key), "ENABLED" if enabled else "DISABLED")
    )


async def encrypt(deps: Deps, call: Call, req: XksEncryptRequest) -> Outcome:
    """Encrypt; with ciphertextDataIntegrityValueAlgorithm, Appendix C's
    sequence: the CDIV is computed over the answer first, then the answer is
    opened again and must give the plaintext back (else sealed once more,
    then InternalException), so a CDIV is an assurance that Decrypt will
    work. That verifying open is the proxy's own check: it needs the key to
    be exposed for DECRYPT too (as AWS's test client expects: an encrypt-only
    key refuses CDIV), not ``kms:Decrypt``, and returns nothing."""
    _note(call, req.metadata)
    context = aad_context(req.aad)
    key = await _exposed(deps, call, req.key_id, "kms:Encrypt", usage=ENCRYPT, context=context)
    if req.integrity_value:
        _require_usage(key, DECRYPT)
    for _ in range(2):
        answer = await _encrypt_once(deps, call, req, context, _split_of(key))
        if not req.integrity_value:
            return Outcome(answer)
        answer = XksEncryptResult(
            answer.ciphertext,
            answer.metadata_bytes,
            answer.iv,
            answer.tag,
            integrity_value(req.aad, answer),
        )
        if await _opens(deps, call, key, answer, context=context, plaintext=req.plaintext):
            return Outcome(answer)
    raise KMSInternalException("the ciphertext did not decrypt back to the plaintext")


async def _encrypt_once(
    deps: Deps, call: Call, req: XksEncryptRequest, context: dict[str, str], split: _Split
) -> XksEncryptResult:
    call.context_prefix = XKS_CONTEXT_PREFIX
    out = await crypto.encrypt(
        deps,
        call,
        EncryptRequest(key_id=req.key_id, plaintext=req.plaintext, encryption_context=context),
    )
    result = out.result
    assert isinstance(result, EncryptResult)
    blob = result.ciphertext_blob
    start = 1 + _KEY_ID
    iv_at = start + split.metadata_size
    body_size = len(blob) - iv_at - NONCE_SIZE - TAG_SIZE
    if blob[0] != split.format or body_size != len(req.plaintext):
        raise UnsupportedOperationException("this key's ciphertexts cannot be split for XKS")
    sealed = blob[iv_at + NONCE_SIZE :]
    return XksEncryptResult(
        sealed[:-TAG_SIZE],
        blob[start:iv_at],
        blob[iv_at : iv_at + NONCE_SIZE],
        sealed[-TAG_SIZE:],
        None,
    )


def _blob(key: Key, metadata: bytes, iv: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    """keycask's blob (the key's format) from the XKS fields."""
    return bytes((_split_of(key).format,)) + key.key_id.bytes + metadata + iv + ciphertext + tag


async def _opens(
    deps: Deps,
    call: Call,
    key: Key,
    answer: XksEncryptResult,
    *,
    context: dict[str, str],
    plaintext: bytes,
) -> bool:
    """Whether ``answer`` opens to ``plaintext`` (Appendix C's step 3): in
    keycask for v1, inside the token for v3 (the check is the proxy's own, so
    the key's last use stays the Encrypt's)."""
    blob = _blob(key, answer.metadata_bytes, answer.iv, answer.ciphertext, answer.tag)
    try:
        if _split_of(key) is _V3:
            used = call.used_keys
            try:
                opened = await hsm_keys.open_blob(deps, call, key, blob, encode_context(context))
            finally:
                call.used_keys = used
        else:
            version = _VERSION.unpack(answer.metadata_bytes[: _VERSION.size])[0]
            material = await deps.keys.material(key.key_id, version)
            if material is None:
                return False
            opened = open_blob(material, blob, encode_context(context))
    except InvalidCiphertextException:
        return False
    return hmac.compare_digest(opened, plaintext)


async def decrypt(deps: Deps, call: Call, req: XksDecryptRequest) -> Outcome:
    _note(call, req.metadata)
    context = aad_context(req.aad)
    key = await _exposed(deps, call, req.key_id, "kms:Decrypt", usage=DECRYPT, context=context)
    split = _split_of(key)
    if (
        len(req.metadata_bytes) != split.metadata_size
        or len(req.iv) != NONCE_SIZE
        or len(req.tag) != TAG_SIZE
    ):
        require_state("Decrypt", key)
        raise InvalidCiphertextException("")  # not the shape of any ciphertext made here
    blob = _blob(key, req.metadata_bytes, req.iv, req.ciphertext, req.tag)
    call.context_prefix = XKS_CONTEXT_PREFIX
    out = await crypto.decrypt(
        deps,
        call,
        DecryptRequest(ciphertext_blob=blob, encryption_context=context, key_id=req.key_id),
    )
    result = out.result
    assert isinstance(result, DecryptResult)
    return Outcome(XksDecryptResult(result.plaintext))
