"""The PROXY protocol, version 2 (binary) only: how a TCP load balancer that
passes TLS through tells keycask who the client is.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2.
A header is accepted only from peers the operator named
(``--proxy-protocol-from``); from them it is required, from everyone else it
is never looked for (their bytes go to the HTTP parser or the TLS handshake,
which refuse it). Parsing is strict and bounded: the signature, version 2,
the LOCAL or PROXY command, TCP over IPv4 or IPv6 (or UNSPEC with LOCAL),
an address block of exactly the family's size, TLVs that tile the rest of
the header exactly, and at most ``MAX_HEADER`` bytes in all. Version 1 (text)
is refused: it is the one a proxy and a server could parse differently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["MAX_HEADER", "SIGNATURE", "ProxyHeader", "ProxyHeaderError", "build", "parse"]

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_FIXED = 16  # signature (12), version/command (1), family/protocol (1), length (2)
# HAProxy sends a few TLVs at most (ALPN, authority, unique id up to 128
# bytes, SSL facts): 1 KiB is plenty, and all a stranger who got past the
# address check could make us buffer before the first HTTP byte.
MAX_HEADER = _FIXED + 1024
_LOCAL, _PROXY = 0x20, 0x21
_UNSPEC, _TCP4, _TCP6 = 0x00, 0x11, 0x21
_ADDRESS_BYTES = {_TCP4: 12, _TCP6: 36}


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol v2 header (or not one keycask accepts)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    # The client's address as the balancer saw it; None for LOCAL (the
    # balancer speaking for itself, e.g. a health check): keep the peer's.
    source: str | None
    size: int  # bytes of the header; what follows is the client's stream


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while more bytes are needed.

    Raises ``ProxyHeaderError`` as soon as the bytes cannot begin a header
    keycask accepts.
    """
    head = data[: len(SIGNATURE)]
    if head != SIGNATURE[: len(head)]:
        raise ProxyHeaderError("not a PROXY protocol v2 signature")
    if len(data) < _FIXED:
        return None
    command, family = data[12], data[13]
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError("not PROXY protocol version 2 LOCAL or PROXY")
    length = int.from_bytes(data[14:16], "big")
    size = _FIXED + length
    if size > MAX_HEADER:
        raise ProxyHeaderError("PROXY protocol header too long")
    if command == _PROXY and family not in _ADDRESS_BYTES:
        raise ProxyHeaderError("PROXY protocol: only TCP over IPv4 or IPv6 is accepted")
    if command == _LOCAL and family not in (_UNSPEC, *_ADDRESS_BYTES):
        raise ProxyHeaderError("PROXY protocol: unknown address family")
    address_bytes = _ADDRESS_BYTES.get(family, 0)
    if length < address_bytes:
        raise ProxyHeaderError("PROXY protocol: address block too short")
    if len(data) < size:
        return None
    _check_tlvs(data[_FIXED + address_bytes : size])
    if command == _LOCAL:
        return ProxyHeader(None, size)
    block = data[_FIXED : _FIXED + address_bytes]
    source: ipaddress.IPv4Address | ipaddress.IPv6Address
    if family == _TCP4:
        source = ipaddress.IPv4Address(block[0:4])
    else:
        source = ipaddress.IPv6Address(block[0:16])
        mapped = source.ipv4_mapped
        if mapped is not None:
            source = mapped  # as aws:SourceIp must see an IPv4 client
    return ProxyHeader(str(source), size)


def _check_tlvs(tlvs: bytes) -> None:
    # Values are not used, but they must tile the header exactly: a length
    # that overruns it means the two ends disagree on where the stream starts.
    at = 0
    while at < len(tlvs):
        if at + 3 > len(tlvs):
            raise ProxyHeaderError("PROXY protocol: truncated TLV")
        at += 3 + int.from_bytes(tlvs[at + 1 : at + 3], "big")
        if at > len(tlvs):
            raise ProxyHeaderError("PROXY protocol: TLV overruns the header")


def build(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY v2 header for a TCP connection (tests and tools)."""
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError("source and destination must be of one family")
    family = _TCP4 if src.version == 4 else _TCP6
    block = (
        src.packed + dst.packed + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")
    )
    return SIGNATURE + bytes((_PROXY, family)) + len(block).to_bytes(2, "big") + block
