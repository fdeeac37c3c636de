"""``keycask server --dev --tls-self-signed``: the development server's own
certificate, in the data dir's tls/ (the files ``operator init
--tls-self-signed`` makes for a production server, made the same way).

It names localhost, 127.0.0.1 and ::1, and the --listen host when that is
one address or name rather than every address. It is made on the first
start and kept across restarts, so the cert.pem clients were given as their
CA stays good; a start makes a new one only when the pair will not do: a
file missing or unreadable, a key that is not the certificate's or that
others may read, a certificate expired or expiring within a day, or one
that lacks a name the server now needs (a new --listen host). Clients then
need the new cert.pem, which the start-up lines say.
"""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from keycask import config, privatefile
from keycask.crypto import certificate_problem, self_signed_certificate

HOSTNAMES = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")
DAYS = 365
# A certificate this close to its end is replaced at start, so a server
# started today does not stop being trusted tonight.
_MARGIN = timedelta(days=1)
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


def names(host: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate of a server listening on
    ``host`` must name."""
    hostnames, addresses = list(HOSTNAMES), list(ADDRESSES)
    if host not in _WILDCARDS:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host not in hostnames:
                hostnames.append(host)
        else:
            if address not in {ipaddress.ip_address(a) for a in addresses}:
                addresses.append(str(address))
    return hostnames, addresses


def _problem(cert_file: Path, key_file: Path, hostnames: list[str], addresses: list[str]) -> str:
    """Why the pair in tls/ must be made anew; "" if it will do."""
    if not cert_file.exists() and not key_file.exists():
        return "none yet"
    try:
        if key_file.lstat().st_mode & 0o077 or not stat.S_ISREG(key_file.lstat().st_mode):
            return "the key file was not a file only its owner may read"
        cert_pem, key_pem = cert_file.read_bytes(), key_file.read_bytes()
    except OSError:
        return "a file was missing or unreadable"
    return (
        certificate_problem(
            cert_pem, key_pem, hostnames, addresses, now=datetime.now(UTC), margin=_MARGIN
        )
        or ""
    )


def ensure(settings: config.Settings) -> str:
    """Make or keep the certificate ``settings`` names; a line saying which,
    for the start-up output (never the key)."""
    assert settings.tls_self_signed and settings.tls_cert is not None
    assert settings.tls_key is not None
    cert_file, key_file = settings.tls_cert, settings.tls_key
    hostnames, addresses = names(settings.host)
    problem = _problem(cert_file, key_file, hostnames, addresses)
    covers = ", ".join([*hostnames, *addresses])
    if not problem:
        return f"TLS: the self-signed certificate {cert_file} (for {covers}) is kept"
    try:
        cert, private = self_signed_certificate(hostnames, addresses, days=DAYS)
    except ValueError as error:
        raise config.ConfigError(f"--tls-self-signed: {error}") from None
    try:
        cert_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The key first, as `operator renew-tls` does: a crash between the two
        # leaves a pair this check refuses (and the next start mends), never
        # a new certificate beside a key it does not match.
        privatefile.replace(key_file, private)
        privatefile.replace(cert_file, cert)
    except OSError as error:
        raise config.ConfigError(
            f"--tls-self-signed: cannot write {cert_file.parent}: {error.strerror}"
        ) from None
    if problem == "none yet":
        return f"TLS: made a self-signed certificate {cert_file} for {covers}"
    return (
        f"TLS: made a new self-signed certificate {cert_file} for {covers} ({problem}); "
        "clients given the old cert.pem need the new one"
    )
