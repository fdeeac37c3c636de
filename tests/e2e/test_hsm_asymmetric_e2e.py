"""Asymmetric keys held inside the PKCS#11 token (docs/hsm.md): RSA and EC
key pairs the Cloud KMS door (protection level HSM, ASYMMETRIC_SIGN and
ASYMMETRIC_DECRYPT) and the Azure Key Vault door (RSA-HSM, EC-HSM) make in
the account's connected AWS_CLOUDHSM custom key store, against a real
keycask server configured with a real SoftHSM2 token, driven by
google-cloud-kms (REST) and azure-keyvault-keys; signatures and RSA-OAEP
ciphertexts checked with ``cryptography`` against the public key the
server gives.

The server, the token and the store come from test_hsm_key_store_e2e and
test_gcp_kms_hsm_e2e, the Azure door's TLS server and credential from
test_azure_keyvault_e2e."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.api_core.exceptions as gexc
import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from google.cloud import kms_v1
from pkcs11 import Attribute, ObjectClass
from production import SOFTHSM_TOKEN, SoftHsm, secret_file, softhsm_session
from test_azure_keyvault_e2e import TlsServer, _crypto, _keys
from test_gcp_kms_e2e import _records, _ring, _token, _user
from test_gcp_kms_hsm_e2e import (
    _admin,
    _alias,
    _connected_store,
    _gcp_aliases,
    _precondition,
    _refused,
)
from test_hsm_key_store_e2e import CLUSTER, PIN, _stored_paths, anchor, hsm, server
from test_xks_hsm_e2e import _list_objects

from conftest import DAY, Server

__all__ = ["anchor", "hsm", "server"]  # fixtures used here, defined there

HSM = kms_v1.ProtectionLevel.HSM
ALG = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
PURPOSE = kms_v1.CryptoKey.CryptoKeyPurpose
STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
_HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


def _pairs(hsm: SoftHsm) -> dict[bytes, dict[Any, Any]]:
    """Every private key in the token, by CKA_ID, with what PKCS#11 says of
    it (and whether its public key is there too)."""
    found: dict[bytes, dict[Any, Any]] = {}
    with softhsm_session(hsm) as session:
        for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
            found[bytes(key[Attribute.ID])] = {
                attribute: key[attribute]
                for attribute in (
                    Attribute.TOKEN,
                    Attribute.PRIVATE,
                    Attribute.SENSITIVE,
                    Attribute.ALWAYS_SENSITIVE,
                    Attribute.EXTRACTABLE,
                    Attribute.NEVER_EXTRACTABLE,
                    Attribute.SIGN,
                    Attribute.DECRYPT,
                    Attribute.UNWRAP,
                )
            }
        for key in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):
            found.setdefault(bytes(key[Attribute.ID]), {})["public"] = True
    return found


def _hsm_pair(
    gcp: kms_v1.KeyManagementServiceClient, ring: str, purpose: Any, algorithm: Any
) -> Any:
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"hsm-{uuid.uuid4().hex[:8]}",
            "crypto_key": {
                "purpose": purpose,
                "version_template": {"protection_level": HSM, "algorithm": algorithm},
                "destroy_scheduled_duration": {"seconds": 86400},
            },
        }
    )


def _verify(public: Any, algorithm: str, signature: bytes, message: bytes, digest: str) -> None:
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, message, ec.ECDSA(_HASHES[digest]))
        return
    assert isinstance(public, rsa.RSAPublicKey)
    pad: Any = (
        padding.PSS(padding.MGF1(_HASHES[digest]), _HASHES[digest].digest_size)
        if "PSS" in algorithm
        else padding.PKCS1v15()
    )
    public.verify(signature, message, pad, _HASHES[digest])


_SIGNERS = [
    (ALG.EC_SIGN_P256_SHA256, "sha256"),
    (ALG.EC_SIGN_P384_SHA384, "sha384"),
    (ALG.EC_SIGN_SECP256K1_SHA256, "sha256"),
    (ALG.RSA_SIGN_PSS_2048_SHA256, "sha256"),
    (ALG.RSA_SIGN_PKCS1_2048_SHA256, "sha256"),
]


@pytest.mark.parametrize(("algorithm", "digest"), _SIGNERS, ids=[a.name for a, _ in _SIGNERS])
def test_cloud_kms_hsm_signing_key_signs_inside_the_token(
    server: Server, hsm: SoftHsm, anchor: str, algorithm: Any, digest: str
) -> None:
    store_id = _connected_store(server, anchor)
    gcp = _admin(server)
    key = _hsm_pair(gcp, _ring(gcp), PURPOSE.ASYMMETRIC_SIGN, algorithm)
    assert key.version_template.protection_level == HSM
    version = f"{key.name}/cryptoKeyVersions/1"
    assert gcp.get_crypto_key_version(name=version).protection_level == HSM
    pem = gcp.get_public_key(name=version)
    assert pem.algorithm == algorithm
    public = serialization.load_pem_public_key(pem.pem.encode())
    message = b"signed inside the token " * 20
    hashed = hashlib.new(digest, message).digest()
    out = gcp.asymmetric_sign(request={"name": version, "digest": {digest: hashed}})
    _verify(public, algorithm.name, out.signature, message, digest)

    # The AWS door uses the same key by its id: Sign, Verify, GetPublicKey.
    kms = server.client()
    meta = kms.describe_key(KeyId=_alias(key.name))["KeyMetadata"]
    assert meta["Origin"] == "AWS_CLOUDHSM" and meta["CustomKeyStoreId"] == store_id
    assert meta["KeyUsage"] == "SIGN_VERIFY"
    aws_alg = meta["SigningAlgorithms"][0 if "PKCS1" not in algorithm.name else -1]
    if "PKCS1" in algorithm.name:
        aws_alg = "RSASSA_PKCS1_V1_5_SHA_256"
    signed = kms.sign(KeyId=meta["KeyId"], Message=message, SigningAlgorithm=aws_alg)
    _verify(public, aws_alg, signed["Signature"], message, digest)
    assert kms.verify(
        KeyId=meta["KeyId"], Message=message, Signature=signed["Signature"],
        SigningAlgorithm=aws_alg,
    )["SignatureValid"]  # fmt: skip
    with pytest.raises(ClientError, match="KMSInvalidSignatureException"):
        kms.verify(KeyId=meta["KeyId"], Message=b"other", Signature=signed["Signature"],
                   SigningAlgorithm=aws_alg)  # fmt: skip
    der = kms.get_public_key(KeyId=meta["KeyId"])["PublicKey"]
    assert der == public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    # The private key is a token object, sensitive and never extractable,
    # with its public key beside it; keycask's store holds no material.
    ((object_id, attributes),) = _pairs(hsm).items()
    assert attributes[Attribute.TOKEN] is True and attributes[Attribute.PRIVATE] is True
    assert attributes[Attribute.SENSITIVE] is True and attributes[Attribute.ALWAYS_SENSITIVE]
    assert attributes[Attribute.EXTRACTABLE] is False
    assert attributes[Attribute.NEVER_EXTRACTABLE] is True
    assert attributes[Attribute.SIGN] is True and attributes[Attribute.UNWRAP] is False
    assert attributes["public"] is True
    listing = _list_objects(hsm)
    assert f"keycask-{object_id.hex()}" in listing
    assert not [p for p in _stored_paths(server) if p.startswith(f"mat/{meta['KeyId']}/")]


def test_cloud_kms_hsm_rsa_oaep_decrypts_inside_the_token(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    _connected_store(server, anchor)
    gcp = _admin(server)
    ring = _ring(gcp)
    key = _hsm_pair(gcp, ring, PURPOSE.ASYMMETRIC_DECRYPT, ALG.RSA_DECRYPT_OAEP_2048_SHA1)
    version = f"{key.name}/cryptoKeyVersions/1"
    public: Any = serialization.load_pem_public_key(gcp.get_public_key(name=version).pem.encode())
    sha1 = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    sealed = public.encrypt(b"oaep secret", sha1)
    out = gcp.asymmetric_decrypt(request={"name": version, "ciphertext": sealed})
    assert out.plaintext == b"oaep secret"
    with pytest.raises(gexc.BadRequest):
        gcp.asymmetric_decrypt(request={"name": version, "ciphertext": b"\x01" * 256})
    ((_, attributes),) = _pairs(hsm).items()
    assert attributes[Attribute.DECRYPT] is True and attributes[Attribute.SIGN] is False
    assert attributes[Attribute.NEVER_EXTRACTABLE] is True

    # The AWS door: Encrypt (in software, with the token's public key) and
    # Decrypt (inside the token) by key id.
    kms = server.client()
    key_id = kms.describe_key(KeyId=_alias(key.name))["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"from aws",
                       EncryptionAlgorithm="RSAES_OAEP_SHA_1")["CiphertextBlob"]  # fmt: skip
    assert gcp.asymmetric_decrypt(request={"name": version, "ciphertext": blob}).plaintext == (
        b"from aws"
    )
    opened = kms.decrypt(KeyId=key_id, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    assert opened["Plaintext"] == b"from aws"


def test_disconnect_refuses_reconnect_works_destroy_removes_the_pair(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    store_id = _connected_store(server, anchor)
    gcp = _admin(server)
    key = _hsm_pair(gcp, _ring(gcp), PURPOSE.ASYMMETRIC_SIGN, ALG.EC_SIGN_P256_SHA256)
    version = f"{key.name}/cryptoKeyVersions/1"
    digest = {"sha256": hashlib.sha256(b"m").digest()}
    kms = server.client()
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    for call in (
        lambda: gcp.asymmetric_sign(request={"name": version, "digest": digest}),
        lambda: gcp.get_public_key(name=version),
    ):
        with pytest.raises(gexc.BadRequest) as error:
            call()
        assert "is unavailable" in _precondition(error)
    key_id = kms.describe_key(KeyId=_alias(key.name))["KeyMetadata"]["KeyId"]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert gcp.asymmetric_sign(request={"name": version, "digest": digest}).signature

    # No new version: an HSM-backed key is never rotated.
    with pytest.raises(gexc.BadRequest) as error:
        gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert "never rotates keys held in an HSM" in _precondition(error)

    # Destroy: when its time comes, both token objects go.
    assert len(_pairs(hsm)) == 1
    assert gcp.destroy_crypto_key_version(name=version).state == STATE.DESTROY_SCHEDULED
    with pytest.raises(gexc.BadRequest) as error:
        gcp.asymmetric_sign(request={"name": version, "digest": digest})
    _precondition(error)
    server.advance_clock(2 * DAY)
    assert gcp.get_crypto_key_version(name=version).state == STATE.DESTROYED
    assert _pairs(hsm) == {}
    record = next(
        r for r in reversed(_records(server)) if r["operation"] == "DestroyCryptoKeyVersion"
    )
    assert "destroyed" in record["detail"]


def test_what_the_token_cannot_make_is_refused_and_the_aws_door_keeps_refusing(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    store_id = _connected_store(server, anchor)
    gcp = _admin(server)
    ring = _ring(gcp)
    for purpose, algorithm in (
        (PURPOSE.ASYMMETRIC_SIGN, ALG.EC_SIGN_ED25519),
        (PURPOSE.MAC, ALG.HMAC_SHA256),
    ):
        with pytest.raises(gexc.BadRequest) as error:
            _hsm_pair(gcp, ring, purpose, algorithm)
        assert "no Ed25519, ML-DSA or MAC keys" in _precondition(error)
    assert _refused(server, "CreateCryptoKey")["error_code"] == "KMSInvalidStateException"
    # AWS's own CreateKey makes no asymmetric key in a CloudHSM key store.
    with pytest.raises(ClientError) as aws_error:
        server.client().create_key(
            KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
            Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id,
        )  # fmt: skip
    assert aws_error.value.response["Error"]["Code"] == "UnsupportedOperationException"
    assert _pairs(hsm) == {} and _gcp_aliases(server) == []


# -- the Azure Key Vault door --


@pytest.fixture
def tls_hsm_server(tmp_path: Path, hsm: SoftHsm) -> Iterator[TlsServer]:
    pin_file = secret_file(tmp_path / "pin", PIN)
    srv = TlsServer(
        tmp_path / "data",
        args=(
            "--tls-self-signed",
            "--hsm", f"{CLUSTER}={hsm.module}:{SOFTHSM_TOKEN}",
            "--hsm-pin-file", str(pin_file),
        ),
        env_extra={"SOFTHSM2_CONF": str(hsm.conf)},
    ).start()  # fmt: skip
    yield srv
    if srv.proc is not None:
        srv.stop()


def _azure_store(server: TlsServer, anchor: str) -> str:
    from test_hsm_key_store_e2e import _create_store

    kms = server.aws()
    store_id = _create_store(kms, anchor)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    return store_id


def _azure_token(server: TlsServer) -> str:
    return _token(server, _user(server, ["kms:*"]))


def test_azure_ec_hsm_and_rsa_hsm_keys_live_in_the_token(
    tls_hsm_server: TlsServer, hsm: SoftHsm, anchor: str
) -> None:
    server = tls_hsm_server
    store_id = _azure_store(server, anchor)
    token = _azure_token(server)
    client = _keys(server, token)

    ec_key = client.create_ec_key(
        f"ec-{uuid.uuid4().hex[:6]}", curve="P-384", hardware_protected=True
    )
    assert ec_key.key_type == "EC-HSM"
    assert client.get_key(ec_key.name).key_type == "EC-HSM"
    message = b"azure hsm " * 10
    digest = digest384 = hashlib.sha384(message).digest()
    crypto = _crypto(server, token, ec_key.id)
    signed = crypto.sign(SignatureAlgorithm.es384, digest)
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(ec_key.key.x, "big"), int.from_bytes(ec_key.key.y, "big"), ec.SECP384R1()
    ).public_key()
    raw = signed.signature
    der = utils.encode_dss_signature(
        int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big")
    )
    public.verify(der, message, ec.ECDSA(hashes.SHA384()))
    assert crypto.verify(SignatureAlgorithm.es384, digest, raw).is_valid

    # One RSA-HSM key signs (key_ops sign, verify), another decrypts.
    signer = client.create_rsa_key(
        f"rsa-{uuid.uuid4().hex[:6]}", size=2048, hardware_protected=True,
        key_operations=["sign", "verify"],
    )  # fmt: skip
    assert signer.key_type == "RSA-HSM"
    rsa_public = rsa.RSAPublicNumbers(
        int.from_bytes(signer.key.e, "big"), int.from_bytes(signer.key.n, "big")
    ).public_key()
    crypto = _crypto(server, token, signer.id)
    digest = hashlib.sha256(message).digest()
    ps = crypto.sign(SignatureAlgorithm.ps256, digest).signature
    rsa_public.verify(ps, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    rs = crypto.sign(SignatureAlgorithm.rs256, digest).signature
    rsa_public.verify(rs, message, padding.PKCS1v15(), hashes.SHA256())
    assert crypto.verify(SignatureAlgorithm.rs256, digest, rs).is_valid

    rsa_key = client.create_rsa_key(
        f"rsa-{uuid.uuid4().hex[:6]}", size=2048, hardware_protected=True
    )
    assert client.get_key(rsa_key.name).key_type == "RSA-HSM"
    rsa_public = rsa.RSAPublicNumbers(
        int.from_bytes(rsa_key.key.e, "big"), int.from_bytes(rsa_key.key.n, "big")
    ).public_key()
    crypto = _crypto(server, token, rsa_key.id)
    sha1 = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    sealed = rsa_public.encrypt(b"azure oaep", sha1)
    assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep, sealed).plaintext == b"azure oaep"
    wrapped = rsa_public.encrypt(b"k" * 32, sha1)
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped).key == b"k" * 32
    made = crypto.encrypt(EncryptionAlgorithm.rsa_oaep, b"from azure").ciphertext
    assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep, made).plaintext == b"from azure"
    # RSA-OAEP-256: SoftHSM2 2.6 takes OAEP with SHA-1 only; the reason is said.
    sealed = rsa_public.encrypt(
        b"x", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    )
    with pytest.raises(HttpResponseError) as refused:
        crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, sealed)
    assert "refused the mechanism or its parameters" in str(refused.value.message)

    # A new version of an -HSM key is made in the HSM too.
    rotated = client.rotate_key(ec_key.name)
    assert rotated.key_type == "EC-HSM" and rotated.properties.version != ec_key.properties.version
    signed = _crypto(server, token, rotated.id).sign(SignatureAlgorithm.es384, digest384)
    ec.EllipticCurvePublicNumbers(
        int.from_bytes(rotated.key.x, "big"), int.from_bytes(rotated.key.y, "big"), ec.SECP384R1()
    ).public_key().verify(
        utils.encode_dss_signature(
            int.from_bytes(signed.signature[:48], "big"),
            int.from_bytes(signed.signature[48:], "big"),
        ),
        message,
        ec.ECDSA(hashes.SHA384()),
    )

    # A rotation policy's Rotate would make the next version in software:
    # refused, with the reason (Notify alone is fine).
    from azure.keyvault.keys import (
        KeyRotationLifetimeAction,
        KeyRotationPolicy,
        KeyRotationPolicyAction,
    )

    with pytest.raises(HttpResponseError) as refused:
        client.update_key_rotation_policy(
            ec_key.name,
            KeyRotationPolicy(),
            lifetime_actions=[
                KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")
            ],
        )
    assert refused.value.status_code == 400
    assert "rotate it with the rotate operation" in str(refused.value.message)
    client.update_key_rotation_policy(
        ec_key.name,
        KeyRotationPolicy(),
        lifetime_actions=[
            KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P7D")
        ],
        expires_in="P90D",
    )

    # A backup would carry the private key: refused, with the reason.
    with pytest.raises(HttpResponseError) as refused:
        client.backup_key(rsa_key.name)
    assert "never leaves the HSM" in str(refused.value.message)

    # All are token objects, never extractable, of the account's store.
    found = _pairs(hsm)
    assert len(found) == 4
    assert all(a[Attribute.NEVER_EXTRACTABLE] and a[Attribute.SENSITIVE] for a in found.values())
    kms = server.aws()
    for key in (ec_key, signer, rsa_key):
        alias = next(
            a for a in kms.list_aliases(Limit=100)["Aliases"]
            if a["AliasName"].startswith("alias/azure/") and a["AliasName"].endswith(key.name)
        )  # fmt: skip
        meta = kms.describe_key(KeyId=alias["TargetKeyId"])["KeyMetadata"]
        assert meta["Origin"] == "AWS_CLOUDHSM" and meta["CustomKeyStoreId"] == store_id
        assert not [p for p in _stored_paths(server) if p.startswith(f"mat/{meta['KeyId']}/")]


def test_azure_hsm_types_without_a_connected_hsm_are_refused_with_the_reason(
    tls_hsm_server: TlsServer, hsm: SoftHsm
) -> None:
    server = tls_hsm_server  # an HSM configured, but no custom key store of it
    client = _keys(server, _azure_token(server))
    with pytest.raises(HttpResponseError) as error:
        client.create_ec_key("no-store", curve="P-256", hardware_protected=True)
    assert "connected HSM key store" in str(error.value.message)
    with pytest.raises(HttpResponseError) as error:
        client.create_rsa_key("no-store", size=2048, hardware_protected=True)
    assert "ConnectCustomKeyStore" in str(error.value.message)
    assert _pairs(hsm) == {}
    assert not [
        a for a in server.aws().list_aliases(Limit=100)["Aliases"]
        if a["AliasName"].startswith("alias/azure/")
    ]  # fmt: skip


def test_azure_purge_destroys_the_hsm_keys_in_the_token(
    tls_hsm_server: TlsServer, hsm: SoftHsm, anchor: str
) -> None:
    # Found in review: purge deleted the keys' records and left their
    # private keys in the token, with nothing pointing at them any more.
    server = tls_hsm_server
    _azure_store(server, anchor)
    before = _pairs(hsm)
    client = _keys(server, _azure_token(server))
    name = f"ec-{uuid.uuid4().hex[:6]}"
    client.create_ec_key(name, curve="P-256", hardware_protected=True)
    client.rotate_key(name)  # two versions, two key pairs
    client.begin_delete_key(name).result()
    client.purge_deleted_key(name)
    assert _pairs(hsm) == before
    purged = [r for r in _records(server) if r["operation"] == "AzureKeyVault.PurgeDeletedKey"]
    assert "2 HSM key(s) destroyed in the token" in purged[-1]["detail"]
