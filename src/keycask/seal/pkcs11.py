"""The PKCS#11 seal: the root key, wrapped by an AES key that never leaves a token.

Why one module of ~600 lines: it is the only importer of ``pkcs11`` (an
import-linter contract), so everything that touches the token lives here: the
two mechanisms, the key restrictions they depend on, the checks that refuse a
weaker key, and the seal type's plug-in entry. Splitting it would spread the
token's surface over several modules the contract would then have to allow.

``init`` generates, inside the token, an AES-256 key that is sensitive and not
extractable, generates the root key in keycask (the OS CSPRNG) and has the token
encrypt it. ``<data>/seal.json`` (mode 0600) records where the token key lives,
the mechanism and the wrapped root; ``unseal`` asks the token to decrypt it at
every start, so the server unseals itself without a person present.

Mechanisms, in order of preference:

- ``AES_GCM`` (C_Encrypt/C_Decrypt), with a random 12-byte IV and the key
  label in the AAD, so a wrapped root cannot be moved to another key's file;
- ``AES_KEY_WRAP_PAD`` (RFC 5649 key wrap, C_WrapKey/C_UnwrapKey): the root is
  brought into the token as a session-only secret object, wrapped, and the
  session object destroyed; unsealing unwraps it into a session object whose
  value is read once and destroyed with the session.

A token offering neither is refused at ``init``, listing what it does offer.

The token key can do only what the seal does, with only the seal's
mechanism (``CKA_ALLOWED_MECHANISMS``), and cannot be changed
(``CKA_MODIFIABLE`` false): whoever holds the PIN (the keycask host, for
unattended restarts) must not be able to use it to wrap, and so carry out of
the token, any other extractable key there. With AES-GCM it encrypts and
decrypts, never wraps or unwraps, and AES-GCM is no wrapping mechanism. With
key wrap the stored key only *unwraps*: a session key does the one wrap at
``init``, is stripped of WRAP and copied into the token as an immutable
object, and the session original is destroyed; a token that refuses that is
refused. (SoftHSM2 2.6.1 enforces both the capability flags and
``CKA_ALLOWED_MECHANISMS``.) Keys made by older keycask (all four
capabilities, any mechanism) still unseal, with a loud warning at every start
saying how to move to a restricted key (rekey to a new key label).

The PIN comes from the caller (an environment variable or a file: the CLI's
job) and is never logged, stored or put in an error message. Library errors
become ``SealError`` naming the library's error class only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as pkcs11_errors
from pkcs11.mechanisms import GCMParams

from keycask.crypto import KeyMaterial, random_bytes
from keycask.errors import SealError
from keycask.hsm.token import attribute_mapper
from keycask.seal import sealfile
from keycask.seal.types import Option, Params, Secret, SecretSource, ShareFile, StartupSource

log = logging.getLogger("keycask")

SEAL_FILE = "seal.json"
SEAL_TYPE = "pkcs11"
ROOT_KEY_SIZE = 32
WRAPPING_KEY_BITS = 256
GCM_IV_SIZE = 12
GCM_TAG_BITS = 128
AAD_PREFIX = b"keycask pkcs11 seal v1|"
WRONG_PIN = "wrong PIN for the PKCS#11 token"

GCM = "AES_GCM"
KEY_WRAP_PAD = "AES_KEY_WRAP_PAD"
# Preference order: the first one the token offers is used.
SAFE_MECHANISMS: dict[str, Mechanism] = {
    GCM: Mechanism.AES_GCM,
    KEY_WRAP_PAD: Mechanism.AES_KEY_WRAP_PAD,
}


# What the stored key may do, per mechanism: (capabilities it has, those it must not).
_CAPABILITIES: dict[str, tuple[frozenset[Attribute], frozenset[Attribute]]] = {
    GCM: (
        frozenset({Attribute.ENCRYPT, Attribute.DECRYPT}),
        frozenset({Attribute.WRAP, Attribute.UNWRAP}),
    ),
    KEY_WRAP_PAD: (
        frozenset({Attribute.UNWRAP}),
        frozenset({Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP}),
    ),
}
_FLAGS = {
    Attribute.ENCRYPT: MechanismFlag.ENCRYPT,
    Attribute.DECRYPT: MechanismFlag.DECRYPT,
    Attribute.WRAP: MechanismFlag.WRAP,
    Attribute.UNWRAP: MechanismFlag.UNWRAP,
}


def choose_mechanism(offered: Iterable[Mechanism]) -> str:
    """The name of the safest mechanism in ``offered``: AES-GCM, else AES key
    wrap with padding; ``SealError`` listing what is offered if neither is."""
    available = set(offered)
    for name, mechanism in SAFE_MECHANISMS.items():
        if mechanism in available:
            return name
    listed = ", ".join(sorted(_mechanism_name(m) for m in available)) or "nothing"
    raise SealError(
        "the PKCS#11 token offers no safe mechanism to wrap the root key "
        f"(needs {' or '.join(SAFE_MECHANISMS)}); it offers: {listed}"
    )


def _mechanism_name(mechanism: Any) -> str:
    name = getattr(mechanism, "name", None)
    return str(name) if name else f"0x{int(mechanism):08x}"


def _aad(key_label: str) -> bytes:
    return AAD_PREFIX + key_label.encode("utf-8")


def _require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise SealError(f"the PKCS#11 {what} must be a non-empty string")
    return value


def module_allowed(module: str, allowed: Iterable[str]) -> bool:
    """Whether ``module`` is one of the libraries the server was configured
    with. Loading a library runs its code in this process, beside the PIN and
    the root key, so the path a seal file names is never enough on its own: a
    data dir (or a restored backup) could name a library it carries itself."""
    real = os.path.realpath(module)
    return any(os.path.realpath(m) == real for m in allowed)


def sealing_token(directory: Path, filename: str = SEAL_FILE) -> tuple[str, str] | None:
    """(real path of the module, token label) of the token whose key seals
    the root key in ``directory``, or None when no PKCS#11 seal is there: the
    server refuses that token for HSM-backed keys (app.py)."""
    try:
        document = json.loads((directory / filename).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("type") != SEAL_TYPE:
        return None
    return os.path.realpath(str(document.get("module", ""))), str(document.get("token_label"))


class Pkcs11Seal:
    name = SEAL_TYPE

    def __init__(
        self, directory: Path, filename: str = SEAL_FILE, *, modules: Iterable[str]
    ) -> None:
        """``modules``: the PKCS#11 libraries this process may load (its own
        configuration, never the data dir's)."""
        self.path = Path(directory) / filename
        self._modules = tuple(modules)

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        module: str,
        token_label: str,
        key_label: str,
        pin: str,
        mechanism: str | None = None,
        root: KeyMaterial | None = None,
        filename: str = SEAL_FILE,
    ) -> KeyMaterial:
        """Generate the wrapping key in the token and a new random root key,
        write the wrapped root and return it. Refuses to overwrite an existing
        seal file or to reuse an existing key with ``key_label``.

        ``mechanism`` forces one of ``SAFE_MECHANISMS`` (it must be offered);
        by default the safest offered is chosen. ``root`` is the key to wrap
        (by default a new random one)."""
        seal_ = cls(directory, filename, modules=[module])
        _require_text(module, "module path")
        _require_text(token_label, "token label")
        _require_text(key_label, "key label")
        _require_text(pin, "PIN")
        if mechanism is not None and mechanism not in SAFE_MECHANISMS:
            raise SealError(f"unknown mechanism {mechanism!r}; use one of {list(SAFE_MECHANISMS)}")
        if seal_.path.exists():
            raise SealError(f"{seal_.path} already exists; refusing to replace it")

        root = KeyMaterial(random_bytes(ROOT_KEY_SIZE)) if root is None else root
        with _session(module, token_label, pin, rw=True) as (token, session):
            offered = _call(token.slot.get_mechanisms)
            if mechanism is None:
                chosen = choose_mechanism(offered)
            elif SAFE_MECHANISMS[mechanism] not in offered:
                raise SealError(f"the PKCS#11 token does not offer {mechanism}")
            else:
                chosen = mechanism
            if _find_keys(session, key_label):
                raise SealError(
                    f"the token already has a key labelled {key_label!r}; "
                    "refusing to reuse it (choose another label)"
                )
            key = _generate(session, key_label, chosen)
            try:
                document: dict[str, Any] = {
                    "type": SEAL_TYPE,
                    "module": module,
                    "token_label": token_label,
                    "key_label": key_label,
                    "mechanism": chosen,
                }
                if chosen == GCM:
                    iv = random_bytes(GCM_IV_SIZE)
                    wrapped = _call(
                        key.encrypt,
                        root.reveal(),
                        mechanism=Mechanism.AES_GCM,
                        mechanism_param=GCMParams(iv, _aad(key_label), GCM_TAG_BITS),
                    )
                    document["iv"] = base64.b64encode(iv).decode("ascii")
                else:
                    wrapped = _wrap_with_key_wrap_pad(session, key, root)
                    key = _keep_unwrap_only(key)
                _check_protected(key, key_label)
                if _broader(key, chosen):
                    raise SealError(
                        f"the PKCS#11 token did not keep the key labelled {key_label!r} "
                        f"restricted to {chosen}: {_broader(key, chosen)}"
                    )
                document["wrapped_root"] = base64.b64encode(wrapped).decode("ascii")
                # Prove the token gives the root back before anything depends on it.
                if not _unwrap(session, key, document, chosen, key_label).matches(root):
                    raise SealError("the PKCS#11 token did not return the root key it wrapped")
                sealfile.write_new(seal_.path, document)
            except BaseException:
                # No seal file means nothing is under this key: leave no orphan.
                with suppress(pkcs11_errors.PKCS11Error):
                    key.destroy()
                raise
        return root

    def unseal(self, pin: str) -> KeyMaterial:
        """The root key, decrypted by the token. Never writes anything."""
        _require_text(pin, "PIN")
        document = self._read()
        module = _require_text(document.get("module"), "module path in the seal file")
        if not module_allowed(module, self._modules):
            raise SealError(
                f"{self.path} names the PKCS#11 module {module!r}, which this process was not "
                "configured to load: give it with --pkcs11-module (or KEYCASK_PKCS11_MODULE / "
                "KEYCASK_PKCS11_MODULES) if it is the HSM's library"
            )
        token_label = _require_text(document.get("token_label"), "token label in the seal file")
        key_label = _require_text(document.get("key_label"), "key label in the seal file")
        mechanism = document.get("mechanism")
        if mechanism not in SAFE_MECHANISMS:
            raise SealError(f"{self.path} names an unsupported mechanism")
        with _session(module, token_label, pin, rw=False) as (token, session):
            # The start-up probe: a token (or a firmware update) that stopped
            # offering the mechanism is named as such, not as a failed decrypt.
            offered = set(_call(token.slot.get_mechanisms))
            if SAFE_MECHANISMS[mechanism] not in offered:
                listed = ", ".join(sorted(_mechanism_name(m) for m in offered)) or "nothing"
                raise SealError(
                    f"the PKCS#11 token {token_label!r} no longer offers {mechanism}, which "
                    f"wraps this root key; it offers: {listed}"
                )
            keys = _find_keys(session, key_label)
            if not keys:
                raise SealError(
                    f"the PKCS#11 token {token_label!r} has no key labelled {key_label!r} "
                    "(was it deleted?); the root key cannot be unsealed without it"
                )
            if len(keys) > 1:
                raise SealError(
                    f"the PKCS#11 token {token_label!r} has {len(keys)} keys labelled "
                    f"{key_label!r}; refusing to guess which one wraps the root key"
                )
            key = keys[0]
            _check_protected(key, key_label)
            broader = _broader(key, mechanism)
            if broader:
                # Refusing would stop every node made by an older keycask
                # from restarting; the operator moves to a restricted key.
                log.warning(
                    "SECURITY: the PKCS#11 key labelled %r that seals the root key is not"
                    " restricted to what the seal does (%s): whoever holds the PIN can use"
                    " it to wrap, and so export, other extractable keys of token %r. Move"
                    " the root to a new, restricted key: `keycask operator rekey --seal"
                    " pkcs11 --pkcs11-key-label <new label> ...` (then delete the old key).",
                    key_label,
                    broader,
                    token_label,
                )
            return _unwrap(session, key, document, mechanism, key_label)

    def _read(self) -> dict[str, Any]:
        document = sealfile.read(
            self.path,
            missing=f"no PKCS#11 seal at {self.path}; initialise one first",
            invalid=f"{self.path} is not a valid seal file",
        )
        if document.get("type") != SEAL_TYPE:
            raise SealError(f"{self.path} is not a PKCS#11 seal file")
        return document


def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a python-pkcs11 call; its errors become ``SealError`` naming the
    error class only (library messages may echo arguments)."""
    try:
        return function(*args, **kwargs)
    except pkcs11_errors.PinIncorrect:
        raise SealError(WRONG_PIN) from None
    except pkcs11_errors.PKCS11Error as exc:
        raise SealError(f"PKCS#11 error: {type(exc).__name__}") from None


@contextmanager
def _session(module: str, token_label: str, pin: str, *, rw: bool) -> Iterator[tuple[Any, Any]]:
    try:
        lib = pkcs11.lib(module)
    except (pkcs11_errors.PKCS11Error, OSError, RuntimeError) as exc:
        raise SealError(
            f"cannot load the PKCS#11 module {module!r} ({type(exc).__name__})"
        ) from None
    try:
        token = lib.get_token(token_label=token_label)
    except pkcs11_errors.NoSuchToken:
        raise SealError(f"no PKCS#11 token labelled {token_label!r} in {module!r}") from None
    except pkcs11_errors.MultipleTokensReturned:
        raise SealError(f"more than one PKCS#11 token is labelled {token_label!r}") from None
    except pkcs11_errors.PKCS11Error as exc:
        raise SealError(f"PKCS#11 error: {type(exc).__name__}") from None
    try:
        session = token.open(rw=rw, user_pin=pin, attribute_mapper=attribute_mapper())
    except (pkcs11_errors.PinIncorrect, pkcs11_errors.PinInvalid, pkcs11_errors.PinLenRange):
        raise SealError(WRONG_PIN) from None
    except pkcs11_errors.PinLocked:
        raise SealError("the PKCS#11 token's PIN is locked") from None
    except pkcs11_errors.PKCS11Error as exc:
        raise SealError(f"PKCS#11 error: {type(exc).__name__}") from None
    try:
        yield token, session
    finally:
        with suppress(pkcs11_errors.PKCS11Error):
            session.close()


def _find_keys(session: Any, key_label: str) -> list[Any]:
    return list(
        _call(
            session.get_objects,
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.LABEL: key_label,
            },
        )
    )


def _check_protected(key: Any, key_label: str) -> None:
    """Refuse a wrapping key that is (or ever was) readable out of the token."""
    for attribute, wanted in (
        (Attribute.SENSITIVE, True),
        (Attribute.EXTRACTABLE, False),
        (Attribute.ALWAYS_SENSITIVE, True),
        (Attribute.NEVER_EXTRACTABLE, True),
        (Attribute.TOKEN, True),
    ):
        value = _call(key.__getitem__, attribute)
        if bool(value) is not wanted:
            raise SealError(
                f"the PKCS#11 key labelled {key_label!r} has {attribute.name}={bool(value)}; "
                "the wrapping key must be sensitive and never extractable"
            )


def _generate(session: Any, key_label: str, mechanism: str) -> Any:
    """The wrapping key, able to do only what the seal does with it. For
    AES-GCM that is the stored key itself, immutable from birth; for key
    wrap it is a session key that still may wrap once (``_keep_unwrap_only``
    stores it without)."""
    wrap = mechanism == KEY_WRAP_PAD
    needed = _CAPABILITIES[mechanism][0] | ({Attribute.WRAP} if wrap else set())
    capabilities = MechanismFlag(0)
    for attribute in needed:
        capabilities |= _FLAGS[attribute]
    return _call(
        session.generate_key,
        KeyType.AES,
        WRAPPING_KEY_BITS,
        label=key_label,
        store=not wrap,
        capabilities=capabilities,
        template={
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
            Attribute.ALLOWED_MECHANISMS: [SAFE_MECHANISMS[mechanism]],
            Attribute.MODIFIABLE: wrap,  # until WRAP is dropped
        },
    )


def _keep_unwrap_only(key: Any) -> Any:
    """Drop WRAP from the session key that wrapped the root and store an
    immutable copy of it in the token; the session original is destroyed."""
    try:
        key[Attribute.WRAP] = False
        stored = key.copy({Attribute.TOKEN: True, Attribute.MODIFIABLE: False})
    except pkcs11_errors.PKCS11Error as exc:
        raise SealError(
            "the PKCS#11 token cannot store the key-wrap key without WRAP "
            f"({type(exc).__name__}); a key that may both wrap and unwrap would let "
            "the PIN holder export other keys of the token: use a token with AES_GCM"
        ) from None
    finally:
        with suppress(pkcs11_errors.PKCS11Error):
            key.destroy()
    return stored


def _broader(key: Any, mechanism: str) -> str:
    """What ``key`` may do beyond the seal's needs, or ``""``."""
    _, forbidden = _CAPABILITIES[mechanism]
    extra = [a.name for a in sorted(forbidden) if _attribute(key, a, True)]
    if _attribute(key, Attribute.MODIFIABLE, True):
        extra.append("MODIFIABLE")
    allowed = _attribute(key, Attribute.ALLOWED_MECHANISMS, None)
    if not allowed:
        extra.append("any mechanism")
    elif set(allowed) != {int(SAFE_MECHANISMS[mechanism])}:
        extra.append("other mechanisms")
    return ", ".join(extra)


def _attribute(key: Any, attribute: Attribute, unknown: Any) -> Any:
    """``key[attribute]``, or ``unknown`` when the token does not say."""
    try:
        return key[attribute]
    except pkcs11_errors.PKCS11Error:
        return unknown


def _wrap_with_key_wrap_pad(session: Any, key: Any, root: KeyMaterial) -> bytes:
    # C_Encrypt with key wrap is not universally supported (SoftHSM2 refuses
    # it): bring the root in as a session-only secret and C_WrapKey it.
    secret = _call(
        session.create_object,
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.VALUE: root.reveal(),
            Attribute.TOKEN: False,
            Attribute.SENSITIVE: False,
            Attribute.EXTRACTABLE: True,
        },
    )
    try:
        wrapped: bytes = _call(key.wrap_key, secret, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    finally:
        _call(secret.destroy)
    return wrapped


def _unwrap(
    session: Any, key: Any, document: dict[str, Any], mechanism: str, key_label: str
) -> KeyMaterial:
    bad_file = SealError("the PKCS#11 seal file is damaged or was not made by this token key")
    try:
        wrapped = base64.b64decode(document["wrapped_root"], validate=True)
        iv = base64.b64decode(document["iv"], validate=True) if mechanism == GCM else b""
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise bad_file from None
    if mechanism == GCM and len(iv) != GCM_IV_SIZE:
        raise bad_file
    try:
        if mechanism == GCM:
            raw = key.decrypt(
                wrapped,
                mechanism=Mechanism.AES_GCM,
                mechanism_param=GCMParams(iv, _aad(key_label), GCM_TAG_BITS),
            )
        else:
            secret = key.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.GENERIC_SECRET,
                wrapped,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                store=False,
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )
            try:
                raw = secret[Attribute.VALUE]
            finally:
                secret.destroy()
    except (
        pkcs11_errors.EncryptedDataInvalid,
        pkcs11_errors.EncryptedDataLenRange,
        pkcs11_errors.WrappedKeyInvalid,
        pkcs11_errors.WrappedKeyLenRange,
        pkcs11_errors.GeneralError,
        pkcs11_errors.FunctionFailed,
    ):
        # Tokens report a failed tag or integrity check in several ways.
        raise bad_file from None
    except pkcs11_errors.PKCS11Error as exc:
        raise SealError(f"PKCS#11 error: {type(exc).__name__}") from None
    if not isinstance(raw, bytes) or len(raw) != ROOT_KEY_SIZE:
        raise bad_file
    return KeyMaterial(raw)


class Pkcs11Type:
    """The PKCS#11 seal as a ``SealType``: the token keeps the wrapping key,
    so a rekey to it is verified by the server reading the root back."""

    name = SEAL_TYPE
    title = "PKCS#11"
    secret = Secret.PIN
    proof = "the token's PIN"
    verified_by_server = True
    options = (
        Option(
            "--pkcs11-module",
            "Module",
            "path of the PKCS#11 library; for `operator rekey` the running server must "
            "allow it: start it with --pkcs11-module or KEYCASK_PKCS11_MODULES=/path/lib.so",
        ),
        Option("--pkcs11-token-label", "TokenLabel", "label of the token"),
        Option("--pkcs11-key-label", "KeyLabel", "label for the wrapping key to create"),
    )
    new_secret = SecretSource(
        "PIN: ",
        "--pkcs11-pin-file",
        "KEYCASK_PKCS11_PIN",
        help="file holding the PIN (or env KEYCASK_PKCS11_PIN)",
    )
    unseal_secret = SecretSource(
        "PIN: ",
        "--pin-file",
        "KEYCASK_PKCS11_PIN",
        help="PKCS#11 seal: the PIN, from this file (or env KEYCASK_PKCS11_PIN)",
    )
    current_secret = SecretSource(
        "Current PIN: ",
        "--current-pin-file",
        "KEYCASK_PKCS11_PIN",
        help="the current PKCS#11 PIN (or env KEYCASK_PKCS11_PIN)",
    )
    startup = StartupSource(
        "--pkcs11-pin-file",
        "KEYCASK_PKCS11_PIN_FILE",
        "PKCS#11 seal: unseal at start with the PIN in this file "
        "(or env KEYCASK_PKCS11_PIN / KEYCASK_PKCS11_PIN_FILE)",
        env="KEYCASK_PKCS11_PIN",
    )

    def validate(self, params: Params, *, modules: Iterable[str] | None) -> None:
        if not (params.module and params.token_label and params.key_label and params.pin):
            raise SealError("a PKCS#11 seal needs a module, token label, key label and PIN")
        if modules is not None and params.module not in set(modules):
            raise SealError(
                "that PKCS#11 module is not one this server may load: restart the server "
                "with --pkcs11-module or KEYCASK_PKCS11_MODULES naming the library (then "
                "unseal it and run the rekey again)"
            )

    def initialise(
        self, directory: Path, params: Params, *, root: KeyMaterial | None, filename: str
    ) -> tuple[KeyMaterial, list[str]]:
        if not (params.module and params.token_label and params.key_label and params.pin):
            raise SealError("a PKCS#11 seal needs a module, token label, key label and PIN")
        made = Pkcs11Seal.init(
            directory,
            module=params.module,
            token_label=params.token_label,
            key_label=params.key_label,
            pin=params.pin,
            root=root,
            filename=filename,
        )
        return made, []

    def check_written(
        self,
        directory: Path,
        filename: str,
        params: Params,
        root: KeyMaterial,
        modules: Iterable[str],
    ) -> None:
        assert params.pin is not None
        back = Pkcs11Seal(directory, filename, modules=modules).unseal(params.pin)
        same = back.matches(root)
        back.wipe()
        if not same:
            raise SealError("the PKCS#11 token did not give the new root key back")

    def open(
        self, directory: Path, filename: str, secret: str, *, modules: Iterable[str]
    ) -> KeyMaterial:
        return Pkcs11Seal(directory, filename, modules=modules).unseal(secret)

    def share_file(self, directory: Path, filename: str) -> ShareFile:
        raise SealError("a PKCS#11 seal takes no shares")
