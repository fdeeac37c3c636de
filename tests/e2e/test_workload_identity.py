"""No secret to bootstrap: an application reaches keycask with a role, through
the SDKs' own credential providers and keycask's STS endpoint.

Everything here goes through real clients: boto3 with nothing but the
standard environment variables (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE,
AWS_ENDPOINT_URL_STS / _KMS) in a process of its own, and the AWS CLI with a
profile. The identity provider is a test issuer: an RSA key made here, its
JWKS registered with ``keycask identity-providers create``, tokens signed
with PyJWT as any OIDC issuer (Kubernetes, a CI service) signs them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import Server

ISSUER_HOST = "issuer.keycask.test/realms/ci"
ISSUER = "https://" + ISSUER_HOST
AUDIENCE = "keycask"
SUBJECT = "system:serviceaccount:apps:billing"
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


@dataclass
class Issuer:
    """An OIDC issuer: its signing key and its JWKS."""

    key: rsa.RSAPrivateKey
    kid: str

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()

        def b64(n: int) -> str:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        jwk = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
               "n": b64(numbers.n), "e": b64(numbers.e)}  # fmt: skip
        return json.dumps({"keys": [jwk]})

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now, "nbf": now,
                   "exp": now + 3600, **claims}  # fmt: skip
        payload = {k: v for k, v in payload.items() if v is not None}
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return jwt.encode(payload, pem, algorithm="RS256", headers={"kid": self.kid})


def _new_issuer() -> Issuer:
    return Issuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "k1")


@dataclass
class Setup:
    server: Server
    issuer: Issuer
    account: str
    key_arn: str
    role_arn: str
    provider_arn: str


def _admin_sts(server: Server) -> Any:
    akid, secret = server.credentials()
    return boto3.client(
        "sts",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=NO_RETRIES,
    )


def _policy_file(tmp: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp / name
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture(scope="module")
def setup(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    tmp = tmp_path_factory.mktemp("wi")
    issuer = _new_issuer()
    jwks = tmp / "jwks.json"
    jwks.write_text(issuer.jwks())
    account = _admin_sts(server).get_caller_identity()["Account"]
    server.cli(
        "identity-providers", "create", "--issuer", ISSUER, "--audience", AUDIENCE,
        "--jwks", str(jwks),
    )  # fmt: skip
    provider_arn = f"arn:aws:iam::{account}:oidc-provider/{ISSUER_HOST}"
    key_arn = server.client().create_key(Description="workload identity")["KeyMetadata"]["Arn"]
    role = f"billing-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{ISSUER_HOST}:aud": AUDIENCE},
                    "StringLike": {f"{ISSUER_HOST}:sub": "system:serviceaccount:apps:*"},
                },
            }
        ],
    }
    server.cli(
        "principals", "create", role, "--role",
        "--trust-policy", _policy_file(tmp, "trust.json", trust),
    )  # fmt: skip
    use = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": key_arn}
        ],
    }
    server.cli(
        "principals", "put-policy", role, "--policy-name", "use",
        "--file", _policy_file(tmp, "use.json", use),
    )  # fmt: skip
    return Setup(server, issuer, account, key_arn, f"arn:aws:iam::{account}:role/{role}",
                 provider_arn)  # fmt: skip


def _bare_env(server: Server, tmp: Path) -> dict[str, str]:
    """An environment with no credential at all: no keys, no profile files."""
    empty = tmp / "empty-aws-config"
    empty.write_text("")
    env = server.env()
    # The AWS CLI caches assumed-role credentials under ~/.aws/cli/cache: a
    # home of the test's own, so nothing is written to (or read from) yours.
    env["HOME"] = str(tmp)
    env.update(
        {
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",  # botocore reads this one
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_STS": server.endpoint,
            "AWS_ENDPOINT_URL_KMS": server.endpoint,
        }
    )
    return env


# The application: boto3 with what the environment gives it, nothing else.
# It encrypts and decrypts, says who it is, then (argv[2] == "refresh") moves
# its own view of the clock 55 minutes on, as an application running that
# long would see it, and does it again: the SDK must fetch new credentials.
_APP = """
import datetime, json, sys
import boto3
session = boto3.Session()
kms = session.client("kms")
sts = session.client("sts")
key = sys.argv[1]
out = {}
def work():
    blob = kms.encrypt(KeyId=key, Plaintext=b"hello")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hello"
    return session.get_credentials().get_frozen_credentials().access_key
out["first_key"] = work()
out["identity"] = sts.get_caller_identity()["Arn"]
if sys.argv[2] == "refresh":
    # Both clocks the SDK reads for credentials (the refreshable wrapper's
    # and its fetcher's cache), not the one it signs with.
    import botocore.credentials
    real = botocore.credentials._local_now
    later = lambda: real() + datetime.timedelta(minutes=55)
    botocore.credentials._local_now = later
    session.get_credentials()._time_fetcher = later
    out["second_key"] = work()
print(json.dumps(out))
"""


def _audited(server: Server, operation: str) -> list[dict[str, Any]]:
    lines = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("operation") == operation]


def test_boto3_with_only_a_role_and_a_token_file_uses_kms_and_refreshes(
    setup: Setup, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(setup.issuer.token())
    env = _bare_env(setup.server, tmp_path)
    env["AWS_ROLE_ARN"] = setup.role_arn
    env["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(token_file)
    env["AWS_ROLE_SESSION_NAME"] = "billing-pod"
    before = len(_audited(setup.server, "AssumeRoleWithWebIdentity"))
    done = subprocess.run(
        [sys.executable, "-c", _APP, setup.key_arn, "refresh"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    role_name = setup.role_arn.rsplit("/", 1)[1]
    assert out["identity"] == (f"arn:aws:sts::{setup.account}:assumed-role/{role_name}/billing-pod")
    assert out["first_key"].startswith("ASIA") and out["second_key"].startswith("ASIA")
    assert out["first_key"] != out["second_key"]  # refreshed: a new session
    # The first, then one per call while the shifted clock says the session
    # is nearly over (each new session looks as short to it).
    records = _audited(setup.server, "AssumeRoleWithWebIdentity")[before:]
    assert len(records) >= 2 and {r["outcome"] for r in records} == {"success"}
    # The KMS calls are recorded under the session, not a stored key.
    encrypts = [r for r in _audited(setup.server, "Encrypt") if r["access_key_id"] in
                (out["first_key"], out["second_key"])]  # fmt: skip
    assert {r["principal"] for r in encrypts} == {out["identity"]}


def test_the_aws_cli_with_a_web_identity_profile(setup: Setup, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(setup.issuer.token(sub="system:serviceaccount:apps:cli"))
    config = tmp_path / "config"
    config.write_text(
        "[profile app]\n"
        f"role_arn = {setup.role_arn}\n"
        f"web_identity_token_file = {token_file}\n"
        "role_session_name = from-cli\n"
        "region = us-east-1\n"
        f"endpoint_url = {setup.server.endpoint}\n"
    )
    env = _bare_env(setup.server, tmp_path)
    env["AWS_CONFIG_FILE"] = str(config)
    del env["AWS_ENDPOINT_URL_STS"], env["AWS_ENDPOINT_URL_KMS"]

    def aws(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "awscli", *args, "--profile", "app", "--output", "json"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    identity = aws("sts", "get-caller-identity")
    role_name = setup.role_arn.rsplit("/", 1)[1]
    assert identity["Arn"] == f"arn:aws:sts::{setup.account}:assumed-role/{role_name}/from-cli"
    assert identity["Account"] == setup.account
    blob = aws("kms", "encrypt", "--key-id", setup.key_arn, "--plaintext", "aGk=")
    assert blob["KeyId"] == setup.key_arn


def _assume_web(setup: Setup, token: str, role_arn: str | None = None) -> Any:
    sts = boto3.client(
        "sts", endpoint_url=setup.server.endpoint, region_name="us-east-1", config=NO_RETRIES
    )
    # AssumeRoleWithWebIdentity is unsigned: botocore sends it so whatever
    # credentials it could find; none are needed.
    return sts.assume_role_with_web_identity(
        RoleArn=role_arn or setup.role_arn,
        RoleSessionName="s1",
        WebIdentityToken=token,
    )


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def _bad_tokens(setup: Setup) -> list[tuple[str, str, str]]:
    """(what, token, the STS error code) for each token that must be refused."""
    issuer = setup.issuer
    stranger = _new_issuer()
    good = issuer.token()
    header, payload, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    unsigned = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        + "." + payload + "."
    )  # fmt: skip
    now = int(time.time())
    return [
        ("unregistered issuer", issuer.token(iss="https://other.example"), "InvalidIdentityToken"),
        ("wrong audience", issuer.token(aud="someone-else"), "InvalidIdentityToken"),
        ("expired", issuer.token(exp=now - 600, iat=now - 4200, nbf=now - 4200), "ExpiredToken"),
        ("not yet valid", issuer.token(nbf=now + 3600, exp=now + 7200), "InvalidIdentityToken"),
        ("bad signature", f"{header}.{payload}.{flipped}", "InvalidIdentityToken"),
        ("signed by another key", stranger.token(), "InvalidIdentityToken"),
        ("alg none", unsigned, "InvalidIdentityToken"),
        ("not a JWT", "not-a-token", "InvalidIdentityToken"),
        # Sub and sub would be one condition key with two values.
        ("claims differing only in case", issuer.token(Sub=SUBJECT, sub="someone-else"),
         "InvalidIdentityToken"),
        ("a control character in sub", issuer.token(sub=SUBJECT + "\x01"), "InvalidIdentityToken"),
        ("trust policy does not match", issuer.token(sub="system:serviceaccount:other:x"),
         "AccessDenied"),
    ]  # fmt: skip


def test_every_bad_web_identity_is_refused_audited_and_issues_nothing(setup: Setup) -> None:
    for what, token, code in _bad_tokens(setup):
        before = len(_audited(setup.server, "AssumeRoleWithWebIdentity"))
        got, message = _error(lambda token=token: _assume_web(setup, token))
        assert got.startswith(code), (what, got, message)
        records = _audited(setup.server, "AssumeRoleWithWebIdentity")[before:]
        assert len(records) == 1 and records[0]["outcome"] != "success", what
        assert token not in json.dumps(records), what  # a bearer token is a secret


def test_a_role_that_does_not_exist_answers_as_a_refusal(setup: Setup) -> None:
    ghost = setup.role_arn.rsplit("/", 1)[0] + "/no-such-role"
    code, message = _error(lambda: _assume_web(setup, setup.issuer.token(), ghost))
    assert code == "AccessDenied"
    assert ghost in message


@dataclass
class Users:
    base: tuple[str, str]
    stranger: tuple[str, str]
    role_arn: str
    base_arn: str
    stranger_arn: str


@pytest.fixture(scope="module")
def users(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Users:
    tmp = tmp_path_factory.mktemp("assume")
    server = setup.server
    suffix = uuid.uuid4().hex[:8]

    def user(name: str) -> tuple[str, str]:
        created = json.loads(server.cli("principals", "create", name, "--json").stdout)
        return created["AccessKeyId"], created["SecretAccessKey"]

    base, stranger = user(f"dev-{suffix}"), user(f"stranger-{suffix}")
    role = f"deployer-{suffix}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{setup.account}:user/dev-{suffix}"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }
    server.cli(
        "principals", "create", role, "--role", "--max-session-duration", "7200",
        "--trust-policy", _policy_file(tmp, "trust.json", trust),
    )  # fmt: skip
    use = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
             "Resource": setup.key_arn}
        ],
    }  # fmt: skip
    server.cli(
        "principals", "put-policy", role, "--policy-name", "use",
        "--file", _policy_file(tmp, "use.json", use),
    )  # fmt: skip
    user_arn = f"arn:aws:iam::{setup.account}:user/"
    return Users(
        base,
        stranger,
        f"arn:aws:iam::{setup.account}:role/{role}",
        f"{user_arn}dev-{suffix}",
        f"{user_arn}stranger-{suffix}",
    )


def _profiles(setup: Setup, users: Users, tmp: Path) -> dict[str, str]:
    config = tmp / "config"
    credentials = tmp / "credentials"
    config.write_text(
        "[profile base]\nregion = us-east-1\n"
        f"endpoint_url = {setup.server.endpoint}\n"
        "[profile deployer]\n"
        f"role_arn = {users.role_arn}\nsource_profile = base\n"
        "role_session_name = deploy-1\nregion = us-east-1\n"
        f"endpoint_url = {setup.server.endpoint}\n"
    )
    credentials.write_text(
        f"[base]\naws_access_key_id = {users.base[0]}\naws_secret_access_key = {users.base[1]}\n"
    )
    env = setup.server.env()
    env.update(
        {
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_EC2_METADATA_DISABLED": "true",
            "HOME": str(tmp),  # the AWS CLI's credential cache stays in the test's dir
        }
    )
    return env


def test_assume_role_with_a_source_profile_in_boto3_and_the_aws_cli(
    setup: Setup, users: Users, tmp_path: Path
) -> None:
    env = _profiles(setup, users, tmp_path)
    script = (
        "import boto3, json\n"
        "s = boto3.Session(profile_name='deployer')\n"
        f"k = s.client('kms').describe_key(KeyId={setup.key_arn!r})['KeyMetadata']['Arn']\n"
        "print(json.dumps([k, s.client('sts').get_caller_identity()['Arn']]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    role_name = users.role_arn.rsplit("/", 1)[1]
    session = f"arn:aws:sts::{setup.account}:assumed-role/{role_name}/deploy-1"
    assert json.loads(done.stdout) == [setup.key_arn, session]
    cli = subprocess.run(
        [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", "deployer",
         "--output", "json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["Arn"] == session


def _sts_as(setup: Setup, key: tuple[str, str]) -> Any:
    return boto3.client(
        "sts",
        endpoint_url=setup.server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=NO_RETRIES,
    )


def _kms_with(setup: Setup, credentials: dict[str, Any]) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=setup.server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        config=NO_RETRIES,
    )


def test_the_trust_policy_decides_who_may_assume(setup: Setup, users: Users) -> None:
    code, message = _error(
        lambda: _sts_as(setup, users.stranger).assume_role(
            RoleArn=users.role_arn, RoleSessionName="xx"
        )
    )
    assert code == "AccessDenied" and users.role_arn in message
    # A web identity cannot take a role whose trust policy names users.
    code, _ = _error(lambda: _assume_web(setup, setup.issuer.token(), users.role_arn))
    assert code == "AccessDenied"
    # Nor can the user take the web identity role.
    code, _ = _error(
        lambda: _sts_as(setup, users.base).assume_role(RoleArn=setup.role_arn, RoleSessionName="xx")
    )
    assert code == "AccessDenied"


def test_durations_within_the_roles_maximum(setup: Setup, users: Users) -> None:
    sts = _sts_as(setup, users.base)
    for seconds in (900, 7200):
        got = sts.assume_role(RoleArn=users.role_arn, RoleSessionName="dd", DurationSeconds=seconds)
        left = got["Credentials"]["Expiration"].timestamp() - time.time()
        assert seconds - 60 < left <= seconds + 5
    code, message = _error(
        lambda: sts.assume_role(RoleArn=users.role_arn, RoleSessionName="dd", DurationSeconds=7201)
    )
    assert code == "ValidationError" and "MaxSessionDuration" in message


def test_a_session_policy_narrows_the_session(setup: Setup, users: Users) -> None:
    sts = _sts_as(setup, users.base)
    narrow = json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*"}]}
    )  # fmt: skip
    credentials = sts.assume_role(RoleArn=users.role_arn, RoleSessionName="narrow", Policy=narrow)[
        "Credentials"
    ]
    kms = _kms_with(setup, credentials)
    kms.describe_key(KeyId=setup.key_arn)  # the role and the session policy both allow
    code, _ = _error(lambda: kms.encrypt(KeyId=setup.key_arn, Plaintext=b"x"))
    assert code == "AccessDeniedException"  # the role allows it, the session policy does not
    full = _kms_with(
        setup, sts.assume_role(RoleArn=users.role_arn, RoleSessionName="full")["Credentials"]
    )
    full.encrypt(KeyId=setup.key_arn, Plaintext=b"x")


def test_an_altered_session_token_is_refused(setup: Setup, users: Users) -> None:
    """Expiry itself is tested through the pipeline (tests/unit/test_session_callers.py):
    a session's clock is the wall clock, which an end-to-end test cannot move."""
    sts = _sts_as(setup, users.base)
    credentials = sts.assume_role(
        RoleArn=users.role_arn, RoleSessionName="short", DurationSeconds=900
    )["Credentials"]
    kms = _kms_with(setup, credentials)
    kms.describe_key(KeyId=setup.key_arn)
    # A token that is not this session's, or altered, is refused.
    forged = dict(credentials, SessionToken=credentials["SessionToken"][:-4] + "AAAA")
    code, _ = _error(lambda: _kms_with(setup, forged).describe_key(KeyId=setup.key_arn))
    assert code in ("UnrecognizedClientException", "InvalidSignatureException")
    kms.describe_key(KeyId=setup.key_arn)  # the real one still works


def test_deleting_the_role_revokes_its_sessions(setup: Setup, tmp_path: Path) -> None:
    server = setup.server
    suffix = uuid.uuid4().hex[:8]
    created = json.loads(server.cli("principals", "create", f"u-{suffix}", "--json").stdout)
    key = (created["AccessKeyId"], created["SecretAccessKey"])
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{setup.account}:user/u-{suffix}"}}]}  # fmt: skip
    path = _policy_file(tmp_path, "trust.json", trust)
    server.cli("principals", "create", f"r-{suffix}", "--role", "--trust-policy", path)
    role_arn = f"arn:aws:iam::{setup.account}:role/r-{suffix}"
    credentials = _sts_as(setup, key).assume_role(RoleArn=role_arn, RoleSessionName="s1")[
        "Credentials"
    ]
    session = boto3.client(
        "sts", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"], config=NO_RETRIES,
    )  # fmt: skip
    assert session.get_caller_identity()["Arn"].endswith(f"assumed-role/r-{suffix}/s1")
    server.cli("principals", "delete", f"r-{suffix}")
    # Created again under the same name: another role, the old sessions stay dead.
    server.cli("principals", "create", f"r-{suffix}", "--role", "--trust-policy", path)
    code, _ = _error(session.get_caller_identity)
    assert code == "InvalidClientTokenId"


def test_external_id_and_session_tags_as_aws_defines_them(setup: Setup, tmp_path: Path) -> None:
    """A trust policy may demand an ExternalId; session tags need
    sts:TagSession, become aws:PrincipalTag/* of the session (over the
    role's own tags) and can be demanded by aws:RequestTag/*."""
    server = setup.server
    suffix = uuid.uuid4().hex[:8]
    created = json.loads(server.cli("principals", "create", f"p-{suffix}", "--json").stdout)
    key = (created["AccessKeyId"], created["SecretAccessKey"])
    me = f"arn:aws:iam::{setup.account}:user/p-{suffix}"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": me}, "Action": "sts:AssumeRole",
         "Condition": {"StringEquals": {"sts:ExternalId": "ext-42"}}},
        {"Effect": "Allow", "Principal": {"AWS": me}, "Action": "sts:TagSession",
         "Condition": {"StringEquals": {"aws:RequestTag/team": ["blue", "green"]}}},
    ]}  # fmt: skip
    server.cli(
        "principals", "create", f"t-{suffix}", "--role", "--tag", "team=red",
        "--trust-policy", _policy_file(tmp_path, "trust.json", trust),
    )  # fmt: skip
    # What the session may do depends on its team tag.
    use = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": setup.key_arn,
         "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}}}]}  # fmt: skip
    server.cli(
        "principals", "put-policy", f"t-{suffix}", "--policy-name", "use",
        "--file", _policy_file(tmp_path, "use.json", use),
    )  # fmt: skip
    role_arn = f"arn:aws:iam::{setup.account}:role/t-{suffix}"
    sts = _sts_as(setup, key)
    for external in ({}, {"ExternalId": "ext-41"}):
        code, _ = _error(
            lambda e=external: sts.assume_role(RoleArn=role_arn, RoleSessionName="ext", **e)
        )
        assert code == "AccessDenied", external
    # No tag: the role's own (team=red) decides, and it does not allow.
    plain = sts.assume_role(RoleArn=role_arn, RoleSessionName="ext", ExternalId="ext-42")
    code, _ = _error(
        lambda: _kms_with(setup, plain["Credentials"]).describe_key(KeyId=setup.key_arn)
    )
    assert code == "AccessDeniedException"
    # A tag the trust policy does not accept: refused (sts:TagSession).
    code, _ = _error(
        lambda: sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName="ext",
            ExternalId="ext-42",
            Tags=[{"Key": "team", "Value": "red"}],
        )
    )
    assert code == "AccessDenied"
    tagged = sts.assume_role(
        RoleArn=role_arn,
        RoleSessionName="ext",
        ExternalId="ext-42",
        Tags=[{"Key": "team", "Value": "blue"}],
    )
    _kms_with(setup, tagged["Credentials"]).describe_key(KeyId=setup.key_arn)


def test_policy_lint_flags_a_role_any_workload_may_assume(setup: Setup, tmp_path: Path) -> None:
    server = setup.server
    name = f"loose-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": setup.provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER_HOST}:aud": AUDIENCE}}}]}  # fmt: skip
    server.cli(
        "principals", "create", name, "--role",
        "--trust-policy", _policy_file(tmp_path, "trust.json", trust),
    )  # fmt: skip
    linted = server.cli("policy", "lint", "--json", check=False)
    findings = json.loads(linted.stdout)["Findings"]
    flagged = {f["where"] for f in findings if f["rule"] == "web-identity-any-subject"}
    assert flagged == {f"role arn:aws:iam::{setup.account}:role/{name} trust policy"}
    assert linted.returncode == 1  # a high finding fails the check
    # Anyone with such a token becomes the role: what the rule warns of.
    other = setup.issuer.token(sub="system:serviceaccount:kube-system:anything")
    role_arn = f"arn:aws:iam::{setup.account}:role/{name}"
    assert _assume_web(setup, other, role_arn)["AssumedRoleUser"]["Arn"].endswith(f"/{name}/s1")


def test_a_chained_session_brings_its_tags_before_the_next_trust_policy(
    setup: Setup, tmp_path: Path
) -> None:
    """Role chaining: the next role's trust policy must allow sts:TagSession
    for tags the session only inherits, as AWS asks."""
    server = setup.server
    suffix = uuid.uuid4().hex[:8]
    created = json.loads(server.cli("principals", "create", f"c-{suffix}", "--json").stdout)
    key = (created["AccessKeyId"], created["SecretAccessKey"])
    first, second = f"first-{suffix}", f"second-{suffix}"
    first_arn = f"arn:aws:iam::{setup.account}:role/{first}"
    second_arn = f"arn:aws:iam::{setup.account}:role/{second}"
    trust_first = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Principal": {"AWS": f"arn:aws:iam::{setup.account}:user/c-{suffix}"}}]}  # fmt: skip
    trust_second = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": first_arn}}]}  # fmt: skip
    chain = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": second_arn}]}  # fmt: skip
    for name, trust in ((first, trust_first), (second, trust_second)):
        server.cli(
            "principals", "create", name, "--role",
            "--trust-policy", _policy_file(tmp_path, f"{name}.json", trust),
        )  # fmt: skip
    server.cli(
        "principals", "put-policy", first, "--policy-name", "chain",
        "--file", _policy_file(tmp_path, "chain.json", chain),
    )  # fmt: skip
    user = _sts_as(setup, key)

    def as_session(credentials: dict[str, Any]) -> Any:
        return boto3.client(
            "sts", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], config=NO_RETRIES,
        )  # fmt: skip

    plain = user.assume_role(RoleArn=first_arn, RoleSessionName="plain")["Credentials"]
    as_session(plain).assume_role(RoleArn=second_arn, RoleSessionName="next")
    tagged = user.assume_role(
        RoleArn=first_arn, RoleSessionName="tagged",
        Tags=[{"Key": "team", "Value": "blue"}], TransitiveTagKeys=["team"],
    )["Credentials"]  # fmt: skip
    code, message = _error(
        lambda: as_session(tagged).assume_role(RoleArn=second_arn, RoleSessionName="next")
    )
    assert code == "AccessDenied" and "sts:TagSession" in message


def test_a_trust_policy_keeps_naming_the_principal_it_named(setup: Setup, tmp_path: Path) -> None:
    """alice is named, deleted, and someone else is created as alice: the
    newcomer is not who the trust policy trusted, as with key policies."""
    server = setup.server
    suffix = uuid.uuid4().hex[:8]
    alice = f"alice-{suffix}"

    def create_user() -> tuple[str, str]:
        created = json.loads(server.cli("principals", "create", alice, "--json").stdout)
        return created["AccessKeyId"], created["SecretAccessKey"]

    first = create_user()
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{setup.account}:user/{alice}"}}]}  # fmt: skip
    server.cli(
        "principals", "create", f"vault-{suffix}", "--role",
        "--trust-policy", _policy_file(tmp_path, "trust.json", trust),
    )  # fmt: skip
    role_arn = f"arn:aws:iam::{setup.account}:role/vault-{suffix}"
    _sts_as(setup, first).assume_role(RoleArn=role_arn, RoleSessionName="ok")
    server.cli("principals", "delete", alice)
    impostor = create_user()
    code, _ = _error(
        lambda: _sts_as(setup, impostor).assume_role(RoleArn=role_arn, RoleSessionName="no")
    )
    assert code == "AccessDenied"
    # Putting the trust policy again names the principal that exists now.
    server.cli(
        "principals", "update-role", f"vault-{suffix}",
        "--trust-policy", _policy_file(tmp_path, "trust.json", trust),
    )  # fmt: skip
    _sts_as(setup, impostor).assume_role(RoleArn=role_arn, RoleSessionName="ok")


def test_policy_simulate_decides_assuming_a_role_as_sts_does(setup: Setup, users: Users) -> None:
    server = setup.server

    def simulate(arn: str, *extra: str) -> tuple[int, dict[str, Any]]:
        done = server.cli(
            "policy", "simulate", "--principal", arn,
            "--role", users.role_arn, "--json", *extra, check=False,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    code, allowed = simulate(users.base_arn, "--action", "sts:AssumeRole")
    assert (code, allowed["Decision"], allowed["RoleArn"]) == (0, "allow", users.role_arn)
    code, denied = simulate(users.stranger_arn, "--action", "sts:AssumeRole")
    assert (code, denied["Decision"]) == (1, "deny")
    # What the server answers, for the same two.
    _sts_as(setup, users.base).assume_role(RoleArn=users.role_arn, RoleSessionName="sim")
    code, _ = _error(
        lambda: _sts_as(setup, users.stranger).assume_role(
            RoleArn=users.role_arn, RoleSessionName="sim"
        )
    )
    assert code == "AccessDenied"
    wrong = server.cli(
        "policy", "simulate", "--principal", users.base_arn,
        "--action", "kms:Decrypt", "--role", users.role_arn, check=False,
    )  # fmt: skip
    assert wrong.returncode == 2 and "--role takes an sts: action" in wrong.stderr
