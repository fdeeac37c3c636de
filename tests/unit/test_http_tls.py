"""TLS on keycask's HTTP server: the context, the secure flag, what is refused.

Certificates are made per test session with ``cryptography``: a CA, a server
certificate for 127.0.0.1/localhost and a client certificate, all issued by it.
The servers run in-process on uvloop, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keycask import config
from keycask.config import ConfigError
from keycask.http import proxy as http_proxy
from keycask.http.messages import Request, Response
from keycask.http.server import HttpServer, Limits
from keycask.http.tls import tls_context

WAIT = 5.0


# -- certificates -------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_key: Path  # a key that matches none of the certificates


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)  # keycask refuses a key others may read


def _issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("keycask test CA", ca_key, None)
    pem = serialization.Encoding.PEM
    paths = Pki(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_key=directory / "other-key.pem",
    )
    paths.ca.write_bytes(ca.public_bytes(pem))
    for cert_path, key_path, name, usage in (
        (paths.cert, paths.key, "localhost", ExtendedKeyUsageOID.SERVER_AUTH),
        (paths.client_cert, paths.client_key, "a client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(name, key, (ca.subject, ca_key), usage)
        cert_path.write_bytes(cert.public_bytes(pem))
        _write_key(key_path, key)
    _write_key(paths.other_key, ec.generate_private_key(ec.SECP256R1()))
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


# -- the context --------------------------------------------------------------------


def test_context_is_tls12_plus_without_compression(pki: Pki) -> None:
    context = tls_context(pki.cert, pki.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.verify_mode == ssl.CERT_NONE
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12), tls12


def test_client_ca_requires_client_certificates(pki: Pki) -> None:
    assert tls_context(pki.cert, pki.key, pki.ca).verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    "files",
    [
        pytest.param(("missing.pem", "key"), id="missing cert"),
        pytest.param(("cert", "missing.pem"), id="missing key"),
        pytest.param(("cert", "other_key"), id="mismatched key"),
        pytest.param(("garbage", "key"), id="not PEM"),
        pytest.param(("cert", "key", "missing.pem"), id="missing client CA"),
        pytest.param(("cert", "key", "garbage"), id="client CA not PEM"),
    ],
)
def test_bad_files_are_a_clear_config_error(
    pki: Pki, tmp_path: Path, files: tuple[str, ...]
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    named = {"cert": pki.cert, "key": pki.key, "other_key": pki.other_key, "garbage": garbage}
    paths = [named.get(name, tmp_path / name) for name in files]
    with pytest.raises(ConfigError, match="TLS"):
        tls_context(*paths)


def test_settings() -> None:
    env: dict[str, str] = {}
    plain = config.load(dev=True, env=env)
    assert plain.tls_cert is None and plain.endpoint_url.startswith("http://")
    tls = config.load(dev=True, tls_cert="c.pem", tls_key="k.pem", env=env)
    assert tls.tls and tls.endpoint_url == "https://127.0.0.1:9567"
    assert tls.tls_cert == Path("c.pem").resolve()
    from_env = config.load(dev=True, env={"KEYCASK_TLS_CERT": "c.pem", "KEYCASK_TLS_KEY": "k.pem"})
    assert from_env.tls_key == Path("k.pem").resolve()
    with pytest.raises(ConfigError, match="both"):
        config.load(dev=True, tls_cert="c.pem", env=env)
    with pytest.raises(ConfigError, match="both"):
        config.load(dev=True, tls_key="k.pem", env=env)
    with pytest.raises(ConfigError, match="needs"):
        config.load(dev=True, tls_client_ca="ca.pem", env=env)
    production = config.load(dev=False, tls_cert="c.pem", tls_key="k.pem", env=env)
    assert not production.dev and production.tls
    # Production on loopback may be plain; anywhere else it needs TLS or the flag.
    assert not config.load(dev=False, env=env).tls
    with pytest.raises(ConfigError, match="--insecure-plaintext"):
        config.load(dev=False, listen="0.0.0.0:9567", env=env)
    with pytest.raises(ConfigError, match="--insecure-plaintext"):
        config.load(dev=False, listen="10.1.2.3:9567", env=env)
    behind_lb = config.load(dev=False, listen="0.0.0.0:9567", insecure_plaintext=True, env=env)
    assert behind_lb.insecure_plaintext and not behind_lb.tls
    # --dev keeps its old rule: it is a laptop mode and prints a loud warning.
    assert not config.load(dev=True, listen="0.0.0.0:9567", env=env).tls


# -- a server -----------------------------------------------------------------------


async def describe(request: Request) -> Response:
    body = json.dumps({"secure": request.secure, "path": request.path}).encode()
    return Response(200, body, ((b"content-type", b"application/json"),))


async def refuse(request: Request) -> Response:
    return Response(413, b"{}")


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(test(), 30))


async def start(tls: ssl.SSLContext | None, limits: Limits | None = None) -> tuple[HttpServer, int]:
    server = HttpServer(describe, refuse, limits=limits or Limits(), tls=tls)
    await server.start("127.0.0.1", 0)
    return server, server.port


async def get(
    port: int, context: ssl.SSLContext | None, path: str = "/", server_hostname: str | None = None
) -> dict[str, object]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=context,
            server_hostname=server_hostname if context is not None else None,
        ),
        WAIT,
    )
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    answer: dict[str, object] = json.loads(body)
    return answer


async def refused(port: int, context: ssl.SSLContext, server_hostname: str = "localhost") -> bool:
    """True if the server would not talk to this client (handshake or first read fails)."""
    try:
        await get(port, context, server_hostname=server_hostname)
    except (ssl.SSLError, ConnectionError, AssertionError, json.JSONDecodeError):
        return True
    return False


def test_requests_over_tls_are_secure_and_plain_ones_are_not(pki: Pki) -> None:
    async def body() -> None:
        tls_server, tls_port = await start(tls_context(pki.cert, pki.key))
        plain_server, plain_port = await start(None)
        try:
            context = client_context(pki)
            for name in ("localhost", "127.0.0.1"):
                answer = await get(tls_port, context, "/x", server_hostname=name)
                assert answer == {"secure": True, "path": "/x"}
            assert await get(plain_port, None) == {"secure": False, "path": "/"}
        finally:
            await tls_server.shutdown(1.0)
            await plain_server.shutdown(1.0)

    run(body)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_old_protocols_and_weak_ciphers_are_refused(pki: Pki) -> None:
    async def body() -> None:
        server, port = await start(tls_context(pki.cert, pki.key))
        try:
            tls11 = client_context(pki)
            tls11.minimum_version = ssl.TLSVersion.TLSv1_1
            tls11.maximum_version = ssl.TLSVersion.TLSv1_1
            tls11.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would offer it; the server not
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await get(port, tls11, server_hostname="localhost")
            # TLS 1.2 without forward secrecy (RSA key exchange) or without AEAD.
            for suite in ("AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA"):
                weak = client_context(pki)
                weak.maximum_version = ssl.TLSVersion.TLSv1_2
                weak.set_ciphers(suite)
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    await get(port, weak, server_hostname="localhost")
            tls12 = client_context(pki)
            tls12.maximum_version = ssl.TLSVersion.TLSv1_2
            assert (await get(port, tls12, server_hostname="localhost"))["secure"] is True
        finally:
            await server.shutdown(1.0)

    run(body)


def test_plaintext_client_is_dropped_quietly(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def body() -> None:
        server, port = await start(tls_context(pki.cert, pki.key))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            try:
                data = await asyncio.wait_for(reader.read(), WAIT)
            except ConnectionError:
                data = b""
            writer.close()
            assert not data.startswith(b"HTTP/"), data
            # ... and the server keeps serving.
            answer = await get(port, client_context(pki), server_hostname="localhost")
            assert answer["secure"] is True
        finally:
            await server.shutdown(1.0)

    run(body)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


def test_handshake_is_bounded_in_time(pki: Pki) -> None:
    async def body() -> None:
        limits = Limits(header_timeout=0.2)
        server, port = await start(tls_context(pki.cert, pki.key), limits)
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.settimeout(WAIT)
                # Nothing sent: the server gives up on the handshake and closes.
                closed = await asyncio.to_thread(sock.recv, 1)
                assert closed == b""
            # A TCP connection that stalls mid-handshake (partial ClientHello) too.
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.settimeout(WAIT)
                sock.sendall(b"\x16\x03\x01\x02\x00\x01")
                assert await asyncio.to_thread(sock.recv, 1) == b""
        finally:
            await server.shutdown(1.0)

    run(body)


def test_mutual_tls(pki: Pki) -> None:
    async def body() -> None:
        server, port = await start(tls_context(pki.cert, pki.key, pki.ca))
        try:
            assert await refused(port, client_context(pki))
            answer = await get(
                port, client_context(pki, with_cert=True), server_hostname="localhost"
            )
            assert answer["secure"] is True
            # A certificate from some other CA is refused too: the server's own
            # certificate is one (its CA did not issue it as a client certificate
            # under its own key, and it is not trusted as a CA).
            other = make_pki(pki.ca.parent / "other")
            stranger = client_context(pki)
            stranger.load_cert_chain(other.client_cert, other.client_key)
            assert await refused(port, stranger)
        finally:
            await server.shutdown(1.0)

    run(body)


def test_connections_in_their_handshake_hold_a_slot_and_can_be_evicted(pki: Pki) -> None:
    """A TLS connection counts from accept, not from the end of its handshake:
    silent connections that never send a ClientHello fill the slots (not the
    file table unseen), and a real client still gets in by evicting one."""

    async def body() -> None:
        server, port = await start(tls_context(pki.cert, pki.key), Limits(max_connections=3))
        silent = []
        try:
            for _ in range(3):
                silent.append(await asyncio.open_connection("127.0.0.1", port))
                await asyncio.sleep(0.01)  # distinct deadlines: the first is the oldest
            for _ in range(100):
                if server.stats.connections == 3:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.connections == 3  # counted while still in their handshake
            answer = await get(port, client_context(pki), server_hostname="localhost")
            assert answer == {"secure": True, "path": "/"}
            assert server.stats.evictions == 1
            # The first silent connection was nearest its handshake deadline.
            assert await asyncio.wait_for(silent[0][0].read(), WAIT) == b""
        finally:
            for _, writer in silent:
                writer.close()
            await server.shutdown(1.0)

    run(body)


async def _tls_through_proxy(port: int, pki: Pki, *, coalesce: bool) -> dict[str, object]:
    """A request over TLS behind a PROXY v2 header, as HAProxy sends it in TCP
    mode: the header, then the client's TLS bytes. With ``coalesce`` the
    header and the ClientHello travel in one segment, so the server must hand
    what follows its header to the TLS layer itself."""
    context = client_context(pki)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    header = http_proxy.build(("198.51.100.23", 40000), ("127.0.0.1", port))
    try:
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        if coalesce:
            writer.write(header + hello)
        else:
            writer.write(header)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(hello)
        while True:
            data = await asyncio.wait_for(reader.read(65536), WAIT)
            assert data, "closed during the handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                continue
            writer.write(outgoing.read())
            break
        tls.write(b"GET /p HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        writer.write(outgoing.read())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = await asyncio.wait_for(reader.read(65536), WAIT)
            assert data, answer
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError):
                answer += tls.read(65536)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    result: dict[str, object] = json.loads(body)
    return result


def test_tls_passed_through_a_proxy_v2_balancer_sees_the_client(pki: Pki) -> None:
    async def body() -> None:
        server = HttpServer(
            describe_client,
            refuse,
            tls=tls_context(pki.cert, pki.key),
            proxy_from=(ipaddress.ip_network("127.0.0.1/32"),),
        )
        await server.start("127.0.0.1", 0)
        try:
            for coalesce in (False, True):
                answer = await _tls_through_proxy(server.port, pki, coalesce=coalesce)
                assert answer == {"secure": True, "client": "198.51.100.23"}
            # Without the header, the balancer's own connection is refused.
            assert await refused(server.port, client_context(pki))
        finally:
            await server.shutdown(1.0)

    run(body)


async def describe_client(request: Request) -> Response:
    body = json.dumps({"secure": request.secure, "client": request.client}).encode()
    return Response(200, body, ((b"content-type", b"application/json"),))
