"""Cloud KMS protection level HSM (issue 20) through google-cloud-kms's REST
transport, against a real keycask server configured with a real SoftHSM2
token (``--hsm``): a crypto key of protection level HSM is a keycask key of
the account's connected AWS_CLOUDHSM custom key store, generated and used
inside the token (docs/gcp-kms.md, "Protection levels"; docs/hsm.md).

The server, the token and the store come from test_hsm_key_store_e2e, the
Cloud KMS clients from test_gcp_kms_e2e."""

from __future__ import annotations

import json
import uuid
from typing import Any

import google.api_core.exceptions as gexc
import pytest
from google.cloud import kms_v1
from pkcs11 import Attribute
from production import SoftHsm
from test_gcp_kms_e2e import PROJECT, _client, _records, _ring, _token, _user
from test_hsm_key_store_e2e import (
    CLUSTER,
    _create_store,
    _stored_paths,
    _token_keys,
    anchor,
    hsm,
    server,
)
from test_xks_hsm_e2e import _list_objects

from conftest import DAY, Server

__all__ = ["anchor", "hsm", "server"]  # fixtures used here, defined there

HSM = kms_v1.ProtectionLevel.HSM
STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
GLOBAL = f"projects/{PROJECT}/locations/global"


def _admin(server: Server) -> kms_v1.KeyManagementServiceClient:
    return _client(server, _token(server, _user(server, ["kms:*"])))


def _connected_store(server: Server, anchor: str) -> str:
    kms = server.client()
    store_id = _create_store(kms, anchor)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    return store_id


def _hsm_key(
    gcp: kms_v1.KeyManagementServiceClient, ring: str, key_id: str = "", **fields: Any
) -> Any:
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": key_id or f"hsm-{uuid.uuid4().hex[:8]}",
            "crypto_key": {
                "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                "version_template": {"protection_level": HSM},
                **fields,
            },
        }
    )


def _precondition(error: pytest.ExceptionInfo[gexc.GoogleAPICallError]) -> str:
    """The message of a FAILED_PRECONDITION answer (400)."""
    assert isinstance(error.value, gexc.BadRequest)
    body = error.value.response.json()["error"]
    assert (body["code"], body["status"]) == (400, "FAILED_PRECONDITION"), body
    return str(body["message"])


def _alias(name: str) -> str:
    """The AWS door's alias of a crypto key (docs/gcp-kms.md)."""
    project, location, ring, key = name.split("/")[1::2]
    return f"alias/gcp/{project}/{location}/{ring}/{key}"


def _gcp_aliases(server: Server) -> list[str]:
    aliases = server.client().list_aliases(Limit=100)["Aliases"]
    return [a["AliasName"] for a in aliases if a["AliasName"].startswith("alias/gcp/")]


def _refused(server: Server, operation: str) -> dict[str, Any]:
    return next(
        r for r in reversed(_records(server))
        if r["operation"] == f"GcpKms.{operation}" and r["outcome"] != "success"
    )  # fmt: skip


def test_hsm_crypto_key_lives_and_works_inside_the_token(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    store_id = _connected_store(server, anchor)
    gcp = _admin(server)
    ring = _ring(gcp)
    key = _hsm_key(gcp, ring)
    assert key.version_template.protection_level == HSM
    assert key.version_template.algorithm == (
        kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    )
    assert key.primary.protection_level == HSM and key.primary.state == STATE.ENABLED
    assert gcp.get_crypto_key(name=key.name).version_template.protection_level == HSM
    version = gcp.get_crypto_key_version(name=f"{key.name}/cryptoKeyVersions/1")
    assert version.protection_level == HSM and not version.attestation.content
    (listed,) = gcp.list_crypto_key_versions(parent=key.name)
    assert listed.protection_level == HSM

    plaintext, aad = b"inside the token" * 100, b"order 17"
    sealed = gcp.encrypt(
        request={"name": key.name, "plaintext": plaintext, "additional_authenticated_data": aad}
    )
    assert sealed.protection_level == HSM
    assert sealed.name == f"{key.name}/cryptoKeyVersions/1"
    assert sealed.ciphertext[0] == 0x03  # blob v3: AES-GCM done by the token
    opened = gcp.decrypt(
        request={
            "name": key.name,
            "ciphertext": sealed.ciphertext,
            "additional_authenticated_data": aad,
        }
    )
    assert opened.plaintext == plaintext and opened.used_primary
    assert opened.protection_level == HSM
    with pytest.raises(gexc.BadRequest):
        gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext})  # no AAD

    # The AWS door sees the same key, held in the store's HSM.
    kms = server.client()
    meta = kms.describe_key(KeyId=_alias(key.name))["KeyMetadata"]
    assert meta["Origin"] == "AWS_CLOUDHSM" and meta["CustomKeyStoreId"] == store_id
    assert meta["CloudHsmClusterId"] == CLUSTER
    blob = kms.encrypt(KeyId=_alias(key.name), Plaintext=b"from aws")["CiphertextBlob"]
    assert gcp.decrypt(request={"name": key.name, "ciphertext": blob}).plaintext == b"from aws"

    # The key is a token object: sensitive, never extractable...
    ((object_id, attributes),) = _token_keys(hsm).items()
    assert bytes(sealed.ciphertext[17:33]) == object_id
    assert attributes[Attribute.SENSITIVE] is True
    assert attributes[Attribute.EXTRACTABLE] is False
    assert attributes[Attribute.NEVER_EXTRACTABLE] is True
    assert attributes[Attribute.VALUE_LEN] == 32
    listing = _list_objects(hsm)
    assert "Secret Key Object; AES length 32" in listing
    assert f"keycask-{object_id.hex()}" in listing
    (access,) = [line for line in listing.splitlines() if line.strip().startswith("Access:")]
    flags = {flag.strip() for flag in access.split(":", 1)[1].split(",")}
    assert {"sensitive", "always sensitive", "never extractable"} <= flags
    assert "extractable" not in flags
    # ...and keycask's store holds no material for it.
    assert not [p for p in _stored_paths(server) if p.startswith(f"mat/{meta['KeyId']}/")]
    created = next(
        r for r in reversed(_records(server)) if r["operation"] == "GcpKms.CreateCryptoKey"
    )
    assert created["outcome"] == "success" and store_id in created["detail"]


def test_what_the_token_cannot_do_is_refused_with_the_reason(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    _connected_store(server, anchor)
    gcp = _admin(server)
    ring = _ring(gcp)
    # RSA and EC key pairs are made in the token (test_hsm_asymmetric_e2e);
    # Ed25519, ML-DSA and MAC keys are not.
    for purpose, algorithm in (
        ("ASYMMETRIC_SIGN", "EC_SIGN_ED25519"),
        ("ASYMMETRIC_SIGN", "PQ_SIGN_ML_DSA_65"),
        ("MAC", "HMAC_SHA256"),
    ):
        with pytest.raises(gexc.BadRequest) as error:
            gcp.create_crypto_key(
                request={
                    "parent": ring,
                    "crypto_key_id": f"k-{purpose.lower()}",
                    "crypto_key": {
                        "purpose": purpose,
                        "version_template": {"protection_level": HSM, "algorithm": algorithm},
                    },
                }
            )
        assert "no Ed25519, ML-DSA or MAC keys" in _precondition(error)
    # No rotation schedule, as AWS rotates no key of a custom key store.
    with pytest.raises(gexc.BadRequest) as error:
        _hsm_key(gcp, ring, rotation_period={"seconds": 90 * 86400})
    assert "never rotates keys held in an HSM" in _precondition(error)
    # Nor import-only: the token makes its own keys.
    with pytest.raises(gexc.BadRequest) as error:
        gcp.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": "k-import",
                "skip_initial_version_creation": True,
                "crypto_key": {
                    "purpose": "ENCRYPT_DECRYPT",
                    "import_only": True,
                    "version_template": {"protection_level": HSM},
                },
            }
        )
    assert "cannot be import-only" in _precondition(error)
    assert list(gcp.list_crypto_keys(parent=ring)) == []
    assert _token_keys(hsm) == {}
    assert _refused(server, "CreateCryptoKey")["error_code"] == "KMSInvalidStateException"

    key = _hsm_key(gcp, ring)
    with pytest.raises(gexc.BadRequest) as error:
        gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert "never rotates keys held in an HSM" in _precondition(error)
    refused = _refused(server, "CreateCryptoKeyVersion")
    assert refused["decision"] == "allow" and refused["error_code"] == "KMSInvalidStateException"
    for mask, body in (
        (["rotation_period"], {"rotation_period": {"seconds": 90 * 86400}}),
        (["rotation_period"], {}),
    ):
        with pytest.raises(gexc.BadRequest) as error:
            gcp.update_crypto_key(
                request={"crypto_key": {"name": key.name, **body}, "update_mask": {"paths": mask}}
            )
        assert "never rotates keys held in an HSM" in _precondition(error)
    assert [v.name for v in gcp.list_crypto_key_versions(parent=key.name)] == [
        f"{key.name}/cryptoKeyVersions/1"
    ]
    assert len(_token_keys(hsm)) == 1


def test_without_a_connected_store_nothing_is_made(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    gcp = _admin(server)
    ring = _ring(gcp)
    with pytest.raises(gexc.BadRequest) as error:
        _hsm_key(gcp, ring, "k")
    message = _precondition(error)
    assert "CreateCustomKeyStore" in message and "ConnectCustomKeyStore" in message
    store_id = _create_store(server.client(), anchor)  # not connected
    with pytest.raises(gexc.BadRequest) as error:
        _hsm_key(gcp, ring, "k")
    message = _precondition(error)
    assert f"{store_id} (DISCONNECTED)" in message and "ConnectCustomKeyStore" in message
    assert list(gcp.list_crypto_keys(parent=ring)) == []
    assert _gcp_aliases(server) == [] and _token_keys(hsm) == {}
    assert server.client().list_keys()["Keys"] == []
    refused = _refused(server, "CreateCryptoKey")
    assert refused["door"] == "gcp-kms" and refused["error_code"] == "KMSInvalidStateException"

    server.client().connect_custom_key_store(CustomKeyStoreId=store_id)
    key = _hsm_key(gcp, ring, "k")
    assert key.version_template.protection_level == HSM and len(_token_keys(hsm)) == 1


def test_no_hsm_configured_is_refused_with_the_reason(fresh_server: Server) -> None:
    gcp = _admin(fresh_server)
    ring = _ring(gcp)
    with pytest.raises(gexc.BadRequest) as error:
        _hsm_key(gcp, ring, "k")
    message = _precondition(error)
    assert "no HSM for this account" in message and "--hsm" in message
    assert list(gcp.list_crypto_keys(parent=ring)) == []
    assert _gcp_aliases(fresh_server) == []
    assert fresh_server.client().list_keys()["Keys"] == []
    refused = _refused(fresh_server, "CreateCryptoKey")
    assert refused["door"] == "gcp-kms" and refused["error_code"] == "KMSInvalidStateException"
    # Random bytes at protection level HSM: keycask's own source, as before.
    out = gcp.generate_random_bytes(
        request={"location": GLOBAL, "length_bytes": 32, "protection_level": HSM}
    )
    assert len(out.data) == 32


def test_create_is_authorized_as_create_key_in_a_custom_key_store(
    server: Server, hsm: SoftHsm, anchor: str
) -> None:
    """kms:KeyOrigin is AWS_CLOUDHSM, as for the AWS door's CreateKey in an
    AWS_CLOUDHSM store: a policy that refuses it refuses the HSM key only."""
    _connected_store(server, anchor)
    name = _user(server, None)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "kms:CreateKey",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:KeyOrigin": "AWS_CLOUDHSM"}},
            },
        ],
    }
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    gcp = _client(server, _token(server, name))
    ring = _ring(gcp)
    with pytest.raises(gexc.Forbidden):
        _hsm_key(gcp, ring)
    refused = _refused(server, "CreateCryptoKey")
    assert refused["decision"] == "deny" and refused["error_code"] == "AccessDeniedException"
    assert _token_keys(hsm) == {} and _gcp_aliases(server) == []
    software = gcp.create_crypto_key(
        request={"parent": ring, "crypto_key_id": "soft", "crypto_key": {"purpose": 1}}
    )
    assert software.version_template.protection_level == kms_v1.ProtectionLevel.SOFTWARE


def test_a_disconnected_store_refuses_until_connected_again(server: Server, anchor: str) -> None:
    store_id = _connected_store(server, anchor)
    gcp = _admin(server)
    key = _hsm_key(gcp, _ring(gcp))
    sealed = gcp.encrypt(request={"name": key.name, "plaintext": b"kept"})
    kms = server.client()
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    with pytest.raises(gexc.BadRequest) as error:
        gcp.encrypt(request={"name": key.name, "plaintext": b"x"})
    assert "not connected" in _precondition(error)
    with pytest.raises(gexc.BadRequest) as error:
        gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext})
    assert "not connected" in _precondition(error)
    assert _refused(server, "Encrypt")["error_code"] == "KMSInvalidStateException"
    # No new HSM key meanwhile either; the refusal names the step.
    with pytest.raises(gexc.BadRequest) as error:
        _hsm_key(gcp, _ring(gcp))
    assert "ConnectCustomKeyStore" in _precondition(error)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext}).plaintext == (
        b"kept"
    )


def test_disable_destroy_and_restore(server: Server, hsm: SoftHsm, anchor: str) -> None:
    _connected_store(server, anchor)
    gcp = _admin(server)
    ring = _ring(gcp)
    key = _hsm_key(gcp, ring, destroy_scheduled_duration={"seconds": 86400})
    version = f"{key.name}/cryptoKeyVersions/1"
    sealed = gcp.encrypt(request={"name": key.name, "plaintext": b"x"})

    def set_state(state: Any) -> Any:
        return gcp.update_crypto_key_version(
            request={"crypto_key_version": {"name": version, "state": state},
                     "update_mask": {"paths": ["state"]}}
        )  # fmt: skip

    assert set_state(STATE.DISABLED).state == STATE.DISABLED
    with pytest.raises(gexc.BadRequest) as error:
        gcp.encrypt(request={"name": key.name, "plaintext": b"x"})
    _precondition(error)
    assert set_state(STATE.ENABLED).state == STATE.ENABLED

    # destroy, then restore: the token object stays.
    assert gcp.destroy_crypto_key_version(name=version).state == STATE.DESTROY_SCHEDULED
    assert gcp.restore_crypto_key_version(name=version).state == STATE.DISABLED
    assert set_state(STATE.ENABLED).state == STATE.ENABLED
    server.advance_clock(2 * DAY)
    assert gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext}).plaintext == (
        b"x"
    )
    assert len(_token_keys(hsm)) == 1

    # destroy: when its time comes the scheduler destroys the token object.
    destroyed = gcp.destroy_crypto_key_version(name=version)
    assert destroyed.state == STATE.DESTROY_SCHEDULED
    with pytest.raises(gexc.BadRequest) as error:
        gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext})
    _precondition(error)
    server.advance_clock(2 * DAY)
    gone = gcp.get_crypto_key_version(name=version)
    assert gone.state == STATE.DESTROYED and gone.destroy_event_time
    assert _token_keys(hsm) == {}
    record = next(
        r for r in reversed(_records(server)) if r["operation"] == "DestroyCryptoKeyVersion"
    )
    assert record["principal"] == "keycask" and "HSM key" in record["detail"]
    assert "destroyed" in record["detail"]
    for call in (
        lambda: gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext}),
        lambda: gcp.restore_crypto_key_version(name=version),
        lambda: set_state(STATE.ENABLED),
    ):
        with pytest.raises(gexc.BadRequest) as error:
            call()
        _precondition(error)
    # The AWS door refuses too, and can still delete the key.
    kms = server.client()
    with pytest.raises(Exception, match="KMSInvalidStateException"):
        kms.decrypt(CiphertextBlob=sealed.ciphertext)
    key_id = kms.describe_key(KeyId=_alias(key.name))["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    server.advance_clock(8 * DAY)
    deleted = next(r for r in reversed(_records(server)) if r["operation"] == "DeleteKey")
    assert "already gone" in deleted["detail"]


def test_random_bytes_at_protection_level_hsm_come_from_the_token(
    server: Server, anchor: str
) -> None:
    gcp = _admin(server)
    request = {"location": GLOBAL, "length_bytes": 64, "protection_level": HSM}
    assert len(gcp.generate_random_bytes(request=request).data) == 64
    record = next(
        r for r in reversed(_records(server)) if r["operation"] == "GcpKms.GenerateRandomBytes"
    )
    assert "custom key store" not in (record["detail"] or "")  # no store: keycask's source
    store_id = _connected_store(server, anchor)
    first = gcp.generate_random_bytes(request=request).data
    assert len(first) == 64 and first != gcp.generate_random_bytes(request=request).data
    record = next(
        r for r in reversed(_records(server)) if r["operation"] == "GcpKms.GenerateRandomBytes"
    )
    assert record["outcome"] == "success"
    assert record["detail"] == f"random bytes from custom key store {store_id}"
    software = {**request, "protection_level": kms_v1.ProtectionLevel.SOFTWARE}
    assert len(gcp.generate_random_bytes(request=software).data) == 64
    record = next(
        r for r in reversed(_records(server)) if r["operation"] == "GcpKms.GenerateRandomBytes"
    )
    assert "custom key store" not in (record["detail"] or "")
