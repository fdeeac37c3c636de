"""The Cloud KMS door's wire for import jobs and cryptoKeyVersions.import
(``core/gcp_imports.py``): requests checked field by field, and import
jobs rendered as Cloud KMS writes them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from keycask.errors import UnsupportedOperationException, ValidationException
from keycask.service.core.gcp_imports import (
    METHODS,
    CreateJobRequest,
    ImportVersionRequest,
    JobName,
    JobRequest,
    JobResult,
    JobsResult,
    ListJobsRequest,
)
from keycask.service.core.gcp_requests import RingName
from keycask.service.doors import gcp_codec as codec
from keycask.service.doors.gcp_enums import ALGORITHMS, PROTECTION_LEVELS
from keycask.service.doors.gcp_render import page_token, pem, time_of

Doc = dict[str, Any]
Query = Mapping[str, list[str]]

# ImportJob.ImportMethod by number (the REST transport's enum-encoding=int).
IMPORT_METHODS: Final = {0: "IMPORT_METHOD_UNSPECIFIED", 1: "RSA_OAEP_3072_SHA1_AES_256",
                         2: "RSA_OAEP_4096_SHA1_AES_256", 3: "RSA_OAEP_3072_SHA256_AES_256",
                         4: "RSA_OAEP_4096_SHA256_AES_256", 5: "RSA_OAEP_3072_SHA256",
                         6: "RSA_OAEP_4096_SHA256",
                         8: "HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM",
                         9: "HPKE_KEM_ML_KEM_1024_HKDF_SHA256_AES_256_GCM",
                         10: "HPKE_KEM_XWING_HKDF_SHA256_AES_256_GCM"}  # fmt: skip
# A wrapped key is at most a 4096-bit RSA block and a wrapped PKCS#8 key.
_MAX_WRAPPED: Final = 16384
_JOB_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/keyRings/([^/]+)/importJobs/([^/]+)")
_ID = re.compile(r"[a-zA-Z0-9_-]{1,63}", re.ASCII)


def _job_name(params: Mapping[str, str], job: str) -> JobName:
    ring = codec.ring_name(params)
    if _ID.fullmatch(job) is None:
        raise ValidationException(
            f"Resource name import job id {job[:64]!r} is malformed: it does not match "
            f"{_ID.pattern}"
        )
    return JobName(ring.project, ring.location, ring.ring, job)


def create_job(params: Mapping[str, str], query: Query, doc: Doc) -> CreateJobRequest:
    job_id = codec.one(query, "importJobId") or ""
    if not job_id:
        raise ValidationException("import_job_id is required.")
    name = _job_name(params, job_id)
    method = codec.enum_field(doc.get("importMethod", 0), IMPORT_METHODS, "import_method")
    if method == "IMPORT_METHOD_UNSPECIFIED":
        raise ValidationException("import_method is required.")
    if method not in METHODS:
        raise UnsupportedOperationException(
            f"keycask's Cloud KMS door does not serve import method {method}: use one of "
            f"{', '.join(METHODS)}"
        )
    level = codec.enum_field(doc.get("protectionLevel", 0), PROTECTION_LEVELS, "protection_level")
    if level == "PROTECTION_LEVEL_UNSPECIFIED":
        raise ValidationException("protection_level is required.")
    if doc.get("cryptoKeyBackend"):
        raise UnsupportedOperationException(
            "keycask's Cloud KMS door does not serve crypto_key_backend yet"
        )
    return CreateJobRequest(name.parent, name.job, method, level)


def job(params: Mapping[str, str], query: Query, doc: Doc) -> JobRequest:
    return JobRequest(_job_name(params, params.get("import_job", "")))


def list_jobs(params: Mapping[str, str], query: Query, doc: Doc) -> ListJobsRequest:
    listed = codec.list_keys(params, query, doc)  # the same paging and parent
    assert isinstance(listed.parent, RingName)
    return ListJobsRequest(listed.parent, listed.page_size, listed.after)


def import_version(params: Mapping[str, str], query: Query, doc: Doc) -> ImportVersionRequest:
    name = codec.key_name(params)
    algorithm = codec.enum_field(doc.get("algorithm", 0), ALGORITHMS, "algorithm")
    if algorithm == "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED":
        raise ValidationException("algorithm is required.")
    job_text = doc.get("importJob")
    if not isinstance(job_text, str) or not job_text:
        raise ValidationException("import_job is required.")
    matched = _JOB_NAME.fullmatch(job_text)
    if matched is None:
        raise ValidationException(f"import_job {job_text[:200]!r} is not an ImportJob's name.")
    project, location, ring, job_id = matched.groups()
    job_name = _job_name({"project": project, "location": location, "ring": ring}, job_id)
    if doc.get("wrappedKey") and doc.get("rsaAesWrappedKey"):
        raise ValidationException("Give wrapped_key or rsa_aes_wrapped_key, not both.")
    field = "wrappedKey" if doc.get("wrappedKey") else "rsaAesWrappedKey"
    wrapped = codec.bytes_field(doc, field, _MAX_WRAPPED)
    if not wrapped:
        raise ValidationException("wrapped_key is required.")
    if doc.get("trustedWrappingEnabled"):
        raise ValidationException(
            "trusted_wrapping_enabled is for HSM_SINGLE_TENANT keys, which keycask does not make."
        )
    version = None
    target = doc.get("cryptoKeyVersion")
    if target not in (None, ""):
        prefix = name.name + "/cryptoKeyVersions/"
        if not isinstance(target, str) or not target.startswith(prefix):
            raise ValidationException(f"crypto_key_version must name a version of {name.name}.")
        version = codec.version_number({"version": target[len(prefix) :]})
    return ImportVersionRequest(name, algorithm, job_name, wrapped, version)


# -- answers --


def job_doc(result: JobResult) -> Doc:
    doc: Doc = {
        "name": result.name.name,
        "importMethod": result.method,
        "protectionLevel": result.protection_level,
        "createTime": time_of(result.created),
        "generateTime": time_of(result.created),
        "expireTime": time_of(result.expires),
        "state": result.state,
    }
    if result.state == "ACTIVE":
        doc["publicKey"] = {"pem": pem(result.public_der)}
    else:
        doc["expireEventTime"] = time_of(result.expires)
    return doc


def jobs_doc(result: JobsResult) -> Doc:
    doc: Doc = {}
    if result.items:
        doc["importJobs"] = [job_doc(item) for item in result.items]
    if result.next_after is not None:
        doc["nextPageToken"] = page_token(result.next_after)
    if result.whole:
        doc["totalSize"] = len(result.items)
    return doc
