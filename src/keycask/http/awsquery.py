"""The AWS Query protocol codec, driven by botocore's STS model.

Why one module of ~670 lines: like ``awsjson.py``, the codec is compiled from
the model in one pass, and the form parser, the shape decoders with their
form-specific checks, the XML encoders and the model's Java patterns must
agree with each other; split apart they could drift. What it shares with the
JSON codec (the memoized per-shape compiler, member tables, the string
constraints and AWS's validation wording) is in ``awsshapes.py``; what stays
here is the Query wire.

A request is an ``application/x-www-form-urlencoded`` body: ``Action``,
``Version`` and the input's members flattened into dotted names
(``Tags.member.1.Key``, ``PolicyArns.member.2.arn``, an empty list as
``Name=``), as botocore's ``QuerySerializer`` writes them. ``parse`` turns
the body into one flat mapping (strictly: bad percent-escapes, text that is
not UTF-8, a field without ``=`` or a name given twice are refused), and
``decode`` rebuilds the operation's input from it and checks it against the
input shape (required members, lengths, ranges, patterns, enums, list
indices 1..N; unknown names refused). Every refusal of either is a
``ValidationException``, worded as AWS words it ("1 validation error
detected: Value 'x' at 'roleSessionName' failed to satisfy constraint:
..."), never quoting a member the model marks sensitive.

Answers are STS's XML: ``<OpResponse xmlns=...><OpResult>...</OpResult>
<ResponseMetadata><RequestId>..`` for results (written from typed results:
snake_case attributes, like the JSON codec), and ``<ErrorResponse><Error>
<Type>Sender|Receiver</Type><Code>..</Code><Message>..</Message></Error>
<RequestId>..`` for errors, as botocore's ``QueryParser`` reads them.
"""

from __future__ import annotations

import binascii
import dataclasses
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

from keycask.errors import ValidationException
from keycask.http.awsshapes import (
    INTEGER_RANGES,
    Matcher,
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

__all__ = ["MAX_BODY", "MAX_FIELDS", "QueryCodec", "compile_pattern", "snake_case"]

_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")
# A '%' must start a two-digit escape; unquote_plus would keep a stray one as
# it is, and two parsers disagreeing on a body is how requests get smuggled.
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
# More fields than any STS input can hold (50 tags of two fields, 50
# transitive keys, policy ARNs, a handful of scalars): a form of thousands
# of fields is refused before any tree is built from it.
MAX_FIELDS: Final = 1000
# The largest form an STS input makes (a 20,000-character web identity token,
# a 2,048-character policy, 50 tags and 10 policy ARNs, each character
# percent-escaped at worst) is under 128 KiB; AssumeRoleWithWebIdentity is
# parsed before any signature is checked, so more is refused unread.
MAX_BODY: Final = 128 * 1024
# No STS member path is deeper than "Tags.member.50.Key" (four parts) or
# longer than a few dozen characters: a name of thousands of dots would
# build a tree (and walk it) for nothing.
MAX_NAME_PARTS: Final = 6
MAX_NAME_CHARS: Final = 256
# A list index of more digits than any list's length (STS lists hold at most
# 50): int() of thousands of digits is slow, and refused past 4,300.
_MAX_INDEX_DIGITS: Final = 4
# Characters XML 1.0 cannot carry, even as references.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_RESERVED: Final = frozenset({"Action", "Version"})

# A decoder gets the form's subtree, its member path (for messages), its wire
# name (for "Unknown parameter" messages) and the list of violations.
Decoder = Callable[["_Node", str, str, list[str]], Any]
Encoder = Callable[[Any, list[str]], None]


class _Node:
    """One dotted name's segment: the value given for it, and its children."""

    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value: str | None = None
        self.children: dict[str, _Node] = {}


class QueryCodec:
    """Decodes forms and encodes XML answers for every operation of a Query model."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        metadata = model["metadata"]
        if metadata.get("protocol") != "query":
            raise ValueError("QueryCodec needs a model of the Query protocol")
        self.api_version: str = metadata["apiVersion"]
        self._namespace = _escape(metadata["xmlNamespace"])
        compiler = _Compiler(model["shapes"])
        compiler.compile_all_patterns()
        self._decoders: dict[str, Decoder] = {}
        self._encoders: dict[str, Encoder | None] = {}
        self._wrappers: dict[str, str] = {}
        unsigned: set[str] = set()
        for name, operation in model["operations"].items():
            self._decoders[name] = compiler.operation_decoder(operation.get("input"))
            output = operation.get("output")
            self._encoders[name] = compiler.encoder(output["shape"]) if output else None
            self._wrappers[name] = (output or {}).get("resultWrapper", f"{name}Result")
            if operation.get("authtype") == "none":
                unsigned.add(name)
        self._names = frozenset(self._decoders)
        self._unsigned = frozenset(unsigned)

    @classmethod
    def load(cls, service: str = "sts") -> QueryCodec:
        """A codec for ``service``'s model in the installed botocore."""
        from botocore.loaders import Loader

        return cls(Loader().load_service_model(service, "service-2"))

    def operation_names(self) -> frozenset[str]:
        return self._names

    def unsigned_operations(self) -> frozenset[str]:
        """The operations the model says SDKs send unsigned (``authtype: none``)."""
        return self._unsigned

    # -- requests --

    @staticmethod
    def parse(body: bytes) -> dict[str, str]:
        """The form's fields, percent-decoded; ValidationException for a body
        that is not a well-formed form."""
        if len(body) > MAX_BODY:
            raise ValidationException(
                f"The form is {len(body)} bytes; an STS request has at most {MAX_BODY}."
            )
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise ValidationException(
                "The request body must be an application/x-www-form-urlencoded form (ASCII)."
            ) from None
        if _BAD_ESCAPE.search(text):
            raise ValidationException("The request body has a malformed percent-escape.")
        fields: dict[str, str] = {}
        for piece in text.split("&"):
            if not piece:
                continue  # "a=1&&b=2" or a trailing "&": nothing to read
            name, equals, value = piece.partition("=")
            if not equals:
                raise ValidationException(
                    f"Form field '{shown_name(name)}' has no '=': the body is not a form."
                )
            try:
                name = unquote_plus(name, errors="strict")
                value = unquote_plus(value, errors="strict")
            except UnicodeDecodeError:
                raise ValidationException(
                    "The request body's percent-escapes do not decode to UTF-8."
                ) from None
            if name in fields:
                raise ValidationException(
                    f"Parameter '{shown_name(name)}' is given more than once."
                )
            if len(name) > MAX_NAME_CHARS or name.count(".") >= MAX_NAME_PARTS:
                raise ValidationException(
                    f"Parameter '{shown_name(name)}' is not a member of any STS input."
                )
            if len(fields) >= MAX_FIELDS:
                raise ValidationException(f"The form has more than {MAX_FIELDS} fields.")
            fields[name] = value
        return fields

    def decode(self, operation: str, fields: Mapping[str, str]) -> dict[str, Any]:
        """``operation``'s input from the form's fields (``Action`` and
        ``Version`` excepted), validated, with snake_case keys."""
        decoder = self._decoders.get(operation)
        if decoder is None:
            raise ValidationException(f"Unknown operation '{shown_name(operation)}'.")
        root = _Node()
        for name, value in fields.items():
            if name in _RESERVED:
                continue
            node = root
            for part in name.split("."):
                node = node.children.setdefault(part, _Node())
            node.value = value
        violations: list[str] = []
        decoded: dict[str, Any] = decoder(root, "", "", violations)
        if violations:
            raise ValidationException(summarize(violations))
        return decoded

    # -- answers --

    def encode(self, operation: str, result: object | None, request_id: str) -> bytes:
        """The XML answer of a success; a result that does not fit the
        model raises ``TypeError`` (a bug in the service layer)."""
        if operation not in self._encoders:
            raise TypeError(f"no operation {operation!r} in the model")
        encoder = self._encoders[operation]
        wrapper = self._wrappers[operation]
        out = [f'<{operation}Response xmlns="{self._namespace}"><{wrapper}>']
        if result is not None:
            if encoder is None:
                raise TypeError(f"{operation} has no output; its handler must return None")
            encoder(result, out)
        out.append(
            f"</{wrapper}><ResponseMetadata><RequestId>{_escape(request_id)}</RequestId>"
            f"</ResponseMetadata></{operation}Response>"
        )
        return "".join(out).encode("utf-8")

    def encode_error(self, code: str, message: str, request_id: str, *, sender: bool) -> bytes:
        """The XML answer of an error (``Sender``: the caller's fault)."""
        kind = "Sender" if sender else "Receiver"
        return (
            f'<ErrorResponse xmlns="{self._namespace}"><Error><Type>{kind}</Type>'
            f"<Code>{_escape(code)}</Code><Message>{_escape(message)}</Message></Error>"
            f"<RequestId>{_escape(request_id)}</RequestId></ErrorResponse>"
        ).encode()


# -- messages --


def _unknown(wire: str) -> str:
    return f"Unknown parameter '{shown_name(wire)}'"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _unknown_below(node: _Node, wire: str, violations: list[str]) -> None:
    """Every name under ``node`` is one the shape has no room for."""
    for name, child in node.children.items():
        below = _join(wire, name)
        if child.value is not None:
            violations.append(_unknown(below))
        _unknown_below(child, below, violations)


def _escape(text: str) -> str:
    """Text for XML; what XML cannot carry becomes U+FFFD (error messages
    may quote a caller's bytes)."""
    return _xml_text(_NOT_XML.sub("\ufffd", text))


def _xml_text(text: str) -> str:
    # A carriage return is written as a reference: XML parsers turn a raw
    # one into a line feed.
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _indices(node: _Node, path: str, wire: str, violations: list[str]) -> list[_Node] | None:
    """A list's or map's items, numbered 1..N as the Query protocol numbers them."""
    items: list[_Node | None] = [None] * len(node.children)
    for name, child in node.children.items():
        digits = name.isascii() and name.isdigit() and len(name) <= _MAX_INDEX_DIGITS
        index = int(name) if digits and name[0] != "0" else 0
        if not 1 <= index <= len(items):
            if child.value is not None:
                violations.append(_unknown(_join(wire, name)))
            _unknown_below(child, _join(wire, name), violations)
            return None
        items[index - 1] = child
    if any(item is None for item in items):
        violations.append(violation(path, "be numbered 1 to N with no gaps"))
        return None
    return [item for item in items if item is not None]


# -- Java patterns --


# Java's \p{X} classes, by the first letter of Unicode's general category.
_CATEGORY = re.compile(r"\\p\{([LNZSPMC])\}")
_ONE_CLASS = re.compile(r"\[((?:[^\]\\]|\\.)*)\]([*+])")


class _CategoryClass:
    """A pattern that is one character class holding ``\\p{X}`` members
    (the STS tag patterns), which Python's ``re`` lacks: each character must
    be of one of the categories or match the rest of the class."""

    def __init__(self, body: str, repeat: str) -> None:
        self._categories = frozenset(_CATEGORY.findall(body))
        rest = _CATEGORY.sub("", body)
        self._rest = re.compile(f"[{rest}]", re.ASCII) if rest else None
        self._least = 1 if repeat == "+" else 0

    def fullmatch(self, value: str) -> object | None:
        if len(value) < self._least:
            return None
        categories, rest = self._categories, self._rest
        for ch in value:
            if unicodedata.category(ch)[0] in categories:
                continue
            if rest is None or rest.fullmatch(ch) is None:
                return None
        return True


def compile_pattern(pattern: str) -> Matcher:
    """A model pattern (a Java regular expression matched against the whole
    value); re.ASCII keeps \\w, \\d and \\s ASCII-only as they are in Java."""
    if "\\p{" not in pattern:
        return re.compile(pattern, re.ASCII)
    whole = _ONE_CLASS.fullmatch(pattern)
    if whole is None or "\\p{" in _CATEGORY.sub("", whole.group(1)):
        raise ValueError(f"pattern {pattern!r} uses \\p{{...}} in a way this codec cannot enforce")
    return _CategoryClass(whole.group(1), whole.group(2))


# -- leaf decoders --


def _leaf(parse: Callable[[str, str, list[str]], Any]) -> Decoder:
    def decode(node: _Node, path: str, wire: str, violations: list[str]) -> Any:
        if node.children:
            _unknown_below(node, wire, violations)
        if node.value is None:
            return None
        return parse(node.value, path, violations)

    return decode


def _integer(kind: str, shape: Mapping[str, Any]) -> Decoder:
    smallest, largest = INTEGER_RANGES[kind]
    low = max(int(shape.get("min", smallest)), smallest)
    high = min(int(shape.get("max", largest)), largest)

    def parse(value: str, path: str, violations: list[str]) -> Any:
        if _INTEGER.fullmatch(value) is None:
            violations.append(violation(path, "be an integer", value))
            return None
        number = int(value)
        if number < low or number > high:
            violations.append(range_violation(path, number, low, high, value))
        return number

    return _leaf(parse)


def _parse_boolean(value: str, path: str, violations: list[str]) -> Any:
    if value not in ("true", "false"):
        violations.append(violation(path, "be true or false", value))
        return None
    return value == "true"


def _parse_timestamp(value: str, path: str, violations: list[str]) -> Any:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.utcoffset() is None:
        violations.append(violation(path, "be an ISO 8601 time with a time zone", value))
        return None
    return when.astimezone(UTC)


def _blob(shape: Mapping[str, Any]) -> Decoder:
    low, high = bounds(shape)

    def parse(value: str, path: str, violations: list[str]) -> Any:
        try:
            raw = binascii.a2b_base64(value, strict_mode=True)
        except binascii.Error:
            violations.append(violation(path, "be base64"))
            return None
        if not low <= len(raw) <= high:
            violations.append(size_violation(path, len(raw), low, high, "length"))
        return raw

    return _leaf(parse)


def _not_text(path: str, expected: str, value: object) -> Exception:
    # Never called: every value a form gives is text.
    return TypeError(f"Value at '{path}' must be {expected}")


def _float(shape: Mapping[str, Any]) -> Decoder:
    def parse(value: str, path: str, violations: list[str]) -> Any:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            violations.append(violation(path, "be a finite number", value))
            return None
        return number

    return _leaf(parse)


# -- encoders of leaf shapes --


def _encode_string(value: Any, out: list[str]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    if _NOT_XML.search(value):
        raise TypeError("a string XML cannot carry")
    out.append(_xml_text(value))


def _encode_integer(value: Any, out: list[str]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected int, got {type(value).__name__}")
    out.append(str(int(value)))


def _encode_float(value: Any, out: list[str]) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected float, got {type(value).__name__}")
    out.append(repr(float(value)))


def _encode_boolean(value: Any, out: list[str]) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"expected bool, got {type(value).__name__}")
    out.append("true" if value else "false")


def _encode_blob(value: Any, out: list[str]) -> None:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    out.append(binascii.b2a_base64(value, newline=False).decode("ascii"))


def _encode_timestamp(value: Any, out: list[str]) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise TypeError("expected a timezone-aware datetime")
    when = value.astimezone(UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    millis = when.microsecond // 1000
    out.append(f"{text}.{millis:03d}Z" if millis else f"{text}Z")


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
    """Turns model shapes into form decoders and XML encoders, each shape once."""

    def __init__(self, shapes: Mapping[str, Any]) -> None:
        super().__init__(shapes, compile_pattern)

    leaf_encoders = _LEAF_ENCODERS

    # -- decoders --

    def structure_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        members = member_table(shape, self.decoder)
        required = required_members(shape)

        def decode(node: _Node, path: str, wire: str, violations: list[str]) -> Any:
            if node.value is not None and wire:
                violations.append(violation(path, "be a structure, not a single value"))
            out: dict[str, Any] = {}
            for key, child in node.children.items():
                known = members.get(key)
                if known is None:
                    if child.value is not None:
                        violations.append(_unknown(_join(wire, key)))
                    _unknown_below(child, _join(wire, key), violations)
                    continue
                snake, member_path, member = known
                value = member(child, _join(path, member_path), _join(wire, key), violations)
                if value is not None:
                    out[snake] = value
            for key, member_path in required:
                if key not in node.children:
                    violations.append(missing_member(_join(path, member_path)))
            return out

        return decode

    def list_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        member_spec = shape["member"]
        member = self.decoder(member_spec["shape"])
        flattened = bool(shape.get("flattened"))
        item_name = member_spec.get("locationName", "member")
        low, high = bounds(shape)

        def decode(node: _Node, path: str, wire: str, violations: list[str]) -> Any:
            if node.value is not None:
                if node.value == "" and not node.children:
                    # The Query protocol's empty list: "Name=".
                    if low > 0:
                        violations.append(size_violation(path, 0, low, high, "length"))
                    return []
                violations.append(violation(path, "be a list, not a single value"))
                return None
            holder, holder_wire = node, wire
            if not flattened:
                for key, child in node.children.items():
                    if key != item_name:
                        if child.value is not None:
                            violations.append(_unknown(_join(wire, key)))
                        _unknown_below(child, _join(wire, key), violations)
                found = node.children.get(item_name)
                if found is None:
                    return None
                if found.value is not None:
                    violations.append(_unknown(_join(wire, item_name)))
                holder, holder_wire = found, _join(wire, item_name)
            items = _indices(holder, path, holder_wire, violations)
            if items is None:
                return None
            if not low <= len(items) <= high:
                violations.append(size_violation(path, len(items), low, high, "length"))
            out = []
            for i, item in enumerate(items, 1):
                if item.value is None and not item.children:
                    continue
                value = member(item, f"{path}.{i}.member", _join(holder_wire, str(i)), violations)
                out.append(value)
            return out

        return decode

    def map_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        key_decoder = self.decoder(shape["key"]["shape"])
        value_decoder = self.decoder(shape["value"]["shape"])
        key_name = shape["key"].get("locationName", "key")
        value_name = shape["value"].get("locationName", "value")
        flattened = bool(shape.get("flattened"))
        low, high = bounds(shape)

        def decode(node: _Node, path: str, wire: str, violations: list[str]) -> Any:
            if node.value is not None:
                violations.append(violation(path, "be a map, not a single value"))
                return None
            holder, holder_wire = node, wire
            if not flattened:
                for key, child in node.children.items():
                    if key != "entry":
                        if child.value is not None:
                            violations.append(_unknown(_join(wire, key)))
                        _unknown_below(child, _join(wire, key), violations)
                found = node.children.get("entry")
                if found is None:
                    return None
                holder, holder_wire = found, _join(wire, "entry")
            items = _indices(holder, path, holder_wire, violations)
            if items is None:
                return None
            if not low <= len(items) <= high:
                violations.append(size_violation(path, len(items), low, high, "length"))
            out: dict[Any, Any] = {}
            for i, item in enumerate(items, 1):
                entry_wire = _join(holder_wire, str(i))
                for name, child in item.children.items():
                    if name not in (key_name, value_name):
                        if child.value is not None:
                            violations.append(_unknown(_join(entry_wire, name)))
                        _unknown_below(child, _join(entry_wire, name), violations)
                key_node = item.children.get(key_name)
                value_node = item.children.get(value_name)
                if key_node is None or value_node is None:
                    missing = "key" if key_node is None else "value"
                    violations.append(missing_member(f"{path}.{i}.{missing}"))
                    continue
                key = key_decoder(
                    key_node, f"{path}.{i}.key", _join(entry_wire, key_name), violations
                )
                value = value_decoder(
                    value_node, f"{path}.{i}.value", _join(entry_wire, value_name), violations
                )
                if key in out:
                    violations.append(violation(f"{path}.{i}.key", "be unique in the map"))
                out[key] = value
            return out

        return decode

    def string_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        return _leaf(self.string_check(shape, _not_text))

    def blob_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        return _blob(shape)

    def integer_decoder(self, kind: str, shape: Mapping[str, Any]) -> Decoder:
        return _integer(kind, shape)

    def float_decoder(self, shape: Mapping[str, Any]) -> Decoder:
        return _float(shape)

    def boolean_decoder(self) -> Decoder:
        return _leaf(_parse_boolean)

    def timestamp_decoder(self) -> Decoder:
        return _leaf(_parse_timestamp)

    # -- encoders --

    def structure_encoder(self, name: str, shape: Mapping[str, Any]) -> Encoder:
        members = tuple(
            (snake_case(member), wire_name(member, spec), self.encoder(spec["shape"]))
            for member, spec in shape["members"].items()
        )
        known = frozenset(snake for snake, _, _ in members)

        def encode(value: Any, out: list[str]) -> None:
            if isinstance(value, Mapping):
                get: Callable[[str], Any] = value.get
                extra = [
                    key for key, item in value.items() if key not in known and item is not None
                ]
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                get = lambda field: getattr(value, field, None)  # noqa: E731
                extra = [
                    f.name
                    for f in dataclasses.fields(value)
                    if f.name not in known and getattr(value, f.name) is not None
                ]
            else:
                raise TypeError(f"{name}: expected a dataclass or a mapping")
            if extra:
                raise TypeError(f"{name} has no member for {extra[0]!r}")
            for snake, tag, member in members:
                item = get(snake)
                if item is None:
                    continue
                out.append(f"<{tag}>")
                try:
                    member(item, out)
                except TypeError as exc:
                    raise TypeError(f"{name}.{snake}: {exc}") from None
                out.append(f"</{tag}>")

        return encode

    def list_encoder(self, shape: Mapping[str, Any]) -> Encoder:
        member = self.encoder(shape["member"]["shape"])
        tag = shape["member"].get("locationName", "member")

        def encode(value: Any, out: list[str]) -> None:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise TypeError(f"expected a sequence, got {type(value).__name__}")
            for item in value:
                out.append(f"<{tag}>")
                member(item, out)
                out.append(f"</{tag}>")

        return encode

    def map_encoder(self, shape: Mapping[str, Any]) -> Encoder:
        key = self.encoder(shape["key"]["shape"])
        member = self.encoder(shape["value"]["shape"])
        key_tag = shape["key"].get("locationName", "key")
        value_tag = shape["value"].get("locationName", "value")

        def encode(value: Any, out: list[str]) -> None:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected a mapping, got {type(value).__name__}")
            for k, v in value.items():
                out.append(f"<entry><{key_tag}>")
                key(k, out)
                out.append(f"</{key_tag}><{value_tag}>")
                member(v, out)
                out.append(f"</{value_tag}></entry>")

        return encode
