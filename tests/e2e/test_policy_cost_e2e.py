"""Finding 3 of issue 13 against a real server: a principal allowed only
kms:CreateKey gives its key a policy with a pattern built to backtrack, then
calls Encrypt with a 30,000-character context value. Before the fix that one
request held the event loop for seconds; now it is answered from bounded
work, and the audit record says how the decision was reached."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server


def _decided_by(server: Server, request_id: str) -> str:
    for path in sorted(Path(server.data_dir / "audit").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["request_id"] == request_id:
                return str(record["decided_by"])
    raise AssertionError(f"no audit record for {request_id}")


@pytest.fixture(scope="module")
def attacker(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    name = f"creator-{uuid.uuid4().hex[:6]}"
    created = json.loads(server.cli("principals", "create", name, "--json").stdout)
    policy = tmp_path_factory.mktemp("policy") / "create-only.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:CreateKey", "Resource": "*"}]}))  # fmt: skip
    server.cli("principals", "put-policy", name, "--policy-name", "main", "--file", str(policy))
    return created["Arn"], server.client((created["AccessKeyId"], created["SecretAccessKey"]))


@pytest.mark.parametrize(
    ("pattern", "decided_by"),
    [
        # The reported pattern: the tail is compared once, the Deny applies.
        ("*" + "a" * 2998 + "b", "explicit deny in key policy statement Hostile"),
        ("*" + "a" * 2998 + "b*", "explicit deny in key policy statement Hostile"),
        # A long segment with "?" against 30,000 characters would cost more
        # than one request may spend on matching: stopped, and denied.
        ("*" + "a?" * 1499 + "b*", "condition matching exceeded its work limit"),
    ],
)
def test_a_hostile_pattern_is_answered_from_bounded_work(
    server: Server, attacker: tuple[str, Any], pattern: str, decided_by: str
) -> None:
    arn, kms = attacker
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Mine", "Effect": "Allow", "Principal": {"AWS": arn}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "Hostile", "Effect": "Deny", "Principal": {"AWS": arn}, "Action": "kms:Encrypt",
         "Resource": "*",
         "Condition": {"StringNotLike": {"kms:EncryptionContext:x": pattern}}},
    ]}  # fmt: skip
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as denied:
        kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"x": "a" * 30_000})
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    request_id = denied.value.response["ResponseMetadata"]["RequestId"]
    assert _decided_by(server, request_id) == decided_by
    # A value the pattern matches is not denied by it.
    match = pattern.replace("?", "a").replace("*", "")
    kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"x": match})
