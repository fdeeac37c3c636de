"""Secrets a command reads: never from argv, where every user on the host can
read them; from an owner-only file, the environment or a prompt."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from keycask import config
from keycask.seal import Secret, registry
from keycask.service.sealing import UnsealInput


def read_secret_file(path: str, what: str) -> str:
    try:
        if Path(path).stat().st_mode & 0o077:
            # Readable by others: the secret has leaked already; say so, never use it.
            raise config.ConfigError(
                f"the {what} file {path} is readable by others: chmod 600 it "
                "(and consider the secret exposed)"
            )
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise config.ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not text:
        raise config.ConfigError(f"the {what} file {path} is empty")
    return text


def add_startup_flags(parser: argparse.ArgumentParser) -> None:
    """The flags through which a production server (or a command opening its
    store) takes a seal's secret at start, as each seal type declares them."""
    for kind in registry.SEAL_TYPES.values():
        if kind.startup is not None:
            parser.add_argument(kind.startup.flag, help=kind.startup.help)


def startup_unseal(args: argparse.Namespace) -> UnsealInput | None:
    """What a production server may open itself with: each seal type's
    secret from its file (flag or environment) or, where the type allows it,
    the environment itself. Never argv."""
    given: dict[Secret, str] = {}
    for kind in registry.SEAL_TYPES.values():
        source = kind.startup
        if source is None:
            continue
        value = (os.environ.get(source.env) or None) if source.env else None
        path = getattr(args, source.dest, None) or os.environ.get(source.file_env)
        if value is None and path:
            value = read_secret_file(path, kind.secret.noun)
        if value is not None:
            given[kind.secret] = value
    return UnsealInput.of(given) if given else None
