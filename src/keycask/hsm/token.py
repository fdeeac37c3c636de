"""One PKCS#11 token that holds HSM-backed keys: generate an AES-256 key
inside it, encrypt and decrypt with AES-GCM inside it; generate an RSA or
EC key pair inside it, sign and RSA-OAEP decrypt with it, read its public
key (``pairs`` holds what python-pkcs11 is asked for those); destroy a key.

python-pkcs11 blocks, so every call runs on a thread of the token's own (one
worker): the event loop never waits on the token, and the token's one
logged-in session is only ever used by that thread, one call at a time (a
PKCS#11 session must not be shared by concurrent threads). At most
``MAX_QUEUED`` calls wait per token; a caller beyond that gets ``TokenBusy``
at once, so a slow token cannot queue requests without limit.

An AES key made here is a token object (CKA_TOKEN) that is sensitive, never
extractable, private, immutable, able to encrypt and decrypt and nothing
else (no wrap, no unwrap), with AES-GCM as its only allowed mechanism:
whoever holds the PIN can use it but not carry it, or any other key, out of
the token through it. keycask names it by a random 16-byte CKA_ID (and a
CKA_LABEL ``keycask-<hex id>`` for people reading the token); a key pair's
two halves share one such id and label (``pairs`` says what they may do).

The PIN is the operator's (``--hsm-pin-file`` or an environment variable)
and is never logged, stored or put in an error; library errors become
``HsmError`` naming the library's error class only (their messages may
echo arguments).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as pkcs11_errors
from pkcs11.attributes import AttributeMapper
from pkcs11.mechanisms import GCMParams

from keycask.hsm import pairs

T = TypeVar("T")

KEY_BITS = 256
GCM_IV_SIZE = 12
GCM_TAG_BITS = 128
OBJECT_ID_SIZE = 16
LABEL_PREFIX = "keycask-"
MAX_QUEUED = 64
MAX_HANDLES = 4096

_ULONG = struct.Struct("L")  # CK_ULONG, native


class HsmError(Exception):
    """A token call failed for a reason other than the ones below."""


class TokenUnavailable(HsmError):
    """The token is not there (removed, never inserted, its library missing)
    or its PIN no longer logs in: its keys cannot be used now."""


class TokenBusy(HsmError):
    """Too many calls already wait for this token."""


class DecryptFailed(HsmError):
    """The token refused a ciphertext: wrong key, tag or AAD, or damage."""


class MechanismRefused(HsmError):
    """The token does not do what was asked of this key (a mechanism or its
    parameters it lacks): said plainly, for the caller to pass on."""


class ObjectMissing(HsmError):
    """The token has no key with that id (destroyed, or never made here)."""


def attribute_mapper() -> AttributeMapper:
    """python-pkcs11's mapper, taught ``CKA_ALLOWED_MECHANISMS`` (an array of
    CK_MECHANISM_TYPE), which it does not handle itself."""
    mapper = AttributeMapper()
    mapper.register_handler(
        Attribute.ALLOWED_MECHANISMS,
        lambda mechanisms: b"".join(_ULONG.pack(int(m)) for m in mechanisms),
        lambda data: [int(v) for (v,) in _ULONG.iter_unpack(data)],
    )
    return mapper


# Errors that say the token or the session went away: the session is
# dropped, the next call opens a new one.
_GONE = (
    pkcs11_errors.NoSuchToken,
    pkcs11_errors.TokenNotPresent,
    pkcs11_errors.TokenNotRecognised,
    pkcs11_errors.DeviceRemoved,
    pkcs11_errors.DeviceError,
    pkcs11_errors.SessionClosed,
    pkcs11_errors.SessionHandleInvalid,
    pkcs11_errors.UserNotLoggedIn,
    pkcs11_errors.PinIncorrect,
    pkcs11_errors.PinInvalid,
    pkcs11_errors.PinLenRange,
    pkcs11_errors.PinLocked,
    pkcs11_errors.PinExpired,
    pkcs11_errors.MultipleTokensReturned,
)
# Ways tokens report a failed GCM tag.
_BAD_CIPHERTEXT = (
    pkcs11_errors.EncryptedDataInvalid,
    pkcs11_errors.EncryptedDataLenRange,
    pkcs11_errors.GeneralError,
    pkcs11_errors.FunctionFailed,
)

# Ways tokens refuse a mechanism, its parameters or a key type or curve.
_REFUSED = (
    pkcs11_errors.MechanismInvalid,
    pkcs11_errors.MechanismParamInvalid,
    pkcs11_errors.ArgumentsBad,
    pkcs11_errors.DomainParamsInvalid,
    pkcs11_errors.KeySizeRange,
    pkcs11_errors.TemplateInconsistent,
    pkcs11_errors.AttributeValueInvalid,
)


# One lock per PKCS#11 library: python-pkcs11 initializes a library with
# C_Initialize(NULL), under which a library may skip its own locking
# (SoftHSM2 does), so two tokens of one library must not call into it at once.
_MODULE_LOCKS: dict[str, threading.Lock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def _module_lock(module: str) -> threading.Lock:
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(os.path.realpath(module), threading.Lock())


# How long a token that answered counts as present without asking again: a
# DescribeKey of an HSM-backed key must not cost a call on the token's one
# thread each time (whoever may describe keys could crowd out the crypto).
_PRESENT_FOR_SECONDS = 1.0


class Token:
    """A configured token: ``name`` (what AWS calls the cluster id), the
    library and the token's label, and the PIN keycask logs in with."""

    def __init__(self, name: str, module: str, token_label: str, pin: str) -> None:
        self.name = name
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self._session: Any = None
        # Key handles by object id, for the current session only (a handle
        # names an object within a session): one C_FindObjects per key, not
        # three calls (init, find, final) per use. Dropped with the session.
        self._handles: dict[str, Any] = {}
        self._lock = _module_lock(module)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keycask-hsm")
        self._queued = 0
        self._present_until = float("-inf")

    def __repr__(self) -> str:
        return f"Token({self.name!r}, {self.module!r}, {self.token_label!r}, <PIN redacted>)"

    # -- what the service awaits --

    def pin_matches(self, candidate: str) -> bool:
        """Whether ``candidate`` is the configured PIN, in constant time."""
        return hmac.compare_digest(candidate.encode("utf-8"), self._pin.encode("utf-8"))

    async def present(self) -> bool:
        """The token is there and the configured PIN logs in (a token that
        answered less than a second ago is taken to be there still)."""
        if time.monotonic() < self._present_until:
            return True
        try:
            await self._run(self._open)
        except TokenBusy:
            return True  # busy answering others' calls: there
        except HsmError:
            return False
        self._present_until = time.monotonic() + _PRESENT_FOR_SECONDS
        return True

    async def generate(self) -> str:
        """A new AES-256 key in the token; its id (32 hex digits)."""
        object_id = secrets.token_bytes(OBJECT_ID_SIZE)
        await self._run(self._generate, object_id)
        return object_id.hex()

    async def generate_pair(self, spec: str, usage: str) -> str:
        """A new key pair of ``spec`` (RSA_2048, ECC_NIST_P256, ...) for
        ``usage`` (SIGN_VERIFY or ENCRYPT_DECRYPT) in the token; the id its
        two halves share (32 hex digits)."""
        if spec not in pairs.SPECS or usage not in (pairs.SIGN_VERIFY, pairs.ENCRYPT_DECRYPT):
            raise MechanismRefused(f"keycask makes no {spec} key pair for {usage} in an HSM")
        if usage == pairs.ENCRYPT_DECRYPT and spec not in pairs.RSA_BITS:
            raise MechanismRefused(f"a {spec} key cannot decrypt")
        object_id = secrets.token_bytes(OBJECT_ID_SIZE)
        await self._run(self._generate_pair, spec, usage, object_id)
        return object_id.hex()

    async def sign(self, object_id: str, scheme: str, hash_name: str, digest: bytes) -> bytes:
        """The private key's signature of ``digest``: ``scheme`` ECDSA
        (r || s), PKCS1 or PSS, ``hash_name`` the digest's (SHA256, ...)."""
        if scheme not in pairs.SCHEMES or hash_name not in pairs.HASHES:
            raise MechanismRefused(f"keycask does not sign {scheme} with {hash_name} in an HSM")
        return await self._run(self._private_call, object_id, pairs.sign, scheme, hash_name, digest)

    async def decrypt_oaep(self, object_id: str, hash_name: str, ciphertext: bytes) -> bytes:
        """RSAES-OAEP decryption with the private key (MGF1 over
        ``hash_name``, SHA1 or SHA256, no label)."""
        if hash_name not in ("SHA1", "SHA256"):
            raise MechanismRefused(f"keycask does not decrypt RSA-OAEP with {hash_name}")
        return await self._run(
            self._private_call, object_id, pairs.decrypt_oaep, hash_name, ciphertext
        )

    async def public_key(self, object_id: str) -> bytes:
        """The pair's public key (kept in the token) as DER SPKI."""
        return await self._run(self._public_key, object_id)

    async def has(self, object_id: str) -> bool:
        """Whether the token holds the key (an AES key or a pair's private half)."""
        return await self._run(
            lambda: (
                self._find(object_id) is not None
                or self._find(object_id, ObjectClass.PRIVATE_KEY) is not None
            )
        )

    async def encrypt(self, object_id: str, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """(IV, ciphertext and tag): AES-GCM inside the token, a random
        12-byte IV from keycask's CSPRNG, ``aad`` authenticated."""
        iv = secrets.token_bytes(GCM_IV_SIZE)
        sealed = await self._run(self._crypt, object_id, "encrypt", iv, aad, plaintext)
        return iv, sealed

    async def decrypt(self, object_id: str, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        return await self._run(self._crypt, object_id, "decrypt", iv, aad, sealed)

    async def random(self, size: int) -> bytes:
        """``size`` random bytes from the token's own generator."""
        return await self._run(lambda: bytes(self._open().generate_random(size * 8)))

    async def destroy(self, object_id: str) -> bool:
        """Destroy the key (both halves of a pair); False when the token had
        no such key."""
        return await self._run(self._destroy, object_id)

    def close(self) -> None:
        with self._lock:
            self._drop()
        self._executor.shutdown(wait=False)

    # -- on the token's thread --

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._queued >= MAX_QUEUED:
            raise TokenBusy(f"too many calls wait for the HSM {self.name}")
        self._queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._locked, function, *args
            )
        finally:
            self._queued -= 1

    def _locked(self, function: Callable[..., T], *args: Any) -> T:
        with self._lock:
            try:
                return function(*args)
            except _GONE as exc:
                self._drop()
                raise TokenUnavailable(
                    f"the HSM {self.name} is not available ({type(exc).__name__})"
                ) from None
            except pkcs11_errors.PKCS11Error as exc:
                raise HsmError(f"PKCS#11 error: {type(exc).__name__}") from None

    def _drop(self) -> None:
        self._present_until = float("-inf")
        self._handles.clear()
        session, self._session = self._session, None
        if session is not None:
            with suppress(pkcs11_errors.PKCS11Error):
                session.close()

    def _open(self) -> Any:
        if self._session is not None:
            # A cheap call that fails once the token has gone.
            self._session.token.slot.get_token()
            return self._session
        try:
            lib = pkcs11.lib(self.module)
        except (OSError, RuntimeError) as exc:
            raise TokenUnavailable(
                f"cannot load the PKCS#11 module of the HSM {self.name} ({type(exc).__name__})"
            ) from None
        token = lib.get_token(token_label=self.token_label)
        mapper = attribute_mapper()
        try:
            self._session = token.open(rw=True, user_pin=self._pin, attribute_mapper=mapper)
        except pkcs11_errors.UserAlreadyLoggedIn:
            # PKCS#11 logins are the process's: another session on this
            # token (the seal's, at start) is logged in, and so is this one.
            self._session = token.open(rw=True, attribute_mapper=mapper)
        return self._session

    def _find(self, object_id: str, cls: ObjectClass = ObjectClass.SECRET_KEY) -> Any:
        """The object of class ``cls`` with that id (an AES key for a secret
        key), or None."""
        session = self._open()
        cached = f"{object_id}/{int(cls)}"
        handle = self._handles.get(cached)
        if handle is not None:
            # Another process (a worker, a node) may have destroyed the object
            # and the token reused its handle: one attribute read proves it is
            # still the key it was.
            try:
                if bytes(handle[Attribute.ID]) == bytes.fromhex(object_id):
                    return handle
            except pkcs11_errors.ObjectHandleInvalid:
                pass
            del self._handles[cached]
        template: dict[Attribute, Any] = {
            Attribute.CLASS: cls,
            Attribute.ID: bytes.fromhex(object_id),
        }
        if cls == ObjectClass.SECRET_KEY:
            template[Attribute.KEY_TYPE] = KeyType.AES
        found = list(session.get_objects(template))
        if len(found) > 1:
            raise HsmError(f"the HSM {self.name} holds several keys with one id")
        if not found:
            return None
        if len(self._handles) >= MAX_HANDLES:
            self._handles.clear()
        self._handles[cached] = found[0]
        return found[0]

    def _generate(self, object_id: bytes) -> None:
        session = self._open()
        session.generate_key(
            KeyType.AES,
            KEY_BITS,
            id=object_id,
            label=LABEL_PREFIX + object_id.hex(),
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.PRIVATE: True,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
                Attribute.ALLOWED_MECHANISMS: [Mechanism.AES_GCM],
                Attribute.MODIFIABLE: False,
            },
        )

    def _crypt(self, object_id: str, direction: str, iv: bytes, aad: bytes, data: bytes) -> bytes:
        key = self._find(object_id)
        if key is None:
            raise ObjectMissing(f"the HSM {self.name} has no key {object_id}")
        params = GCMParams(iv, aad, GCM_TAG_BITS)
        if direction == "encrypt":
            out: bytes = key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            return out
        try:
            out = key.decrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        except _BAD_CIPHERTEXT:
            raise DecryptFailed("the HSM refused the ciphertext") from None
        return out

    def _generate_pair(self, spec: str, usage: str, object_id: bytes) -> None:
        try:
            pairs.generate(self._open(), spec, usage, object_id, LABEL_PREFIX + object_id.hex())
        except _REFUSED as exc:
            raise MechanismRefused(
                f"the HSM {self.name} cannot make a {spec} key pair ({type(exc).__name__})"
            ) from None

    def _private_call(self, object_id: str, function: Callable[..., bytes], *args: Any) -> bytes:
        key = self._find(object_id, ObjectClass.PRIVATE_KEY)
        if key is None:
            raise ObjectMissing(f"the HSM {self.name} has no key {object_id}")
        try:
            return function(key, *args)
        except AttributeError:
            # python-pkcs11 gives a key the methods its CKA_SIGN/CKA_DECRYPT allow.
            raise MechanismRefused(f"the key {object_id} cannot do that (its key usage)") from None
        except _BAD_CIPHERTEXT:
            if function is pairs.decrypt_oaep:
                raise DecryptFailed("the HSM refused the ciphertext") from None
            raise
        except _REFUSED as exc:
            raise MechanismRefused(
                f"the HSM {self.name} refused the mechanism or its parameters "
                f"({type(exc).__name__})"
            ) from None

    def _public_key(self, object_id: str) -> bytes:
        key = self._find(object_id, ObjectClass.PUBLIC_KEY)
        if key is None:
            raise ObjectMissing(f"the HSM {self.name} has no key {object_id}")
        return pairs.public_spki(key)

    def _destroy(self, object_id: str) -> bool:
        destroyed = False
        for cls in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            key = self._find(object_id, cls)
            if key is None:
                continue
            self._handles.pop(f"{object_id}/{int(cls)}", None)
            key.destroy()
            destroyed = True
        return destroyed
