"""The custom key store record and the HSM blob (v3) header, without a token:
what is kept, what is never shown, and malformed blobs refused alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from keycask.errors import InvalidCiphertextException
from keycask.keys.custom_stores import STORE_ID, CustomKeyStore, new_store_id
from keycask.keys.model import Key, KeyState, Origin
from keycask.keys.wire import BLOB_FORMAT_HSM, hsm_blob_header, parse_hsm_blob


def _store(**fields: object) -> CustomKeyStore:
    return CustomKeyStore(
        store_id=new_store_id(),
        account="000000000000",
        region="us-east-1",
        name="main",
        store_type="AWS_CLOUDHSM",
        created=datetime(2026, 1, 2, tzinfo=UTC),
        **fields,  # type: ignore[arg-type]
    )


def test_store_ids_look_like_aws() -> None:
    ids = {new_store_id() for _ in range(100)}
    assert len(ids) == 100 and all(STORE_ID.fullmatch(i) for i in ids)


def test_record_round_trip_and_secrets_never_in_repr() -> None:
    store = _store(
        cluster_id="cluster-keycaskhsm234",
        trust_anchor="PEM",
        password="the-password",
        state="FAILED",
        error_code="INVALID_CREDENTIALS",
    )
    assert CustomKeyStore.from_doc(store.to_doc()) == store
    assert "the-password" not in repr(store)
    xks = _store(xks_access_key_id="A" * 20, xks_secret="s" * 43, xks_uri_path="/kms/xks/v1")
    assert CustomKeyStore.from_doc(xks.to_doc()) == xks
    assert "s" * 43 not in repr(xks) and "A" * 20 not in repr(xks)
    assert "password" not in xks.to_doc()  # unset fields are not written


def test_a_key_document_names_its_store_only_when_it_has_one() -> None:
    plain = Key(uuid.uuid4(), "000000000000", "us-east-1", datetime.now(UTC), "",
                KeyState.ENABLED, "{}")  # fmt: skip
    assert "custom_key_store_id" not in plain.to_doc() and "hsm_object" not in plain.to_doc()
    held = plain.replace(
        origin=Origin.AWS_CLOUDHSM, custom_key_store_id=new_store_id(), hsm_object="ab" * 16
    )
    assert Key.from_doc(held.to_doc()) == held


def test_hsm_blob_header() -> None:
    key_id, object_id = uuid.uuid4(), bytes(range(16))
    header = hsm_blob_header(key_id, object_id)
    assert header[0] == BLOB_FORMAT_HSM and len(header) == 33
    blob = header + b"\x01" * 12 + b"ciphertext-and-tag-16"
    assert parse_hsm_blob(blob) == (key_id, object_id, b"\x01" * 12, b"ciphertext-and-tag-16")


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x03", b"\x03" + b"\x00" * 59, b"\x01" + b"\x00" * 80, b"\x02" + b"\x00" * 80],
)
def test_malformed_hsm_blobs_are_one_invalid_ciphertext(blob: bytes) -> None:
    with pytest.raises(InvalidCiphertextException) as error:
        parse_hsm_blob(blob)
    assert error.value.message == ""
