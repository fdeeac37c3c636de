"""Keys of custom key stores in use: whether a key is available now, its
DescribeKey metadata, AES-GCM inside its store's token (ciphertext blob
v3, ``keys/wire.py``), and the asymmetric keys held there (RSA and EC key
pairs the Cloud KMS and Azure doors make, docs/hsm.md): signatures and
RSA-OAEP decryption inside the token, the public key read from it,
verification and RSA-OAEP encryption in software with that public key.

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

from keycask import crypto
from keycask.crypto.ecdsa_sig import raw_to_der
from keycask.errors import (
    CustomKeyStoreInvalidStateException,
    InvalidCiphertextException,
    KMSInternalException,
    KMSInvalidStateException,
    ThrottlingException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.hsm.token import (
    DecryptFailed,
    HsmError,
    MechanismRefused,
    ObjectMissing,
    Token,
    TokenBusy,
    TokenUnavailable,
)
from keycask.keys.custom_stores import CONNECTED, CustomKeyStore
from keycask.keys.model import Key, KeySpec, KeyUsage
from keycask.keys.wire import hsm_blob_header, parse_hsm_blob
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.version_gate import check_version_state

log = logging.getLogger("keycask")

# The EC key specs an HSM key pair may have (key usage SIGN_VERIFY); RSA
# ones sign or decrypt.
EC_SIGNING_SPECS = frozenset({"ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1"})


def token_makes(spec: KeySpec, usage: KeyUsage) -> bool:
    """Whether keycask makes a key of ``spec`` and ``usage`` in a token: an
    AES-256 key (SYMMETRIC_DEFAULT) or an RSA key pair for encryption, an
    RSA or EC (not Edwards) key pair for signing."""
    if spec is KeySpec.SYMMETRIC_DEFAULT or (spec.is_rsa and usage is KeyUsage.ENCRYPT_DECRYPT):
        return usage is KeyUsage.ENCRYPT_DECRYPT
    if usage is KeyUsage.SIGN_VERIFY:
        return spec.is_rsa or spec.value in EC_SIGNING_SPECS
    return False


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


async def _pair_token(deps: Deps, key: Key) -> Token:
    """The token of an HSM key pair, once its one version's Cloud KMS state
    (disabled, scheduled for destruction, destroyed: any door) allows use."""
    check_version_state(key, 1, await deps.keys.gcp_key(key.key_id))
    return await _token_for(deps, key)


def _unavailable(key: Key, error: HsmError) -> Exception:
    if isinstance(error, TokenBusy):
        return ThrottlingException(f"Too many requests wait for the HSM of {key.arn}; retry later.")
    if isinstance(error, TokenUnavailable):
        return KMSInvalidStateException(f"{key.arn} is unavailable: its HSM does not answer.")
    if isinstance(error, ObjectMissing):
        return KMSInvalidStateException(
            f"{key.arn} is unavailable: its key material is not in its HSM."
        )
    if isinstance(error, MechanismRefused):
        return UnsupportedOperationException(f"The HSM of {key.arn} cannot do this: {error}.")
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


# Sign's algorithms as the token does them: (scheme, hash).
_SIGNING = {
    "ECDSA_SHA_256": ("ECDSA", "SHA256"),
    "ECDSA_SHA_384": ("ECDSA", "SHA384"),
    "ECDSA_SHA_512": ("ECDSA", "SHA512"),
    "RSASSA_PKCS1_V1_5_SHA_256": ("PKCS1", "SHA256"),
    "RSASSA_PKCS1_V1_5_SHA_384": ("PKCS1", "SHA384"),
    "RSASSA_PKCS1_V1_5_SHA_512": ("PKCS1", "SHA512"),
    "RSASSA_PSS_SHA_256": ("PSS", "SHA256"),
    "RSASSA_PSS_SHA_384": ("PSS", "SHA384"),
    "RSASSA_PSS_SHA_512": ("PSS", "SHA512"),
}
_OAEP = {"RSAES_OAEP_SHA_1": "SHA1", "RSAES_OAEP_SHA_256": "SHA256"}


async def sign(
    deps: Deps, call: Call, key: Key, algorithm: str, message: bytes, *, message_type: str
) -> bytes:
    """Sign's signature by the key's private half in its token (already
    authorized, the algorithm checked against the key spec): a RAW message
    is hashed here, a DIGEST signed as it is; ECDSA answers in DER, as
    AWS KMS does."""
    assert key.hsm_object is not None
    if algorithm not in _SIGNING:
        raise ValidationException(f"{algorithm} is not a signing algorithm of an HSM key.")
    scheme, hash_name = _SIGNING[algorithm]
    if message_type == "RAW":
        digest = hashlib.new(hash_name.lower(), message).digest()
    elif message_type == "DIGEST":
        digest = message
        size = hashlib.new(hash_name.lower()).digest_size
        if len(digest) != size:
            raise ValidationException(
                f"a {algorithm} digest must be {size} bytes, not {len(digest)}"
            )
    else:
        raise ValidationException(f"message type {message_type!r} is not valid for {algorithm}")
    token = await _pair_token(deps, key)
    try:
        signature = await token.sign(key.hsm_object, scheme, hash_name, digest)
    except HsmError as error:
        raise _unavailable(key, error) from None
    call.used_keys = (*call.used_keys, key.key_id)
    return raw_to_der(signature) if scheme == "ECDSA" else signature


async def public_der(deps: Deps, key: Key) -> bytes:
    """The key pair's public key, read from its token (DER SPKI)."""
    assert key.hsm_object is not None
    token = await _pair_token(deps, key)
    try:
        return await token.public_key(key.hsm_object)
    except HsmError as error:
        raise _unavailable(key, error) from None


async def verify(
    deps: Deps,
    call: Call,
    key: Key,
    request: tuple[str, bytes, str, bytes],
) -> bool:
    """Verify (algorithm, message, message type, signature) in software with
    the public key from the token (which must answer: an Unavailable key
    verifies nothing, as AWS's)."""
    public = await public_der(deps, key)
    call.used_keys = (*call.used_keys, key.key_id)
    return crypto.verify_with_public_key(key.key_spec.value, public, *request)


async def encrypt(deps: Deps, call: Call, key: Key, algorithm: str, plaintext: bytes) -> bytes:
    """RSAES-OAEP with the public key from the token, in software."""
    public = await public_der(deps, key)
    call.used_keys = (*call.used_keys, key.key_id)
    return crypto.encrypt_with_public_key(key.key_spec.value, public, algorithm, plaintext)


async def decrypt(deps: Deps, call: Call, key: Key, algorithm: str, ciphertext: bytes) -> bytes:
    """RSAES-OAEP decryption inside the token (already authorized)."""
    assert key.hsm_object is not None
    if algorithm not in _OAEP:
        raise ValidationException(f"{algorithm} is not an encryption algorithm of an HSM key.")
    token = await _pair_token(deps, key)
    try:
        plaintext = await token.decrypt_oaep(key.hsm_object, _OAEP[algorithm], ciphertext)
    except DecryptFailed:
        raise InvalidCiphertextException("") from None
    except HsmError as error:
        raise _unavailable(key, error) from None
    call.used_keys = (*call.used_keys, key.key_id)
    return plaintext


async def generate(deps: Deps, store: CustomKeyStore, spec: KeySpec, usage: KeyUsage) -> str:
    """A new key in the store's token for a key of ``spec`` and ``usage``
    (an AES-256 key, or a key pair); the id of its token object(s)."""
    token = None if store.cluster_id is None else deps.hsm.get(store.cluster_id)
    if token is None:
        raise CustomKeyStoreInvalidStateException(f"Custom key store {store.store_id} has no HSM.")
    try:
        if spec is KeySpec.SYMMETRIC_DEFAULT:
            return await token.generate()
        return await token.generate_pair(spec.value, usage.value)
    except TokenBusy:
        raise ThrottlingException("Too many requests wait for the HSM; retry later.") from None
    except MechanismRefused as error:
        raise UnsupportedOperationException(
            f"The HSM {store.cluster_id} of custom key store {store.store_id} cannot make "
            f"this key: {error}."
        ) from None
    except HsmError:
        raise CustomKeyStoreInvalidStateException(
            f"The HSM {store.cluster_id} of custom key store {store.store_id} could not "
            "generate the key."
        ) from None


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
