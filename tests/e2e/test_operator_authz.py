"""Who may run the server, through a real --dev server: operator calls and
the dev clock belong to the operator token and the operator account's
administrators, never to another account's administrator or to an identity
policy; failed operator authentications are limited per address without
throttling a valid caller; RetireGrant by the issuing account's principals
is evaluated with the key policy like every other action.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawResponse, send, sign

from conftest import DevCallError, Server, dev_call

OTHER = "111111111111"


def _signed(server: Server, creds: tuple[str, str], target: str, body: Any) -> RawResponse:
    request = sign(server.endpoint, creds, target=target, body=json.dumps(body).encode())
    return send(server.endpoint, request)


def _unsigned(server: Server, target: str, headers: dict[str, str]) -> RawResponse:
    request = sign(server.endpoint, ("AKKCAAAAAAAAAAAAAAAA", "x"), target=target, body=b"{}")
    # Drop the signature: the request carries only what the test gives.
    bare = request.without_header("Authorization")
    for name, value in headers.items():
        bare = bare.with_header(name, value)
    return send(server.endpoint, bare)


def _principal(
    server: Server, creds: tuple[str, str], name: str, policy: dict[str, Any] | None = None
) -> tuple[str, tuple[str, str]]:
    made = _signed(server, creds, "KeycaskAdmin.CreatePrincipal", {"Name": name})
    assert made.status == 200, made.body
    doc = made.json()
    if policy is not None:
        put = _signed(
            server,
            creds,
            "KeycaskAdmin.PutPrincipalPolicy",
            {"Name": name, "PolicyName": "p", "PolicyDocument": json.dumps(policy)},
        )
        assert put.status == 200, put.body
    return doc["Arn"], (doc["AccessKeyId"], doc["SecretAccessKey"])


def _other_account_admin(server: Server) -> tuple[str, str]:
    made = json.loads(
        server.cli(
            "principals", "create", "tenant-boss", "--admin", "--account", OTHER,
            "--offline", "--json",
        ).stdout
    )  # fmt: skip
    return made["AccessKeyId"], made["SecretAccessKey"]


def test_another_accounts_admin_cannot_run_the_server(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    kms.create_key(Description="the dev account's key")
    boss = _other_account_admin(server)
    for op in ("Status", "Seal", "Rotate"):
        answer = _signed(server, boss, f"KeycaskOperator.{op}", {})
        answer.assert_aws_error("AccessDeniedException")
        assert "operator account" in answer.message
    # Still unsealed, and the dev account's administrator is the operator.
    status = _signed(server, server.credentials(), "KeycaskOperator.Status", {})
    assert status.status == 200, status.body
    assert status.json()["sealed"] is False and status.json()["keys"] == 1
    assert kms.list_keys()["Keys"]
    # The tenant admin still runs its own account.
    assert server.client(boss).list_keys()["Keys"] == []
    records = [
        json.loads(line)
        for line in (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    ]
    refused = [
        r
        for r in records
        if r["operation"].startswith("KeycaskOperator.") and r["principal"] is not None
        and r["principal"].startswith(f"arn:aws:iam::{OTHER}:")
    ]  # fmt: skip
    assert [(r["decision"], r["error_code"]) for r in refused] == [
        ("deny", "AccessDeniedException")
    ] * 3


def test_advance_clock_is_for_the_dev_accounts_administrators(fresh_server: Server) -> None:
    server = fresh_server
    admin = server.credentials()
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "keycask:*", "Resource": "*"}],
    }
    _, user = _principal(server, admin, "clock-user", everything)
    boss = _other_account_admin(server)
    for creds in (user, boss):
        try:
            dev_call(server.endpoint, creds, {"Seconds": 86400})
        except DevCallError as refused:
            assert refused.code == "AccessDeniedException", refused
        else:
            raise AssertionError("the clock moved for a caller that is not the dev admin")
    assert server.advance_clock(60)["OffsetSeconds"] == 60


def test_unauthenticated_floods_do_not_throttle_the_operator(fresh_server: Server) -> None:
    server = fresh_server
    codes = []
    for i in range(60):
        headers = {} if i % 2 else {"Authorization": "Bearer kco_guess"}
        codes.append(_unsigned(server, "KeycaskOperator.Status", headers).error_type)
    # Failed attempts are limited per address...
    assert codes[0] == "UnrecognizedClientException"
    assert codes[1] in ("MissingAuthenticationTokenException", "IncompleteSignatureException")
    assert codes.count("ThrottlingException") >= 20
    # ... but the operator, from the same address, is never throttled by them.
    for _ in range(30):
        status = _signed(server, server.credentials(), "KeycaskOperator.Status", {})
        assert status.status == 200, status.body


def _key_policy_for(arn: str) -> str:
    """A key policy that names one principal and does not delegate to the
    account's identity policies."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Only", "Effect": "Allow", "Principal": {"AWS": arn},
                 "Action": "kms:*", "Resource": "*"},
            ],
        }
    )  # fmt: skip


def test_retire_grant_is_evaluated_with_the_key_policy(server: Server) -> None:
    admin_creds = server.credentials()
    admin = server.client()
    retire_anything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:RetireGrant", "Resource": "*"}],
    }
    suffix = uuid.uuid4().hex[:8]
    carol_arn, carol = _principal(server, admin_creds, f"carol-{suffix}", retire_anything)
    dave_arn, _ = _principal(server, admin_creds, f"dave-{suffix}")
    me = _signed(server, admin_creds, "KeycaskAdmin.GetPrincipal", {"Name": "admin"}).json()
    carol_kms = server.client(carol)

    # A key whose policy names only the administrator: the account's identity
    # policies do not count for it, so carol's does not let her retire.
    closed = admin.create_key(Policy=_key_policy_for(me["Arn"]))["KeyMetadata"]["KeyId"]
    grant = admin.create_grant(KeyId=closed, GranteePrincipal=dave_arn, Operations=["Encrypt"])
    try:
        carol_kms.retire_grant(KeyId=closed, GrantId=grant["GrantId"])
    except carol_kms.exceptions.ClientError as refused:
        assert refused.response["Error"]["Code"] == "AccessDeniedException"
    else:
        raise AssertionError("an identity policy bypassed the key policy")
    assert [g["GrantId"] for g in admin.list_grants(KeyId=closed)["Grants"]] == [grant["GrantId"]]

    # The default key policy delegates to the account: then her policy decides.
    open_key = admin.create_key()["KeyMetadata"]["KeyId"]
    other = admin.create_grant(KeyId=open_key, GranteePrincipal=dave_arn, Operations=["Encrypt"])
    carol_kms.retire_grant(KeyId=open_key, GrantId=other["GrantId"])
    assert admin.list_grants(KeyId=open_key)["Grants"] == []
    assert carol_arn.endswith(f"carol-{suffix}")


def _delete_principal(server: Server, creds: tuple[str, str], name: str) -> None:
    gone = _signed(server, creds, "KeycaskAdmin.DeletePrincipal", {"Name": name})
    assert gone.status == 200, gone.body


def _code(call: Any, **kwargs: Any) -> str | None:
    try:
        call(**kwargs)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return None


def test_a_recreated_principal_inherits_no_policy_or_grant(server: Server) -> None:
    admin_creds = server.credentials()
    admin = server.client()
    me = _signed(server, admin_creds, "KeycaskAdmin.GetPrincipal", {"Name": "admin"}).json()
    name = f"bob-{uuid.uuid4().hex[:8]}"
    answer = _signed(server, admin_creds, "KeycaskAdmin.CreatePrincipal", {"Name": name})
    assert answer.status == 200, answer.body
    made = answer.json()
    assert "UniqueId" in made, made
    bob_arn, first_id = made["Arn"], made["UniqueId"]
    assert first_id.startswith("AIDA") and len(first_id) == 21
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": me["Arn"]},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "Bob", "Effect": "Allow", "Principal": {"AWS": [bob_arn]},
             "Action": "kms:Encrypt", "Resource": "*"},
        ],
    }  # fmt: skip
    named = admin.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    granted = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_grant(
        KeyId=granted, GranteePrincipal=bob_arn, RetiringPrincipal=bob_arn,
        Operations=["Encrypt"],
    )  # fmt: skip
    admin.create_grant(KeyId=granted, GranteePrincipal=bob_arn, Operations=["RetireGrant"])
    old_bob = server.client((made["AccessKeyId"], made["SecretAccessKey"]))
    assert _code(old_bob.encrypt, KeyId=named, Plaintext=b"x") is None
    assert _code(old_bob.encrypt, KeyId=granted, Plaintext=b"x") is None

    # Deleted, and made again under the same name: another principal.
    _delete_principal(server, admin_creds, name)
    again = _signed(server, admin_creds, "KeycaskAdmin.CreatePrincipal", {"Name": name}).json()
    assert again["Arn"] == bob_arn and again["UniqueId"] != first_id
    new_bob = server.client((again["AccessKeyId"], again["SecretAccessKey"]))
    assert _code(new_bob.encrypt, KeyId=named, Plaintext=b"x") == "AccessDeniedException"
    assert _code(new_bob.encrypt, KeyId=granted, Plaintext=b"x") == "AccessDeniedException"
    # Neither as retiring principal nor as a grantee allowed RetireGrant.
    for grant in admin.list_grants(KeyId=granted)["Grants"]:
        refused = _code(new_bob.retire_grant, KeyId=granted, GrantId=grant["GrantId"])
        assert refused == "AccessDeniedException", grant

    # The policy shows the deleted principal by its unique id, as AWS does;
    # put back as shown, it still names nobody alive.
    shown = json.loads(admin.get_key_policy(KeyId=named, PolicyName="default")["Policy"])
    principals = {s["Sid"]: s["Principal"]["AWS"] for s in shown["Statement"]}
    assert principals == {"Admin": me["Arn"], "Bob": [first_id]}
    admin.put_key_policy(KeyId=named, PolicyName="default", Policy=json.dumps(shown))
    assert _code(new_bob.encrypt, KeyId=named, Plaintext=b"x") == "AccessDeniedException"
    # Naming the ARN again is a new decision: it names the new principal.
    admin.put_key_policy(KeyId=named, PolicyName="default", Policy=json.dumps(policy))
    assert _code(new_bob.encrypt, KeyId=named, Plaintext=b"x") is None
    shown = json.loads(admin.get_key_policy(KeyId=named, PolicyName="default")["Policy"])
    assert shown == policy


def _alias_error(call: Any, **kwargs: Any) -> tuple[str, str]:
    try:
        call(**kwargs)
    except ClientError as error:
        return str(error.response["Error"]["Code"]), str(error.response["Error"]["Message"])
    raise AssertionError(f"{kwargs} was accepted")


def test_alias_names_are_validated_as_aws_does(kms: Any) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    name = f"alias/valid-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=name, TargetKeyId=key)
    prefix = (
        "ValidationException",
        'Alias must start with the prefix "alias/". Please see '
        "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
    )
    pattern = (
        "ValidationException",
        "1 validation error detected: Value 'alias/bad!' at 'aliasName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
    )
    colon = ("ValidationException", "alias/my:alias contains invalid characters for an alias")
    for call, extra in (
        (kms.create_alias, {"TargetKeyId": key}),
        (kms.update_alias, {"TargetKeyId": key}),
        (kms.delete_alias, {}),
    ):
        assert _alias_error(call, AliasName="my-alias", **extra) == prefix
        assert _alias_error(call, AliasName="alias/bad!", **extra) == pattern
        assert _alias_error(call, AliasName="alias/my:alias", **extra) == colon
        assert _alias_error(call, AliasName="alias/aws/mine", **extra)[0] == (
            "NotAuthorizedException"
        )
    # A target that is an alias, by name or ARN, is refused as invalid.
    arn = f"arn:aws:kms:us-east-1:000000000000:{name}"
    for target in (name, arn):
        for call in (kms.create_alias, kms.update_alias):
            assert _alias_error(call, AliasName=name + "-2", TargetKeyId=target) == (
                "ValidationException",
                "Aliases must refer to keys. Not aliases",
            )
