"""Multi-Region keys against an attacker's and an AWS-fidelity reading
(issue 22's review): what a caller can learn of a copy's internal record id,
and the edges of the set's lifecycle the lifecycle tests leave out."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.conftest import Server

from keycask.keys.ids import parse_mrk, record_id

EAST, WEST = "us-east-1", "us-west-2"


def test_list_retirable_grants_marker_names_no_record_id(server: Server) -> None:
    east = server.client(region=EAST)
    key = east.create_key(MultiRegion=True)["KeyMetadata"]
    mrk = parse_mrk(key["KeyId"])
    assert mrk is not None
    hidden = str(record_id(mrk, EAST))
    retirer = f"arn:aws:iam::{key['AWSAccountId']}:role/retirer-{uuid.uuid4().hex[:12]}"
    made = {
        east.create_grant(
            KeyId=key["KeyId"],
            GranteePrincipal=retirer,
            RetiringPrincipal=retirer,
            Operations=["Encrypt"],
        )["GrantId"]
        for _ in range(3)
    }
    seen: list[str] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = east.list_retirable_grants(RetiringPrincipal=retirer, Limit=1, **kwargs)
        assert hidden not in str(page), page
        seen += [g["GrantId"] for g in page["Grants"]]
        if not page["Truncated"]:
            break
        kwargs = {"Marker": page["NextMarker"]}
    assert sorted(seen) == sorted(made)


def _race(*calls: Callable[[], Any]) -> list[str]:
    """Run ``calls`` at once from threads; each one's answer: "OK" or its
    error code (any 5xx fails the test)."""
    answers: list[str] = [""] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            calls[i]()
            answers[i] = "OK"
        except ClientError as error:
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            answers[i] = f"{error.response['Error']['Code']}/{status}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _copies_agree(clients: dict[str, Any], key_id: str) -> dict[str, Any]:
    seen = [clients[r].describe_key(KeyId=key_id)["KeyMetadata"] for r in clients]
    shared = {
        (
            m["MultiRegionConfiguration"]["PrimaryKey"]["Region"],
            tuple(sorted(r["Region"] for r in m["MultiRegionConfiguration"]["ReplicaKeys"])),
            m.get("CurrentKeyMaterialId"),
        )
        for m in seen
    }
    assert len(shared) == 1, seen
    return seen[0]


def test_concurrent_replications_to_one_region_make_one_replica(server: Server) -> None:
    east = server.client(region=EAST)
    key_id = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    callers = [server.client(region=EAST) for _ in range(4)]
    answers = _race(*[partial(c.replicate_key, KeyId=key_id, ReplicaRegion=WEST) for c in callers])
    assert sorted(answers) == ["AlreadyExistsException/400"] * 3 + ["OK"], answers
    meta = _copies_agree({r: server.client(region=r) for r in (EAST, WEST)}, key_id)
    assert [r["Region"] for r in meta["MultiRegionConfiguration"]["ReplicaKeys"]] == [WEST]


def test_primary_moving_while_it_rotates_leaves_every_copy_agreeing(server: Server) -> None:
    clients = {r: server.client(region=r) for r in (EAST, WEST)}
    key_id = clients[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    clients[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    blob = clients[EAST].encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    a, b, c = (server.client(region=EAST) for _ in range(3))
    answers = _race(
        partial(a.update_primary_region, KeyId=key_id, PrimaryRegion=WEST),
        partial(b.rotate_key_on_demand, KeyId=key_id),
        partial(c.enable_key_rotation, KeyId=key_id),
    )
    assert answers[0] == "OK", answers
    # Whichever ran after the move found a replica in us-east-1 (AWS's answer).
    assert set(answers[1:]) <= {"OK", "UnsupportedOperationException/400"}, answers
    meta = _copies_agree(clients, key_id)
    assert meta["MultiRegionConfiguration"]["PrimaryKey"]["Region"] == WEST
    rotation = {
        clients[r].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] for r in clients
    }
    assert rotation == {answers[2] == "OK"}
    for client in clients.values():
        assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"


def test_a_v1_ciphertext_naming_a_record_id_is_not_a_ciphertext(server: Server) -> None:
    """A record id never names a key, in a ciphertext either: a format-v1
    blob carrying one is garbage, whatever the copy's state, and no key is
    authorized, audited or reported for it."""
    east = server.client(region=EAST)
    key_id = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    mrk = parse_mrk(key_id)
    assert mrk is not None
    blob = east.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    assert blob[0] == 2
    forged = b"\x01" + record_id(mrk, EAST).bytes + blob[17:]
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            east.decrypt(CiphertextBlob=forged)
        assert caught.value.response["Error"]["Code"] == "InvalidCiphertextException"
        east.disable_key(KeyId=key_id)
    # Destroyed copies are remembered by record id too: still garbage.
    east.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(ClientError) as caught:
        east.decrypt(CiphertextBlob=forged)
    assert caught.value.response["Error"]["Code"] == "InvalidCiphertextException"


def test_another_account_cannot_replicate_or_move_a_set_even_if_its_policy_allows(
    server: Server,
) -> None:
    """ReplicateKey and UpdatePrimaryRegion are not cross-account (AWS): a
    key policy letting account B do kms:* does not let B copy A's key into
    a region, or move its primary; B still decrypts where the policy allows."""
    other = "222233334444"
    name = f"mrk-other-{uuid.uuid4().hex[:8]}"
    made = json.loads(
        server.cli(
            "principals", "create", name, "--json", "--admin", "--account", other, "--offline"
        ).stdout
    )
    east = server.client(region=EAST)
    key = east.create_key(MultiRegion=True)["KeyMetadata"]
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:aws:iam::{key['AWSAccountId']}:root", made["Arn"]]},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    east.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy)
    east.replicate_key(KeyId=key["KeyId"], ReplicaRegion=WEST, Policy=policy)
    blob = east.encrypt(KeyId=key["KeyId"], Plaintext=b"shared")["CiphertextBlob"]
    creds = (made["AccessKeyId"], made["SecretAccessKey"])
    b_east, b_west = server.client(creds, region=EAST), server.client(creds, region=WEST)
    west_arn = key["Arn"].replace(EAST, WEST)
    for call in (
        partial(b_east.replicate_key, KeyId=key["Arn"], ReplicaRegion="eu-west-1"),
        partial(b_east.update_primary_region, KeyId=key["Arn"], PrimaryRegion=WEST),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response["Error"]
        assert error["Code"] == "AccessDeniedException", error
        assert "cannot be used across accounts" in error["Message"], error
    config = east.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["MultiRegionConfiguration"]
    assert config["PrimaryKey"]["Region"] == EAST
    assert [r["Region"] for r in config["ReplicaKeys"]] == [WEST]
    # Cross-account use the policy allows still works, in the replica's region.
    opened = b_west.decrypt(CiphertextBlob=blob, KeyId=west_arn)
    assert opened["Plaintext"] == b"shared" and opened["KeyId"] == west_arn
    # A bare mrk id means the caller's own account: nothing there.
    with pytest.raises(ClientError) as caught:
        b_west.describe_key(KeyId=key["KeyId"])
    assert caught.value.response["Error"]["Code"] == "NotFoundException"


def test_grant_tokens_of_a_multi_region_key_carry_no_record_id(server: Server) -> None:
    clients = {r: server.client(region=r) for r in (EAST, WEST)}
    key = clients[EAST].create_key(MultiRegion=True)["KeyMetadata"]
    mrk = parse_mrk(key["KeyId"])
    assert mrk is not None
    clients[EAST].replicate_key(KeyId=key["KeyId"], ReplicaRegion=WEST)
    grantee = f"arn:aws:iam::{key['AWSAccountId']}:role/grantee-{uuid.uuid4().hex[:12]}"
    made = clients[EAST].create_grant(
        KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Encrypt", "RetireGrant"]
    )
    token = made["GrantToken"]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert not any(record_id(mrk, r).bytes in raw for r in (EAST, WEST)), raw.hex()
    # The token still works where its grant is, and only there.
    clients[EAST].encrypt(KeyId=key["KeyId"], Plaintext=b"x", GrantTokens=[token])
    with pytest.raises(ClientError) as caught:
        clients[WEST].retire_grant(GrantToken=token)
    assert caught.value.response["Error"]["Code"] == "NotFoundException"
    clients[EAST].retire_grant(GrantToken=token, KeyId=key["Arn"])
    assert clients[EAST].list_grants(KeyId=key["KeyId"])["Grants"] == []
