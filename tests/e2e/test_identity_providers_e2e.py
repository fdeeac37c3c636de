"""OpenID Connect identity providers, managed through the running server
(``KeycaskAdmin.<Op>Identity Provider``) by the ``keycask
identity-providers`` CLI and by signed calls: registered with a JWKS file
or a JWKS URL the server fetches, listed, shown, deleted; authorized by
identity policies in the caller's own account; audited; malformed requests
refused before anything happens."""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawResponse, send, sign

from oidc_tokens import Signer, jwks, jwks_server

ACCOUNT = "000000000000"


def _unique_issuer() -> str:
    return f"https://idp-{uuid.uuid4().hex[:8]}.example.com/realms/ci"


def _admin(server: Any, creds: tuple[str, str], op: str, body: Any) -> RawResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = sign(server.endpoint, creds, target=f"KeycaskAdmin.{op}", body=data)
    return send(server.endpoint, request)


def _records(server: Any) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((Path(server.data_dir) / "audit").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


class Cli:
    """``keycask identity-providers ...`` against one server, counting the
    admin operations it asks for."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.calls: Counter[str] = Counter()

    def run(self, op: str, *args: str, ok: bool = True) -> str:
        proc = self.server.cli("identity-providers", *args, check=False)
        self.calls[op] += 1
        if ok:
            assert proc.returncode == 0, proc.stderr
            return str(proc.stdout)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert proc.stderr.startswith("keycask: "), proc.stderr
        return str(proc.stderr)

    def json(self, op: str, *args: str) -> Any:
        return json.loads(self.run(op, *args, "--json"))


def test_identity_providers_cli(fresh_server: Any, tmp_path: Path) -> None:
    server = fresh_server
    cli = Cli(server)
    signer = Signer("RS256", kid="ci-1")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks(signer))

    # From a file: the JWKS text is sent and kept as it is.
    issuer = "https://idp.example.com/realms/ci"
    created = cli.json(
        "CreateIdentityProvider", "create", "--issuer", issuer,
        "--audience", "ci", "--audience", "deploy", "--jwks", str(jwks_file),
    )  # fmt: skip
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/idp.example.com/realms/ci"
    assert created == {"Arn": arn}
    shown = cli.json("GetIdentityProvider", "show", arn)
    assert (shown["Arn"], shown["Url"], shown["Audiences"]) == (arn, issuer, ["ci", "deploy"])
    assert shown["Jwks"] == jwks_file.read_text() and "JwksUrl" not in shown
    assert shown["CreateDate"].endswith("Z")
    text = cli.run("GetIdentityProvider", "show", arn)
    assert f"Url:        {issuer}" in text and "ci, deploy" in text
    assert "AlreadyExistsException" in cli.run(
        "CreateIdentityProvider", "create", "--issuer", issuer,
        "--audience", "x", "--jwks", str(jwks_file), ok=False,
    )  # fmt: skip

    # From a URL: fetched by the server, once, and kept.
    other = Signer("EdDSA", kid="ed")
    with jwks_server(jwks(other)) as idp:
        url_issuer = "https://accounts.example.org"
        out = cli.run(
            "CreateIdentityProvider", "create", "--issuer", url_issuer,
            "--audience", "sts.amazonaws.com", "--jwks", idp.url,
        )  # fmt: skip
        url_arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/accounts.example.org"
        assert out.strip() == url_arn
        assert idp.fetches == 1
        served = idp.body
        closed = idp.url
    from_url = cli.json("GetIdentityProvider", "show", url_arn)
    assert (from_url["JwksUrl"], from_url["Jwks"]) == (closed, served)
    # The IdP gone: registering from it fails, and registers nothing.
    failed = cli.run(
        "CreateIdentityProvider", "create", "--issuer", "https://gone.example.org",
        "--audience", "a", "--jwks", closed, ok=False,
    )  # fmt: skip
    assert "IDPCommunicationError" in failed and "could not be fetched" in failed

    listed = cli.json("ListIdentityProviders", "list")
    assert {p["Arn"]: p["Audiences"] for p in listed} == {
        arn: ["ci", "deploy"],
        url_arn: ["sts.amazonaws.com"],
    }
    assert listed == sorted(listed, key=lambda p: p["Arn"])
    assert url_arn in cli.run("ListIdentityProviders", "list")

    cli.run("DeleteIdentityProvider", "delete", arn)
    assert [p["Arn"] for p in cli.json("ListIdentityProviders", "list")] == [url_arn]
    assert "NotFoundException" in cli.run("GetIdentityProvider", "show", arn, ok=False)
    assert "NotFoundException" in cli.run("DeleteIdentityProvider", "delete", arn, ok=False)

    # Every call is audited, by the administrator who made it.
    records = [
        r for r in _records(server) if str(r["operation"]).endswith("IdentityProvider")
        or str(r["operation"]).endswith("IdentityProviders")
    ]  # fmt: skip
    seen = Counter(r["operation"].removeprefix("KeycaskAdmin.") for r in records)
    assert seen == cli.calls
    assert all(r["principal"] == f"arn:aws:iam::{ACCOUNT}:user/admin" for r in records)
    made = [r for r in records if r["operation"] == "KeycaskAdmin.CreateIdentityProvider"]
    details = [r["detail"] or "" for r in made if r["outcome"] == "success"]
    assert any(arn in d and "ci, deploy" in d and "given" in d for d in details), details
    assert any(f"fetched from {closed}" in d for d in details), details
    deleted = [r for r in records if r["operation"] == "KeycaskAdmin.DeleteIdentityProvider"]
    assert any(f"deleted {arn}" == r["detail"] for r in deleted)
    # The JWKS is public, but it is not what an audit record is for.
    assert all(signer.jwk()["n"] not in json.dumps(r) for r in records)


EVERYTHING_ON_IDPS = {
    "Version": "2012-10-17",
    "Statement": {
        "Effect": "Allow",
        "Action": [
            "keycask:CreateIdentityProvider",
            "keycask:GetIdentityProvider",
            "keycask:DeleteIdentityProvider",
        ],
        "Resource": "arn:aws:iam::000000000000:oidc-provider/allowed.example.com/*",
    },
}


def test_identity_providers_are_authorized_by_identity_policies(server: Any) -> None:
    admin = server.credentials()
    name = f"idp-delegate-{uuid.uuid4().hex[:8]}"
    made = _admin(server, admin, "CreatePrincipal", {"Name": name}).json()
    delegate = (made["AccessKeyId"], made["SecretAccessKey"])
    keys = jwks(Signer("ES256"))
    allowed_url = f"https://allowed.example.com/{uuid.uuid4().hex[:8]}"
    body = {"Url": allowed_url, "Audiences": ["a"], "Jwks": keys}
    # No policy: refused, and nothing was made.
    answer = _admin(server, delegate, "CreateIdentityProvider", body)
    answer.assert_aws_error("AccessDeniedException")
    assert "keycask:CreateIdentityProvider" in answer.message
    _admin(server, delegate, "ListIdentityProviders", {}).assert_aws_error("AccessDeniedException")
    policy = {"Name": name, "PolicyName": "idps", "PolicyDocument": json.dumps(EVERYTHING_ON_IDPS)}
    assert _admin(server, admin, "PutPrincipalPolicy", policy).status == 200
    # Allowed on the ARNs its policy names, and nowhere else.
    created = _admin(server, delegate, "CreateIdentityProvider", body)
    assert created.status == 200, created.body
    arn = created.json()["Arn"]
    assert _admin(server, delegate, "GetIdentityProvider", {"Arn": arn}).json()["Url"] == (
        allowed_url
    )
    elsewhere = {"Url": _unique_issuer(), "Audiences": ["a"], "Jwks": keys}
    _admin(server, delegate, "CreateIdentityProvider", elsewhere).assert_aws_error(
        "AccessDeniedException"
    )
    _admin(server, delegate, "ListIdentityProviders", {}).assert_aws_error("AccessDeniedException")
    # A provider that does not exist, asked about by someone who may not
    # see it, is refused the same as one that does (no probing).
    hidden = f"arn:aws:iam::{ACCOUNT}:oidc-provider/nothing.example.com"
    _admin(server, delegate, "GetIdentityProvider", {"Arn": hidden}).assert_aws_error(
        "AccessDeniedException"
    )
    # Another account: refused even to an administrator.
    for op, other in (
        ("CreateIdentityProvider", {**elsewhere, "Account": "999988887777"}),
        ("ListIdentityProviders", {"Account": "999988887777"}),
        ("GetIdentityProvider", {"Arn": "arn:aws:iam::999988887777:oidc-provider/x.example"}),
    ):
        refused = _admin(server, admin, op, other)
        refused.assert_aws_error("AccessDeniedException")
        assert "another account" in refused.message
    assert _admin(server, delegate, "DeleteIdentityProvider", {"Arn": arn}).status == 200
    _admin(server, admin, "GetIdentityProvider", {"Arn": arn}).assert_aws_error("NotFoundException")


def test_malformed_identity_provider_requests(server: Any) -> None:
    creds = server.credentials()
    keys = jwks(Signer("RS256"))
    url = _unique_issuer()
    for body in (
        {},
        {"Url": url},
        {"Url": url, "Audiences": ["a"]},
        {"Url": url, "Audiences": ["a"], "Jwks": keys, "JwksUrl": "https://x.example/jwks"},
        {"Url": url, "Audiences": "a", "Jwks": keys},
        {"Url": url, "Audiences": [], "Jwks": keys},
        {"Url": url, "Audiences": [1], "Jwks": keys},
        {"Url": url, "Audiences": ["a"], "Jwks": {"keys": []}},
        {"Url": url, "Audiences": ["a"], "Jwks": "{}"},
        {"Url": url, "Audiences": ["a"], "Jwks": keys, "Surprise": 1},
        {"Url": url.replace("https", "http"), "Audiences": ["a"], "Jwks": keys},
        {"Url": url + ":443", "Audiences": ["a"], "Jwks": keys},
        {"Url": url, "Audiences": ["a"], "JwksUrl": "http://idp.example.com/jwks"},
        {"Url": url, "Audiences": ["a"], "JwksUrl": "file:///etc/passwd"},
        {"Url": url, "Audiences": ["a"], "Jwks": keys, "Account": "12"},
    ):
        _admin(server, creds, "CreateIdentityProvider", body).assert_aws_error(
            "ValidationException"
        )
    for arn in (
        5,
        "",
        "not an arn",
        url,
        "arn:aws:iam::000000000000:user/admin",
        "arn:aws:iam::0000:oidc-provider/idp.example.com",
        "arn:aws:iam::000000000000:oidc-provider/idp.example.com:443",
        "arn:aws-cn:iam::000000000000:oidc-provider/idp.example.com",
        f"arn:aws:iam::000000000000:oidc-provider/{'x' * 2049}",
    ):
        for op in ("GetIdentityProvider", "DeleteIdentityProvider"):
            _admin(server, creds, op, {"Arn": arn}).assert_aws_error("ValidationException")
    _admin(server, creds, "GetIdentityProvider", {}).assert_aws_error("ValidationException")
    absent = "arn:aws:iam::000000000000:oidc-provider/absent.example.com"
    _admin(server, creds, "DeleteIdentityProvider", {"Arn": absent}).assert_aws_error(
        "NotFoundException"
    )
    # Nothing was created by any of it.
    listed = _admin(server, creds, "ListIdentityProviders", {}).json()["IdentityProviders"]
    assert url not in {p["Url"] for p in listed}
