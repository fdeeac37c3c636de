"""Which ARNs name a key here: only those of the partition keycask serves
(--partition / KEYCASK_PARTITION, ``aws`` by default) and of the Region the
request is signed for; every ARN keycask renders names that partition."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawKMS

ACCOUNT = "000000000000"


def _error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as error:
        call(**kwargs)
    e = error.value.response["Error"]
    return str(e["Code"]), str(e["Message"])


@pytest.fixture(scope="module")
def china(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("partition") / "data", env_extra={"KEYCASK_PARTITION": "aws-cn"}
    ).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("other", ["aws-cn", "aws-us-gov", "aws-iso", "awsx", ""])
def test_a_key_arn_of_another_partition_is_not_found(server: Server, other: str) -> None:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    foreign = f"arn:{other}:kms:us-east-1:{ACCOUNT}:key/{key_id}"
    for call, extra in (
        (kms.describe_key, {}),
        (kms.encrypt, {"Plaintext": b"x"}),
        (kms.get_key_policy, {"PolicyName": "default"}),
    ):
        code, message = _error(call, KeyId=foreign, **extra)
        assert code == "NotFoundException", (call, message)
        assert message == f"Invalid arn {foreign}"
    # The alias ARN of another partition neither.
    kms.create_alias(AliasName=f"alias/part-{key_id[:8]}", TargetKeyId=key_id)
    code, _ = _error(
        kms.describe_key, KeyId=f"arn:{other}:kms:us-east-1:{ACCOUNT}:alias/part-{key_id[:8]}"
    )
    assert code == "NotFoundException"
    # The same key by its own ARN is found.
    assert kms.describe_key(KeyId=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}")


def test_a_key_arn_of_another_region_says_invalid_arn_region(server: Server) -> None:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    elsewhere = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/{key_id}"
    for call, extra in ((kms.describe_key, {}), (kms.encrypt, {"Plaintext": b"x"})):
        assert _error(call, KeyId=elsewhere, **extra) == (
            "NotFoundException",
            "Invalid arn eu-central-1",
        )
    # The same answer on the wire, where boto3 adds nothing.
    raw = RawKMS(server.endpoint, server.credentials())
    answer = raw.call("DescribeKey", {"KeyId": elsewhere})
    answer.assert_aws_error("NotFoundException", 400)
    assert answer.message == "Invalid arn eu-central-1"


def test_every_arn_names_the_configured_partition(china: Server) -> None:
    kms = china.client(region="cn-north-1")
    meta = kms.create_key(Description="in China")["KeyMetadata"]
    arn = meta["Arn"]
    assert arn == f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/{meta['KeyId']}"
    assert kms.list_keys()["Keys"] == [{"KeyId": meta["KeyId"], "KeyArn": arn}]
    kms.create_alias(AliasName="alias/cn", TargetKeyId=meta["KeyId"])
    own = [a for a in kms.list_aliases(Limit=100)["Aliases"] if a["AliasName"] == "alias/cn"]
    assert own[0]["AliasArn"] == f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:alias/cn"
    assert all(
        a["AliasArn"].startswith("arn:aws-cn:kms:cn-north-1:")
        for a in kms.list_aliases(Limit=100)["Aliases"]
    )
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"]["AWS"] == f"arn:aws-cn:iam::{ACCOUNT}:root"
    # The default policy lets the account's admin in: the caller's ARN is in
    # the same partition.
    blob = kms.encrypt(KeyId=arn, Plaintext=b"x")
    assert blob["KeyId"] == arn
    assert kms.decrypt(CiphertextBlob=blob["CiphertextBlob"])["Plaintext"] == b"x"
    managed = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert managed["Arn"].startswith("arn:aws-cn:kms:cn-north-1:")
    # The aws partition's ARN of the very same key is not this key.
    code, _ = _error(
        kms.describe_key, KeyId=f"arn:aws:kms:cn-north-1:{ACCOUNT}:key/{meta['KeyId']}"
    )
    assert code == "NotFoundException"
    # Policies and grants name principals in the partition.
    grant = kms.create_grant(
        KeyId=arn,
        GranteePrincipal=f"arn:aws-cn:iam::{ACCOUNT}:user/someone",
        Operations=["Decrypt"],
    )
    assert grant["GrantId"]
    grants = kms.list_grants(KeyId=arn)["Grants"]
    assert grants[0]["IssuingAccount"] == f"arn:aws-cn:iam::{ACCOUNT}:root"
    # And the audit log says who, in the partition's words.
    records = [
        json.loads(line)
        for segment in (china.data_dir / "audit").glob("*.jsonl")
        for line in segment.read_text().splitlines()
    ]
    encrypts = [r for r in records if r["operation"] == "Encrypt"]
    assert encrypts and encrypts[0]["key_arn"] == arn
    assert encrypts[0]["principal"].startswith(f"arn:aws-cn:iam::{ACCOUNT}:")


def test_an_unknown_partition_refuses_to_start(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", env_extra={"KEYCASK_PARTITION": "aws-mars"})
    with pytest.raises(RuntimeError, match="partition must be one of"):
        srv.start()


def test_policy_reset_writes_the_partitions_default_policy(china: Server) -> None:
    kms = china.client(region="cn-north-1")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    root = f"arn:aws-cn:iam::{ACCOUNT}:root"
    narrow = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": root},
                       "Action": "kms:DescribeKey", "Resource": "*"}],
    }  # fmt: skip
    kms.put_key_policy(
        KeyId=arn, PolicyName="default", Policy=json.dumps(narrow),
        BypassPolicyLockoutSafetyCheck=True,
    )  # fmt: skip
    # Run with the server's partition unset: the aws-cn ARN is refused, not
    # reset to a policy naming principals of another partition.
    env = {k: v for k, v in china.env().items() if k != "KEYCASK_PARTITION"}
    refused = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "policy", "reset", arn,
         "--data-dir", str(china.data_dir)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "KEYCASK_PARTITION" in refused.stderr, refused
    china.cli("policy", "reset", arn, "--region", "cn-north-1")
    china.restart()  # the server caches key policies
    policy = json.loads(
        china.client(region="cn-north-1").get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    )
    assert policy["Statement"][0]["Principal"]["AWS"] == root
    assert policy["Statement"][0]["Action"] == "kms:*"
