"""The passphrase seal: the root key, wrapped under a key derived from a passphrase.

``<data>/seal.json`` (mode 0600) holds the scrypt parameters, the salt and the
root key sealed with AES-GCM under the derived key. The parameters live in the
file, not in code, so ``rekey`` can raise them later without losing the root
key. The passphrase comes from the caller (a prompt or a file): never argv,
where every user on the host can read it.

A *new* passphrase (``init``, ``rekey``) must have at least
``MIN_PASSPHRASE_CHARS`` characters, of at least ``MIN_DISTINCT_CHARS``
different ones: anyone with a copy of the seal file (a backup) can guess
offline, and scrypt at half a second a guess on one core still tries a
three-character passphrase in minutes on a few machines. NIST SP 800-63B
asks at least 8 characters of a memorized secret chosen by its user (15
where it is the only factor, in its 2024 revision); this one guards the
root key alone and is attacked offline, so keycask asks 16. Length is the
only rule that cannot be argued with; it does not catch a long dictionary
phrase, so generate the passphrase (six random words, or 20 random
characters). ``PassphraseType.validate`` refuses a weak one before anything
is written or any current share is asked for. Existing seals are never
checked: a short passphrase set before still unseals, and ``rekey`` moves it
to a strong one.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from keycask.crypto import (
    AuthenticationFailed,
    KeyMaterial,
    open_sealed,
    random_bytes,
    scrypt,
    seal,
)
from keycask.errors import SealError, WeakPassphrase
from keycask.seal import sealfile
from keycask.seal.types import Option, Params, Secret, SecretSource, ShareFile, StartupSource

SEAL_FILE = "seal.json"
SEAL_TYPE = "passphrase"
KDF = "scrypt"
# scrypt at 128 MiB and about half a second per guess on a server core.
DEFAULT_N = 2**17
DEFAULT_R = 8
DEFAULT_P = 1
SALT_SIZE = 16
ROOT_KEY_SIZE = 32
WRONG_PASSPHRASE = "wrong passphrase"  # noqa: S105 - an error message, not a password
MIN_PASSPHRASE_CHARS = 16
MIN_DISTINCT_CHARS = 6


def _passphrase_bytes(passphrase: bytes | str) -> bytes:
    if isinstance(passphrase, str):
        # NFC: the same passphrase typed on two systems may arrive as different
        # code point sequences (composed vs decomposed accents).
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not passphrase:
        raise SealError("the passphrase must not be empty")
    return passphrase


def passphrase_problem(passphrase: bytes | str) -> str | None:
    """Why ``passphrase`` is too weak for a new seal, or None. The message
    never repeats the passphrase."""
    text = passphrase.decode("utf-8", "replace") if isinstance(passphrase, bytes) else passphrase
    text = unicodedata.normalize("NFC", text)
    advice = (
        "anyone with a backup of the seal file can guess it offline; generate one, "
        "e.g. six random words"
    )
    if len(text) < MIN_PASSPHRASE_CHARS:
        has = f"{len(text)} character{'' if len(text) == 1 else 's'}"
        return f"the passphrase has {has}; it needs at least {MIN_PASSPHRASE_CHARS} ({advice})"
    if len(set(text)) < MIN_DISTINCT_CHARS:
        return (
            f"the passphrase repeats too few characters; it needs at least "
            f"{MIN_DISTINCT_CHARS} different ones ({advice})"
        )
    return None


def _new_passphrase_bytes(passphrase: bytes | str) -> bytes:
    secret = _passphrase_bytes(passphrase)
    problem = passphrase_problem(passphrase)
    if problem is not None:
        raise WeakPassphrase(problem)
    return secret


def _aad(n: int, r: int, p: int) -> bytes:
    # Binds the wrapped key to the seal type and the KDF parameters, so a file
    # whose parameters were edited is refused rather than half-used.
    return f"keycask seal v1 type={SEAL_TYPE} kdf={KDF} n={n} r={r} p={p}".encode("ascii")


class PassphraseSeal:
    name = SEAL_TYPE

    def __init__(self, directory: Path, filename: str = SEAL_FILE) -> None:
        self.path = Path(directory) / filename

    @classmethod
    def init(
        cls,
        directory: Path,
        passphrase: bytes | str,
        *,
        n: int = DEFAULT_N,
        r: int = DEFAULT_R,
        p: int = DEFAULT_P,
        root: KeyMaterial | None = None,
        filename: str = SEAL_FILE,
    ) -> KeyMaterial:
        """Seal ``root`` (by default a new random root key) under
        ``passphrase``, write it and return it. Refuses to overwrite an
        existing seal file."""
        seal_ = cls(directory, filename)
        secret = _new_passphrase_bytes(passphrase)
        root = KeyMaterial.generate(ROOT_KEY_SIZE) if root is None else root
        document = _wrap(root, secret, n, r, p)
        sealfile.write_new(seal_.path, document)
        return root

    def unseal(self, passphrase: bytes | str) -> KeyMaterial:
        """The root key; ``SealError("wrong passphrase")`` for a wrong
        passphrase or a damaged file alike, so the answer says nothing about
        which part was wrong."""
        secret = _passphrase_bytes(passphrase)
        document = self._read()
        try:
            n, r, p, salt, wrapped = _parse(document)
            kek = scrypt(secret, salt, n=n, r=r, p=p)
            raw = open_sealed(kek, wrapped, aad=_aad(n, r, p))
        except (ValueError, TypeError, KeyError, AuthenticationFailed):
            raise SealError(WRONG_PASSPHRASE) from None
        if len(raw) != ROOT_KEY_SIZE:
            raise SealError(WRONG_PASSPHRASE)
        return KeyMaterial(raw)

    def rekey(
        self,
        old: bytes | str,
        new: bytes | str,
        *,
        n: int | None = None,
        r: int | None = None,
        p: int | None = None,
    ) -> None:
        """Re-wrap the same root key under ``new`` with a fresh salt; ``n``,
        ``r`` and ``p`` default to the current file's, and may be raised here."""
        secret = _new_passphrase_bytes(new)
        root = self.unseal(old)
        current_n, current_r, current_p, _, _ = _parse(self._read())
        document = _wrap(
            root,
            secret,
            current_n if n is None else n,
            current_r if r is None else r,
            current_p if p is None else p,
        )
        sealfile.replace(self.path, document)

    def _read(self) -> dict[str, Any]:
        return sealfile.read(
            self.path,
            missing=f"no passphrase seal at {self.path}; initialise one first",
            invalid=WRONG_PASSPHRASE,
        )


def _wrap(root: KeyMaterial, passphrase: bytes, n: int, r: int, p: int) -> dict[str, Any]:
    salt = random_bytes(SALT_SIZE)
    try:
        kek = scrypt(passphrase, salt, n=n, r=r, p=p)
    except ValueError as exc:
        raise SealError(f"bad scrypt parameters: {exc}") from None
    wrapped = seal(kek, root.reveal(), aad=_aad(n, r, p))
    return {
        "type": SEAL_TYPE,
        "kdf": KDF,
        "n": n,
        "r": r,
        "p": p,
        "salt": base64.b64encode(salt).decode("ascii"),
        "wrapped_root": base64.b64encode(wrapped).decode("ascii"),
    }


def _parse(document: dict[str, Any]) -> tuple[int, int, int, bytes, bytes]:
    """The fields of a seal file; ``ValueError`` (or ``KeyError``) if any is off."""
    if document.get("type") != SEAL_TYPE or document.get("kdf") != KDF:
        raise ValueError("not a passphrase seal")
    n, r, p = document["n"], document["r"], document["p"]
    # bool is an int in Python; a JSON true must not pass as 1.
    if not all(type(v) is int for v in (n, r, p)):
        raise ValueError("scrypt parameters must be integers")
    try:
        salt = base64.b64decode(document["salt"], validate=True)
        wrapped = base64.b64decode(document["wrapped_root"], validate=True)
    except binascii.Error:
        raise ValueError("bad base64") from None
    return n, r, p, salt, wrapped


class PassphraseType:
    """The passphrase seal as a ``SealType``."""

    name = SEAL_TYPE
    title = "passphrase"
    secret = Secret.PASSPHRASE
    proof = "the current passphrase"
    verified_by_server = False
    options: tuple[Option, ...] = ()
    new_secret = SecretSource(
        "Passphrase: ",
        "--passphrase-file",
        help=(
            f"passphrase seal: read it from this file (at least {MIN_PASSPHRASE_CHARS} "
            f"characters, {MIN_DISTINCT_CHARS} different; else prompted, twice)"
        ),
        confirm=True,
    )
    unseal_secret = SecretSource(
        "Passphrase: ",
        "--passphrase-file",
        "KEYCASK_PASSPHRASE",
        help="passphrase seal: the passphrase, from this file (or env KEYCASK_PASSPHRASE)",
    )
    current_secret = SecretSource(
        "Current passphrase: ", "--current-passphrase-file", help="the current passphrase"
    )
    startup = StartupSource(
        "--passphrase-file",
        "KEYCASK_PASSPHRASE_FILE",
        "passphrase seal: unseal at start with the passphrase in this file "
        "(env KEYCASK_PASSPHRASE_FILE); without it an operator unseals",
    )

    def validate(self, params: Params, *, modules: Iterable[str] | None) -> None:
        if not params.passphrase:
            raise SealError("a passphrase seal needs a passphrase")
        problem = passphrase_problem(params.passphrase)
        if problem is not None:
            raise WeakPassphrase(problem)

    def initialise(
        self, directory: Path, params: Params, *, root: KeyMaterial | None, filename: str
    ) -> tuple[KeyMaterial, list[str]]:
        if not params.passphrase:
            raise SealError("a passphrase seal needs a passphrase")
        return PassphraseSeal.init(directory, params.passphrase, root=root, filename=filename), []

    def check_written(
        self,
        directory: Path,
        filename: str,
        params: Params,
        root: KeyMaterial,
        modules: Iterable[str],
    ) -> None:
        return None

    def open(
        self, directory: Path, filename: str, secret: str, *, modules: Iterable[str]
    ) -> KeyMaterial:
        return PassphraseSeal(directory, filename).unseal(secret)

    def share_file(self, directory: Path, filename: str) -> ShareFile:
        raise SealError("a passphrase seal takes no shares")
