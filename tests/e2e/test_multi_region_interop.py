"""Multi-Region keys with the AWS Encryption SDK's multi-Region-aware
clients (issue 22): a message whose data key was wrapped by a multi-Region
key in one region decrypts in another region that holds a replica, with the
SDK's MRK-aware master key providers (ESDK for Python, in the test process)
and its MRK-aware keyrings (the Material Providers Library, in its own venv,
tests/e2e/interop/mpl_keyring.py). The SDK checks that Decrypt answers with
the ARN of the key it asked (the replica's, in the replica's region), so
this is also a test of what Decrypt answers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.exceptions import DecryptKeyError
from aws_encryption_sdk.key_providers.kms import (
    DiscoveryFilter,
    MRKAwareDiscoveryAwsKmsMasterKeyProvider,
    MRKAwareStrictAwsKmsMasterKeyProvider,
    StrictAwsKmsMasterKeyProvider,
)
from interop_paths import MPL_KEYRING, MPL_PYTHON, require_interop
from test_integrations import _base_env, _run

if TYPE_CHECKING:
    from conftest import Server

CONTEXT = {"app": "global-tables", "tenant": "acme"}


@pytest.fixture(autouse=True)
def _no_ambient_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


def _session(server: Server) -> botocore.session.Session:
    session = botocore.session.Session(profile="keycask")
    session.set_config_variable("config_file", str(server.data_dir / "config"))
    session.set_config_variable("credentials_file", str(server.data_dir / "credentials"))
    return session


def _sdk() -> aws_encryption_sdk.EncryptionSDKClient:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def _replicated(server: Server) -> tuple[str, str, str]:
    """A multi-Region key made in us-east-1 and replicated to us-west-2:
    (primary ARN, replica ARN, account)."""
    east = server.client(region="us-east-1")
    made = east.create_key(MultiRegion=True, Description="global")["KeyMetadata"]
    replica = east.replicate_key(KeyId=made["KeyId"], ReplicaRegion="us-west-2")
    return made["Arn"], replica["ReplicaKeyMetadata"]["Arn"], made["AWSAccountId"]


def test_esdk_mrk_aware_providers_decrypt_in_the_replica_region(server: Server) -> None:
    primary, replica, account = _replicated(server)
    assert primary.split(":")[3] == "us-east-1" and replica.split(":")[3] == "us-west-2"
    assert primary.rsplit("/", 1)[1] == replica.rsplit("/", 1)[1]
    message = os.urandom(200_000)
    sdk = _sdk()
    ciphertext, header = sdk.encrypt(
        source=message,
        key_provider=MRKAwareStrictAwsKmsMasterKeyProvider(
            key_ids=[primary], botocore_session=_session(server)
        ),
        encryption_context=CONTEXT,
    )
    (edk,) = header.encrypted_data_keys
    assert edk.key_provider.key_info == primary.encode()
    # Strict, naming the replica: the SDK calls Decrypt in us-west-2 with the
    # replica's ARN and requires the answer to name it.
    strict = MRKAwareStrictAwsKmsMasterKeyProvider(
        key_ids=[replica], botocore_session=_session(server)
    )
    plaintext, _ = sdk.decrypt(source=ciphertext, key_provider=strict)
    assert plaintext == message
    # Discovery in the replica's region, limited to the account.
    discovery = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
        discovery_region="us-west-2",
        discovery_filter=DiscoveryFilter(account_ids=[account], partition="aws"),
        botocore_session=_session(server),
    )
    plaintext, _ = sdk.decrypt(source=ciphertext, key_provider=discovery)
    assert plaintext == message
    # A provider that is not MRK-aware treats the replica as another key.
    plain_provider = StrictAwsKmsMasterKeyProvider(
        key_ids=[replica], botocore_session=_session(server)
    )
    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=ciphertext, key_provider=plain_provider)
    # Encrypted in the replica's region, decrypted with the primary.
    back, _ = sdk.encrypt(source=b"from the west", key_provider=strict, encryption_context=CONTEXT)
    east = MRKAwareStrictAwsKmsMasterKeyProvider(
        key_ids=[primary], botocore_session=_session(server)
    )
    assert sdk.decrypt(source=back, key_provider=east)[0] == b"from the west"


@pytest.mark.slow
def test_mpl_mrk_keyrings_decrypt_in_the_replica_region(server: Server, tmp_path: Path) -> None:
    require_interop()
    primary, replica, account = _replicated(server)
    akid, secret = server.credentials()
    env = _base_env(
        AWS_ACCESS_KEY_ID=akid,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )

    def keyring(*args: str | Path) -> Any:
        return _run([MPL_PYTHON, MPL_KEYRING, server.endpoint, *args], env)

    src, msg, out = tmp_path / "plain", tmp_path / "msg", tmp_path / "out"
    src.write_bytes(os.urandom(100_000))
    ctx = [a for k, v in CONTEXT.items() for a in ("--context", f"{k}={v}")]
    done = keyring("encrypt", "--key", primary, *ctx, src, msg)
    assert done.returncode == 0, done.stderr
    done = keyring("decrypt", "--mrk-aware", "--key", replica, *ctx, msg, out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == src.read_bytes()
    out.unlink()
    done = keyring(
        "decrypt", "--mrk-aware", "--discovery-account", account, "--region", "us-west-2",
        *ctx, msg, out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == src.read_bytes()
    # The plain keyring with the replica's ARN does not match the primary's.
    out.unlink()
    done = keyring("decrypt", "--key", replica, *ctx, msg, out)
    assert done.returncode == 1 and not out.exists()
