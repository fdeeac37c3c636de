"""The Cloud KMS door over gRPC (``--gcp-grpc-listen``, http/gcp_grpc.py),
driven by google-cloud-kms's gRPC transport (its default) against real
servers: one with ``--dev --tls-self-signed`` (a secure channel trusting
the data dir's certificate, the token as call credentials), one on
plaintext loopback (the token in metadata). Every call is the REST door's
request underneath: same keys, same errors, audited with door gcp-kms."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import google.api_core.exceptions as gexc
import grpc
import pytest
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from selfsigned import SelfSignedServer
from tests.conftest import Server, free_port
from tests.e2e.test_gcp_kms_e2e import (
    PROJECT,
    _asymmetric,
    _client,
    _crc,
    _records,
    _ring,
    _symmetric,
    _token,
    _user,
)

from keycask.errors import Sealed
from keycask.http.gcp_grpc import Rpc, transcode

_ALG = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
_PURPOSE = kms_v1.CryptoKey.CryptoKeyPurpose
_ENCRYPT = "/google.cloud.kms.v1.KeyManagementService/Encrypt"


def _grpc_client(channel: grpc.Channel) -> kms_v1.KeyManagementServiceClient:
    return kms_v1.KeyManagementServiceClient(
        transport=KeyManagementServiceGrpcTransport(channel=channel)
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    port = free_port()
    srv = SelfSignedServer(
        tmp_path_factory.mktemp("grpc-tls") / "data",
        args=("--tls-self-signed", "--gcp-grpc-listen", f"127.0.0.1:{port}"),
    ).start()
    yield srv, port
    srv.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    port = free_port()
    srv = Server(
        tmp_path_factory.mktemp("grpc-plain") / "data",
        args=("--gcp-grpc-listen", f"127.0.0.1:{port}"),
    ).start()
    yield srv, port
    srv.stop()


def _secure(server: Server, port: int, token: str) -> grpc.Channel:
    ca = (server.data_dir / "tls" / "cert.pem").read_bytes()
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(ca), grpc.access_token_call_credentials(token)
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@pytest.fixture(scope="module")
def tls_gcp(tls_server: tuple[Server, int]) -> Iterator[kms_v1.KeyManagementServiceClient]:
    server, port = tls_server
    token = _token(server, _user(server, ["kms:*"]))
    channel = _secure(server, port, token)
    yield _grpc_client(channel)
    channel.close()


def _meta(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_ring_key_encrypt_decrypt_with_crc32c_over_tls(
    tls_server: tuple[Server, int], tls_gcp: kms_v1.KeyManagementServiceClient
) -> None:
    server, _ = tls_server
    ring = _ring(tls_gcp)
    assert tls_gcp.get_key_ring(name=ring).name == ring
    key = _symmetric(tls_gcp, ring)
    assert key.purpose == _PURPOSE.ENCRYPT_DECRYPT and dict(key.labels) == {"team": "payments"}
    assert key.primary.name == f"{key.name}/cryptoKeyVersions/1"
    plaintext, aad = b"card 4111" * 1000, b"order 17"
    out = tls_gcp.encrypt(
        request={
            "name": key.name,
            "plaintext": plaintext,
            "additional_authenticated_data": aad,
            "plaintext_crc32c": _crc(plaintext),
            "additional_authenticated_data_crc32c": _crc(aad),
        }
    )
    assert out.name == f"{key.name}/cryptoKeyVersions/1"
    assert out.verified_plaintext_crc32c and out.verified_additional_authenticated_data_crc32c
    assert out.ciphertext_crc32c == _crc(out.ciphertext)
    back = tls_gcp.decrypt(
        request={
            "name": key.name,
            "ciphertext": out.ciphertext,
            "additional_authenticated_data": aad,
            "ciphertext_crc32c": _crc(out.ciphertext),
        }
    )
    assert back.plaintext == plaintext and back.plaintext_crc32c == _crc(plaintext)
    with pytest.raises(gexc.InvalidArgument, match="checksum"):
        tls_gcp.encrypt(request={"name": key.name, "plaintext": b"x", "plaintext_crc32c": 1})
    # Audited as the REST door's calls are: door gcp-kms, the peer's address.
    records = [
        r for r in _records(server) if r["operation"] in ("GcpKms.Encrypt", "GcpKms.Decrypt")
    ]
    ok = [r for r in records if r["outcome"] == "success"]
    assert len(ok) == 2 and all(r["door"] == "gcp-kms" for r in records)
    assert all(r["source_ip"] == "127.0.0.1" and r["key_arn"] for r in ok)
    assert [r["error_code"] for r in records if r["outcome"] == "error"]


def test_asymmetric_sign_verified_with_cryptography(
    tls_gcp: kms_v1.KeyManagementServiceClient,
) -> None:
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _asymmetric(tls_gcp, _ring(tls_gcp), _PURPOSE.ASYMMETRIC_SIGN, _ALG.EC_SIGN_P256_SHA256)
    version = f"{key.name}/cryptoKeyVersions/1"
    public = tls_gcp.get_public_key(name=version)
    assert public.pem_crc32c == _crc(public.pem.encode())
    loaded = serialization.load_pem_public_key(public.pem.encode())
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    message = b"sign me over gRPC"
    digest = hashlib.sha256(message).digest()
    out = tls_gcp.asymmetric_sign(
        request={"name": version, "digest": {"sha256": digest}, "digest_crc32c": _crc(digest)}
    )
    assert out.verified_digest_crc32c and out.signature_crc32c == _crc(out.signature)
    loaded.verify(out.signature, message, ec.ECDSA(hashes.SHA256()))


def test_list_pages(tls_gcp: kms_v1.KeyManagementServiceClient) -> None:
    ring = _ring(tls_gcp)
    names = sorted(_symmetric(tls_gcp, ring).name for _ in range(5))
    pager = tls_gcp.list_crypto_keys(request={"parent": ring, "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.crypto_keys) for p in pages] == [2, 2, 1]
    assert sorted(k.name for p in pages for k in p.crypto_keys) == names
    assert pages[0].next_page_token and not pages[-1].next_page_token


def test_errors_map_to_grpc_status(tls_server: tuple[Server, int]) -> None:
    server, port = tls_server
    admin = _grpc_client(_secure(server, port, _token(server, _user(server, ["kms:*"]))))
    ring = _ring(admin)
    with pytest.raises(gexc.NotFound) as missing:
        admin.get_key_ring(name=f"{ring}-nope")
    assert missing.value.grpc_status_code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(gexc.InvalidArgument):
        admin.get_key_ring(name=f"projects/{PROJECT}/locations/global/keyRings/bad.ring")
    nobody = _grpc_client(_secure(server, port, _token(server, _user(server, None))))
    with pytest.raises(gexc.PermissionDenied):
        nobody.get_key_ring(name=ring)
    stranger = _grpc_client(_secure(server, port, "kct." + "A" * 43))
    with pytest.raises(gexc.Unauthenticated):
        stranger.get_key_ring(name=ring)
    with pytest.raises(gexc.AlreadyExists):
        admin.create_key_ring(
            request={"parent": ring.rsplit("/keyRings/", 1)[0],
                     "key_ring_id": ring.rsplit("/", 1)[1], "key_ring": {}}
        )  # fmt: skip
    errors = [r for r in _records(server) if r["operation"] == "GcpKms.GetKeyRing"]
    errors = [r for r in errors if r["outcome"] == "error"]
    assert {r["error_code"] for r in errors} >= {"NotFoundException", "AccessDeniedException"}
    assert all(r["door"] == "gcp-kms" for r in errors)


def test_same_key_over_rest_and_grpc_on_loopback(plain_server: tuple[Server, int]) -> None:
    server, port = plain_server
    token = _token(server, _user(server, ["kms:*"]))
    rest = _client(server, token)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        over_grpc = _grpc_client(channel)
        key = _symmetric(rest, _ring(rest))
        assert over_grpc.get_crypto_key(name=key.name, metadata=_meta(token)) == key
        sealed = over_grpc.encrypt(
            request={"name": key.name, "plaintext": b"both ways"}, metadata=_meta(token)
        )
        assert rest.decrypt(name=key.name, ciphertext=sealed.ciphertext).plaintext == b"both ways"
        again = rest.encrypt(name=key.name, plaintext=b"and back")
        opened = over_grpc.decrypt(
            request={"name": key.name, "ciphertext": again.ciphertext}, metadata=_meta(token)
        )
        assert opened.plaintext == b"and back"
        # The mixins Google's clients reach on the same channel.
        policy = over_grpc.get_iam_policy(request={"resource": key.name}, metadata=_meta(token))
        assert policy.version in (0, 1, 3)
        location = over_grpc.get_location(
            request={"name": f"projects/{PROJECT}/locations/global"}, metadata=_meta(token)
        )
        assert location.location_id == "global"


def test_hostile_callers_have_no_effect(plain_server: tuple[Server, int]) -> None:
    server, port = plain_server
    token = _token(server, _user(server, ["kms:*"]))
    rest = _client(server, token)
    ring = _ring(rest)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = _grpc_client(channel)
        create = {"parent": ring, "crypto_key_id": "sneaky", "crypto_key": {"purpose": 1}}
        with pytest.raises(gexc.Unauthenticated):
            client.create_crypto_key(request=create)
        with pytest.raises(gexc.Unauthenticated):
            client.create_crypto_key(request=create, metadata=[("authorization", "Basic x")])
        with pytest.raises(gexc.ResourceExhausted):
            client.create_crypto_key(
                request={**create, "crypto_key": {"purpose": 1, "labels": {"a": "b" * (2 << 20)}}},
                metadata=_meta(token),
            )
        raw = channel.unary_unary(_ENCRYPT)
        with pytest.raises(grpc.RpcError) as garbage:
            raw(b"\xff\xff\xff\xff garbage", metadata=_meta(token))
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Parses, but proto3 JSON cannot write it: a timestamp past year 9999.
        bad_time = kms_v1.UpdateCryptoKeyRequest.pb()()
        bad_time.crypto_key.name = f"{ring}/cryptoKeys/k"
        bad_time.crypto_key.next_rotation_time.seconds = 10**12
        update = channel.unary_unary("/google.cloud.kms.v1.KeyManagementService/UpdateCryptoKey")
        with pytest.raises(grpc.RpcError) as unwritable:
            update(bad_time.SerializeToString(), metadata=_meta(token))
        assert unwritable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/google.cloud.kms.v1.KeyManagementService/Nope")(b"")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # Bytes that are no HTTP/2 at all, and an HTTP/1.1 request.
        for junk in (b"\x00" * 64 + bytes(range(256)), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(junk)
                sock.settimeout(5)
                try:
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass
        assert not list(rest.list_crypto_keys(parent=ring))
        # Still serving, on both ports.
        key = _symmetric(rest, ring)
        out = client.encrypt(request={"name": key.name, "plaintext": b"x"}, metadata=_meta(token))
        assert out.ciphertext
    assert server.healthy()
    assert server.log_path is not None
    assert f"Google Cloud KMS over gRPC at 127.0.0.1:{port}" in server.log_path.read_text()
    refusals = [r for r in _records(server) if r["operation"] == "GcpKms.CreateCryptoKey"]
    unauthenticated = [r for r in refusals if r["outcome"] == "error" and r["door"] == "gcp-kms"]
    assert len(unauthenticated) >= 2
    # The message that did not parse: refused before any door, and audited.
    assert any(r["error_code"] == "SerializationException" for r in _records(server))


def _name_refusals(server: Server, since: int) -> list[tuple[str, str, str]]:
    return [
        (r["door"], r["operation"], r["error_code"])
        for r in _records(server)[since:]
        if r["outcome"] == "error"
    ]


def test_resource_names_reach_only_the_rpcs_own_route(plain_server: tuple[Server, int]) -> None:
    # Review 21: a resource name went into the REST path unchecked, so
    # GetKeyRing(name="sys/mounts") ran the Vault door's ListMounts,
    # CreateKeyRing(parent="transit/keys") its CreateKey, and GetCryptoKey
    # on a version's name ran GetCryptoKeyVersion.
    server, port = plain_server
    token = _token(server, _user(server, ["kms:*", "keycask:*"]))
    rest = _client(server, token)
    ring = _ring(rest)
    key = _symmetric(rest, ring)
    job = rest.create_import_job(
        request={"parent": ring, "import_job_id": f"job-{uuid.uuid4().hex[:8]}",
                 "import_job": {"import_method": kms_v1.ImportJob.ImportMethod.RSA_OAEP_3072_SHA256,
                                "protection_level": kms_v1.ProtectionLevel.SOFTWARE}}
    )  # fmt: skip
    location = ring.rsplit("/keyRings/", 1)[0]
    since = len(_records(server))
    meta = _meta(token)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        gcp = _grpc_client(channel)
        calls: list[tuple[str, Callable[[], object]]] = []
        for name in (
            "sys/mounts",
            "transit/keys",
            "projects/../sys/mounts",
            f"{location}/keyRings/r/extra",
            f"projects//locations/global/keyRings/{ring.rsplit('/', 1)[1]}",
            f"projects/{PROJECT}/locations/./keyRings/r",
            f"projects/{PROJECT}/locations/global/keyRings/..",
            f"projects/{PROJECT}/locations/global/keyRings/",
            f"{ring}/",
            "",
        ):
            calls.append(("GetKeyRing", partial(gcp.get_key_ring, name=name, metadata=meta)))
        create = {"parent": "transit/keys", "key_ring_id": "x", "key_ring": {}}
        calls.append(("CreateKeyRing", partial(gcp.create_key_ring, request=create, metadata=meta)))
        version = f"{key.name}/cryptoKeyVersions/1"
        calls.append(("GetCryptoKey", partial(gcp.get_crypto_key, name=version, metadata=meta)))
        calls.append(
            (
                "GetCryptoKeyVersion",
                partial(gcp.get_crypto_key_version, name=job.name, metadata=meta),
            )
        )
        for name in (f"{key.name}/../..", f"{ring}/cryptoKeys/", f"{key.name}//x", "transit/x"):
            sealing = {"name": name, "plaintext": b"x"}
            calls.append(("Encrypt", partial(gcp.encrypt, request=sealing, metadata=meta)))
        # An RPC of several rules (the IAM mixin): each rule's shape, as one.
        for resource in ("sys/mounts", f"{ring}/cryptoKeys/k/cryptoKeyVersions/1", f"{ring}/.."):
            iam = {"resource": resource}
            calls.append(("GetIamPolicy", partial(gcp.get_iam_policy, request=iam, metadata=meta)))
        calls.append(
            ("GetLocation", partial(gcp.get_location, request={"name": f"{location}/.."},
                                    metadata=meta))
        )  # fmt: skip
        for _, call in calls:
            with pytest.raises(gexc.InvalidArgument):
                call()
        # Names that fit their rule still serve: ** takes a version for Encrypt.
        assert gcp.encrypt(request={"name": version, "plaintext": b"x"}, metadata=meta).ciphertext
        assert gcp.get_crypto_key(name=key.name, metadata=meta).name == key.name
    refused = _name_refusals(server, since)
    assert refused == [
        ("gcp-kms", f"GcpKms.{operation}", "ValidationException") for operation, _ in calls
    ]
    assert not [r for r in _records(server) if r.get("door") == "vault-transit"]
    assert [k.name for k in rest.list_crypto_keys(parent=ring)] == [key.name]


def test_transcode_refuses_a_path_outside_the_door() -> None:
    # Every Cloud KMS rule is under /v1/projects/; one that is not is refused.
    for uri in ("/v1/{name=sys/*}", "/v1/sys/{name=projects/*}", "/{name=projects/*}"):
        rpc = Rpc("GetKeyRing", (("GET", uri, ""),), dict, dict)
        with pytest.raises(ValueError, match="Cloud KMS"):
            transcode(rpc, {"name": "projects/p" if "projects" in uri else "sys/mounts"}, dict)
    # A rule's own literal segments, and one segment per *.
    rpc = Rpc("GetKeyRing", (("GET", "/v1/{name=projects/*/locations/*}", ""),), dict, dict)
    assert transcode(rpc, {"name": "projects/p/locations/l"}, dict)[1] == (
        b"/v1/projects/p/locations/l"
    )
    for name in ("projects/p/locations/l/x", "projects/p/regions/l", "projects/p/locations/.."):
        with pytest.raises(ValueError):
            transcode(rpc, {"name": name}, dict)


def _refused(tmp_path: Path, *flags: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "server", "--dev", "--data-dir",
         str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}", *flags],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0, out.stdout
    return out.stderr


def test_refused_with_workers_and_plaintext_off_loopback(tmp_path: Path) -> None:
    grpc_flag = ("--gcp-grpc-listen", f"127.0.0.1:{free_port()}")
    assert "single process" in _refused(tmp_path, "--workers", "2", *grpc_flag)
    assert "plaintext gRPC" in _refused(tmp_path, "--gcp-grpc-listen", f"0.0.0.0:{free_port()}")
    assert "HOST:PORT" in _refused(tmp_path, "--gcp-grpc-listen", "nowhere")
    assert not list((tmp_path / "data").glob("audit/*.jsonl"))  # refused before it opened
    # An address it cannot bind: refused once the store is open, before any listener answers.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        in_use = f"127.0.0.1:{taken.getsockname()[1]}"
        assert "port is in use" in _refused(tmp_path, "--gcp-grpc-listen", in_use)


def test_help_names_the_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "server", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "--gcp-grpc-listen" in out.stdout and "KEYCASK_GCP_GRPC_LISTEN" in out.stdout


@pytest.mark.slow
def test_a_sealed_server_answers_unavailable_over_grpc_then_serves(tmp_path: Path) -> None:
    from production import Production

    port = free_port()
    server = Production(tmp_path / "prod", tls=False)
    server.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    server.start("--gcp-grpc-listen", f"127.0.0.1:{port}")
    name = f"projects/{PROJECT}/locations/global/keyRings/r/cryptoKeys/k"
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = _grpc_client(channel)
            call = {"request": {"name": name, "plaintext": b"x"}, "metadata": _meta("kct.x")}
            with pytest.raises(gexc.ServiceUnavailable, match="sealed"):
                client.encrypt(**call, retry=None)
            server.unseal_with(server.shares[:2])
            with pytest.raises(gexc.Unauthenticated):
                client.encrypt(**call)
        audit = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in audit if '"GcpKms.Encrypt"' in line]
        assert [(r["door"], r["error_code"]) for r in records] == [
            ("gcp-kms", Sealed.code),
            ("gcp-kms", "AccessDeniedException"),
        ]
    finally:
        if server.proc is not None:
            server.stop()


def test_refused_at_start_without_the_grpc_extra(tmp_path: Path) -> None:
    # grpcio unimportable, as in an installation without keycask[grpc].
    script = (
        "import sys; sys.modules['grpc'] = None; from keycask.cli.main import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "server", "--dev", "--data-dir", str(tmp_path / "data"),
         "--listen", f"127.0.0.1:{free_port()}", "--gcp-grpc-listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "keycask[grpc]" in out.stderr
    assert not (tmp_path / "data" / "audit").exists()
