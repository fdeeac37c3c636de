"""PostgreSQL DSNs: parsed without ever repeating a password, and checked
for a connection that would travel in the clear to another host."""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "CONNECT_DEFAULTS",
    "StorageConfigError",
    "parse_dsn",
    "redact",
    "safe_dsn",
    "transport_problem",
]

# Defaults for what a DSN leaves unsaid: give up on an unreachable server
# rather than hang, and notice a peer that vanished without closing the socket.
CONNECT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


class StorageConfigError(ValueError):
    """The DSN is unusable as given (it does not parse, or it would send the
    password and the data in the clear to another host). Messages never
    repeat the DSN."""


# libpq modes that never fall back to plaintext ("prefer", the default,
# does, and an attacker on the path can make it).
_TLS_MODES = frozenset({"require", "verify-ca", "verify-full"})


def _local_host(host: str) -> bool:
    if host in ("", "localhost") or host.startswith(("/", "@")):
        return True  # a Unix socket (a directory, or Linux's abstract namespace)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_problem(dsn: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why connecting with ``dsn`` would be in the clear to another host, or
    None. The host and sslmode are the ones libpq will use: the DSN's, else
    PGHOST/PGHOSTADDR and PGSSLMODE, else a local socket and "prefer"."""
    env = os.environ if env is None else env
    params = parse_dsn(dsn)
    hosts = params.get("hostaddr") or params.get("host")
    if hosts is None:
        hosts = env.get("PGHOSTADDR") or env.get("PGHOST") or ""
    remote = [h for h in str(hosts).split(",") if not _local_host(h.strip())]
    mode = params.get("sslmode") or env.get("PGSSLMODE") or "prefer"
    if str(params.get("requiressl", "")) == "1" and mode == "prefer":
        mode = "require"
    if not remote or mode in _TLS_MODES:
        return None
    return (
        f"the PostgreSQL store at {remote[0]} is not on this host and the connection may "
        f"run without TLS (sslmode={mode}): add sslmode=require (or verify-full with "
        "sslrootcert) to the DSN or PGSSLMODE, or, on a network you trust, say so with "
        "--storage-insecure (KEYCASK_STORAGE_INSECURE=1)"
    )


def parse_dsn(dsn: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # psycopg's message may quote the DSN, password and all.
        raise StorageConfigError(
            "the PostgreSQL DSN does not parse (it is not repeated here: it may hold a password)"
        ) from None


def redact(message: str, dsn: str) -> str:
    """``message`` without the DSN's password, however the driver quoted it."""
    secrets: set[str] = set()
    with suppress(psycopg.ProgrammingError):
        password = conninfo_to_dict(dsn).get("password")
        if password:
            secrets.add(str(password))
    with suppress(ValueError):
        raw = urllib.parse.urlsplit(dsn).password
        if raw:
            secrets |= {raw, urllib.parse.unquote(raw)}
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def safe_dsn(dsn: str) -> str:
    """``dsn`` as a key=value string without its password, fit for messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    params.pop("password", None)
    return make_conninfo("", **params)
