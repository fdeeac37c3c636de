"""The tokens keycask is configured with, by name: what ``--hsm
NAME[@ACCOUNT]=MODULE_PATH:TOKEN_LABEL`` (repeatable) and the PIN flags give.

A token serves one account: ``ACCOUNT`` (12 digits), else the operator's
account (the one ``operator init`` made; in ``--dev`` the configured one).
Only that account's administrators may make a custom key store of it; to
every other account it is not there (CloudHsmClusterNotFoundException), so
none can claim it first, or guess its PIN through ConnectCustomKeyStore.

The name is what the AWS API calls the cluster id (``CloudHsmClusterId``),
so it must be one AWS's model accepts: ``cluster-`` and 11 to 16 letters
(``a-z``, ``A-Z``) or digits 2 to 7. The module path ends at the first
``:``; the token label is the rest (a label may hold ``:``, a path on the
systems keycask runs on does not need to).

PINs: ``--hsm-pin-file FILE`` when one token is configured, ``--hsm-pin-file
NAME=FILE`` for each when several; else the environment variable
``KEYCASK_HSM_PIN`` (one token only). A file's content is the PIN, a
trailing newline removed, as the PKCS#11 seal reads its PIN file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keycask.hsm.token import Token

CLUSTER_ID = re.compile(r"cluster-[2-7a-zA-Z]{11,16}")
_ACCOUNT = re.compile(r"[0-9]{12}")
PIN_ENV = "KEYCASK_HSM_PIN"


class HsmConfigError(ValueError):
    """An ``--hsm`` or PIN flag keycask cannot use (bad input, said plainly)."""


@dataclass(frozen=True, slots=True)
class HsmConfig:
    name: str
    module: str
    token_label: str
    pin: str = field(repr=False)
    # The one account it serves (None: the operator's).
    account: str | None = None


def parse(
    specs: Sequence[str], pin_files: Sequence[str], env: Mapping[str, str]
) -> tuple[HsmConfig, ...]:
    """The configured tokens, each with its PIN; ``HsmConfigError`` naming
    what is wrong (never a PIN)."""
    tokens: dict[str, tuple[str, str]] = {}
    accounts: dict[str, str] = {}
    for spec in specs:
        named, eq, rest = spec.partition("=")
        name, at, account = named.partition("@")
        module, colon, label = rest.partition(":")
        if not (eq and colon and module and label):
            raise HsmConfigError(
                f"--hsm takes NAME[@ACCOUNT]=MODULE_PATH:TOKEN_LABEL, got {spec!r}"
            )
        if at:
            if not _ACCOUNT.fullmatch(account):
                raise HsmConfigError(f"--hsm {name}: the account must be 12 digits")
            accounts[name] = account
        if not CLUSTER_ID.fullmatch(name):
            raise HsmConfigError(
                f"--hsm name {name!r} is not a CloudHsmClusterId AWS accepts: 'cluster-' and "
                "11 to 16 letters or digits 2-7 (for example cluster-keycaskhsm01)"
            )
        if name in tokens:
            raise HsmConfigError(f"--hsm names {name} twice")
        for other, (other_module, other_label) in tokens.items():
            if other_label == label and os.path.realpath(other_module) == os.path.realpath(module):
                # One token, one store: two names would let two stores share its keys.
                raise HsmConfigError(f"--hsm {name} and {other} name the same token {label!r}")
        tokens[name] = (module, label)
    files: dict[str, str] = {}
    for item in pin_files:
        name, eq, path = item.partition("=")
        if not eq:
            if len(tokens) != 1:
                raise HsmConfigError(
                    "with several --hsm tokens, give each PIN file as --hsm-pin-file NAME=FILE"
                )
            name, path = next(iter(tokens)), item
        if name not in tokens:
            raise HsmConfigError(f"--hsm-pin-file names {name}, which no --hsm configures")
        files[name] = path
    configs = []
    for name, (module, label) in tokens.items():
        if name in files:
            pin = _read_pin(files[name])
        elif len(tokens) == 1 and env.get(PIN_ENV):
            pin = env[PIN_ENV]
        else:
            raise HsmConfigError(
                f"no PIN for the HSM {name}: give --hsm-pin-file"
                + (f" (or {PIN_ENV})" if len(tokens) == 1 else f" {name}=FILE")
            )
        configs.append(HsmConfig(name, module, label, pin, accounts.get(name)))
    return tuple(configs)


def _read_pin(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HsmConfigError(f"cannot read the PIN file {path} ({type(exc).__name__})") from None
    pin = text.removesuffix("\n").removesuffix("\r")
    if not pin:
        raise HsmConfigError(f"the PIN file {path} is empty")
    return pin


class Tokens:
    """The registry: every configured token by name."""

    def __init__(self, configs: Iterable[HsmConfig] = ()) -> None:
        from keycask.hsm.token import Token  # loads pkcs11 only when a token is configured

        self._tokens = {c.name: Token(c.name, c.module, c.token_label, c.pin) for c in configs}
        self._accounts = {c.name: c.account for c in configs}
        self._default_account = ""

    def serve_by_default(self, account: str) -> None:
        """The account that tokens configured without one serve (the
        operator's, known once the store is open)."""
        self._default_account = account

    def account_of(self, name: str) -> str:
        """The account the token ``name`` serves ("" if none is known)."""
        return self._accounts.get(name) or self._default_account

    def get(self, name: str) -> Token | None:
        return self._tokens.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tokens))

    def close(self) -> None:
        for token in self._tokens.values():
            token.close()
