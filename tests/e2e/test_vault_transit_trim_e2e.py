"""Vault Transit's trim (service/core/transit_trim.py) driven by hvac: old
versions destroyed for good, through every door, and only once the key's
floors already refuse them; and min_decryption_version holding at the AWS
door too."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from typing import Any

import botocore.exceptions
import hvac
import hvac.exceptions
import pytest
from tests.conftest import Server


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _principal(server: Server, actions: list[str]) -> str:
    name = f"trim-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    allow = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": [allow]}))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    out = server.cli("principals", "token", "create", name, "--json").stdout
    return str(json.loads(out)["Token"])


@pytest.fixture(scope="module")
def vault(server: Server) -> hvac.Client:
    return hvac.Client(url=server.endpoint, token=_principal(server, ["kms:*"]))


def _blob(text: str) -> bytes:
    return base64.b64decode(text.split(":", 2)[2])


def _key_with_versions(vault: hvac.Client, count: int) -> tuple[str, list[str]]:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    texts = []
    for n in range(count):
        if n:
            vault.secrets.transit.rotate_key(name)
        sealed = vault.secrets.transit.encrypt_data(name, _b64(f"v{n + 1}".encode()))
        texts.append(sealed["data"]["ciphertext"])
    return name, texts


def _store_paths(server: Server, prefix: str) -> list[str]:
    uri = f"file:{server.data_dir / 'keycask.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute(
            "SELECT path FROM kv WHERE path >= ? AND path < ?", (prefix, prefix + "~")
        )
        return sorted(row[0] for row in rows)


def _audit(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _error(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value)


def test_trim_destroys_old_versions_through_every_door(server: Server, vault: hvac.Client) -> None:
    kms = server.client()
    name, texts = _key_with_versions(vault, 4)
    assert [t[:9] for t in texts] == ["vault:v1:", "vault:v2:", "vault:v3:", "vault:v4:"]
    # Vault's preconditions: both floors must already refuse what is trimmed.
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        vault.secrets.transit.trim_key(name, 3)
    assert "minimum encryption version is not set" in _error(refused)
    vault.secrets.transit.update_key_configuration(name, min_encryption_version=3)
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        vault.secrets.transit.trim_key(name, 3)
    assert "greater than minimum decryption version" in _error(refused)
    vault.secrets.transit.update_key_configuration(name, min_decryption_version=3)
    for bad, why in ((4, "greater than minimum encryption"), (0, "should be positive")):
        with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
            vault.secrets.transit.trim_key(name, bad)
        assert why in _error(refused)
    # The floor set through transit is the key's: the AWS door refuses v1's
    # blob too, even before the trim destroys its material.
    with pytest.raises(botocore.exceptions.ClientError) as aws:
        kms.decrypt(CiphertextBlob=_blob(texts[0]))
    assert aws.value.response["Error"]["Code"] == "InvalidCiphertextException"
    assert "min_decryption_version" in aws.value.response["Error"]["Message"]

    trimmed = vault.secrets.transit.trim_key(name, 3)["data"]
    assert trimmed["min_available_version"] == 3
    assert sorted(trimmed["keys"]) == ["3", "4"]
    read = vault.secrets.transit.read_key(name)["data"]
    assert read["min_available_version"] == 3 and sorted(read["keys"]) == ["3", "4"]
    # The floors can no longer reach below the trimmed versions...
    with pytest.raises(hvac.exceptions.InvalidRequest, match="min_available_version"):
        vault.secrets.transit.update_key_configuration(name, min_decryption_version=1)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="cannot be decremented"):
        vault.secrets.transit.trim_key(name, 2)
    # ...and v1, v2 are gone for good: the material is not in the store.
    key_id = read["keycask_key_arn"].split("/")[-1]
    rows = _store_paths(server, f"mat/{key_id}/")
    assert rows == [f"mat/{key_id}/{n:010d}" for n in (3, 4)]
    # v3, v4 still open through both doors.
    for text, plain in ((texts[2], b"v3"), (texts[3], b"v4")):
        out = vault.secrets.transit.decrypt_data(name, text)["data"]["plaintext"]
        assert base64.b64decode(out) == plain
        assert kms.decrypt(CiphertextBlob=_blob(text))["Plaintext"] == plain
    # The rotation history stays: the versions happened.
    rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]
    assert len(rotations) == 3
    # The audit record says what was destroyed.
    records = _audit(server)
    trim = [r for r in records if r["operation"] == "VaultTransit.TrimKey"]
    assert any("versions 1 to 2 destroyed" in (r.get("detail") or "") for r in trim)
    assert all(r["door"] == "vault-transit" for r in trim)


def test_trim_needs_the_right_to_destroy_key_material(server: Server, vault: hvac.Client) -> None:
    name, _ = _key_with_versions(vault, 2)
    # hvac refuses equal floors in one call (Vault takes them), so two calls.
    vault.secrets.transit.update_key_configuration(name, min_decryption_version=2)
    vault.secrets.transit.update_key_configuration(name, min_encryption_version=2)
    weak = hvac.Client(
        url=server.endpoint,
        token=_principal(
            server, ["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:PutKeyPolicy"]
        ),
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        weak.secrets.transit.trim_key(name, 2)
    assert vault.secrets.transit.read_key(name)["data"]["min_available_version"] == 0
    allowed = hvac.Client(
        url=server.endpoint, token=_principal(server, ["kms:ScheduleKeyDeletion"])
    )
    assert allowed.secrets.transit.trim_key(name, 2)["data"]["min_available_version"] == 2


def test_trim_refuses_keys_it_cannot_trim(server: Server, vault: hvac.Client) -> None:
    kms = server.client()
    # A multi-Region key's versions are shared by every copy.
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    name = f"m{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=f"alias/transit/{name}", TargetKeyId=mrk)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="multi-Region"):
        vault.secrets.transit.trim_key(name, 1)
    signing = f"s{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(signing, key_type="ecdsa-p256")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="aes256-gcm96"):
        vault.secrets.transit.trim_key(signing, 1)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="missing min_available_version"):
        vault.adapter.post(f"/v1/transit/keys/{signing}/trim", json={})
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.transit.trim_key(f"absent{uuid.uuid4().hex[:6]}", 1)


def _policy_token(server: Server, statements: list[dict[str, Any]]) -> str:
    name = f"trim-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    return str(
        json.loads(server.cli("principals", "token", "create", name, "--json").stdout)["Token"]
    )


def _floored(vault: hvac.Client, versions: int, floor: int) -> str:
    name, _ = _key_with_versions(vault, versions)
    vault.secrets.transit.update_key_configuration(name, min_decryption_version=floor)
    vault.secrets.transit.update_key_configuration(name, min_encryption_version=floor)
    return name


def test_a_deny_on_short_deletion_windows_denies_trim(server: Server, vault: hvac.Client) -> None:
    name = _floored(vault, 3, 3)
    guarded = hvac.Client(url=server.endpoint, token=_policy_token(server, [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:ScheduleKeyDeletion", "Resource": "*",
         "Condition": {"NumericLessThan": {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"}}},
    ]))  # fmt: skip
    with pytest.raises(hvac.exceptions.Forbidden):
        guarded.secrets.transit.trim_key(name, 3)
    assert vault.secrets.transit.read_key(name)["data"]["min_available_version"] == 0


def test_trim_refuses_a_key_waiting_for_deletion(server: Server, vault: hvac.Client) -> None:
    name = _floored(vault, 3, 3)
    key_id = vault.secrets.transit.read_key(name)["data"]["keycask_key_arn"]
    kms = server.client()
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=30)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.secrets.transit.trim_key(name, 3)
    kms.cancel_key_deletion(KeyId=key_id)
    kms.enable_key(KeyId=key_id)
    # Nothing was destroyed: every version still opens once the key is back.
    rows = _store_paths(server, f"mat/{key_id.split('/')[-1]}/")
    assert len(rows) == 3


def test_floors_hold_after_trim_and_bad_numbers_are_400(server: Server, vault: hvac.Client) -> None:
    name = _floored(vault, 3, 2)
    vault.secrets.transit.trim_key(name, 2)
    # min_encryption_version 0 would let encrypt name a trimmed version: refused.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="min_available_version"):
        vault.secrets.transit.update_key_configuration(name, min_encryption_version=0)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.secrets.transit.encrypt_data(name, _b64(b"x"), key_version=1)
    for bad in ("\u00b2", "9" * 40, "-1", "1.5"):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            vault.adapter.post(f"/v1/transit/keys/{name}/trim", json={"min_available_version": bad})


def test_multi_region_keys_take_no_floors(server: Server, vault: hvac.Client) -> None:
    """A floor kept on one copy would not hold in another region, where the
    same versions open: so none is set at all."""
    kms = server.client()
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    name = f"m{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=f"alias/transit/{name}", TargetKeyId=mrk)
    kms.rotate_key_on_demand(KeyId=mrk)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="multi-Region"):
        vault.secrets.transit.update_key_configuration(name, min_decryption_version=2)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="multi-Region"):
        vault.secrets.transit.update_key_configuration(name, min_encryption_version=2)
    # deletion_allowed is not a floor: still settable.
    vault.secrets.transit.update_key_configuration(name, deletion_allowed=True)
