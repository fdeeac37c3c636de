"""The admin door (service/doors/admin.py): each KeycaskAdmin body decoded
into the core's typed request, or refused with the error and message it
has always had (missing member, wrong type, unknown member, bad value);
typed results encoded to the exact JSON of today's answers. Decoding is
checked on the door's own functions and, end to end, through the pipeline
(tests/service_harness.py), where the refusal is also audited."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from keycask.errors import InvalidMarkerException, KMSError, LimitExceededException
from keycask.service.core.handlers.principals import OPERATIONS
from keycask.service.core.principal_requests import (
    AccessKeyRequest,
    CreatePrincipalRequest,
    ListPrincipalsRequest,
    PrincipalPolicyRequest,
    PrincipalRequest,
    PutPrincipalPolicyRequest,
    TagPrincipalRequest,
    UntagPrincipalRequest,
    UpdateAccessKeyRequest,
    UpdateRoleRequest,
)
from keycask.service.doors.admin import WIRE, decode
from service_harness import ACCOUNT, service

OTHER = "999988887777"
DOC = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}],
    }
)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}
        ],
    }
)


def _decode(op: str, body: dict[str, Any] | bytes) -> object:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode("KeycaskAdmin." + op, WIRE[op], data)


# (operation, body, the typed request it decodes to)
GOOD: list[tuple[str, dict[str, Any], object]] = [
    ("CreatePrincipal", {"Name": "bob"}, CreatePrincipalRequest("bob")),
    (
        "CreatePrincipal",
        {"Name": "bob", "Account": OTHER, "Role": True, "Admin": True, "Tags": {"a": "1"}},
        CreatePrincipalRequest("bob", OTHER, "role", True, (("a", "1"),)),
    ),
    # null and "" members are absent ones, as they always were.
    (
        "CreatePrincipal",
        {"Name": "bob", "Account": "", "Tags": None},
        CreatePrincipalRequest("bob"),
    ),
    (
        "CreatePrincipal",
        {"Name": "app", "Role": True, "TrustPolicy": TRUST, "MaxSessionDuration": 7200},
        CreatePrincipalRequest("app", None, "role", False, (), TRUST, 7200),
    ),
    ("GetPrincipal", {"Name": "bob", "Account": None}, PrincipalRequest("bob")),
    ("ListPrincipals", {}, ListPrincipalsRequest()),
    (
        "ListPrincipals",
        {"Account": OTHER, "Marker": "bob", "Limit": 1000},
        ListPrincipalsRequest(OTHER, "bob", 1000),
    ),
    ("DeletePrincipal", {"Name": "bob", "Account": OTHER}, PrincipalRequest("bob", OTHER)),
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyName": "p.1", "PolicyDocument": DOC},
        PutPrincipalPolicyRequest("bob", "p.1", DOC),
    ),
    (
        "GetPrincipalPolicy",
        {"Name": "bob", "PolicyName": "p"},
        PrincipalPolicyRequest("bob", "p"),
    ),
    (
        "DeletePrincipalPolicy",
        {"Name": "bob", "PolicyName": "p", "Account": OTHER},
        PrincipalPolicyRequest("bob", "p", OTHER),
    ),
    (
        "TagPrincipal",
        {"Name": "bob", "Tags": {"team": "a", "x": ""}},
        TagPrincipalRequest("bob", (("team", "a"), ("x", ""))),
    ),
    (
        "UntagPrincipal",
        {"Name": "bob", "TagKeys": ["team", "x"]},
        UntagPrincipalRequest("bob", ("team", "x")),
    ),
    ("CreateAccessKey", {"Name": "bob"}, PrincipalRequest("bob")),
    ("ListAccessKeys", {"Name": "bob"}, PrincipalRequest("bob")),
    (
        "UpdateAccessKey",
        {"AccessKeyId": "AKKCX", "Status": "Inactive"},
        UpdateAccessKeyRequest("AKKCX", active=False),
    ),
    ("DeleteAccessKey", {"AccessKeyId": "AKKCX"}, AccessKeyRequest("AKKCX")),
    ("UpdateRole", {"Name": "app", "TrustPolicy": TRUST}, UpdateRoleRequest("app", None, TRUST)),
    (
        "UpdateRole",
        {"Name": "app", "Account": OTHER, "MaxSessionDuration": 43200},
        UpdateRoleRequest("app", OTHER, None, 43200),
    ),
]


@pytest.mark.parametrize(("op", "body", "expected"), GOOD)
def test_a_body_decodes_to_its_typed_request(
    op: str, body: dict[str, Any], expected: object
) -> None:
    decoded = _decode(op, body)
    assert decoded == expected
    assert isinstance(decoded, OPERATIONS[op].request)


def test_every_operation_has_a_wire_shape_and_a_decoding_test() -> None:
    assert WIRE.keys() == OPERATIONS.keys()
    assert {op for op, _, _ in GOOD} == set(OPERATIONS)


NAME_RULE = "principal names are 1-64 of A-Z a-z 0-9 + = , . @ _ -"
POLICY_NAME_RULE = "PolicyName must be 1-128 of A-Z a-z 0-9 and _ + = , . @ -."
TAG_KEY_RULE = "must be 1-128 letters, digits, spaces or _ . : / = + - @."
LIMIT_RULE = "Limit must be a whole number from 1 to 1000."


def _members(op: str, *names: str) -> str:
    return f"is not a member of KeycaskAdmin.{op}; its members are {', '.join(names)}."


# (operation, body, the message of the ValidationException it is refused with)
BAD: list[tuple[str, dict[str, Any], str]] = [
    # CreatePrincipal
    ("CreatePrincipal", {}, "KeycaskAdmin.CreatePrincipal requires Name."),
    (
        "CreatePrincipal",
        {"Name": "bob", "Surprise": 1},
        "'Surprise' "
        + _members(
            "CreatePrincipal",
            "Account",
            "Admin",
            "MaxSessionDuration",
            "Name",
            "Role",
            "Tags",
            "TrustPolicy",
        ),
    ),
    ("CreatePrincipal", {"Name": "app", "TrustPolicy": 1}, "TrustPolicy must be a string."),
    (
        "CreatePrincipal",
        {"Name": "app", "TrustPolicy": TRUST},
        "TrustPolicy makes a role assumed through STS: give Role true, and not Admin "
        "(give the role an identity policy instead).",
    ),
    (
        "CreatePrincipal",
        {"Name": "app", "Role": True, "Admin": True, "TrustPolicy": TRUST},
        "TrustPolicy makes a role assumed through STS: give Role true, and not Admin "
        "(give the role an identity policy instead).",
    ),
    (
        "CreatePrincipal",
        {"Name": "app", "Role": True, "MaxSessionDuration": 3600},
        "MaxSessionDuration needs a TrustPolicy.",
    ),
    (
        "CreatePrincipal",
        {"Name": "app", "Role": True, "TrustPolicy": TRUST, "MaxSessionDuration": 3599},
        "MaxSessionDuration must be a whole number of seconds from 3600 to 43200.",
    ),
    (
        "CreatePrincipal",
        {"Name": "app", "Role": True, "TrustPolicy": TRUST, "MaxSessionDuration": True},
        "MaxSessionDuration must be a whole number of seconds.",
    ),
    # UpdateRole
    ("UpdateRole", {}, "KeycaskAdmin.UpdateRole requires Name."),
    (
        "UpdateRole",
        {"Name": "app", "Policy": TRUST},
        "'Policy' "
        + _members("UpdateRole", "Account", "MaxSessionDuration", "Name", "TrustPolicy"),
    ),
    ("UpdateRole", {"Name": "app", "TrustPolicy": ["x"]}, "TrustPolicy must be a string."),
    (
        "UpdateRole",
        {"Name": "app", "MaxSessionDuration": 43201},
        "MaxSessionDuration must be a whole number of seconds from 3600 to 43200.",
    ),
    ("CreatePrincipal", {"Name": 7}, "Name must be a string."),
    ("CreatePrincipal", {"Name": None}, "Name must be a string."),
    ("CreatePrincipal", {"Name": "no/slashes"}, NAME_RULE),
    ("CreatePrincipal", {"Name": "bob", "Account": 12}, "Account must be a string."),
    ("CreatePrincipal", {"Name": "bob", "Account": "12"}, "account ids are 12 digits"),
    ("CreatePrincipal", {"Name": "bob", "Role": "yes"}, "Role must be true or false."),
    ("CreatePrincipal", {"Name": "bob", "Role": None}, "Role must be true or false."),
    ("CreatePrincipal", {"Name": "bob", "Admin": 1}, "Admin must be true or false."),
    (
        "CreatePrincipal",
        {"Name": "bob", "Tags": ["a"]},
        'Tags must be an object of tags: {"key": "value"}.',
    ),
    (
        "CreatePrincipal",
        {"Name": "bob", "Tags": {"ok": 5}},
        "The value of tag 'ok' must be a string.",
    ),
    ("CreatePrincipal", {"Name": "bob", "Tags": {"bad!": "x"}}, "Tag key 'bad!' " + TAG_KEY_RULE),
    (
        "CreatePrincipal",
        {"Name": "bob", "Tags": {"AWS:x": "x"}},
        "Tag key 'AWS:x': the prefix aws: is reserved.",
    ),
    (
        "CreatePrincipal",
        {"Name": "bob", "Tags": {"k": "bad!"}},
        "The value of tag 'k' must be 0-256 letters, digits, spaces or _ . : / = + - @.",
    ),
    (
        "CreatePrincipal",
        {"Name": "bob", "Tags": {"T": "1", "t": "2"}},
        "Tag keys must differ in more than letter case.",
    ),
    # Several faults: refused for the first member read, as always.
    ("CreatePrincipal", {"Name": "bad name", "Role": "yes"}, NAME_RULE),
    (
        "CreatePrincipal",
        {"Name": "bob", "Role": "yes", "Admin": "no"},
        "Role must be true or false.",
    ),
    # Operations naming a principal
    ("GetPrincipal", {}, "KeycaskAdmin.GetPrincipal requires Name."),
    (
        "GetPrincipal",
        {"Name": "bob", "Role": True},
        "'Role' " + _members("GetPrincipal", "Account", "Name"),
    ),
    ("GetPrincipal", {"Name": 1}, "Name must be a string."),
    ("GetPrincipal", {"Name": "bob", "Account": "x"}, "account ids are 12 digits"),
    ("DeletePrincipal", {}, "KeycaskAdmin.DeletePrincipal requires Name."),
    (
        "DeletePrincipal",
        {"Name": "bob", "X": 1},
        "'X' " + _members("DeletePrincipal", "Account", "Name"),
    ),
    ("DeletePrincipal", {"Name": []}, "Name must be a string."),
    ("CreateAccessKey", {}, "KeycaskAdmin.CreateAccessKey requires Name."),
    (
        "CreateAccessKey",
        {"Name": "bob", "AccessKeyId": "x"},
        "'AccessKeyId' " + _members("CreateAccessKey", "Account", "Name"),
    ),
    ("CreateAccessKey", {"Name": False}, "Name must be a string."),
    ("ListAccessKeys", {}, "KeycaskAdmin.ListAccessKeys requires Name."),
    (
        "ListAccessKeys",
        {"Name": "bob", "Marker": "x"},
        "'Marker' " + _members("ListAccessKeys", "Account", "Name"),
    ),
    ("ListAccessKeys", {"Name": {}}, "Name must be a string."),
    ("ListAccessKeys", {"Name": "a b"}, NAME_RULE),
    # ListPrincipals (nothing required)
    (
        "ListPrincipals",
        {"Name": "bob"},
        "'Name' " + _members("ListPrincipals", "Account", "Limit", "Marker"),
    ),
    ("ListPrincipals", {"Limit": 0}, LIMIT_RULE),
    ("ListPrincipals", {"Limit": 1001}, LIMIT_RULE),
    ("ListPrincipals", {"Limit": True}, LIMIT_RULE),
    ("ListPrincipals", {"Limit": "5"}, LIMIT_RULE),
    ("ListPrincipals", {"Limit": 1.5}, LIMIT_RULE),
    ("ListPrincipals", {"Limit": None}, LIMIT_RULE),
    ("ListPrincipals", {"Marker": 5}, "Marker must be a string."),
    ("ListPrincipals", {"Marker": "../x", "Limit": 0}, LIMIT_RULE),
    ("ListPrincipals", {"Account": 5, "Limit": 0}, "Account must be a string."),
    # Identity policies
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyName": "p"},
        "KeycaskAdmin.PutPrincipalPolicy requires PolicyDocument.",
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyDocument": DOC},
        "KeycaskAdmin.PutPrincipalPolicy requires PolicyName.",
    ),
    (
        "PutPrincipalPolicy",
        {"PolicyName": "p", "PolicyDocument": DOC},
        "KeycaskAdmin.PutPrincipalPolicy requires Name.",
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyName": "p", "PolicyDocument": DOC, "Tags": {}},
        "'Tags' "
        + _members("PutPrincipalPolicy", "Account", "Name", "PolicyDocument", "PolicyName"),
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyName": 1, "PolicyDocument": DOC},
        "PolicyName must be a string.",
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyName": "bad name!", "PolicyDocument": DOC},
        POLICY_NAME_RULE,
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bob", "PolicyName": "p", "PolicyDocument": {"Statement": []}},
        "PolicyDocument must be a string.",
    ),
    (
        "PutPrincipalPolicy",
        {"Name": 5, "PolicyName": "bad name!", "PolicyDocument": 3},
        POLICY_NAME_RULE,
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bad name", "PolicyName": "p", "PolicyDocument": 3},
        "PolicyDocument must be a string.",
    ),
    (
        "PutPrincipalPolicy",
        {"Name": "bad name", "PolicyName": "p", "PolicyDocument": DOC},
        NAME_RULE,
    ),
    ("GetPrincipalPolicy", {"Name": "bob"}, "KeycaskAdmin.GetPrincipalPolicy requires PolicyName."),
    ("GetPrincipalPolicy", {"PolicyName": "p"}, "KeycaskAdmin.GetPrincipalPolicy requires Name."),
    (
        "GetPrincipalPolicy",
        {"Name": "bob", "PolicyName": "p", "PolicyDocument": DOC},
        "'PolicyDocument' " + _members("GetPrincipalPolicy", "Account", "Name", "PolicyName"),
    ),
    ("GetPrincipalPolicy", {"Name": "bob", "PolicyName": 2}, "PolicyName must be a string."),
    ("GetPrincipalPolicy", {"Name": 2, "PolicyName": "p"}, "Name must be a string."),
    (
        "DeletePrincipalPolicy",
        {"Name": "bob"},
        "KeycaskAdmin.DeletePrincipalPolicy requires PolicyName.",
    ),
    (
        "DeletePrincipalPolicy",
        {"Name": "bob", "PolicyName": "p", "Z": 0},
        "'Z' " + _members("DeletePrincipalPolicy", "Account", "Name", "PolicyName"),
    ),
    ("DeletePrincipalPolicy", {"Name": "bob", "PolicyName": "bad name!"}, POLICY_NAME_RULE),
    ("DeletePrincipalPolicy", {"Name": None, "PolicyName": "p"}, "Name must be a string."),
    # Tags
    ("TagPrincipal", {"Name": "bob"}, "KeycaskAdmin.TagPrincipal requires Tags."),
    ("TagPrincipal", {"Tags": {"a": "b"}}, "KeycaskAdmin.TagPrincipal requires Name."),
    (
        "TagPrincipal",
        {"Name": "bob", "Tags": {"a": "b"}, "TagKeys": []},
        "'TagKeys' " + _members("TagPrincipal", "Account", "Name", "Tags"),
    ),
    ("TagPrincipal", {"Name": "bob", "Tags": {}}, "Tags must name at least one tag."),
    ("TagPrincipal", {"Name": "bob", "Tags": None}, "Tags must name at least one tag."),
    (
        "TagPrincipal",
        {"Name": "bob", "Tags": "a=b"},
        'Tags must be an object of tags: {"key": "value"}.',
    ),
    ("TagPrincipal", {"Name": 3, "Tags": {"a": "b"}}, "Name must be a string."),
    (
        "TagPrincipal",
        {"Name": 3, "Tags": {"aws:a": "b"}},
        "Tag key 'aws:a': the prefix aws: is reserved.",
    ),
    (
        "TagPrincipal",
        {"Name": "bob", "Tags": {"A": "1", "a": "2"}},
        "Tag keys must differ in more than letter case.",
    ),
    ("UntagPrincipal", {"Name": "bob"}, "KeycaskAdmin.UntagPrincipal requires TagKeys."),
    ("UntagPrincipal", {"TagKeys": ["a"]}, "KeycaskAdmin.UntagPrincipal requires Name."),
    (
        "UntagPrincipal",
        {"Name": "bob", "TagKeys": ["a"], "Tags": {}},
        "'Tags' " + _members("UntagPrincipal", "Account", "Name", "TagKeys"),
    ),
    ("UntagPrincipal", {"Name": "bob", "TagKeys": []}, "TagKeys must be a list of tag keys."),
    ("UntagPrincipal", {"Name": "bob", "TagKeys": "a"}, "TagKeys must be a list of tag keys."),
    ("UntagPrincipal", {"Name": "bob", "TagKeys": [1]}, "TagKeys must be a list of tag keys."),
    ("UntagPrincipal", {"Name": "bob", "TagKeys": None}, "TagKeys must be a list of tag keys."),
    (
        "UntagPrincipal",
        {"Name": "bob", "TagKeys": ["aws:x"]},
        "Tag key 'aws:x': the prefix aws: is reserved.",
    ),
    ("UntagPrincipal", {"Name": 4, "TagKeys": ["bad!"]}, "Tag key 'bad!' " + TAG_KEY_RULE),
    ("UntagPrincipal", {"Name": 4, "TagKeys": ["ok"]}, "Name must be a string."),
    # Access keys by id
    ("UpdateAccessKey", {"AccessKeyId": "AKKCX"}, "KeycaskAdmin.UpdateAccessKey requires Status."),
    ("UpdateAccessKey", {"Status": "Active"}, "KeycaskAdmin.UpdateAccessKey requires AccessKeyId."),
    (
        "UpdateAccessKey",
        {"AccessKeyId": "AKKCX", "Status": "Active", "Name": "bob"},
        "'Name' " + _members("UpdateAccessKey", "AccessKeyId", "Status"),
    ),
    ("UpdateAccessKey", {"AccessKeyId": 1, "Status": "Active"}, "AccessKeyId must be a string."),
    ("UpdateAccessKey", {"AccessKeyId": "AKKCX", "Status": 1}, "Status must be a string."),
    (
        "UpdateAccessKey",
        {"AccessKeyId": "AKKCX", "Status": "Off"},
        "Status must be Active or Inactive.",
    ),
    ("UpdateAccessKey", {"AccessKeyId": 1, "Status": "Off"}, "Status must be Active or Inactive."),
    ("DeleteAccessKey", {}, "KeycaskAdmin.DeleteAccessKey requires AccessKeyId."),
    (
        "DeleteAccessKey",
        {"AccessKeyId": "x", "Status": "Active"},
        "'Status' " + _members("DeleteAccessKey", "AccessKeyId"),
    ),
    ("DeleteAccessKey", {"AccessKeyId": None}, "AccessKeyId must be a string."),
]


@pytest.mark.parametrize(("op", "body", "message"), BAD)
def test_a_bad_body_is_refused_with_its_message(
    op: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(KMSError) as refused:
        _decode(op, body)
    assert (refused.value.code, refused.value.message) == ("ValidationException", message)


def test_every_operation_is_tested_with_a_missing_a_mistyped_and_an_unknown_member() -> None:
    for op, wire in WIRE.items():
        messages = [message for o, _, message in BAD if o == op]
        assert any("is not a member of" in m for m in messages), op
        assert any(" must be a string." in m or " must be true or false." in m for m in messages), (
            op
        )
        if wire.required:
            assert any(f"KeycaskAdmin.{op} requires" in m for m in messages), op


def test_the_other_refusals_of_a_body() -> None:
    with pytest.raises(LimitExceededException, match="at most 50 tags"):
        _decode("CreatePrincipal", {"Name": "bob", "Tags": {f"k{i}": "v" for i in range(51)}})
    with pytest.raises(LimitExceededException, match="at most 50 tags"):
        _decode("TagPrincipal", {"Name": "bob", "Tags": {f"k{i}": "v" for i in range(51)}})
    for marker in ("../x", ""):
        with pytest.raises(InvalidMarkerException, match=r"^The marker is not valid\.$"):
            _decode("ListPrincipals", {"Marker": marker, "Limit": 1})
    for body, message in (
        (b"{not json", "The request body is not valid JSON."),
        (b"[1]", "The request body must be a JSON object."),
        (b"null", "The request body must be a JSON object."),
    ):
        with pytest.raises(KMSError) as refused:
            _decode("ListPrincipals", body)
        assert (refused.value.code, refused.value.message) == ("SerializationException", message)
    assert _decode("ListPrincipals", b"") == ListPrincipalsRequest()


# -- through the pipeline --


async def test_a_refused_body_is_answered_and_audited_by_the_admin_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        for op, body, message in BAD[::7]:
            reply = await svc.send("KeycaskAdmin." + op, body)
            assert reply.status == 400
            assert json.loads(reply.body) == {"__type": "ValidationException", "message": message}
            (record,) = svc.record_of(reply)
            assert (record["door"], record["operation"]) == ("admin", "KeycaskAdmin." + op)
            assert (record["outcome"], record["error_code"]) == ("error", "ValidationException")
            # Refused before anything was authorized or done.
            assert (record["decision"], record["detail"]) == ("none", None)
        assert (await svc.send("KeycaskAdmin.ListPrincipals", {})).status == 200


_RANDOM = re.compile(rb'"(AccessKeyId|SecretAccessKey|UniqueId|CreateDate)":"[^"]*"')


async def test_every_answer_has_its_exact_json_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:

        async def answer(op: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            reply = await svc.send("KeycaskAdmin." + op, body)
            assert reply.status == 200, reply.body
            (record,) = svc.record_of(reply)
            assert record["door"] == "admin"
            # Byte for byte but for random ids, secrets and dates: member order too.
            return _RANDOM.sub(rb'"\1":"*"', reply.body).decode(), json.loads(reply.body)

        arn = f"arn:aws:iam::{ACCOUNT}"
        created, bob = await answer("CreatePrincipal", {"Name": "bob", "Tags": {"t": "1"}})
        assert created == (
            f'{{"Arn":"{arn}:user/bob","UniqueId":"*","AccessKeyId":"*","SecretAccessKey":"*"}}'
        )
        assert re.fullmatch(r"AIDA[A-Z2-7]{17}", bob["UniqueId"])
        assert re.fullmatch(r"[A-Za-z0-9/+]{40}", bob["SecretAccessKey"]), "a secret"
        await answer("CreatePrincipal", {"Name": "carol", "Role": True, "Admin": True})
        assert await answer(
            "PutPrincipalPolicy", {"Name": "bob", "PolicyName": "p", "PolicyDocument": DOC}
        ) == ("{}", {})
        got, bob_got = await answer("GetPrincipal", {"Name": "bob"})
        assert got == (
            f'{{"Arn":"{arn}:user/bob","UniqueId":"*","Name":"bob","Account":"{ACCOUNT}",'
            '"Kind":"user","Admin":false,"Tags":{"t":"1"},"PolicyNames":["p"],'
            '"AccessKeyCount":1,"CreateDate":"*"}'
        )
        assert bob_got["UniqueId"] == bob["UniqueId"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", bob_got["CreateDate"])
        assert (await answer("ListPrincipals", {"Limit": 2}))[0] == (
            f'{{"Principals":[{{"Arn":"{arn}:user/admin","Name":"admin","Kind":"user",'
            f'"Admin":true}},{{"Arn":"{arn}:user/bob","Name":"bob","Kind":"user",'
            '"Admin":false}],"Truncated":true,"NextMarker":"bob"}'
        )
        assert (await answer("ListPrincipals", {"Marker": "bob"}))[0] == (
            f'{{"Principals":[{{"Arn":"{arn}:role/carol","Name":"carol","Kind":"role",'
            '"Admin":true}],"Truncated":false}'
        )
        assert (await answer("GetPrincipalPolicy", {"Name": "bob", "PolicyName": "p"}))[1] == {
            "PolicyName": "p",
            "PolicyDocument": DOC,
        }
        key, made = await answer("CreateAccessKey", {"Name": "bob"})
        assert key == '{"AccessKeyId":"*","SecretAccessKey":"*"}'
        assert await answer(
            "UpdateAccessKey", {"AccessKeyId": made["AccessKeyId"], "Status": "Inactive"}
        ) == ("{}", {})
        keys, listed = await answer("ListAccessKeys", {"Name": "bob"})
        active = '{"AccessKeyId":"*","Status":"Active","CreateDate":"*"}'
        inactive = '{"AccessKeyId":"*","Status":"Inactive","CreateDate":"*"}'
        assert keys in (
            f'{{"AccessKeys":[{active},{inactive}]}}',
            f'{{"AccessKeys":[{inactive},{active}]}}',
        )
        statuses = {k["AccessKeyId"]: k["Status"] for k in listed["AccessKeys"]}
        assert statuses == {bob["AccessKeyId"]: "Active", made["AccessKeyId"]: "Inactive"}
        for op, body in (
            ("TagPrincipal", {"Name": "bob", "Tags": {"u": "2"}}),
            ("UntagPrincipal", {"Name": "bob", "TagKeys": ["t"]}),
            ("DeletePrincipalPolicy", {"Name": "bob", "PolicyName": "p"}),
            ("DeleteAccessKey", {"AccessKeyId": made["AccessKeyId"]}),
            ("DeletePrincipal", {"Name": "bob"}),
        ):
            assert await answer(op, body) == ("{}", {}), op
