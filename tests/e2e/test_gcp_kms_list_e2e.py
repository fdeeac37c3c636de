"""The Cloud KMS door's ``filter`` and ``orderBy`` on keyRings.list,
cryptoKeys.list and cryptoKeyVersions.list, and testIamPermissions on a key
ring, driven by google-cloud-kms over REST against a real server."""

from __future__ import annotations

import uuid
from typing import Any

import google.api_core.exceptions as gexc
import pytest
from google.cloud import kms_v1
from tests.conftest import Server
from tests.e2e.test_gcp_kms_e2e import (
    PROJECT,
    _asymmetric,
    _client,
    _raw,
    _records,
    _ring,
    _set_state,
    _token,
    _user,
)

_PURPOSE = kms_v1.CryptoKey.CryptoKeyPurpose
_ALG = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
_STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
Client = kms_v1.KeyManagementServiceClient


@pytest.fixture(scope="module")
def admin_token(server: Server) -> str:
    return _token(server, _user(server, ["kms:*"]))


@pytest.fixture(scope="module")
def gcp(server: Server, admin_token: str) -> Client:
    return _client(server, admin_token)


def _key(gcp: Client, ring: str, key_id: str, labels: dict[str, str]) -> Any:
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": key_id,
            "crypto_key": {"purpose": _PURPOSE.ENCRYPT_DECRYPT, "labels": labels},
        }
    )


def _keys(gcp: Client, ring: str, filter: str = "", order_by: str = "") -> list[str]:
    found = gcp.list_crypto_keys(request={"parent": ring, "filter": filter, "order_by": order_by})
    return [k.name.rsplit("/", 1)[1] for k in found]


def test_crypto_key_filters_select_on_the_json_form(gcp: Client) -> None:
    ring = _ring(gcp)
    _key(gcp, ring, "alpha", {"env": "prod", "team": "a"})
    _key(gcp, ring, "Bravo", {"env": "dev"})
    _key(gcp, ring, "charlie", {})
    mac = _asymmetric(gcp, ring, _PURPOSE.MAC, _ALG.HMAC_SHA256)
    mac_id = mac.name.rsplit("/", 1)[1]
    _set_state(gcp, f"{ring}/cryptoKeys/charlie/cryptoKeyVersions/1", _STATE.DISABLED)
    everyone = sorted(["alpha", "Bravo", "charlie", mac_id])
    cases = {
        "labels.env=prod": ["alpha"],
        'labels.env = "dev"': ["Bravo"],
        "labels.env=prod OR labels.env=dev": ["Bravo", "alpha"],
        "labels:env": ["Bravo", "alpha"],
        "labels.env:*": ["Bravo", "alpha"],
        "NOT labels:env": sorted(["charlie", mac_id]),
        "-labels.env=prod": sorted(["Bravo", "charlie", mac_id]),
        "labels.env!=prod": sorted(["Bravo", "charlie", mac_id]),
        "purpose=MAC": [mac_id],
        "purpose=ENCRYPT_DECRYPT labels.team=a": ["alpha"],
        "purpose=ENCRYPT_DECRYPT AND (labels.env=dev OR primary.state=DISABLED)": [
            "Bravo",
            "charlie",
        ],
        "versionTemplate.algorithm=HMAC_SHA256": [mac_id],
        "version_template.algorithm=GOOGLE_SYMMETRIC_ENCRYPTION": ["Bravo", "alpha", "charlie"],
        "primary.state=ENABLED": ["Bravo", "alpha"],
        "name:BRAVO": ["Bravo"],
        'createTime>"2000-01-01T00:00:00Z"': everyone,
        'createTime<"2000-01-01T00:00:00Z"': [],
        "destroyScheduledDuration>=2592000s": everyone,
        "destroyScheduledDuration => 2592001s": [],
        "nosuchfield=x": [],
    }
    for text, expected in cases.items():
        assert _keys(gcp, ring, text) == expected, text
    assert _keys(gcp, ring, order_by="name desc") == sorted(everyone, reverse=True)
    assert _keys(gcp, ring, "purpose=ENCRYPT_DECRYPT", "labels.env desc, name") == [
        "alpha",
        "Bravo",
        "charlie",
    ]


def test_a_filtered_page_holds_matching_items_and_its_token_points_past_them(
    server: Server, gcp: Client, admin_token: str
) -> None:
    ring = _ring(gcp)
    names = [f"k{i:02d}" for i in range(14)]
    for i, name in enumerate(names):
        _key(gcp, ring, name, {"odd": "yes"} if i % 2 else {"odd": "no", "kind": "even"})
    evens = names[0::2]
    first = _raw(
        server, "GET", f"/v1/{ring}/cryptoKeys?filter=labels.odd%3Dno&pageSize=5", admin_token
    ).json()
    assert [k["name"].rsplit("/", 1)[1] for k in first["cryptoKeys"]] == evens[:5]
    assert "totalSize" not in first and first["nextPageToken"]
    second = _raw(
        server,
        "GET",
        f"/v1/{ring}/cryptoKeys?filter=labels.odd%3Dno&pageSize=5"
        f"&pageToken={first['nextPageToken']}",
        admin_token,
    ).json()
    assert [k["name"].rsplit("/", 1)[1] for k in second["cryptoKeys"]] == evens[5:]
    assert "nextPageToken" not in second
    whole = _raw(server, "GET", f"/v1/{ring}/cryptoKeys?filter=labels.odd%3Dno", admin_token)
    assert whole.json()["totalSize"] == len(evens)
    # The client's pager walks filtered and ordered pages alike.
    pager = gcp.list_crypto_keys(
        request={"parent": ring, "filter": "labels.odd=yes", "page_size": 3}
    )
    assert [k.name.rsplit("/", 1)[1] for k in pager] == names[1::2]
    pager = gcp.list_crypto_keys(
        request={"parent": ring, "filter": "labels:kind", "order_by": "name desc", "page_size": 3}
    )
    assert [k.name.rsplit("/", 1)[1] for k in pager] == evens[::-1]
    # An ordered list's token is refused by the same list without order_by.
    ordered = _raw(
        server, "GET", f"/v1/{ring}/cryptoKeys?orderBy=name%20desc&pageSize=2", admin_token
    ).json()
    refused = _raw(
        server, "GET", f"/v1/{ring}/cryptoKeys?pageToken={ordered['nextPageToken']}", admin_token
    )
    assert refused.status_code == 400


def test_a_key_the_caller_may_not_describe_stays_hidden_from_filters(
    server: Server, gcp: Client
) -> None:
    ring = _ring(gcp)
    seen = _key(gcp, ring, "seen", {"env": "prod"})
    _key(gcp, ring, "hidden", {"env": "prod", "secret": "yes"})
    name = _user(server, ["kms:ListKeys", "kms:ListAliases"])
    gcp.set_iam_policy(
        request={
            "resource": seen.name,
            "policy": {
                "bindings": [{"role": "roles/cloudkms.viewer", "members": [f"user:{name}"]}]
            },
        }
    )
    lister = _client(server, _token(server, name))
    assert _keys(lister, ring) == ["seen"]
    assert _keys(lister, ring, "labels.env=prod") == ["seen"]
    assert _keys(lister, ring, "labels.secret=yes") == []
    assert _keys(lister, ring, "labels.secret!=yes") == ["seen"]
    assert _keys(lister, ring, order_by="name desc") == ["seen"]


def test_version_filters_and_order(gcp: Client) -> None:
    ring = _ring(gcp)
    key = _key(gcp, ring, "versions", {})
    for _ in range(2):
        gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    _set_state(gcp, f"{key.name}/cryptoKeyVersions/2", _STATE.DISABLED)

    def versions(filter: str = "", order_by: str = "") -> list[str]:
        found = gcp.list_crypto_key_versions(
            request={"parent": key.name, "filter": filter, "order_by": order_by}
        )
        return [v.name.rsplit("/", 1)[1] for v in found]

    assert versions("state=DISABLED") == ["2"]
    assert versions("state!=DISABLED") == ["1", "3"]
    assert versions("state=ENABLED OR name:versions/2") == ["1", "2", "3"]
    assert versions("algorithm=GOOGLE_SYMMETRIC_ENCRYPTION", "name desc") == ["3", "2", "1"]
    assert versions(order_by="state, name desc") == ["2", "3", "1"]


def test_key_ring_filters_and_order(server: Server, gcp: Client, admin_token: str) -> None:
    location = "ap-south-2"  # a region's name no other test makes key rings in
    parent = f"projects/{PROJECT}/locations/{location}"
    tag = uuid.uuid4().hex[:6]
    made = [
        gcp.create_key_ring(
            request={"parent": parent, "key_ring_id": f"{tag}-{n}", "key_ring": {}}
        ).name
        for n in ("a", "b", "c")
    ]
    found = gcp.list_key_rings(
        request={
            "parent": parent,
            "filter": f"name:{tag}-B OR name:{tag}-c",
            "order_by": "name desc",
        }
    )
    assert [r.name for r in found] == [made[2], made[1]]
    reply = _raw(server, "GET", f"/v1/{parent}/keyRings?filter=name%3A{tag}", admin_token)
    assert reply.json()["totalSize"] == 3


@pytest.mark.parametrize(
    ("filter", "order_by"),
    [
        ("labels.env", ""), ("labels.env=", ""), ("(labels.env=a", ""), ("a=b)", ""),
        ("AND a=b", ""), ("a=b OR", ""), ("NOT NOT a=b", ""), ("f(x)=1", ""), ('"a"=b', ""),
        ("a=" + "(" * 40, ""), ("(" * 40 + "a=b" + ")" * 40, ""), ("a=b " * 600, ""),
        ('a="unclosed', ""), ("", "name sideways"), ("", "name,"), ("", "a b c"),
        ("", "name" + ",name" * 20), ("", "na*me"),
    ],
)  # fmt: skip
def test_malformed_filters_are_invalid_argument_audited_with_no_effect(
    server: Server, gcp: Client, filter: str, order_by: str
) -> None:
    ring = _ring(gcp)
    with pytest.raises(gexc.BadRequest) as refused:
        gcp.list_crypto_keys(request={"parent": ring, "filter": filter, "order_by": order_by})
    error = refused.value.response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["message"], error
    record = next(
        r for r in reversed(_records(server)) if r["operation"] == "GcpKms.ListCryptoKeys"
    )
    assert record["door"] == "gcp-kms" and record["outcome"] != "success"
    assert record["error_code"] == "ValidationException"


# -- testIamPermissions on a key ring --

_RING_PERMISSIONS = [
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.getIamPolicy",
    "cloudkms.keyRings.setIamPolicy",
    "cloudkms.cryptoKeys.create",
    "cloudkms.cryptoKeys.list",
]


def _held(client: Client, ring: str, permissions: list[str]) -> list[str]:
    answer = client.test_iam_permissions(request={"resource": ring, "permissions": permissions})
    return list(answer.permissions)


def test_key_ring_test_iam_permissions_answers_what_the_caller_holds(
    server: Server, gcp: Client
) -> None:
    ring = _ring(gcp)
    assert _held(gcp, ring, _RING_PERMISSIONS) == _RING_PERMISSIONS
    reader = _client(server, _token(server, _user(server, ["kms:ListKeys"])))
    assert _held(reader, ring, _RING_PERMISSIONS) == ["cloudkms.keyRings.get"]
    nobody = _client(server, _token(server, _user(server, None)))
    assert _held(nobody, ring, _RING_PERMISSIONS) == []
    lister = _client(server, _token(server, _user(server, ["kms:ListKeys", "kms:ListAliases"])))
    assert _held(lister, ring, _RING_PERMISSIONS[::-1]) == [
        "cloudkms.cryptoKeys.list",
        "cloudkms.keyRings.get",
    ]
    # Creating needs kms:CreateKey and kms:CreateAlias on this key ring's aliases.
    maker = _client(server, _token(server, _user(server, ["kms:CreateKey", "kms:CreateAlias"])))
    assert _held(maker, ring, ["cloudkms.cryptoKeys.create"]) == ["cloudkms.cryptoKeys.create"]
    creator = _client(server, _token(server, _user(server, ["kms:CreateKey"])))
    assert _held(creator, ring, ["cloudkms.cryptoKeys.create"]) == []
    # Nothing was recorded as a decision: the audit says what was asked.
    record = next(
        r
        for r in reversed(_records(server))
        if r["operation"] == "GcpKms.TestKeyRingIamPermissions"
    )
    assert record["door"] == "gcp-kms" and record["outcome"] == "success"


def test_key_ring_test_iam_permissions_refuses_unknown_permissions_and_rings(
    server: Server, gcp: Client, admin_token: str
) -> None:
    ring = _ring(gcp)
    for bad in (["cloudkms.cryptoKeyVersions.useToEncrypt"], ["storage.buckets.get"], [""]):
        with pytest.raises(gexc.BadRequest) as refused:
            _held(gcp, ring, bad)
        assert refused.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(gexc.NotFound):
        _held(gcp, ring + "-missing", ["cloudkms.keyRings.get"])
    reply = _raw(server, "POST", f"/v1/{ring}:testIamPermissions", admin_token, {"permissions": 5})
    assert reply.status_code == 400
    assert _held(gcp, ring, []) == []
