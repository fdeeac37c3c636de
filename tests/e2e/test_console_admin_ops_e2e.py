"""The admin operations the web console reads through, on a real server:
``KeycaskAdmin.LintPolicy`` (``keycask policy lint`` on a document not yet
saved), ``KeycaskAdmin.WhoCan`` (``keycask policy who-can``) and
``KeycaskAdmin.ListAuditRecords`` (this node's recent records of the
caller's account) and ``KeycaskAdmin.ListNodes`` (the cluster's nodes).
All are signed, authorized by identity policies and
audited like every admin operation, and change nothing."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import keycask
from conftest import DevCallError, Server, dev_call

ACCOUNT = "000000000000"
OTHER = "111111111111"
PUBLIC = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}],
    }
)


def _admin(server: Server, op: str, body: dict[str, Any], creds: Any = None) -> dict[str, Any]:
    return dev_call(server.endpoint, creds or server.credentials(), body, f"KeycaskAdmin.{op}")


def _user(server: Server, *policy_actions: str) -> tuple[str, str]:
    name = f"console-{uuid.uuid4().hex[:8]}"
    made = _admin(server, "CreatePrincipal", {"Name": name})
    if policy_actions:
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(policy_actions), "Resource": "*"}],
        }
        _admin(
            server,
            "PutPrincipalPolicy",
            {"Name": name, "PolicyName": "p", "PolicyDocument": json.dumps(document)},
        )
    return made["AccessKeyId"], made["SecretAccessKey"]


def _records(server: Server) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for segment in sorted((server.data_dir / "audit").glob("*.jsonl"))
        for line in segment.read_text().splitlines()
    ]


# -- LintPolicy --


def test_lint_policy_reports_what_policy_lint_reports(server: Server) -> None:
    found = _admin(server, "LintPolicy", {"PolicyDocument": PUBLIC})["Findings"]
    rules = {f["Rule"]: f for f in found}
    assert rules["public-principal"]["Severity"] == "high"
    assert rules["public-principal"]["Statement"] == "#1"
    assert "kms-star-to-non-admin" in rules
    # The lockout rule knows the account's principals: one that does not exist
    # manages nothing.
    nobody = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/no-such-user"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    found = _admin(server, "LintPolicy", {"PolicyDocument": nobody})["Findings"]
    assert "lockout" in {f["Rule"] for f in found}
    # A key tagged multi-tenant needs an encryption context condition.
    decrypt = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/app"},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                },
            ],
        }
    )
    plain = _admin(server, "LintPolicy", {"PolicyDocument": decrypt})["Findings"]
    tagged = _admin(
        server,
        "LintPolicy",
        {"PolicyDocument": decrypt, "KeyTags": {"multi-tenant": "true"}},
    )["Findings"]
    assert "decrypt-without-context" not in {f["Rule"] for f in plain}
    assert "decrypt-without-context" in {f["Rule"] for f in tagged}
    # An identity policy is linted as one.
    identity = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
        }
    )
    found = _admin(server, "LintPolicy", {"PolicyDocument": identity, "Kind": "identity"})
    assert found["Findings"]


def test_lint_policy_reports_a_malformed_document_as_a_finding(server: Server) -> None:
    found = _admin(server, "LintPolicy", {"PolicyDocument": '{"Version": '})["Findings"]
    assert [f["Rule"] for f in found] == ["malformed-policy"]
    assert "not valid JSON" in found[0]["Message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "KeycaskAdmin.LintPolicy requires PolicyDocument."),
        ({"PolicyDocument": PUBLIC, "Kind": "bucket"}, "Kind must be one of"),
        ({"PolicyDocument": PUBLIC, "KeyTags": ["a"]}, "KeyTags must be an object"),
        ({"PolicyDocument": PUBLIC, "Account": OTHER}, "the caller's own account"),
        ({"PolicyDocument": PUBLIC, "Extra": 1}, "is not a member of KeycaskAdmin.LintPolicy"),
    ],
)
def test_lint_policy_validates_its_request(
    server: Server, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(DevCallError) as caught:
        _admin(server, "LintPolicy", body)
    assert caught.value.code == "ValidationException"
    assert message in caught.value.message


def test_lint_policy_needs_its_permission(server: Server) -> None:
    with pytest.raises(DevCallError) as caught:
        _admin(server, "LintPolicy", {"PolicyDocument": PUBLIC}, _user(server))
    assert caught.value.code == "AccessDeniedException"
    assert "keycask:LintPolicy" in caught.value.message
    allowed = _user(server, "keycask:LintPolicy")
    assert _admin(server, "LintPolicy", {"PolicyDocument": PUBLIC}, allowed)["Findings"]


# -- ListAuditRecords --


def test_list_audit_records_filters_newest_first(server: Server) -> None:
    kms = server.client()
    key_id = kms.create_key(Description="audit view")["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    records = _admin(server, "ListAuditRecords", {"KeyId": key_id})["Records"]
    assert [r["operation"] for r in records] == ["Encrypt", "DisableKey", "CreateKey"]
    assert all(key_id in r["key_arn"] for r in records)
    assert all("prev" not in r and "mac" not in r for r in records)
    errors = _admin(server, "ListAuditRecords", {"KeyId": key_id, "Outcome": "error"})
    assert [(r["operation"], r["error_code"]) for r in errors["Records"]] == [
        ("Encrypt", "DisabledException")
    ]
    one = _admin(server, "ListAuditRecords", {"Operation": "CreateKey", "Limit": 1})["Records"]
    assert len(one) == 1 and one[0]["operation"] == "CreateKey"
    by_principal = _admin(server, "ListAuditRecords", {"Principal": "user/admin", "KeyId": key_id})[
        "Records"
    ]
    assert len(by_principal) == 3


def test_list_audit_records_verifies_the_chain_on_request(server: Server) -> None:
    plain = _admin(server, "ListAuditRecords", {"Limit": 1})
    assert "Chain" not in plain
    chain = _admin(server, "ListAuditRecords", {"Limit": 1, "Verify": True})["Chain"]
    assert chain["Ok"] is True and chain["Anchored"] is True
    assert chain["Records"] >= 1 and chain["Segments"] >= 1


def test_list_audit_records_reports_a_broken_chain(fresh_server: Server) -> None:
    fresh_server.client().create_key(Description="to be edited")
    segment: Path = sorted((fresh_server.data_dir / "audit").glob("*.jsonl"))[0]
    text = segment.read_text()
    assert "to be edited" not in text  # (descriptions are not audited; edit a record)
    lines = text.splitlines(keepends=True)
    lines[0] = lines[0].replace('"outcome":"success"', '"outcome":"error"', 1)
    segment.write_text("".join(lines))
    chain = _admin(fresh_server, "ListAuditRecords", {"Verify": True})["Chain"]
    assert chain["Ok"] is False
    assert "line 1" in chain["Problem"]


def test_list_audit_records_pages_with_a_marker(server: Server) -> None:
    kms = server.client()
    key_id = kms.create_key(Description="paged")["KeyMetadata"]["KeyId"]
    for _ in range(4):
        kms.describe_key(KeyId=key_id)
    seen: list[dict[str, Any]] = []
    marker = None
    for _ in range(10):
        body: dict[str, Any] = {"KeyId": key_id, "Limit": 2}
        if marker is not None:
            body["Marker"] = marker
        page = _admin(server, "ListAuditRecords", body)
        seen += page["Records"]
        marker = page.get("NextMarker")
        if marker is None:
            break
    assert [r["operation"] for r in seen] == ["DescribeKey"] * 4 + ["CreateKey"]
    assert len({(r["segment"], r["seq"]) for r in seen}) == 5  # no record twice
    for bad in ("x", "a|b|c", "2026|s|-1", "|" * 300, "a|b|\u00b2", "a|b|" + "9" * 30):
        with pytest.raises(DevCallError) as refused:
            _admin(server, "ListAuditRecords", {"Marker": bad})
        assert refused.value.code == "ValidationException"


def test_list_audit_records_reads_a_bounded_tail(fresh_server: Server) -> None:
    """However large the log, one call reads at most TAIL_BYTES of it: a
    record written before 5 MiB of later records is out of its reach."""
    from keycask.service.core.handlers.inspection import TAIL_BYTES

    kms = fresh_server.client()
    early = kms.create_key(Description="early")["KeyMetadata"]["KeyId"]
    segment: Path = sorted((fresh_server.data_dir / "audit").glob("*.jsonl"))[0]
    assert _admin(fresh_server, "ListAuditRecords", {"KeyId": early})["Records"]
    # Later records, of this account, until the log has grown past the bound.
    start = segment.stat().st_size
    later = kms.create_key()["KeyMetadata"]["KeyId"]
    big = {f"k{n}": "v" * 200 for n in range(40)}
    while segment.stat().st_size - start < TAIL_BYTES + 1024 * 1024:
        kms.encrypt(KeyId=later, Plaintext=b"x", EncryptionContext=big)
    missed = _admin(fresh_server, "ListAuditRecords", {"KeyId": early})
    # Not found, and said so: the window ran out before the log's start.
    assert missed["Records"] == [] and missed["OlderRecordsNotRead"] is True
    assert _admin(fresh_server, "ListAuditRecords", {"KeyId": later, "Limit": 1})["Records"]


def test_list_audit_records_verifies_at_most_once_per_interval(fresh_server: Server) -> None:
    """A Verify within 10 s of the last is answered with that verification's
    result (the log is not read again), for any account."""
    chain = _admin(fresh_server, "ListAuditRecords", {"Verify": True})["Chain"]
    assert chain["Ok"] is True
    assert "OlderRecordsNotRead" not in _admin(fresh_server, "ListAuditRecords", {})
    fresh_server.client().create_key(Description="written after the verification")
    again = _admin(fresh_server, "ListAuditRecords", {"Verify": True})["Chain"]
    assert again == chain  # the records written since are not counted: not read again
    made = fresh_server.cli(
        "principals", "create", "verifier", "--json", "--admin", "--account", OTHER, "--offline"
    )
    other = json.loads(made.stdout)
    creds = (other["AccessKeyId"], other["SecretAccessKey"])
    assert _admin(fresh_server, "ListAuditRecords", {"Verify": True}, creds)["Chain"] == chain
    # Once the interval is over, the log is read again.
    time.sleep(10.5)
    later = _admin(fresh_server, "ListAuditRecords", {"Verify": True})["Chain"]
    assert later["Ok"] is True and later["Records"] > chain["Records"]


def test_list_audit_records_shows_only_the_callers_account(server: Server) -> None:
    made = server.cli(
        "principals", "create", f"other-{uuid.uuid4().hex[:6]}", "--json", "--admin",
        "--account", OTHER, "--offline",
    )  # fmt: skip
    other = json.loads(made.stdout)
    other_creds = (other["AccessKeyId"], other["SecretAccessKey"])
    theirs = server.client(access_key=other_creds).create_key(Description="other account")
    their_key = theirs["KeyMetadata"]["KeyId"]
    mine = _admin(server, "ListAuditRecords", {"Limit": 500})["Records"]
    assert mine
    assert all(ACCOUNT in f"{r['principal']} {r['key_arn']}" for r in mine)
    assert not [r for r in mine if their_key in str(r["key_arn"])]
    seen = _admin(server, "ListAuditRecords", {"KeyId": their_key}, other_creds)["Records"]
    assert [r["operation"] for r in seen] == ["CreateKey"]


def test_list_audit_records_needs_its_permission_and_is_audited(server: Server) -> None:
    with pytest.raises(DevCallError) as caught:
        _admin(server, "ListAuditRecords", {}, _user(server))
    assert caught.value.code == "AccessDeniedException"
    assert "keycask:ListAuditRecords" in caught.value.message
    allowed = _user(server, "keycask:ListAuditRecords")
    assert "Records" in _admin(server, "ListAuditRecords", {"Limit": 5}, allowed)
    ops = [r["operation"] for r in _records(server)]
    assert "KeycaskAdmin.ListAuditRecords" in ops
    with pytest.raises(DevCallError) as caught:
        _admin(server, "ListAuditRecords", {"Limit": 0})
    assert caught.value.code == "ValidationException"
    with pytest.raises(DevCallError) as caught:
        _admin(server, "ListAuditRecords", {"Outcome": "maybe"})
    assert caught.value.code == "ValidationException"


# -- WhoCan --


def test_who_can_lists_the_ways_an_action_is_allowed(server: Server) -> None:
    kms = server.client()
    key_id = kms.create_key(Description="who can")["KeyMetadata"]["KeyId"]
    _user(server, "kms:Decrypt")
    grant_to = f"arn:aws:iam::{ACCOUNT}:user/grantee-{uuid.uuid4().hex[:6]}"
    kms.create_grant(KeyId=key_id, GranteePrincipal=grant_to, Operations=["Decrypt"])
    answer = _admin(server, "WhoCan", {"KeyId": key_id, "Action": "decrypt"})
    assert answer["Action"] == "kms:Decrypt"
    assert answer["KeyArn"].endswith(key_id)
    allowed = answer["Allowed"]
    kinds = {(f["kind"], f["principal"]) for f in allowed}
    assert ("principal", f"arn:aws:iam::{ACCOUNT}:user/admin") in kinds
    assert ("account", f"arn:aws:iam::{ACCOUNT}:root") in kinds
    assert ("grant", grant_to) in kinds
    # The user whose identity policy allows kms:Decrypt, through the key
    # policy's delegation to the account.
    named = {f["principal"] for f in allowed if f["kind"] == "principal"}
    assert any(arn.startswith(f"arn:aws:iam::{ACCOUNT}:user/console-") for arn in named)
    # An action it does not have: not listed.
    signers = _admin(server, "WhoCan", {"KeyId": key_id, "Action": "kms:PutKeyPolicy"})
    users = f"arn:aws:iam::{ACCOUNT}:user/console-"
    assert not [f for f in signers["Allowed"] if f["principal"].startswith(users)]
    records = [r for r in _records(server) if r["operation"] == "KeycaskAdmin.WhoCan"]
    assert records and records[-1]["key_arn"].endswith(key_id)


def test_who_can_refuses_other_accounts_unknown_actions_and_the_unpermitted(
    server: Server,
) -> None:
    key_id = server.client().create_key()["KeyMetadata"]["KeyId"]
    other_arn = f"arn:aws:kms:us-east-1:{OTHER}:key/{uuid.uuid4()}"
    for body, code, message in (
        ({"KeyId": other_arn, "Action": "kms:Decrypt"}, "ValidationException", "own account"),
        ({"KeyId": key_id, "Action": "kms:Fly"}, "ValidationException", "not a KMS action"),
        ({"KeyId": str(uuid.uuid4()), "Action": "kms:Decrypt"}, "NotFoundException", ""),
    ):
        with pytest.raises(DevCallError) as caught:
            _admin(server, "WhoCan", body)
        assert caught.value.code == code
        assert message in caught.value.message
    with pytest.raises(DevCallError) as caught:
        _admin(server, "WhoCan", {"KeyId": key_id, "Action": "kms:Decrypt"}, _user(server))
    assert caught.value.code == "AccessDeniedException"
    assert "keycask:WhoCan" in caught.value.message


# -- ListNodes --


def _nodes(server: Server, creds: Any = None) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:  # the first heartbeat comes with the maintenance timer's first tick
        nodes: list[dict[str, Any]] = _admin(server, "ListNodes", {}, creds)["Nodes"]
        if nodes or time.monotonic() > deadline:
            return nodes
        time.sleep(0.2)


def test_list_nodes_shows_this_node_needs_its_permission_and_is_audited(server: Server) -> None:
    [node] = _nodes(server)
    assert node["This"] is True and node["State"] == "ready"
    assert node["Version"] == keycask.__version__
    assert node["Address"] == server.endpoint
    assert node["NodeId"] == (server.data_dir / "node-id").read_text().strip()
    assert set(node) == {
        "NodeId", "Name", "Address", "Version", "Started", "LastHeartbeat", "State", "This",
    }  # fmt: skip
    with pytest.raises(DevCallError) as caught:
        _admin(server, "ListNodes", {}, _user(server))
    assert caught.value.code == "AccessDeniedException"
    assert "keycask:ListNodes" in caught.value.message
    allowed = _user(server, "keycask:ListNodes")
    assert [n["NodeId"] for n in _nodes(server, allowed)] == [node["NodeId"]]
    outcomes = [
        r["outcome"] for r in _records(server) if r["operation"] == "KeycaskAdmin.ListNodes"
    ]
    assert "success" in outcomes and "error" in outcomes
    with pytest.raises(DevCallError) as caught:
        _admin(server, "ListNodes", {"Account": ACCOUNT})
    assert caught.value.code == "ValidationException"


def test_a_server_with_workers_is_one_node(workers: Server) -> None:
    [node] = _nodes(workers)
    time.sleep(6)  # past a heartbeat interval: no worker but the first adds an entry
    for _ in range(6):  # answered by either worker
        assert [(n["NodeId"], n["This"]) for n in _nodes(workers)] == [(node["NodeId"], True)]
