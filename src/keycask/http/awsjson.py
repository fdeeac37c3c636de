"""The AWS JSON 1.1 codec, driven by botocore's KMS model.

Why one module of ~800 lines: the codec is compiled from botocore's model in
one pass, and each shape kind's JSON decoder and encoder closures, their flat
twins (the hot operations' flat path, which must accept exactly what the
general decoder accepts) and their JSON-specific checks must agree with each
other; split apart, a decoder and its flat twin could drift. The
service-specific bounds (``SERVICE_LIMITS``) are the one table that lives
beside it for the same reason. What the Query codec shares with it (the
memoized per-shape compiler, member tables, the string constraints and AWS's
validation wording) is in ``awsshapes.py``; what stays here is the JSON wire.

The model is walked once, at load: every shape becomes one decoder closure and
one encoder closure with its constraints baked in, so a request costs one JSON
parse plus a walk over the members of its operation. AWS member names stop
here: decoded structures have snake_case keys and encoders read snake_case
attributes or keys.

Messages follow AWS's wording ("1 validation error detected: Value 'x' at
'keyId' failed to satisfy constraint: ..."), quoting the offending string or
number as AWS does, except for members whose shape the model marks
``sensitive`` (Plaintext, key store passwords, XKS credentials): those are
never repeated, nor are blobs, lists or maps. A quoted value is cut at
``awsshapes.MAX_VALUE_SHOWN`` characters.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import orjson
import pybase64

from keycask.errors import SerializationException, UnknownOperationException, ValidationException
from keycask.http.awsshapes import (
    INTEGER_RANGES,
    UNBOUNDED,
    ShapeCompiler,
    bounds,
    member_table,
    missing_member,
    range_violation,
    required_members,
    shown_name,
    size_violation,
    snake_case,
    summarize,
    violation,
    wire_name,
)

__all__ = ["Codec", "FlatDecoder", "FlatEncoder", "encode_error", "snake_case"]

# A decoder gets the JSON value, its member path (only ever used in messages) and
# the list collecting constraint violations; a value of the wrong JSON type
# raises at once, because nothing below it can be checked meaningfully.
Decoder = Callable[[Any, str, list[str]], Any]
# An encoder gets a service-layer value and returns what orjson should write.
Encoder = Callable[[Any], Any]
# The flat path (``Codec.flat_decoder``): a parsed body to its snake_case
# fields, or None for anything the general decoder would not accept as it is.
FlatDecoder = Callable[[Any], dict[str, Any] | None]
FlatEncoder = Callable[[Any], bytes]
# A flat check gets a JSON value and returns it decoded, or _REFUSED.
_Check = Callable[[Any], Any]
_REFUSED: Final = object()

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


def encode_error(code: str, message: str) -> bytes:
    """The body of an AWS JSON 1.1 error answer."""
    return orjson.dumps({"__type": code, "message": message})


class Codec:
    """Decodes request bodies and encodes results for every operation of a model."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        compiler = _Compiler(_with_service_limits(model["shapes"]))
        compiler.compile_all_patterns()
        self._compiler = compiler
        self._operations: Mapping[str, Any] = model["operations"]
        self._decoders: dict[str, Decoder] = {}
        self._encoders: dict[str, Encoder | None] = {}
        self._memberless_outputs: set[str] = set()
        for name, operation in model["operations"].items():
            self._decoders[name] = compiler.operation_decoder(operation.get("input"))
            output = operation.get("output")
            self._encoders[name] = compiler.encoder(output["shape"]) if output else None
            if output and not model["shapes"][output["shape"]]["members"]:
                self._memberless_outputs.add(name)
        self._names = frozenset(self._decoders)

    @classmethod
    def load(cls) -> Codec:
        """A codec for the KMS model of the installed botocore."""
        from botocore.loaders import Loader

        return cls(Loader().load_service_model("kms", "service-2"))

    def operation_names(self) -> frozenset[str]:
        return self._names

    def decode(self, operation: str, body: bytes) -> dict[str, Any]:
        """Validated request values with snake_case keys; raises the AWS error on bad input."""
        if operation not in self._decoders:
            raise UnknownOperationException(_unknown_operation(operation))
        return self.decode_parsed(operation, self.parse(body))

    @staticmethod
    def parse(body: bytes) -> Any:
        """The body's JSON value (an empty body is ``{}``); SerializationException
        if it is not JSON. ``decode`` is ``decode_parsed(parse(body))``."""
        return _parse_json(body) if body else {}

    def decode_parsed(self, operation: str, document: Any) -> dict[str, Any]:
        """``decode`` of a body already parsed: the flat path's fallback
        parses each body once."""
        decoder = self._decoders.get(operation)
        if decoder is None:
            raise UnknownOperationException(_unknown_operation(operation))
        violations: list[str] = []
        request = decoder(document, "", violations)
        if violations:
            raise ValidationException(summarize(violations))
        result: dict[str, Any] = request
        return result

    def encode(self, operation: str, result: object | None) -> bytes:
        """The response body; a result that does not fit the model raises ``TypeError``."""
        try:
            encoder = self._encoders[operation]
        except KeyError:
            raise UnknownOperationException(_unknown_operation(operation)) from None
        if encoder is None:
            if result is not None:
                raise TypeError(f"{operation} has no output; its handler must return None")
            return b""
        if result is None and operation in self._memberless_outputs:
            return b"{}"
        try:
            return orjson.dumps(encoder(result))
        except _ResultTypeError as exc:
            raise _ResultTypeError(f"{operation} result field {exc.path}", exc.problem) from None

    def flat_decoder(
        self, operation: str, fields: frozenset[str], required: frozenset[str]
    ) -> FlatDecoder | None:
        """The flat path of ``operation``'s input: a body (as ``parse`` gives
        it) straight to its snake_case fields, for a typed request with
        ``fields`` of which ``required`` have no default. None when a member it takes is not a
        flat shape (a structure, a timestamp, a float).

        It accepts exactly the bodies the general path (``decode``, then the
        typed request's builder) accepts without an error, and gives the same
        fields; for anything else (invalid JSON, a wrong type, a constraint
        broken, an unknown, null, unsupported or missing member) it answers
        None, and the caller runs the general path, which finds the error and
        words it (from the same parsed body: ``decode_parsed``). So it needs
        no messages and no member paths, and does ~1 us less work per
        Encrypt 4 KiB (thread_time).
        """
        spec = self._operations[operation].get("input")
        shape = self._compiler.shape(spec["shape"]) if spec else {"members": {}}
        members: dict[str, tuple[str, _Check]] = {}
        for member, member_spec in shape["members"].items():
            snake = snake_case(member)
            if snake not in fields:
                continue  # refused by the builder: left to the general path
            check = self._compiler.flat_check(member_spec["shape"])
            if check is None:
                return None
            members[wire_name(member, member_spec)] = (snake, check)
        needed = required | {snake_case(member) for member in shape.get("required", ())}
        if not needed <= {snake for snake, _ in members.values()}:
            return None
        return _flat_structure(members, needed)

    def flat_encoder(self, operation: str, result: type) -> FlatEncoder | None:
        """The flat path of ``operation``'s answer for results of the
        dataclass ``result``: the same bytes as ``encode``, from a loop over
        the members, with no per-member closure. None when a member is not
        a blob, string, boolean or integer. A value
        not of its member's exact type (a str Enum, None where the model
        allows it) is left to ``encode``, which converts or refuses it."""
        output = self._operations[operation].get("output")
        if output is None or not dataclasses.is_dataclass(result):
            return None
        shape = self._compiler.shape(output["shape"])
        held = {f.name for f in dataclasses.fields(result)}
        plan: list[tuple[str, str, type]] = []
        for member, spec in shape["members"].items():
            snake = snake_case(member)
            kind = _FLAT_RESULT_TYPES.get(self._compiler.shape(spec["shape"])["type"])
            if snake not in held and hasattr(result, snake):
                return None  # a property the general encoder reads: left to it
            if kind is None:
                if snake in held:
                    return None
                continue
            if snake in held:
                plan.append((snake, wire_name(member, spec), kind))
        # Fields the model has no member for must be None (encode refuses
        # them otherwise): GenerateDataKeyWithoutPlaintext's plaintext.
        extra = tuple(held - {snake for snake, _, _ in plan})
        members = tuple(plan)
        general = self.encode
        b64 = pybase64.b64encode_as_string
        dumps = orjson.dumps
        blob: type = bytes

        def encode(value: Any) -> bytes:
            if type(value) is not result:
                return general(operation, value)
            for field in extra:
                if getattr(value, field) is not None:
                    return general(operation, value)
            out: dict[str, Any] = {}
            for snake, json_name, kind in members:
                item: Any = getattr(value, snake)
                if item is None:
                    continue
                if type(item) is not kind:
                    return general(operation, value)
                out[json_name] = b64(cast(bytes, item)) if kind is blob else item
            return dumps(out)

        return encode


# The result values the flat encoder writes as they are (blobs in base64).
_FLAT_RESULT_TYPES: Final[Mapping[str, type]] = {
    "blob": bytes,
    "string": str,
    "boolean": bool,
    "integer": int,
    "long": int,
}


def _flat_structure(
    members: Mapping[str, tuple[str, _Check]], needed: frozenset[str]
) -> FlatDecoder:
    def decode(document: Any) -> dict[str, Any] | None:
        if type(document) is not dict:
            return None
        out: dict[str, Any] = {}
        for key, item in document.items():
            known = members.get(key)
            # A null member counts as absent in the general path: left to it.
            if known is None or item is None:
                return None
            snake, check = known
            value = check(item)
            if value is _REFUSED:
                return None
            out[snake] = value
        if not needed <= out.keys():
            return None
        return out

    return decode


# Limits the service enforces more tightly than the model's shared LimitType
# (1-1000), as the API Reference states them for each operation's Limit.
SERVICE_LIMITS: Final[Mapping[tuple[str, str], tuple[int, int]]] = {
    ("ListAliasesRequest", "Limit"): (1, 100),
    ("ListGrantsRequest", "Limit"): (1, 100),
    ("ListRetirableGrantsRequest", "Limit"): (1, 100),
    ("ListResourceTagsRequest", "Limit"): (1, 50),
}


def _with_service_limits(shapes: Mapping[str, Any]) -> Mapping[str, Any]:
    """``shapes`` with each member of SERVICE_LIMITS pointed at a shape of its
    own bounds, so the codec refuses Limit=101 with the standard message. A
    model that no longer has such a member is left as it is."""
    patched = dict(shapes)
    for (structure, member), (low, high) in SERVICE_LIMITS.items():
        spec = shapes.get(structure, {}).get("members", {}).get(member)
        if spec is None:
            continue
        bounded = f"{spec['shape']}#{low}-{high}"
        patched[bounded] = {**shapes[spec["shape"]], "min": low, "max": high}
        members = {**patched[structure]["members"], member: {**spec, "shape": bounded}}
        patched[structure] = {**patched[structure], "members": members}
    return patched


class _ResultTypeError(TypeError):
    """A result does not fit the operation's output shape: a bug in the service layer."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# -- parsing and messages --


def _parse_json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's own text is not shown: our wording is stable and certainly
        # never quotes the body.
        raise SerializationException(_json_problem(exc)) from None


def _json_problem(exc: orjson.JSONDecodeError) -> str:
    if "UTF-8" in exc.msg:
        return "Request body is not valid UTF-8"
    if "depth" in exc.msg or "recursion" in exc.msg.lower():
        return "Request body is nested too deeply"
    return f"Request body is not valid JSON (line {exc.lineno}, column {exc.colno})"


def _unknown_operation(operation: str) -> str:
    return f"Operation '{shown_name(operation)}' is not supported"


def _unknown_member(key: str, path: str) -> str:
    where = f"'{path}'" if path else "input"
    return f"Unknown parameter '{shown_name(key)}' in {where}"


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(path: str, expected: str, value: object) -> SerializationException:
    where = f"Value at '{path}'" if path else "Request body"
    return SerializationException(f"{where} must be {expected}, got {_json_kind(value)}")


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    # The model's patterns are Java regular expressions matched against the
    # whole value; re.ASCII keeps \w, \d and \s ASCII-only as they are in Java.
    return re.compile(pattern, re.ASCII)


# -- decoders of leaf shapes that need no closure --


def _decode_plain_string(value: Any, path: str, violations: list[str]) -> Any:
    if type(value) is not str:
        raise _wrong_type(path, "a string", value)
    return value


def _decode_boolean(value: Any, path: str, violations: list[str]) -> Any:
    if type(value) is not bool:
        raise _wrong_type(path, "a boolean", value)
    return value


def _decode_timestamp(value: Any, path: str, violations: list[str]) -> Any:
    if type(value) is not int and type(value) is not float:
        raise _wrong_type(path, "a number (seconds since the epoch)", value)
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise SerializationException(f"Value at '{path}' is not a valid timestamp") from None


# -- flat checks of leaf shapes (Codec.flat_decoder) --


def _flat_boolean(value: Any) -> Any:
    return value if type(value) is bool else _REFUSED


def _flat_blob(shape: Mapping[str, Any]) -> _Check:
    low, high = bounds(shape)
    b64decode = pybase64.b64decode

    def check(value: Any) -> Any:
        if type(value) is not str:
            return _REFUSED
        try:
            raw = b64decode(value, validate=True)
        except ValueError:
            return _REFUSED
        return raw if low <= len(raw) <= high else _REFUSED

    return check


def _flat_integer(kind: str, shape: Mapping[str, Any]) -> _Check:
    smallest, largest = INTEGER_RANGES[kind]
    low = max(int(shape.get("min", smallest)), smallest)
    high = min(int(shape.get("max", largest)), largest)

    def check(value: Any) -> Any:
        return value if type(value) is int and low <= value <= high else _REFUSED

    return check


def _flat_list(member: _Check, shape: Mapping[str, Any]) -> _Check:
    low, high = bounds(shape)

    def check(value: Any) -> Any:
        if type(value) is not list or not low <= len(value) <= high:
            return _REFUSED
        out = [member(item) for item in value]
        return _REFUSED if _REFUSED in out else out

    return check


def _flat_plain_map(shape: Mapping[str, Any]) -> _Check:
    low, high = bounds(shape)

    def check(value: Any) -> Any:
        if type(value) is not dict or not low <= len(value) <= high:
            return _REFUSED
        for item in value.values():
            if type(item) is not str:
                return _REFUSED
        return value

    return check


# -- encoders of leaf shapes --


def _encode_string(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, enum.Enum):
        if isinstance(value.value, str):
            return str.__str__(value.value)
    elif isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"expected str or a str-valued Enum, got {type(value).__name__}")


def _encode_integer(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"expected int, got {type(value).__name__}")


def _encode_float(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected float, got {type(value).__name__}")


def _encode_boolean(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise TypeError(f"expected bool, got {type(value).__name__}")


def _encode_blob(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return pybase64.b64encode_as_string(value)
    raise TypeError(f"expected bytes, got {type(value).__name__}")


def _encode_timestamp(value: Any) -> Any:
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise TypeError("a naive datetime has no defined instant; use an aware one")
    # Whole milliseconds, computed on integers so no float rounding creeps in.
    return ((value - _EPOCH) // _MILLISECOND) / 1000


def _encode_list(member: Encoder) -> Encoder:
    def encode(value: Any) -> Any:
        if isinstance(value, str | bytes | bytearray) or not isinstance(value, Sequence):
            raise TypeError(f"expected a sequence, got {type(value).__name__}")
        return [member(item) for item in value]

    return encode


def _encode_map(key: Encoder, member: Encoder) -> Encoder:
    def encode(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {type(value).__name__}")
        return {key(k): member(v) for k, v in value.items()}

    return encode


_LEAF_ENCODERS: Final[Mapping[str, Encoder]] = {
    "string": _encode_string,
    "integer": _encode_integer,
    "long": _encode_integer,
    "float": _encode_float,
    "double": _encode_float,
    "boolean": _encode_boolean,
    "blob": _encode_blob,
    "timestamp": _encode_timestamp,
}


class _Compiler(ShapeCompiler[Decoder, Encoder]):
    """Turns model shapes into JSON decoders and encoders, each shape once."""

    def __init__(self, shapes: Mapping[str, Any]) -> None:
        super().__init__(shapes, _compile_pattern)

    leaf_encoders = _LEAF_ENCODERS

    def flat_check(self, name: str) -> _Check | None:
        """The flat twin of ``decoder(name)``: the decoded value where that
        decoder would record no violation and raise nothing, else _REFUSED.
        None for the shapes the flat path leaves to the general one."""
        shape = self._shapes[name]
        kind = shape["type"]
        if kind == "string":
            return self._flat_string(shape)
        if kind == "blob":
            return _flat_blob(shape)
        if kind == "boolean":
            return _flat_boolean
        if kind in INTEGER_RANGES:
            return _flat_integer(kind, shape)
        if kind == "list":
            member = self.flat_check(shape["member"]["shape"])
            return None if member is None else _flat_list(member, shape)
        if kind == "map":
            key = self.decoder(shape["key"]["shape"])
            value = self.decoder(shape["value"]["shape"])
            if key is not _decode_plain_string or value is not _decode_plain_string:
                return None
            return _flat_plain_map(shape)
        return None

    def _flat_string(self, shape: Mapping[str, Any]) -> _Check:
        low, high = bounds(shape)
        allowed = frozenset(shape["enum"]) if "enum" in shape else None
        pattern = self.pattern(shape["pattern"]) if "pattern" in shape else None

        def check(value: Any) -> Any:
            if type(value) is not str or not low <= len(value) <= high:
                return _REFUSED
            if allowed is not None and value not in allowed:
                return _REFUSED
            if pattern is not None and pattern.fullmatch(value) is None:
                return _REFUSED
            return value

        return check

    # -- decoders --

    def structure_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        members = member_table(shape, self.decoder)
        required = required_members(shape)

        # Walks the members the request holds rather than all the model has:
        # requests carry few of them, and this loop is most of the codec's cost.
        def decode(value: Any, path: str, violations: list[str]) -> Any:
            if type(value) is not dict:
                raise _wrong_type(path, "a JSON object", value)
            out: dict[str, Any] = {}
            for key, item in value.items():
                known = members.get(key)
                if known is None:
                    violations.append(_unknown_member(key, path))
                elif item is not None:
                    snake, member_path, member = known
                    child = f"{path}.{member_path}" if path else member_path
                    out[snake] = member(item, child, violations)
            for json_name, member_path in required:
                if value.get(json_name) is None:
                    violations.append(
                        missing_member(f"{path}.{member_path}" if path else member_path)
                    )
            return out

        return decode

    def list_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        member = self.decoder(shape["member"]["shape"])
        low, high = bounds(shape)

        def decode(value: Any, path: str, violations: list[str]) -> Any:
            if type(value) is not list:
                raise _wrong_type(path, "an array", value)
            if not low <= len(value) <= high:
                violations.append(size_violation(path, len(value), low, high, "length"))
            return [
                member(item, f"{path}.{i}.member", violations) for i, item in enumerate(value, 1)
            ]

        return decode

    def map_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        key = self.decoder(shape["key"]["shape"])
        member = self.decoder(shape["value"]["shape"])
        low, high = bounds(shape)
        # JSON object keys are always strings, so a map of unconstrained strings
        # (the encryption context) needs only its values' types checked.
        plain = key is _decode_plain_string and member is _decode_plain_string

        def decode(value: Any, path: str, violations: list[str]) -> Any:
            if type(value) is not dict:
                raise _wrong_type(path, "a JSON object", value)
            if not low <= len(value) <= high:
                violations.append(size_violation(path, len(value), low, high, "length"))
            if plain:
                for item in value.values():
                    if type(item) is not str:
                        break
                else:
                    return value
            # Entries are named by position: keys are caller data too.
            return {
                key(k, f"{path}.{i}.key", violations): member(v, f"{path}.{i}.value", violations)
                for i, (k, v) in enumerate(value.items(), 1)
            }

        return decode

    def string_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        low, high = bounds(shape)
        if low == 0 and high == UNBOUNDED and "enum" not in shape and "pattern" not in shape:
            return _decode_plain_string
        # The shared closure is this decoder as it was: no call is added.
        return self.string_check(shape, _wrong_type)

    def blob_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        return _blob_decoder(shape)

    def integer_decoder(self, kind: str, shape: Mapping[str, Any]) -> Decoder:
        return _integer_decoder(kind, shape)

    def float_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        return _float_decoder(shape)

    def boolean_decoder(self) -> Decoder:
        return _decode_boolean

    def timestamp_decoder(self) -> Decoder:
        return _decode_timestamp

    def check_timestamp(self, name: str, shape: Mapping[str, Any]) -> None:
        form = shape.get("timestampFormat", "unixTimestamp")
        if form != "unixTimestamp":
            raise ValueError(f"shape {name!r} uses timestampFormat {form!r}; only epoch seconds")

    # -- encoders --

    def list_encoder(self, shape: Mapping[str, Any]) -> Encoder:
        return _encode_list(self.encoder(shape["member"]["shape"]))

    def map_encoder(self, shape: Mapping[str, Any]) -> Encoder:
        return _encode_map(
            self.encoder(shape["key"]["shape"]), self.encoder(shape["value"]["shape"])
        )

    def structure_encoder(self, name: str, shape: Mapping[str, Any]) -> Encoder:
        members = tuple(
            (snake_case(member), wire_name(member, spec), self.encoder(spec["shape"]))
            for member, spec in shape["members"].items()
        )
        known = frozenset(snake for snake, _, _ in members)
        # Per dataclass type: its fields the model has no member for (a value in
        # one would silently vanish from the answer, so it is an error), and the
        # members it can hold, so each answer reads only attributes that exist.
        plans: dict[type, tuple[tuple[str, ...], tuple[tuple[str, str, Encoder], ...]]] = {}

        def plan(cls: type) -> tuple[tuple[str, ...], tuple[tuple[str, str, Encoder], ...]]:
            fields = [f.name for f in dataclasses.fields(cls)]
            extra = tuple(field for field in fields if field not in known)
            held = tuple(m for m in members if m[0] in fields or hasattr(cls, m[0]))
            plans[cls] = (extra, held)
            return extra, held

        def from_dataclass(value: Any, extra: tuple[str, ...], held: Any) -> dict[str, Any]:
            for field in extra:
                if getattr(value, field) is not None:
                    raise TypeError(f"{name} has no member for field {field!r}")
            out: dict[str, Any] = {}
            snake = ""
            try:
                for snake, json_name, member in held:
                    item = getattr(value, snake)
                    if item is not None:
                        out[json_name] = member(item)
            except TypeError as exc:
                raise _within(snake, exc) from None
            return out

        def from_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
            if not known.issuperset(value.keys()):
                for key, item in value.items():
                    if key not in known and item is not None:
                        raise TypeError(f"{name} has no member for key {key!r}")
            out: dict[str, Any] = {}
            snake = ""
            try:
                for snake, json_name, member in members:
                    item = value.get(snake)
                    if item is not None:
                        out[json_name] = member(item)
            except TypeError as exc:
                raise _within(snake, exc) from None
            return out

        def encode(value: Any) -> Any:
            cls = type(value)
            known_plan = plans.get(cls)
            if known_plan is not None:
                return from_dataclass(value, *known_plan)
            if isinstance(value, Mapping):
                return from_mapping(value)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return from_dataclass(value, *plan(cls))
            raise TypeError(f"expected a dataclass or a mapping, got {cls.__name__}")

        return encode


def _within(field: str, exc: TypeError) -> _ResultTypeError:
    """Name the field a wrong-typed value sat in, innermost last."""
    if isinstance(exc, _ResultTypeError):
        return _ResultTypeError(f"{field}.{exc.path}", exc.problem)
    return _ResultTypeError(field, str(exc))


def _blob_decoder(shape: Mapping[str, Any]) -> Decoder:
    low, high = bounds(shape)

    def decode(value: Any, path: str, violations: list[str]) -> Any:
        if type(value) is not str:
            raise _wrong_type(path, "a base64-encoded string", value)
        try:
            raw = pybase64.b64decode(value, validate=True)
        except ValueError:
            raise SerializationException(f"Value at '{path}' is not valid base64") from None
        if not low <= len(raw) <= high:
            violations.append(size_violation(path, len(raw), low, high, "length"))
        return raw

    return decode


def _integer_decoder(kind: str, shape: Mapping[str, Any]) -> Decoder:
    smallest, largest = INTEGER_RANGES[kind]
    low = int(shape.get("min", smallest))
    high = int(shape.get("max", largest))
    width = "32-bit" if kind == "integer" else "64-bit"
    sensitive = bool(shape.get("sensitive"))

    def decode(value: Any, path: str, violations: list[str]) -> Any:
        if type(value) is not int:
            raise _wrong_type(path, "an integer", value)
        if not smallest <= value <= largest:
            raise SerializationException(f"Value at '{path}' does not fit a {width} integer")
        shown = None if sensitive else str(value)
        if value < low or value > high:
            violations.append(range_violation(path, value, low, high, shown))
        return value

    return decode


def _float_decoder(shape: Mapping[str, Any]) -> Decoder:
    low = float(shape.get("min", float("-inf")))
    high = float(shape.get("max", float("inf")))

    def decode(value: Any, path: str, violations: list[str]) -> Any:
        if type(value) is not float and type(value) is not int:
            raise _wrong_type(path, "a number", value)
        if value < low:
            violations.append(violation(path, f"have value greater than or equal to {low:g}"))
        elif value > high:
            violations.append(violation(path, f"have value less than or equal to {high:g}"))
        return float(value)

    return decode
