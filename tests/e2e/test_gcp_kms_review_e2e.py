"""Regression tests for an attacker's review of the Google Cloud KMS door:
names behind crypto keys and versions, rights on a crypto key, key ring
IAM, hostile page tokens and formats, version states on encrypt, what a
list shows, and key ring bounds."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import google.api_core.exceptions as gexc
import pytest
import requests
from botocore.exceptions import ClientError
from google.cloud import kms_v1
from tests.conftest import Server
from tests.e2e.test_gcp_kms_e2e import _client, _token, _user

_PURPOSE = kms_v1.CryptoKey.CryptoKeyPurpose
_ALG = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
_STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState


def _principal(server: Server, actions: list[str]) -> dict[str, Any]:
    """A principal with an identity policy allowing ``actions`` on ``*``,
    and its access key (for the AWS door)."""
    name = f"att-{uuid.uuid4().hex[:8]}"
    made = json.loads(server.cli("principals", "create", name, "--json").stdout)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    made["name"] = name
    return dict(made)


def _ring(gcp: kms_v1.KeyManagementServiceClient, location: str = "global") -> str:
    parent = f"projects/keycask-test/locations/{location}"
    ring_id = f"ring-{uuid.uuid4().hex[:8]}"
    return str(
        gcp.create_key_ring(request={"parent": parent, "key_ring_id": ring_id, "key_ring": {}}).name
    )


def _sign_key(gcp: kms_v1.KeyManagementServiceClient, ring: str) -> Any:
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"k-{uuid.uuid4().hex[:6]}",
            "crypto_key": {
                "purpose": _PURPOSE.ASYMMETRIC_SIGN,
                "version_template": {"algorithm": _ALG.EC_SIGN_P256_SHA256},
            },
        }
    )


def _aws_error(call: Any) -> str:
    """The AWS error code ``call`` is answered with (the botocore model does
    not name NotAuthorizedException, so no modelled class to catch)."""
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def _alias(name: str) -> str:
    """The AWS door's alias of a Cloud KMS resource name."""
    return "alias/gcp/" + "/".join(name.split("/")[1::2])


def test_alias_gcp_names_are_the_cloud_kms_doors_alone(fresh_server: Server) -> None:
    """A destroyed version's name cannot be taken over: after v2 of an EC
    crypto key is destroyed, someone allowed CreateKey/CreateAlias cannot
    point alias .../K/2 at a key of theirs, nor take a crypto key's name
    before it is made; not even the owner may move or delete those names
    through the AWS door. v2 stays DESTROYED and signs nothing."""
    owner = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    ring = _ring(owner)
    key = _sign_key(owner, ring)
    owner.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    v2 = f"{key.name}/cryptoKeyVersions/2"
    owner.get_public_key(name=v2)
    owner.destroy_crypto_key_version(name=v2)
    fresh_server.advance_clock(31 * 86400)
    assert owner.get_crypto_key_version(name=v2).state == _STATE.DESTROYED
    att = _principal(fresh_server, ["kms:CreateKey", "kms:CreateAlias", "kms:UpdateAlias",
                                    "kms:DeleteAlias", "kms:Sign", "kms:GetPublicKey"])  # fmt: skip
    aws = fresh_server.client((att["AccessKeyId"], att["SecretAccessKey"]))
    x = aws.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    for name in (_alias(key.name) + "/2", _alias(ring) + "/squatted"):
        code = _aws_error(lambda name=name: aws.create_alias(AliasName=name, TargetKeyId=x))
        assert code == "NotAuthorizedException"
    assert owner.get_crypto_key_version(name=v2).state == _STATE.DESTROYED
    with pytest.raises(gexc.NotFound):
        owner.get_public_key(name=v2)
    with pytest.raises((gexc.NotFound, gexc.FailedPrecondition)):
        owner.asymmetric_sign(request={"name": v2, "digest": {"sha256": b"\x01" * 32}})
    # The squatted name is free for the Cloud KMS door.
    owner.create_crypto_key(
        request={"parent": ring, "crypto_key_id": "squatted",
                 "crypto_key": {"purpose": _PURPOSE.ENCRYPT_DECRYPT}}
    )  # fmt: skip
    admin = fresh_server.client()
    other = admin.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    moved = _aws_error(
        lambda: admin.update_alias(AliasName=_alias(key.name), TargetKeyId=other["KeyId"])
    )
    assert moved == "NotAuthorizedException"
    deleted = _aws_error(lambda: admin.delete_alias(AliasName=_alias(key.name)))
    assert deleted == "NotAuthorizedException"
    # Version 1 is still the owner's key and signs.
    owner.asymmetric_sign(
        request={"name": f"{key.name}/cryptoKeyVersions/1", "digest": {"sha256": b"\x01" * 32}}
    )


def test_a_new_asymmetric_version_needs_a_right_on_the_crypto_key(server: Server) -> None:
    """CreateKey and CreateAlias on ``*`` are not enough to add a version
    to someone's asymmetric crypto key: kms:RotateKeyOnDemand on the crypto
    key is needed first, as for a symmetric key's new version."""
    owner = _client(server, _token(server, _user(server, ["kms:*"])))
    key = _sign_key(owner, _ring(owner))
    weak = _client(server, _token(server, _user(server, ["kms:CreateKey", "kms:CreateAlias"])))
    with pytest.raises(gexc.Forbidden):
        weak.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    versions = [v.name for v in owner.list_crypto_key_versions(parent=key.name)]
    assert versions == [f"{key.name}/cryptoKeyVersions/1"]
    rotator = ["kms:CreateKey", "kms:CreateAlias", "kms:RotateKeyOnDemand"]
    able = _client(server, _token(server, _user(server, rotator)))
    made = able.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert made.name == f"{key.name}/cryptoKeyVersions/2"


def test_ring_iam_reaches_its_crypto_keys_and_versions_and_nothing_planted(
    server: Server,
) -> None:
    """A key ring's setIamPolicy applies to the keys its crypto keys'
    settings name (a crypto key and its later versions), once each: a key
    someone else tries to plant in the ring (refused since alias/gcp/ is
    the Cloud KMS door's) cannot block the owner removing bindings."""
    owner = _client(server, _token(server, _user(server, ["kms:*"])))
    ring = _ring(owner)
    key = _sign_key(owner, ring)
    owner.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    role = "roles/cloudkms.signerVerifier"
    victim = _user(server, None)
    set_to = owner.set_iam_policy(
        request={"resource": ring,
                 "policy": {"bindings": [{"role": role, "members": [f"user:{victim}"]}]}}
    )  # fmt: skip
    att = _principal(server, ["kms:CreateKey", "kms:CreateAlias", "kms:PutKeyPolicy"])
    aws = server.client((att["AccessKeyId"], att["SecretAccessKey"]))
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": att["Arn"]},
                       "Action": "kms:*", "Resource": "*"}],
    }  # fmt: skip
    y = aws.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    planted = _aws_error(
        lambda: aws.create_alias(AliasName=_alias(ring + "/cryptoKeys/zz"), TargetKeyId=y)
    )
    assert planted == "NotAuthorizedException"
    admin = server.client()

    def ring_sids(alias: str) -> list[str]:
        key_id = admin.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
        text = admin.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
        return [st.get("Sid", "") for st in json.loads(text)["Statement"]]

    for alias in (_alias(key.name), _alias(key.name) + "/2"):
        assert "GcpIamRingSignerVerifier" in ring_sids(alias)
    owner.set_iam_policy(request={"resource": ring, "policy": {"etag": set_to.etag}})
    assert list(owner.get_iam_policy(request={"resource": ring}).bindings) == []
    for alias in (_alias(key.name), _alias(key.name) + "/2"):
        assert not [s for s in ring_sids(alias) if s.startswith("GcpIamRing")]


def _raw(server: Server, method: str, path: str, token: str, body: Any = None) -> Any:
    return requests.request(
        method,
        server.endpoint + path,
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        timeout=30,
    )


def _symmetric(gcp: kms_v1.KeyManagementServiceClient, ring: str) -> Any:
    return gcp.create_crypto_key(
        request={"parent": ring, "crypto_key_id": f"s-{uuid.uuid4().hex[:6]}",
                 "crypto_key": {"purpose": _PURPOSE.ENCRYPT_DECRYPT}}
    )  # fmt: skip


def test_odd_page_tokens_and_public_key_formats_are_no_500(server: Server) -> None:
    """A version list's page token or a publicKeyFormat of non-ASCII digits
    ("²") or thousands of digits is a client error, never a 500."""
    token = _token(server, _user(server, ["kms:*"]))
    gcp = _client(server, token)
    ring = _ring(gcp)
    key = _symmetric(gcp, ring)
    signer = _sign_key(gcp, ring)
    for after in ("\u00b2", "9" * 5000):
        page = base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")
        r = _raw(server, "GET", f"/v1/{key.name}/cryptoKeyVersions?pageToken={page}", token)
        assert r.status_code < 500, r.text
    page = base64.urlsafe_b64encode("\u00e9".encode()).decode()
    assert _raw(server, "GET", f"/v1/{ring}/cryptoKeys?pageToken={page}", token).status_code < 500
    version = f"{signer.name}/cryptoKeyVersions/1"
    for fmt in ("%C2%B2", "9" * 5000):
        r = _raw(server, "GET", f"/v1/{version}/publicKey?publicKeyFormat={fmt}", token)
        assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    assert _raw(server, "GET", f"/v1/{version}/publicKey?publicKeyFormat=1", token).ok


def test_encrypt_under_a_destroyed_primary_is_failed_precondition(fresh_server: Server) -> None:
    """Encrypt and GenerateDataKey under a DESTROYED primary version answer
    the version's state (Cloud KMS's FAILED_PRECONDITION, the AWS door's
    KMSInvalidStateException), not a missing-material 500."""
    token = _token(fresh_server, _user(fresh_server, ["kms:*"]))
    gcp = _client(fresh_server, token)
    key = _symmetric(gcp, _ring(gcp))
    gcp.destroy_crypto_key_version(name=f"{key.name}/cryptoKeyVersions/1")
    fresh_server.advance_clock(31 * 86400)
    for path in (f"/v1/{key.name}:encrypt", f"/v1/{key.name}/cryptoKeyVersions/1:encrypt"):
        r = _raw(fresh_server, "POST", path, token, {"plaintext": "aGk="})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["status"] == "FAILED_PRECONDITION", r.text
    kms = fresh_server.client()
    with pytest.raises(kms.exceptions.KMSInvalidStateException, match="DESTROYED"):
        kms.encrypt(KeyId=_alias(key.name), Plaintext=b"x")
    with pytest.raises(kms.exceptions.KMSInvalidStateException, match="DESTROYED"):
        kms.generate_data_key(KeyId=_alias(key.name), KeySpec="AES_256")


def test_crypto_keys_list_shows_only_keys_the_caller_may_describe(server: Server) -> None:
    """cryptoKeys.list needs ListKeys and ListAliases on ``*``, and shows a
    crypto key (labels, algorithm, state) only to who may DescribeKey it."""
    owner = _client(server, _token(server, _user(server, ["kms:*"])))
    ring = _ring(owner)
    names = sorted(_symmetric(owner, ring).name for _ in range(2))
    blind = _client(server, _token(server, _user(server, ["kms:ListKeys", "kms:ListAliases"])))
    assert list(blind.list_crypto_keys(parent=ring)) == []
    seeing = ["kms:ListKeys", "kms:ListAliases", "kms:DescribeKey"]
    viewer = _client(server, _token(server, _user(server, seeing)))
    assert [k.name for k in viewer.list_crypto_keys(parent=ring)] == names


def test_key_rings_are_bounded_per_account_and_region_and_locations_are_regions(
    fresh_server: Server,
) -> None:
    """A location is ``global`` or a region's name; an account makes at
    most 1,000 key rings in a region, over all its projects (429
    RESOURCE_EXHAUSTED after), and other regions keep their own count."""
    token = _token(fresh_server, _user(fresh_server, ["kms:*"]))
    for location in ("foo", "a" * 40 + "-1", "us-east-1-", "x1"):
        r = _raw(fresh_server, "POST", f"/v1/projects/keycask-test/locations/{location}"
                 "/keyRings?keyRingId=r", token, {})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def make(project: str, location: str, ring: str) -> Any:
        url = f"{fresh_server.endpoint}/v1/projects/{project}/locations/{location}/keyRings"
        return session.post(url, params={"keyRingId": ring}, json={}, timeout=30)

    for i in range(999):
        assert make("keycask-test", "eu-west-1", f"r{i}").status_code == 200
    assert make("keycask-other", "eu-west-1", "last").status_code == 200
    refused = make("keycask-third", "eu-west-1", "one-more")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert make("keycask-test", "europe-west1", "elsewhere").status_code == 200
    assert make("keycask-test", "global", "global-one").status_code == 200


def test_principal_members_must_be_of_the_keys_account(server: Server) -> None:
    """A binding's principal:ARN names a principal of the key's account;
    another account's ARN is INVALID_ARGUMENT and the policy is unchanged."""
    owner_name = _user(server, ["kms:*"])
    owner = _client(server, _token(server, owner_name))
    key = _symmetric(owner, _ring(owner))
    account = server.client().describe_key(KeyId=_alias(key.name))["KeyMetadata"]["AWSAccountId"]
    other = "123456789012" if account != "123456789012" else "210987654321"
    role = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    before = owner.get_iam_policy(request={"resource": key.name})
    for arn in (f"arn:aws:iam::{other}:root", f"arn:aws:iam::{other}:user/x", "arn:aws"):
        with pytest.raises(gexc.BadRequest, match="principal"):
            owner.set_iam_policy(
                request={"resource": key.name,
                         "policy": {"bindings": [{"role": role, "members": [f"principal:{arn}"]}]}}
            )  # fmt: skip
    assert owner.get_iam_policy(request={"resource": key.name}).etag == before.etag
    own = f"arn:aws:iam::{account}:user/{owner_name}"
    owner.set_iam_policy(
        request={"resource": key.name,
                 "policy": {"bindings": [{"role": role, "members": [f"principal:{own}"]}]}}
    )  # fmt: skip
