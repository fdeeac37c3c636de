"""The multi-Region lifecycle end to end (issue 22): ReplicateKey,
UpdatePrimaryRegion, rotation of a set and the deletion rules for a primary
with replicas, through boto3 clients in three regions of one keycask.

One keycask serves every region (the SigV4 scope picks it), so a set's
copies are documents of one store: these tests check what a caller of each
region sees, and that the set stays coherent after every operation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import Server

DAY = 86400.0
ACCOUNT = "000000000000"
EAST, WEST, EU = "us-east-1", "us-west-2", "eu-west-1"


def _error(call: Callable[[], Any]) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return dict(caught.value.response["Error"])


def _arn(region: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"


class Regions:
    """One boto3 client per region of the same keycask."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.kms = {region: server.client(region=region) for region in (EAST, WEST, EU)}

    def __getitem__(self, region: str) -> Any:
        return self.kms[region]

    def primary(self, region: str = EAST, **params: Any) -> str:
        meta = self.kms[region].create_key(MultiRegion=True, **params)["KeyMetadata"]
        key_id: str = meta["KeyId"]
        assert key_id.startswith("mrk-"), meta
        return key_id

    def config(self, region: str, key_id: str) -> dict[str, Any]:
        meta = self.kms[region].describe_key(KeyId=key_id)["KeyMetadata"]
        assert meta["MultiRegion"] is True
        return dict(meta["MultiRegionConfiguration"])


@pytest.fixture
def regions(server: Server) -> Regions:
    return Regions(server)


def _replica_regions(config: dict[str, Any]) -> list[str]:
    return sorted(r["Region"] for r in config["ReplicaKeys"])


# -- ReplicateKey --


def test_replicate_gives_a_replica_with_its_own_properties(regions: Regions) -> None:
    key_id = regions.primary(Description="the primary", Tags=[{"TagKey": "at", "TagValue": "e"}])
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    answer = regions[EAST].replicate_key(
        KeyId=key_id,
        ReplicaRegion=WEST,
        Description="the replica",
        Policy=policy,
        Tags=[{"TagKey": "at", "TagValue": "w"}],
    )
    meta = answer["ReplicaKeyMetadata"]
    assert meta["Arn"] == _arn(WEST, key_id)
    assert meta["KeyId"] == key_id
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] is True
    assert meta["Description"] == "the replica"
    assert meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert meta["MultiRegionConfiguration"]["PrimaryKey"] == {
        "Arn": _arn(EAST, key_id),
        "Region": EAST,
    }
    assert answer["ReplicaPolicy"] == policy
    assert answer["ReplicaTags"] == [{"TagKey": "at", "TagValue": "w"}]

    # Each region has its own copy, with its own description and tags.
    west = regions[WEST].describe_key(KeyId=key_id)["KeyMetadata"]
    assert (west["Arn"], west["Description"]) == (_arn(WEST, key_id), "the replica")
    assert regions[WEST].list_resource_tags(KeyId=key_id)["Tags"] == [
        {"TagKey": "at", "TagValue": "w"}
    ]
    assert regions[EAST].list_resource_tags(KeyId=key_id)["Tags"] == [
        {"TagKey": "at", "TagValue": "e"}
    ]
    assert regions[WEST].get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == policy
    assert key_id in [k["KeyId"] for k in regions[WEST].list_keys(Limit=1000)["Keys"]]

    # Every copy names every other.
    regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=EU)
    for region in (EAST, WEST, EU):
        config = regions.config(region, key_id)
        assert config["PrimaryKey"]["Region"] == EAST
        assert _replica_regions(config) == sorted([WEST, EU])
        assert config["MultiRegionKeyType"] == ("PRIMARY" if region == EAST else "REPLICA")

    # A default policy when none is given: the account's, as CreateKey's.
    eu = regions[EU].get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    assert json.loads(eu)["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}

    # Material is shared: what one region encrypts, every other decrypts.
    blob = regions[EAST].encrypt(KeyId=key_id, Plaintext=b"hello")["CiphertextBlob"]
    for region in (WEST, EU):
        out = regions[region].decrypt(CiphertextBlob=blob)
        assert (out["Plaintext"], out["KeyId"]) == (b"hello", _arn(region, key_id))


def test_replicate_refusals(regions: Regions) -> None:
    key_id = regions.primary()
    regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    # The region holds the key already: its replica, or the primary itself.
    for region in (WEST, EAST):
        error = _error(partial(regions[EAST].replicate_key, KeyId=key_id, ReplicaRegion=region))
        assert error["Code"] == "AlreadyExistsException", error
        assert _arn(region, key_id) in error["Message"]
    # Only a primary is replicated, and only from its own region.
    error = _error(lambda: regions[WEST].replicate_key(KeyId=key_id, ReplicaRegion=EU))
    assert error["Code"] == "UnsupportedOperationException", error
    assert EAST in error["Message"]
    single = regions[EAST].create_key()["KeyMetadata"]["KeyId"]
    error = _error(lambda: regions[EAST].replicate_key(KeyId=single, ReplicaRegion=EU))
    assert error["Code"] == "UnsupportedOperationException", error
    # Another region's ARN is not found here (the endpoint serves its region).
    error = _error(lambda: regions[EAST].replicate_key(KeyId=_arn(WEST, key_id), ReplicaRegion=EU))
    assert error["Code"] == "NotFoundException", error
    # A region name the model refuses.
    error = _error(lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion="moon"))
    assert error["Code"] == "ValidationException", error
    # Its policy is checked as CreateKey's: parsed, and the caller must keep
    # kms:PutKeyPolicy unless it says it knows better.
    error = _error(lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=EU, Policy="{"))
    assert error["Code"] == "MalformedPolicyDocumentException", error
    locked_out = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/somebody-else"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    error = _error(
        lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=EU, Policy=locked_out)
    )
    assert error["Code"] == "MalformedPolicyDocumentException", error
    assert _error(lambda: regions[EU].describe_key(KeyId=key_id))["Code"] == "NotFoundException"
    # A disabled primary is not replicated.
    regions[EAST].disable_key(KeyId=key_id)
    error = _error(lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=EU))
    assert error["Code"] == "DisabledException", error
    # Nothing was made by the refusals.
    regions[EAST].enable_key(KeyId=key_id)
    assert _replica_regions(regions.config(EAST, key_id)) == [WEST]
    assert _error(lambda: regions[EU].describe_key(KeyId=key_id))["Code"] == "NotFoundException"
    # A region whose copy is pending deletion still holds the key.
    regions[WEST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    error = _error(lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST))
    assert error["Code"] == "AlreadyExistsException", error
    # With the lockout check bypassed, a policy that locks the caller out is kept.
    answer = regions[EAST].replicate_key(
        KeyId=key_id, ReplicaRegion=EU, Policy=locked_out, BypassPolicyLockoutSafetyCheck=True
    )
    assert answer["ReplicaPolicy"] == locked_out


def test_asymmetric_and_hmac_replicas_share_their_key(regions: Regions) -> None:
    signing = regions.primary(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    regions[EAST].replicate_key(KeyId=signing, ReplicaRegion=WEST)
    public = {
        region: regions[region].get_public_key(KeyId=signing)["PublicKey"]
        for region in (EAST, WEST)
    }
    assert public[EAST] == public[WEST]
    signature = regions[EAST].sign(KeyId=signing, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")[
        "Signature"
    ]
    verified = regions[WEST].verify(
        KeyId=signing, Message=b"m", Signature=signature, SigningAlgorithm="ECDSA_SHA_256"
    )
    assert verified["SignatureValid"] is True
    mac_key = regions.primary(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    regions[EAST].replicate_key(KeyId=mac_key, ReplicaRegion=EU)
    mac = regions[EU].generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    answer = regions[EAST].verify_mac(
        KeyId=mac_key, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_256"
    )
    assert answer["MacValid"] is True
    meta = regions[EU].describe_key(KeyId=mac_key)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("HMAC_256", "GENERATE_VERIFY_MAC")


# -- UpdatePrimaryRegion --


def test_update_primary_region_swaps_the_roles(regions: Regions) -> None:
    key_id = regions.primary()
    for region in (WEST, EU):
        regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=region)
    assert regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
    for region in (EAST, WEST, EU):
        config = regions.config(region, key_id)
        assert config["PrimaryKey"] == {"Arn": _arn(WEST, key_id), "Region": WEST}
        assert config["MultiRegionKeyType"] == ("PRIMARY" if region == WEST else "REPLICA")
        assert _replica_regions(config) == sorted([EAST, EU])
        meta = regions[region].describe_key(KeyId=key_id)["KeyMetadata"]
        assert meta["KeyState"] == "Enabled"
    # The old primary is a replica now: it neither replicates nor hands over.
    for call in (
        lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion="ap-south-1"),
        lambda: regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=EU),
    ):
        assert _error(call)["Code"] == "UnsupportedOperationException"
    # The new one does.
    regions[WEST].replicate_key(KeyId=key_id, ReplicaRegion="ap-south-1")
    assert _replica_regions(regions.config(EU, key_id)) == sorted([EAST, EU, "ap-south-1"])


def test_update_primary_region_refusals(regions: Regions) -> None:
    key_id = regions.primary()
    regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    error = _error(lambda: regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=EU))
    assert error["Code"] == "NotFoundException", error
    # Both keys must be enabled.
    regions[WEST].disable_key(KeyId=key_id)
    error = _error(lambda: regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST))
    assert error["Code"] == "DisabledException", error
    assert _arn(WEST, key_id) in error["Message"]
    regions[WEST].enable_key(KeyId=key_id)
    regions[EAST].disable_key(KeyId=key_id)
    error = _error(lambda: regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST))
    assert error["Code"] == "DisabledException", error
    regions[EAST].enable_key(KeyId=key_id)
    single = regions[EAST].create_key()["KeyMetadata"]["KeyId"]
    error = _error(lambda: regions[EAST].update_primary_region(KeyId=single, PrimaryRegion=WEST))
    assert error["Code"] == "UnsupportedOperationException", error
    assert regions.config(EAST, key_id)["MultiRegionKeyType"] == "PRIMARY"


# -- rotation --


def test_rotation_of_the_primary_is_seen_by_every_replica(regions: Regions) -> None:
    key_id = regions.primary()
    regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    old = regions[EAST].encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    # Rotation is the primary's to set.
    for call in (
        lambda: regions[WEST].enable_key_rotation(KeyId=key_id),
        lambda: regions[WEST].disable_key_rotation(KeyId=key_id),
        lambda: regions[WEST].rotate_key_on_demand(KeyId=key_id),
    ):
        error = _error(call)
        assert error["Code"] == "UnsupportedOperationException", error
        assert EAST in error["Message"]
    regions[EAST].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    for region in (EAST, WEST):
        status = regions[region].get_key_rotation_status(KeyId=key_id)
        assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 90)
    regions[EAST].rotate_key_on_demand(KeyId=key_id)
    rotations = {
        region: regions[region].list_key_rotations(KeyId=key_id)["Rotations"]
        for region in (EAST, WEST)
    }
    assert len(rotations[EAST]) == len(rotations[WEST]) == 1
    assert rotations[WEST][0]["KeyId"] == _arn(WEST, key_id)
    assert rotations[WEST][0]["RotationType"] == "ON_DEMAND"
    assert rotations[EAST][0]["KeyMaterialId"] == rotations[WEST][0]["KeyMaterialId"]
    # Old ciphertexts still decrypt everywhere; new ones are made with the
    # new material in every region and decrypt in every other.
    assert regions[WEST].decrypt(CiphertextBlob=old)["Plaintext"] == b"before"
    new = regions[WEST].encrypt(KeyId=key_id, Plaintext=b"after")["CiphertextBlob"]
    assert regions[EAST].decrypt(CiphertextBlob=new)["Plaintext"] == b"after"
    regions[EAST].disable_key_rotation(KeyId=key_id)
    status = regions[WEST].get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is False


def test_automatic_rotation_reaches_the_replicas_after_the_primary_moves(
    fresh_server: Server,
) -> None:
    regions = Regions(fresh_server)
    key_id = regions.primary()
    regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    regions[EAST].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    old = regions[WEST].encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    # The schedule moves with the primary: the new primary rotates the set.
    regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
    answer = fresh_server.advance_clock(91 * DAY)
    assert answer["JobsRun"] == 1, answer
    for region in (EAST, WEST):
        [rotation] = regions[region].list_key_rotations(KeyId=key_id)["Rotations"]
        assert rotation["RotationType"] == "AUTOMATIC"
        assert regions[region].decrypt(CiphertextBlob=old)["Plaintext"] == b"before"


# -- one region's copy disabled --


def test_a_replica_disabled_in_one_region_leaves_the_others_working(regions: Regions) -> None:
    key_id = regions.primary()
    for region in (WEST, EU):
        regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=region)
    blob = regions[EAST].encrypt(KeyId=key_id, Plaintext=b"data")["CiphertextBlob"]
    regions[WEST].disable_key(KeyId=key_id)
    for call in (
        lambda: regions[WEST].encrypt(KeyId=key_id, Plaintext=b"x"),
        lambda: regions[WEST].decrypt(CiphertextBlob=blob),
    ):
        error = _error(call)
        assert error["Code"] == "DisabledException", error
        assert _arn(WEST, key_id) in error["Message"]
    for region in (EAST, EU):
        assert regions[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"data"
        again = regions[region].encrypt(KeyId=key_id, Plaintext=b"more")["CiphertextBlob"]
        assert regions[EAST].decrypt(CiphertextBlob=again)["Plaintext"] == b"more"
    assert regions[EU].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert regions[WEST].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"


# -- deletion --


def test_a_primary_waits_for_its_replicas_then_is_deleted(fresh_server: Server) -> None:
    regions = Regions(fresh_server)
    key_id = regions.primary()
    for region in (WEST, EU):
        regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=region)
    blob = regions[EAST].encrypt(KeyId=key_id, Plaintext=b"data")["CiphertextBlob"]

    answer = regions[EAST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert answer["KeyState"] == "PendingReplicaDeletion"
    assert answer["PendingWindowInDays"] == 7
    assert "DeletionDate" not in answer
    meta = regions[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingReplicaDeletion"
    assert "DeletionDate" not in meta
    assert meta.get("PendingDeletionWindowInDays") == 7
    # No cryptographic use, no replication; the replicas are untouched.
    for call in (
        lambda: regions[EAST].encrypt(KeyId=key_id, Plaintext=b"x"),
        lambda: regions[EAST].decrypt(CiphertextBlob=blob),
        lambda: regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion="ap-south-1"),
        lambda: regions[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST),
        lambda: regions[EAST].schedule_key_deletion(KeyId=key_id),
    ):
        assert _error(call)["Code"] == "KMSInvalidStateException"
    assert regions[WEST].decrypt(CiphertextBlob=blob)["Plaintext"] == b"data"
    # It can be cancelled, and comes back disabled, as a single-Region key does.
    regions[EAST].cancel_key_deletion(KeyId=key_id)
    meta = regions[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    assert "PendingDeletionWindowInDays" not in meta
    regions[EAST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    # Replicas are deleted like single-Region keys, with a date.
    west = regions[WEST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert west["KeyState"] == "PendingDeletion" and "DeletionDate" in west
    regions[EU].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=20)
    assert regions[WEST].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == (
        "PendingDeletion"
    )

    fresh_server.advance_clock(8 * DAY)
    assert _error(lambda: regions[WEST].describe_key(KeyId=key_id))["Code"] == "NotFoundException"
    config = regions.config(EAST, key_id)
    assert _replica_regions(config) == [EU]
    assert (
        regions[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
        == "PendingReplicaDeletion"
    )
    # The ciphertext still decrypts where a copy is usable: nowhere now but
    # for EU, which is pending deletion too.
    assert _error(lambda: regions[EU].decrypt(CiphertextBlob=blob))["Code"] == (
        "KMSInvalidStateException"
    )

    answer = fresh_server.advance_clock(13 * DAY)
    assert answer["JobsRun"] == 1, answer
    assert _error(lambda: regions[EU].describe_key(KeyId=key_id))["Code"] == "NotFoundException"
    meta = regions[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    assert "PendingDeletionWindowInDays" not in meta
    now = datetime.now(UTC) + timedelta(seconds=float(answer["OffsetSeconds"]))
    deletion = meta["DeletionDate"]
    assert now + timedelta(days=7) - timedelta(seconds=30) <= deletion
    assert deletion <= now + timedelta(days=7, seconds=30)
    assert regions.config(EAST, key_id)["ReplicaKeys"] == []

    fresh_server.advance_clock(8 * DAY)
    assert _error(lambda: regions[EAST].describe_key(KeyId=key_id))["Code"] == "NotFoundException"


# -- authorization and audit --


def _user(server: Server, statements: list[dict[str, Any]], region: str = EAST) -> Any:
    name = f"mrk-user-{uuid.uuid4().hex[:8]}"
    created = json.loads(server.cli("principals", "create", name, "--json").stdout)
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    server.cli("principals", "put-policy", name, "--policy-name", "main", "--file", str(path))
    return server.client((created["AccessKeyId"], created["SecretAccessKey"]), region=region)


def _allow(action: str | list[str], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": "*"}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def test_replicate_key_needs_replicate_there_and_create_key_in_the_replica_region(
    regions: Regions,
) -> None:
    server = regions.server
    key_id = regions.primary()
    only_west = {"StringEquals": {"kms:ReplicaRegion": WEST}}
    # kms:CreateKey is decided as in the replica's region (aws:RequestedRegion).
    create_west = {"StringEquals": {"aws:RequestedRegion": WEST}}
    user = _user(
        server,
        [_allow("kms:ReplicateKey", only_west), _allow("kms:CreateKey", create_west)],
    )
    error = _error(lambda: user.replicate_key(KeyId=key_id, ReplicaRegion=EU))
    assert error["Code"] == "AccessDeniedException", error
    # Tags need kms:TagResource too.
    error = _error(
        lambda: user.replicate_key(
            KeyId=key_id, ReplicaRegion=WEST, Tags=[{"TagKey": "t", "TagValue": "v"}]
        )
    )
    assert error["Code"] == "AccessDeniedException", error
    assert "kms:TagResource" in error["Message"], error
    assert _replica_regions(regions.config(EAST, key_id)) == []
    meta = user.replicate_key(KeyId=key_id, ReplicaRegion=WEST)["ReplicaKeyMetadata"]
    assert meta["Arn"] == _arn(WEST, key_id)

    # Without kms:CreateKey for the replica's region, nothing is made.
    other = regions.primary()
    no_create = _user(server, [_allow("kms:ReplicateKey")])
    error = _error(lambda: no_create.replicate_key(KeyId=other, ReplicaRegion=WEST))
    assert error["Code"] == "AccessDeniedException", error
    assert "kms:CreateKey" in error["Message"], error
    assert _error(lambda: regions[WEST].describe_key(KeyId=other))["Code"] == "NotFoundException"

    # The audit record of a replication names the primary and the replica.
    records = [
        json.loads(line)
        for segment in sorted((server.data_dir / "audit").glob("*.jsonl"))
        for line in segment.read_text().splitlines()
        if line
    ]
    [record] = [
        r
        for r in records
        if r["operation"] == "ReplicateKey"
        and r["outcome"] == "success"
        and r["key_arn"] == _arn(EAST, key_id)
    ]
    assert _arn(WEST, key_id) in record["detail"]


def test_update_primary_region_is_authorized_on_both_keys(regions: Regions) -> None:
    server = regions.server
    key_id = regions.primary()
    regions[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    east_only = _user(
        server,
        [
            {
                "Effect": "Allow",
                "Action": "kms:UpdatePrimaryRegion",
                "Resource": f"arn:aws:kms:{EAST}:{ACCOUNT}:key/*",
            }
        ],
    )
    error = _error(lambda: east_only.update_primary_region(KeyId=key_id, PrimaryRegion=WEST))
    assert error["Code"] == "AccessDeniedException", error
    assert _arn(WEST, key_id) in error["Message"], error
    to_eu = _user(
        server, [_allow("kms:UpdatePrimaryRegion", {"StringEquals": {"kms:PrimaryRegion": EU}})]
    )
    error = _error(lambda: to_eu.update_primary_region(KeyId=key_id, PrimaryRegion=WEST))
    assert error["Code"] == "AccessDeniedException", error
    assert regions.config(WEST, key_id)["PrimaryKey"]["Region"] == EAST
    to_west = _user(
        server, [_allow("kms:UpdatePrimaryRegion", {"StringEquals": {"kms:PrimaryRegion": WEST}})]
    )
    to_west.update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
    assert regions.config(EAST, key_id)["PrimaryKey"]["Region"] == WEST
