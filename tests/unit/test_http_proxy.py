"""The PROXY protocol v2 header (keycask.http.proxy): what is accepted, and
that no hostile header is read as anything but an error."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keycask.http import proxy
from keycask.http.proxy import SIGNATURE, ProxyHeader, ProxyHeaderError, build, parse


def _header(command: int, family: int, block: bytes, length: int | None = None) -> bytes:
    size = len(block) if length is None else length
    return SIGNATURE + bytes((command, family)) + size.to_bytes(2, "big") + block


def _tlv(kind: int, value: bytes) -> bytes:
    return bytes((kind,)) + len(value).to_bytes(2, "big") + value


# 203.0.113.7:51000 -> 10.0.0.11:9567
V4_BLOCK = bytes([203, 0, 113, 7, 10, 0, 0, 11]) + (51000).to_bytes(2, "big") + b"\x25\x5f"


def test_ipv4_and_ipv6_sources_are_read() -> None:
    header = build(("203.0.113.7", 51000), ("10.0.0.11", 9567))
    assert parse(header + b"GET /") == ProxyHeader("203.0.113.7", len(header))
    header6 = build(("2001:db8::7", 51000), ("2001:db8::11", 9567))
    assert parse(header6) == ProxyHeader("2001:db8::7", len(header6))


def test_an_ipv4_mapped_source_is_given_as_ipv4() -> None:
    header = build(("::ffff:198.51.100.9", 1), ("::ffff:10.0.0.11", 9567))
    assert parse(header) == ProxyHeader("198.51.100.9", len(header))


def test_local_keeps_the_peer_and_tlvs_are_skipped() -> None:
    local = _header(0x20, 0x00, b"")
    assert parse(local) == ProxyHeader(None, 16)
    with_tlvs = _header(0x21, 0x11, V4_BLOCK + _tlv(0x01, b"h2") + _tlv(0x05, b"x" * 128))
    assert parse(with_tlvs) == ProxyHeader("203.0.113.7", len(with_tlvs))


def test_every_proper_prefix_asks_for_more() -> None:
    header = _header(0x21, 0x11, V4_BLOCK + _tlv(0x02, b"kms.example"))
    for cut in range(len(header)):
        assert parse(header[:cut]) is None
    assert parse(header) == ProxyHeader("203.0.113.7", len(header))


@pytest.mark.parametrize(
    "hostile",
    [
        b"PROXY TCP4 203.0.113.7 10.0.0.11 51000 9567\r\n",  # version 1 (text)
        b"GET / HTTP/1.1\r\n",
        b"\r\n\r\n\x00\r\nQUIT\x0a"[:11] + b"X",  # signature broken at its end
        _header(0x11, 0x11, V4_BLOCK),  # binary version 1
        _header(0x31, 0x11, V4_BLOCK),  # version 3
        _header(0x22, 0x11, V4_BLOCK),  # unknown command
        _header(0x21, 0x12, V4_BLOCK),  # UDP over IPv4
        _header(0x21, 0x31, b"\x00" * 216),  # UNIX stream
        _header(0x21, 0x00, b""),  # PROXY with no address
        _header(0x21, 0x11, V4_BLOCK[:11]),  # address block too short
        _header(0x21, 0x21, V4_BLOCK),  # IPv6 family, IPv4-sized block
        _header(0x21, 0x11, V4_BLOCK, length=0xFFFF),  # longer than anyone needs
        _header(0x21, 0x11, V4_BLOCK + b"\x01\x00"),  # truncated TLV
        _header(0x21, 0x11, V4_BLOCK + b"\x01\x00\x09ab"),  # TLV overruns the header
        _header(0x20, 0x41, b""),  # LOCAL with an unknown family
    ],
)
def test_hostile_headers_are_refused(hostile: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(hostile + b"\x00" * 64)


def test_the_length_is_bounded_before_the_bytes_arrive() -> None:
    """A header announcing more than MAX_HEADER is refused from its first 16
    bytes: nothing is buffered waiting for it."""
    announced = _header(0x21, 0x11, b"", length=proxy.MAX_HEADER)
    with pytest.raises(ProxyHeaderError):
        parse(announced[:16])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        header = parse(data)
    except ProxyHeaderError:
        return
    if header is not None:
        assert data.startswith(SIGNATURE)
        assert 16 <= header.size <= min(len(data), proxy.MAX_HEADER)


@given(
    st.sampled_from([0x11, 0x21]),
    st.binary(min_size=36, max_size=36),
    st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=5),
    st.binary(max_size=30),
    st.integers(0, 1),
)
def test_well_formed_headers_parse_at_any_split_and_bad_tlv_lengths_never_pass(
    family: int, addresses: bytes, tlvs: list[tuple[int, bytes]], rest: bytes, corrupt: int
) -> None:
    block = addresses[: 12 if family == 0x11 else 36]
    tail = b"".join(_tlv(kind, value) for kind, value in tlvs)
    header = _header(0x21, family, block + tail)
    parsed = parse(header + rest)
    assert parsed is not None
    assert parsed.size == len(header)
    expected = ipaddress.ip_address(block[:4] if family == 0x11 else block[:16])
    if isinstance(expected, ipaddress.IPv6Address) and expected.ipv4_mapped is not None:
        expected = expected.ipv4_mapped
    assert parsed.source == str(expected)
    if corrupt and tail:
        # Cut the last TLV short by one byte while keeping the announced length:
        # the TLVs no longer tile the header, which must be refused.
        bad = _header(0x21, family, block + tail[:-1] + b"", length=len(block) + len(tail))
        assert parse(bad) is None  # one byte short of what it announced: wait
        bad_len = _header(0x21, family, block + tail + b"\x00")
        with pytest.raises(ProxyHeaderError):
            parse(bad_len)


def test_proxy_protocol_from_settings() -> None:
    from keycask import config
    from keycask.config import ConfigError

    env: dict[str, str] = {}
    assert config.load(dev=True, env=env).proxy_from == ()
    settings = config.load(dev=True, proxy_protocol_from="10.0.0.5, 192.168.0.0/24,::1", env=env)
    assert [str(n) for n in settings.proxy_from] == ["10.0.0.5/32", "192.168.0.0/24", "::1/128"]
    from_env = config.load(dev=True, env={"KEYCASK_PROXY_PROTOCOL_FROM": "10.1.0.0/16"})
    assert [str(n) for n in from_env.proxy_from] == ["10.1.0.0/16"]
    for bad in ("10.0.0.5/24", "haproxy.internal", "10.0.0.0/8,", "300.1.1.1"):
        with pytest.raises(ConfigError, match="--proxy-protocol-from"):
            config.load(dev=True, proxy_protocol_from=bad, env=env)
