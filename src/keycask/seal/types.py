"""What a seal type is, as the rest of keycask sees it (``SealType``), and
the small values it declares: the secret that opens it, its parameters and
where an operator's secret for it comes from (flags, environment, prompt).

The service (``service/sealing.py``) and the command line ask a seal type
through this protocol and never compare seal names, so a new seal type is
one module here plus a line in ``registry.py``; see docs/architecture.md,
"How to add a seal type".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from keycask.crypto import KeyMaterial, Share


class Secret(enum.Enum):
    """What an operator hands in to open a seal: the operator API's field
    for it (``Unseal``, ``Rekey``'s ``Current``, ``RekeyVerify``) and what
    messages call it."""

    SHARES = ("Share", "shares")
    PASSPHRASE = ("Passphrase", "passphrase")
    PIN = ("Pin", "PIN")

    def __init__(self, field: str, noun: str) -> None:
        self.field = field
        self.noun = noun


@dataclass(frozen=True, slots=True)
class Option:
    """A parameter of a new seal (``operator init``, ``operator rekey``):
    its flag, the field of the ``Rekey`` call that carries it, and its
    default."""

    flag: str
    field: str
    help: str
    integer: bool = False
    default: int | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where a command takes one secret from, never argv: ``flag`` names an
    owner-only file, ``env`` a variable holding it, else ``prompt``.
    ``confirm``: a new secret, typed twice at the prompt."""

    prompt: str
    flag: str | None = None
    env: str | None = None
    help: str = ""
    confirm: bool = False

    @property
    def dest(self) -> str | None:
        return None if self.flag is None else self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class StartupSource:
    """How a production server (and ``audit verify``) may take this seal's
    secret at start: a file (``flag``, or the variable ``file_env`` naming
    one) or, where that is allowed, the variable ``env`` holding it."""

    flag: str
    file_env: str
    help: str
    env: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class Params(Protocol):
    """A new seal's parameters (``service.sealing.NewSeal`` has them)."""

    @property
    def shares(self) -> int: ...
    @property
    def threshold(self) -> int: ...
    @property
    def passphrase(self) -> str | None: ...
    @property
    def module(self) -> str | None: ...
    @property
    def token_label(self) -> str | None: ...
    @property
    def key_label(self) -> str | None: ...
    @property
    def pin(self) -> str | None: ...
    @property
    def share_keys(self) -> tuple[str, ...]: ...


class ShareFile(Protocol):
    """A seal file of a type opened by shares (``Secret.SHARES``)."""

    def config(self) -> tuple[int, int]:
        """(shares handed out, threshold)."""
        ...

    def knows(self, share: Share) -> bool | None: ...
    def opens(self, root: KeyMaterial) -> bool: ...


class SealType(Protocol):
    """One kind of seal: how it is named, checked, made, opened and proven."""

    @property
    def name(self) -> str:
        """As the seal file's ``type``, ``--seal`` and the API call it."""
        ...

    @property
    def title(self) -> str:
        """For messages: "a {title} seal"."""
        ...

    @property
    def secret(self) -> Secret:
        """What an operator gives to open it."""
        ...

    @property
    def proof(self) -> str:
        """What a rekey away from it must show, for messages."""
        ...

    @property
    def verified_by_server(self) -> bool:
        """As a rekey's target: the server reads the new root back itself
        (nothing for operators to hand back), and the rekey completes at once."""
        ...

    @property
    def options(self) -> tuple[Option, ...]:
        """Its parameters, as flags of ``operator init`` / ``operator rekey``."""
        ...

    @property
    def new_secret(self) -> SecretSource | None:
        """The secret a new seal of this type is made with, if any."""
        ...

    @property
    def unseal_secret(self) -> SecretSource:
        """Where ``operator unseal`` (and ``restore``) take its secret from."""
        ...

    @property
    def current_secret(self) -> SecretSource:
        """Where ``operator rekey`` takes the current secret from."""
        ...

    @property
    def startup(self) -> StartupSource | None:
        """How a server may open it at start by itself (None: never)."""
        ...

    def validate(self, params: Params, *, modules: Iterable[str] | None) -> None:
        """Refuse bad parameters (``SealError``) before anything is written.
        ``modules``: the PKCS#11 libraries allowed (None: not restricted)."""
        ...

    def initialise(
        self, directory: Path, params: Params, *, root: KeyMaterial | None, filename: str
    ) -> tuple[KeyMaterial, list[str]]:
        """Write the seal file ``filename`` guarding ``root`` (a new one if
        None); returns the root and the share lines to hand out (if any)."""
        ...

    def check_written(
        self,
        directory: Path,
        filename: str,
        params: Params,
        root: KeyMaterial,
        modules: Iterable[str],
    ) -> None:
        """After ``initialise``, for a type ``verified_by_server``: read the
        root back and refuse (``SealError``) if it is not ``root``."""
        ...

    def open(
        self, directory: Path, filename: str, secret: str, *, modules: Iterable[str]
    ) -> KeyMaterial:
        """The root key behind ``filename`` for one secret (not for shares)."""
        ...

    def share_file(self, directory: Path, filename: str) -> ShareFile:
        """The seal file as shares see it (only for ``Secret.SHARES``)."""
        ...


# The operator API's fields for a new seal's parameters (``Rekey``), and the
# ``Params`` attribute each one fills.
_PARAM_FIELDS = {
    "Shares": "shares",
    "Threshold": "threshold",
    "Passphrase": "passphrase",
    "Module": "module",
    "TokenLabel": "token_label",
    "KeyLabel": "key_label",
    "Pin": "pin",
}


@dataclass(frozen=True, slots=True)
class SealParams:
    """A new seal's parameters, for a caller without an API request to
    decode (``operator init``)."""

    shares: int = 5
    threshold: int = 3
    passphrase: str | None = None
    module: str | None = None
    token_label: str | None = None
    key_label: str | None = None
    pin: str | None = None
    share_keys: tuple[str, ...] = ()

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> SealParams:
        """From the ``Rekey`` fields that ``Option.field`` and
        ``Secret.field`` name."""
        return cls(**{_PARAM_FIELDS[name]: value for name, value in fields.items()})  # type: ignore[arg-type]
