"""Properties of the AWS JSON 1.1 codec: hostile bodies fail only with the two
protocol errors, and whatever botocore sends or parses round-trips."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.errors import SerializationException, ValidationException
from keycask.http.awsjson import Codec, _compile_pattern, snake_case
from kms_model import MODEL, SERVICE, SHAPES, snaked

CODEC = Codec.load()
OPERATIONS = sorted(MODEL["operations"])
ROUND_TRIP_INPUTS = ["Encrypt", "GenerateDataKey", "CreateKey", "TagResource", "ReEncrypt"]
ROUND_TRIP_OUTPUTS = ["Encrypt", "GenerateDataKey", "ReEncrypt", "CreateKey", "ListAliases"]
MARKER = "MARKER-secret-5e1d"
SINGLE_CLASS = re.compile(r"\^?(\[[^\]]+\])([+*])\$?")

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def input_shape(operation: str) -> str:
    return str(MODEL["operations"][operation]["input"]["shape"])


def output_shape(operation: str) -> str:
    return str(MODEL["operations"][operation]["output"]["shape"])


def decode_outcome(operation: str, body: bytes) -> str | None:
    """None if the body decoded to a dict; the message if it was refused as it may be."""
    try:
        decoded = CODEC.decode(operation, body)
    except (ValidationException, SerializationException) as exc:
        return exc.message
    assert conforms(decoded, input_shape(operation)), decoded
    return None


def conforms(value: Any, name: str) -> bool:
    """Whether a decoded value is what the model promises the service layer."""
    shape = SHAPES[name]
    kind = shape["type"]
    low, high = shape.get("min", 0), shape.get("max", 2**63)
    if kind == "structure":
        members = {snake_case(m): spec["shape"] for m, spec in shape["members"].items()}
        required = {snake_case(m) for m in shape.get("required", ())}
        return (
            type(value) is dict
            and required <= set(value) <= set(members)
            and all(conforms(v, members[k]) for k, v in value.items())
        )
    if kind == "list":
        member = shape["member"]["shape"]
        return (
            type(value) is list
            and low <= len(value) <= high
            and all(conforms(v, member) for v in value)
        )
    if kind == "map":
        key, member = shape["key"]["shape"], shape["value"]["shape"]
        return (
            type(value) is dict
            and low <= len(value) <= high
            and all(conforms(k, key) and conforms(v, member) for k, v in value.items())
        )
    if kind == "string":
        return (
            type(value) is str
            and low <= len(value) <= high
            and value in shape.get("enum", [value])
            and (
                "pattern" not in shape  # no pattern: any string ("." would refuse "\n")
                or _compile_pattern(shape["pattern"]).fullmatch(value) is not None
            )
        )
    if kind == "blob":
        return type(value) is bytes and low <= len(value) <= high
    if kind == "integer":
        return type(value) is int and shape.get("min", -(2**31)) <= value <= high
    if kind == "boolean":
        return type(value) is bool
    if kind == "timestamp":
        return type(value) is datetime and value.utcoffset() == timedelta(0)
    raise AssertionError(f"no check for {kind}")


@functools.cache
def values(name: str, whole_seconds: bool) -> st.SearchStrategy[Any]:
    """Valid values of a shape, in botocore's form."""
    shape = SHAPES[name]
    kind = shape["type"]
    low, high = shape.get("min", 0), shape.get("max", 2**31 - 1)
    if kind == "structure":
        members = shape["members"]
        required = set(shape.get("required", ()))

        def member(m: str) -> st.SearchStrategy[Any]:
            return st.deferred(lambda: values(members[m]["shape"], whole_seconds))

        return st.fixed_dictionaries(
            {m: member(m) for m in members if m in required},
            optional={m: member(m) for m in members if m not in required},
        )
    if kind == "list":
        item = values(shape["member"]["shape"], whole_seconds)
        return st.lists(item, min_size=low, max_size=min(high, max(low, 4)))
    if kind == "map":
        key = values(shape["key"]["shape"], whole_seconds)
        value = values(shape["value"]["shape"], whole_seconds)
        return st.dictionaries(key, value, min_size=low, max_size=min(high, max(low, 4)))
    if kind == "string":
        return strings(shape, low, high)
    if kind == "blob":
        return st.binary(min_size=low, max_size=min(high, max(low, 600)))
    if kind == "integer":
        return st.integers(min_value=low, max_value=high)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return timestamps(whole_seconds)
    raise AssertionError(f"no strategy for {kind}")


def strings(shape: Mapping[str, Any], low: int, high: int) -> st.SearchStrategy[str]:
    if "enum" in shape:
        return st.sampled_from(shape["enum"])
    if "pattern" in shape:
        return patterned(shape["pattern"], low, high)
    return st.text(min_size=low, max_size=min(high, max(low, 40)))


def patterned(pattern: str, low: int, high: int) -> st.SearchStrategy[str]:
    # Most model patterns are one character class repeated; bounding the
    # repetition by the shape's lengths beats filtering (64-character hex ids
    # would almost never come out of a plain "+").
    simple = SINGLE_CLASS.fullmatch(pattern)
    if simple:
        charset, repeat = simple.groups()
        least = max(low, 1 if repeat == "+" else 0)
        bounded = f"{charset}{{{least},{min(high, max(least, 64))}}}"
        return st.from_regex(_compile_pattern(bounded), fullmatch=True)
    compiled = _compile_pattern(pattern)
    return st.from_regex(compiled, fullmatch=True).filter(lambda s: low <= len(s) <= high)


def timestamps(whole_seconds: bool) -> st.SearchStrategy[datetime]:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    unit = timedelta(seconds=1) if whole_seconds else timedelta(milliseconds=1)
    return st.integers(
        min_value=0, max_value=4_000_000_000_000 // (unit // timedelta(milliseconds=1))
    ).map(lambda n: epoch + n * unit)


def serialize(operation: str, params: Mapping[str, Any]) -> bytes:
    serializer = create_serializer("json", include_validation=True)
    request = serializer.serialize_to_request(params, SERVICE.operation_model(operation))
    body: bytes = request["body"]
    return body


def parse(operation: str, body: bytes) -> Any:
    shape = SERVICE.operation_model(operation).output_shape
    response = {"body": body, "headers": {}, "status_code": 200}
    parsed = create_parser("json").parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def nodes(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value sits, as key/index paths."""
    found = [path]
    if isinstance(document, dict):
        for key, item in document.items():
            found += nodes(item, (*path, key))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            found += nodes(item, (*path, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = replaced(document[head], rest, value)
    return copy


# -- nothing escapes but the two protocol errors --


@FUZZ
@given(operation=st.sampled_from(OPERATIONS), body=st.binary(max_size=300))
def test_arbitrary_bytes_fail_only_as_protocol_errors(operation: str, body: bytes) -> None:
    decode_outcome(operation, body)


@FUZZ
@given(operation=st.sampled_from(OPERATIONS), document=json_values)
def test_arbitrary_json_fails_only_as_protocol_errors(operation: str, document: Any) -> None:
    decode_outcome(operation, orjson.dumps(document))


@FUZZ
@given(data=st.data(), operation=st.sampled_from(OPERATIONS))
def test_model_shaped_garbage_fails_only_as_protocol_errors(
    data: st.DataObject, operation: str
) -> None:
    members = [*SHAPES[input_shape(operation)]["members"], "Bogus"]
    document = data.draw(st.dictionaries(st.sampled_from(members), json_values, max_size=5))
    decode_outcome(operation, orjson.dumps(document))


@ROUND_TRIP
@given(data=st.data(), operation=st.sampled_from(OPERATIONS))
def test_mutated_valid_requests_fail_only_as_protocol_errors_without_echo(
    data: st.DataObject, operation: str
) -> None:
    params = data.draw(values(input_shape(operation), True))
    document = orjson.loads(serialize(operation, params))
    path = data.draw(st.sampled_from(nodes(document)))
    poison = data.draw(
        st.sampled_from([MARKER, MARKER * 300, [MARKER], {MARKER: MARKER}, {"k": MARKER}])
        | json_values
    )
    message = decode_outcome(operation, orjson.dumps(replaced(document, path, poison)))
    if message is not None:
        # The marker may only come back as a member name, or quoted as the
        # offending value of a constraint (as AWS quotes it), never elsewhere.
        rest = _QUOTED_VALUE.sub("Value at '", message)
        assert MARKER not in rest.replace(f"Unknown parameter '{MARKER}'", "")


# "Value '<the offending value>' at '": AWS's quoting of a non-sensitive value.
_QUOTED_VALUE = re.compile(r"Value '(?:[^']|'(?! at '))*' at '")


HOSTILE: list[Any] = [
    None, True, 0, -1, 2**31, 2**63, 2**64 - 1, -(2**63), 0.5, 1e300, -1e300, "", "!!!!",
    "x" * 10_000, "\u0000", [], [None], [[]], {}, {"": {}}, {"Bogus": [1]},
]  # fmt: skip


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_member_survives_every_hostile_value(operation: str) -> None:
    # Exhaustive where the fuzzers above only sample: each member of each
    # input, nested ones included, given each value no shape should accept.
    document = orjson.loads(serialize(operation, full_example(input_shape(operation))))
    for path in nodes(document):
        for poison in HOSTILE:
            decode_outcome(operation, orjson.dumps(replaced(document, path, poison)))


def full_example(name: str) -> Any:
    """A value holding every member once, nested ones too, in botocore's form."""
    shape = SHAPES[name]
    kind = shape["type"]
    if kind == "structure":
        return {m: full_example(spec["shape"]) for m, spec in shape["members"].items()}
    if kind == "list":
        return [full_example(shape["member"]["shape"])]
    if kind == "map":
        return {"k": full_example(shape["value"]["shape"])}
    if kind == "string":
        return shape["enum"][0] if "enum" in shape else "s" * max(1, shape.get("min", 0))
    if kind == "blob":
        return b"b" * max(1, shape.get("min", 0))
    if kind == "integer":
        return shape.get("min", 0)
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return datetime(2030, 1, 1, tzinfo=UTC)
    raise AssertionError(f"no example for {kind}")


# -- what botocore sends and parses round-trips --


@ROUND_TRIP
@given(data=st.data(), operation=st.sampled_from(ROUND_TRIP_INPUTS))
def test_botocore_requests_decode_to_the_same_values(data: st.DataObject, operation: str) -> None:
    params = data.draw(values(input_shape(operation), True))
    decoded = CODEC.decode(operation, serialize(operation, params))
    assert decoded == snaked(params, input_shape(operation))


@ROUND_TRIP
@given(data=st.data(), operation=st.sampled_from(ROUND_TRIP_OUTPUTS))
def test_encoded_results_parse_to_the_same_values(data: st.DataObject, operation: str) -> None:
    result = data.draw(values(output_shape(operation), False))
    assert (
        parse(operation, CODEC.encode(operation, snaked(result, output_shape(operation)))) == result
    )
