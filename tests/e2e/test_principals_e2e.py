"""Principals, identity policies, tags and access keys, managed through the
running server (``KeycaskAdmin.<Op>``) by the ``keycask principals`` CLI.

Every call is signed, authorized by identity policies and audited; a new
access key works at once, and a deactivated or deleted one stops at once; a
secret access key is shown once and is never at rest in the clear.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawResponse, send, sign
from test_no_plaintext_at_rest import Needle, _prove_scan_works, _text, scan

from conftest import Server
from keycask import config
from keycask.app import open_store
from keycask.auth.credentials import new_access_key_id, new_secret

ACCOUNT = "000000000000"

LIST_KEYS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}],
}
TENANT_A = {
    "Version": "2012-10-17",
    "Statement": {
        "Effect": "Allow",
        "Action": "kms:ListKeys",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/tenant": "a"}},
    },
}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _error(call: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def _records(server: Any) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((Path(server.data_dir) / "audit").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _admin(server: Any, creds: tuple[str, str], op: str, body: Any) -> RawResponse:
    """A signed KeycaskAdmin call, sent as is."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = sign(server.endpoint, creds, target=f"KeycaskAdmin.{op}", body=data)
    return send(server.endpoint, request)


class Cli:
    """``keycask principals ...`` against one server, counting the admin
    operations it asks for so the audit log can be checked exactly."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.calls: Counter[str] = Counter()

    def ok(self, op: str, *args: str) -> str:
        proc = self.server.cli("principals", *args, check=False)
        self.calls[op] += 1
        assert proc.returncode == 0, proc.stderr
        return str(proc.stdout)

    def json(self, op: str, *args: str) -> Any:
        return json.loads(self.ok(op, *args))

    def fails(self, op: str, *args: str) -> str:
        proc = self.server.cli("principals", *args, check=False)
        self.calls[op] += 1
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert proc.stderr.startswith("keycask: "), proc.stderr
        return str(proc.stderr)


def test_principals_policies_tags_and_access_keys(fresh_server: Any, tmp_path: Path) -> None:
    server = fresh_server
    cli = Cli(server)
    admin = server.client()
    secrets: dict[str, str] = {}

    # Users and roles with tags, made through the server, JSON out.
    alice = cli.json(
        "CreatePrincipal", "create", "alice", "--tag", "tenant=a", "--tag", "team=x", "--json"
    )
    assert alice["Arn"] == "arn:aws:iam::000000000000:user/alice"
    assert alice["AccessKeyId"].startswith("AKKC") and len(alice["AccessKeyId"]) == 20
    assert len(alice["SecretAccessKey"]) == 40
    secrets["alice 1"] = alice["SecretAccessKey"]
    bob = cli.json("CreatePrincipal", "create", "bob", "--json")
    secrets["bob"] = bob["SecretAccessKey"]
    role = cli.json(
        "CreatePrincipal", "create", "deployer", "--role", "--tag", "tenant=b", "--json"
    )
    assert role["Arn"] == "arn:aws:iam::000000000000:role/deployer"
    secrets["deployer"] = role["SecretAccessKey"]
    shown = cli.json("GetPrincipal", "get", "alice", "--json")
    assert shown["Tags"] == {"tenant": "a", "team": "x"}
    assert (shown["Kind"], shown["Admin"], shown["PolicyNames"]) == ("user", False, [])
    assert cli.json("GetPrincipal", "get", "deployer", "--json")["Kind"] == "role"
    listed = cli.json("ListPrincipals", "list", "--json")
    assert {p["Name"] for p in listed} == {"admin", "alice", "bob", "deployer"}
    assert "AlreadyExistsException" in cli.fails("CreatePrincipal", "create", "alice")

    # The new key authenticates: with no policy, ListKeys is denied (not unrecognized).
    alice_kms = server.client((alice["AccessKeyId"], alice["SecretAccessKey"]))
    role_kms = server.client((role["AccessKeyId"], role["SecretAccessKey"]))
    assert _error(alice_kms.list_keys) == "AccessDeniedException"
    assert _error(role_kms.list_keys) == "AccessDeniedException"

    # An identity policy allows, at once; deleting it takes the right away at once.
    policy = tmp_path / "list-keys.json"
    policy.write_text(json.dumps(LIST_KEYS))
    cli.ok(
        "PutPrincipalPolicy", "put-policy", "alice", "--policy-name", "lk", "--file", str(policy)
    )
    assert alice_kms.list_keys()["Keys"] == []
    assert cli.json("GetPrincipal", "get", "alice", "--json")["PolicyNames"] == ["lk"]
    text = cli.ok("GetPrincipalPolicy", "get-policy", "alice", "--policy-name", "lk")
    assert json.loads(text) == LIST_KEYS
    cli.ok("DeletePrincipalPolicy", "delete-policy", "alice", "--policy-name", "lk")
    assert _error(alice_kms.list_keys) == "AccessDeniedException"
    assert "NotFoundException" in cli.fails(
        "DeletePrincipalPolicy", "delete-policy", "alice", "--policy-name", "lk"
    )

    # Malformed policies are refused, naming why.
    bad = tmp_path / "bad.json"
    for document in (
        '{"Statement": {"Effect": "Allow", "Action": "kms:NoSuchThing", "Resource": "*"}}',
        '{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}}',
        "not json",
    ):
        bad.write_text(document)
        error = cli.fails(
            "PutPrincipalPolicy", "put-policy", "alice", "--policy-name", "bad", "--file", str(bad)
        )
        assert error.startswith("keycask: MalformedPolicyDocumentException: "), error
    assert cli.json("GetPrincipal", "get", "alice", "--json")["PolicyNames"] == []

    # Several access keys: a second works, listing never shows secrets.
    cli.ok(
        "PutPrincipalPolicy", "put-policy", "alice", "--policy-name", "lk", "--file", str(policy)
    )
    second = cli.json("CreateAccessKey", "access-keys", "create", "alice", "--json")
    assert set(second) == {"AccessKeyId", "SecretAccessKey"}
    secrets["alice 2"] = second["SecretAccessKey"]
    alice_kms2 = server.client((second["AccessKeyId"], second["SecretAccessKey"]))
    assert alice_kms2.list_keys()["Keys"] == []
    raw_list = cli.ok("ListAccessKeys", "access-keys", "list", "alice", "--json")
    keys = json.loads(raw_list)
    assert {k["AccessKeyId"] for k in keys} == {alice["AccessKeyId"], second["AccessKeyId"]}
    assert {k["Status"] for k in keys} == {"Active"}
    assert all(set(k) == {"AccessKeyId", "Status", "CreateDate"} for k in keys)
    assert all(secret not in raw_list for secret in secrets.values())
    # As text: one line per key, no secret either.
    text_list = cli.ok("ListAccessKeys", "access-keys", "list", "alice")
    assert sorted(line.split()[:2] for line in text_list.splitlines()) == sorted(
        [k["AccessKeyId"], "Active"] for k in keys
    )
    assert all(secret not in text_list for secret in secrets.values())
    shown = cli.ok("GetPrincipal", "get", "alice")
    assert "Arn:            arn:aws:iam::000000000000:user/alice" in shown.splitlines()

    # Deactivated: refused at once; activated again: works; deleted: refused.
    cli.ok("UpdateAccessKey", "access-keys", "deactivate", second["AccessKeyId"])
    assert _error(alice_kms2.list_keys) == "UnrecognizedClientException"
    assert alice_kms.list_keys()["Keys"] == []  # the other key still works
    statuses = {
        k["AccessKeyId"]: k["Status"]
        for k in cli.json("ListAccessKeys", "access-keys", "list", "alice", "--json")
    }
    assert statuses[second["AccessKeyId"]] == "Inactive"
    cli.ok("UpdateAccessKey", "access-keys", "activate", second["AccessKeyId"])
    assert alice_kms2.list_keys()["Keys"] == []
    cli.ok("DeleteAccessKey", "access-keys", "delete", second["AccessKeyId"])
    assert _error(alice_kms2.list_keys) == "UnrecognizedClientException"
    remaining = cli.json("ListAccessKeys", "access-keys", "list", "alice", "--json")
    assert [k["AccessKeyId"] for k in remaining] == [alice["AccessKeyId"]]
    assert "NotFoundException" in cli.fails(
        "DeleteAccessKey", "access-keys", "delete", second["AccessKeyId"]
    )

    # aws:PrincipalTag: the same policy allows alice (tenant=a), not bob, not
    # the role (tenant=b); tagging bob lets him in at once, untagging out.
    tenant = tmp_path / "tenant-a.json"
    tenant.write_text(json.dumps(TENANT_A))
    bob_kms = server.client((bob["AccessKeyId"], bob["SecretAccessKey"]))
    for name in ("alice", "bob", "deployer"):
        cli.ok(
            "PutPrincipalPolicy", "put-policy", name, "--policy-name", "t", "--file", str(tenant)
        )
    cli.ok("DeletePrincipalPolicy", "delete-policy", "alice", "--policy-name", "lk")
    assert alice_kms.list_keys()["Keys"] == []
    assert _error(bob_kms.list_keys) == "AccessDeniedException"
    assert _error(role_kms.list_keys) == "AccessDeniedException"
    cli.ok("TagPrincipal", "tag", "bob", "tenant=a", "env=dev")
    assert bob_kms.list_keys()["Keys"] == []
    assert cli.json("GetPrincipal", "get", "bob", "--json")["Tags"] == {"tenant": "a", "env": "dev"}
    cli.ok("UntagPrincipal", "untag", "bob", "tenant")
    assert _error(bob_kms.list_keys) == "AccessDeniedException"
    assert cli.json("GetPrincipal", "get", "bob", "--json")["Tags"] == {"env": "dev"}

    # A non-admin cannot manage principals...
    alice_creds = (alice["AccessKeyId"], alice["SecretAccessKey"])
    denied = _admin(server, alice_creds, "CreatePrincipal", {"Name": "mallory"})
    denied.assert_aws_error("AccessDeniedException")
    assert "keycask:CreatePrincipal" in denied.message
    # ... also not through the CLI with its own profile.
    creds_file = tmp_path / "alice-credentials"
    creds_file.write_text(
        f"[alice]\naws_access_key_id = {alice['AccessKeyId']}\n"
        f"aws_secret_access_key = {alice['SecretAccessKey']}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keycask.cli",
            "principals",
            "create",
            "mallory",
            "--json",
            "--profile",
            "alice",
            "--endpoint-url",
            server.endpoint,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        env={**server.env(), "AWS_SHARED_CREDENTIALS_FILE": str(creds_file)},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("keycask: AccessDeniedException: "), proc.stderr
    # ... unless a policy allows it, on its own ARN only.
    own = tmp_path / "own-keys.json"
    own.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": ["keycask:ListAccessKeys", "keycask:GetPrincipal"],
                    "Resource": alice["Arn"],
                },
            }
        )
    )
    cli.ok("PutPrincipalPolicy", "put-policy", "alice", "--policy-name", "own", "--file", str(own))
    mine = _admin(server, alice_creds, "ListAccessKeys", {"Name": "alice"})
    assert mine.status == 200, mine.body
    assert [k["AccessKeyId"] for k in mine.json()["AccessKeys"]] == [alice["AccessKeyId"]]
    _admin(server, alice_creds, "ListAccessKeys", {"Name": "bob"}).assert_aws_error(
        "AccessDeniedException"
    )
    _admin(server, alice_creds, "CreateAccessKey", {"Name": "alice"}).assert_aws_error(
        "AccessDeniedException"
    )
    raw_calls = Counter({"CreatePrincipal": 1, "ListAccessKeys": 2, "CreateAccessKey": 1})
    raw_calls["CreatePrincipal"] += 1  # the CLI call with alice's profile

    # Deleting a principal takes its keys with it; nobody deletes itself.
    cli.ok("DeletePrincipal", "delete", "bob")
    assert _error(bob_kms.list_keys) == "UnrecognizedClientException"
    assert "NotFoundException" in cli.fails("GetPrincipal", "get", "bob")
    assert "ValidationException" in cli.fails("DeletePrincipal", "delete", "admin")
    assert admin.list_keys()["Keys"] == []

    # Every admin call is in the audit log, under KeycaskAdmin.<Op>, with
    # the caller; none of them carries a secret.
    records = [r for r in _records(server) if str(r["operation"]).startswith("KeycaskAdmin.")]
    seen = Counter(r["operation"].removeprefix("KeycaskAdmin.") for r in records)
    assert seen == cli.calls + raw_calls
    admin_akid = server.credentials()[0]
    by_admin = [r for r in records if r["access_key_id"] == admin_akid]
    assert len(by_admin) == sum(cli.calls.values())
    assert all(r["principal"] == "arn:aws:iam::000000000000:user/admin" for r in by_admin)
    refused = [r for r in records if r["access_key_id"] == alice["AccessKeyId"]]
    assert {(r["decision"], r["error_code"]) for r in refused} == {
        ("deny", "AccessDeniedException"),
        ("allow", None),
    }
    assert server.cli("audit", "verify").returncode == 0

    # No secret access key is at rest in the clear, running or stopped.
    needles: list[Needle] = [_text(f"secret of {n}", s) for n, s in secrets.items()]
    assert scan(server, needles) == []
    _prove_scan_works(server, needles)
    assert server.stop(signal.SIGTERM) == 0
    assert scan(server, needles) == []
    credentials_file = (Path(server.data_dir) / "credentials").read_text()
    assert all(secret not in credentials_file for secret in secrets.values())


def test_an_account_is_managed_by_its_own_admins(fresh_server: Any) -> None:
    server = fresh_server
    other = "111111111111"
    # The dev admin (account 000000000000) cannot act in another account...
    error = server.cli("principals", "create", "x", "--account", other, check=False)
    assert error.returncode == 1
    assert error.stderr.startswith("keycask: AccessDeniedException: "), error.stderr
    # ... the local operator makes that account's first admin offline ...
    first = json.loads(
        server.cli(
            "principals", "create", "boss", "--admin", "--account", other, "--offline", "--json"
        ).stdout
    )
    assert first["Arn"] == f"arn:aws:iam::{other}:user/boss"
    boss = (first["AccessKeyId"], first["SecretAccessKey"])
    offline = [r for r in _records(server) if r["operation"] == "keycask:CreatePrincipal"]
    assert any(first["Arn"] in (r["detail"] or "") for r in offline)
    # ... who manages it through the server, in its own account by default.
    made = _admin(server, boss, "CreatePrincipal", {"Name": "worker", "Tags": {"tenant": "a"}})
    assert made.status == 200, made.body
    assert made.json()["Arn"] == f"arn:aws:iam::{other}:user/worker"
    listed = _admin(server, boss, "ListPrincipals", {}).json()
    assert [p["Name"] for p in listed["Principals"]] == ["boss", "worker"]
    assert listed["Truncated"] is False
    # Neither admin reaches into the other's account.
    _admin(
        server, boss, "GetPrincipal", {"Name": "admin", "Account": "000000000000"}
    ).assert_aws_error("AccessDeniedException")
    dev_admin = server.credentials()
    _admin(
        server, dev_admin, "ListAccessKeys", {"Name": "worker", "Account": other}
    ).assert_aws_error("AccessDeniedException")
    # Access keys of another account are as good as absent.
    _admin(
        server, dev_admin, "DeleteAccessKey", {"AccessKeyId": made.json()["AccessKeyId"]}
    ).assert_aws_error("NotFoundException")
    worker_kms = server.client((made.json()["AccessKeyId"], made.json()["SecretAccessKey"]))
    assert _error(worker_kms.list_keys) == "AccessDeniedException"


def test_only_admins_create_or_change_admins(server: Any) -> None:
    dev_admin = server.credentials()
    name = _unique("delegate")
    made = _admin(server, dev_admin, "CreatePrincipal", {"Name": name}).json()
    delegate = (made["AccessKeyId"], made["SecretAccessKey"])
    everything = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "keycask:*", "Resource": "*"},
    }
    document = json.dumps(everything)
    body = {"Name": name, "PolicyName": "all", "PolicyDocument": document}
    put = _admin(server, dev_admin, "PutPrincipalPolicy", body)
    assert put.status == 200, put.body
    # Allowed every keycask: action, it manages plain principals ...
    plain = _unique("plain")
    assert _admin(server, delegate, "CreatePrincipal", {"Name": plain}).status == 200
    assert _admin(server, delegate, "CreateAccessKey", {"Name": plain}).status == 200
    # ... but cannot make an administrator or take over one.
    for op, body in (
        ("CreatePrincipal", {"Name": _unique("boss"), "Admin": True}),
        ("CreateAccessKey", {"Name": "admin"}),
        (
            "PutPrincipalPolicy",
            {"Name": "admin", "PolicyName": "x", "PolicyDocument": json.dumps(everything)},
        ),
        ("TagPrincipal", {"Name": "admin", "Tags": {"a": "b"}}),
        ("DeletePrincipal", {"Name": "admin"}),
        ("UpdateAccessKey", {"AccessKeyId": dev_admin[0], "Status": "Inactive"}),
        ("DeleteAccessKey", {"AccessKeyId": dev_admin[0]}),
    ):
        answer = _admin(server, delegate, op, body)
        answer.assert_aws_error("AccessDeniedException")
        assert "only administrators" in answer.message, answer.message
    # Reading an administrator is a matter of policy.
    assert _admin(server, delegate, "GetPrincipal", {"Name": "admin"}).json()["Admin"] is True
    assert server.client().list_keys() is not None  # the dev admin is untouched


def test_malformed_admin_requests(server: Any) -> None:
    creds = server.credentials()
    name = _unique("shape")
    _admin(server, creds, "NoSuchThing", {}).assert_aws_error("UnknownOperationException")
    _admin(server, creds, "CreatePrincipal", b"{not json").assert_aws_error(
        "SerializationException"
    )
    _admin(server, creds, "CreatePrincipal", b"[1]").assert_aws_error("SerializationException")
    for body in (
        {},
        {"Name": name, "Surprise": 1},
        {"Name": 7},
        {"Name": "no/slashes"},
        {"Name": name, "Admin": "yes"},
        {"Name": name, "Tags": {"aws:reserved": "x"}},
        {"Name": name, "Tags": {"ok": 5}},
        {"Name": name, "Tags": {"T": "1", "t": "2"}},
        {"Name": name, "Account": "12"},
    ):
        _admin(server, creds, "CreatePrincipal", body).assert_aws_error("ValidationException")
    for body in (
        {"Name": "admin", "PolicyName": "bad name!", "PolicyDocument": json.dumps(LIST_KEYS)},
        {"Name": "admin", "PolicyName": "p", "PolicyDocument": {"Statement": []}},
    ):
        _admin(server, creds, "PutPrincipalPolicy", body).assert_aws_error("ValidationException")
    _admin(
        server, creds, "UpdateAccessKey", {"AccessKeyId": creds[0], "Status": "Off"}
    ).assert_aws_error("ValidationException")
    _admin(server, creds, "ListPrincipals", {"Limit": 0}).assert_aws_error("ValidationException")
    _admin(server, creds, "ListPrincipals", {"Marker": "../x"}).assert_aws_error(
        "InvalidMarkerException"
    )
    # Signed by nobody: refused before anything else.
    _admin(server, ("AKKC" + "A" * 16, "x" * 40), "ListPrincipals", {}).assert_aws_error(
        "UnrecognizedClientException"
    )
    # A wrong content type, as for any KMS call.
    request = sign(
        server.endpoint,
        creds,
        target="KeycaskAdmin.ListPrincipals",
        body=b"{}",
        content_type="text/plain",
    )
    send(server.endpoint, request).assert_aws_error("SerializationException")
    # Nothing was created by any of it.
    assert _admin(server, creds, "GetPrincipal", {"Name": name}).error_type == "NotFoundException"


def test_list_principals_pages(server: Any) -> None:
    creds = server.credentials()
    prefix = _unique("page")
    for i in range(5):
        assert _admin(server, creds, "CreatePrincipal", {"Name": f"{prefix}-{i}"}).status == 200
    names: list[str] = []
    body: dict[str, Any] = {"Limit": 2}
    while True:
        page = _admin(server, creds, "ListPrincipals", body).json()
        assert len(page["Principals"]) <= 2
        names += [p["Name"] for p in page["Principals"]]
        if not page["Truncated"]:
            break
        body = {"Limit": 2, "Marker": page["NextMarker"]}
    assert [n for n in names if n.startswith(prefix)] == [f"{prefix}-{i}" for i in range(5)]
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_access_key_changes_reach_every_worker(tmp_path: Path) -> None:
    """A change committed by one worker is seen by the next request on any
    worker: policies and deactivation alike."""
    server = Server(tmp_path / "data", workers=2).start()
    try:
        cli = Cli(server)
        made = cli.json("CreatePrincipal", "create", "wanda", "--json")
        creds = (made["AccessKeyId"], made["SecretAccessKey"])
        # Kept-alive clients, spread over both workers by the kernel, each
        # having cached the key and its principal.
        clients = [server.client(creds) for _ in range(16)]
        for client in clients:
            assert _error(client.list_keys) == "AccessDeniedException"
        policy = tmp_path / "list-keys.json"
        policy.write_text(json.dumps(LIST_KEYS))
        cli.ok(
            "PutPrincipalPolicy",
            "put-policy",
            "wanda",
            "--policy-name",
            "lk",
            "--file",
            str(policy),
        )
        for client in clients:
            assert client.list_keys()["Keys"] == []
        cli.ok("UpdateAccessKey", "access-keys", "deactivate", made["AccessKeyId"])
        for client in clients:
            assert _error(client.list_keys) == "UnrecognizedClientException"
        segments = {p.name for p in (server.data_dir / "audit").glob("server-*.jsonl")}
        assert segments == {"server-0.jsonl", "server-1.jsonl"}
    finally:
        server.stop(signal.SIGKILL)


async def _write_first_format(data_dir: Path) -> dict[str, tuple[str, str]]:
    """Principals and access keys exactly as keycask's first release stored
    them (no tags, no policies, no list of the principal's access keys)."""
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    keys = {
        "old-1": ("legacy", new_access_key_id(), new_secret()),
        "old-2": ("legacy", new_access_key_id(), new_secret()),
        "other": ("neighbour", new_access_key_id(), new_secret()),
    }
    writes = [
        barrier.put(
            f"principal/{ACCOUNT}/{name}", orjson.dumps({"admin": False, "created": 1.0}), expect=0
        )
        for name in ("legacy", "neighbour")
    ]
    for owner, akid, secret in keys.values():
        doc = {
            "account": ACCOUNT,
            "name": owner,
            "admin": False,
            "active": True,
            "secret": secret,
            "created": 2.0,
        }
        writes.append(barrier.put(f"accesskey/{akid}", orjson.dumps(doc), expect=0))
    try:
        await barrier.commit(writes)
    finally:
        await storage.close()
    return {label: (akid, secret) for label, (_, akid, secret) in keys.items()}


def test_principals_from_the_first_release(tmp_path: Path) -> None:
    old = asyncio.run(_write_first_format(tmp_path / "data"))
    server = Server(tmp_path / "data").start()
    try:
        cli = Cli(server)
        listed = cli.json("ListAccessKeys", "access-keys", "list", "legacy", "--json")
        assert sorted(k["AccessKeyId"] for k in listed) == sorted(
            (old["old-1"][0], old["old-2"][0])
        )
        legacy = server.client(old["old-1"])
        assert _error(legacy.list_keys) == "AccessDeniedException"
        # Stored without a unique id: one derived from the ARN and creation
        # time, the same on every read and once the principal is rewritten.
        unique_id = cli.json("GetPrincipal", "get", "legacy", "--json")["UniqueId"]
        assert unique_id.startswith("AIDA") and len(unique_id) == 21
        assert cli.json("GetPrincipal", "get", "neighbour", "--json")["UniqueId"] != unique_id
        third = cli.json("CreateAccessKey", "access-keys", "create", "legacy", "--json")
        assert cli.json("GetPrincipal", "get", "legacy", "--json")["UniqueId"] == unique_id
        listed = cli.json("ListAccessKeys", "access-keys", "list", "legacy", "--json")
        assert len(listed) == 3
        cli.ok("DeleteAccessKey", "access-keys", "delete", old["old-1"][0])
        assert _error(legacy.list_keys) == "UnrecognizedClientException"
        listed = cli.json("ListAccessKeys", "access-keys", "list", "legacy", "--json")
        assert sorted(k["AccessKeyId"] for k in listed) == sorted(
            (old["old-2"][0], third["AccessKeyId"])
        )
        assert _error(server.client(old["old-2"]).list_keys) == "AccessDeniedException"
        assert cli.json("GetPrincipal", "get", "neighbour", "--json")["AccessKeyCount"] == 1
    finally:
        server.stop(signal.SIGKILL)
