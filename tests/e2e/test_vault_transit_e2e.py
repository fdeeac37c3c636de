"""The Vault Transit door (service/doors/vault_transit.py) driven by hvac,
the Python Vault client, against a real server: bearer tokens made with
``keycask principals token create``, transit keys that are keycask keys,
and Vault's answers for bad input, each audited."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from typing import Any

import hvac
import hvac.exceptions
import pytest
import requests
from tests.conftest import Server


def _token(server: Server, name: str, *extra: str) -> dict[str, str]:
    out = server.cli("principals", "token", "create", name, "--json", *extra).stdout
    return json.loads(out)


def _user(server: Server, policy: dict[str, Any] | None = None) -> str:
    name = f"vault-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    if policy is not None:
        path = server.data_dir.parent / f"{name}.json"
        path.write_text(json.dumps(policy))
        server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    return name


def _admin_token(server: Server) -> str:
    allow = {"Effect": "Allow", "Action": ["kms:*", "keycask:*VaultMount*"], "Resource": "*"}
    name = _user(server, {"Version": "2012-10-17", "Statement": [allow]})
    return _token(server, name)["Token"]


def _client(server: Server, token: str) -> hvac.Client:
    return hvac.Client(url=server.endpoint, token=token)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _records(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _raw(server: Server, method: str, path: str, token: str | None, body: Any = None) -> Any:
    headers = {} if token is None else {"X-Vault-Token": token}
    return requests.request(method, server.endpoint + path, headers=headers, json=body, timeout=30)


@pytest.fixture(scope="module")
def vault(server: Server) -> hvac.Client:
    return _client(server, _admin_token(server))


def test_token_create_prints_the_token_once_and_it_authenticates(server: Server) -> None:
    name = _user(server)
    created = _token(server, name, "--ttl", "2h")
    assert set(created) == {"Token", "ExpiresAt"}
    assert created["Token"].startswith("kct.") and len(created["Token"]) == 47
    looked = _client(server, created["Token"]).auth.token.lookup_self()["data"]
    assert looked["display_name"].endswith(f":user/{name}")
    assert 7000 < looked["ttl"] <= 7200
    listed = json.loads(server.cli("principals", "token", "list", name, "--json").stdout)
    assert [t["TokenId"] for t in listed] == [looked["accessor"]]
    # Stored only as its hash, behind the barrier: in no file of the data dir.
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    assert not any(created["Token"].encode() in p.read_bytes() for p in files)


def test_revoke_self_and_revoke_by_id_stop_a_token_at_once(server: Server) -> None:
    name = _user(server)
    first, second = _token(server, name)["Token"], _token(server, name)["Token"]
    client = _client(server, first)
    client.auth.token.lookup_self()
    client.auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup_self()
    other = _client(server, second)
    token_id = other.auth.token.lookup_self()["data"]["accessor"]
    server.cli("principals", "token", "revoke", token_id)
    with pytest.raises(hvac.exceptions.Forbidden):
        other.auth.token.lookup_self()


def test_deleting_the_principal_revokes_its_tokens(server: Server) -> None:
    name = _user(server)
    token = _token(server, name)["Token"]
    _client(server, token).auth.token.lookup_self()
    server.cli("principals", "delete", name)
    with pytest.raises(hvac.exceptions.Forbidden):
        _client(server, token).auth.token.lookup_self()


def test_no_token_or_a_bad_one_is_403_with_vaults_body(server: Server) -> None:
    for token in (None, "", "kct." + "A" * 43, "s.notatoken"):
        reply = _raw(server, "POST", "/v1/transit/encrypt/x", token, {"plaintext": "eA=="})
        assert reply.status_code == 403
        assert reply.json() == {"errors": ["permission denied"]}
    bearer = requests.get(server.endpoint + "/v1/auth/token/lookup-self",
                          headers={"Authorization": "Bearer kct.nope"}, timeout=30)  # fmt: skip
    assert bearer.status_code == 403
    # A good token works as a Bearer too.
    token = _token(server, _user(server))["Token"]
    good = requests.get(server.endpoint + "/v1/auth/token/lookup-self",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert good.status_code == 200 and good.json()["data"]["ttl"] > 3500


def test_sys_health_and_seal_status(vault: hvac.Client) -> None:
    health = vault.sys.read_health_status(method="GET")
    assert health["initialized"] is True and health["sealed"] is False
    assert vault.sys.read_seal_status()["sealed"] is False


def test_create_read_list_rotate_encrypt_decrypt(server: Server, vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    key = vault.secrets.transit.read_key(name)["data"]
    assert key["type"] == "aes256-gcm96" and key["latest_version"] == 1
    assert key["min_decryption_version"] == 1 and key["supports_encryption"] is True
    assert list(key["keys"]) == ["1"]
    listed = vault.adapter.get("/v1/transit/keys", params={"list": "true"})["data"]["keys"]
    assert name in listed
    # hvac sends Vault's LIST method.
    assert name in vault.secrets.transit.list_keys()["data"]["keys"]
    v1 = vault.secrets.transit.encrypt_data(name, _b64(b"hello"))["data"]["ciphertext"]
    assert v1.startswith("vault:v1:")
    vault.secrets.transit.rotate_key(name)
    key = vault.secrets.transit.read_key(name)["data"]
    assert key["latest_version"] == 2 and sorted(key["keys"]) == ["1", "2"]
    v2 = vault.secrets.transit.encrypt_data(name, _b64(b"world"))["data"]["ciphertext"]
    assert v2.startswith("vault:v2:")
    for text, plain in ((v1, b"hello"), (v2, b"world")):
        out = vault.secrets.transit.decrypt_data(name, text)["data"]["plaintext"]
        assert base64.b64decode(out) == plain
    # min_decryption_version: v1 is refused before anything is opened.
    vault.secrets.transit.update_key_configuration(name, min_decryption_version=2)
    assert vault.secrets.transit.read_key(name)["data"]["min_decryption_version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest, match="too old"):
        vault.secrets.transit.decrypt_data(name, v1)
    assert (
        base64.b64decode(vault.secrets.transit.decrypt_data(name, v2)["data"]["plaintext"])
        == b"world"
    )
    # Associated data is bound: the wrong one does not open.
    sealed = vault.secrets.transit.encrypt_data(name, _b64(b"ad"), associated_data="x")
    text = sealed["data"]["ciphertext"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid ciphertext"):
        vault.secrets.transit.decrypt_data(name, text, associated_data="y")
    assert vault.secrets.transit.decrypt_data(name, text, associated_data="x")["data"]


def test_config_refuses_what_keycask_keys_never_do(vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    for field in ("exportable", "allow_plaintext_backup"):
        with pytest.raises(hvac.exceptions.InvalidRequest, match="never leave"):
            vault.secrets.transit.update_key_configuration(name, **{field: True})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="newer than"):
        vault.secrets.transit.update_key_configuration(name, min_decryption_version=5)
    vault.secrets.transit.update_key_configuration(name, deletion_allowed=True)
    assert vault.secrets.transit.read_key(name)["data"]["deletion_allowed"] is True


def test_batch_of_1000_with_a_bad_item(vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    items = [{"plaintext": _b64(f"item {i}".encode())} for i in range(1000)]
    out = vault.secrets.transit.encrypt_data(name, batch_input=items)["data"]["batch_results"]
    assert len(out) == 1000 and all(r["ciphertext"].startswith("vault:v1:") for r in out)
    back = [{"ciphertext": r["ciphertext"]} for r in out] + [{"ciphertext": "vault:v1:!!"}]
    opened = vault.secrets.transit.decrypt_data(name, batch_input=back)["data"]["batch_results"]
    assert [base64.b64decode(r["plaintext"]) for r in opened[:1000]] == [
        f"item {i}".encode() for i in range(1000)
    ]
    assert opened[1000] == {"error": "invalid ciphertext: bad base64"}


def test_asymmetric_and_hmac_keys_show_their_type(vault: hvac.Client) -> None:
    for kind in ("ecdsa-p256", "ed25519", "rsa-2048", "hmac"):
        name = f"k{uuid.uuid4().hex[:8]}"
        # hvac 2.3.0 does not offer hmac to create_key; Vault takes it.
        vault.adapter.post(f"/v1/transit/keys/{name}", json={"type": kind})
        key = vault.secrets.transit.read_key(name)["data"]
        assert key["type"] == kind and key["supports_encryption"] is False
        if kind in ("ecdsa-p256", "rsa-2048"):
            assert key["keys"]["1"]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
        if kind == "ed25519":
            assert len(base64.b64decode(key["keys"]["1"]["public_key"])) == 32


def test_hostile_inputs_are_400_and_audited(server: Server, vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    token = vault.token
    cases = {
        "vault:v1:%%%": "invalid ciphertext: bad base64",
        "vault:v0:AAAA": "invalid ciphertext: bad version",
        "vault:vX:AAAA": "invalid ciphertext: bad version",
        "vault:v99999999999:AAAA": "invalid ciphertext: bad version",
        "vault:v4294967295:AAAA": "invalid ciphertext: not a keycask ciphertext",
        "nope:v1:AAAA": "invalid ciphertext: no prefix",
    }
    for text, message in cases.items():
        reply = _raw(server, "POST", f"/v1/transit/decrypt/{name}", token, {"ciphertext": text})
        assert reply.status_code == 400, text
        assert reply.json() == {"errors": [message]}, text
        request_id = reply.headers["x-amzn-requestid"]
        [record] = [r for r in _records(server) if r["request_id"] == request_id]
        assert record["door"] == "vault-transit" and record["outcome"] == "error"
        assert record["operation"] == "VaultTransit.Decrypt"
    reply = _raw(server, "POST", f"/v1/transit/keys/{name}x", token, {"type": "aes512-nope"})
    assert reply.status_code == 400 and "unknown key type" in reply.json()["errors"][0]
    assert _raw(server, "GET", f"/v1/transit/keys/{name}-missing", token).status_code == 404
    assert _raw(server, "PATCH", f"/v1/transit/keys/{name}", token).status_code == 405
    assert _raw(server, "GET", "/v1/transit/nothing-here", token).status_code == 404
    bad = _raw(server, "POST", f"/v1/transit/encrypt/{name}", token, {"plaintext": "%%"})
    assert bad.status_code == 400
    assert bad.json() == {"errors": ["failed to base64-decode plaintext"]}


def test_a_principal_without_policy_is_denied(server: Server, vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    nobody = _client(server, _token(server, _user(server))["Token"])
    with pytest.raises(hvac.exceptions.Forbidden):
        nobody.secrets.transit.encrypt_data(name, _b64(b"x"))
    with pytest.raises(hvac.exceptions.Forbidden):
        nobody.secrets.transit.create_key(f"k{uuid.uuid4().hex[:8]}")
    denied = [r for r in _records(server) if r.get("door") == "vault-transit"
              and r.get("decision") == "deny"]  # fmt: skip
    assert denied


def test_one_key_two_doors(server: Server, vault: hvac.Client) -> None:
    kms = server.client()
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    described = kms.describe_key(KeyId=f"alias/transit/{name}")["KeyMetadata"]
    assert described["KeySpec"] == "SYMMETRIC_DEFAULT"
    text = vault.secrets.transit.encrypt_data(name, _b64(b"both"))["data"]["ciphertext"]
    blob = base64.b64decode(text.split(":", 2)[2])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"both"
    # A key made by the AWS door, given a transit alias, is a transit key.
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    other = f"aws{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=f"alias/transit/{other}", TargetKeyId=key_id)
    aws_blob = kms.encrypt(KeyId=key_id, Plaintext=b"from aws")["CiphertextBlob"]
    shown = "vault:v1:" + base64.b64encode(aws_blob).decode()
    plain = vault.secrets.transit.decrypt_data(other, shown)["data"]["plaintext"]
    assert base64.b64decode(plain) == b"from aws"


def test_rewrap_moves_a_ciphertext_to_the_latest_version(vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    v1 = vault.secrets.transit.encrypt_data(name, _b64(b"old"))["data"]["ciphertext"]
    vault.secrets.transit.rotate_key(name)
    rewrapped = vault.secrets.transit.rewrap_data(name, v1)["data"]
    assert rewrapped["ciphertext"].startswith("vault:v2:") and rewrapped["key_version"] == 2
    vault.secrets.transit.update_key_configuration(name, min_decryption_version=2)
    out = vault.secrets.transit.decrypt_data(name, rewrapped["ciphertext"])["data"]["plaintext"]
    assert base64.b64decode(out) == b"old"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="too old"):
        vault.secrets.transit.rewrap_data(name, v1)
    batch_input = [{"ciphertext": rewrapped["ciphertext"]}, {"ciphertext": v1}]
    batch = vault.adapter.post(f"/v1/transit/rewrap/{name}", json={"batch_input": batch_input})[
        "data"
    ]["batch_results"]
    assert batch[0]["ciphertext"].startswith("vault:v2:")
    assert batch[1] == {
        "error": "ciphertext or signature version is disallowed by policy (too old)"
    }


def test_datakey_plaintext_and_wrapped(vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    plain = vault.secrets.transit.generate_data_key(name, key_type="plaintext")["data"]
    key = base64.b64decode(plain["plaintext"])
    assert len(key) == 32
    opened = vault.secrets.transit.decrypt_data(name, plain["ciphertext"])["data"]["plaintext"]
    assert base64.b64decode(opened) == key
    wrapped = vault.secrets.transit.generate_data_key(name, key_type="wrapped", bits=512)["data"]
    assert "plaintext" not in wrapped and wrapped["ciphertext"].startswith("vault:v1:")
    opened = vault.secrets.transit.decrypt_data(name, wrapped["ciphertext"])["data"]["plaintext"]
    assert len(base64.b64decode(opened)) == 64
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid bits"):
        vault.adapter.post(f"/v1/transit/datakey/plaintext/{name}", json={"bits": 100})


def test_random_bytes(vault: hvac.Client) -> None:
    out = vault.secrets.transit.generate_random_bytes(n_bytes=48)["data"]["random_bytes"]
    assert len(base64.b64decode(out)) == 48
    hexed = vault.secrets.transit.generate_random_bytes(n_bytes=16, output_format="hex")
    assert len(bytes.fromhex(hexed["data"]["random_bytes"])) == 16
    path = vault.adapter.post("/v1/transit/random/8", json={})["data"]["random_bytes"]
    assert len(base64.b64decode(path)) == 8
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.secrets.transit.generate_random_bytes(n_bytes=5000)


def test_hmac_and_verify(vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.adapter.post(f"/v1/transit/keys/{name}", json={"type": "hmac"})
    mac = vault.secrets.transit.generate_hmac(name, _b64(b"message"))["data"]["hmac"]
    assert mac.startswith("vault:v1:")
    good = vault.secrets.transit.verify_signed_data(name, _b64(b"message"), hmac=mac)
    assert good["data"]["valid"] is True
    bad = vault.secrets.transit.verify_signed_data(name, _b64(b"other"), hmac=mac)
    assert bad["data"]["valid"] is False
    with pytest.raises(hvac.exceptions.InvalidRequest, match="hash algorithm"):
        vault.secrets.transit.generate_hmac(name, _b64(b"m"), algorithm="sha2-224")


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("ecdsa-p256", {}),
        ("ecdsa-p384", {"hash_algorithm": "sha2-384"}),
        ("ecdsa-p521", {"hash_algorithm": "sha2-512"}),
        ("ed25519", {}),
        ("rsa-2048", {}),
        ("rsa-3072", {"signature_algorithm": "pkcs1v15", "hash_algorithm": "sha2-384"}),
        ("rsa-4096", {"hash_algorithm": "sha2-512", "prehashed": False}),
    ],
)
def test_sign_and_verify_checked_by_cryptography(
    vault: hvac.Client, kind: str, options: dict[str, str]
) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name, key_type=kind)
    message = b"signed through the Vault door"
    signed = vault.secrets.transit.sign_data(name, _b64(message), **options)["data"]
    assert signed["signature"].startswith("vault:v1:")
    raw = base64.b64decode(signed["signature"].split(":", 2)[2])
    assert vault.secrets.transit.verify_signed_data(
        name, _b64(message), signature=signed["signature"], **options
    )["data"]["valid"]
    assert not vault.secrets.transit.verify_signed_data(
        name, _b64(b"another"), signature=signed["signature"], **options
    )["data"]["valid"]
    shown = vault.secrets.transit.read_key(name)["data"]["keys"]["1"]["public_key"]
    digest = {"sha2-384": hashes.SHA384(), "sha2-512": hashes.SHA512()}.get(
        options.get("hash_algorithm", ""), hashes.SHA256()
    )
    if kind == "ed25519":
        ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(shown)).verify(raw, message)
        return
    public = serialization.load_pem_public_key(shown.encode())
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(raw, message, ec.ECDSA(digest))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if options.get("signature_algorithm") == "pkcs1v15"
            else padding.PSS(padding.MGF1(digest), digest.digest_size)
        )
        public.verify(raw, message, pad, digest)


def test_delete_needs_deletion_allowed_and_schedules_deletion(
    server: Server, vault: hvac.Client
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    arn = vault.secrets.transit.read_key(name)["data"]["keycask_key_arn"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="deletion is not allowed"):
        vault.secrets.transit.delete_key(name)
    vault.secrets.transit.update_key_configuration(name, deletion_allowed=True)
    vault.secrets.transit.delete_key(name)
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.transit.read_key(name)
    described = server.client().describe_key(KeyId=arn)["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion"
    waiting = described["DeletionDate"] - described["CreationDate"]
    assert 6.9 < waiting.total_seconds() / 86400 < 7.1
    # The name is free at once.
    vault.secrets.transit.create_key(name)
    assert vault.secrets.transit.read_key(name)["data"]["keycask_key_arn"] != arn


def test_an_oversized_body_is_413_in_vaults_wire_and_audited(
    server: Server, vault: hvac.Client
) -> None:
    body = {"plaintext": "A" * (1024 * 1024 + 16)}
    reply = _raw(server, "POST", "/v1/transit/encrypt/anything", vault.token, body)
    assert reply.status_code == 413
    assert reply.json()["errors"][0].startswith("request body exceeds")
    request_id = reply.headers["x-request-id"]
    [record] = [r for r in _records(server) if r["request_id"] == request_id]
    assert record["error_code"] == "RequestEntityTooLargeException"


def test_a_bad_request_changes_nothing(server: Server, vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    before = vault.secrets.transit.read_key(name)["data"]
    reply = _raw(server, "POST", f"/v1/transit/keys/{name}/config", vault.token,
                 {"min_decryption_version": 1, "exportable": True})  # fmt: skip
    assert reply.status_code == 400
    reply = _raw(server, "POST", f"/v1/transit/keys/{name}/config", vault.token,
                 {"min_decryption_version": "x"})  # fmt: skip
    assert reply.status_code == 400
    assert vault.secrets.transit.read_key(name)["data"] == before
    reply = _raw(server, "POST", f"/v1/transit/keys/{name}z", vault.token, {"type": "aes9"})
    assert reply.status_code == 400
    [record] = [r for r in _records(server) if r["request_id"] == reply.headers["x-amzn-requestid"]]
    assert record["operation"] == "VaultTransit.CreateKey" and record["outcome"] == "error"
    assert _raw(server, "GET", f"/v1/transit/keys/{name}z", vault.token).status_code == 404


def test_policies_see_associated_data_as_encryption_context(
    server: Server, vault: hvac.Client
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    condition = {"StringEquals": {"kms:EncryptionContext:vault-transit:associated_data": "a"}}
    allow = {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
             "Condition": condition}  # fmt: skip
    tenant = _client(
        server,
        _token(server, _user(server, {"Version": "2012-10-17", "Statement": [allow]}))["Token"],
    )
    text = tenant.secrets.transit.encrypt_data(name, _b64(b"a's"), associated_data="a")
    assert tenant.secrets.transit.decrypt_data(
        name, text["data"]["ciphertext"], associated_data="a"
    )["data"]["plaintext"] == _b64(b"a's")
    with pytest.raises(hvac.exceptions.Forbidden):
        tenant.secrets.transit.encrypt_data(name, _b64(b"b's"), associated_data="b")
    # One refused item refuses the whole batch.
    batch = [{"plaintext": _b64(b"1"), "associated_data": "a"},
             {"plaintext": _b64(b"2"), "associated_data": "b"}]  # fmt: skip
    reply = _raw(server, "POST", f"/v1/transit/encrypt/{name}", tenant.token,
                 {"batch_input": batch})  # fmt: skip
    assert reply.status_code == 403
    # Vault's body; keycask's reason is in the audit record.
    assert reply.json() == {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
    [record] = [r for r in _records(server) if r["request_id"] == reply.headers["x-amzn-requestid"]]
    assert record["error_code"] == "AccessDeniedException" and record["decision"] == "deny"


def test_auto_rotate_period_is_kms_automatic_rotation(server: Server, vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    vault.secrets.transit.update_key_configuration(name, auto_rotate_period="2160h")
    assert vault.secrets.transit.read_key(name)["data"]["auto_rotate_period"] == 90 * 86400
    kms = server.client()
    status = kms.get_key_rotation_status(KeyId=vault.secrets.transit.read_key(name)["data"][
        "keycask_key_arn"])  # fmt: skip
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90
    for bad in ("24h", "2561d", "90x"):
        with pytest.raises(hvac.exceptions.InvalidRequest, match="auto_rotate_period"):
            vault.secrets.transit.update_key_configuration(name, auto_rotate_period=bad)
    vault.secrets.transit.update_key_configuration(name, auto_rotate_period="0")
    assert vault.secrets.transit.read_key(name)["data"]["auto_rotate_period"] == 0


def test_hash(vault: hvac.Client) -> None:
    import hashlib

    data = b"hash me"
    out = vault.secrets.transit.hash_data(_b64(data))["data"]["sum"]
    assert out == hashlib.sha256(data).hexdigest()
    out = vault.secrets.transit.hash_data(_b64(data), algorithm="sha2-512", output_format="base64")
    assert base64.b64decode(out["data"]["sum"]) == hashlib.sha512(data).digest()
    # hvac 2.3.0 does not offer SHA-3; Vault (and keycask) take it.
    sha3 = vault.adapter.post(
        "/v1/transit/hash", json={"input": _b64(data), "algorithm": "sha3-256"}
    )
    assert sha3["data"]["sum"] == hashlib.sha3_256(data).hexdigest()
    path = vault.adapter.post("/v1/transit/hash/sha2-384", json={"input": _b64(data)})
    assert path["data"]["sum"] == hashlib.sha384(data).hexdigest()


def test_export_backup_and_import_are_refused_with_the_reason(
    server: Server, vault: hvac.Client
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    token = vault.token
    for method, path, reason in (
        ("GET", f"export/encryption-key/{name}", "never leave"),
        ("GET", f"backup/{name}", "never leave"),
        ("POST", "restore", "never leave"),
        ("POST", f"keys/{name}/import", "ImportKeyMaterial"),
    ):
        reply = _raw(server, method, f"/v1/transit/{path}", token, {} if method == "POST" else None)
        assert reply.status_code == 400, path
        assert reason in reply.json()["errors"][0], path


def test_a_destroyed_keys_transit_settings_go_with_it(fresh_server: Server) -> None:
    import sqlite3

    from conftest import DAY

    vault = _client(fresh_server, _admin_token(fresh_server))
    vault.secrets.transit.create_key("doomed")
    vault.secrets.transit.update_key_configuration("doomed", deletion_allowed=True)
    key_id = vault.secrets.transit.read_key("doomed")["data"]["keycask_key_arn"].split("/")[-1]

    def paths() -> set[str]:
        uri = f"file:{fresh_server.data_dir / 'keycask.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True) as conn:
            return {row[0] for row in conn.execute("SELECT path FROM kv")}

    assert f"transit/{key_id}" in paths()
    vault.secrets.transit.delete_key("doomed")
    assert f"transit/{key_id}" in paths()  # recoverable until the window ends
    fresh_server.advance_clock(8 * DAY)
    assert f"key/{key_id}" not in paths() and f"transit/{key_id}" not in paths()


def test_another_keys_ciphertext_is_refused(server: Server, vault: hvac.Client) -> None:
    first, second = f"k{uuid.uuid4().hex[:8]}", f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(first)
    vault.secrets.transit.create_key(second)
    text = vault.secrets.transit.encrypt_data(first, _b64(b"mine"))["data"]["ciphertext"]
    reply = _raw(server, "POST", f"/v1/transit/decrypt/{second}", vault.token, {"ciphertext": text})
    assert reply.status_code == 400
    assert "does not identify a KMS key" in reply.json()["errors"][0]
    # The version in the prefix must be the blob's own.
    forged = "vault:v2:" + text.split(":", 2)[2]
    reply = _raw(
        server, "POST", f"/v1/transit/decrypt/{first}", vault.token, {"ciphertext": forged}
    )
    assert reply.json() == {"errors": ["invalid ciphertext: version does not match"]}
    # Tampered bytes: the one answer every failed ciphertext gets.
    raw = bytearray(base64.b64decode(text.split(":", 2)[2]))
    raw[-1] ^= 1
    tampered = "vault:v1:" + base64.b64encode(bytes(raw)).decode()
    reply = _raw(
        server, "POST", f"/v1/transit/decrypt/{first}", vault.token, {"ciphertext": tampered}
    )
    assert reply.status_code == 400
    assert reply.json() == {"errors": ["invalid ciphertext: unable to decrypt"]}


@pytest.mark.parametrize(
    ("kind", "size"), [("ecdsa-p256", 32), ("ecdsa-p521", 66), ("rsa-2048", 0)]
)
def test_jws_marshaling(vault: hvac.Client, kind: str, size: int) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name, key_type=kind)
    options = {"marshaling_algorithm": "jws"}
    if kind == "ecdsa-p521":
        options["hash_algorithm"] = "sha2-512"
    message = b"jws"
    signature = vault.secrets.transit.sign_data(name, _b64(message), **options)["data"]["signature"]
    encoded = signature.split(":", 2)[2]
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    assert vault.secrets.transit.verify_signed_data(
        name, _b64(message), signature=signature, **options
    )["data"]["valid"]
    assert not vault.secrets.transit.verify_signed_data(
        name, _b64(b"other"), signature=signature, **options
    )["data"]["valid"]
    public = serialization.load_pem_public_key(
        vault.secrets.transit.read_key(name)["data"]["keys"]["1"]["public_key"].encode()
    )
    digest = hashes.SHA512() if kind == "ecdsa-p521" else hashes.SHA256()
    if isinstance(public, ec.EllipticCurvePublicKey):
        assert len(raw) == 2 * size
        r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(digest))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(raw, message, padding.PSS(padding.MGF1(digest), 32), digest)


def test_mounts_are_namespaces_of_key_names(server: Server, vault: hvac.Client) -> None:
    mount = f"team-{uuid.uuid4().hex[:6]}/transit"
    vault.sys.enable_secrets_engine("transit", path=mount, description="team keys")
    listed = vault.sys.list_mounted_secrets_engines()["data"]
    assert listed[mount + "/"]["type"] == "transit" and "transit/" in listed
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name, mount_point=mount)
    vault.secrets.transit.create_key(name)  # the same name in the default mount: another key
    ours = vault.secrets.transit.read_key(name, mount_point=mount)["data"]["keycask_key_arn"]
    theirs = vault.secrets.transit.read_key(name)["data"]["keycask_key_arn"]
    assert ours != theirs
    kms = server.client()
    assert kms.describe_key(KeyId=f"alias/{mount}/{name}")["KeyMetadata"]["Arn"] == ours
    text = vault.secrets.transit.encrypt_data(name, _b64(b"team"), mount_point=mount)
    ciphertext = text["data"]["ciphertext"]
    plain = vault.secrets.transit.decrypt_data(name, ciphertext, mount_point=mount)
    assert base64.b64decode(plain["data"]["plaintext"]) == b"team"
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.secrets.transit.decrypt_data(name, ciphertext)  # the other mount's key
    assert vault.secrets.transit.list_keys(mount_point=mount)["data"]["keys"] == [name]
    # Refusals: another engine, a path in use, a reserved path, the default mount.
    for kind, path in (("kv", "kv-here"), ("transit", mount), ("transit", "transit/x"),
                       ("transit", "sys/x"), ("transit", "a/keys")):  # fmt: skip
        with pytest.raises(hvac.exceptions.InvalidRequest):
            vault.sys.enable_secrets_engine(kind, path=path)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="cannot be disabled"):
        vault.sys.disable_secrets_engine("transit")
    # Disabling schedules the mount's keys for deletion and frees their names.
    vault.sys.disable_secrets_engine(mount)
    assert kms.describe_key(KeyId=ours)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert kms.describe_key(KeyId=theirs)["KeyMetadata"]["KeyState"] == "Enabled"
    assert mount + "/" not in vault.sys.list_mounted_secrets_engines()["data"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.transit.encrypt_data(name, _b64(b"x"), mount_point=mount)
    record = [r for r in _records(server) if r["operation"] == "VaultSys.DisableMount"][-1]
    assert record["outcome"] == "success" and "1 keys scheduled" in record["detail"]


def test_key_version_and_min_encryption_version(server: Server, vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    vault.secrets.transit.rotate_key(name)
    vault.secrets.transit.rotate_key(name)
    old = vault.secrets.transit.encrypt_data(name, _b64(b"v1"), key_version=1)["data"]
    assert old["ciphertext"].startswith("vault:v1:") and old["key_version"] == 1
    plain = vault.secrets.transit.decrypt_data(name, old["ciphertext"])["data"]["plaintext"]
    assert base64.b64decode(plain) == b"v1"
    # The AWS door opens it too: the same blob, naming version 1.
    blob = base64.b64decode(old["ciphertext"].split(":", 2)[2])
    assert server.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"v1"
    latest = vault.secrets.transit.encrypt_data(name, _b64(b"v3"), key_version=3)["data"]
    assert latest["key_version"] == 3
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid key version"):
        vault.secrets.transit.encrypt_data(name, _b64(b"v4"), key_version=4)
    vault.secrets.transit.update_key_configuration(name, min_encryption_version=2)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="minimum encryption key version"):
        vault.secrets.transit.encrypt_data(name, _b64(b"v1"), key_version=1)
    assert vault.secrets.transit.encrypt_data(name, _b64(b"v2"), key_version=2)["data"][
        "ciphertext"
    ].startswith("vault:v2:")


def test_key_names_are_what_an_aws_alias_may_hold(server: Server, vault: hvac.Client) -> None:
    """A transit key is named by an AWS alias, so its name holds only what
    an alias may (and the AWS door can name and delete it): dot segments,
    percent-encoded bytes, other characters and overlong names are refused
    and make nothing."""

    token = vault.token
    kms = server.client()

    def aliases() -> set[str]:
        pages = kms.get_paginator("list_aliases").paginate()
        return {a["AliasName"] for page in pages for a in page["Aliases"]}

    before = aliases()
    for name in ("..", ".", "sec%2Fret", "a.b", "%00%0a%22%3Cscript%3E", "x" * 300, "caf%C3%A9"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request(
            "POST",
            f"/v1/transit/keys/{name}",
            body=b"{}",
            headers={"X-Vault-Token": token, "Content-Type": "application/json"},
        )
        reply = conn.getresponse()
        body = json.loads(reply.read())
        conn.close()
        assert reply.status == 400, (name, reply.status, body)
        assert "invalid key name" in body["errors"][0], body
    assert aliases() == before
    vault.secrets.transit.create_key(f"ok_name-{uuid.uuid4().hex[:6]}")


def test_a_batch_audit_record_names_every_items_context(server: Server, vault: hvac.Client) -> None:
    """One request, one audit record: it names every distinct encryption
    context the batch's items used, not only the last item's."""
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    tenants = [_b64(f"tenant-{i}".encode()) for i in range(3)]
    items = [{"plaintext": _b64(b"x"), "associated_data": t} for t in tenants]
    reply = _raw(server, "POST", f"/v1/transit/encrypt/{name}", vault.token, {"batch_input": items})
    assert reply.status_code == 200, reply.text
    request_id = reply.headers["x-amzn-requestid"]
    [record] = [r for r in _records(server) if r["request_id"] == request_id]
    assert record["encryption_context"] is None
    assert "batch of 3 items, 3 distinct encryption contexts" in record["detail"]
    for tenant in tenants:
        assert tenant in record["detail"], (tenant, record["detail"])
