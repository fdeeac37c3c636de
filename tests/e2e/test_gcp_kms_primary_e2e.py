"""A Cloud KMS crypto key's primary version is the key's, not the door's:
updatePrimaryVersion may name an older ENABLED version, versions.create
leaves the primary as it was, every door's Encrypt, GenerateDataKey and
ReEncrypt seal under the chosen primary, and any other rotation (the AWS
door's RotateKeyOnDemand, automatic rotation, Vault Transit's rotate)
makes the new version the primary again. Google's client (REST), boto3
and hvac against a real server."""

from __future__ import annotations

import base64
import datetime
import uuid
from typing import Any

import google.api_core.exceptions as gexc
import hvac
import hvac.exceptions
import pytest
from google.cloud import kms_v1
from tests.conftest import Server
from tests.e2e.test_gcp_kms_e2e import (
    _client,
    _failed_precondition,
    _records,
    _ring,
    _set_state,
    _symmetric,
    _token,
    _user,
    admin_token,
    gcp,
)
from tests.e2e.test_vault_transit_e2e import _admin_token as _vault_admin

__all__ = ["admin_token", "gcp"]  # fixtures, used by name

_STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
Gcp = kms_v1.KeyManagementServiceClient


def _alias(name: str) -> str:
    return "alias/gcp/" + "/".join(name.split("/")[1::2])


def _primary(gcp: Gcp, key: Any) -> int:
    return int(gcp.get_crypto_key(name=key.name).primary.name.rsplit("/", 1)[1])


def _choose(gcp: Gcp, key: Any, version: int) -> Any:
    return gcp.update_crypto_key_primary_version(
        request={"name": key.name, "crypto_key_version_id": str(version)}
    )


def _materials(gcp: Gcp, kms: Any, key: Any, count: int) -> dict[str, int]:
    """Each version's KeyMaterialId (as the AWS door names it) -> its number:
    a blob sealed under version N by name, opened through the AWS door."""
    found = {}
    for n in range(1, count + 1):
        blob = gcp.encrypt(
            request={"name": f"{key.name}/cryptoKeyVersions/{n}", "plaintext": b"probe"}
        ).ciphertext
        found[kms.decrypt(CiphertextBlob=blob)["KeyMaterialId"]] = n
    assert len(found) == count
    return found


def _sealed_by(kms: Any, materials: dict[str, int], blob: bytes) -> int:
    return materials[kms.decrypt(CiphertextBlob=blob)["KeyMaterialId"]]


def _aws_sealed(kms: Any, materials: dict[str, int], alias: str) -> int:
    """The version the AWS door's Encrypt seals under."""
    return _sealed_by(kms, materials, kms.encrypt(KeyId=alias, Plaintext=b"x")["CiphertextBlob"])


def _three_versions(gcp: Gcp) -> Any:
    key = _symmetric(gcp, _ring(gcp))
    for _ in range(2):
        gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    return key


def test_versions_create_leaves_the_primary_and_every_door_seals_under_the_chosen_one(
    server: Server, gcp: Gcp, kms: Any
) -> None:
    key = _three_versions(gcp)
    # Cloud KMS's behaviour: a new version is not the primary until chosen.
    assert _primary(gcp, key) == 1
    assert _choose(gcp, key, 2).primary.name == f"{key.name}/cryptoKeyVersions/2"
    assert _primary(gcp, key) == 2
    # versions.create keeps the chosen primary.
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert _primary(gcp, key) == 2
    materials = _materials(gcp, kms, key, 4)
    alias = _alias(key.name)
    # The Cloud KMS door.
    sealed = gcp.encrypt(request={"name": key.name, "plaintext": b"gcp"})
    assert sealed.name == f"{key.name}/cryptoKeyVersions/2"
    assert _sealed_by(kms, materials, sealed.ciphertext) == 2
    opened = gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext})
    assert opened.plaintext == b"gcp" and opened.used_primary
    # The AWS door: Encrypt, GenerateDataKey, ReEncrypt's destination.
    aws_blob = kms.encrypt(KeyId=alias, Plaintext=b"aws")["CiphertextBlob"]
    assert _sealed_by(kms, materials, aws_blob) == 2
    assert gcp.decrypt(request={"name": key.name, "ciphertext": aws_blob}).used_primary
    data_key = kms.generate_data_key(KeyId=alias, KeySpec="AES_256")
    assert materials[data_key["KeyMaterialId"]] == 2
    assert _sealed_by(kms, materials, data_key["CiphertextBlob"]) == 2
    newest = gcp.encrypt(
        request={"name": f"{key.name}/cryptoKeyVersions/4", "plaintext": b"v4"}
    ).ciphertext
    assert not gcp.decrypt(request={"name": key.name, "ciphertext": newest}).used_primary
    again = kms.re_encrypt(CiphertextBlob=newest, DestinationKeyId=alias)
    assert materials[again["DestinationKeyMaterialId"]] == 2
    assert _sealed_by(kms, materials, again["CiphertextBlob"]) == 2
    # With every other version disabled, the AWS door's blobs still open.
    others = [f"{key.name}/cryptoKeyVersions/{n}" for n in (1, 3, 4)]
    for name in others:
        _set_state(gcp, name, _STATE.DISABLED)
    try:
        for blob in (aws_blob, data_key["CiphertextBlob"], again["CiphertextBlob"]):
            kms.decrypt(CiphertextBlob=blob)
        assert kms.encrypt(KeyId=alias, Plaintext=b"still")["CiphertextBlob"]
    finally:
        for name in others:
            _set_state(gcp, name, _STATE.ENABLED)
    # Every version's ciphertexts still open, through both doors.
    for n in range(1, 5):
        blob = gcp.encrypt(
            request={"name": f"{key.name}/cryptoKeyVersions/{n}", "plaintext": b"%d" % n}
        ).ciphertext
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"%d" % n
        back = gcp.decrypt(request={"name": key.name, "ciphertext": blob})
        assert back.plaintext == b"%d" % n and back.used_primary == (n == 2)
    # The AWS door's view: the chosen version's material is the current one.
    by_version = {n: m for m, n in materials.items()}
    meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert meta["CurrentKeyMaterialId"] == by_version[2]
    listed = kms.list_key_rotations(KeyId=meta["KeyId"], IncludeKeyMaterial="ALL_KEY_MATERIAL")
    states = {materials[r["KeyMaterialId"]]: r["KeyMaterialState"] for r in listed["Rotations"]}
    assert states == {1: "NON_CURRENT", 2: "CURRENT", 3: "NON_CURRENT", 4: "NON_CURRENT"}
    # Naming the newest clears the choice: the newest is the primary again.
    _choose(gcp, key, 4)
    meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert meta["CurrentKeyMaterialId"] == by_version[4]
    assert (
        _sealed_by(kms, materials, kms.encrypt(KeyId=alias, Plaintext=b"x")["CiphertextBlob"]) == 4
    )
    chosen = [
        r for r in _records(server)
        if r.get("operation") == "GcpKms.UpdateCryptoKeyPrimaryVersion"
        and key.name in str(r.get("detail", "")) and r["outcome"] == "success"
    ]  # fmt: skip
    assert len(chosen) == 2, chosen
    assert all(r["door"] == "gcp-kms" for r in chosen)


def test_a_rotation_through_the_aws_door_clears_the_choice(gcp: Gcp, kms: Any) -> None:
    key = _three_versions(gcp)
    _choose(gcp, key, 1)
    alias = _alias(key.name)
    key_id = kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    kms.rotate_key_on_demand(KeyId=key_id)
    assert _primary(gcp, key) == 4
    materials = _materials(gcp, kms, key, 4)
    assert (
        _sealed_by(kms, materials, kms.encrypt(KeyId=alias, Plaintext=b"x")["CiphertextBlob"]) == 4
    )
    assert gcp.encrypt(request={"name": key.name, "plaintext": b"y"}).name.endswith("/4")
    # A version made through the Cloud KMS door now keeps version 4.
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert _primary(gcp, key) == 4


def test_automatic_rotation_makes_the_new_version_the_primary(fresh_server: Server) -> None:
    gcp = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    key = gcp.create_crypto_key(
        request={
            "parent": _ring(gcp),
            "crypto_key_id": "rotating",
            "crypto_key": {
                "purpose": "ENCRYPT_DECRYPT",
                "rotation_period": datetime.timedelta(days=90),
                "next_rotation_time": soon,
            },
        }
    )
    gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert _primary(gcp, key) == 1
    fresh_server.advance_clock(2 * 86400)
    assert _primary(gcp, key) == 3
    assert gcp.encrypt(request={"name": key.name, "plaintext": b"x"}).name.endswith("/3")


def test_a_chosen_primary_not_enabled_refuses_encryption_through_every_door(
    gcp: Gcp, kms: Any
) -> None:
    key = _three_versions(gcp)
    alias = _alias(key.name)
    old = {
        n: gcp.encrypt(
            request={"name": f"{key.name}/cryptoKeyVersions/{n}", "plaintext": b"%d" % n}
        ).ciphertext
        for n in (1, 2, 3)
    }
    _choose(gcp, key, 1)
    v1 = f"{key.name}/cryptoKeyVersions/1"
    _set_state(gcp, v1, _STATE.DISABLED)
    assert "DISABLED" in _failed_precondition(
        lambda: gcp.encrypt(request={"name": key.name, "plaintext": b"x"})
    )
    for call in (
        lambda: kms.encrypt(KeyId=alias, Plaintext=b"x"),
        lambda: kms.generate_data_key(KeyId=alias, KeySpec="AES_256"),
        lambda: kms.re_encrypt(CiphertextBlob=old[2], DestinationKeyId=alias),
    ):
        with pytest.raises(kms.exceptions.KMSInvalidStateException):
            call()
    # The primary stays the chosen one (Cloud KMS does not pass it over),
    # and the other versions still decrypt.
    assert _primary(gcp, key) == 1
    for n in (2, 3):
        assert kms.decrypt(CiphertextBlob=old[n])["Plaintext"] == b"%d" % n
    # A version that is not ENABLED cannot become the primary either.
    message = _failed_precondition(lambda: _choose(gcp, key, 1))
    assert "DISABLED" in message and "crypto_key_version.state" in message
    _set_state(gcp, v1, _STATE.ENABLED)
    assert gcp.encrypt(request={"name": key.name, "plaintext": b"x"}).name == v1
    # Scheduled for destruction: refused the same way.
    gcp.destroy_crypto_key_version(name=v1)
    _failed_precondition(lambda: gcp.encrypt(request={"name": key.name, "plaintext": b"x"}))
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.encrypt(KeyId=alias, Plaintext=b"x")
    _choose(gcp, key, 2)
    assert gcp.encrypt(request={"name": key.name, "plaintext": b"x"}).name.endswith("/2")


def test_hostile_primary_choices_have_no_effect(fresh_server: Server) -> None:
    gcp = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    key = gcp.create_crypto_key(
        request={
            "parent": _ring(gcp),
            "crypto_key_id": "hostile",
            "crypto_key": {"purpose": "ENCRYPT_DECRYPT", "destroy_scheduled_duration": "86400s"},
        }
    )
    for _ in range(2):
        gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    _choose(gcp, key, 2)
    v1 = f"{key.name}/cryptoKeyVersions/1"
    gcp.destroy_crypto_key_version(name=v1)
    fresh_server.advance_clock(2 * 86400)
    assert gcp.get_crypto_key_version(name=v1).state == _STATE.DESTROYED
    before = [r for r in _records(fresh_server) if r.get("operation", "").startswith("GcpKms.")]
    # A DESTROYED version, one that does not exist, ids that are no number.
    assert "DESTROYED" in _failed_precondition(lambda: _choose(gcp, key, 1))
    for missing in (4, 99999):
        with pytest.raises(gexc.NotFound):
            _choose(gcp, key, missing)
    for bad in ("0", "-1", "abc", "", "1/../2", "9" * 40):
        with pytest.raises((gexc.BadRequest, gexc.NotFound)):
            gcp.update_crypto_key_primary_version(
                request={"name": key.name, "crypto_key_version_id": bad}
            )
    # Someone who may only encrypt cannot choose.
    user = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:Encrypt"])))
    with pytest.raises(gexc.Forbidden):
        _choose(user, key, 3)
    # An asymmetric key has no primary to choose.
    signing = gcp.create_crypto_key(
        request={
            "parent": key.name.rsplit("/cryptoKeys/", 1)[0],
            "crypto_key_id": "signing",
            "crypto_key": {
                "purpose": "ASYMMETRIC_SIGN",
                "version_template": {"algorithm": "EC_SIGN_P256_SHA256"},
            },
        }
    )
    with pytest.raises(gexc.BadRequest):
        _choose(gcp, signing, 1)
    # Nothing changed, every refusal audited.
    assert _primary(gcp, key) == 2
    assert gcp.encrypt(request={"name": key.name, "plaintext": b"x"}).name.endswith("/2")
    after = [r for r in _records(fresh_server) if r.get("operation", "").startswith("GcpKms.")]
    refused = [
        r for r in after[len(before):]
        if r["operation"] == "GcpKms.UpdateCryptoKeyPrimaryVersion" and r["outcome"] == "error"
    ]  # fmt: skip
    assert len(refused) >= 10, refused


def test_the_vault_transit_door_follows_the_choice_and_its_rotate_clears_it(
    server: Server, gcp: Gcp, kms: Any
) -> None:
    """A crypto key reached through a transit alias too: transit's encrypt
    seals under the chosen primary (a key_version named is that version),
    a chosen primary below a transit floor encrypts nothing through any
    door and cannot be chosen, and transit's rotate clears the choice."""
    key = _three_versions(gcp)
    _choose(gcp, key, 2)
    name = f"gcp-{uuid.uuid4().hex[:8]}"
    key_id = kms.describe_key(KeyId=_alias(key.name))["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/transit/{name}", TargetKeyId=key_id)
    vault = hvac.Client(url=server.endpoint, token=_vault_admin(server))
    transit = vault.secrets.transit

    def sealed(**extra: Any) -> str:
        return str(
            transit.encrypt_data(name, base64.b64encode(b"v").decode(), **extra)["data"][
                "ciphertext"
            ]
        )

    assert sealed().startswith("vault:v2:")
    assert sealed(key_version=3).startswith("vault:v3:")
    keyed = transit.generate_data_key(name, key_type="wrapped")["data"]
    assert keyed["ciphertext"].startswith("vault:v2:")
    # A floor above the chosen primary: no door encrypts under it.
    transit.update_key_configuration(name, min_decryption_version=3)
    assert "min_decryption_version" in _failed_precondition(
        lambda: gcp.encrypt(request={"name": key.name, "plaintext": b"x"})
    )
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        sealed()
    _choose(gcp, key, 3)
    assert sealed().startswith("vault:v3:")
    _failed_precondition(lambda: _choose(gcp, key, 2))
    assert _primary(gcp, key) == 3
    # Vault's rotate: the new version is the primary.
    transit.rotate_key(name)
    assert _primary(gcp, key) == 4
    assert sealed().startswith("vault:v4:")
