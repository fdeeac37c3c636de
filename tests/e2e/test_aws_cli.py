"""The first session a user runs: the real AWS CLI (v1) against a --dev server.

The user's only setup is the two exports the server prints on start; nothing
else from the environment may reach the CLI, so every other ``AWS_*`` variable
is stripped.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import Server

AWS = Path(sys.executable).parent / "aws"
PROFILE = "keycask"
CONTEXT = {"purpose": "readme-demo", "team": "keycask"}


def _shorthand(context: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in context.items())


class AwsCli:
    """``aws --profile keycask kms ...`` with only the two exported files."""

    def __init__(self, data_dir: Path, scratch: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_CONFIG_FILE"] = str(data_dir / "config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(data_dir / "credentials")
        self.env = env
        self.scratch = scratch
        self._n = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AWS), "--profile", PROFILE, "kms", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"aws kms {args[0]} failed: {proc.stderr}"
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--output", "json"))

    def text(self, *args: str, query: str) -> str:
        return self.ok(*args, "--query", query, "--output", "text").strip()

    def fail(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode != 0, f"aws kms {args[0]} unexpectedly succeeded: {proc.stdout}"
        return proc.stderr

    def fileb(self, data: bytes) -> str:
        """Write ``data`` to a scratch file and name it the way the CLI wants."""
        self._n += 1
        path = self.scratch / f"blob-{self._n}.bin"
        path.write_bytes(data)
        return f"fileb://{path}"


def _decrypt(cli: AwsCli, blob: bytes, context: dict[str, str]) -> bytes:
    context_args = ("--encryption-context", _shorthand(context)) if context else ()
    b64 = cli.text(
        "decrypt", "--ciphertext-blob", cli.fileb(blob), *context_args, query="Plaintext"
    )
    return base64.b64decode(b64, validate=True)


def test_dev_profile_files(fresh_server: Server) -> None:
    data = fresh_server.data_dir
    config_file, credentials_file = data / "config", data / "credentials"
    assert config_file.is_file()
    assert credentials_file.is_file()
    for path in (config_file, credentials_file):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

    config = configparser.ConfigParser()
    config.read(config_file)
    section = config[f"profile {PROFILE}"]
    assert section["endpoint_url"] == fresh_server.endpoint
    assert section["region"] == "us-east-1"

    credentials = configparser.ConfigParser()
    credentials.read(credentials_file)
    assert credentials[PROFILE]["aws_access_key_id"].startswith("AKKC")
    assert len(credentials[PROFILE]["aws_secret_access_key"]) == 40


def test_first_session_through_the_aws_cli(fresh_server: Server, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cli = AwsCli(fresh_server.data_dir, scratch)

    # create-key
    meta = cli.json("create-key", "--description", "my first keycask key")["KeyMetadata"]
    key_id, key_arn = meta["KeyId"], meta["Arn"]
    assert key_arn == f"arn:aws:kms:us-east-1:000000000000:key/{key_id}"
    assert meta["KeyState"] == "Enabled"
    assert meta["Description"] == "my first keycask key"

    # encrypt bytes that are not text (NUL, high bytes) from a file, with a context
    plaintext = b"\x00secret\xffpayload\n" + os.urandom(48)
    out = cli.json(
        "encrypt",
        "--key-id",
        key_id,
        "--plaintext",
        cli.fileb(plaintext),
        "--encryption-context",
        _shorthand(CONTEXT),
    )
    assert out["KeyId"] == key_arn
    blob = base64.b64decode(out["CiphertextBlob"], validate=True)
    assert plaintext not in blob

    # decrypt: the README's --query Plaintext --output text, then base64 -d
    assert _decrypt(cli, blob, CONTEXT) == plaintext

    # a wrong or missing context does not decrypt
    wrong = {**CONTEXT, "purpose": "something-else"}
    for args in (
        ("--encryption-context", _shorthand(wrong)),
        ("--encryption-context", "purpose=readme-demo"),
        (),
    ):
        stderr = cli.fail("decrypt", "--ciphertext-blob", cli.fileb(blob), *args)
        assert "InvalidCiphertextException" in stderr

    # generate-data-key: a 32-byte key and its blob, which decrypts to it
    dk = cli.json(
        "generate-data-key",
        "--key-id",
        key_id,
        "--key-spec",
        "AES_256",
        "--encryption-context",
        _shorthand(CONTEXT),
    )
    assert dk["KeyId"] == key_arn
    data_key = base64.b64decode(dk["Plaintext"], validate=True)
    assert len(data_key) == 32
    data_key_blob = base64.b64decode(dk["CiphertextBlob"], validate=True)
    assert _decrypt(cli, data_key_blob, CONTEXT) == data_key

    # re-encrypt under a second key and a new context
    meta2 = cli.json("create-key", "--description", "second key")["KeyMetadata"]
    new_context = {"purpose": "rotated"}
    re = cli.json(
        "re-encrypt",
        "--ciphertext-blob",
        cli.fileb(blob),
        "--source-encryption-context",
        _shorthand(CONTEXT),
        "--destination-key-id",
        meta2["KeyId"],
        "--destination-encryption-context",
        _shorthand(new_context),
    )
    assert re["SourceKeyId"] == key_arn
    assert re["KeyId"] == meta2["Arn"]
    re_blob = base64.b64decode(re["CiphertextBlob"], validate=True)
    assert _decrypt(cli, re_blob, new_context) == plaintext
    assert "InvalidCiphertextException" in cli.fail(
        "decrypt",
        "--ciphertext-blob",
        cli.fileb(re_blob),
        "--encryption-context",
        _shorthand(CONTEXT),
    )

    # create-alias, then encrypt by alias name
    assert cli.ok("create-alias", "--alias-name", "alias/readme", "--target-key-id", key_id) == ""
    by_alias = cli.json(
        "encrypt",
        "--key-id",
        "alias/readme",
        "--plaintext",
        cli.fileb(b"by alias"),
    )
    assert by_alias["KeyId"] == key_arn
    alias_blob = base64.b64decode(by_alias["CiphertextBlob"], validate=True)
    assert _decrypt(cli, alias_blob, {}) == b"by alias"
    aliases = cli.json("list-aliases")["Aliases"]
    assert {"alias/readme": key_id} == {
        a["AliasName"]: a.get("TargetKeyId") for a in aliases if a["AliasName"] == "alias/readme"
    }

    # list-keys shows both keys
    listed = cli.json("list-keys")["Keys"]
    assert {(k["KeyId"], k["KeyArn"]) for k in listed} >= {
        (key_id, key_arn),
        (meta2["KeyId"], meta2["Arn"]),
    }

    # disable-key: encrypt now fails the way AWS says, and the CLI exits non-zero
    assert cli.ok("disable-key", "--key-id", key_id) == ""
    assert cli.json("describe-key", "--key-id", key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    stderr = cli.fail("encrypt", "--key-id", key_id, "--plaintext", cli.fileb(b"no"))
    assert "DisabledException" in stderr
    stderr = cli.fail("encrypt", "--key-id", "alias/readme", "--plaintext", cli.fileb(b"no"))
    assert "DisabledException" in stderr
    # the other key is untouched
    assert _decrypt(cli, re_blob, new_context) == plaintext


def test_boto3_profile_from_the_two_exports(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK with nothing but the two exports and ``profile_name`` reaches keycask."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(server.data_dir / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(server.data_dir / "credentials"))

    kms = boto3.Session(profile_name=PROFILE).client("kms")
    assert kms.meta.endpoint_url == server.endpoint
    assert kms.meta.region_name == "us-east-1"

    key_arn = kms.create_key(Description="boto3 via profile")["KeyMetadata"]["Arn"]
    blob = kms.encrypt(KeyId=key_arn, Plaintext=b"profile", EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
    assert out["Plaintext"] == b"profile"
    assert out["KeyId"] == key_arn
    with pytest.raises(ClientError) as err:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "other"})
    assert err.value.response["Error"]["Code"] == "InvalidCiphertextException"
