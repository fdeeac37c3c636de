"""The audit record's fast encoder (``encode_fields``, every request's record)
writes exactly the bytes of the general one (``encode(AuditRecord(...))``),
and raises exactly what it raises, for any record: any text (control
characters, quotes, non-ASCII, lone surrogates), fields long enough to be
cut, contexts over the bound, missing fields, times in any zone or none, and
decisions and outcomes the record refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import keycask.audit.record as record_module
from keycask.audit.record import (
    DECISIONS,
    MAX_CONTEXT_BYTES,
    MAX_TEXT,
    OUTCOMES,
    AuditRecord,
    encode,
    encode_fields,
    format_time,
)

TEXT_FIELDS = (
    "request_id",
    "operation",
    "principal",
    "access_key_id",
    "source_ip",
    "key_arn",
    "decided_by",
    "error_code",
    "region",
    "detail",
    "door",
    "source_identity",
)
OPTIONAL = frozenset(TEXT_FIELDS) - {"request_id"}

# Text as requests carry it (any character UTF-8 can hold, with the ones JSON
# must escape made common), and any code point at all: lone surrogates,
# which orjson refuses, must make both raise alike.
awkward = st.sampled_from('"\\\n\r\t\x00\x1f\x7f\u2028\u2029é€🔑/<>&')
valid_char = st.one_of(st.characters(codec="utf-8"), awkward)
any_char = st.one_of(valid_char, st.characters(codec=None))


def _short(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.text(chars, max_size=12)


def _long(bound: int, chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text around ``bound`` characters (just under, at, or over it) of one
    character repeated, 1 to 4 bytes in UTF-8, and a short tail."""
    return st.builds(
        lambda char, size, tail: char * size + tail,
        st.sampled_from("aé€🔑"),
        st.integers(bound - 3, bound + 3),
        _short(chars),
    )


def _text(chars: st.SearchStrategy[str], long: bool) -> st.SearchStrategy[str]:
    if not long:
        return _short(chars)
    return st.one_of(_short(chars), _long(MAX_TEXT, chars), _long(MAX_TEXT // 4, chars))


def _contexts(
    chars: st.SearchStrategy[str], long: bool, wild: bool
) -> st.SearchStrategy[dict[Any, Any] | None]:
    value = _text(chars, False)
    if long:
        value = st.one_of(
            value,
            _long(256, chars),
            _long(MAX_CONTEXT_BYTES // 2, chars),
            _long(MAX_CONTEXT_BYTES // 4, chars),
        )
    options: list[st.SearchStrategy[dict[Any, Any] | None]] = [
        st.none(),
        st.dictionaries(_short(chars), value, max_size=5),
    ]
    if long:
        # Many pairs: over the context's bound, cut with a marker.
        options.append(
            st.builds(
                lambda n, each: {f"k{i}": each for i in range(n)},
                st.integers(1, 60),
                st.sampled_from(["v" * 100, "é" * 100, "x" * 300]),
            )
        )
    if wild:
        # Keys or values that are not strings: the record refuses them.
        anything = st.one_of(st.integers(), st.none(), st.booleans(), _short(chars))
        options.append(st.dictionaries(anything, anything, max_size=3))
    return st.one_of(options)


def _times(wild: bool) -> st.SearchStrategy[datetime]:
    utc = st.datetimes(timezones=st.just(UTC))
    if not wild:
        return utc
    zones: st.SearchStrategy[Any] = st.one_of(
        st.none(),
        st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-1439, 1439)),
    )
    return utc | st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=zones)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly records as requests make them (the fast path), else records
    reaching a bound (cut by the general path), else anything (refused)."""
    mode = draw(st.sampled_from(["usual", "usual", "bounds", "anything"]))
    long, wild = mode != "usual", mode == "anything"
    chars = any_char if wild else valid_char
    fields: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = _text(chars, long and draw(st.integers(0, 3)) == 0)
        fields[name] = draw(value if name not in OPTIONAL else st.none() | value)
    fields["time"] = draw(_times(wild))
    fields["encryption_context"] = draw(_contexts(chars, long, wild))
    decisions, outcomes = sorted(DECISIONS), sorted(OUTCOMES)
    if wild:
        decisions, outcomes = [*decisions, "maybe"], [*outcomes, "fine"]
    fields["decision"] = draw(st.sampled_from(decisions))
    fields["outcome"] = draw(st.sampled_from(outcomes))
    return fields


def _outcome(encoder: Any, fields: dict[str, Any]) -> tuple[str, object]:
    try:
        return "bytes", encoder(**fields)
    except Exception as exc:
        return "raised", (type(exc), str(exc))


def _general(**fields: Any) -> bytes:
    return encode(AuditRecord(**fields))


COMMON: dict[str, Any] = {
    "time": datetime(2026, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC),
    "request_id": "r",
    "operation": "Encrypt",
    "principal": "arn:aws:iam::111122223333:user/alice",
    "access_key_id": "AKIA",
    "source_ip": "192.0.2.1",
    "key_arn": None,
    "encryption_context": {"tenant": "acme"},
    "decision": "allow",
    "decided_by": "key policy",
    "outcome": "success",
    "error_code": None,
    "region": "eu-west-1",
    "detail": None,
    "door": "kms",
    "source_identity": None,
}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
@example(COMMON)
@example({**COMMON, "door": None, "encryption_context": None})
@example({**COMMON, "source_identity": "alice"})
@example({**COMMON, "door": None, "source_identity": "alice"})
@example({**COMMON, "time": datetime.max.replace(tzinfo=UTC)})
@example({**COMMON, "time": datetime.min.replace(tzinfo=UTC)})
@example({**COMMON, "detail": "d" * MAX_TEXT})
@example({**COMMON, "detail": "d" * (MAX_TEXT + 1)})
@example({**COMMON, "encryption_context": {"k": "v" * (MAX_CONTEXT_BYTES - 1)}})
@example({**COMMON, "encryption_context": {"k": "v" * MAX_CONTEXT_BYTES}})
@example({**COMMON, "encryption_context": {"k": 1}})
@example({**COMMON, "encryption_context": {1: "v"}})
@example({**COMMON, "request_id": "\ud800"})
def test_the_fast_encoder_writes_the_general_encoder_s_bytes(fields: dict[str, Any]) -> None:
    assert _outcome(encode_fields, fields) == _outcome(_general, fields)


@given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_the_stamp_of_one_second_is_not_reused_for_another(
    first: datetime, second: datetime
) -> None:
    # The fast encoder keeps the last second's text: a record of another
    # second right after must not be stamped with it.
    for moment in (first, second, first):
        fields: dict[str, Any] = {**COMMON, "time": moment}
        assert encode_fields(**fields) == _general(**fields)


def test_a_usual_record_is_encoded_without_building_an_audit_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Otherwise the property above would hold by the fast path never running.
    expected = _general(**COMMON)

    def refuse(**_: Any) -> AuditRecord:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(record_module, "AuditRecord", refuse)
    assert encode_fields(**COMMON) == expected
    for moment in (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)):
        fields: dict[str, Any] = {
            **COMMON,
            "time": moment,
            "encryption_context": None,
            "door": None,
        }
        assert encode_fields(**fields) == expected.replace(
            b'"2026-01-01T12:00:00.999Z"', b'"%b"' % format_time(moment).encode()
        ).replace(b'{"tenant":"acme"}', b"null").replace(b',"door":"kms"', b"")
