"""The Google Cloud KMS door (service/doors/gcp_kms.py) driven by Google's
own client, google-cloud-kms, over its REST transport, against a real
server: keycask-issued bearer tokens, key rings and crypto keys that are
keycask keys (usable from the AWS door), Cloud KMS's errors for bad input,
each audited."""

from __future__ import annotations

import json
import uuid
from typing import Any

import google.api_core.exceptions as gexc
import google.auth.credentials
import google_crc32c
import pytest
import requests
from botocore.exceptions import ClientError
from google.cloud import kms_v1
from tests.conftest import Server

PROJECT = "keycask-test"


class _Token(google.auth.credentials.Credentials):  # type: ignore[misc]
    """A keycask-issued bearer token as google-auth credentials."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def refresh(self, request: Any) -> None:
        """A keycask token is not refreshed: it lives the TTL it was made with."""


def _user(server: Server, actions: list[str] | None) -> str:
    name = f"gcp-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    if actions is not None:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        path = server.data_dir.parent / f"{name}.json"
        path.write_text(json.dumps(policy))
        server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    return name


def _token(server: Server, name: str) -> str:
    out = server.cli("principals", "token", "create", name, "--json").stdout
    return str(json.loads(out)["Token"])


def _client(server: Server, token: str) -> kms_v1.KeyManagementServiceClient:
    return kms_v1.KeyManagementServiceClient(
        transport="rest",
        credentials=_Token(token),
        client_options={"api_endpoint": server.endpoint},
    )


def _records(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


@pytest.fixture(scope="module")
def admin_token(server: Server) -> str:
    return _token(server, _user(server, ["kms:*"]))


@pytest.fixture(scope="module")
def gcp(server: Server, admin_token: str) -> kms_v1.KeyManagementServiceClient:
    return _client(server, admin_token)


def _ring(gcp: kms_v1.KeyManagementServiceClient, location: str = "global") -> str:
    ring_id = f"ring-{uuid.uuid4().hex[:8]}"
    parent = f"projects/{PROJECT}/locations/{location}"
    ring = gcp.create_key_ring(request={"parent": parent, "key_ring_id": ring_id, "key_ring": {}})
    assert ring.name == f"{parent}/keyRings/{ring_id}"
    return ring.name


def _symmetric(gcp: kms_v1.KeyManagementServiceClient, ring: str, key_id: str = "") -> Any:
    key_id = key_id or f"key-{uuid.uuid4().hex[:8]}"
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": key_id,
            "crypto_key": {
                "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                "labels": {"team": "payments"},
            },
        }
    )


def test_key_rings_create_get_list_and_page(gcp: kms_v1.KeyManagementServiceClient) -> None:
    location = "sa-east-1"  # a region's name (no other test here makes key rings in it)
    names = sorted(_ring(gcp, location) for _ in range(3))
    assert gcp.get_key_ring(name=names[0]).name == names[0]
    parent = f"projects/{PROJECT}/locations/{location}"
    paged = gcp.list_key_rings(request={"parent": parent, "page_size": 2})
    assert paged.total_size == 0  # a page of several: no total is claimed
    assert [r.name for r in paged] == names
    assert gcp.list_key_rings(request={"parent": parent}).total_size == 3
    with pytest.raises(gexc.Conflict, match="already exists"):
        gcp.create_key_ring(
            request={"parent": parent, "key_ring_id": names[0].rsplit("/", 1)[1], "key_ring": {}}
        )
    with pytest.raises(gexc.NotFound):
        gcp.get_key_ring(name=f"{parent}/keyRings/nope")


def test_encrypt_decrypt_with_aad_and_crc32c(gcp: kms_v1.KeyManagementServiceClient) -> None:
    ring = _ring(gcp)
    key = _symmetric(gcp, ring)
    assert key.purpose == kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT
    assert key.primary.name == f"{key.name}/cryptoKeyVersions/1"
    assert key.primary.state == kms_v1.CryptoKeyVersion.CryptoKeyVersionState.ENABLED
    assert dict(key.labels) == {"team": "payments"}
    plaintext, aad = b"card 4111" * 1000, b"order 17"
    out = gcp.encrypt(
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
    back = gcp.decrypt(
        request={
            "name": key.name,
            "ciphertext": out.ciphertext,
            "additional_authenticated_data": aad,
            "ciphertext_crc32c": _crc(out.ciphertext),
        }
    )
    assert back.plaintext == plaintext and back.plaintext_crc32c == _crc(plaintext)
    assert back.used_primary
    with pytest.raises(gexc.BadRequest):
        gcp.decrypt(
            request={
                "name": key.name,
                "ciphertext": out.ciphertext,
                "additional_authenticated_data": b"x",
            }
        )
    with pytest.raises(gexc.BadRequest) as bad_crc:
        gcp.encrypt(request={"name": key.name, "plaintext": b"hi", "plaintext_crc32c": 1})
    assert "checksum" in bad_crc.value.message


def test_versions_rotation_and_old_version_decrypt(
    gcp: kms_v1.KeyManagementServiceClient,
) -> None:
    key = _symmetric(gcp, _ring(gcp))
    first = gcp.encrypt(request={"name": key.name, "plaintext": b"v1 data"})
    created = gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert created.name == f"{key.name}/cryptoKeyVersions/2"
    # As in Cloud KMS, a new version is not the primary until it is made so.
    assert gcp.get_crypto_key(name=key.name).primary.name.endswith("/cryptoKeyVersions/1")
    made = gcp.update_crypto_key_primary_version(
        request={"name": key.name, "crypto_key_version_id": "2"}
    )
    assert made.primary.name == created.name
    assert gcp.get_crypto_key(name=key.name).primary.name == created.name
    listed = [v.name for v in gcp.list_crypto_key_versions(parent=key.name)]
    assert listed == [f"{key.name}/cryptoKeyVersions/1", created.name]
    assert gcp.get_crypto_key_version(name=created.name).algorithm == (
        kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    )
    second = gcp.encrypt(request={"name": key.name, "plaintext": b"v2 data"})
    assert second.name == created.name
    old = gcp.decrypt(request={"name": key.name, "ciphertext": first.ciphertext})
    assert old.plaintext == b"v1 data" and not old.used_primary
    # A version name encrypts under that version.
    pinned = gcp.encrypt(request={"name": listed[0], "plaintext": b"pinned"})
    assert pinned.name == listed[0]
    assert gcp.decrypt(request={"name": key.name, "ciphertext": pinned.ciphertext}).plaintext == (
        b"pinned"
    )
    with pytest.raises(gexc.NotFound):
        gcp.get_crypto_key_version(name=f"{key.name}/cryptoKeyVersions/9")


def test_crypto_keys_list_get_and_patch_labels(gcp: kms_v1.KeyManagementServiceClient) -> None:
    ring = _ring(gcp)
    names = sorted(_symmetric(gcp, ring, f"k{i}").name for i in range(3))
    assert [k.name for k in gcp.list_crypto_keys(request={"parent": ring, "page_size": 2})] == names
    patched = gcp.update_crypto_key(
        request={
            "crypto_key": {"name": names[0], "labels": {"env": "prod"}},
            "update_mask": {"paths": ["labels"]},
        }
    )
    assert dict(patched.labels) == {"env": "prod"}
    assert dict(gcp.get_crypto_key(name=names[0]).labels) == {"env": "prod"}
    with pytest.raises(gexc.Conflict, match="already exists"):
        _symmetric(gcp, ring, "k0")
    with pytest.raises(gexc.NotFound, match="KeyRing"):
        _symmetric(gcp, ring + "x")


def test_a_crypto_key_is_a_keycask_key_the_aws_door_uses(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    ring = _ring(gcp)
    key = _symmetric(gcp, ring)
    alias = "alias/gcp/" + key.name.replace("projects/", "").replace("/locations", "").replace(
        "/keyRings", ""
    ).replace("/cryptoKeys", "")
    described = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert key.name in described["Description"]
    # Cloud KMS -> AWS: the AAD is bound as its SHA-256 under gcp-kms:aad-sha256.
    import hashlib

    aad = b"tenant 9"
    sealed = gcp.encrypt(
        request={"name": key.name, "plaintext": b"both doors", "additional_authenticated_data": aad}
    )
    context = {"gcp-kms:aad-sha256": hashlib.sha256(aad).hexdigest()}
    opened = kms.decrypt(CiphertextBlob=sealed.ciphertext, EncryptionContext=context)
    assert opened["Plaintext"] == b"both doors"
    # AWS -> Cloud KMS.
    blob = kms.encrypt(KeyId=alias, Plaintext=b"from aws")["CiphertextBlob"]
    assert gcp.decrypt(request={"name": key.name, "ciphertext": blob}).plaintext == b"from aws"
    # Disabled from the AWS door: the versions say so, and encrypt is refused.
    kms.disable_key(KeyId=described["KeyId"])
    try:
        state = gcp.get_crypto_key(name=key.name).primary.state
        assert state == kms_v1.CryptoKeyVersion.CryptoKeyVersionState.DISABLED
        with pytest.raises(gexc.BadRequest) as refused:
            gcp.encrypt(request={"name": key.name, "plaintext": b"x"})
        assert refused.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    finally:
        kms.enable_key(KeyId=described["KeyId"])


def test_generate_random_bytes(gcp: kms_v1.KeyManagementServiceClient) -> None:
    out = gcp.generate_random_bytes(
        request={
            "location": f"projects/{PROJECT}/locations/global",
            "length_bytes": 32,
            "protection_level": kms_v1.ProtectionLevel.HSM,
        }
    )
    assert len(out.data) == 32 and out.data_crc32c == _crc(out.data)


def test_a_principal_without_permission_is_refused_and_audited(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    key = _symmetric(gcp, _ring(gcp))
    reader = _client(server, _token(server, _user(server, ["kms:DescribeKey"])))
    assert reader.get_crypto_key(name=key.name).name == key.name
    with pytest.raises(gexc.Forbidden) as denied:
        reader.encrypt(request={"name": key.name, "plaintext": b"x"})
    assert denied.value.response.json()["error"]["status"] == "PERMISSION_DENIED"
    record = next(
        r for r in reversed(_records(server))
        if r["operation"] == "GcpKms.Encrypt" and r["outcome"] != "success"
    )  # fmt: skip
    assert record["door"] == "gcp-kms" and record["decision"] == "deny"
    assert record["error_code"] == "AccessDeniedException"


def _raw(server: Server, method: str, path: str, token: str | None, body: Any = None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.request(method, server.endpoint + path, headers=headers, json=body, timeout=30)


def test_hostile_input_gets_cloud_kms_errors_with_no_effect(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, admin_token: str
) -> None:
    ring = _ring(gcp)
    key = _symmetric(gcp, ring)
    base = f"/v1/projects/{PROJECT}/locations/global"
    cases = [
        # (method, path, body, token, HTTP status, google.rpc status)
        ("GET", f"{base}/keyRings/x", None, None, 401, "UNAUTHENTICATED"),
        ("GET", f"{base}/keyRings/x", None, "kct." + "A" * 43, 401, "UNAUTHENTICATED"),
        ("GET", f"{base}/keyRings/bad.ring", None, admin_token, 400, "INVALID_ARGUMENT"),
        ("GET", "/v1/projects/UPPER/locations/global/keyRings", None, admin_token, 400,
         "INVALID_ARGUMENT"),
        ("POST", f"/v1/{ring}/cryptoKeys?cryptoKeyId=weird",
         {"purpose": "ENCRYPT_DECRYPT", "versionTemplate": {"algorithm": "EC_SIGN_P256_SHA256"}},
         admin_token, 400, "INVALID_ARGUMENT"),
        ("POST", f"/v1/{ring}/cryptoKeys?cryptoKeyId=hsm",
         {"purpose": 1, "versionTemplate": {"protectionLevel": 2}}, admin_token, 400,
         "FAILED_PRECONDITION"),
        ("POST", f"/v1/{key.name}:encrypt", {"plaintext": "aGk=", "plaintextCrc32c": "5"},
         admin_token, 400, "INVALID_ARGUMENT"),
        ("POST", f"/v1/{key.name}:decrypt", {"ciphertext": "AAAAAAAAAAAAAAAAAAAAAA=="},
         admin_token, 400, "INVALID_ARGUMENT"),
        ("POST", f"/v1/{key.name}:encrypt", "not an object", admin_token, 400, "INVALID_ARGUMENT"),
        ("POST", f"/v1/{key.name}/cryptoKeyVersions/1:rawEncrypt", {}, admin_token, 501,
         "UNIMPLEMENTED"),
        ("POST", f"/v1/{key.name}/cryptoKeyVersions/1:asymmetricSign", {"data": "aGk="},
         admin_token, 400, "INVALID_ARGUMENT"),
        ("GET", f"{base}/nothing/here", None, admin_token, 404, "NOT_FOUND"),
    ]  # fmt: skip
    for method, path, body, token, code, status in cases:
        reply = _raw(server, method, path, token, body)
        assert reply.status_code == code, (path, reply.text)
        error = reply.json()["error"]
        assert error["code"] == code and error["status"] == status, (path, error)
    # No key was made by the refused creates.
    assert [k.name for k in gcp.list_crypto_keys(parent=ring)] == [key.name]
    big = {"plaintext": "A" * (2 * 1024 * 1024)}
    reply = _raw(server, "POST", f"/v1/{key.name}:encrypt", admin_token, big)
    assert reply.status_code == 400 and reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    audited = [r for r in _records(server) if r.get("door") == "gcp-kms"]
    assert any(r["error_code"] == "UnsupportedOperationException" for r in audited)


def test_project_mapping_refuses_other_accounts_projects(tmp_path: Any) -> None:
    # Two workers: the mapping reaches each worker process.
    srv = Server(
        tmp_path / "data", workers=2, args=("--gcp-project", "mapped-proj=000000000000")
    ).start()
    try:
        token = _token(srv, _user(srv, ["kms:*"]))
        client = _client(srv, token)
        ok = client.create_key_ring(
            request={
                "parent": "projects/mapped-proj/locations/global",
                "key_ring_id": "r",
                "key_ring": {},
            }
        )
        assert ok.name.endswith("/keyRings/r")
        # A new connection each: the kernel spreads them over the workers.
        path = "/v1/projects/other-proj/locations/global/keyRings/r"
        for _ in range(8):
            reply = _raw(srv, "GET", path, token)
            assert reply.status_code == 403, reply.text
            assert reply.json()["error"]["status"] == "PERMISSION_DENIED"
        with pytest.raises(gexc.Forbidden, match="project"):
            client.create_key_ring(
                request={
                    "parent": "projects/other-proj/locations/global",
                    "key_ring_id": "r",
                    "key_ring": {},
                }
            )
    finally:
        srv.stop()


_STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState


def _set_state(gcp: kms_v1.KeyManagementServiceClient, name: str, state: Any) -> Any:
    return gcp.update_crypto_key_version(
        request={
            "crypto_key_version": {"name": name, "state": state},
            "update_mask": {"paths": ["state"]},
        }
    )


def _failed_precondition(call: Any) -> str:
    with pytest.raises(gexc.GoogleAPICallError) as refused:
        call()
    error = refused.value.response.json()["error"]
    assert (error["code"], error["status"]) == (400, "FAILED_PRECONDITION"), error
    return str(error["message"])


def test_a_disabled_version_opens_nothing_through_either_door(
    gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    key = _symmetric(gcp, _ring(gcp))
    old = gcp.encrypt(request={"name": key.name, "plaintext": b"old"}).ciphertext
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    gcp.update_crypto_key_primary_version(request={"name": key.name, "crypto_key_version_id": "2"})
    v1 = f"{key.name}/cryptoKeyVersions/1"
    assert _set_state(gcp, v1, _STATE.DISABLED).state == _STATE.DISABLED
    assert gcp.get_crypto_key_version(name=v1).state == _STATE.DISABLED
    assert "DISABLED" in _failed_precondition(
        lambda: gcp.decrypt(request={"name": key.name, "ciphertext": old})
    )
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.decrypt(CiphertextBlob=old)
    _failed_precondition(lambda: gcp.encrypt(request={"name": v1, "plaintext": b"x"}))
    # Version 2, the primary, still works; enabling version 1 again opens it.
    fresh = gcp.encrypt(request={"name": key.name, "plaintext": b"new"}).ciphertext
    assert gcp.decrypt(request={"name": key.name, "ciphertext": fresh}).plaintext == b"new"
    assert _set_state(gcp, v1, _STATE.ENABLED).state == _STATE.ENABLED
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    with pytest.raises(gexc.BadRequest):
        _set_state(gcp, v1, _STATE.DESTROYED)


def test_destroy_waits_then_deletes_the_material_and_restore_undoes_it(
    fresh_server: Server,
) -> None:
    gcp = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    key = gcp.create_crypto_key(
        request={
            "parent": _ring(gcp),
            "crypto_key_id": "doomed",
            "crypto_key": {"purpose": "ENCRYPT_DECRYPT", "destroy_scheduled_duration": "86400s"},
        }
    )
    old = gcp.encrypt(request={"name": key.name, "plaintext": b"old"}).ciphertext
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    v1 = f"{key.name}/cryptoKeyVersions/1"
    scheduled = gcp.destroy_crypto_key_version(name=v1)
    assert scheduled.state == _STATE.DESTROY_SCHEDULED and scheduled.destroy_time
    _failed_precondition(lambda: gcp.decrypt(request={"name": key.name, "ciphertext": old}))
    restored = gcp.restore_crypto_key_version(name=v1)
    assert restored.state == _STATE.DISABLED
    _set_state(gcp, v1, _STATE.ENABLED)
    assert gcp.decrypt(request={"name": key.name, "ciphertext": old}).plaintext == b"old"
    # Restored, the first schedule destroys nothing when it comes due.
    fresh_server.advance_clock(2 * 86400)
    assert gcp.get_crypto_key_version(name=v1).state == _STATE.ENABLED
    gcp.destroy_crypto_key_version(name=v1)
    fresh_server.advance_clock(3600)
    assert gcp.get_crypto_key_version(name=v1).state == _STATE.DESTROY_SCHEDULED
    fresh_server.advance_clock(86400)
    gone = gcp.get_crypto_key_version(name=v1)
    assert gone.state == _STATE.DESTROYED and gone.destroy_event_time
    _failed_precondition(lambda: gcp.restore_crypto_key_version(name=v1))
    # Version 1's material is gone from the store; version 2's is there.
    import sqlite3

    alias = "alias/gcp/" + "/".join(key.name.split("/")[1::2])
    key_id = fresh_server.client().describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    db = sqlite3.connect(fresh_server.data_dir / "keycask.db")
    paths = {row[0] for row in db.execute("SELECT path FROM kv WHERE path LIKE 'mat/%'")}
    db.close()
    assert f"mat/{key_id}/{2:010d}" in paths
    assert f"mat/{key_id}/{1:010d}" not in paths
    with pytest.raises(gexc.BadRequest):
        gcp.decrypt(request={"name": key.name, "ciphertext": old})
    records = [r for r in _records(fresh_server) if r["operation"] == "DestroyCryptoKeyVersion"]
    assert records and records[-1]["principal"] == "keycask"


_ALG = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
_PURPOSE = kms_v1.CryptoKey.CryptoKeyPurpose


def _asymmetric(
    gcp: kms_v1.KeyManagementServiceClient, ring: str, purpose: Any, algorithm: Any
) -> Any:
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"{algorithm.name.lower().replace('_', '-')}-{uuid.uuid4().hex[:6]}",
            "crypto_key": {"purpose": purpose, "version_template": {"algorithm": algorithm}},
        }
    )


_SIGNERS = [
    (_ALG.EC_SIGN_P256_SHA256, "sha256"),
    (_ALG.EC_SIGN_P384_SHA384, "sha384"),
    (_ALG.EC_SIGN_SECP256K1_SHA256, "sha256"),
    (_ALG.EC_SIGN_ED25519, None),
    (_ALG.RSA_SIGN_PSS_2048_SHA256, "sha256"),
    (_ALG.RSA_SIGN_PKCS1_2048_SHA256, "sha256"),
    (_ALG.RSA_SIGN_PSS_4096_SHA512, "sha512"),
]


@pytest.mark.parametrize(("algorithm", "digest"), _SIGNERS, ids=[a.name for a, _ in _SIGNERS])
def test_asymmetric_sign_verified_by_cryptography_against_the_pem(
    gcp: kms_v1.KeyManagementServiceClient, algorithm: Any, digest: str | None
) -> None:
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    key = _asymmetric(gcp, _ring(gcp), _PURPOSE.ASYMMETRIC_SIGN, algorithm)
    assert key.version_template.algorithm == algorithm
    version = f"{key.name}/cryptoKeyVersions/1"
    public = gcp.get_public_key(name=version)
    assert public.algorithm == algorithm and public.pem_crc32c == _crc(public.pem.encode())
    loaded = serialization.load_pem_public_key(public.pem.encode())
    message = b"sign me " * 100
    if digest is None:
        out = gcp.asymmetric_sign(
            request={"name": version, "data": message, "data_crc32c": _crc(message)}
        )
        assert out.verified_data_crc32c
    else:
        hashed = hashlib.new(digest, message).digest()
        out = gcp.asymmetric_sign(
            request={"name": version, "digest": {digest: hashed}, "digest_crc32c": _crc(hashed)}
        )
        assert out.verified_digest_crc32c
    assert out.signature_crc32c == _crc(out.signature) and out.name == version
    chosen = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
    if isinstance(loaded, ed25519.Ed25519PublicKey):
        loaded.verify(out.signature, message)
    elif isinstance(loaded, ec.EllipticCurvePublicKey):
        assert digest is not None
        loaded.verify(out.signature, message, ec.ECDSA(chosen[digest]))
    else:
        assert isinstance(loaded, rsa.RSAPublicKey) and digest is not None
        pad: Any = (
            padding.PSS(padding.MGF1(chosen[digest]), padding.PSS.DIGEST_LENGTH)
            if "PSS" in algorithm.name
            else padding.PKCS1v15()
        )
        loaded.verify(out.signature, message, pad, chosen[digest])


def test_asymmetric_decrypt_opens_what_cryptography_sealed_with_the_pem(
    gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = _asymmetric(
        gcp, _ring(gcp), _PURPOSE.ASYMMETRIC_DECRYPT, _ALG.RSA_DECRYPT_OAEP_2048_SHA256
    )
    version = f"{key.name}/cryptoKeyVersions/1"
    pem = gcp.get_public_key(name=version).pem
    public: Any = serialization.load_pem_public_key(pem.encode())
    sealed = public.encrypt(
        b"oaep secret", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    )
    out = gcp.asymmetric_decrypt(
        request={"name": version, "ciphertext": sealed, "ciphertext_crc32c": _crc(sealed)}
    )
    assert out.plaintext == b"oaep secret" and out.verified_ciphertext_crc32c
    assert out.plaintext_crc32c == _crc(b"oaep secret")
    # The same keycask key through the AWS door: its public key is the PEM's.
    alias = "alias/gcp/" + "/".join(key.name.split("/")[1::2])
    der = kms.get_public_key(KeyId=alias)["PublicKey"]
    assert der == public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(gexc.BadRequest):
        gcp.asymmetric_decrypt(request={"name": version, "ciphertext": b"\x00" * 256})
    # Symmetric operations on it are refused, as Cloud KMS refuses them.
    with pytest.raises(gexc.BadRequest):
        gcp.encrypt(request={"name": key.name, "plaintext": b"x"})


def test_mac_sign_and_verify_and_version_state_is_the_keys(
    gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    key = _asymmetric(gcp, _ring(gcp), _PURPOSE.MAC, _ALG.HMAC_SHA256)
    version = f"{key.name}/cryptoKeyVersions/1"
    signed = gcp.mac_sign(request={"name": version, "data": b"msg", "data_crc32c": _crc(b"msg")})
    assert len(signed.mac) == 32 and signed.mac_crc32c == _crc(signed.mac)
    ok = gcp.mac_verify(
        request={"name": version, "data": b"msg", "mac": signed.mac, "mac_crc32c": _crc(signed.mac)}
    )
    assert ok.success and ok.verified_success_integrity and ok.verified_mac_crc32c
    bad = gcp.mac_verify(request={"name": version, "data": b"msh", "mac": signed.mac})
    assert not bad.success
    # The same MAC through the AWS door.
    alias = "alias/gcp/" + "/".join(key.name.split("/")[1::2])
    assert kms.verify_mac(KeyId=alias, Message=b"msg", Mac=signed.mac, MacAlgorithm="HMAC_SHA_256")[
        "MacValid"
    ]
    # Its one version's state is the keycask key's.
    assert _set_state(gcp, version, _STATE.DISABLED).state == _STATE.DISABLED
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyState"] == "Disabled"
    _failed_precondition(lambda: gcp.mac_sign(request={"name": version, "data": b"msg"}))
    _set_state(gcp, version, _STATE.ENABLED)
    assert gcp.mac_sign(request={"name": version, "data": b"msg"}).mac == signed.mac
    v2 = f"{key.name}/cryptoKeyVersions/2"
    with pytest.raises(gexc.NotFound):
        gcp.mac_sign(request={"name": v2, "data": b"msg"})
    # A second version is a key of its own: another MAC for the same data.
    created = gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert created.name == v2 and created.algorithm == _ALG.HMAC_SHA256
    other = gcp.mac_sign(request={"name": v2, "data": b"msg"}).mac
    assert other != signed.mac
    assert gcp.mac_verify(request={"name": v2, "data": b"msg", "mac": other}).success
    assert not gcp.mac_verify(request={"name": v2, "data": b"msg", "mac": signed.mac}).success


def test_algorithms_and_digests_that_do_not_fit_are_invalid_argument(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, admin_token: str
) -> None:
    ring = _ring(gcp)
    for purpose, algorithm in [
        (_PURPOSE.ASYMMETRIC_SIGN, _ALG.GOOGLE_SYMMETRIC_ENCRYPTION),
        (_PURPOSE.MAC, _ALG.EC_SIGN_P256_SHA256),
        (_PURPOSE.ASYMMETRIC_SIGN, _ALG.RSA_SIGN_RAW_PKCS1_2048),
        (_PURPOSE.ASYMMETRIC_DECRYPT, _ALG.RSA_DECRYPT_OAEP_4096_SHA512),
        (_PURPOSE.MAC, _ALG.HMAC_SHA1),
    ]:
        with pytest.raises(gexc.BadRequest, match="not valid for purpose"):
            _asymmetric(gcp, ring, purpose, algorithm)
    assert list(gcp.list_crypto_keys(parent=ring)) == []
    key = _asymmetric(gcp, ring, _PURPOSE.ASYMMETRIC_SIGN, _ALG.EC_SIGN_P256_SHA256)
    version = f"{key.name}/cryptoKeyVersions/1"
    with pytest.raises(gexc.BadRequest, match=r"digest\.sha256"):
        gcp.asymmetric_sign(request={"name": version, "digest": {"sha384": b"\x00" * 48}})
    with pytest.raises(gexc.BadRequest, match="checksum"):
        gcp.asymmetric_sign(
            request={"name": version, "digest": {"sha256": b"\x00" * 32}, "digest_crc32c": 7}
        )
    reply = _raw(server, "POST", f"/v1/{version}:asymmetricSign", admin_token, {"data": "aGk="})
    # A data signature of an ECDSA key is the digest's: keycask hashes with the algorithm.
    assert reply.status_code == 200, reply.text


def test_iam_policy_set_by_one_principal_is_enforced_on_another(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    key = _symmetric(gcp, _ring(gcp))
    app_name = _user(server, None)  # no identity policy: only the key policy can allow it
    app = _client(server, _token(server, app_name))
    with pytest.raises(gexc.Forbidden):
        app.encrypt(request={"name": key.name, "plaintext": b"x"})
    policy = gcp.get_iam_policy(request={"resource": key.name})
    assert list(policy.bindings) == [] and policy.etag
    role = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    set_to = gcp.set_iam_policy(
        request={
            "resource": key.name,
            "policy": {
                "bindings": [{"role": role, "members": [f"user:{app_name}"]}],
                "etag": policy.etag,
            },
        }
    )
    assert [(b.role, list(b.members)) for b in set_to.bindings] == [(role, [f"user:{app_name}"])]
    sealed = app.encrypt(request={"name": key.name, "plaintext": b"allowed"})
    assert app.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext}).plaintext == (
        b"allowed"
    )
    # Encrypt and decrypt only: no policy changes, no version changes.
    with pytest.raises(gexc.Forbidden):
        app.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    held = app.test_iam_permissions(
        request={
            "resource": key.name,
            "permissions": [
                "cloudkms.cryptoKeyVersions.useToEncrypt",
                "cloudkms.cryptoKeyVersions.useToDecrypt",
                "cloudkms.cryptoKeys.setIamPolicy",
            ],
        }
    )
    assert list(held.permissions) == [
        "cloudkms.cryptoKeyVersions.useToEncrypt",
        "cloudkms.cryptoKeyVersions.useToDecrypt",
    ]
    # The binding is a key policy statement the AWS door shows.
    alias = "alias/gcp/" + "/".join(key.name.split("/")[1::2])
    key_id = kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    statements = json.loads(kms.get_key_policy(KeyId=key_id)["Policy"])["Statement"]
    mine = [s for s in statements if s.get("Sid") == "GcpIamCryptoKeyEncrypterDecrypter"]
    assert mine and "kms:Encrypt" in mine[0]["Action"]
    assert any(s.get("Sid") != "GcpIamCryptoKeyEncrypterDecrypter" for s in statements)
    # A stale etag is refused; an empty policy takes the binding away.
    with pytest.raises(gexc.Conflict) as stale:
        gcp.set_iam_policy(request={"resource": key.name, "policy": {"etag": policy.etag}})
    assert stale.value.response.json()["error"]["status"] == "ABORTED"
    gcp.set_iam_policy(request={"resource": key.name, "policy": {"etag": set_to.etag}})
    with pytest.raises(gexc.Forbidden):
        app.encrypt(request={"name": key.name, "plaintext": b"x"})
    for bad in (
        {"bindings": [{"role": "roles/owner", "members": [f"user:{app_name}"]}]},
        {"bindings": [{"role": role, "members": ["allUsers"]}]},
        {"bindings": [{"role": role, "members": ["user:nobody-here"]}]},
    ):
        with pytest.raises(gexc.BadRequest):
            gcp.set_iam_policy(request={"resource": key.name, "policy": bad})


def test_rotation_schedule_at_create_and_in_patch(
    fresh_server: Server,
) -> None:
    import datetime

    gcp = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    ring = _ring(gcp)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    key = gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "rotating",
            "crypto_key": {
                "purpose": "ENCRYPT_DECRYPT",
                "rotation_period": datetime.timedelta(days=90),
                "next_rotation_time": soon,
            },
        }
    )
    assert key.rotation_period == datetime.timedelta(days=90)
    assert abs((key.next_rotation_time - soon).total_seconds()) < 1
    old = gcp.encrypt(request={"name": key.name, "plaintext": b"before"}).ciphertext
    # The scheduler rotates it when the time comes: version 2 is the primary.
    fresh_server.advance_clock(2 * 86400)
    rotated = gcp.get_crypto_key(name=key.name)
    assert rotated.primary.name.endswith("/cryptoKeyVersions/2")
    assert gcp.decrypt(request={"name": key.name, "ciphertext": old}).plaintext == b"before"
    # Patch: another period, then none.
    patched = gcp.update_crypto_key(
        request={
            "crypto_key": {"name": key.name, "rotation_period": datetime.timedelta(days=180)},
            "update_mask": {"paths": ["rotation_period"]},
        }
    )
    assert patched.rotation_period == datetime.timedelta(days=180)
    alias = "alias/gcp/" + "/".join(key.name.split("/")[1::2])
    kms = fresh_server.client()
    status = kms.get_key_rotation_status(
        KeyId=kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    )
    assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 180
    off = gcp.update_crypto_key(
        request={"crypto_key": {"name": key.name}, "update_mask": {"paths": ["rotation_period"]}}
    )
    assert not off.rotation_period
    with pytest.raises(gexc.BadRequest, match="90 to 2560"):
        gcp.update_crypto_key(
            request={
                "crypto_key": {"name": key.name, "rotation_period": datetime.timedelta(days=7)},
                "update_mask": {"paths": ["rotation_period"]},
            }
        )


def test_update_primary_version_chooses_any_enabled_version(
    gcp: kms_v1.KeyManagementServiceClient,
) -> None:
    """More in tests/e2e/test_gcp_kms_primary_e2e.py."""
    key = _symmetric(gcp, _ring(gcp))
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    newest = gcp.update_crypto_key_primary_version(
        request={"name": key.name, "crypto_key_version_id": "2"}
    )
    assert newest.primary.name.endswith("/cryptoKeyVersions/2")
    older = gcp.update_crypto_key_primary_version(
        request={"name": key.name, "crypto_key_version_id": "1"}
    )
    assert older.primary.name.endswith("/cryptoKeyVersions/1")
    with pytest.raises(gexc.NotFound):
        gcp.update_crypto_key_primary_version(
            request={"name": key.name, "crypto_key_version_id": "3"}
        )
    assert gcp.get_crypto_key(name=key.name).primary.name.endswith("/cryptoKeyVersions/1")


def test_crypto_key_pages_skip_other_rings_and_aliases_that_are_no_crypto_key(
    gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    ring = _ring(gcp)
    names = sorted(_symmetric(gcp, ring, f"p{i:02d}").name for i in range(5))
    # alias/gcp/ names are the Cloud KMS door's: the AWS door makes none.
    alias_prefix = "alias/gcp/" + "/".join(ring.split("/")[1::2])
    target = kms.describe_key(KeyId=f"{alias_prefix}/p00")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError, match="NotAuthorizedException"):
        kms.create_alias(AliasName=f"{alias_prefix}/p00/extra", TargetKeyId=target)
    _ring(gcp)  # another key ring's keys are not this one's
    pages = gcp.list_crypto_keys(request={"parent": ring, "page_size": 2}).pages
    sizes, seen = [], []
    for page in pages:
        sizes.append(len(page.crypto_keys))
        seen.extend(k.name for k in page.crypto_keys)
    assert seen == names and sizes == [2, 2, 1]


def test_a_crc32c_mismatch_is_audited_and_changes_nothing(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    key = _symmetric(gcp, _ring(gcp))
    with pytest.raises(gexc.BadRequest, match="checksum"):
        gcp.decrypt(request={"name": key.name, "ciphertext": b"x" * 40, "ciphertext_crc32c": 1})
    record = next(
        r for r in reversed(_records(server))
        if r["operation"] == "GcpKms.Decrypt" and r["outcome"] != "success"
    )  # fmt: skip
    assert record["door"] == "gcp-kms" and record["error_code"] == "ValidationException"
    assert record["decision"] == "none"  # refused before anything was authorized or opened


def test_asymmetric_versions_are_keys_of_their_own(
    gcp: kms_v1.KeyManagementServiceClient, kms: Any
) -> None:
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _asymmetric(gcp, _ring(gcp), _PURPOSE.ASYMMETRIC_SIGN, _ALG.EC_SIGN_P256_SHA256)
    created = gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    v1, v2 = f"{key.name}/cryptoKeyVersions/1", f"{key.name}/cryptoKeyVersions/2"
    assert created.name == v2 and created.state == _STATE.ENABLED
    assert [v.name for v in gcp.list_crypto_key_versions(parent=key.name)] == [v1, v2]
    pems = [gcp.get_public_key(name=v).pem for v in (v1, v2)]
    assert pems[0] != pems[1]
    digest = hashlib.sha256(b"versioned").digest()
    for version, pem in zip((v1, v2), pems, strict=True):
        out = gcp.asymmetric_sign(request={"name": version, "digest": {"sha256": digest}})
        assert out.name == version
        public: Any = serialization.load_pem_public_key(pem.encode())
        public.verify(out.signature, b"versioned", ec.ECDSA(hashes.SHA256()))
    # Version 2 disabled: it signs nothing; version 1 still signs. The AWS
    # door sees it as the key its alias names.
    _set_state(gcp, v2, _STATE.DISABLED)
    alias = "alias/gcp/" + "/".join(key.name.split("/")[1::2])
    assert kms.describe_key(KeyId=f"{alias}/2")["KeyMetadata"]["KeyState"] == "Disabled"
    assert gcp.get_crypto_key_version(name=v2).state == _STATE.DISABLED
    _failed_precondition(
        lambda: gcp.asymmetric_sign(request={"name": v2, "digest": {"sha256": digest}})
    )
    gcp.asymmetric_sign(request={"name": v1, "digest": {"sha256": digest}})
    # Only the crypto key is listed in its key ring, not its versions' keys.
    ring = key.name.rsplit("/cryptoKeys/", 1)[0]
    assert [k.name for k in gcp.list_crypto_keys(parent=ring)] == [key.name]


def test_locations_list_and_get(gcp: kms_v1.KeyManagementServiceClient) -> None:
    listed = gcp.list_locations(request={"name": f"projects/{PROJECT}"})
    ids = [loc.location_id for loc in listed.locations]
    assert ids == ["global", "us-east-1"]
    got = gcp.get_location(request={"name": f"projects/{PROJECT}/locations/eu-west-1"})
    assert got.name == f"projects/{PROJECT}/locations/eu-west-1" and got.location_id == "eu-west-1"


def test_odd_bodies_and_names_never_get_a_500(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, admin_token: str
) -> None:
    ring = _ring(gcp)
    key = _symmetric(gcp, ring)
    sign = _asymmetric(gcp, ring, _PURPOSE.ASYMMETRIC_SIGN, _ALG.EC_SIGN_P256_SHA256)
    mac = _asymmetric(gcp, ring, _PURPOSE.MAC, _ALG.HMAC_SHA256)
    v1 = f"{sign.name}/cryptoKeyVersions/1"
    m1 = f"{mac.name}/cryptoKeyVersions/1"
    odd: list[Any] = [
        None, [], "x", 1, True, {"plaintext": 5}, {"plaintext": "%%%"}, {"ciphertext": []},
        {"plaintextCrc32c": "abc", "plaintext": "aGk="}, {"plaintextCrc32c": -1},
        {"plaintextCrc32c": 2**40}, {"additionalAuthenticatedData": {"a": 1}},
        {"purpose": "NOPE"}, {"purpose": 99}, {"purpose": True},
        {"purpose": 1, "versionTemplate": "x"}, {"purpose": 1, "labels": "x"},
        {"purpose": 1, "labels": {"UPPER": "x"}}, {"purpose": 1, "destroyScheduledDuration": 5},
        {"purpose": 1, "destroyScheduledDuration": "1s"}, {"purpose": 1, "rotationPeriod": "x"},
        {"purpose": 1, "rotationPeriod": "7776000s", "nextRotationTime": "yesterday"},
        {"digest": "x"}, {"digest": {"sha256": "aGk="}}, {"digest": {"md5": "aGk="}},
        {"digest": {"sha256": 5}}, {"data": "aGk=", "digest": {"sha256": "aGk="}},
        {"mac": "aGk="}, {"mac": 3, "data": "aGk="}, {"lengthBytes": "8"}, {"lengthBytes": 0},
        {"lengthBytes": 9999}, {"policy": []}, {"policy": {"bindings": "x"}},
        {"policy": {"bindings": [{"role": 5}]}},
        {"policy": {"bindings": [{"role": "r", "members": "x"}]}},
        {"policy": {"etag": 5}}, {"permissions": "x"}, {"permissions": [5]},
        {"cryptoKeyVersionId": 5}, {"cryptoKeyVersionId": "x"}, {"state": "NOPE"}, {"state": 77},
    ]  # fmt: skip
    targets = [
        ("POST", f"/v1/{ring}/cryptoKeys?cryptoKeyId=odd"),
        ("PATCH", f"/v1/{key.name}?updateMask=labels,rotationPeriod"),
        ("PATCH", f"/v1/{key.name}/cryptoKeyVersions/1?updateMask=state"),
        ("POST", f"/v1/{key.name}:encrypt"),
        ("POST", f"/v1/{key.name}:decrypt"),
        ("POST", f"/v1/{key.name}:updatePrimaryVersion"),
        ("POST", f"/v1/{key.name}:setIamPolicy"),
        ("POST", f"/v1/{key.name}:testIamPermissions"),
        ("POST", f"/v1/{v1}:asymmetricSign"),
        ("POST", f"/v1/{v1}:asymmetricDecrypt"),
        ("POST", f"/v1/{m1}:macSign"),
        ("POST", f"/v1/{m1}:macVerify"),
        ("POST", f"/v1/projects/{PROJECT}/locations/global:generateRandomBytes"),
    ]
    for method, path in targets:
        for body in odd:
            reply = _raw(server, method, path, admin_token, body)
            assert reply.status_code < 500, (method, path, body, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["error"]["status"], (path, body)
    for path in (
        "/v1/projects/", "/v1/projects/x", f"/v1/{ring}/cryptoKeys/a%2Fb",
        f"/v1/{key.name}/cryptoKeyVersions/0", f"/v1/{key.name}/cryptoKeyVersions/99999999999",
        f"/v1/{key.name}/cryptoKeyVersions/-1", f"/v1/{key.name}:", f"/v1/{key.name}::encrypt",
        f"/v1/{ring}/cryptoKeys?pageToken=!!!", f"/v1/{ring}/cryptoKeys?pageSize=x",
        f"/v1/{ring}/cryptoKeys?filter=a", f"/v1/{key.name}/cryptoKeyVersions/1/publicKey",
        f"/v1/{v1}/publicKey?publicKeyFormat=9",
    ):  # fmt: skip
        reply = _raw(server, "GET", path, admin_token)
        assert 400 <= reply.status_code < 500 or reply.status_code == 501, (path, reply.text)
    # None of it made a key.
    names = {k.name for k in gcp.list_crypto_keys(parent=ring)}
    assert names == {key.name, sign.name, mac.name}


def test_an_asymmetric_version_is_destroyed_as_its_key_is_deleted(fresh_server: Server) -> None:
    gcp = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    key = _asymmetric(gcp, _ring(gcp), _PURPOSE.ASYMMETRIC_SIGN, _ALG.EC_SIGN_P256_SHA256)
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    v1, v2 = f"{key.name}/cryptoKeyVersions/1", f"{key.name}/cryptoKeyVersions/2"
    _failed_precondition(lambda: gcp.destroy_crypto_key_version(name=v1))
    scheduled = gcp.destroy_crypto_key_version(name=v2)
    assert scheduled.state == _STATE.DESTROY_SCHEDULED and scheduled.destroy_time
    digest = {"sha256": b"\x01" * 32}
    _failed_precondition(lambda: gcp.asymmetric_sign(request={"name": v2, "digest": digest}))
    assert gcp.restore_crypto_key_version(name=v2).state == _STATE.DISABLED
    _set_state(gcp, v2, _STATE.ENABLED)
    gcp.asymmetric_sign(request={"name": v2, "digest": digest})
    gcp.destroy_crypto_key_version(name=v2)
    # 30 days (the default destroyScheduledDuration, within AWS's window) later.
    fresh_server.advance_clock(31 * 86400)
    versions = {v.name: v.state for v in gcp.list_crypto_key_versions(parent=key.name)}
    assert versions == {v1: _STATE.ENABLED, v2: _STATE.DESTROYED}
    assert gcp.get_crypto_key_version(name=v2).state == _STATE.DESTROYED
    with pytest.raises(gexc.NotFound):
        gcp.asymmetric_sign(request={"name": v2, "digest": digest})
    _failed_precondition(lambda: gcp.restore_crypto_key_version(name=v2))
    gcp.asymmetric_sign(request={"name": v1, "digest": digest})


@pytest.mark.parametrize("level", [44, 65, 87])
def test_ml_dsa_signatures_verified_by_cryptography_against_the_raw_key(
    gcp: kms_v1.KeyManagementServiceClient, level: int
) -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    algorithm = getattr(_ALG, f"PQ_SIGN_ML_DSA_{level}")
    key = _asymmetric(gcp, _ring(gcp), _PURPOSE.ASYMMETRIC_SIGN, algorithm)
    version = f"{key.name}/cryptoKeyVersions/1"
    public = gcp.get_public_key(
        request={"name": version, "public_key_format": kms_v1.PublicKey.PublicKeyFormat.NIST_PQC}
    )
    assert not public.pem and public.public_key.crc32c_checksum == _crc(public.public_key.data)
    loaded: Any = getattr(mldsa, f"MLDSA{level}PublicKey").from_public_bytes(public.public_key.data)
    out = gcp.asymmetric_sign(request={"name": version, "data": b"post-quantum"})
    loaded.verify(out.signature, b"post-quantum")
    with pytest.raises(gexc.BadRequest):
        gcp.asymmetric_sign(request={"name": version, "digest": {"sha256": b"\x00" * 32}})


def test_iam_bindings_hold_for_every_version_of_an_asymmetric_key(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    key = _asymmetric(gcp, _ring(gcp), _PURPOSE.ASYMMETRIC_SIGN, _ALG.EC_SIGN_P256_SHA256)
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    signer = _user(server, None)
    app = _client(server, _token(server, signer))
    digest = {"sha256": b"\x02" * 32}
    v2 = f"{key.name}/cryptoKeyVersions/2"
    with pytest.raises(gexc.Forbidden):
        app.asymmetric_sign(request={"name": v2, "digest": digest})
    gcp.set_iam_policy(
        request={
            "resource": key.name,
            "policy": {
                "bindings": [{"role": "roles/cloudkms.signer", "members": [f"user:{signer}"]}]
            },
        }
    )
    # The version made before the binding, and one made after it.
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    for number in (1, 2, 3):
        version = f"{key.name}/cryptoKeyVersions/{number}"
        assert app.asymmetric_sign(request={"name": version, "digest": digest}).name == version
    with pytest.raises(gexc.Forbidden):
        app.get_public_key(name=v2)  # signer, not publicKeyViewer


def test_key_ring_bindings_hold_for_its_keys_now_and_later(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    ring = _ring(gcp)
    before = _symmetric(gcp, ring)
    user = _user(server, None)
    app = _client(server, _token(server, user))
    role = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    policy = gcp.get_iam_policy(request={"resource": ring})
    assert list(policy.bindings) == []
    set_to = gcp.set_iam_policy(
        request={
            "resource": ring,
            "policy": {
                "bindings": [{"role": role, "members": [f"user:{user}"]}],
                "etag": policy.etag,
            },
        }
    )
    assert [(b.role, list(b.members)) for b in set_to.bindings] == [(role, [f"user:{user}"])]
    after = _symmetric(gcp, ring)
    for key in (before, after):
        sealed = app.encrypt(request={"name": key.name, "plaintext": b"ring"}).ciphertext
        assert app.decrypt(request={"name": key.name, "ciphertext": sealed}).plaintext == b"ring"
        # A crypto key's own policy shows its own bindings, not its key ring's.
        assert list(gcp.get_iam_policy(request={"resource": key.name}).bindings) == []
    # The crypto key's own bindings and the key ring's live side by side.
    gcp.set_iam_policy(
        request={
            "resource": before.name,
            "policy": {
                "bindings": [{"role": "roles/cloudkms.viewer", "members": [f"user:{user}"]}]
            },
        }
    )
    app.encrypt(request={"name": before.name, "plaintext": b"still"})
    with pytest.raises(gexc.Conflict):
        gcp.set_iam_policy(request={"resource": ring, "policy": {"etag": policy.etag}})
    gcp.set_iam_policy(request={"resource": ring, "policy": {"etag": set_to.etag}})
    for key in (before, after):
        with pytest.raises(gexc.Forbidden):
            app.encrypt(request={"name": key.name, "plaintext": b"x"})
    assert [b.role for b in gcp.get_iam_policy(request={"resource": before.name}).bindings] == [
        "roles/cloudkms.viewer"
    ]
