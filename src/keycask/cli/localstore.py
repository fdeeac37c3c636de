"""The store of a data dir, opened by a command that works on it directly
(``policy reset | lint | simulate | who-can``, ``principals create
--offline``, ``audit verify``): a --dev data dir with its dev root key, a
production one (SQLite in the data dir, or PostgreSQL with ``--storage`` /
``KEYCASK_STORAGE``) with its seal's input, taken as each seal type declares
it and never from argv:

* a passphrase or PIN as ``keycask server`` opens itself at start (its file
  flag, or the variables the seal type names), else the variable ``operator
  unseal`` reads, else a prompt on a terminal;
* shares from an owner-only ``--shares-file`` (``-``: stdin), one per line,
  else a threshold of them at a terminal's prompt.

Writes go under the same lock the server's writers take, and announce
themselves the way the server's own commits do, so a server running on the
store drops what it cached (``app.local_coordinator``).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from keycask import config
from keycask.app import local_coordinator, open_store, open_store_to_read, release_coordinator
from keycask.barrier import Barrier
from keycask.cli.secrets import read_secret_file, startup_unseal
from keycask.errors import SealError
from keycask.ports import Storage
from keycask.seal import SEAL_FILE, Secret, registry, seal_type
from keycask.seal.dev import ROOT_KEY_FILE
from keycask.seal.shamir import ShareCollector
from keycask.seal.types import SealType
from keycask.service.sealing import SealKeeper, UnsealInput


class NotOpened(SealError):
    """A sealed production store, and nothing given here to open it."""


def is_production(data_dir: Path) -> bool:
    """Whether ``data_dir`` is a production data dir (False: a --dev one)."""
    if (data_dir / SEAL_FILE).exists():
        return True
    if (data_dir / ROOT_KEY_FILE).exists():
        return False
    raise config.ConfigError(
        f"{data_dir} is not a keycask data dir: it has neither {SEAL_FILE} (production) nor "
        f"{ROOT_KEY_FILE} (--dev); give the data dir with --data-dir"
    )


def add_store_flags(parser: argparse.ArgumentParser, *, data_dir: bool = True) -> None:
    """The flags through which a command names a data dir's store and hands
    in its seal's input."""
    if data_dir:
        parser.add_argument(
            "--data-dir", help="data directory (env KEYCASK_DATA_DIR, default ./.keycask)"
        )
    parser.add_argument(
        "--storage",
        metavar="DSN",
        help="the PostgreSQL store of a data dir `operator init --storage` made "
        "(env KEYCASK_STORAGE)",
    )
    for kind in registry.SEAL_TYPES.values():
        # The server's start-up sources (``startup_unseal`` reads them), in
        # this command's words.
        source = kind.startup
        if source is not None:
            variables = " / ".join(v for v in (source.file_env, kind.unseal_secret.env) if v)
            parser.add_argument(
                source.flag,
                help=f"a {kind.title} seal: its {kind.secret.noun}, from this owner-only file "
                f"(or env {variables}); else prompted for on a terminal",
            )
    parser.add_argument(
        "--shares-file",
        metavar="FILE",
        help="a seal opened by shares: a threshold of them, one per line, in an owner-only "
        "file (- for stdin); else prompted for on a terminal",
    )
    parser.add_argument(
        "--pkcs11-module",
        action="append",
        metavar="LIB",
        help="a PKCS#11 library to allow (repeatable; env KEYCASK_PKCS11_MODULES)",
    )


def settings(
    args: argparse.Namespace,
    *,
    data_dir: str | None = None,
    account: str | None = None,
    region: str | None = None,
) -> config.Settings:
    """The settings of the data dir ``args`` names (or ``data_dir``): --dev
    or production by what the data dir holds."""
    directory = Path(
        data_dir or args.data_dir or os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR
    )
    return config.load(
        dev=not is_production(directory),
        data_dir=str(directory),
        account_id=account,
        region=region,
        storage=args.storage,
        pkcs11_modules=args.pkcs11_module or (),
    )


def _seal(settings: config.Settings) -> SealType:
    kind = seal_type(settings.data_dir)
    if kind is None:
        raise SealError(f"{settings.data_dir} has no seal")
    return registry.get(kind)


def _ask(prompt: str) -> str | None:
    """One secret typed at a terminal; None when there is none to ask."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(prompt).strip() or None


def _shares(args: argparse.Namespace, kind: SealType, threshold: int) -> list[str]:
    path = getattr(args, "shares_file", None)
    if path == "-":
        return sys.stdin.read().split()
    if path:
        return read_secret_file(path, "shares").split()
    shares: list[str] = []
    for index in range(threshold):
        share = _ask(f"{kind.title} share {index + 1}/{threshold}: ")
        if share is None:
            break
        shares.append(share)
    return shares


def _not_opened(kind: SealType, settings: config.Settings) -> NotOpened:
    if kind.secret is Secret.SHARES:
        how = "give --shares-file (one share per line; - for stdin), or run it at a terminal"
    else:
        flags = [kind.unseal_secret.env] if kind.unseal_secret.env else []
        if kind.startup is not None:
            flags = [kind.startup.flag, kind.startup.file_env, *flags]
        how = f"give {' or '.join(f for f in flags if f)}, or run it at a terminal"
    return NotOpened(
        f"{settings.data_dir} is sealed with a {kind.title} seal and no {kind.secret.noun} "
        f"was given: {how}"
    )


def _one_piece(args: argparse.Namespace, kind: SealType) -> UnsealInput | None:
    """The passphrase or PIN: the server's start-up sources, then the
    variable ``operator unseal`` reads, then a prompt."""
    given = startup_unseal(args)
    if given is not None and given.get(kind.secret) is not None:
        return given
    source = kind.unseal_secret
    secret = (os.environ.get(source.env) or None) if source.env else None
    secret = secret or _ask(source.prompt)
    if secret is None:
        return None
    return UnsealInput.of({kind.secret: secret})


async def _unseal(args: argparse.Namespace, settings: config.Settings, barrier: Barrier) -> None:
    """Open the production store behind ``barrier`` for writing, as the
    server does when operators unseal it."""
    kind = _seal(settings)
    keeper = SealKeeper(
        settings.data_dir,
        barrier,
        pkcs11_modules=frozenset(settings.pkcs11_modules),
        announce=False,
    )
    if kind.secret is Secret.SHARES:
        _, threshold = kind.share_file(settings.data_dir, SEAL_FILE).config()
        shares = _shares(args, kind, threshold)
        if not shares:
            raise _not_opened(kind, settings)
        for share in shares:
            await keeper.unseal(UnsealInput(share=share))
            if not keeper.sealed:
                return
        raise SealError(f"the {kind.title} seal needs {threshold} shares; {len(shares)} given")
    given = _one_piece(args, kind)
    if given is None:
        raise _not_opened(kind, settings)
    await keeper.unseal(given)


async def _unseal_to_read(
    args: argparse.Namespace, settings: config.Settings, barrier: Barrier
) -> None:
    """Open it for reading only: nothing written, nothing reserved."""
    kind = _seal(settings)
    if kind.secret is not Secret.SHARES:
        given = _one_piece(args, kind)
        if given is None:
            raise _not_opened(kind, settings)
        keeper = SealKeeper(
            settings.data_dir,
            barrier,
            pkcs11_modules=frozenset(settings.pkcs11_modules),
            announce=False,
        )
        await keeper.open_to_read(given)
        return
    seal = kind.share_file(settings.data_dir, SEAL_FILE)
    _, threshold = seal.config()
    shares = _shares(args, kind, threshold)
    if not shares:
        raise _not_opened(kind, settings)
    collector = ShareCollector(threshold, knows=seal.knows)
    for share in shares:
        root = collector.add(share)
        if root is not None:
            await barrier.unseal_to_read(root)
            return
    raise SealError(f"the {kind.title} seal needs {threshold} shares; {len(shares)} given")


async def open_to_write(
    args: argparse.Namespace, settings: config.Settings
) -> tuple[Storage, Barrier]:
    """The store, unsealed: with the dev root key, or the seal's input."""
    storage, barrier = await open_store(settings)
    try:
        if barrier.sealed:
            await _unseal(args, settings, barrier)
    except BaseException:
        await storage.close()
        raise
    return storage, barrier


async def open_to_read(
    args: argparse.Namespace, settings: config.Settings
) -> tuple[Storage, Barrier]:
    """The store, opened to read: nothing is created, written or reserved."""
    storage, barrier = await open_store_to_read(settings)
    try:
        if barrier.sealed:
            await _unseal_to_read(args, settings, barrier)
    except BaseException:
        await storage.close()
        raise
    return storage, barrier


@contextlib.asynccontextmanager
async def writing(
    settings: config.Settings, storage: Storage, barrier: Barrier
) -> AsyncIterator[None]:
    """Commit inside this, as one of the store's writers: the servers on it
    wait, then drop their caches (the change is theirs at their next
    request), and the store's epoch moves past the change at once, so a copy
    taken before it is refused as a rollback."""
    coordinator = local_coordinator(settings, storage)
    try:
        async with coordinator.exclusive():
            try:
                yield
            finally:
                coordinator.committed()
        await barrier.tick()
    finally:
        await release_coordinator(coordinator)
