"""Cloud KMS import jobs and cryptoKeyVersions.import (core/gcp_imports.py)
driven by google-cloud-kms over REST against a real server: key material
wrapped locally with ``cryptography`` exactly as Google documents each
import method, imported into an importOnly crypto key, used through both
doors; import jobs that expire on keycask's clock; hostile input answered
with Cloud KMS's errors, audited, with no effect."""

from __future__ import annotations

import os
import sqlite3
import uuid
from typing import Any

import google.api_core.exceptions as gexc
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from google.cloud import kms_v1
from tests.conftest import Server
from tests.e2e.test_gcp_kms_e2e import PROJECT, _client, _records, _ring, _token, _user

_METHOD = kms_v1.ImportJob.ImportMethod
_JOB_STATE = kms_v1.ImportJob.ImportJobState
_STATE = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
_ALG = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
_LEVEL = kms_v1.ProtectionLevel
_SYM = _ALG.GOOGLE_SYMMETRIC_ENCRYPTION
DAY = 86400


@pytest.fixture(scope="module")
def admin_token(server: Server) -> str:
    return _token(server, _user(server, ["kms:*"]))


@pytest.fixture(scope="module")
def gcp(server: Server, admin_token: str) -> kms_v1.KeyManagementServiceClient:
    return _client(server, admin_token)


def _import_only_key(gcp: kms_v1.KeyManagementServiceClient, ring: str) -> Any:
    return gcp.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": f"imp-{uuid.uuid4().hex[:8]}",
            "crypto_key": {
                "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                "version_template": {"algorithm": _SYM},
                "import_only": True,
            },
            "skip_initial_version_creation": True,
        }
    )


def _job(
    gcp: kms_v1.KeyManagementServiceClient,
    ring: str,
    method: Any = _METHOD.RSA_OAEP_3072_SHA256_AES_256,
) -> Any:
    return gcp.create_import_job(
        request={
            "parent": ring,
            "import_job_id": f"job-{uuid.uuid4().hex[:8]}",
            "import_job": {"import_method": method, "protection_level": _LEVEL.SOFTWARE},
        }
    )


def _wrap(job: Any, material: bytes) -> bytes:
    """Google's recipe for the job's method: RSA-OAEP (MGF1 with the same
    hash, empty label) of an ephemeral AES-256 key, then AES-KWP (RFC 5649)
    of the key with it; or, for RSA_OAEP_*_SHA256, RSA-OAEP-SHA256 of the
    key itself."""
    public = serialization.load_pem_public_key(job.public_key.pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    method = _METHOD(job.import_method).name
    sha = hashes.SHA1() if "_SHA1_" in method else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=sha), algorithm=sha, label=None)
    if not method.endswith("_AES_256"):
        return public.encrypt(material, oaep)
    ephemeral = os.urandom(32)
    return public.encrypt(ephemeral, oaep) + aes_key_wrap_with_padding(ephemeral, material)


def _import(
    gcp: kms_v1.KeyManagementServiceClient, key: Any, job: Any, wrapped: bytes, **extra: Any
) -> Any:
    request = {"parent": key.name, "algorithm": _SYM, "import_job": job.name,
               "wrapped_key": wrapped, **extra}  # fmt: skip
    return gcp.import_crypto_key_version(request=request)


def _alias(key_name: str) -> str:
    return "alias/gcp/" + "/".join(key_name.split("/")[1::2])


@pytest.mark.parametrize(
    "method",
    [
        _METHOD.RSA_OAEP_3072_SHA1_AES_256,
        _METHOD.RSA_OAEP_4096_SHA1_AES_256,
        _METHOD.RSA_OAEP_3072_SHA256_AES_256,
        _METHOD.RSA_OAEP_4096_SHA256_AES_256,
        _METHOD.RSA_OAEP_3072_SHA256,
        _METHOD.RSA_OAEP_4096_SHA256,
    ],
    ids=lambda m: m.name,
)
def test_each_method_imports_a_key_both_doors_use(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, method: Any
) -> None:
    ring = _ring(gcp)
    key = _import_only_key(gcp, ring)
    assert key.import_only and not key.primary.name
    assert list(gcp.list_crypto_key_versions(request={"parent": key.name})) == []
    job = _job(gcp, ring, method)
    assert job.state == _JOB_STATE.ACTIVE and job.import_method == method
    assert job.protection_level == _LEVEL.SOFTWARE
    assert (job.expire_time - job.create_time).total_seconds() == 3 * DAY
    assert gcp.get_import_job(name=job.name).public_key.pem == job.public_key.pem
    material = os.urandom(32)
    version = _import(gcp, key, job, _wrap(job, material))
    assert version.name == f"{key.name}/cryptoKeyVersions/1"
    assert version.state == _STATE.ENABLED and version.algorithm == _SYM
    assert version.import_job == job.name and version.import_time
    sealed = gcp.encrypt(request={"name": key.name, "plaintext": b"imported"})
    assert sealed.name == version.name
    opened = gcp.decrypt(request={"name": key.name, "ciphertext": sealed.ciphertext})
    assert opened.plaintext == b"imported"
    aws = server.client()
    assert (
        aws.decrypt(CiphertextBlob=sealed.ciphertext, KeyId=_alias(key.name))["Plaintext"]
        == b"imported"
    )
    meta = aws.describe_key(KeyId=_alias(key.name))["KeyMetadata"]
    assert meta["Origin"] == "EXTERNAL" and meta["KeyState"] == "Enabled"
    # The AWS door's own ciphertext opens through this door too.
    blob = aws.encrypt(KeyId=_alias(key.name), Plaintext=b"aws")["CiphertextBlob"]
    assert gcp.decrypt(request={"name": key.name, "ciphertext": blob}).plaintext == b"aws"
    assert gcp.get_crypto_key(name=key.name).primary.name == version.name


def test_a_second_import_is_the_new_primary_and_the_first_still_decrypts(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    ring = _ring(gcp)
    key = _import_only_key(gcp, ring)
    job = _job(gcp, ring)
    _import(gcp, key, job, _wrap(job, os.urandom(32)))
    old = gcp.encrypt(request={"name": key.name, "plaintext": b"one"}).ciphertext
    second = _import(gcp, key, job, _wrap(job, os.urandom(32)))
    assert second.name.endswith("/cryptoKeyVersions/2") and second.state == _STATE.ENABLED
    listed = list(gcp.list_crypto_key_versions(request={"parent": key.name}))
    assert [v.name.rsplit("/", 1)[1] for v in listed] == ["1", "2"]
    new = gcp.encrypt(request={"name": key.name, "plaintext": b"two"})
    assert new.name == second.name
    assert gcp.decrypt(request={"name": key.name, "ciphertext": old}).plaintext == b"one"
    # Key material already in the key is not imported twice.
    material = os.urandom(32)
    _import(gcp, key, job, _wrap(job, material))
    with pytest.raises(gexc.BadRequest, match="already associated"):
        _import(gcp, key, job, _wrap(job, material))
    # An import-only key takes no generated version.
    with pytest.raises(gexc.BadRequest) as refused:
        gcp.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
    assert "FAILED_PRECONDITION" in str(refused.value.response.json())  # type: ignore[union-attr]


def test_import_jobs_list_and_page(gcp: kms_v1.KeyManagementServiceClient) -> None:
    ring = _ring(gcp)
    names = sorted(_job(gcp, ring, _METHOD.RSA_OAEP_3072_SHA256).name for _ in range(3))
    paged = gcp.list_import_jobs(request={"parent": ring, "page_size": 2})
    assert [j.name for j in paged] == names
    assert gcp.list_import_jobs(request={"parent": ring}).total_size == 3
    with pytest.raises(gexc.Conflict):
        gcp.create_import_job(
            request={
                "parent": ring,
                "import_job_id": names[0].rsplit("/", 1)[1],
                "import_job": {
                    "import_method": _METHOD.RSA_OAEP_3072_SHA256,
                    "protection_level": _LEVEL.SOFTWARE,
                },
            }
        )
    with pytest.raises(gexc.NotFound):
        gcp.get_import_job(name=f"{ring}/importJobs/nope")
    with pytest.raises(gexc.NotFound):
        gcp.list_import_jobs(request={"parent": ring + "x"})


def test_an_import_job_expires_after_3_days_and_its_private_key_is_swept(
    fresh_server: Server,
) -> None:
    gcp = _client(fresh_server, _token(fresh_server, _user(fresh_server, ["kms:*"])))
    ring = _ring(gcp)
    key = _import_only_key(gcp, ring)
    job = _job(gcp, ring)
    wrapped = _wrap(job, os.urandom(32))

    def entries() -> set[str]:
        db = sqlite3.connect(fresh_server.data_dir / "keycask.db")
        try:
            return {row[0] for row in db.execute("SELECT path FROM kv WHERE path LIKE 'import/%'")}
        finally:
            db.close()

    assert len(entries()) == 1
    fresh_server.advance_clock(3 * DAY - 60)
    assert gcp.get_import_job(name=job.name).state == _JOB_STATE.ACTIVE
    fresh_server.advance_clock(120)
    expired = gcp.get_import_job(name=job.name)
    assert expired.state == _JOB_STATE.EXPIRED and expired.expire_event_time
    assert not expired.public_key.pem
    assert entries() == set()  # the scheduler deleted the private key
    with pytest.raises(gexc.BadRequest, match="EXPIRED"):
        _import(gcp, key, job, wrapped)
    assert list(gcp.list_crypto_key_versions(request={"parent": key.name})) == []
    # A new job works.
    fresh = _job(gcp, ring)
    assert _import(gcp, key, fresh, _wrap(fresh, os.urandom(32))).state == _STATE.ENABLED


def test_reimport_into_a_version_whose_material_was_deleted(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    ring = _ring(gcp)
    key = _import_only_key(gcp, ring)
    job = _job(gcp, ring)
    material = os.urandom(32)
    version = _import(gcp, key, job, _wrap(job, material))
    sealed = gcp.encrypt(request={"name": key.name, "plaintext": b"keep"}).ciphertext
    aws = server.client()
    key_id = aws.describe_key(KeyId=_alias(key.name))["KeyMetadata"]["KeyId"]
    aws.delete_imported_key_material(KeyId=key_id)
    assert gcp.get_crypto_key_version(name=version.name).state == _STATE.DESTROYED
    with pytest.raises(gexc.BadRequest):
        _import(gcp, key, job, _wrap(job, os.urandom(32)), crypto_key_version=version.name)
    again = _import(gcp, key, job, _wrap(job, material), crypto_key_version=version.name)
    assert again.name == version.name and again.state == _STATE.ENABLED
    assert gcp.decrypt(request={"name": key.name, "ciphertext": sealed}).plaintext == b"keep"
    # A version that has its material cannot be imported into.
    with pytest.raises(gexc.BadRequest, match="has its key material"):
        _import(gcp, key, job, _wrap(job, material), crypto_key_version=version.name)


def _raw(server: Server, method: str, path: str, token: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, server.endpoint + path, headers=headers, json=body, timeout=30)


def test_hostile_import_input_gets_cloud_kms_errors_audited_with_no_effect(
    server: Server, gcp: kms_v1.KeyManagementServiceClient, admin_token: str
) -> None:
    import base64

    ring, other_ring = _ring(gcp), _ring(gcp)
    key = _import_only_key(gcp, ring)
    job = _job(gcp, ring)  # RSA_OAEP_3072_SHA256_AES_256
    other_job = _job(gcp, other_ring)
    oaep_job = _job(gcp, ring, _METHOD.RSA_OAEP_3072_SHA256)
    normal = gcp.create_crypto_key(
        request={"parent": ring, "crypto_key_id": f"n-{uuid.uuid4().hex[:6]}",
                 "crypto_key": {"purpose": "ENCRYPT_DECRYPT"}}
    )  # fmt: skip
    good = _wrap(job, os.urandom(32))

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    base = f"/v1/{key.name}/cryptoKeyVersions:import"
    body = {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "importJob": job.name}
    cases = [
        # (path, body, HTTP status, google.rpc status, words in the message)
        (base, {**body, "wrappedKey": b64(b"\x00" * len(good))}, 400, "INVALID_ARGUMENT",
         "could not be unwrapped"),
        (base, {**body, "wrappedKey": b64(good[:-8])}, 400, "INVALID_ARGUMENT", "must be 424"),
        (base, {**body, "wrappedKey": b64(_wrap(job, os.urandom(16)))}, 400, "INVALID_ARGUMENT",
         "must be 424"),
        (base, {**body, "wrappedKey": b64(_wrap(oaep_job, os.urandom(16))),
                "importJob": oaep_job.name}, 400, "INVALID_ARGUMENT", "32 bytes"),
        (base, {**body, "wrappedKey": b64(_wrap(other_job, os.urandom(32))),
                "importJob": other_job.name}, 400, "INVALID_ARGUMENT", "not in the key ring"),
        (base, {**body, "wrappedKey": b64(_wrap(other_job, os.urandom(32)))}, 400,
         "INVALID_ARGUMENT", "could not be unwrapped"),
        (base, {**body, "wrappedKey": b64(good), "importJob": f"{ring}/importJobs/nope"}, 404,
         "NOT_FOUND", "not found"),
        (base, {**body, "wrappedKey": b64(good), "importJob": "projects/x"}, 400,
         "INVALID_ARGUMENT", "ImportJob"),
        (base, {**body, "wrappedKey": b64(good), "algorithm": "HMAC_SHA256"}, 400,
         "INVALID_ARGUMENT", "not valid"),
        (base, {**body, "wrappedKey": "!!"}, 400, "INVALID_ARGUMENT", "base64"),
        (base, {**body}, 400, "INVALID_ARGUMENT", "wrapped_key is required"),
        (base, {**body, "wrappedKey": b64(good), "cryptoKeyVersion": f"{key.name}/x/1"}, 400,
         "INVALID_ARGUMENT", "crypto_key_version"),
        (f"/v1/{normal.name}/cryptoKeyVersions:import", {**body, "wrappedKey": b64(good)}, 400,
         "FAILED_PRECONDITION", "not import_only"),
        (f"/v1/{ring}/cryptoKeys?cryptoKeyId=skip&skipInitialVersionCreation=true",
         {"purpose": "ENCRYPT_DECRYPT"}, 400, "FAILED_PRECONDITION", "import_only: true"),
        (f"/v1/{ring}/cryptoKeys?cryptoKeyId=only", {"purpose": "ENCRYPT_DECRYPT",
         "importOnly": True}, 400, "INVALID_ARGUMENT", "skip_initial_version_creation"),
        (f"/v1/{ring}/cryptoKeys?cryptoKeyId=sign&skipInitialVersionCreation=true",
         {"purpose": "ASYMMETRIC_SIGN", "importOnly": True,
          "versionTemplate": {"algorithm": "EC_SIGN_P256_SHA256"}}, 400, "FAILED_PRECONDITION",
         "symmetric key material only"),
        (f"/v1/{ring}/importJobs?importJobId=hsm", {"importMethod": "RSA_OAEP_3072_SHA256",
         "protectionLevel": "HSM"}, 400, "FAILED_PRECONDITION", "HSM"),
        (f"/v1/{ring}/importJobs?importJobId=none", {"protectionLevel": "SOFTWARE"}, 400,
         "INVALID_ARGUMENT", "import_method is required"),
        (f"/v1/{ring}/importJobs?importJobId=bad.id", {"importMethod": 5,
         "protectionLevel": 1}, 400, "INVALID_ARGUMENT", "malformed"),
        (f"/v1/{ring}/importJobs?importJobId=kem", {"importMethod": 8, "protectionLevel": 1},
         501, "UNIMPLEMENTED", "HPKE"),
    ]  # fmt: skip
    for path, payload, code, status, words in cases:
        answer = _raw(server, "POST", path, admin_token, payload)
        assert answer.status_code == code, (path, payload, answer.text)
        error = answer.json()["error"]
        assert error["status"] == status and words in error["message"], (payload, error)
    # No effect: no version, no key, no job was made.
    assert list(gcp.list_crypto_key_versions(request={"parent": key.name})) == []
    jobs = {j.name.rsplit("/", 1)[1] for j in gcp.list_import_jobs(request={"parent": ring})}
    assert not jobs & {"hsm", "none", "kem"}
    keys = {k.name.rsplit("/", 1)[1] for k in gcp.list_crypto_keys(request={"parent": ring})}
    assert not keys & {"skip", "only", "sign"}
    refused = [r for r in _records(server) if r.get("operation") == "GcpKms.ImportCryptoKeyVersion"
               and r.get("outcome") != "success"]  # fmt: skip
    assert len(refused) >= 13
    # Then the good one works.
    assert _import(gcp, key, job, good).state == _STATE.ENABLED


def test_authorized_as_get_parameters_for_import_and_import_key_material(
    server: Server, gcp: kms_v1.KeyManagementServiceClient
) -> None:
    ring = _ring(gcp)
    key = _import_only_key(gcp, ring)
    job = _job(gcp, ring)
    reader = _client(server, _token(server, _user(server, ["kms:ListKeys", "kms:DescribeKey"])))
    assert reader.get_import_job(name=job.name).state == _JOB_STATE.ACTIVE
    assert [j.name for j in reader.list_import_jobs(request={"parent": ring})] == [job.name]
    with pytest.raises(gexc.Forbidden):
        _job(reader, ring)
    with pytest.raises(gexc.Forbidden):
        _import(reader, key, job, _wrap(job, os.urandom(32)))
    importer = _client(
        server,
        _token(server, _user(server, ["kms:GetParametersForImport", "kms:ImportKeyMaterial"])),
    )
    mine = _job(importer, ring)
    assert _import(importer, key, mine, _wrap(mine, os.urandom(32))).state == _STATE.ENABLED
    # A second version becomes the primary: that is a rotation, and needs its right.
    with pytest.raises(gexc.Forbidden):
        _import(importer, key, mine, _wrap(mine, os.urandom(32)))
    assert len(list(gcp.list_crypto_key_versions(request={"parent": key.name}))) == 1
    records = [r for r in _records(server) if r.get("operation") == "GcpKms.CreateImportJob"]
    assert any(r.get("outcome") != "success" for r in records)
    assert PROJECT in job.name


def test_an_import_only_key_takes_no_rotation_schedule(
    gcp: kms_v1.KeyManagementServiceClient,
) -> None:
    # Found in review: accepted, the scheduler then rotated the key to
    # material keycask made, which every door sealed under and which a
    # DeleteImportedKeyMaterial would lose for good.
    ring = _ring(gcp)
    with pytest.raises(gexc.BadRequest) as error:
        gcp.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": "imp-rotating",
                "skip_initial_version_creation": True,
                "crypto_key": {
                    "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                    "import_only": True,
                    "rotation_period": {"seconds": 90 * 86400},
                },
            }
        )
    assert "import-only key by importing a new version" in str(error.value)
    assert list(gcp.list_crypto_keys(parent=ring)) == []
