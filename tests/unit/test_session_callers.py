"""Role sessions as callers, through the real pipeline.

Until the STS door issues tokens over the wire, sessions are issued here
with the server's own ``SessionTokens`` (what the AssumeRole handler calls),
and every request is signed by botocore with the session's access key id,
secret and token, as an SDK holding AssumeRole's credentials signs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keycask.audit.chain import verify
from keycask.auth.sessions import Issued, NewSession, SessionTokens
from service_harness import ACCOUNT, Service, service

ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
IDP = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.example.com"


@pytest.fixture
async def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    async with service(tmp_path, monkeypatch) as built:
        yield built


def statement(actions: list[str], *, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": actions, "Resource": "*", **extra}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


async def admin(svc: Service, operation: str, **body: Any) -> dict[str, Any]:
    reply = await svc.send("KeycaskAdmin." + operation, body)
    answer: dict[str, Any] = json.loads(reply.body)
    assert reply.status == 200, answer
    return answer


async def make_role(
    svc: Service,
    *,
    policies: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    name: str = "app",
) -> str:
    """A role made through the admin API; its unique id."""
    created = await admin(svc, "CreatePrincipal", Name=name, Role=True, Tags=tags or {})
    for policy_name, document in (policies or {}).items():
        await admin(
            svc, "PutPrincipalPolicy", Name=name, PolicyName=policy_name, PolicyDocument=document
        )
    return str(created["UniqueId"])


async def issue(
    svc: Service,
    role_id: str,
    *,
    at: datetime | None = None,
    lasts: timedelta = timedelta(hours=1),
    role: str = "app",
    **changes: Any,
) -> Issued:
    """A session of the role, issued as the AssumeRole handler will (with
    SessionTokens of its own on the server's barrier: any instance on the
    store opens any instance's tokens)."""
    tokens = SessionTokens(svc.runtime.barrier)
    now = at or datetime.now(UTC)
    fields: dict[str, Any] = {"session_name": "build-7", **changes}
    issued = await tokens.issue(
        NewSession(
            account=ACCOUNT,
            role_name=role,
            role_id=role_id,
            expires=int((now + lasts).timestamp()),
            **fields,
        ),
        now,
    )
    if issued.writes:
        await svc.runtime.barrier.commit(issued.writes)
    return issued


def signing_as(svc: Service, issued: Issued, token: str | None = None) -> Service:
    claims = issued.claims
    return dataclasses.replace(
        svc,
        access_key=(claims.access_key_id, claims.secret, issued.token if token is None else token),
    )


async def call(caller: Service, operation: str, **body: Any) -> tuple[int, dict[str, Any]]:
    return await caller.kms(operation, **body)


async def new_key(svc: Service, key_policy: str | None = None) -> str:
    body: dict[str, Any] = {} if key_policy is None else {"Policy": key_policy}
    status, created = await svc.kms("CreateKey", **body)
    assert status == 200, created
    return str(created["KeyMetadata"]["Arn"])


def error(answer: tuple[int, dict[str, Any]]) -> str:
    status, body = answer
    assert status >= 400, body
    return str(body["__type"])


USE = statement(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"])


async def test_session_credentials_work_and_are_audited_with_the_assumed_role_arn(
    svc: Service,
) -> None:
    role_id = await make_role(svc, policies={"use": policy(USE)})
    key = await new_key(svc)
    issued = await issue(svc, role_id, source_identity="alice")
    session = signing_as(svc, issued)
    status, encrypted = await call(session, "Encrypt", KeyId=key, Plaintext="aGVsbG8=")
    assert status == 200, encrypted
    reply = await session.send(
        "TrentService.Decrypt", {"CiphertextBlob": encrypted["CiphertextBlob"]}
    )
    assert reply.status == 200 and json.loads(reply.body)["Plaintext"] == "aGVsbG8="
    [record] = svc.record_of(reply)
    assert record["principal"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/build-7"
    assert record["access_key_id"] == issued.claims.access_key_id
    assert record["access_key_id"].startswith("ASIA")
    assert record["decision"] == "allow"
    assert issued.claims.user_id == f"{role_id}:build-7"
    assert record["source_identity"] == "alice"
    assert list(record)[-5:-2] == ["detail", "door", "source_identity"]  # then prev, mac
    # Records of callers with no source identity have no such member.
    others = [r for r in svc.audit_records() if r["access_key_id"] != record["access_key_id"]]
    assert others and all("source_identity" not in r for r in others)
    assert verify(svc.audit_path.parent).ok  # the chain holds with the new member
    assert issued.claims.secret not in json.dumps(svc.audit_records())
    assert issued.token not in json.dumps(svc.audit_records())


async def test_a_missing_altered_or_other_sessions_token_is_refused(svc: Service) -> None:
    role_id = await make_role(svc, policies={"use": policy(USE)})
    key = await new_key(svc)
    first = await issue(svc, role_id)
    second = await issue(svc, role_id)
    assert error(await call(signing_as(svc, first, ""), "DescribeKey", KeyId=key)) == (
        "UnrecognizedClientException"
    )
    raw = bytearray(base64.b64decode(first.token))
    raw[-1] ^= 1
    altered = base64.b64encode(bytes(raw)).decode()
    assert error(await call(signing_as(svc, first, altered), "DescribeKey", KeyId=key)) == (
        "UnrecognizedClientException"
    )
    # Another session's token with this session's key id and secret.
    assert error(await call(signing_as(svc, first, second.token), "DescribeKey", KeyId=key)) == (
        "UnrecognizedClientException"
    )
    # A long-term access key with a session token.
    with_token = dataclasses.replace(svc, access_key=(*svc.access_key, first.token))
    assert error(await call(with_token, "DescribeKey", KeyId=key)) == (
        "UnrecognizedClientException"
    )
    # The right token with a wrong secret: the signature does not match.
    wrong_secret = dataclasses.replace(
        svc, access_key=(first.claims.access_key_id, second.claims.secret, first.token)
    )
    assert error(await call(wrong_secret, "DescribeKey", KeyId=key)) == (
        "InvalidSignatureException"
    )
    status, _ = await call(signing_as(svc, first), "DescribeKey", KeyId=key)
    assert status == 200


async def test_an_expired_session_answers_expired_token(svc: Service) -> None:
    role_id = await make_role(svc, policies={"use": policy(USE)})
    key = await new_key(svc)
    issued = await issue(
        svc, role_id, at=datetime.now(UTC) - timedelta(hours=2), lasts=timedelta(hours=1)
    )
    status, body = await call(signing_as(svc, issued), "DescribeKey", KeyId=key)
    assert (status, body["__type"]) == (400, "ExpiredTokenException")
    assert body["message"] == "The security token included in the request is expired"


async def test_deleting_or_recreating_the_role_revokes_its_sessions(svc: Service) -> None:
    role_id = await make_role(svc, policies={"use": policy(USE)})
    key = await new_key(svc)
    issued = await issue(svc, role_id)
    session = signing_as(svc, issued)
    assert (await call(session, "DescribeKey", KeyId=key))[0] == 200
    await admin(svc, "DeletePrincipal", Name="app")
    assert error(await call(session, "DescribeKey", KeyId=key)) == "UnrecognizedClientException"
    # The same name again is another role: the old session stays dead.
    new_id = await make_role(svc, policies={"use": policy(USE)})
    assert new_id != role_id
    assert error(await call(session, "DescribeKey", KeyId=key)) == "UnrecognizedClientException"
    fresh = await issue(svc, new_id)
    assert (await call(signing_as(svc, fresh), "DescribeKey", KeyId=key))[0] == 200


async def test_a_session_of_a_user_name_is_refused(svc: Service) -> None:
    # A token naming a principal that is a user, not a role, opens nothing.
    created = await admin(svc, "CreatePrincipal", Name="bob")
    key = await new_key(svc)
    issued = await issue(svc, str(created["UniqueId"]), role="bob")
    assert error(await call(signing_as(svc, issued), "DescribeKey", KeyId=key)) == (
        "UnrecognizedClientException"
    )


async def test_a_session_policy_narrows_the_role(svc: Service) -> None:
    role_id = await make_role(svc, policies={"use": policy(USE)})
    key = await new_key(svc)
    narrowed = signing_as(svc, await issue(svc, role_id, policy=policy(statement(["kms:Encrypt"]))))
    status, encrypted = await call(narrowed, "Encrypt", KeyId=key, Plaintext="aGk=")
    assert status == 200, encrypted
    reply = await narrowed.send(
        "TrentService.Decrypt", {"CiphertextBlob": encrypted["CiphertextBlob"]}
    )
    assert json.loads(reply.body)["__type"] == "AccessDeniedException"
    [record] = svc.record_of(reply)
    assert record["decided_by"] == "implicit deny"
    # A session policy cannot give more than the role has.
    wider = signing_as(svc, await issue(svc, role_id, policy=policy(statement(["kms:*"]))))
    assert error(await call(wider, "ScheduleKeyDeletion", KeyId=key)) == "AccessDeniedException"
    # An explicit deny in the session policy denies.
    denying = signing_as(
        svc,
        await issue(
            svc,
            role_id,
            policy=policy(statement(["kms:*"]), statement(["kms:Encrypt"], effect="Deny")),
        ),
    )
    status, body = await call(denying, "Encrypt", KeyId=key, Plaintext="aGk=")
    assert (status, body["__type"]) == (400, "AccessDeniedException")
    assert "explicit deny in a session policy" in body["message"]
    assert "assumed-role/app/build-7" in body["message"]
    assert (await call(denying, "DescribeKey", KeyId=key))[0] == 200


async def test_key_policies_naming_the_role_apply_to_its_sessions(svc: Service) -> None:
    role_id = await make_role(svc)  # no identity policy at all
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/app/build-7"
    key = await new_key(
        svc,
        policy(
            {"Sid": "Admins", "Effect": "Allow", "Principal": {"AWS": ROOT},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "Role", "Effect": "Allow", "Principal": {"AWS": ROLE},
             "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": "*"},
            {"Sid": "Session", "Effect": "Allow", "Principal": {"AWS": session_arn},
             "Action": "kms:GenerateDataKey", "Resource": "*"},
        ),
    )  # fmt: skip
    plain = signing_as(svc, await issue(svc, role_id))
    assert (await call(plain, "Encrypt", KeyId=key, Plaintext="aGk="))[0] == 200
    # The statement naming the role is limited by a session policy...
    limited = signing_as(
        svc, await issue(svc, role_id, policy=policy(statement(["kms:DescribeKey"])))
    )
    assert error(await call(limited, "Encrypt", KeyId=key, Plaintext="aGk=")) == (
        "AccessDeniedException"
    )
    assert (await call(limited, "DescribeKey", KeyId=key))[0] == 200
    # ...the one naming the session's own ARN is not.
    reply = await limited.send("TrentService.GenerateDataKey", {"KeyId": key, "KeySpec": "AES_256"})
    assert reply.status == 200
    assert svc.record_of(reply)[0]["decided_by"] == "key policy statement Session"
    # Another session name is not that session.
    other = signing_as(svc, await issue(svc, role_id, session_name="other"))
    assert error(await call(other, "GenerateDataKey", KeyId=key, KeySpec="AES_256")) == (
        "AccessDeniedException"
    )


async def test_principal_tags_are_the_roles_with_the_sessions_over_them(svc: Service) -> None:
    tagged = statement(
        ["kms:Encrypt"], Condition={"StringEquals": {"aws:PrincipalTag/team": "blue"}}
    )
    role_id = await make_role(
        svc, policies={"tagged": policy(tagged)}, tags={"team": "red", "env": "prod"}
    )
    key = await new_key(svc)
    red = signing_as(svc, await issue(svc, role_id))
    assert error(await call(red, "Encrypt", KeyId=key, Plaintext="aGk=")) == (
        "AccessDeniedException"
    )
    # Same role, same session name, new tags: decided anew (not remembered).
    blue = signing_as(svc, await issue(svc, role_id, tags=(("Team", "blue"),)))
    assert (await call(blue, "Encrypt", KeyId=key, Plaintext="aGk="))[0] == 200
    assert error(await call(red, "Encrypt", KeyId=key, Plaintext="aGk=")) == (
        "AccessDeniedException"
    )


async def test_token_issue_time_revokes_older_sessions(svc: Service) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = (now - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    revoke = statement(
        ["kms:*"], effect="Deny", Condition={"DateLessThan": {"aws:TokenIssueTime": cutoff}}
    )
    role_id = await make_role(svc, policies={"use": policy(USE), "revoke": policy(revoke)})
    key = await new_key(svc)
    old = signing_as(
        svc, await issue(svc, role_id, at=now - timedelta(hours=1), lasts=timedelta(hours=12))
    )
    new = signing_as(svc, await issue(svc, role_id, at=now))
    status, body = await call(old, "DescribeKey", KeyId=key)
    assert (status, body["__type"]) == (400, "AccessDeniedException")
    assert (await call(new, "DescribeKey", KeyId=key))[0] == 200


async def test_federated_provider_source_identity_and_userid(svc: Service) -> None:
    role_id = await make_role(
        svc,
        policies={
            "federated": policy(
                statement(
                    ["kms:Encrypt"],
                    Condition={"StringEquals": {"aws:FederatedProvider": IDP}},
                )
            ),
            "by-source": policy(
                statement(
                    ["kms:GenerateDataKey"],
                    Condition={"StringEquals": {"aws:SourceIdentity": "alice"}},
                )
            ),
        },
    )
    # aws:userid names the role's unique id, known once the role exists.
    await admin(
        svc,
        "PutPrincipalPolicy",
        Name="app",
        PolicyName="by-userid",
        PolicyDocument=policy(
            statement(
                ["kms:DescribeKey"],
                Condition={
                    "StringEquals": {
                        "aws:userid": f"{role_id}:ci-1",
                        "aws:PrincipalArn": ROLE,
                        "aws:PrincipalType": "AssumedRole",
                    },
                    "Null": {"aws:username": "true"},
                },
            )
        ),
    )
    key = await new_key(svc)
    web = signing_as(
        svc,
        await issue(
            svc, role_id, session_name="ci-1", federated_provider=IDP, source_identity="alice"
        ),
    )
    plain = signing_as(svc, await issue(svc, role_id, session_name="ci-2"))
    assert (await call(web, "Encrypt", KeyId=key, Plaintext="aGk="))[0] == 200
    assert error(await call(plain, "Encrypt", KeyId=key, Plaintext="aGk=")) == (
        "AccessDeniedException"
    )
    assert (await call(web, "DescribeKey", KeyId=key))[0] == 200
    assert error(await call(plain, "DescribeKey", KeyId=key)) == "AccessDeniedException"
    assert (await call(web, "GenerateDataKey", KeyId=key, KeySpec="AES_256"))[0] == 200
    assert error(await call(plain, "GenerateDataKey", KeyId=key, KeySpec="AES_256")) == (
        "AccessDeniedException"
    )


async def test_grants_to_the_role_count_for_its_sessions_within_the_session_policy(
    svc: Service,
) -> None:
    role_id = await make_role(svc)
    key = await new_key(svc)
    status, granted = await svc.kms(
        "CreateGrant", KeyId=key, GranteePrincipal=ROLE, Operations=["Encrypt", "DescribeKey"]
    )
    assert status == 200, granted
    plain = signing_as(svc, await issue(svc, role_id))
    assert (await call(plain, "Encrypt", KeyId=key, Plaintext="aGk="))[0] == 200
    limited = signing_as(
        svc, await issue(svc, role_id, policy=policy(statement(["kms:DescribeKey"])))
    )
    assert error(await call(limited, "Encrypt", KeyId=key, Plaintext="aGk=")) == (
        "AccessDeniedException"
    )
    assert (await call(limited, "DescribeKey", KeyId=key))[0] == 200


async def test_a_narrowed_session_of_an_admin_role_is_no_operator(svc: Service) -> None:
    created = await admin(svc, "CreatePrincipal", Name="ops", Role=True, Admin=True)
    narrowed = signing_as(
        svc,
        await issue(
            svc,
            str(created["UniqueId"]),
            role="ops",
            policy=policy(statement(["kms:DescribeKey"])),
        ),
    )
    reply = await narrowed.send("KeycaskOperator.Status", {})
    assert reply.status == 400, reply.body
    assert json.loads(reply.body)["__type"] == "AccessDeniedException"
    # Nor does its admin flag pass the session policy on the admin API.
    reply = await narrowed.send("KeycaskAdmin.CreatePrincipal", {"Name": "eve"})
    assert json.loads(reply.body)["__type"] == "AccessDeniedException"
