"""Multi-Region key ids and record ids (keys/ids.py). The record id's bytes are
pinned by tests/vectors/mrk_record_v1.json (test_wire_v2_vectors.py)."""

from __future__ import annotations

import uuid

import pytest

from keycask.keys.ids import (
    MRK_ID_SIZE,
    format_mrk,
    is_record_id,
    new_mrk,
    parse_mrk,
    record_id,
)

HEX = "1234abcd12ab34cd56ef1234567890ab"


def test_format_and_parse_round_trip() -> None:
    raw = bytes.fromhex(HEX)
    assert format_mrk(raw) == "mrk-" + HEX
    assert parse_mrk("mrk-" + HEX) == raw
    assert format_mrk(bytes(16)) == "mrk-" + "0" * 32
    assert parse_mrk("mrk-" + "f" * 32) == b"\xff" * 16


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mrk-",
        HEX,  # no prefix
        "mrk-" + HEX.upper(),
        "mrk-" + HEX[:-1] + "A",
        "MRK-" + HEX,
        "Mrk-" + HEX,
        "mrk_" + HEX,
        "mrk-" + HEX[:-1],  # 31 digits
        "mrk-" + HEX + "0",  # 33 digits
        "mrk-" + HEX + "\n",  # "$" would have let this through
        "mrk-" + HEX + " ",
        " mrk-" + HEX,
        "mrk- " + HEX[1:],
        "mrk-" + HEX[:-1] + "g",
        "mrk-" + HEX[:-1] + "\u0663",  # ARABIC-INDIC DIGIT THREE: a \d, not hex
        "mrk-" + HEX[:-1] + "\uff10",  # FULLWIDTH DIGIT ZERO
        "mrk-" + "0x" + HEX[2:],
        "mrk-" + str(uuid.UUID(HEX)),  # dashes
        "arn:aws:kms:us-east-1:111122223333:key/mrk-" + HEX,
    ],
)
def test_parse_refuses_anything_but_the_exact_shape(text: str) -> None:
    assert parse_mrk(text) is None


def test_new_ids_are_random_16_bytes() -> None:
    ids = {new_mrk() for _ in range(64)}
    assert len(ids) == 64
    assert all(len(i) == MRK_ID_SIZE for i in ids)
    assert all(parse_mrk(format_mrk(i)) == i for i in ids)


def test_record_id_is_a_version_8_uuid_per_key_and_region() -> None:
    mrk = bytes.fromhex(HEX)
    east = record_id(mrk, "us-east-1")
    assert east == record_id(mrk, "us-east-1")
    assert east.version == 8 and east.variant == uuid.RFC_4122
    assert east != record_id(mrk, "us-east-2")
    assert east != record_id(bytes(16), "us-east-1")
    # A uuid4 key id has version 4 in the same nibble: the two can never be equal.
    assert all(uuid.uuid4().version == 4 for _ in range(16))


def test_record_id_separates_the_mrk_from_the_region() -> None:
    # The mrk id has a fixed length, so moving bytes between it and the
    # region is impossible; a wrong-sized id is a programming error.
    with pytest.raises(ValueError):
        record_id(bytes(15), "xus-east-1")
    with pytest.raises(ValueError):
        record_id(bytes(17), "us-east-1")
    with pytest.raises(ValueError):
        format_mrk(bytes(15))


def test_is_record_id_tells_record_ids_from_key_ids() -> None:
    assert is_record_id(record_id(new_mrk(), "us-east-1"))
    assert not any(is_record_id(uuid.uuid4()) for _ in range(100))
