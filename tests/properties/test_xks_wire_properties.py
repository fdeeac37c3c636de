"""Properties of the XKS door's wire (service/doors/xks.py): hostile bodies
and paths fail only with the specification's client errors (never an
InternalException), and well-formed requests decode to what they say."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import (
    BarrierBusy,
    DisabledException,
    IncompleteSignatureException,
    KMSError,
    KMSInternalException,
    Sealed,
)
from keycask.service.core import xks
from keycask.service.doors.xks import _DECODERS, _body, error_name, route

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENT_ERRORS = {("ValidationException", 400), ("UnsupportedOperationException", 501)}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "requestMetadata",
    "plaintext",
    "encryptionAlgorithm",
    "additionalAuthenticatedData",
    "ciphertextDataIntegrityValueAlgorithm",
    "ciphertext",
    "ciphertextMetadata",
    "initializationVector",
    "authenticationTag",
]
META = ["kmsRequestId", "kmsOperation", "awsPrincipalArn", "kmsKeyArn", "kmsViaService"]
b64ish = st.one_of(
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="ABCabc012+/=- _", max_size=30),
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "requestMetadata": st.one_of(
            st.fixed_dictionaries(
                {}, optional={name: st.one_of(st.text(max_size=20), json_values) for name in META}
            ),
            json_values,
        ),
        **{name: st.one_of(b64ish, json_values) for name in FIELDS[1:]},
        "encryptionAlgorithm": st.sampled_from(["AES_GCM", "AES_CBC", "", "aes_gcm"]),
    },
)


def _decode(operation: str, body: bytes) -> object:
    request = HttpRequest("POST", b"/kms/xks/v1/health", b"", [], body)
    return _DECODERS[operation](_body(request), "k")


@FUZZ
@given(operation=st.sampled_from(sorted(_DECODERS)), body=st.binary(max_size=200))
def test_arbitrary_bytes_fail_as_validation(operation: str, body: bytes) -> None:
    try:
        _decode(operation, body)
    except KMSError as error:
        assert error_name(error) in CLIENT_ERRORS


@FUZZ
@given(operation=st.sampled_from(sorted(_DECODERS)), doc=near_valid)
def test_near_valid_documents_decode_or_fail_as_client_errors(
    operation: str, doc: dict[str, Any]
) -> None:
    try:
        decoded = _decode(operation, orjson.dumps(doc))
    except KMSError as error:
        assert error_name(error) in CLIENT_ERRORS, error
        return
    meta = doc["requestMetadata"]
    assert isinstance(
        decoded,
        xks.XksHealthRequest | xks.XksKeyRequest | xks.XksEncryptRequest | xks.XksDecryptRequest,
    )
    assert decoded.metadata.kms_request_id == meta["kmsRequestId"]
    if isinstance(decoded, xks.XksEncryptRequest):
        assert decoded.plaintext == base64.b64decode(doc["plaintext"])
        assert doc["encryptionAlgorithm"] == "AES_GCM"


PREFIXES = [b"", b"/p", b"/a/b-c_d"]
segments = st.one_of(
    st.sampled_from([b"keys", b"health", b"metadata", b"encrypt", b"decrypt", b"", b".."]),
    st.binary(max_size=12),
    st.from_regex(rb"[A-Za-z0-9._-]{1,20}", fullmatch=True),
)


@FUZZ
@given(
    prefix=st.sampled_from(PREFIXES),
    # The API's base most of the time, so that the routes are reached.
    base=st.sampled_from([b"/kms/xks/v1/"] * 4 + [b"", b"/kms/xks/v2/", b"/p/kms/xks/v1/"]),
    parts=st.one_of(
        st.lists(segments, max_size=4),
        st.tuples(
            st.just(b"keys"),
            segments,
            st.sampled_from([b"metadata", b"encrypt", b"decrypt", b"sign", b"Encrypt"]),
        ).map(list),
    ),
)
def test_any_path_routes_to_its_operation_or_none(
    prefix: bytes, base: bytes, parts: list[bytes]
) -> None:
    event(f"routed: {route((prefix + base if base else base) + b'/'.join(parts), prefix)[0]}")
    path = (prefix + base if base else base) + b"/".join(parts)
    name, key_id = route(path, prefix)
    if name is None:
        assert key_id == ""
    elif name == "Xks.GetHealthStatus":
        assert path == prefix + b"/kms/xks/v1/health"
    else:
        assert xks.EXTERNAL_KEY_ID.fullmatch(key_id)
        operation = name.removeprefix("Xks.").removeprefix("GetKey").lower()
        assert path == prefix + b"/kms/xks/v1/keys/" + key_id.encode() + b"/" + operation.encode()


SPEC_KEY_ARN = "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_the_specifications_examples_decode() -> None:
    encrypt = {
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
            "kmsKeyArn": SPEC_KEY_ARN,
            "kmsOperation": "Encrypt",
            "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
            "kmsViaService": "ebs",
        },
        "additionalAuthenticatedData": "cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
        "plaintext": "SGVsbG8gV29ybGQh",
        "encryptionAlgorithm": "AES_GCM",
        "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
    }
    decoded = _decode("Xks.Encrypt", orjson.dumps(encrypt))
    assert isinstance(decoded, xks.XksEncryptRequest)
    assert decoded.plaintext == b"Hello World!" and decoded.integrity_value
    assert decoded.aad == b"project=nile,department=marketing"
    assert ("kmsViaService", "ebs") in decoded.metadata.fields
    # Appendix C's worked example of the ciphertextDataIntegrityValue.
    result = xks.XksEncryptResult(
        base64.b64decode("ghxkK1txeDNn3q8Y"),
        base64.b64decode("a2V5X3ZlcnNpb249MQ=="),
        base64.b64decode("HMrlRw85cAJUd5Ax"),
        base64.b64decode("vBxN2ncH1oEkR8WVXpmyYQ=="),
        None,
    )
    assert base64.b64encode(xks.integrity_value(decoded.aad, result)).decode() == (
        "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="
    )


def test_keycask_errors_map_to_the_specifications_names() -> None:
    assert error_name(Sealed()) == ("InvalidStateException", 400)
    assert error_name(DisabledException("x")) == ("InvalidStateException", 400)
    assert error_name(BarrierBusy("x")) == ("ThrottlingException", 429)
    assert error_name(IncompleteSignatureException("x")) == ("AuthenticationFailedException", 401)
    assert error_name(KMSInternalException("x")) == ("InternalException", 500)
