"""Secrets a command reads: never from argv, where every user on the host can
read them; from an owner-only file, the environment or a prompt."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from keycask import config
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


def startup_unseal(args: argparse.Namespace) -> UnsealInput | None:
    """What a production server may open itself with: the PKCS#11 PIN (env
    KEYCASK_PKCS11_PIN or a file) and a passphrase from a file. Never argv."""
    pin = os.environ.get("KEYCASK_PKCS11_PIN") or None
    pin_file = args.pkcs11_pin_file or os.environ.get("KEYCASK_PKCS11_PIN_FILE")
    if pin is None and pin_file:
        pin = read_secret_file(pin_file, "PIN")
    passphrase_file = args.passphrase_file or os.environ.get("KEYCASK_PASSPHRASE_FILE")
    passphrase = read_secret_file(passphrase_file, "passphrase") if passphrase_file else None
    if pin is None and passphrase is None:
        return None
    return UnsealInput(pin=pin, passphrase=passphrase)
