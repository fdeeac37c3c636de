"""The integrations of docs/integrations.md beyond what the page walks
(test_integrations_doc.py): the real clients, as separate programs, against
a real keycask, in the cases a page should not show.

* The AWS CLI and boto3 find keycask through ``AWS_ENDPOINT_URL_KMS`` alone
  (no file names it), in the documented order of precedence, and a wrong
  secret is refused.
* aws-encryption-cli (ESDK 3.x) refuses tampered, truncated and foreign
  messages, leaving no output file, and exits 0 with no output on a wrong
  encryption context (the page's caveat, held here so a change is noticed).
* The ESDK 4.x keyrings (tests/e2e/interop/mpl_keyring.py, in the MPL's venv):
  single, multi and discovery keyrings, and messages that the master key
  provider API of keycask's own venv reads and writes.
* Least privilege: principals made with ``keycask principals create`` whose
  only permissions are the page's key policy statements succeed, and lose
  exactly what a missing action gives.

Every secret reaches the clients through the environment or a 0600 file,
never through argv.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from interop_paths import ESDK_CLI, MPL_KEYRING, MPL_PYTHON, require_interop

if TYPE_CHECKING:
    from conftest import Server

AWS = Path(sys.executable).parent / "aws"
ACCOUNT = "000000000000"
CONTEXT = {"app": "reports", "tenant": "acme"}
# Nothing listens on the discard port: a client sent there fails at once.
NOWHERE = "http://127.0.0.1:9"
# Where a client that lost keycask's endpoint would go instead.
AWS_KMS_URL = "'url': 'https://kms.us-east-1.amazonaws.com/'"


def _base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    env["AWS_MAX_ATTEMPTS"] = "1"  # a refused connection fails now, not after retries
    # A client that goes to AWS's own (https) endpoint meets a dead proxy, so
    # no test ever sends a signed request off this machine; keycask is http.
    env["HTTPS_PROXY"] = NOWHERE
    env["NO_PROXY"] = "127.0.0.1,localhost"
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    env.update(extra)
    return env


def _run(argv: Sequence[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@dataclass(frozen=True)
class AwsFiles:
    """An application's own AWS config and credentials files (0600)."""

    config: Path
    credentials: Path

    def env(self, **extra: str) -> dict[str, str]:
        return _base_env(
            AWS_CONFIG_FILE=str(self.config),
            AWS_SHARED_CREDENTIALS_FILE=str(self.credentials),
            **extra,
        )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _aws_files(where: Path, profiles: dict[str, tuple[str, str]], endpoint: str | None) -> AwsFiles:
    """``profiles``: name -> access key; ``default`` is the unnamed profile.
    With ``endpoint`` None, no file names the endpoint."""
    where.mkdir(parents=True, exist_ok=True)
    config, credentials = [], []
    for name, (akid, secret) in profiles.items():
        header = "default" if name == "default" else f"profile {name}"
        config.append(f"[{header}]\nregion = us-east-1\n")
        if endpoint is not None:
            config.append(f"endpoint_url = {endpoint}\n")
        credentials.append(
            f"[{name}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
        )
    files = AwsFiles(where / "config", where / "credentials")
    _write_private(files.config, "".join(config))
    _write_private(files.credentials, "".join(credentials))
    return files


def _principal(server: Server, name: str) -> tuple[str, str]:
    """A principal with no identity policy, made through the CLI; its key."""
    proc = server.cli("principals", "create", name, "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{name}"
    return created["AccessKeyId"], created["SecretAccessKey"]


def _key_policy(app: str, actions: list[str], context: dict[str, str] | None) -> str:
    """The page's shape: the account's administrators keep the key, and the
    app gets ``actions`` and nothing else."""
    statement: dict[str, Any] = {
        "Sid": "App",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{app}"},
        "Action": actions,
        "Resource": "*",
    }
    if context:
        statement["Condition"] = {
            "StringEquals": {f"kms:EncryptionContext:{k}": v for k, v in context.items()}
        }
    admins = {
        "Sid": "AccountAdministrators",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [admins, statement]})


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- the AWS CLI and boto3 through AWS_ENDPOINT_URL_KMS ---------------------


def test_aws_cli_with_aws_endpoint_url_kms_and_no_endpoint_in_files(
    server: Server, tmp_path: Path
) -> None:
    files = _aws_files(tmp_path / "aws", {"default": server.credentials()}, endpoint=None)
    env = files.env(AWS_ENDPOINT_URL_KMS=server.endpoint)

    def aws(*args: str) -> str:
        proc = _run([AWS, "kms", *args], env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    arn = aws("create-key", "--description", "endpoint from env", "--query", "KeyMetadata.Arn",
              "--output", "text")  # fmt: skip
    assert arn.startswith(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/")
    plaintext = b"\x00binary\xff" + os.urandom(64)
    (tmp_path / "plain.bin").write_bytes(plaintext)
    shorthand = ",".join(f"{k}={v}" for k, v in CONTEXT.items())
    blob_b64 = aws("encrypt", "--key-id", arn, "--plaintext", f"fileb://{tmp_path / 'plain.bin'}",
                   "--encryption-context", shorthand, "--output", "text",
                   "--query", "CiphertextBlob")  # fmt: skip
    (tmp_path / "blob.kms").write_bytes(base64.b64decode(blob_b64, validate=True))
    blob = f"fileb://{tmp_path / 'blob.kms'}"
    out = aws("decrypt", "--ciphertext-blob", blob, "--encryption-context", shorthand,
              "--output", "text", "--query", "Plaintext")  # fmt: skip
    assert base64.b64decode(out, validate=True) == plaintext
    key_id = aws("decrypt", "--ciphertext-blob", blob, "--encryption-context", shorthand,
                 "--output", "text", "--query", "KeyId")  # fmt: skip
    assert key_id == arn
    # The same call, its context changed by one value, is refused by keycask.
    proc = _run([AWS, "kms", "decrypt", "--ciphertext-blob", blob, "--encryption-context",
                 "app=reports,tenant=globex"], env)  # fmt: skip
    assert proc.returncode != 0 and "InvalidCiphertextException" in proc.stderr

    # Without the variable nothing points at keycask: the CLI goes to AWS's own
    # endpoint (its --debug log names the URL; the dead proxy stops it there).
    proc = _run([AWS, "kms", "describe-key", "--key-id", arn, "--debug"], files.env())
    assert proc.returncode != 0 and AWS_KMS_URL in proc.stderr


def test_endpoint_precedence_of_the_aws_cli(server: Server, tmp_path: Path) -> None:
    """--endpoint-url, then AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL, then
    the profile's endpoint_url: each wins over the ones after it, shown by
    giving the losers an address where nothing listens."""
    files = _aws_files(tmp_path / "aws", {"default": server.credentials()}, endpoint=NOWHERE)
    here = server.endpoint
    cases: list[tuple[dict[str, str], list[str], bool]] = [
        ({}, [], False),  # the profile's dead endpoint alone
        ({"AWS_ENDPOINT_URL": here}, [], True),
        ({"AWS_ENDPOINT_URL_KMS": here}, [], True),
        ({"AWS_ENDPOINT_URL_KMS": here, "AWS_ENDPOINT_URL": NOWHERE}, [], True),
        ({"AWS_ENDPOINT_URL_KMS": NOWHERE, "AWS_ENDPOINT_URL": here}, [], False),
        ({"AWS_ENDPOINT_URL_KMS": NOWHERE}, ["--endpoint-url", here], True),
        # Told to ignore configured endpoints, it goes to AWS's own.
        ({"AWS_ENDPOINT_URL_KMS": here, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, [], False),
    ]
    for extra, args, reaches in cases:
        proc = _run([AWS, "kms", "list-keys", "--debug", *args], files.env(**extra))
        assert (proc.returncode == 0) is reaches, (extra, args, proc.stderr[-2000:])
        if not reaches:
            ignored = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" in extra
            went = AWS_KMS_URL if ignored else "'url': 'http://127.0.0.1:9/'"
            assert went in proc.stderr, proc.stderr[-2000:]


def test_a_wrong_secret_through_the_env_endpoint_is_refused(server: Server, tmp_path: Path) -> None:
    akid, secret = server.credentials()
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    files = _aws_files(tmp_path / "aws", {"default": (akid, forged)}, endpoint=None)
    proc = _run([AWS, "kms", "list-keys"], files.env(AWS_ENDPOINT_URL_KMS=server.endpoint))
    assert proc.returncode != 0
    assert "InvalidSignatureException" in proc.stderr or "UnrecognizedClient" in proc.stderr
    assert forged not in proc.stderr


BOTO3_APP = """
import boto3
kms = boto3.client("kms")
data_key = kms.generate_data_key(KeyId="{key}", KeySpec="AES_256", EncryptionContext={{"app": "x"}})
again = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext={{"app": "x"}})
assert again["Plaintext"] == data_key["Plaintext"]
print(kms.meta.endpoint_url, kms.meta.region_name, again["KeyId"])
"""


def test_boto3_app_code_unchanged_with_only_environment_variables(
    server: Server, kms: Any, tmp_path: Path
) -> None:
    """``boto3.client("kms")`` in a fresh process, every setting from the
    environment; a profile naming a dead endpoint is overridden."""
    arn = kms.create_key(Description="boto3 env")["KeyMetadata"]["Arn"]
    files = _aws_files(tmp_path / "aws", {"default": ("AKIDNOTUSED", "x" * 40)}, NOWHERE)
    akid, secret = server.credentials()
    env = files.env(
        AWS_ENDPOINT_URL_KMS=server.endpoint,
        AWS_ACCESS_KEY_ID=akid,  # the environment's credentials come before the files'
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
    )
    proc = _run([sys.executable, "-c", BOTO3_APP.format(key=arn)], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [server.endpoint, "us-east-1", arn]


# --- aws-encryption-cli --------------------------------------------------------


@dataclass(frozen=True)
class EsdkCli:
    files: AwsFiles
    profile: str

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        require_interop()
        return _run([ESDK_CLI, *args, "--suppress-metadata"], self.files.env())

    def encrypt(
        self, src: Path, dst: Path, keys: Sequence[str], context: dict[str, str] = CONTEXT
    ) -> int:
        wrapping = [f"key={k}" for k in keys] + [f"profile={self.profile}"]
        pairs = [f"{k}={v}" for k, v in context.items()]
        proc = self.run("--encrypt", "--input", src, "--output", dst, "--wrapping-keys",
                        *wrapping, "--encryption-context", *pairs)  # fmt: skip
        return proc.returncode

    def decrypt(self, src: Path, dst: Path, wrapping: Sequence[str], *extra: str) -> int:
        proc = self.run("--decrypt", "--input", src, "--output", dst, "--wrapping-keys",
                        *wrapping, f"profile={self.profile}",
                        "--commitment-policy", "require-encrypt-require-decrypt",
                        *extra)  # fmt: skip
        return proc.returncode


def _decrypts(server: Server) -> int:
    """Decrypt requests in the server's audit log so far."""
    lines = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    return sum(json.loads(line)["operation"] == "Decrypt" for line in lines)


@pytest.mark.slow
def test_aws_encryption_cli_refuses_what_it_must(server: Server, kms: Any, tmp_path: Path) -> None:
    require_interop()
    files = _aws_files(tmp_path / "aws", {"keycask": server.credentials()}, server.endpoint)
    cli = EsdkCli(files, "keycask")
    key = kms.create_key(Description="esdk cli")["KeyMetadata"]["Arn"]
    other = kms.create_key(Description="esdk cli other")["KeyMetadata"]["Arn"]
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(200_000))
    message = tmp_path / "data.esdk"
    assert cli.encrypt(src, message, [key]) == 0
    body = message.read_bytes()
    assert body[:1] == b"\x02"  # a message with a committing suite

    out = tmp_path / "out.bin"
    assert cli.decrypt(message, out, [f"key={key}"], "--max-encrypted-data-keys", "1") == 0
    assert out.read_bytes() == src.read_bytes()
    out.unlink()

    hostile = {
        "tampered": body[:-300] + bytes([body[-300] ^ 1]) + body[-299:],
        "truncated": body[: len(body) // 2],
        "empty": b"",
        "not a message": b"quarterly report, in the clear\n",
    }
    for name, data in hostile.items():
        path = tmp_path / f"{name.replace(' ', '-')}.esdk"
        path.write_bytes(data)
        assert cli.decrypt(path, out, [f"key={key}"]) == 1, name
        assert not out.exists(), name

    refused = {
        "another key": [f"key={other}"],
        "discovery in another account": [
            "discovery=true", "discovery-account=111122223333", "discovery-partition=aws"
        ],
    }  # fmt: skip
    for name, wrapping in refused.items():
        assert cli.decrypt(message, out, wrapping) == 1, name
        assert not out.exists(), name
    discovery = ["discovery=true", f"discovery-account={ACCOUNT}", "discovery-partition=aws"]
    assert cli.decrypt(message, out, discovery) == 0
    assert out.read_bytes() == src.read_bytes()
    out.unlink()

    # Too many data keys: refused before any of them is sent to keycask.
    third = kms.create_key(Description="esdk cli third")["KeyMetadata"]["Arn"]
    crowded = tmp_path / "crowded.esdk"
    assert cli.encrypt(src, crowded, [key, other, third]) == 0
    before = _decrypts(server)
    limit = ("--max-encrypted-data-keys", "2")
    assert cli.decrypt(crowded, out, [f"key={third}"], *limit) == 1
    assert not out.exists()
    assert _decrypts(server) == before
    assert cli.decrypt(crowded, out, [f"key={third}"], "--max-encrypted-data-keys", "3") == 0
    assert _decrypts(server) == before + 1
    out.unlink()

    # The page's caveat: a context that does not match writes nothing, exit 0.
    assert cli.decrypt(message, out, [f"key={key}"], "--encryption-context", "app=payroll") == 0
    assert not out.exists()

    # A disabled key: refused, nothing written.
    kms.disable_key(KeyId=key)
    try:
        assert cli.decrypt(message, out, [f"key={key}"]) == 1
        assert not out.exists()
        assert cli.encrypt(src, tmp_path / "again.esdk", [key]) == 1
        assert not (tmp_path / "again.esdk").exists()
    finally:
        kms.enable_key(KeyId=key)


@pytest.mark.slow
def test_aws_encryption_cli_with_only_the_documented_actions(
    server: Server, kms: Any, tmp_path: Path
) -> None:
    """GenerateDataKey on the first key, Encrypt on the second, Decrypt where it
    decrypts: enough, and each one missing is refused where it is needed."""
    require_interop()
    full, writer = _unique("esdk-full"), _unique("esdk-writer")
    keys = {name: _principal(server, name) for name in (full, writer)}
    files = _aws_files(tmp_path / "aws", keys, server.endpoint)
    first = kms.create_key(Description="first")["KeyMetadata"]["Arn"]
    second = kms.create_key(Description="second")["KeyMetadata"]["Arn"]
    app_context = {"app": CONTEXT["app"]}
    reader = ["kms:GenerateDataKey", "kms:Decrypt"]
    kms.put_key_policy(KeyId=first, PolicyName="default",
                       Policy=_key_policy(full, reader, app_context))  # fmt: skip
    kms.put_key_policy(KeyId=second, PolicyName="default",
                       Policy=_key_policy(full, ["kms:Encrypt"], app_context))  # fmt: skip

    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(10_000))
    cli = EsdkCli(files, full)
    two = tmp_path / "two.esdk"
    assert cli.encrypt(src, two, [first, second]) == 0
    out = tmp_path / "out.bin"
    assert cli.decrypt(two, out, [f"key={first}"]) == 0
    assert out.read_bytes() == src.read_bytes()
    out.unlink()
    # No kms:Decrypt on the second key: that copy of the data key is closed to it.
    assert cli.decrypt(two, out, [f"key={second}"]) == 1
    assert not out.exists()
    # No kms:Encrypt or GenerateDataKey outside app=reports.
    assert cli.encrypt(src, tmp_path / "x.esdk", [first], {"app": "x"}) == 1

    # The writer has GenerateDataKey only: it writes, and cannot read back.
    kms.put_key_policy(KeyId=first, PolicyName="default",
                       Policy=_key_policy(writer, ["kms:GenerateDataKey"], None))  # fmt: skip
    writer_cli = EsdkCli(files, writer)
    one = tmp_path / "one.esdk"
    assert writer_cli.encrypt(src, one, [first]) == 0
    assert writer_cli.decrypt(one, out, [f"key={first}"]) == 1
    assert not out.exists()
    # ...and the first app, no longer named by that key's policy, cannot either.
    assert cli.decrypt(one, out, [f"key={first}"]) == 1


# --- the ESDK 4.x keyrings ---------------------------------------------------------


@dataclass(frozen=True)
class Keyring:
    """tests/e2e/interop/mpl_keyring.py in the MPL's venv, signing with ``creds``
    from the environment."""

    endpoint: str  # "-": the script's default client supplier, endpoint from env_endpoint
    creds: tuple[str, str]
    env_endpoint: str | None = None

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        require_interop()
        env = _base_env(
            AWS_ACCESS_KEY_ID=self.creds[0],
            AWS_SECRET_ACCESS_KEY=self.creds[1],
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        if self.env_endpoint is not None:
            env["AWS_ENDPOINT_URL_KMS"] = self.env_endpoint
        return _run([MPL_PYTHON, MPL_KEYRING, self.endpoint, *args], env)

    def ok(self, *args: str | Path) -> None:
        proc = self.run(*args)
        assert proc.returncode == 0, proc.stderr

    def fails(self, *args: str | Path) -> str:
        proc = self.run(*args)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert line.startswith("mpl_keyring: "), line
        return line


def _context_args(context: dict[str, str]) -> list[str]:
    return [a for k, v in context.items() for a in ("--context", f"{k}={v}")]


def _mkp_session(server: Server) -> botocore.session.Session:
    session = botocore.session.Session(profile="keycask")
    session.set_config_variable("config_file", str(server.data_dir / "config"))
    session.set_config_variable("credentials_file", str(server.data_dir / "credentials"))
    return session


@pytest.mark.slow
def test_keyrings_and_message_format_interop(
    server: Server, kms: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_interop()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    keyring = Keyring(server.endpoint, server.credentials())
    key = kms.create_key(Description="keyring")["KeyMetadata"]["Arn"]
    other = kms.create_key(Description="keyring child")["KeyMetadata"]["Arn"]
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(300_000))
    ctx = _context_args(CONTEXT)

    # An AwsKmsKeyring, round trip with the context checked on decrypt.
    single = tmp_path / "single.esdk"
    keyring.ok("encrypt", "--key", key, *ctx, src, single)
    out = tmp_path / "out.bin"
    keyring.ok("decrypt", "--key", key, *ctx, single, out)
    assert out.read_bytes() == src.read_bytes()
    line = keyring.fails("decrypt", "--key", key, "--context", "app=payroll", single, out)
    assert "does not match reproduced encryption context" in line
    assert "No Encrypted Data Keys found to match" in keyring.fails(
        "decrypt", "--key", other, single, tmp_path / "x"
    )

    # A discovery keyring: its own account only.
    keyring.ok("decrypt", "--discovery-account", ACCOUNT, single, tmp_path / "disc.bin")
    assert (tmp_path / "disc.bin").read_bytes() == src.read_bytes()
    keyring.fails("decrypt", "--discovery-account", "111122223333", single, tmp_path / "y")
    assert not (tmp_path / "y").exists()

    # A multi-keyring: the child key alone opens the message.
    multi = tmp_path / "multi.esdk"
    keyring.ok("encrypt", "--key", key, "--key", other, *ctx, src, multi)
    keyring.ok("decrypt", "--key", other, multi, tmp_path / "child.bin")
    assert (tmp_path / "child.bin").read_bytes() == src.read_bytes()

    # keycask's own venv (SDK 4.x, master key provider API) reads the keyring's
    # messages, with both data keys in the multi one...
    sdk = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    for path, edks in ((single, {key}), (multi, {key, other})):
        provider = StrictAwsKmsMasterKeyProvider(
            key_ids=[key], botocore_session=_mkp_session(server)
        )
        plaintext, header = sdk.decrypt(source=path.read_bytes(), key_provider=provider)
        assert plaintext == src.read_bytes()
        assert {e.key_provider.key_info.decode() for e in header.encrypted_data_keys} == edks
        assert all(header.encryption_context[k] == v for k, v in CONTEXT.items())
    # ...and the keyring reads what the master key provider wrote.
    provider = StrictAwsKmsMasterKeyProvider(key_ids=[other], botocore_session=_mkp_session(server))
    written, _ = sdk.encrypt(
        source=src.read_bytes(), key_provider=provider, encryption_context=CONTEXT
    )
    (tmp_path / "mkp.esdk").write_bytes(written)
    keyring.ok("decrypt", "--key", other, *ctx, tmp_path / "mkp.esdk", tmp_path / "mkp.bin")
    assert (tmp_path / "mkp.bin").read_bytes() == src.read_bytes()


@pytest.mark.slow
def test_keyring_app_with_only_the_documented_actions(
    server: Server, kms: Any, tmp_path: Path
) -> None:
    require_interop()
    name = _unique("keyring-app")
    app = Keyring(server.endpoint, _principal(server, name))
    key = kms.create_key(Description="keyring least privilege")["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=key, PolicyName="default",
                       Policy=_key_policy(name, ["kms:GenerateDataKey", "kms:Decrypt"],
                                          {"app": "reports"}))  # fmt: skip
    src = tmp_path / "data.bin"
    src.write_bytes(b"keyring app data")
    message = tmp_path / "m.esdk"
    app.ok("encrypt", "--key", key, "--context", "app=reports", src, message)
    app.ok("decrypt", "--key", key, "--context", "app=reports", message, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    # Outside its context, and with a key its policy does not name: refused.
    app.fails("encrypt", "--key", key, "--context", "app=payroll", src, tmp_path / "no1")
    other = kms.create_key(Description="not the app's")["KeyMetadata"]["Arn"]
    app.fails("encrypt", "--key", other, "--context", "app=reports", src, tmp_path / "no2")
    assert not (tmp_path / "no1").exists() and not (tmp_path / "no2").exists()


@pytest.mark.slow
def test_endpoint_from_the_environment_alone_for_the_encryption_clients(
    server: Server, kms: Any, tmp_path: Path
) -> None:
    """The clients that build their own KMS clients from a region find keycask
    through AWS_ENDPOINT_URL_KMS: aws-encryption-cli with ``region=`` and no
    profile, and the MPL's multi-keyring with its default client supplier."""
    require_interop()
    key = kms.create_key(Description="env endpoint")["KeyMetadata"]["Arn"]
    second = kms.create_key(Description="env endpoint 2")["KeyMetadata"]["Arn"]
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(5000))
    akid, secret = server.credentials()
    env = _base_env(
        AWS_ACCESS_KEY_ID=akid,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_ENDPOINT_URL_KMS=server.endpoint,
    )
    cli_message = tmp_path / "cli.esdk"
    proc = _run([ESDK_CLI, "-e", "-i", src, "-o", cli_message, "-S", "--wrapping-keys",
                 f"key={key}", "region=us-east-1", "-c", "app=reports"], env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    # The default client supplier: a multi-keyring from key ARNs alone.
    supplied = Keyring("-", (akid, secret), env_endpoint=server.endpoint)
    multi = tmp_path / "multi.esdk"
    supplied.ok("encrypt", "--key", key, "--key", second, "--context", "app=reports", src, multi)
    # Without the variable the supplier's clients go to AWS, not keycask.
    lost = Keyring("-", (akid, secret))
    lost.fails("encrypt", "--key", key, src, tmp_path / "lost.esdk")
    assert not (tmp_path / "lost.esdk").exists()

    # Each message opens with the other client, the endpoint given in code.
    keyring = Keyring(server.endpoint, (akid, secret))
    for message, opener in ((cli_message, key), (multi, second)):
        out = tmp_path / f"{message.stem}.out"
        keyring.ok("decrypt", "--key", opener, "--context", "app=reports", message, out)
        assert out.read_bytes() == src.read_bytes()
