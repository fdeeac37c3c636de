"""Multi-Region keys against an attacker's and an AWS-fidelity reading
(issue 22's review): what a caller can learn of a copy's internal record id,
and the edges of the set's lifecycle the lifecycle tests leave out."""

from __future__ import annotations

import uuid
from typing import Any

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
