"""AWS managed keys (alias/aws/<service>) through boto3 and raw signed calls.

AWS lists the predefined aliases of every account and Region before their
keys exist, makes the key on first use of the alias (KeyManager AWS, yearly
rotation) and lets nobody manage it. keycask does the same
(service/managed.py); before it, every call naming alias/aws/... answered
NotFoundException.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import DAY, Server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import Cluster, audit_records, client, pg_schema
from rawclient import RawKMS

from keycask.service.core.managed import MANAGED_ALIASES

ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh store (no alias made yet) served by two worker processes, so
    first uses race across processes."""
    srv = Server(tmp_path_factory.mktemp("managed") / "data", workers=2).start()
    yield srv
    srv.stop()


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def _all_aliases(kms: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Limit": 7}  # several pages
    while True:
        page = kms.list_aliases(**kwargs)
        found += page["Aliases"]
        if not page.get("Truncated"):
            return found
        kwargs["Marker"] = page["NextMarker"]


def _audit_records(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def test_predefined_aliases_are_listed_without_a_key_until_first_use(two_workers: Server) -> None:
    kms = two_workers.client(region="eu-west-3")
    kms.create_alias(AliasName="alias/zz-own", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    listed = _all_aliases(kms)
    names = [a["AliasName"] for a in listed]
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(MANAGED_ALIASES) <= set(names) and "alias/zz-own" in names
    for alias in listed:
        if alias["AliasName"].startswith("alias/aws/"):
            assert "TargetKeyId" not in alias, alias
            assert alias["AliasArn"] == f"arn:aws:kms:eu-west-3:{ACCOUNT}:{alias['AliasName']}"
    # On the wire: no TargetKeyId member at all (not null), as AWS answers.
    raw = RawKMS(two_workers.endpoint, two_workers.credentials(), region="eu-west-3")
    answer = raw.call("ListAliases", {"Limit": 100})
    assert answer.status == 200
    ebs = [a for a in answer.json()["Aliases"] if a["AliasName"] == "alias/aws/ebs"]
    assert ebs == [{"AliasName": "alias/aws/ebs", "AliasArn": ebs[0]["AliasArn"]}]
    # Filtering by a key lists only aliases of that key.
    own = next(a for a in listed if a["AliasName"] == "alias/zz-own")
    by_key = kms.list_aliases(KeyId=own["TargetKeyId"])["Aliases"]
    assert [a["AliasName"] for a in by_key] == ["alias/zz-own"]


def test_first_use_creates_the_aws_managed_key(two_workers: Server) -> None:
    kms = two_workers.client(region="us-east-2")
    meta = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    assert meta["KeyState"] == "Enabled" and meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT" and meta["Origin"] == "AWS_KMS"
    key_id = meta["KeyId"]
    # The same key ever after, by name or ARN, from any worker.
    for _ in range(4):
        again = kms.describe_key(KeyId=f"arn:aws:kms:us-east-2:{ACCOUNT}:alias/aws/ebs")
        assert again["KeyMetadata"]["KeyId"] == key_id
    listed = {a["AliasName"]: a for a in _all_aliases(kms)}
    assert listed["alias/aws/ebs"]["TargetKeyId"] == key_id
    assert "TargetKeyId" not in listed["alias/aws/s3"]
    assert key_id in [k["KeyId"] for k in kms.list_keys()["Keys"]]
    rotation = kms.get_key_rotation_status(KeyId=key_id)
    assert rotation["KeyRotationEnabled"] is True and rotation["RotationPeriodInDays"] == 365
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert policy["Id"] == "auto-ebs-1"
    # Encrypt, GenerateDataKey and Decrypt work through other aliases too,
    # each making its own key.
    blob = kms.encrypt(KeyId="alias/aws/secretsmanager", Plaintext=b"secret")["CiphertextBlob"]
    secrets_key = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
    assert secrets_key["KeyId"] != key_id and secrets_key["KeyManager"] == "AWS"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    data_key = kms.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256")
    assert (
        kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"]
        == (data_key["Plaintext"])
    )
    # Another Region of the same account has keys of its own.
    west = two_workers.client(region="us-west-1").describe_key(KeyId="alias/aws/ebs")
    assert west["KeyMetadata"]["KeyId"] != key_id
    # Only predefined names exist.
    with pytest.raises(ClientError) as error:
        kms.describe_key(KeyId="alias/aws/no-such-service")
    assert _code(error) == "NotFoundException"
    # Audited: one CreateKey by keycask per key made, naming the caller.
    made = [
        r for r in _audit_records(two_workers)
        if r["operation"] == "CreateKey" and r["principal"] == "keycask"
        and r["region"] == "us-east-2" and "alias/aws/ebs" in (r["detail"] or "")
    ]  # fmt: skip
    assert len(made) == 1 and made[0]["key_arn"] == meta["Arn"]
    assert ":user/" in made[0]["detail"]


def test_concurrent_first_uses_make_one_key(two_workers: Server) -> None:
    region = "ap-south-1"
    found: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def use() -> None:
        kms = two_workers.client(region=region)
        try:
            start.wait()
            found.append(kms.describe_key(KeyId="alias/aws/sqs")["KeyMetadata"]["KeyId"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(found) == 12
    assert len(set(found)) == 1
    kms = two_workers.client(region=region)
    keys = [k["KeyId"] for k in kms.list_keys()["Keys"]]
    assert keys == found[:1]
    made = [
        r for r in _audit_records(two_workers)
        if r["operation"] == "CreateKey" and r["region"] == region
    ]  # fmt: skip
    assert len(made) == 1


MANAGE = (
    ("put_key_policy", {"PolicyName": "default", "Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}]}),
        "BypassPolicyLockoutSafetyCheck": True}),
    ("disable_key", {}),
    ("schedule_key_deletion", {"PendingWindowInDays": 7}),
    ("enable_key_rotation", {"RotationPeriodInDays": 90}),
    ("disable_key_rotation", {}),
    ("rotate_key_on_demand", {}),
    ("tag_resource", {"Tags": [{"TagKey": "k", "TagValue": "v"}]}),
    ("update_key_description", {"Description": "mine now"}),
    ("create_alias", {"AliasName": "alias/onto-managed"}),
)  # fmt: skip


@pytest.mark.parametrize(("method", "args"), MANAGE, ids=[m for m, _ in MANAGE])
def test_nobody_manages_an_aws_managed_key(server: Server, method: str, args: Any) -> None:
    """Not even an administrator (allow-all identity policy): the key policy
    delegates only reading to the account, as AWS's managed key policies do."""
    kms = server.client(region="ca-central-1")
    key = kms.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]
    target = {"TargetKeyId": key["KeyId"]} if method == "create_alias" else {"KeyId": key["KeyId"]}
    with pytest.raises(ClientError) as error:
        getattr(kms, method)(**target, **args)
    assert _code(error) == "AccessDeniedException", error.value.response
    after = kms.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]
    assert after == key
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["RotationPeriodInDays"] == 365


def test_a_customer_alias_cannot_move_onto_an_aws_managed_key(server: Server) -> None:
    kms = server.client(region="ca-central-1")
    managed = kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["KeyId"]
    own = kms.create_key()["KeyMetadata"]["KeyId"]
    name = f"alias/mine-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=name, TargetKeyId=own)
    with pytest.raises(ClientError) as error:
        kms.update_alias(AliasName=name, TargetKeyId=managed)
    assert _code(error) == "AccessDeniedException"
    # The predefined alias itself stays where it is.
    with pytest.raises(ClientError):
        kms.delete_alias(AliasName="alias/aws/dynamodb")
    with pytest.raises(ClientError):
        kms.update_alias(AliasName="alias/aws/dynamodb", TargetKeyId=own)
    assert kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["KeyId"] == managed


def test_use_needs_the_callers_own_permission(server: Server) -> None:
    """kms:ViaService has no meaning here; the caller's identity policy must
    allow the cryptographic operation instead (service/managed.py)."""
    name = f"managed-user-{uuid.uuid4().hex[:6]}"
    created = json.loads(server.cli("principals", "create", name, "--json").stdout)
    user = server.client((created["AccessKeyId"], created["SecretAccessKey"]), region="sa-east-1")
    with pytest.raises(ClientError) as error:
        user.encrypt(KeyId="alias/aws/ssm", Plaintext=b"x")
    assert _code(error) == "AccessDeniedException"
    # ...and its refused first use made no key.
    admin = server.client(region="sa-east-1")
    ssm = [a for a in admin.list_aliases(Limit=100)["Aliases"] if a["AliasName"] == "alias/aws/ssm"]
    assert "TargetKeyId" not in ssm[0]
    assert not [
        r for r in _audit_records(server)
        if r["operation"] == "CreateKey" and r["region"] == "sa-east-1"
    ]  # fmt: skip
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"],
                       "Resource": "*"}],
    }  # fmt: skip
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", name, "--policy-name", "use", "--file", str(path))
    blob = user.encrypt(KeyId="alias/aws/ssm", Plaintext=b"x")["CiphertextBlob"]
    assert user.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_policy_reset_refuses_an_aws_managed_key(server: Server) -> None:
    kms = server.client()
    key = kms.describe_key(KeyId="alias/aws/glue")["KeyMetadata"]
    policy = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    proc = server.cli("policy", "reset", key["Arn"], check=False)
    assert proc.returncode != 0 and "AWS managed key" in proc.stderr, proc
    assert kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"] == policy


def test_an_aws_managed_key_rotates_every_year(two_workers: Server) -> None:
    """Last in this module: it moves the module server's lifecycle clock."""
    kms = two_workers.client(region="af-south-1")
    key_id = kms.describe_key(KeyId="alias/aws/backup")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId="alias/aws/backup", Plaintext=b"old")["CiphertextBlob"]
    assert kms.list_key_rotations(KeyId=key_id)["Rotations"] == []
    two_workers.advance_clock(366 * DAY)
    rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["AUTOMATIC"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"old"
    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 365


@pytest.mark.slow
def test_concurrent_first_uses_on_several_nodes_make_one_key(tmp_path: Path) -> None:
    """Nodes sharing PostgreSQL: the write lock is the cluster's advisory lock."""
    with pg_schema() as dsn:
        nodes = Cluster(tmp_path, dsn).start()
        try:
            clients = [client(node) for node in nodes.nodes for _ in range(4)]
            start = threading.Barrier(len(clients))

            def use(kms: Any) -> str:
                start.wait()
                return str(kms.describe_key(KeyId="alias/aws/kinesis")["KeyMetadata"]["KeyId"])

            found: list[str] = []
            threads = [threading.Thread(target=lambda k=k: found.append(use(k))) for k in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(found) == len(clients) and len(set(found)) == 1
            made = [
                r for node in nodes.nodes for r in audit_records(node.data_dir)
                if r["operation"] == "CreateKey" and r["principal"] == "keycask"
            ]  # fmt: skip
            assert len(made) == 1
            listed = client(nodes.nodes[2]).list_keys()["Keys"]
            assert [k["KeyId"] for k in listed] == found[:1]
        finally:
            nodes.stop()
