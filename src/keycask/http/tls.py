"""The server's TLS context: what versions, ciphers and certificates it accepts.

Built once at start from the configured files; every problem with them is a
``ConfigError`` naming the file, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import ssl

from keycask.config import ConfigError

__all__ = ["SHUTDOWN_TIMEOUT", "peer_subject", "tls_context"]


# TLS 1.2 suites: forward-secret key exchange and AEAD only. TLS 1.3 suites are
# all AEAD and are not affected by set_ciphers.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# How long closing a TLS connection waits for the client's close_notify.
SHUTDOWN_TIMEOUT = 0.5


def tls_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    client_ca: str | os.PathLike[str] | None = None,
    *,
    optional_client_ca: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A server context: TLS 1.2+ with modern ciphers, the chain in ``cert``
    (PEM, leaf first) with its private ``key``; with ``client_ca``, clients must
    present a certificate that CA issued (mutual TLS). Raises ConfigError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_ciphers(_TLS12_CIPHERS)
    for what, path in (("certificate", cert), ("private key", key)):
        if not os.path.isfile(path):
            raise ConfigError(f"TLS {what} file {os.fspath(path)!r} does not exist")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise ConfigError(
            f"cannot load the TLS certificate {os.fspath(cert)!r} and key {os.fspath(key)!r} "
            f"(not PEM, encrypted, or not a matching pair): {error.reason or error}"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read the TLS certificate or key: {error}") from None
    if client_ca is not None:
        if not os.path.isfile(client_ca):
            raise ConfigError(f"TLS client CA file {os.fspath(client_ca)!r} does not exist")
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"cannot load the TLS client CA {os.fspath(client_ca)!r}: {error}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    if optional_client_ca is not None:
        # The XKS door's mutual TLS (--xks-client-ca): a client may present a
        # certificate, which must then chain to this CA (or the handshake
        # fails); the XKS door refuses requests that came without one, the
        # other doors do not ask.
        _load_client_ca(context, optional_client_ca)
        if context.verify_mode != ssl.CERT_REQUIRED:
            context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _load_client_ca(context: ssl.SSLContext, path: str | os.PathLike[str]) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"TLS client CA file {os.fspath(path)!r} does not exist")
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"cannot load the TLS client CA {os.fspath(path)!r}: {error}") from None


def peer_subject(transport: asyncio.BaseTransport) -> str | None:
    """The common name of the client certificate the handshake verified ("" if
    it has none), or None when the client presented none."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None  # none presented (a presented one was verified, or no handshake)
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""
