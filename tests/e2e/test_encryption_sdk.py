"""The AWS Encryption SDK for Python (v4) uses keycask as its KMS.

The SDK builds its KMS clients from a botocore session
(``boto3.session.Session(botocore_session=...).client("kms", region_name=...)``,
the region taken from the key ARN), so the clean seam is a botocore session
whose config and credentials files are the two the --dev server wrote: the
profile there carries ``endpoint_url``, exactly as a user's would.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.exceptions import DecryptKeyError
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import Server

CONTEXT = {"tenant": "acme", "purpose": "sdk-e2e", "object": "reports/2024.csv"}
MESSAGE_SIZE = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_ambient_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the session built below may steer the SDK's clients."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


def _botocore_session(server: Server) -> botocore.session.Session:
    session = botocore.session.Session(profile="keycask")
    session.set_config_variable("config_file", str(server.data_dir / "config"))
    session.set_config_variable("credentials_file", str(server.data_dir / "credentials"))
    return session


def _provider(server: Server, key_arn: str) -> StrictAwsKmsMasterKeyProvider:
    # A new session and provider each time: no client or key is reused.
    return StrictAwsKmsMasterKeyProvider(
        key_ids=[key_arn], botocore_session=_botocore_session(server)
    )


def _sdk() -> aws_encryption_sdk.EncryptionSDKClient:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def _audit_records(server: Server, key_arn: str, operation: str) -> list[dict[str, Any]]:
    lines = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["key_arn"] == key_arn and r["operation"] == operation]


def test_sdk_round_trip_of_one_mebibyte(server: Server, kms: Any) -> None:
    key_arn = kms.create_key(Description="encryption sdk")["KeyMetadata"]["Arn"]
    message = os.urandom(MESSAGE_SIZE)
    sdk = _sdk()

    ciphertext, enc_header = sdk.encrypt(
        source=message, key_provider=_provider(server, key_arn), encryption_context=CONTEXT
    )
    assert len(ciphertext) > MESSAGE_SIZE
    assert message[:4096] not in ciphertext

    # One data key, wrapped by keycask under our key; the blob is keycask's v1
    # format, naming the key it was made with.
    (edk,) = enc_header.encrypted_data_keys
    assert edk.key_provider.provider_id == "aws-kms"
    assert edk.key_provider.key_info == key_arn.encode()
    blob = edk.encrypted_data_key
    assert blob[0] == 0x01
    assert blob[1:17] == uuid.UUID(key_arn.rsplit("/", 1)[1]).bytes
    # The SDK adds its own pair (the signing key) to what we passed.
    assert CONTEXT.items() <= enc_header.encryption_context.items()
    assert "aws-crypto-public-key" in enc_header.encryption_context

    plaintext, dec_header = sdk.decrypt(source=ciphertext, key_provider=_provider(server, key_arn))
    assert plaintext == message
    assert dec_header.encryption_context == enc_header.encryption_context
    assert CONTEXT.items() <= dec_header.encryption_context.items()

    # keycask bound the data key to the full context the SDK sent: the blob
    # opens with it and with nothing less.
    full = dict(enc_header.encryption_context)
    opened = kms.decrypt(CiphertextBlob=blob, EncryptionContext=full, KeyId=key_arn)
    assert opened["KeyId"] == key_arn
    assert len(opened["Plaintext"]) == enc_header.algorithm.kdf_input_len
    partial = {k: v for k, v in full.items() if k != "aws-crypto-public-key"}
    with pytest.raises(ClientError) as err:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=partial)
    assert err.value.response["Error"]["Code"] == "InvalidCiphertextException"

    # and the SDK really went through keycask, with the context, both ways
    generated = _audit_records(server, key_arn, "GenerateDataKey")
    assert [r["outcome"] for r in generated] == ["success"]
    assert generated[0]["encryption_context"] == full
    decrypted = [r for r in _audit_records(server, key_arn, "Decrypt") if r["outcome"] == "success"]
    assert len(decrypted) == 2  # the SDK's, then ours
    assert all(r["encryption_context"] == full for r in decrypted)


def test_sdk_refuses_what_it_should(server: Server, kms: Any) -> None:
    key_a = kms.create_key(Description="sdk key a")["KeyMetadata"]["Arn"]
    key_b = kms.create_key(Description="sdk key b")["KeyMetadata"]["Arn"]
    message = os.urandom(64 * 1024)
    sdk = _sdk()
    ciphertext, header = sdk.encrypt(
        source=message, key_provider=_provider(server, key_a), encryption_context=CONTEXT
    )

    # A provider for another key cannot decrypt.
    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=ciphertext, key_provider=_provider(server, key_b))

    # A wrapped data key altered in transit is refused by keycask itself.
    (edk,) = header.encrypted_data_keys
    blob = edk.encrypted_data_key
    at = ciphertext.index(blob)
    tampered = bytearray(ciphertext)
    tampered[at + len(blob) - 1] ^= 0x01
    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=bytes(tampered), key_provider=_provider(server, key_a))
    refused = [r["error_code"] for r in _audit_records(server, key_a, "Decrypt")]
    assert refused == ["InvalidCiphertextException"]

    # A disabled key cannot unwrap; enabled again, it can.
    kms.disable_key(KeyId=key_a)
    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=ciphertext, key_provider=_provider(server, key_a))
    kms.enable_key(KeyId=key_a)
    plaintext, _ = sdk.decrypt(source=ciphertext, key_provider=_provider(server, key_a))
    assert plaintext == message
    outcomes = [r["error_code"] for r in _audit_records(server, key_a, "Decrypt")]
    assert outcomes == ["InvalidCiphertextException", "DisabledException", None]
    # The SDK never asked keycask about key b: its provider filtered the data key out.
    assert _audit_records(server, key_b, "Decrypt") == []
