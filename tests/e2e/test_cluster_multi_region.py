"""Multi-Region keys on several nodes sharing one PostgreSQL store (issue 22,
"replicas and primary changes are coherent across nodes like every other
write"): a set made, replicated, switched and rotated through one node is
seen at once, in every region, by the others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cluster import Cluster, pg_schema, poll

from conftest import Server

COHERENCE_BOUND = 1.0  # seconds, as for every other write (issue 8)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with pg_schema() as dsn:
        nodes = Cluster(tmp_path, dsn, size=2).start()
        try:
            yield nodes
        finally:
            nodes.stop()


def _client(node: Server, region: str) -> Any:
    akid, secret = node.credentials()
    return boto3.client(
        "kms",
        endpoint_url=node.endpoint,
        region_name=region,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def _refused_within(call: Any, code: str) -> float:
    since = time.monotonic()
    while True:
        try:
            call()
        except ClientError as error:
            assert _code(error) == code, error
            return time.monotonic() - since
        assert time.monotonic() - since < COHERENCE_BOUND, f"still no {code}"
        time.sleep(0.01)


def test_a_set_is_coherent_across_nodes(cluster: Cluster) -> None:
    a, b = cluster.nodes
    a_east, a_west = _client(a, "us-east-1"), _client(a, "us-west-2")
    b_east, b_west = _client(b, "us-east-1"), _client(b, "us-west-2")

    key = a_east.create_key(MultiRegion=True, Description="set")["KeyMetadata"]
    key_id = key["KeyId"]
    blob = a_east.encrypt(KeyId=key_id, Plaintext=b"one")["CiphertextBlob"]
    # B has no copy in us-west-2 yet (and caches that answer's inputs).
    with pytest.raises(ClientError) as caught:
        b_west.decrypt(CiphertextBlob=blob)
    assert _code(caught.value) == "AccessDeniedException"

    # Replicated through B: A's west decrypts; A's east sees the replica.
    b_east.replicate_key(KeyId=key_id, ReplicaRegion="us-west-2")
    assert a_west.decrypt(CiphertextBlob=blob)["Plaintext"] == b"one"
    config = a_east.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert [r["Region"] for r in config["ReplicaKeys"]] == ["us-west-2"]

    # Disabled in us-west-2 on A: B's west refuses within the bound, B's
    # east keeps working.
    b_west.encrypt(KeyId=key_id, Plaintext=b"warm")
    a_west.disable_key(KeyId=key_id)
    assert (
        _refused_within(lambda: b_west.encrypt(KeyId=key_id, Plaintext=b"x"), "DisabledException")
        < COHERENCE_BOUND
    )
    assert b_east.decrypt(CiphertextBlob=blob)["Plaintext"] == b"one"
    a_west.enable_key(KeyId=key_id)

    # The primary moves to us-west-2 through B; A sees it at once.
    b_east.update_primary_region(KeyId=key_id, PrimaryRegion="us-west-2")
    config = poll(
        "the new primary on A",
        lambda: (
            c
            if (c := a_west.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"])[
                "MultiRegionKeyType"
            ]
            == "PRIMARY"
            else None
        ),
        COHERENCE_BOUND,
    )
    assert config["PrimaryKey"]["Region"] == "us-west-2"
    assert (
        a_east.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"][
            "MultiRegionKeyType"
        ]
        == "REPLICA"
    )

    # Rotated on demand through A (the primary is now in us-west-2): B's
    # east seals under the new material, and both regions open old and new.
    a_west.rotate_key_on_demand(KeyId=key_id)
    fresh = poll(
        "the rotation on B",
        lambda: (
            out
            if (out := b_east.encrypt(KeyId=key_id, Plaintext=b"two")["CiphertextBlob"])[17:21]
            != blob[17:21]
            else None
        ),
        COHERENCE_BOUND,
    )
    for k in (a_east, a_west, b_east, b_west):
        assert k.decrypt(CiphertextBlob=blob)["Plaintext"] == b"one"
        assert k.decrypt(CiphertextBlob=fresh)["Plaintext"] == b"two"
