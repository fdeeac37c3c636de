"""The tools that work on a data dir directly, on production stores (issue
24, items 1 and 6): ``policy reset | lint | simulate | who-can``,
``principals create --admin --offline`` and ``audit verify`` open a Shamir
(or passphrase) sealed store with the seal's input, on SQLite and on
PostgreSQL (``--storage`` / ``KEYCASK_STORAGE``), while the servers run on
it; the servers see a reset at their next request, and verify says plainly
when it could not check the anchors."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cluster import pg_schema, poll
from docwalk import blocks, commands, section
from production import Production, keycask, unsealed_shamir

from conftest import REPO
from keycask.keys.model import default_key_policy

PLACEHOLDER_KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
PRODUCTION_DIR = "/var/lib/keycask"


def _lock_out(kms: Any, key: dict[str, Any]) -> None:
    """A key policy that trusts only a principal that does not exist."""
    lockout = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{key['AWSAccountId']}:user/nobody"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    kms.put_key_policy(
        KeyId=key["KeyId"],
        PolicyName="default",
        Policy=json.dumps(lockout),
        BypassPolicyLockoutSafetyCheck=True,
    )
    with pytest.raises(ClientError) as denied:
        kms.describe_key(KeyId=key["KeyId"])
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"


def _tool(
    data_dir: Path, shares: list[str] | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``keycask <args> --data-dir <data_dir>``, with ``shares`` on stdin."""
    extra = ["--shares-file", "-"] if shares is not None else []
    stdin = "\n".join(shares) + "\n" if shares is not None else ""
    return keycask(*args, "--data-dir", str(data_dir), *extra, stdin=stdin, env=env, check=False)


def _records(data_dir: Path, operation: str) -> list[dict[str, Any]]:
    path = data_dir / "audit" / "cli.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in lines if r["operation"] == operation]


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    with unsealed_shamir(tmp_path / "data") as server:
        yield server


def test_lockout_recovery_on_a_shamir_production_store(prod: Production) -> None:
    kms = prod.client()
    key = kms.create_key(Description="about to be locked")["KeyMetadata"]
    _lock_out(kms, key)
    data, shares = prod.data_dir, prod.shares[:3]
    admin = f"arn:aws:iam::{key['AWSAccountId']}:user/admin"

    # Without the seal's input the tools say what they need (never --dev).
    refused = _tool(data, None, "policy", "lint")
    assert refused.returncode == 1, refused
    assert "--shares-file" in refused.stderr and "--dev" not in refused.stderr, refused.stderr

    # The read-only tools, with three shares on stdin.
    simulated = _tool(data, shares, "policy", "simulate", "--principal", admin,
                      "--action", "kms:DescribeKey", "--key", key["KeyId"], "--json")  # fmt: skip
    assert simulated.returncode == 1 and json.loads(simulated.stdout)["Decision"] == "deny"
    who = _tool(data, shares, "policy", "who-can", "--key", key["KeyId"],
                "--action", "kms:PutKeyPolicy", "--json")  # fmt: skip
    assert who.returncode == 0 and json.loads(who.stdout)["Allowed"] == [], who
    lint = _tool(data, shares, "policy", "lint", "--json")
    rules = {(f["where"], f["rule"]) for f in json.loads(lint.stdout)["Findings"]}
    assert (f"key {key['Arn']}", "lockout") in rules, lint

    # The documented recovery, while the server runs: the admin has the key
    # back at once, without a restart.
    reset = _tool(data, shares, "policy", "reset", key["KeyId"])
    assert reset.returncode == 0, reset
    assert f"reset the key policy of {key['Arn']}" in reset.stdout and reset.stderr == ""
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Enabled"] is True
    stored = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    assert stored == default_key_policy(key["AWSAccountId"])
    (record,) = _records(data, "keycask:ResetKeyPolicy")
    assert record["key_arn"] == key["Arn"] and record["outcome"] == "success"

    # An account's first administrator, offline, on the production store;
    # the running server knows it at once.
    created = _tool(data, shares, "principals", "create", "boss", "--admin",
                    "--account", "111122223333", "--offline", "--json")  # fmt: skip
    assert created.returncode == 0, created
    boss = json.loads(created.stdout)
    assert boss["Arn"] == "arn:aws:iam::111122223333:user/boss"
    assert _records(data, "keycask:CreatePrincipal")
    boss_kms = boto3.client(
        "kms",
        endpoint_url=prod.endpoint,
        region_name="us-east-1",
        aws_access_key_id=boss["AccessKeyId"],
        aws_secret_access_key=boss["SecretAccessKey"],
        verify=str(prod.cert),
    )
    made = boss_kms.create_key(Description="the new account's")["KeyMetadata"]
    assert made["AWSAccountId"] == "111122223333"

    # audit verify checks the anchors with the shares; without them it says
    # so and does not pass.
    verified = _tool(data, shares, "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified
    unchecked = _tool(data, None, "audit", "verify")
    assert unchecked.returncode == 1, unchecked
    assert unchecked.stdout.startswith("NOT VERIFIED: ") and "--shares-file" in unchecked.stdout
    # A segment deleted is seen only through the anchors.
    segment = data / "audit" / "cli.jsonl"
    aside = data.parent / "cli.jsonl"
    shutil.move(segment, aside)
    try:
        missing = _tool(data, shares, "audit", "verify")
        assert missing.returncode == 1 and "segment cli is anchored" in missing.stdout, missing
        assert _tool(data, None, "audit", "verify").stdout.startswith("NOT VERIFIED")
    finally:
        shutil.move(aside, segment)


def test_lockout_recovery_on_a_postgresql_cluster(tmp_path: Path) -> None:
    with pg_schema() as dsn:
        a = Production(tmp_path / "a", tls=False)
        b = Production(tmp_path / "b", tls=False)
        try:
            _cluster(a, b, dsn)
        finally:
            for node in (a, b):
                if node.proc is not None:
                    node.stop()


def _cluster(a: Production, b: Production, dsn: str) -> None:
    init = a.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3", "--storage", dsn)
    b.init = init
    b.data_dir.mkdir(mode=0o700)
    for name in ("seal.json", "operator.json"):
        shutil.copy2(a.data_dir / name, b.data_dir / name)
        (b.data_dir / name).chmod(0o600)
    for node in (a, b):
        node.start("--storage", dsn)
        node.unseal_with(node.shares[:3])
    ka, kb = a.client(), b.client()
    key = ka.create_key(Description="locked in a cluster")["KeyMetadata"]
    _lock_out(ka, key)
    with pytest.raises(ClientError):
        kb.describe_key(KeyId=key["KeyId"])
    shares = a.shares[1:4]

    # KEYCASK_STORAGE names the store, as for the server.
    reset = _tool(a.data_dir, shares, "policy", "reset", key["Arn"],
                  env={"KEYCASK_STORAGE": dsn})  # fmt: skip
    assert reset.returncode == 0, reset
    # Both nodes see it: the commit notified them.
    assert ka.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyId"] == key["KeyId"]

    def on_b() -> bool | None:
        try:
            kb.describe_key(KeyId=key["KeyId"])
        except ClientError:
            return None
        return True

    poll("node B to see the reset", on_b, 10)

    # --storage works as well, for the read-only tools.
    lint = _tool(a.data_dir, shares, "policy", "lint", "--storage", dsn, "--json")
    assert lint.returncode in (0, 1) and "Findings" in json.loads(lint.stdout), lint

    # Every node's data dir, with the shares: ok. One left out: the anchors
    # say so. Without shares: not verified, never a bare ok.
    def verify(*nodes: Production, shares: list[str] | None) -> subprocess.CompletedProcess[str]:
        dirs = [arg for node in nodes[1:] for arg in ("--data-dir", str(node.data_dir))]
        return _tool(nodes[0].data_dir, shares, "audit", "verify", *dirs, "--storage", dsn)

    def anchored() -> bool | None:
        done = verify(a, b, shares=shares)
        return True if done.returncode == 0 and done.stdout.startswith("ok: ") else None

    poll("every node's segment anchored and verified", anchored, 10, interval=0.5)
    alone = verify(a, shares=shares)
    assert alone.returncode == 1 and "missing" in alone.stdout, alone
    unchecked = verify(a, shares=None)
    assert unchecked.returncode == 1 and unchecked.stdout.startswith("NOT VERIFIED"), unchecked


def test_the_operations_recovery_commands_work_as_written(prod: Production) -> None:
    """docs/operations.md's lockout block, on this production store: the
    data dir and key id replaced, the shares piped in as the page allows."""
    page = (REPO / "docs" / "operations.md").read_text()
    block = blocks(
        section(page, "### A key nobody can manage; an account without an administrator")
    )
    lines = [c.text for c in commands(block[0])]
    assert [line.split()[:3] for line in lines] == [
        ["keycask", "policy", "reset"],
        ["keycask", "principals", "create"],
    ]
    kms = prod.client()
    key = kms.create_key(Description="locked, then recovered")["KeyMetadata"]
    _lock_out(kms, key)
    created: dict[str, Any] = {}
    for line in lines:
        text = line.replace(PLACEHOLDER_KEY, key["KeyId"]).replace(
            PRODUCTION_DIR, str(prod.data_dir)
        )
        argv = shlex.split(text)[1:]
        json_out = ["--json"] if "principals" in argv else []
        done = keycask(*argv, *json_out, "--shares-file", "-",
                       stdin="\n".join(prod.shares[2:5]) + "\n", check=False)  # fmt: skip
        assert done.returncode == 0, (text, done)
        if json_out:
            created = json.loads(done.stdout)
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    boss = boto3.client(
        "kms",
        endpoint_url=prod.endpoint,
        region_name="us-east-1",
        aws_access_key_id=created["AccessKeyId"],
        aws_secret_access_key=created["SecretAccessKey"],
        verify=str(prod.cert),
    )
    assert boss.list_keys()["Keys"] == []
