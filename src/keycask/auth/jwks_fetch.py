"""Fetching an identity provider's JWK Set from its URL (``jwks_uri``).

The server fetches on an administrator's registration and, later, when a
token names a key the copy it has lacks. Either way the URL was given by an
administrator, but the fetch is the server's, so it is held short and kept
off the operator's own network:

- https only (plain http to a loopback address only where the caller allows
  it, for --dev and tests), certificates checked against the system's trust
  store for the URL's host name, as every https client of the host;
- the host is resolved here and every address it resolves to must be
  globally routable (no private, loopback, link-local, shared, reserved,
  multicast or unspecified address, IPv4 embedded in IPv6 judged as the
  IPv4 it carries); loopback is allowed where plain http to it is (--dev).
  The connection goes to an address that was checked, never to a second
  resolution, so a DNS answer that changes between the check and the
  connection (rebinding) reaches nothing unchecked;
- one deadline of 5 s from the start of resolution to the last byte, not a
  timeout per read (a server trickling a byte at a time cannot hold a fetch
  open), 64 KiB at most, status 200 only, no redirects (http.client follows
  none; a redirect could turn a vetted URL into an internal one);
- every failure is one message to the caller, "the JWKS URL could not be
  fetched": which step failed (refused, timed out, HTTP 404, certificate)
  would tell an administrator what answers where inside the operator's
  network. The step is logged for the operator instead; the log line names
  the URL's origin and the step, nothing of a token (the fetch never sees
  one).

Why not urllib: it resolves the host itself when it connects, so the address
checked could not be the address connected to. Here the socket is opened to
the checked address and wrapped in TLS with ssl's server_hostname set to the
URL's host (SNI and certificate verification against the name, not the
address); http.client then only parses the answer, read through a reader
that gives each socket recv() only what is left of the deadline.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import ipaddress
import logging
import socket
import ssl
import time
import urllib.parse
from typing import cast

from keycask.crypto.jwt import MAX_JWKS_BYTES

FETCH_DEADLINE_SECONDS = 5.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
GENERIC_FAILURE = "the JWKS URL could not be fetched"
# DNS64 synthesises addresses for IPv4-only hosts in this prefix (RFC 6052):
# judged as the IPv4 address they carry, so an IPv6-only host with NAT64 can
# still reach an IPv4-only IdP, and not 10.0.0.1 through it.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

log = logging.getLogger("keycask")

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_SockAddr = tuple[str, int] | tuple[str, int, int, int]


class JwksUnavailable(Exception):
    """The JWKS could not be fetched. ``str()`` is the one message a caller
    sees (GENERIC_FAILURE); ``detail`` says which step failed, for the log."""

    def __init__(self, detail: str) -> None:
        super().__init__(GENERIC_FAILURE)
        self.detail = detail


class JwksAddressRefused(JwksUnavailable):
    """The URL's host resolves to an address keycask does not fetch from."""


def check_jwks_url(url: str, *, loopback_http: bool) -> None:
    """ValueError unless ``url`` is one keycask fetches: https://host[:port]/...,
    or http:// to a loopback host when ``loopback_http``. Where the host's
    addresses lead is checked at fetch time (fetch_jwks)."""
    if len(url) > 2048 or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError("a JWKS URL is at most 2048 characters, without spaces or controls")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("the JWKS URL is not a URL") from None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError("a JWKS URL names a host, and no user or password")
    if parts.fragment:
        raise ValueError("a JWKS URL has no #fragment")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and loopback_http and parts.hostname in LOOPBACK_HOSTS:
        return
    raise ValueError(
        "a JWKS URL must be https://"
        + (" (or http:// to 127.0.0.1, localhost or [::1])" if loopback_http else "")
    )


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any:
    connecting to it reaches that IPv4 address, so that is what is judged."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def fetchable_address(address: _Address, *, loopback: bool) -> bool:
    """Whether keycask fetches from ``address``: globally routable only
    (loopback too when ``loopback``, for --dev)."""
    if isinstance(address, ipaddress.IPv6Address):
        address = _carried_ipv4(address) or address
    if address.is_loopback:
        return loopback
    # is_global alone lets multicast through, and (before Python 3.13) some
    # reserved IPv6 ranges; each property below is refused on its own.
    return address.is_global and not (
        address.is_private
        or address.is_reserved
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


async def _checked_addresses(host: str, port: int, *, loopback: bool) -> list[_SockAddr]:
    """Every address ``host`` resolves to, each one checked;
    JwksAddressRefused if any is not fetchable (one bad address among good
    ones is refused too: which one a connection would take is not ours)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as error:
        raise JwksUnavailable(f"resolving the host failed ({error.__class__.__name__})") from None
    found: list[_SockAddr] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0])
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not fetchable_address(address, loopback=loopback):
            raise JwksAddressRefused(f"the host resolves to {text}, not globally routable")
        found.append(cast(_SockAddr, sockaddr))
    if not found:
        raise JwksUnavailable("the host resolves to no IP address")
    return found


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each given only what is left of the deadline: a
    per-read timeout alone would let a byte every few seconds go on for
    hours."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed while reading")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What http.client.HTTPResponse takes a socket for: only ``makefile``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        assert mode == "rb"
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return left


def _connect(addresses: list[_SockAddr], deadline: float) -> socket.socket:
    """A connection to the first of ``addresses`` that takes one in time."""
    failure: OSError | None = None
    for sockaddr in addresses:
        family = socket.AF_INET6 if len(sockaddr) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(sockaddr)
        except OSError as error:
            sock.close()
            failure = error
            if isinstance(error, TimeoutError):
                raise
            continue
        return sock
    assert failure is not None
    raise failure


def _request(parts: urllib.parse.SplitResult) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # netloc is host[:port] as given (check_jwks_url refused user info), so
    # the Host header names what the certificate is checked against.
    return (
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Accept: application/json\r\nUser-Agent: keycask\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _get(parts: urllib.parse.SplitResult, addresses: list[_SockAddr], deadline: float) -> bytes:
    """The body the URL answers, from one of ``addresses``, all by
    ``deadline``; JwksUnavailable (with the step that failed) if not."""
    try:
        request = _request(parts)
        sock = _connect(addresses, deadline)
        try:
            if parts.scheme == "https":
                # The handshake as a whole is bounded by the socket's timeout
                # (the ssl module keeps one deadline across its reads).
                sock.settimeout(_left(deadline))
                context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=parts.hostname)
            sock.settimeout(_left(deadline))
            sock.sendall(request)
            # HTTPResponse reads through _DeadlineSocket.makefile only.
            response = http.client.HTTPResponse(
                cast(socket.socket, _DeadlineSocket(sock, deadline)), method="GET"
            )
            response.begin()
            if response.status != 200:
                raise JwksUnavailable(f"the URL answered HTTP {response.status}")
            body = response.read(MAX_JWKS_BYTES + 1)
        finally:
            sock.close()
    except TimeoutError:
        raise JwksUnavailable(f"no whole answer within {FETCH_DEADLINE_SECONDS:g} s") from None
    except ssl.SSLError as error:
        raise JwksUnavailable(f"TLS failed ({error.__class__.__name__})") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        # ValueError covers a URL that is not ASCII (UnicodeEncodeError).
        raise JwksUnavailable(f"the fetch failed ({error.__class__.__name__})") from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"the URL answered more than {MAX_JWKS_BYTES} bytes")
    return body


async def _fetch(url: str, loopback: bool, deadline: float) -> bytes:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise JwksUnavailable("not an http(s) URL")  # check_jwks_url said so already
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await _checked_addresses(parts.hostname, port, loopback=loopback)
    # The thread ends by the deadline on its own (every wait in it is given
    # what is left); the caller's wait_for stops waiting at the deadline too.
    return await asyncio.to_thread(_get, parts, addresses, deadline)


async def fetch_jwks(url: str, *, loopback: bool) -> bytes:
    """The body ``url`` answers, fetched off the event loop within
    FETCH_DEADLINE_SECONDS all told; JwksUnavailable if it cannot be had,
    JwksAddressRefused if the host resolves to an address not fetched from
    (loopback is, when ``loopback``: --dev). The caller has checked ``url``
    (check_jwks_url)."""
    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
    try:
        # wait_for also bounds resolution, which has no timeout of its own (a
        # resolver thread that hangs is left to finish; nothing waits on it).
        return await asyncio.wait_for(_fetch(url, loopback, deadline), FETCH_DEADLINE_SECONDS)
    except TimeoutError:
        error = JwksUnavailable(f"no whole answer within {FETCH_DEADLINE_SECONDS:g} s")
    except JwksUnavailable as failed:
        error = failed
    parts = urllib.parse.urlsplit(url)
    log.warning("JWKS fetch from %s://%s failed: %s", parts.scheme, parts.netloc, error.detail)
    raise error
