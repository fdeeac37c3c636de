"""The server's fetch of a JWKS URL (auth/jwks_fetch.py) against real local
servers: one deadline for the whole answer (a server that trickles bytes or
never answers is given up on in time), only globally routable addresses
(loopback in --dev), the certificate checked for the URL's host name while
the connection goes to the checked address, and one message for every
failure."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from keycask.auth.identity_providers import IdentityProviders
from keycask.auth.jwks_fetch import (
    FETCH_DEADLINE_SECONDS,
    GENERIC_FAILURE,
    JwksAddressRefused,
    JwksUnavailable,
    fetch_jwks,
    fetchable_address,
)
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import (
    IDPCommunicationErrorException,
    InvalidIdentityTokenException,
    ValidationException,
)
from keycask.storage.sqlite import SQLiteStorage
from oidc_tokens import AUDIENCE, ISSUER, Signer, claims, jwks, jwks_server

ACCOUNT = "111122223333"
NOW = time.time()


@pytest.fixture
async def barrier(tmp_path: Path) -> AsyncIterator[Barrier]:
    storage = SQLiteStorage(tmp_path / "idp.db")
    yield await Barrier.open(storage, KeyMaterial.generate())
    await storage.close()


async def _register(barrier: Barrier, jwks_url: str, *, dev: bool) -> IdentityProviders:
    store = IdentityProviders(barrier, loopback_http=dev)
    _, writes = await store.stage_create(ACCOUNT, ISSUER, [AUDIENCE], jwks_url=jwks_url, now=NOW)
    await barrier.commit(writes)
    return store


# -- which addresses --


@pytest.mark.parametrize(
    ("address", "fetched"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("::ffff:93.184.215.14", True),  # mapped: judged as the IPv4 address
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared (carrier-grade NAT)
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("0.0.0.0", False),  # connecting to it reaches this host
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fec0::1", False),  # site-local (deprecated, still routed privately)
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:127.0.0.1", False),
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2001:db8::1", False),  # documentation
        ("127.0.0.1", False),
        ("::1", False),
    ],
)
def test_only_globally_routable_addresses_are_fetched(address: str, fetched: bool) -> None:
    assert fetchable_address(ipaddress.ip_address(address), loopback=False) is fetched


def test_loopback_only_in_dev() -> None:
    for address in ("127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"):
        assert fetchable_address(ipaddress.ip_address(address), loopback=True)
    for address in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "::ffff:192.168.0.1"):
        assert not fetchable_address(ipaddress.ip_address(address), loopback=True)


@given(st.ip_addresses(v=4), st.booleans())
def test_a_mapped_address_is_judged_as_its_ipv4(v4: ipaddress.IPv4Address, dev: bool) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    assert fetchable_address(mapped, loopback=dev) == fetchable_address(v4, loopback=dev)


@contextmanager
def _listener() -> Iterator[tuple[socket.socket, int]]:
    """A listening socket on 127.0.0.1 that answers nothing; the test checks
    whether anything connected."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def _connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except TimeoutError:
        return False
    return True


async def test_registration_refuses_addresses_not_globally_routable(barrier: Barrier) -> None:
    for url, dev in (
        ("https://10.0.0.1/jwks", False),
        ("https://192.168.1.1:8443/jwks", True),  # private stays refused in --dev
        ("https://169.254.169.254/latest/meta-data/", False),
        ("https://169.254.169.254/latest/meta-data/", True),
        ("https://[::ffff:10.0.0.1]/jwks", False),
        ("https://[::ffff:169.254.169.254]/jwks", True),
        ("https://[fe80::1]/jwks", False),
        ("https://0.0.0.0/jwks", True),
    ):
        started = time.monotonic()
        with pytest.raises(ValidationException) as caught:
            await _register(barrier, url, dev=dev)
        assert "publicly routable" in caught.value.message, url
        assert time.monotonic() - started < 1  # refused before any connection
    assert await IdentityProviders(barrier).list_providers(ACCOUNT) == []


async def test_a_host_name_resolving_to_loopback_is_refused_outside_dev(
    barrier: Barrier,
) -> None:
    with _listener() as (listening, port):
        with pytest.raises(ValidationException) as caught:
            await _register(barrier, f"https://localhost:{port}/jwks", dev=False)
        assert "publicly routable" in caught.value.message
        assert not _connected(listening)  # refused before connecting
        # In --dev the same URL is fetched (and fails here: the listener
        # answers nothing), so the refusal above was the address's.
        with pytest.raises(JwksUnavailable) as failed:
            await asyncio.wait_for(
                fetch_jwks(f"https://localhost:{port}/jwks", loopback=True),
                FETCH_DEADLINE_SECONDS + 1,
            )
        assert type(failed.value) is JwksUnavailable
        assert _connected(listening)


async def test_refresh_refuses_an_address_not_globally_routable(
    barrier: Barrier, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider whose URL leads to loopback (registered in --dev here; in
    production, a host whose DNS changed since) is not fetched from by a
    server outside --dev: the token meets a communication error."""
    caplog.set_level("WARNING", logger="keycask")
    signer = Signer("ES256", kid="first")
    with jwks_server(jwks(signer)) as idp:
        await _register(barrier, idp.url.replace("http://127.0.0.1", "http://localhost"), dev=True)
        production = IdentityProviders(barrier, loopback_http=False)
        await production.verify(signer.token(claims(NOW)), account=ACCOUNT, now=NOW)
        stranger = Signer("ES256", kid="stranger")
        with pytest.raises(IDPCommunicationErrorException) as caught:
            await production.verify(stranger.token(claims(NOW)), account=ACCOUNT, now=NOW)
        assert caught.value.message == (
            f"Couldn't retrieve verification key from your identity provider: {GENERIC_FAILURE}."
        )
        assert idp.fetches == 1  # the registration's; the refresh never connected
        assert "not globally routable" in caplog.text
        token = stranger.token(claims(NOW))
        assert token not in caplog.text and token.split(".")[1] not in caplog.text
        # Within the minute: no second attempt.
        with pytest.raises(InvalidIdentityTokenException):
            await production.verify(stranger.token(claims(NOW)), account=ACCOUNT, now=NOW + 5)


async def test_every_failure_is_one_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="keycask")
    with jwks_server("{}") as idp:
        idp.status = 500
        answered = idp.url
        with pytest.raises(JwksUnavailable) as http_error:
            await fetch_jwks(answered, loopback=True)
    with pytest.raises(JwksUnavailable) as refused:
        await fetch_jwks(answered, loopback=True)  # nothing listens now
    with pytest.raises(JwksUnavailable) as unresolved:
        await fetch_jwks("https://no-such-host.invalid/jwks", loopback=True)
    with pytest.raises(JwksAddressRefused) as private:
        await fetch_jwks("https://10.1.2.3/jwks", loopback=True)
    failures = (http_error, refused, unresolved, private)
    assert {str(f.value) for f in failures} == {GENERIC_FAILURE}
    # The log keeps which step failed, for the operator.
    details = [f.value.detail for f in failures]
    assert "HTTP 500" in details[0] and "ConnectionRefusedError" in details[1]
    assert "resolving" in details[2] and "10.1.2.3" in details[3]
    for detail in details:
        assert detail in caplog.text


# -- the certificate is checked for the host name --


def _certificate(tmp_path: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA (its certificate is the trust store) and a server certificate
    it issued for ``host``: (ca.pem, server.pem, server-key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])

    def builder(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextmanager
def _https_server(cert: Path, key: Path, body: bytes) -> Iterator[tuple[int, list[str | None]]]:
    """One-shot-per-connection https server on 127.0.0.1; yields its port and
    the SNI names clients sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda _s, name, _c: names.append(name)
    listening = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listening.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listening.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.recv(4096)
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listening.getsockname()[1], names
    finally:
        stop.set()
        thread.join()
        listening.close()


async def test_tls_is_checked_for_the_host_name_over_the_checked_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = jwks(Signer("EdDSA")).encode()
    ca, cert, key = _certificate(tmp_path, "localhost")
    # The system trust store, as OpenSSL reads it, is this CA alone.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    with _https_server(cert, key, body) as (port, names):
        assert await fetch_jwks(f"https://localhost:{port}/jwks", loopback=True) == body
        assert names == ["localhost"]  # SNI names the host, not the address
        # The same server by its address: the certificate names only
        # "localhost", so the check is against the URL's host, and fails.
        with pytest.raises(JwksUnavailable) as caught:
            await fetch_jwks(f"https://127.0.0.1:{port}/jwks", loopback=True)
        assert "TLS failed" in caught.value.detail
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    with _https_server(cert, key, body) as (port, _):
        with pytest.raises(JwksUnavailable) as untrusted:
            await fetch_jwks(f"https://localhost:{port}/jwks", loopback=True)
        assert "TLS failed" in untrusted.value.detail


# -- one deadline --


class _Stalling:
    """A server on 127.0.0.1 that takes connections and, per ``mode``,
    never answers ("silent"), trickles the status line and headers
    ("headers") or sends headers and trickles the body ("body"), a byte
    every 0.2 s; ``closed_at`` is when it saw the client go."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.closed_at: float | None = None
        self._listening = socket.create_server(("127.0.0.1", 0))
        self.port = self._listening.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listening.accept()
        with conn:
            if self.mode == "silent":
                conn.settimeout(30)
                try:
                    while conn.recv(4096):
                        pass  # the request; then nothing, until the client goes
                except OSError:
                    pass
                self.closed_at = time.monotonic()
                return
            conn.recv(4096)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if self.mode == "body":
                conn.sendall(head + b"Content-Length: 60000\r\n\r\n")
                head = b""
            data = head + b"X-Slow: " + b"a" * 100_000
            for i in range(len(data)):
                if self._stop.wait(0.2):
                    return
                try:
                    conn.sendall(data[i : i + 1])
                except OSError:
                    self.closed_at = time.monotonic()
                    return

    def close(self) -> None:
        self._stop.set()
        self._listening.close()
        self._thread.join(timeout=5)


async def _timed_failure(url: str) -> float:
    started = time.monotonic()
    with pytest.raises(JwksUnavailable) as caught:
        await fetch_jwks(url, loopback=True)
    assert str(caught.value) == GENERIC_FAILURE
    assert "no whole answer within" in caught.value.detail
    return time.monotonic() - started


@pytest.mark.slow
async def test_a_server_that_stalls_or_trickles_is_given_up_on_at_the_deadline(
    barrier: Barrier,
) -> None:
    # "tls": a handshake that never gets an answer (a silent server reads
    # the ClientHello and says nothing).
    servers = {m: _Stalling(m) for m in ("silent", "headers", "body")} | {
        "tls": _Stalling("silent")
    }
    try:
        urls = [f"http://127.0.0.1:{servers[m].port}/jwks" for m in ("silent", "headers", "body")]
        urls.append(f"https://localhost:{servers['tls'].port}/jwks")
        started = time.monotonic()
        took = await asyncio.gather(*(_timed_failure(url) for url in urls))
        for url, seconds in zip(urls, took, strict=True):
            assert FETCH_DEADLINE_SECONDS - 0.5 < seconds < FETCH_DEADLINE_SECONDS + 1, (url, took)
        # The fetching threads end too: each server sees its client go soon
        # after the deadline (a trickler notices on its next byte).
        await asyncio.sleep(1)
        for mode, server in servers.items():
            assert server.closed_at is not None, mode
            assert server.closed_at - started < FETCH_DEADLINE_SECONDS + 2, mode
    finally:
        for server in servers.values():
            server.close()
    # Through registration: IDPCommunicationError, in time.
    slow = _Stalling("headers")
    try:
        started = time.monotonic()
        with pytest.raises(IDPCommunicationErrorException) as caught:
            await _register(barrier, f"http://127.0.0.1:{slow.port}/jwks", dev=True)
        assert time.monotonic() - started < FETCH_DEADLINE_SECONDS + 1
        assert caught.value.message == "The JWKS URL could not be fetched."
    finally:
        slow.close()
