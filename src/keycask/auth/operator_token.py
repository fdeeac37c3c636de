"""The operator token: a bearer secret for ``keycask operator`` calls, the one
credential that works while the server is sealed (access keys live behind
the barrier, so nothing can check a signature until it is open).

Made by ``operator init`` and printed once; ``<data>/operator.json``
keeps only its SHA-256. ``operator rotate-token`` (a ``RotateToken`` call
made with the current token) replaces it, and ``operator restore`` makes a
new one rather than bring back the token of backup time. A plain hash is
enough for 256 random bits (no dictionary to try), and the comparison is
constant time.

The file also names the *operator account*: the account ``operator init``
made the first administrator in. Only that account's administrators may make
operator calls with their SigV4 signature; an administrator of any other
account runs that account only, never the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from keycask import privatefile
from keycask.crypto import random_bytes

TOKEN_FILE = "operator.json"  # noqa: S105 - a file name
_PREFIX = "kco_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _new_token() -> str:
    return _PREFIX + base64.b32encode(random_bytes(32)).decode("ascii").rstrip("=").lower()


def _document(token: str, account: str | None) -> str:
    doc: dict[str, str] = {"sha256": _digest(token)}
    if account is not None:
        doc["account"] = account
    return json.dumps(doc)


def create(data_dir: Path, account: str | None) -> str:
    """A new token, its hash written to ``operator.json`` (never replaced)
    with the operator account (None: the server's configured account)."""
    token = _new_token()
    privatefile.write_new(Path(data_dir) / TOKEN_FILE, _document(token, account))
    return token


def replace(data_dir: Path) -> str:
    """A new token whose hash replaces ``operator.json`` atomically (written
    aside, renamed, directory synced): the old token stops working; the
    operator account stays."""
    token = _new_token()
    path = Path(data_dir) / TOKEN_FILE
    account: str | None = None
    if path.exists():
        recorded = json.loads(path.read_text()).get("account")
        account = recorded if isinstance(recorded, str) else None
    privatefile.replace(path, _document(token, account))
    return token


class OperatorToken:
    def __init__(self, data_dir: Path) -> None:
        path = Path(data_dir) / TOKEN_FILE
        self._dir = Path(data_dir)
        self._digest: str | None = None
        # None in a file written before the account was recorded: the server
        # then takes its configured account (KEYCASK_ACCOUNT_ID).
        self.account: str | None = None
        if path.exists():
            if path.stat().st_mode & 0o077:
                raise PermissionError(f"{path} must be readable by its owner only (chmod 600)")
            doc = json.loads(path.read_text())
            value = doc.get("sha256")
            self._digest = value if isinstance(value, str) else None
            account = doc.get("account")
            self.account = account if isinstance(account, str) else None

    @property
    def configured(self) -> bool:
        return self._digest is not None

    def verify(self, presented: str) -> bool:
        if self._digest is None:
            return False
        return hmac.compare_digest(_digest(presented), self._digest)

    def rotate(self) -> str:
        """Replace the token (file and memory); returns the new one, which
        nothing keeps. Only a configured token is rotated."""
        if self._digest is None:
            raise PermissionError("this server has no operator token to rotate")
        token = replace(self._dir)
        self._digest = _digest(token)
        return token
