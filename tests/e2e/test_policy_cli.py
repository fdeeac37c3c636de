"""``keycask policy simulate | who-can | lint | reset`` against a real
server's data directory: keys made through boto3, principals through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from keycask.keys.model import default_key_policy

REPO = Path(__file__).resolve().parents[2]
# The policy commands alone, exactly as `keycask policy ...` runs them.
POLICY_MAIN = "import sys; from keycask.cli.policy import main; sys.exit(main(sys.argv[1:]))"


def policy(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", POLICY_MAIN, "policy", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        env=server.env(),
        check=False,
        timeout=60,
    )


def policy_json(server: Any, *args: str) -> Any:
    result = policy(server, *args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def simulate(server: Any, principal: str, action: str, key: str, *extra: str) -> Any:
    return policy(
        server, "simulate", "--principal", principal, "--action", action, "--key", key, *extra
    )


def make_principal(server: Any, name: str) -> dict[str, str]:
    created: dict[str, str] = json.loads(server.cli("principals", "create", name, "--json").stdout)
    return created


def admin_arn(key: dict[str, Any]) -> str:
    return f"arn:aws:iam::{key['AWSAccountId']}:user/admin"


def test_simulate_and_who_can(fresh_server: Any) -> None:
    server = fresh_server
    kms = server.client()
    key = kms.create_key(Description="policy tools")["KeyMetadata"]
    app = make_principal(server, "app")

    allowed = policy(
        server,
        "simulate",
        "--principal",
        admin_arn(key),
        "--action",
        "kms:Decrypt",
        "--key",
        key["KeyId"],
        "--context",
        "tenant=acme",
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ALLOW: ")
    assert (
        "decided by: identity policy keycask administrator statement AdministratorAccess "
        "(key policy statement Enable IAM User Permissions)"
    ) in allowed.stdout

    denied = policy_json(
        server,
        "simulate",
        "--principal",
        app["Arn"],
        "--action",
        "Decrypt",
        "--key",
        key["Arn"],
    )
    assert denied["Decision"] == "deny"
    assert denied["DecidedBy"] == "implicit deny"
    assert denied["Action"] == "kms:Decrypt"
    assert f"User: {app['Arn']} is not authorized to perform: kms:Decrypt" in denied["Message"]

    # Like grep, the exit code answers: 0 allowed, 1 denied, 2 could not tell.
    assert simulate(server, app["Arn"], "kms:Decrypt", key["KeyId"]).returncode == 1

    # The simulation agrees with the server.
    app_kms = server.client((app["AccessKeyId"], app["SecretAccessKey"]))
    with pytest.raises(ClientError) as caught:
        app_kms.describe_key(KeyId=key["KeyId"])
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"

    kms.create_alias(AliasName="alias/tools", TargetKeyId=key["KeyId"])
    who = policy_json(server, "who-can", "--key", "alias/tools", "--action", "kms:Decrypt")
    assert who["KeyArn"] == key["Arn"]
    assert {
        "principal": admin_arn(key),
        "kind": "principal",
        "via": "identity policy keycask administrator statement AdministratorAccess "
        "(key policy statement Enable IAM User Permissions)",
        "conditions": [],
    } in who["Allowed"]
    assert all(row["principal"] != app["Arn"] for row in who["Allowed"])
    text = policy(server, "who-can", "--key", key["KeyId"], "--action", "kms:Decrypt")
    assert text.returncode == 0
    assert f"  {admin_arn(key)}: always (via identity policy" in text.stdout

    # A grant: listed with its constraints, and simulate follows it.
    grant_id = kms.create_grant(
        KeyId=key["KeyId"],
        GranteePrincipal=app["Arn"],
        Operations=["Decrypt"],
        Constraints={"EncryptionContextSubset": {"tenant": "acme"}},
    )["GrantId"]
    who = policy_json(server, "who-can", "--key", key["KeyId"], "--action", "kms:Decrypt")
    assert {
        "principal": app["Arn"],
        "kind": "grant",
        "via": f"grant {grant_id}",
        "conditions": ['encryption context includes {"tenant": "acme"}'],
    } in who["Allowed"]
    via_grant = json.loads(
        simulate(
            server, app["Arn"], "kms:Decrypt", key["KeyId"], "--context", "tenant=acme", "--json"
        ).stdout
    )
    assert (via_grant["Decision"], via_grant["DecidedBy"]) == ("allow", f"grant {grant_id}")
    other = json.loads(
        simulate(
            server, app["Arn"], "kms:Decrypt", key["KeyId"], "--context", "tenant=globex", "--json"
        ).stdout
    )
    assert other["Decision"] == "deny"

    ghost = "arn:aws:iam::000000000000:user/ghost"
    unknown = simulate(server, ghost, "kms:Decrypt", key["KeyId"])
    assert unknown.returncode == 2
    assert "no principal" in unknown.stderr


def test_lint_flags_a_public_key_policy(fresh_server: Any) -> None:
    server = fresh_server
    kms = server.client()
    clean = kms.create_key(Description="default policy")["KeyMetadata"]
    result = policy(server, "lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s) in 1 key policies" in result.stdout

    public = kms.create_key(Description="public")["KeyMetadata"]
    document = json.loads(default_key_policy(public["AWSAccountId"]))
    document["Statement"].append(
        {
            "Sid": "EveryoneMayDecrypt",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "kms:Decrypt",
            "Resource": "*",
        }
    )
    kms.put_key_policy(KeyId=public["KeyId"], PolicyName="default", Policy=json.dumps(document))

    result = policy(server, "lint")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"HIGH   public-principal: key {public['Arn']} statement EveryoneMayDecrypt"
        in result.stdout
    )
    report = policy_json(server, "lint")
    assert [(f["where"], f["rule"], f["severity"]) for f in report["Findings"]] == [
        (f"key {public['Arn']}", "public-principal", "high")
    ]
    assert all(clean["Arn"] not in f["where"] for f in report["Findings"])


def test_lint_file_exit_codes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", POLICY_MAIN, "policy", "lint", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    example = REPO / "docs" / "examples" / "tenant-data.key-policy.json"
    assert (
        run("--file", str(example), "--tag", "multi-tenant=true", "--fail-on", "low").returncode
        == 0
    )
    broad = tmp_path / "broad.json"
    broad.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::111122223333:user/app"},
                        "Action": "kms:Decrypt",
                        "Resource": "*",
                    }
                ],
            }
        )
    )
    # Nobody may change that policy: lockout, high.
    locked = run("--file", str(broad))
    assert locked.returncode == 1
    assert "HIGH   lockout:" in locked.stdout
    medium = tmp_path / "medium.json"
    doc = json.loads(broad.read_text())
    doc["Statement"][0]["Action"] = "kms:*"
    doc["Statement"][0]["Principal"]["AWS"] = [
        "arn:aws:iam::111122223333:root",
        "arn:aws:iam::111122223333:user/app",
    ]
    medium.write_text(json.dumps(doc))
    assert run("--file", str(medium)).returncode == 0
    flagged = run("--file", str(medium), "--fail-on", "medium")
    assert flagged.returncode == 1
    assert "kms-star-to-non-admin" in flagged.stdout
    malformed = tmp_path / "bad.json"
    malformed.write_text('{"Statement": []}')
    result = run("--file", str(malformed))
    assert result.returncode == 2
    assert "Statement is an empty list" in result.stderr


def _audit_lines(server: Any, segment: str) -> list[dict[str, Any]]:
    path = Path(server.data_dir) / "audit" / f"{segment}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reset_recovers_a_locked_out_key(fresh_server: Any) -> None:
    server = fresh_server
    kms = server.client()
    key = kms.create_key(Description="about to be locked")["KeyMetadata"]
    account = key["AWSAccountId"]
    lockout = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyNobody",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:user/nobody"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    with pytest.raises(ClientError) as refused:
        kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(lockout))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    kms.put_key_policy(
        KeyId=key["KeyId"],
        PolicyName="default",
        Policy=json.dumps(lockout),
        BypassPolicyLockoutSafetyCheck=True,
    )
    with pytest.raises(ClientError) as denied:
        kms.describe_key(KeyId=key["KeyId"])
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    # The tools see it too: the admin is denied, and nobody who exists can
    # change the policy.
    simulated = json.loads(
        simulate(server, admin_arn(key), "kms:PutKeyPolicy", key["KeyId"], "--json").stdout
    )
    assert simulated["Decision"] == "deny"
    report = policy_json(server, "lint")
    rules = {(f["where"], f["rule"]) for f in report["Findings"]}
    assert (f"key {key['Arn']}", "lockout") in rules
    assert (f"key {key['Arn']}", "kms-star-to-non-admin") in rules

    reset = policy(server, "reset", key["Arn"])
    assert reset.returncode == 0, reset.stderr
    assert f"reset the key policy of {key['Arn']} to the default (audited)" in reset.stdout
    # The running server sees the reset at its next request: no restart.
    assert reset.stderr == "", reset.stderr
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]
    stored = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    assert stored == default_key_policy(account)

    records = [r for r in _audit_lines(server, "cli") if r["operation"] == "keycask:ResetKeyPolicy"]
    assert len(records) == 1
    (record,) = records
    assert record["key_arn"] == key["Arn"]
    assert record["principal"] == "local operator"
    assert record["outcome"] == "success"
    assert record["decided_by"] == "local access to the data directory"
    verified = server.cli("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Resetting a default policy again changes nothing and records nothing.
    again = policy_json(server, "reset", key["KeyId"])
    assert again == {"KeyArn": key["Arn"], "Changed": False}
    assert (
        len([r for r in _audit_lines(server, "cli") if r["operation"] == "keycask:ResetKeyPolicy"])
        == 1
    )


def test_tenant_isolation_and_identity_policies(fresh_server: Any, tmp_path: Path) -> None:
    """The docs' multi-tenant key policy on a real key: simulate reads the
    principals' tags from the store; lint reads their identity policies."""
    server = fresh_server
    kms = server.client()
    key = kms.create_key(
        Description="tenant data", Tags=[{"TagKey": "multi-tenant", "TagValue": "true"}]
    )["KeyMetadata"]
    account = key["AWSAccountId"]
    example = (REPO / "docs" / "examples" / "tenant-data.key-policy.json").read_text()
    # The example's key administrator is the dev admin here.
    document = example.replace("111122223333", account).replace("user/key-admin", "user/admin")
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=document)
    acme = json.loads(
        server.cli(
            "principals", "create", "tenant-service", "--tag", "tenant=acme", "--json"
        ).stdout
    )

    for tenant, decision in (("acme", "allow"), ("globex", "deny")):
        answer = json.loads(
            simulate(
                server,
                acme["Arn"],
                "kms:Decrypt",
                key["KeyId"],
                "--context",
                f"tenant={tenant}",
                "--json",
            ).stdout
        )
        assert answer["Decision"] == decision, answer
    who = policy_json(server, "who-can", "--key", key["KeyId"], "--action", "kms:Decrypt")
    assert who["Allowed"] == [
        {
            "principal": acme["Arn"],
            "kind": "principal",
            "via": "key policy statement DecryptOnlyOwnTenant",
            "conditions": ['kms:EncryptionContext:tenant = ${aws:PrincipalTag/tenant} (= "acme")'],
        }
    ]
    # The simulation agrees with the server: neither the tenant's service
    # nor the key administrator may encrypt.
    client = server.client((acme["AccessKeyId"], acme["SecretAccessKey"]))
    for arn, caller in ((acme["Arn"], client), (f"arn:aws:iam::{account}:user/admin", kms)):
        answer = json.loads(simulate(server, arn, "kms:Encrypt", key["KeyId"], "--json").stdout)
        assert answer["Decision"] == "deny"
        with pytest.raises(ClientError) as denied:
            caller.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "acme"})
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    assert policy(server, "lint", "--fail-on", "low").returncode == 0
    broad = tmp_path / "broad.json"
    broad.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
            }
        )
    )
    attach = ("put-policy", "tenant-service", "--policy-name", "everything", "--file", str(broad))
    server.cli("principals", *attach)
    report = policy_json(server, "lint")
    assert [(f["where"], f["rule"], f["severity"]) for f in report["Findings"]] == [
        (f"principal {acme['Arn']} policy everything", "kms-star-to-non-admin", "medium")
    ]
    assert policy(server, "lint").returncode == 0  # medium is below the default --fail-on
    assert policy(server, "lint", "--fail-on", "medium").returncode == 1
