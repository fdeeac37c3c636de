"""The Azure Key Vault door (service/doors/azure_keyvault.py) driven by
Azure's own client, azure-keyvault-keys (KeyClient, CryptographyClient,
default settings), against a real server over TLS: the SDK's challenge
flow with keycask-issued bearer tokens, keys that are keycask keys (usable
from the AWS door), signatures and RSA-OAEP ciphertexts checked with
``cryptography``, Key Vault's errors for bad input, each audited."""

from __future__ import annotations

import hashlib
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import (
    CryptographyClient,
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
    SignatureAlgorithm,
)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from selfsigned import SelfSignedServer
from tests.conftest import Server
from tests.e2e.test_gcp_kms_e2e import _token, _user


@dataclass
class TlsServer(SelfSignedServer):
    """A keycask server started like `make run` with TLS: --dev
    --tls-self-signed, its certificate (for 127.0.0.1 and localhost) at
    <data dir>/tls/cert.pem, which clients pass as their CA."""

    @property
    def cert(self) -> Path:
        return self.ca_file

    def aws(self) -> Any:
        return self.client()


def _tls_server(base: Path) -> TlsServer:
    return TlsServer(base / "data", args=("--tls-self-signed",)).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    srv = _tls_server(tmp_path_factory.mktemp("azure"))
    yield srv
    srv.stop()


class _Token:
    """A keycask-issued bearer token as an azure-core TokenCredential."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def _keys(server: TlsServer, token: str) -> KeyClient:
    return KeyClient(server.endpoint, _Token(token), connection_verify=str(server.cert))


def _crypto(server: TlsServer, token: str, kid: str) -> CryptographyClient:
    return CryptographyClient(kid, _Token(token), connection_verify=str(server.cert))


def _records(server: TlsServer) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _raw(
    server: TlsServer,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request as it is, outside the SDK."""
    assert server.cert is not None
    context = ssl.create_default_context(cafile=str(server.cert))
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.endpoint + path, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return reply.status, _lower(reply.headers), json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), json.loads(error.read() or b"null")


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


@pytest.fixture(scope="module")
def admin_token(server: TlsServer) -> str:
    # Restoring a backup is a right of its own that kms:* does not hold.
    return _token(server, _user(server, ["kms:*", "keycask:RestoreKeyVaultBackup"]))


@pytest.fixture(scope="module")
def keys(server: TlsServer, admin_token: str) -> KeyClient:
    return _keys(server, admin_token)


def _name() -> str:
    return f"key-{uuid.uuid4().hex[:10]}"


# -- slice 1: the door, its challenge, its errors --


def test_the_sdk_authenticates_by_the_challenge_with_default_settings(
    server: TlsServer, admin_token: str
) -> None:
    credential = _Token(admin_token)
    client = KeyClient(server.endpoint, credential, connection_verify=str(server.cert))
    key = client.create_ec_key(_name())
    assert key.key_type == "EC"
    # The SDK asked for a token for the resource the challenge named: the
    # Host minus its first label.
    assert credential.scopes == [(f"https://0.0.1:{server.port}/.default",)]


def test_no_token_is_401_with_the_challenge_and_audited(server: TlsServer) -> None:
    status, headers, body = _raw(server, "GET", "/keys?api-version=7.5")
    assert status == 401
    assert body["error"]["code"] == "Unauthorized"
    challenge = headers["www-authenticate"]
    assert challenge == (
        f'Bearer authorization="https://127.0.0.1:{server.port}/keycask", '
        f'resource="https://0.0.1:{server.port}"'
    )
    status, headers, body = _raw(server, "GET", "/keys?api-version=7.5", token="kct.nope")
    assert status == 401 and "www-authenticate" in headers
    records = [r for r in _records(server) if r.get("operation") == "AzureKeyVault.GetKeys"]
    assert [r["door"] for r in records[-2:]] == ["azure-keyvault", "azure-keyvault"]
    assert all(r["error_code"] == "AccessDeniedException" for r in records[-2:])


@pytest.mark.parametrize("version", ["", "7.3", "2016-10-01", "8.0", "7.x", "7.4.1"])
def test_a_bad_api_version_is_bad_parameter(
    server: TlsServer, admin_token: str, version: str
) -> None:
    query = f"?api-version={version}" if version else ""
    status, _, body = _raw(server, "GET", "/keys" + query, token=admin_token)
    assert status == 400
    assert body["error"]["code"] == "BadParameter"
    assert "7.4" in body["error"]["message"]


@pytest.mark.parametrize("version", ["7.4", "7.5", "7.6", "7.6-preview.2"])
def test_api_versions_from_7_4_are_served(
    server: TlsServer, admin_token: str, version: str
) -> None:
    status, _, body = _raw(server, "GET", f"/keys?api-version={version}", token=admin_token)
    assert status == 200, body
    assert isinstance(body["value"], list)


def test_plain_http_is_refused(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data").start()
    try:
        token = _token(srv, _user(srv, ["kms:*"]))  # type: ignore[arg-type]
        request = urllib.request.Request(
            srv.endpoint + "/keys?api-version=7.5",
            headers={"Authorization": f"Bearer {token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 403
        body = json.loads(caught.value.read())
        assert body["error"]["code"] == "Forbidden"
        assert "HTTPS only" in body["error"]["message"]
    finally:
        srv.stop()


# -- slice 2: keys --


def _public(key: Any) -> Any:
    """The JWK's public key, rebuilt with ``cryptography``."""
    jwk = key.key
    if jwk.kty == "RSA":
        return rsa.RSAPublicNumbers(
            int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")
        ).public_key()
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1(),
             "P-256K": ec.SECP256K1()}[jwk.crv]  # fmt: skip
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), curve
    ).public_key()


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ({"size": 2048}, "RSA_2048"),
        ({"size": 3072}, "RSA_3072"),
        ({"curve": "P-256"}, "ECC_NIST_P256"),
        ({"curve": "P-384"}, "ECC_NIST_P384"),
        ({"curve": "P-521"}, "ECC_NIST_P521"),
        ({"curve": "P-256K"}, "ECC_SECG_P256K1"),
    ],
)
def test_create_maps_onto_a_keycask_key_the_aws_door_sees(
    server: TlsServer, keys: KeyClient, kind: dict[str, Any], spec: str
) -> None:
    name = _name()
    if "size" in kind:
        key = keys.create_rsa_key(name, size=kind["size"], tags={"team": "pay"})
    else:
        key = keys.create_ec_key(name, curve=kind["curve"], tags={"team": "pay"})
    assert key.name == name
    assert len(key.properties.version) == 32
    assert key.id == f"https://127.0.0.1:{server.port}/keys/{name}/{key.properties.version}"
    assert key.properties.enabled is True
    assert key.properties.tags == {"team": "pay"}
    assert key.properties.created_on is not None
    aws = server.aws()
    meta = aws.describe_key(KeyId=f"alias/azure/default/{name}")["KeyMetadata"]
    assert meta["KeySpec"] == spec
    assert meta["KeyId"] == str(uuid.UUID(hex=key.properties.version))
    if spec.startswith("RSA"):
        assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
        assert sorted(key.key_operations) == ["decrypt", "encrypt", "unwrapKey", "wrapKey"]
    else:
        assert meta["KeyUsage"] == "SIGN_VERIFY"
        assert sorted(key.key_operations) == ["sign", "verify"]
    # The JWK is the AWS door's public key.
    der = aws.get_public_key(KeyId=meta["KeyId"])["PublicKey"]
    ours = _public(key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ours == der
    got = keys.get_key(name)
    assert got.id == key.id and got.key.kty == key.key.kty
    assert keys.get_key(name, key.properties.version).id == key.id
    records = [r for r in _records(server) if r.get("operation") == "AzureKeyVault.CreateKey"]
    assert records[-1]["door"] == "azure-keyvault"


def test_hsm_kinds_and_mixed_key_ops_are_refused_with_the_reason(keys: KeyClient) -> None:
    name = _name()
    with pytest.raises(HttpResponseError) as caught:
        keys.create_rsa_key(name, hardware_protected=True)
    assert caught.value.status_code == 400
    # This server has no HSM: RSA-HSM needs one (test_hsm_asymmetric_e2e).
    assert "key type RSA-HSM needs a connected HSM key store" in str(caught.value)
    assert "no HSM for this account" in str(caught.value)
    with pytest.raises(HttpResponseError) as caught:
        keys.create_rsa_key(name, key_operations=["sign", "encrypt"])
    assert "one key usage" in str(caught.value)
    with pytest.raises(HttpResponseError) as caught:
        keys.create_ec_key(name, curve="P-256", key_operations=["encrypt"])
    assert caught.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)


def test_versions_list_and_page(server: TlsServer, keys: KeyClient) -> None:
    name = _name()
    first = keys.create_ec_key(name)
    second = keys.create_ec_key(name)
    third = keys.create_ec_key(name)
    assert len({first.properties.version, second.properties.version, third.properties.version}) == 3
    assert keys.get_key(name).properties.version == third.properties.version
    assert keys.get_key(name, first.properties.version).id == first.id
    versions = [p.version for p in keys.list_properties_of_key_versions(name, max_page_size=2)]
    assert versions == [
        first.properties.version,
        second.properties.version,
        third.properties.version,
    ]
    # A later version is a keycask key of its own, shown to the AWS door by
    # an alias of its own.
    aws = server.aws()
    meta = aws.describe_key(KeyId=f"alias/azure/default/{name}/{second.properties.version}")
    assert meta["KeyMetadata"]["KeyId"] == str(uuid.UUID(hex=second.properties.version))
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name, uuid.uuid4().hex)


def test_list_keys_pages_with_next_link(keys: KeyClient) -> None:
    made = sorted(_name() for _ in range(3))
    for name in made:
        keys.create_ec_key(name)
    listed = [p.name for p in keys.list_properties_of_keys(max_page_size=2)]
    assert set(made) <= set(listed)
    assert listed == sorted(listed)
    pages = keys.list_properties_of_keys(max_page_size=2).by_page()
    first = list(next(pages))
    assert len(first) == 2
    assert all(p.version is None for p in first)  # a key's item names no version


def test_update_enabled_dates_ops_and_tags(server: TlsServer, keys: KeyClient) -> None:
    name = _name()
    key = keys.create_rsa_key(name)
    nbf = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    exp = nbf + timedelta(days=30)
    updated = keys.update_key_properties(
        name,
        enabled=False,
        not_before=nbf,
        expires_on=exp,
        key_operations=["encrypt", "decrypt"],
        tags={"env": "prod"},
    )
    assert updated.properties.enabled is False
    assert updated.properties.not_before == nbf
    assert updated.properties.expires_on == exp
    assert sorted(updated.key_operations) == ["decrypt", "encrypt"]
    assert updated.properties.tags == {"env": "prod"}
    aws = server.aws()
    meta = aws.describe_key(KeyId=f"alias/azure/default/{name}")["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    again = keys.get_key(name, key.properties.version)
    assert again.properties.enabled is False and again.properties.tags == {"env": "prod"}
    assert keys.update_key_properties(name, enabled=True).properties.enabled is True
    with pytest.raises(HttpResponseError) as caught:
        keys.update_key_properties(name, key_operations=["sign"])
    assert caught.value.status_code == 400


# -- slice 3: cryptography --

_HASHES = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}


def _digest(size: int, data: bytes = b"the order of 7 December") -> bytes:
    return {32: hashlib.sha256, 48: hashlib.sha384, 64: hashlib.sha512}[size](data).digest()


def _verify_independently(public: Any, algorithm: str, digest: bytes, signature: bytes) -> None:
    chosen = utils.Prehashed(_HASHES[len(digest)])
    if algorithm.startswith("RS"):
        public.verify(signature, digest, padding.PKCS1v15(), chosen)
    elif algorithm.startswith("PS"):
        pss = padding.PSS(padding.MGF1(_HASHES[len(digest)]), len(digest))
        public.verify(signature, digest, pss, chosen)
    else:
        # Key Vault's ECDSA signatures are r || s, not DER.
        half = len(signature) // 2
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        public.verify(der, digest, ec.ECDSA(chosen))


@pytest.mark.parametrize(
    ("algorithm", "make", "size", "coordinate"),
    [
        ("RS256", {"size": 2048}, 32, 0),
        ("RS384", {"size": 2048}, 48, 0),
        ("RS512", {"size": 3072}, 64, 0),
        ("PS256", {"size": 2048}, 32, 0),
        ("PS384", {"size": 2048}, 48, 0),
        ("PS512", {"size": 2048}, 64, 0),
        ("ES256", {"curve": "P-256"}, 32, 32),
        ("ES384", {"curve": "P-384"}, 48, 48),
        ("ES512", {"curve": "P-521"}, 64, 66),
        ("ES256K", {"curve": "P-256K"}, 32, 32),
    ],
)
def test_sign_and_verify(  # noqa: PLR0917 - pytest passes the parameters by name
    server: TlsServer, keys: KeyClient, admin_token: str,
    algorithm: str, make: dict[str, Any], size: int, coordinate: int,
) -> None:  # fmt: skip
    name = _name()
    if "size" in make:
        key = keys.create_rsa_key(name, size=make["size"], key_operations=["sign", "verify"])
    else:
        key = keys.create_ec_key(name, curve=make["curve"])
    client = _crypto(server, admin_token, key.id)
    digest = _digest(size)
    signed = client.sign(SignatureAlgorithm(algorithm), digest)
    assert signed.key_id == key.id
    if coordinate:
        assert len(signed.signature) == 2 * coordinate
    _verify_independently(_public(key), algorithm, digest, signed.signature)
    # The SDK verifies locally with the public key it fetched; the door's
    # own verify answers the same.
    assert client.verify(SignatureAlgorithm(algorithm), digest, signed.signature).is_valid
    status, _, body = _raw(
        server, "POST", f"/keys/{name}/{key.properties.version}/verify?api-version=7.5",
        json.dumps(
            {"alg": algorithm, "digest": _b64(digest), "value": _b64(signed.signature)}
        ).encode(),
        token=admin_token,
    )  # fmt: skip
    assert (status, body) == (200, {"value": True})
    bad = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    status, _, body = _raw(
        server, "POST", f"/keys/{name}/{key.properties.version}/verify?api-version=7.5",
        json.dumps({"alg": algorithm, "digest": _b64(digest), "value": _b64(bad)}).encode(),
        token=admin_token,
    )  # fmt: skip
    assert (status, body) == (200, {"value": False})


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_rsa_oaep_encrypt_decrypt_wrap_unwrap(
    server: TlsServer, keys: KeyClient, admin_token: str
) -> None:
    key = keys.create_rsa_key(_name(), size=2048)
    public = _public(key)
    client = _crypto(server, admin_token, key.id)
    for algorithm, chosen in (
        (EncryptionAlgorithm.rsa_oaep_256, hashes.SHA256()),
        (EncryptionAlgorithm.rsa_oaep, hashes.SHA1()),
    ):
        # Sealed independently with the public key; opened by the door.
        sealed = public.encrypt(b"card 4111", padding.OAEP(padding.MGF1(chosen), chosen, None))
        opened = client.decrypt(algorithm, sealed)
        assert opened.plaintext == b"card 4111" and opened.key_id == key.id
        unwrapped = client.unwrap_key(KeyWrapAlgorithm(algorithm.value), sealed)
        assert unwrapped.key == b"card 4111"
    # The door's own encrypt and wrapKey (a caller who may not read the key
    # makes the SDK ask the door instead of encrypting locally).
    user = _user(server, ["kms:Encrypt", "kms:Decrypt"])
    remote = _crypto(server, _token(server, user), key.id)
    sealed = remote.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"pin 1234").ciphertext
    assert remote.decrypt(EncryptionAlgorithm.rsa_oaep_256, sealed).plaintext == b"pin 1234"
    wrapped = remote.wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 32).encrypted_key
    assert remote.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped).key == b"k" * 32
    # The AWS door opens what the Azure door sealed: one key.
    aws = server.aws()
    opened = aws.decrypt(
        KeyId=f"alias/azure/default/{key.name}",
        CiphertextBlob=sealed,
        EncryptionAlgorithm="RSAES_OAEP_SHA_256",
    )
    assert opened["Plaintext"] == b"pin 1234"
    theirs = aws.encrypt(
        KeyId=f"alias/azure/default/{key.name}",
        Plaintext=b"from aws",
        EncryptionAlgorithm="RSAES_OAEP_SHA_1",
    )["CiphertextBlob"]
    assert client.decrypt(EncryptionAlgorithm.rsa_oaep, theirs).plaintext == b"from aws"


def test_rsa1_5_and_algorithms_for_the_wrong_key_are_refused(
    server: TlsServer, keys: KeyClient, admin_token: str
) -> None:
    rsa_key = keys.create_rsa_key(_name())
    client = _crypto(server, admin_token, rsa_key.id)
    sealed = _public(rsa_key).encrypt(b"x", padding.PKCS1v15())
    with pytest.raises(HttpResponseError) as caught:
        client.decrypt(EncryptionAlgorithm.rsa1_5, sealed)
    assert caught.value.status_code == 400 and "PKCS #1 v1.5" in str(caught.value)
    ec_key = keys.create_ec_key(_name(), curve="P-256")
    ec_client = _crypto(server, admin_token, ec_key.id)
    with pytest.raises(HttpResponseError) as caught:
        ec_client.sign(SignatureAlgorithm.es384, _digest(48))
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:
        ec_client.sign(SignatureAlgorithm.es256, _digest(48))  # a digest of the wrong size
    assert caught.value.status_code == 400
    # A signing operation on an encryption key.
    status, _, body = _raw(
        server, "POST", f"/keys/{rsa_key.name}/{rsa_key.properties.version}/sign?api-version=7.5",
        json.dumps({"alg": "RS256", "value": _b64(_digest(32))}).encode(), token=admin_token,
    )  # fmt: skip
    assert status == 400 and body["error"]["code"] == "BadParameter"


def test_disabled_not_yet_valid_and_expired_keys_are_refused(
    server: TlsServer, keys: KeyClient, admin_token: str
) -> None:
    name = _name()
    key = keys.create_ec_key(name)
    client = _crypto(server, admin_token, key.id)
    digest = _digest(32)
    keys.update_key_properties(name, enabled=False)
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, digest)
    assert caught.value.status_code == 403 and "disabled" in str(caught.value)
    keys.update_key_properties(name, enabled=True)
    later = datetime.now(UTC) + timedelta(days=1)
    keys.update_key_properties(name, not_before=later)
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, digest)
    assert caught.value.status_code == 403 and "not yet valid" in str(caught.value)
    keys.update_key_properties(
        name, not_before=datetime.now(UTC) - timedelta(days=2),
        expires_on=datetime.now(UTC) - timedelta(days=1),
    )  # fmt: skip
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, digest)
    assert caught.value.status_code == 403 and "expired" in str(caught.value)
    # The AWS door's use of the same key is held to them too.
    aws = server.aws()
    key_id = str(uuid.UUID(hex=key.properties.version))
    with pytest.raises(aws.exceptions.KMSInvalidStateException, match="expired"):
        aws.sign(KeyId=key_id, Message=digest, MessageType="DIGEST",
                 SigningAlgorithm="ECDSA_SHA_256")  # fmt: skip
    keys.update_key_properties(name, expires_on=datetime.now(UTC) + timedelta(days=1))
    signature = aws.sign(KeyId=key_id, Message=digest, MessageType="DIGEST",
                         SigningAlgorithm="ECDSA_SHA_256")["Signature"]  # fmt: skip
    assert client.sign(SignatureAlgorithm.es256, digest).signature
    # An operation outside the version's key_ops, whichever door asks.
    keys.update_key_properties(name, key_operations=["verify"])
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, digest)
    assert caught.value.status_code == 403 and "not permitted" in str(caught.value)
    with pytest.raises(aws.exceptions.KMSInvalidStateException, match="key_ops"):
        aws.sign(KeyId=key_id, Message=digest, MessageType="DIGEST",
                 SigningAlgorithm="ECDSA_SHA_256")  # fmt: skip
    assert aws.verify(KeyId=key_id, Message=digest, MessageType="DIGEST", Signature=signature,
                      SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]  # fmt: skip


def test_random_bytes(keys: KeyClient) -> None:
    first, second = keys.get_random_bytes(32), keys.get_random_bytes(32)
    assert len(first) == 32 and first != second
    with pytest.raises(HttpResponseError) as caught:
        keys.get_random_bytes(129)
    assert caught.value.status_code == 400


# -- one authority: policies and the audit log --


def test_a_principal_without_permission_is_refused_and_audited(
    server: TlsServer, keys: KeyClient
) -> None:
    key = keys.create_ec_key(_name())
    user = _user(server, None)
    theirs = _keys(server, _token(server, user))
    with pytest.raises(HttpResponseError) as caught:
        theirs.create_ec_key(_name())
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "Forbidden"
    with pytest.raises(HttpResponseError) as caught:
        theirs.get_key(key.name)
    assert caught.value.status_code == 403
    client = _crypto(server, _token(server, user), key.id)
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, _digest(32))
    assert caught.value.status_code == 403
    records = [r for r in _records(server) if r.get("door") == "azure-keyvault"]
    refused = [r for r in records if r.get("error_code") == "AccessDeniedException"
               and r.get("operation") in ("AzureKeyVault.CreateKey", "AzureKeyVault.GetKey",
                                          "AzureKeyVault.Sign")]  # fmt: skip
    assert {r["operation"] for r in refused} >= {
        "AzureKeyVault.CreateKey", "AzureKeyVault.GetKey", "AzureKeyVault.Sign",
    }  # fmt: skip
    # Nothing was made by the refused create.
    assert all(r.get("key_arn") is None or "GetKey" in r["operation"] or "Sign" in r["operation"]
               for r in refused)  # fmt: skip


def test_the_aws_door_cannot_take_an_azure_name(server: TlsServer, keys: KeyClient) -> None:
    key = keys.create_ec_key(_name())
    aws = server.aws()
    other = aws.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    for call in (
        lambda: aws.create_alias(
            AliasName=f"alias/azure/default/{_name()}", TargetKeyId=other["KeyId"]
        ),
        lambda: aws.update_alias(
            AliasName=f"alias/azure/default/{key.name}", TargetKeyId=other["KeyId"]
        ),
        lambda: aws.delete_alias(AliasName=f"alias/azure/default/{key.name}"),
    ):
        with pytest.raises(aws.exceptions.ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "NotAuthorizedException"
    assert keys.get_key(key.name).id == key.id


# -- hostile input: Key Vault's errors, audited, no effect --


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/keys/{new}/create", b"{not json", 400, "BadParameter"),
        ("POST", "/keys/{new}/create", b"[1, 2]", 400, "BadParameter"),
        ("POST", "/keys/{new}/create", b'{"kty": "RSA", "key_size": 1024}', 400, "BadParameter"),
        ("POST", "/keys/{new}/create", b'{"kty": "EC", "crv": "P-192"}', 400, "BadParameter"),
        ("POST", "/keys/{new}/create", b'{"kty": "oct"}', 400, "BadParameter"),
        ("POST", "/keys/{new}/create", b'{"kty": 7}', 400, "BadParameter"),
        (
            "POST",
            "/keys/{new}/create",
            b'{"kty": "EC", "attributes": {"exportable": true}}',
            400,
            "BadParameter",
        ),
        ("POST", "/keys/bad_name/create", b'{"kty": "EC"}', 400, "BadParameter"),
        ("POST", "/keys/bad%2Fname/create", b'{"kty": "EC"}', 400, "BadParameter"),
        ("POST", "/keys/" + "a" * 128 + "/create", b'{"kty": "EC"}', 400, "BadParameter"),
        (
            "POST",
            "/keys/{ec}/{version}/sign",
            b'{"alg": "XS256", "value": "AA"}',
            400,
            "BadParameter",
        ),
        (
            "POST",
            "/keys/{ec}/{version}/sign",
            b'{"alg": "ES256", "value": "!!"}',
            400,
            "BadParameter",
        ),
        ("POST", "/keys/{ec}/nothex/sign", b'{"alg": "ES256", "value": "AA"}', 404, "KeyNotFound"),
        ("GET", "/keys/{ec}/{version}/nowhere", None, 404, "NotFound"),
        ("GET", "/keys?maxresults=26", None, 400, "BadParameter"),
        ("GET", "/keys?maxresults=x", None, 400, "BadParameter"),
        ("PUT", "/keys/{new}", b'{"key": {"kty": "EC"}}', 400, "BadParameter"),
        ("POST", "/keys/restore", b"{}", 400, "BadParameter"),
        ("POST", "/keys/restore", b'{"value": "!!"}', 400, "BadParameter"),
        ("POST", "/keys/{ec}/{version}/release", b"{}", 501, "NotImplemented"),
        ("GET", "/deletedkeys/{ec}", None, 404, "KeyNotFound"),
    ],
)
def test_hostile_input_is_key_vaults_error_with_no_effect(  # noqa: PLR0917 - by name
    server: TlsServer, keys: KeyClient, admin_token: str,
    method: str, path: str, body: bytes | None, status: int, code: str,
) -> None:  # fmt: skip
    ec_key = keys.create_ec_key(_name())
    new = _name()
    path = path.format(new=new, ec=ec_key.name, version=ec_key.properties.version)
    sep = "&" if "?" in path else "?"
    got, _, answer = _raw(server, method, f"{path}{sep}api-version=7.5", body, token=admin_token)
    assert (got, answer["error"]["code"]) == (status, code), answer
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(new)
    assert keys.get_key(ec_key.name).properties.enabled is True


def test_an_oversized_body_is_refused(server: TlsServer, admin_token: str) -> None:
    big = json.dumps({"kty": "EC", "tags": {"x": "y" * 70_000}}).encode()
    status, _, body = _raw(server, "POST", "/keys/big/create?api-version=7.5", big,
                           token=admin_token)  # fmt: skip
    assert status == 413 and body["error"]["code"] == "RequestEntityTooLarge"
    huge = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    status, _, body = _raw(server, "POST", "/keys/big/create?api-version=7.5", huge,
                           token=admin_token)  # fmt: skip
    assert status == 413 and body["error"]["code"] == "RequestEntityTooLarge"
    status, _, body = _raw(server, "GET", "/keys/big?api-version=7.5", token=admin_token)
    assert status == 404


def test_rotate_makes_a_new_version_like_the_latest(server: TlsServer, keys: KeyClient) -> None:
    name = _name()
    first = keys.create_rsa_key(name, size=3072, key_operations=["sign", "verify"],
                                tags={"team": "pay"})  # fmt: skip
    rotated = keys.rotate_key(name)
    assert rotated.properties.version != first.properties.version
    assert sorted(rotated.key_operations) == ["sign", "verify"]
    assert rotated.properties.tags == {"team": "pay"}
    assert keys.get_key(name).id == rotated.id
    meta = server.aws().describe_key(KeyId=str(uuid.UUID(hex=rotated.properties.version)))
    assert meta["KeyMetadata"]["KeySpec"] == "RSA_3072"
    assert meta["KeyMetadata"]["KeyUsage"] == "SIGN_VERIFY"
    # The first version still signs, with its own material.
    client = _crypto(server, _token(server, _user(server, ["kms:Sign"])), first.id)
    signed = client.sign(SignatureAlgorithm.rs256, _digest(32))
    _verify_independently(_public(first), "RS256", _digest(32), signed.signature)
    with pytest.raises(Exception):  # noqa: B017 - any failure: the other key's material
        _verify_independently(_public(rotated), "RS256", _digest(32), signed.signature)


def test_policy_conditions_see_the_algorithm_and_message_type(
    server: TlsServer, keys: KeyClient
) -> None:
    key = keys.create_ec_key(_name(), curve="P-256")
    name = f"az-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Action": "kms:Sign", "Resource": "*",
            "Condition": {"StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256",
                                           "kms:MessageType": "DIGEST"}},
        }],
    }  # fmt: skip
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    client = _crypto(server, _token(server, name), key.id)
    assert client.sign(SignatureAlgorithm.es256, _digest(32)).signature
    # A policy allowing RAW messages only refuses Key Vault's digests.
    policy["Statement"][0]["Condition"] = {"StringEquals": {"kms:MessageType": "RAW"}}  # type: ignore[index]
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, _digest(32))
    assert caught.value.status_code == 403


# -- soft delete --


def test_delete_recover_and_purge(server: TlsServer, keys: KeyClient) -> None:
    name = _name()
    first = keys.create_ec_key(name, tags={"a": "b"})
    second = keys.rotate_key(name)
    keys.update_key_properties(name, first.properties.version, enabled=False)
    deleted = keys.begin_delete_key(name).result()
    assert deleted.recovery_id == f"{server.endpoint}/deletedkeys/{name}"
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert (deleted.scheduled_purge_date - deleted.deleted_date).days == 30
    assert deleted.properties.recoverable_days == 30
    assert deleted.properties.recovery_level == "CustomizedRecoverable+Purgeable"
    # Deleted: not found, not listed, listed among the deleted, name taken.
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)
    assert name not in [p.name for p in keys.list_properties_of_keys()]
    assert name in [d.name for d in keys.list_deleted_keys()]
    assert keys.get_deleted_key(name).id == second.id
    with pytest.raises(HttpResponseError) as caught:
        keys.create_ec_key(name)
    assert caught.value.status_code == 409
    aws = server.aws()
    for version in (first, second):
        meta = aws.describe_key(KeyId=str(uuid.UUID(hex=version.properties.version)))
        assert meta["KeyMetadata"]["KeyState"] == "PendingDeletion"
    # Recovered as it was: the enabled version enabled, the disabled one not.
    recovered = keys.begin_recover_deleted_key(name).result()
    assert recovered.id == second.id and recovered.properties.enabled is True
    assert keys.get_key(name, first.properties.version).properties.enabled is False
    assert keys.get_key(name).properties.tags == {"a": "b"}  # rotate kept them
    with pytest.raises(ResourceNotFoundError):
        keys.get_deleted_key(name)
    # Purged: gone at once, through every door; the name is free again.
    keys.begin_delete_key(name).result()
    keys.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        keys.get_deleted_key(name)
    for version in (first, second):
        with pytest.raises(aws.exceptions.NotFoundException):
            aws.describe_key(KeyId=str(uuid.UUID(hex=version.properties.version)))
    again = keys.create_ec_key(name)
    assert again.properties.version not in (first.properties.version, second.properties.version)


def test_a_deleted_key_is_purged_when_its_window_ends_and_exp_is_lifecycle_time(
    tmp_path: Path,
) -> None:
    server = _tls_server(tmp_path)
    try:
        _window_ends(server)
    finally:
        server.stop()


def _window_ends(server: TlsServer) -> None:
    keys = _keys(server, _token(server, _user(server, ["kms:*"])))
    name = _name()
    key = keys.create_ec_key(name)
    signer = keys.create_ec_key(_name(), expires_on=datetime.now(UTC) + timedelta(days=10))
    keys.begin_delete_key(name).result()
    # A latest version whose keycask key the AWS door deletes: the key's
    # latest is then the newest version left.
    other = _name()
    older = keys.create_ec_key(other)
    newer = keys.create_ec_key(other)
    server.aws().schedule_key_deletion(
        KeyId=str(uuid.UUID(hex=newer.properties.version)), PendingWindowInDays=7
    )
    server.cli("dev", "advance-clock", "31d")
    assert keys.get_key(other).id == older.id
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(other, newer.properties.version)
    assert [p.version for p in keys.list_properties_of_key_versions(other)] == [
        older.properties.version
    ]
    # exp is lifecycle time: the dev clock's advance expired the signer.
    client = _crypto(server, _token(server, _user(server, ["kms:Sign"])), signer.id)
    with pytest.raises(HttpResponseError) as caught:
        client.sign(SignatureAlgorithm.es256, _digest(32))
    assert caught.value.status_code == 403 and "expired" in str(caught.value)
    with pytest.raises(ResourceNotFoundError):
        keys.get_deleted_key(name)
    with pytest.raises(server.aws().exceptions.NotFoundException):
        server.aws().describe_key(KeyId=str(uuid.UUID(hex=key.properties.version)))
    assert keys.create_ec_key(name).name == name


# -- import --


def _b64int(value: int, size: int = 0) -> bytes:
    return value.to_bytes(size or (value.bit_length() + 7) // 8, "big")


def test_import_rsa_and_ec_private_keys(
    server: TlsServer, keys: KeyClient, admin_token: str
) -> None:
    from azure.keyvault.keys import JsonWebKey

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.private_numbers()
    jwk = JsonWebKey(
        kty="RSA", key_ops=["sign", "verify"],
        n=_b64int(numbers.public_numbers.n), e=_b64int(numbers.public_numbers.e),
        d=_b64int(numbers.d), p=_b64int(numbers.p), q=_b64int(numbers.q),
        dp=_b64int(numbers.dmp1), dq=_b64int(numbers.dmq1), qi=_b64int(numbers.iqmp),
    )  # fmt: skip
    name = _name()
    imported = keys.import_key(name, jwk, tags={"from": "hsm-export"})
    assert imported.key.n == jwk.n and sorted(imported.key_operations) == ["sign", "verify"]
    meta = server.aws().describe_key(KeyId=f"alias/azure/default/{name}")["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("RSA_2048", "SIGN_VERIFY")
    assert meta["Description"].endswith("(imported)")
    client = _crypto(server, admin_token, imported.id)
    digest = _digest(32)
    signed = client.sign(SignatureAlgorithm.ps256, digest).signature
    _verify_independently(private.public_key(), "PS256", digest, signed)
    # EC, as a second version of the same name.
    point = ec.generate_private_key(ec.SECP256K1())
    pub = point.public_key().public_numbers()
    ec_jwk = JsonWebKey(kty="EC", crv="P-256K", x=_b64int(pub.x, 32), y=_b64int(pub.y, 32),
                        d=_b64int(point.private_numbers().private_value, 32))  # fmt: skip
    second = keys.import_key(name, ec_jwk)
    assert second.properties.version != imported.properties.version
    client = _crypto(server, admin_token, second.id)
    signed = client.sign(SignatureAlgorithm.es256_k, digest).signature
    _verify_independently(point.public_key(), "ES256K", digest, signed)


@pytest.mark.parametrize(
    "key",
    [
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # a public key
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AQ"},  # not on the curve
        {"kty": "oct", "k": "AAAA"},
        {"kty": "RSA", "n": "!!", "e": "AQAB", "d": "AQ"},
        {"kty": "EC", "crv": "P-256", "d": "AQ", "x": "AA", "y": "AA", "key_ops": ["nope"]},
    ],
)
def test_a_malformed_jwk_is_refused_with_no_effect(
    server: TlsServer, admin_token: str, keys: KeyClient, key: dict[str, Any]
) -> None:
    name = _name()
    body = json.dumps({"key": key}).encode()
    status, _, answer = _raw(
        server, "PUT", f"/keys/{name}?api-version=7.5", body, token=admin_token
    )
    assert (status, answer["error"]["code"]) == (400, "BadParameter"), answer
    assert "AQ" not in answer["error"]["message"].replace("AQAB", "")  # never quotes the key
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)


# -- rotation policies, carried out by the scheduler --


def test_a_rotation_policy_rotates_by_the_scheduler(tmp_path: Path) -> None:
    server = _tls_server(tmp_path)
    try:
        _rotation_by_policy(server)
    finally:
        server.stop()


def _rotation_by_policy(server: TlsServer) -> None:
    from azure.keyvault.keys import (
        KeyRotationLifetimeAction,
        KeyRotationPolicy,
        KeyRotationPolicyAction,
    )

    keys = _keys(server, _token(server, _user(server, ["kms:*"])))
    name = _name()
    first = keys.create_rsa_key(name, key_operations=["sign", "verify"], tags={"t": "1"})
    assert keys.get_key_rotation_policy(name).lifetime_actions == []
    actions = [
        KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D"),
        KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P7D"),
    ]
    policy = keys.update_key_rotation_policy(
        name, KeyRotationPolicy(), lifetime_actions=actions, expires_in="P90D"
    )
    assert policy.expires_in == "P90D"
    got = keys.get_key_rotation_policy(name)
    assert [
        (a.action, a.time_after_create, a.time_before_expiry) for a in got.lifetime_actions
    ] == [
        ("Rotate", "P30D", None),
        ("Notify", None, "P7D"),
    ]
    server.cli("dev", "advance-clock", "29d")
    assert keys.get_key(name).id == first.id
    server.cli("dev", "advance-clock", "2d")
    second = keys.get_key(name)
    assert second.properties.version != first.properties.version
    assert sorted(second.key_operations) == ["sign", "verify"]
    assert second.properties.tags == {"t": "1"}
    assert second.properties.expires_on is not None and second.properties.created_on is not None
    assert (second.properties.expires_on - second.properties.created_on).days == 90
    meta = server.aws().describe_key(
        KeyId=f"alias/azure/default/{name}/{second.properties.version}"
    )
    assert meta["KeyMetadata"]["KeySpec"] == "RSA_2048"
    server.cli("dev", "advance-clock", "31d")
    versions = [p.version for p in keys.list_properties_of_key_versions(name)]
    assert len(versions) == 3
    records = [r for r in _records(server) if r.get("operation") == "AzureKeyVault.RotateKey"]
    assert len(records) == 2 and all(r["principal"] == "keycask" for r in records)
    # Key Vault's rules for a policy.
    for bad in (
        [KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P1D")],
        [KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="PT48H")],
        [KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_before_expiry="P7D")],
    ):
        with pytest.raises(HttpResponseError) as caught:
            keys.update_key_rotation_policy(name, KeyRotationPolicy(), lifetime_actions=bad)
        assert caught.value.status_code == 400
    assert keys.get_key_rotation_policy(name).expires_in == "P90D"


def test_two_workers_see_each_others_settings(tmp_path: Path) -> None:
    server = TlsServer(tmp_path / "data", args=("--tls-self-signed",), workers=2).start()
    try:
        keys = _keys(server, _token(server, _user(server, ["kms:*"])))
        name = _name()
        keys.create_ec_key(name)
        for round_ in range(6):
            # Each request may land on either worker: every answer must
            # show the change the one before made.
            tags = {"round": str(round_)}
            assert keys.update_key_properties(name, tags=tags).properties.tags == tags
            assert keys.get_key(name).properties.tags == tags
            keys.rotate_key(name)
            assert len(list(keys.list_properties_of_key_versions(name))) == round_ + 2
    finally:
        server.stop()


# -- backup and restore --


def test_backup_purge_and_restore(server: TlsServer, keys: KeyClient, admin_token: str) -> None:
    name = _name()
    first = keys.create_rsa_key(name, key_operations=["sign", "verify"], tags={"a": "1"})
    second = keys.rotate_key(name)
    keys.update_key_properties(name, first.properties.version, enabled=False)
    digest = _digest(32)
    signed = _crypto(server, admin_token, second.id).sign(SignatureAlgorithm.rs256, digest)
    blob = keys.backup_key(name)
    assert blob.startswith(b"keycask-azure-backup-v1:")
    with pytest.raises(HttpResponseError) as caught:
        keys.restore_key_backup(blob)  # the name exists
    assert caught.value.status_code == 409
    keys.begin_delete_key(name).result()
    keys.purge_deleted_key(name)
    restored = keys.restore_key_backup(blob)
    assert restored.name == name
    assert restored.key.n == second.key.n  # the same private key, under a new version id
    assert restored.properties.version not in (first.properties.version, second.properties.version)
    versions = list(keys.list_properties_of_key_versions(name))
    assert [v.enabled for v in versions] == [False, True]
    assert keys.get_key(name, versions[0].version).key.n == first.key.n
    assert versions[0].tags == {"a": "1"}
    # The restored key verifies what the original signed, and signs anew.
    _verify_independently(_public(restored), "RS256", digest, signed.signature)
    again = _crypto(server, admin_token, restored.id).sign(SignatureAlgorithm.rs256, digest)
    _verify_independently(_public(second), "RS256", digest, again.signature)


def test_a_backup_opens_only_in_restore(
    server: TlsServer, keys: KeyClient, admin_token: str
) -> None:
    name = _name()
    keys.create_ec_key(name)
    blob = keys.backup_key(name)
    aws = server.aws()
    sealed = blob[len(b"keycask-azure-backup-v1:") :]
    # Nobody may use, change or delete the backup key through the AWS door.
    aliases = aws.list_aliases()["Aliases"]
    shield = next(a["TargetKeyId"] for a in aliases if a["AliasName"] == "alias/azure/_backup")
    for call in (
        lambda: aws.decrypt(CiphertextBlob=sealed),
        lambda: aws.decrypt(
            CiphertextBlob=sealed,
            EncryptionContext={"azure-keyvault:backup": "000000000000/us-east-1"},
        ),
        lambda: aws.put_key_policy(
            KeyId=shield,
            PolicyName="default",
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                            "Action": "kms:*",
                            "Resource": "*",
                        }
                    ],
                }
            ),
        ),
        lambda: aws.schedule_key_deletion(KeyId=shield),
        lambda: aws.disable_key(KeyId=shield),
    ):
        with pytest.raises(aws.exceptions.ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    # A blob altered anywhere, or not a backup, is refused with no effect.
    keys.begin_delete_key(name).result()
    keys.purge_deleted_key(name)
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]), b"keycask-azure-backup-v1:" + b"\1" * 80, b"x"):
        with pytest.raises(HttpResponseError) as caught:
            keys.restore_key_backup(bad)
        assert caught.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)
    # Backup needs the right to change the key's policy.
    user = f"az-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", user, "--json")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:PutKeyPolicy", "Resource": "*"},
    ]}  # fmt: skip
    path = server.data_dir.parent / f"{user}.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", user, "--policy-name", "p", "--file", str(path))
    other = keys.create_ec_key(_name())
    with pytest.raises(HttpResponseError) as caught:
        _keys(server, _token(server, user)).backup_key(other.name)
    assert caught.value.status_code == 403
