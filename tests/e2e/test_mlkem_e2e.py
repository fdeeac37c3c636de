"""ML-KEM keys through boto3: CreateKey, Encapsulate, Decapsulate,
GetPublicKey and DescribeKey as AWS KMS documents them.

What is checked with tools that are not keycask: the public key GetPublicKey
answers is RFC 9935 SubjectPublicKeyInfo that ``cryptography`` (ML-KEM-768,
ML-KEM-1024) and pycryptodome (ML-KEM-512) load and encapsulate to, and
Decapsulate recovers their secret. The shared secret never reaches the audit
log.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from Crypto.PublicKey import MLKEM
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem

from conftest import Server

SPECS = ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")
CIPHERTEXT = {"ML_KEM_512": 768, "ML_KEM_768": 1088, "ML_KEM_1024": 1568}
PUBLIC_KEY = {"ML_KEM_512": 800, "ML_KEM_768": 1184, "ML_KEM_1024": 1568}
USAGE = "ENCAPSULATE_DECAPSULATE"


def _error(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


@pytest.fixture(scope="module")
def keys(kms: Any) -> dict[str, dict[str, Any]]:
    """One ML-KEM key per spec, shared by the tests that leave it enabled."""
    made = {}
    for spec in SPECS:
        meta = kms.create_key(KeySpec=spec, KeyUsage=USAGE, Description=f"mlkem e2e {spec}")
        made[spec] = meta["KeyMetadata"]
    return made


@pytest.mark.parametrize("spec", SPECS)
def test_encapsulate_then_decapsulate(kms: Any, keys: dict[str, Any], spec: str) -> None:
    meta = keys[spec]
    assert meta["KeySpec"] == spec and meta["KeyUsage"] == USAGE
    assert meta["EncapsulationAlgorithms"] == ["ML_KEM"]
    for absent in ("EncryptionAlgorithms", "SigningAlgorithms", "KeyAgreementAlgorithms"):
        assert absent not in meta
    described = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert described["EncapsulationAlgorithms"] == ["ML_KEM"]

    out = kms.encapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM")
    assert out["KeyId"] == meta["Arn"]
    assert out["EncapsulationAlgorithm"] == "ML_KEM"
    secret, ciphertext = out["SharedSecret"], out["SharedSecretCiphertextBlob"]
    assert len(secret) == 32
    assert len(ciphertext) == CIPHERTEXT[spec]

    back = kms.decapsulate(
        KeyId=meta["Arn"], SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM"
    )
    assert back["SharedSecret"] == secret
    assert back["KeyId"] == meta["Arn"]
    assert back["EncapsulationAlgorithm"] == "ML_KEM"
    # Each Encapsulate is a fresh secret.
    again = kms.encapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM")
    assert again["SharedSecret"] != secret

    # A changed ciphertext is no error: a different, stable 32-byte secret.
    changed = bytearray(ciphertext)
    changed[len(changed) // 2] ^= 0x01
    rejected = kms.decapsulate(
        KeyId=meta["KeyId"],
        SharedSecretCiphertextBlob=bytes(changed),
        EncapsulationAlgorithm="ML_KEM",
    )["SharedSecret"]
    assert len(rejected) == 32 and rejected != secret
    assert (
        kms.decapsulate(
            KeyId=meta["KeyId"],
            SharedSecretCiphertextBlob=bytes(changed),
            EncapsulationAlgorithm="ML_KEM",
        )["SharedSecret"]
        == rejected
    )

    # Only a ciphertext of the wrong length is refused.
    for length in (1, CIPHERTEXT[spec] - 1, CIPHERTEXT[spec] + 1):
        code, message = _error(
            kms.decapsulate,
            KeyId=meta["KeyId"],
            SharedSecretCiphertextBlob=b"\x02" * length,
            EncapsulationAlgorithm="ML_KEM",
        )
        assert code == "InvalidCiphertextException", (length, message)


def test_a_ciphertext_for_another_key_gives_another_secret(kms: Any, keys: dict[str, Any]) -> None:
    other = kms.create_key(KeySpec="ML_KEM_768", KeyUsage=USAGE)["KeyMetadata"]
    out = kms.encapsulate(KeyId=other["KeyId"], EncapsulationAlgorithm="ML_KEM")
    secret = kms.decapsulate(
        KeyId=keys["ML_KEM_768"]["KeyId"],
        SharedSecretCiphertextBlob=out["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
    )["SharedSecret"]
    assert len(secret) == 32 and secret != out["SharedSecret"]


def _encapsulate_locally(spec: str, public_der: bytes) -> tuple[bytes, bytes]:
    """(secret, ciphertext) made outside keycask from GetPublicKey's answer."""
    if spec == "ML_KEM_512":
        # cryptography has no ML-KEM-512: pycryptodome's, from its own import.
        public = MLKEM.import_key(public_der)
        assert public.param_set is MLKEM.ML_KEM_512 and not public.has_private()
        secret, ciphertext = public._encaps()
        return secret, ciphertext
    key = serialization.load_der_public_key(public_der)
    expected = {"ML_KEM_768": mlkem.MLKEM768PublicKey, "ML_KEM_1024": mlkem.MLKEM1024PublicKey}
    assert isinstance(key, expected[spec])
    return key.encapsulate()


@pytest.mark.parametrize("spec", SPECS)
def test_get_public_key_and_encapsulate_outside_keycask(
    kms: Any, keys: dict[str, Any], spec: str
) -> None:
    meta = keys[spec]
    answer = kms.get_public_key(KeyId=meta["KeyId"])
    assert answer["KeyId"] == meta["Arn"]
    assert answer["KeySpec"] == spec and answer["KeyUsage"] == USAGE
    assert answer["EncapsulationAlgorithms"] == ["ML_KEM"]
    assert "SigningAlgorithms" not in answer and "EncryptionAlgorithms" not in answer
    public_der = answer["PublicKey"]
    # RFC 9935: an SPKI whose BIT STRING holds the raw encapsulation key.
    assert len(public_der) == PUBLIC_KEY[spec] + 22
    secret, ciphertext = _encapsulate_locally(spec, public_der)
    recovered = kms.decapsulate(
        KeyId=meta["KeyId"], SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM"
    )["SharedSecret"]
    assert recovered == secret


def test_create_key_rules(kms: Any) -> None:
    code, message = _error(kms.create_key, KeySpec="ML_KEM_768")
    assert code == "ValidationException" and "KeyUsage" in message
    for usage in ("SIGN_VERIFY", "ENCRYPT_DECRYPT", "KEY_AGREEMENT"):
        code, message = _error(kms.create_key, KeySpec="ML_KEM_768", KeyUsage=usage)
        assert code == "ValidationException" and "ML_KEM_768" in message, usage
    for spec in ("SYMMETRIC_DEFAULT", "RSA_2048", "ECC_NIST_P256", "ML_DSA_65", "HMAC_256"):
        code, message = _error(kms.create_key, KeySpec=spec, KeyUsage=USAGE)
        assert code == "ValidationException" and USAGE in message, spec
    # Imported key material is for symmetric keys only.
    code, _ = _error(kms.create_key, KeySpec="ML_KEM_512", KeyUsage=USAGE, Origin="EXTERNAL")
    assert code == "UnsupportedOperationException"


def test_wrong_key_usage(kms: Any, keys: dict[str, Any]) -> None:
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    signing = kms.create_key(KeySpec="ML_DSA_44", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    for key_id in (symmetric, signing):
        code, message = _error(kms.encapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM")
        assert code == "InvalidKeyUsageException", message
        code, message = _error(
            kms.decapsulate,
            KeyId=key_id,
            SharedSecretCiphertextBlob=b"\x01" * 768,
            EncapsulationAlgorithm="ML_KEM",
        )
        assert code == "InvalidKeyUsageException", message
    kem = keys["ML_KEM_512"]["KeyId"]
    assert _error(kms.encrypt, KeyId=kem, Plaintext=b"x")[0] == "InvalidKeyUsageException"
    assert (
        _error(kms.sign, KeyId=kem, Message=b"m", SigningAlgorithm="ML_DSA_SHAKE_256")[0]
        == "InvalidKeyUsageException"
    )
    assert _error(kms.generate_data_key, KeyId=kem, KeySpec="AES_256")[0] == (
        "InvalidKeyUsageException"
    )
    # The model's enum has one algorithm: anything else is a validation error.
    code, _ = _error(kms.encapsulate, KeyId=kem, EncapsulationAlgorithm="ML_KEM_768")
    assert code == "ValidationException"


def test_disabled_key_and_dry_run(kms: Any) -> None:
    key_id = kms.create_key(KeySpec="ML_KEM_1024", KeyUsage=USAGE)["KeyMetadata"]["KeyId"]
    ciphertext = kms.encapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM")[
        "SharedSecretCiphertextBlob"
    ]
    code, _ = _error(kms.encapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM", DryRun=True)
    assert code == "DryRunOperationException"
    code, _ = _error(
        kms.decapsulate,
        KeyId=key_id,
        SharedSecretCiphertextBlob=ciphertext,
        EncapsulationAlgorithm="ML_KEM",
        DryRun=True,
    )
    assert code == "DryRunOperationException"
    kms.disable_key(KeyId=key_id)
    code, _ = _error(kms.encapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM")
    assert code == "DisabledException"
    code, _ = _error(
        kms.decapsulate,
        KeyId=key_id,
        SharedSecretCiphertextBlob=ciphertext,
        EncapsulationAlgorithm="ML_KEM",
    )
    assert code == "DisabledException"
    assert _error(kms.get_public_key, KeyId=key_id)[0] == "DisabledException"
    kms.enable_key(KeyId=key_id)
    assert kms.encapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM")["KeyId"].endswith(key_id)


def test_grants_for_encapsulation(server: Server, kms: Any) -> None:
    key_id = kms.create_key(KeySpec="ML_KEM_768", KeyUsage=USAGE)["KeyMetadata"]["KeyId"]
    name = f"kem-{uuid.uuid4().hex[:10]}"
    created = json.loads(server.cli("principals", "create", name, "--json").stdout)
    grantee = server.client((created["AccessKeyId"], created["SecretAccessKey"]))
    code, _ = _error(grantee.encapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM")
    assert code == "AccessDeniedException"
    code, _ = _error(
        kms.create_grant, KeyId=key_id, GranteePrincipal=created["Arn"], Operations=["Sign"]
    )
    assert code == "ValidationException"
    grant = kms.create_grant(
        KeyId=key_id,
        GranteePrincipal=created["Arn"],
        Operations=["Encapsulate", "Decapsulate", "GetPublicKey"],
    )
    token = grant["GrantToken"]
    out = grantee.encapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM", GrantTokens=[token])
    back = grantee.decapsulate(
        KeyId=key_id,
        SharedSecretCiphertextBlob=out["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
        GrantTokens=[token],
    )
    assert back["SharedSecret"] == out["SharedSecret"]
    code, _ = _error(
        grantee.encapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM", GrantTokens=["bad"]
    )
    assert code == "InvalidGrantTokenException"


def test_audit_log_holds_no_shared_secret(server: Server, kms: Any) -> None:
    key = kms.create_key(KeySpec="ML_KEM_512", KeyUsage=USAGE)["KeyMetadata"]
    out = kms.encapsulate(KeyId=key["KeyId"], EncapsulationAlgorithm="ML_KEM")
    back = kms.decapsulate(
        KeyId=key["KeyId"],
        SharedSecretCiphertextBlob=out["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
    )
    secret = back["SharedSecret"]
    assert secret == out["SharedSecret"]
    audit = (Path(server.data_dir) / "audit" / "server.jsonl").read_bytes()
    records = [json.loads(line) for line in audit.splitlines()]
    operations = [r.get("operation") for r in records if key["KeyId"] in json.dumps(r)]
    assert "Encapsulate" in operations and "Decapsulate" in operations
    for form in (
        secret,
        secret.hex().encode(),
        base64.b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ):
        assert form not in audit


def test_a_multi_region_ml_kem_key(kms: Any) -> None:
    """AWS allows asymmetric multi-Region keys; ML-KEM keys are no exception
    here (the primary of a set of one, named by its mrk- id)."""
    meta = kms.create_key(KeySpec="ML_KEM_768", KeyUsage=USAGE, MultiRegion=True)["KeyMetadata"]
    assert meta["KeyId"].startswith("mrk-") and meta["EncapsulationAlgorithms"] == ["ML_KEM"]
    public_der = kms.get_public_key(KeyId=meta["Arn"])["PublicKey"]
    secret, ciphertext = _encapsulate_locally("ML_KEM_768", public_der)
    out = kms.decapsulate(
        KeyId=meta["KeyId"], SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM"
    )
    assert out["SharedSecret"] == secret and out["KeyId"] == meta["Arn"]
