"""What the AWS JSON and AWS Query codecs share about botocore's shapes.

Both codecs compile a botocore model once, at load, into one decoder and one
encoder closure a shape; they differ only on the wire (``awsjson``: JSON
values in and out; ``awsquery``: form fields in, XML out). What is the same
for both lives here: the memoized per-shape compiler with its guard for
recursive shapes and its dispatch on a shape's type (``ShapeCompiler``, whose
per-type builders each codec writes for its wire), the member tables, the
string constraints (length, enum, pattern) with their closure, and AWS's
validation wording with its rules on what a message may quote: a value of a
shape the model marks ``sensitive`` is never repeated, a quoted value is cut
at ``MAX_VALUE_SHOWN`` characters, a caller's name at ``MAX_NAME_SHOWN``, and
a listing of violations at ``MAX_LISTED_VIOLATIONS``.

Nothing here adds a call to a decoder on a request's path: the compiler and
the member tables run at load, the message helpers only once a value is
refused, and ``ShapeCompiler.string_check`` is the string decoder itself
(the JSON codec uses the closure as it is; see its comments on cost).
"""

from __future__ import annotations

import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, Protocol, TypeVar, cast

__all__ = [
    "INTEGER_RANGES",
    "MAX_LISTED_VIOLATIONS",
    "MAX_NAME_SHOWN",
    "MAX_VALUE_SHOWN",
    "UNBOUNDED",
    "Matcher",
    "ShapeCompiler",
    "StringCheck",
    "WrongType",
    "bounds",
    "member_path",
    "member_table",
    "missing_member",
    "range_violation",
    "required_members",
    "shown_name",
    "size_violation",
    "snake_case",
    "summarize",
    "violation",
    "wire_name",
]

_WORD_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
UNBOUNDED: Final = sys.maxsize
INTEGER_RANGES: Final = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# A message listing thousands of violations is an amplification vector; the
# count stays exact, the listing stops here.
MAX_LISTED_VIOLATIONS: Final = 25
MAX_NAME_SHOWN: Final = 64
MAX_VALUE_SHOWN: Final = 1024

# A codec's decoder and encoder closures; their arguments are the wire's.
D = TypeVar("D", bound=Callable[..., Any])
E = TypeVar("E", bound=Callable[..., Any])
# A string's checks: the value, its member path (for messages) and the list
# of violations; the value back. A value that is not a str at all is the
# wire's error: ``WrongType(path, "a string", value)`` is raised.
StringCheck = Callable[[Any, str, list[str]], Any]
WrongType = Callable[[str, str, object], Exception]


class Matcher(Protocol):
    """A compiled model pattern (a compiled re pattern or the Query codec's own)."""

    def fullmatch(self, value: str) -> object | None: ...


def snake_case(name: str) -> str:
    """``AWSAccountId`` -> ``aws_account_id``: the Python name of an AWS member."""
    return _WORD_BOUNDARY.sub("_", name).lower()


def wire_name(member: str, spec: Mapping[str, Any]) -> str:
    """The name a member goes by on the wire (its ``locationName``)."""
    name: str = spec.get("locationName", member)
    return name


def member_path(name: str) -> str:
    # AWS names members in messages with a lower-case first letter ("keyId").
    return name[:1].lower() + name[1:]


def bounds(shape: Mapping[str, Any]) -> tuple[int, int]:
    return int(shape.get("min", 0)), int(shape.get("max", UNBOUNDED))


F = TypeVar("F")


def member_table(
    shape: Mapping[str, Any], compiled: Callable[[str], F]
) -> dict[str, tuple[str, str, F]]:
    """A structure's members by wire name: snake_case name, member path and
    ``compiled(member shape)``."""
    return {
        wire_name(member, spec): (snake_case(member), member_path(member), compiled(spec["shape"]))
        for member, spec in shape["members"].items()
    }


def required_members(shape: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A structure's required members: wire name and member path."""
    return tuple(
        (wire_name(member, shape["members"][member]), member_path(member))
        for member in shape.get("required", ())
    )


# -- messages --


def shown_name(name: str) -> str:
    # Names come from the caller; keep an absurdly long one from filling the answer.
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "..."


def summarize(violations: list[str]) -> str:
    count = len(violations)
    listed = "; ".join(violations[:MAX_LISTED_VIOLATIONS])
    if count > MAX_LISTED_VIOLATIONS:
        listed += f"; and {count - MAX_LISTED_VIOLATIONS} more"
    plural = "" if count == 1 else "s"
    return f"{count} validation error{plural} detected: {listed}"


def violation(path: str, rule: str, value: str | None = None) -> str:
    """AWS's wording; ``value`` is quoted when given (never for a sensitive
    member: the caller passes None)."""
    if value is None:
        return f"Value at '{path}' failed to satisfy constraint: Member must {rule}"
    if len(value) > MAX_VALUE_SHOWN:
        value = value[:MAX_VALUE_SHOWN] + "..."
    return f"Value '{value}' at '{path}' failed to satisfy constraint: Member must {rule}"


def size_violation(
    path: str, size: int, low: int, high: int, noun: str, *, value: str | None = None
) -> str:
    if size < low:
        return violation(path, f"have {noun} greater than or equal to {low}", value)
    return violation(path, f"have {noun} less than or equal to {high}", value)


def range_violation(path: str, number: int, low: int, high: int, value: str | None) -> str:
    """An integer outside ``low..high`` (which the caller has found it is)."""
    if number < low:
        return violation(path, f"have value greater than or equal to {low}", value)
    return violation(path, f"have value less than or equal to {high}", value)


def missing_member(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


# -- the compiler --


class ShapeCompiler(ABC, Generic[D, E]):
    """Turns model shapes into closures, each shape once: a codec subclasses
    it with the builders of its wire, one a shape type."""

    def __init__(self, shapes: Mapping[str, Any], compile_pattern: Callable[[str], Matcher]):
        self._shapes = shapes
        self._compile_pattern = compile_pattern
        self._patterns: dict[str, Matcher] = {}
        self._decoders: dict[str, D] = {}
        self._encoders: dict[str, E] = {}
        self._building: set[tuple[str, str]] = set()

    def compile_all_patterns(self) -> None:
        # Every pattern, used or not, so a model we cannot enforce fails at start.
        for shape in self._shapes.values():
            if "pattern" in shape:
                self.pattern(shape["pattern"])

    def pattern(self, pattern: str) -> Matcher:
        compiled = self._patterns.get(pattern)
        if compiled is None:
            compiled = self._patterns[pattern] = self._compile_pattern(pattern)
        return compiled

    def shape(self, name: str) -> Mapping[str, Any]:
        shape: Mapping[str, Any] = self._shapes[name]
        return shape

    def operation_decoder(self, input_ref: Mapping[str, Any] | None) -> D:
        if input_ref is None:
            return self.structure_decoder({"members": {}})
        return self.decoder(input_ref["shape"])

    def decoder(self, name: str) -> D:
        found = self._decoders.get(name)
        if found is not None:
            return found
        if ("decode", name) in self._building:
            # A recursive shape: resolved when called, by which time it exists.
            def deferred(*args: Any) -> Any:
                return self._decoders[name](*args)

            return cast(D, deferred)
        self._building.add(("decode", name))
        built = self._build_decoder(name, self._shapes[name])
        self._building.discard(("decode", name))
        self._decoders[name] = built
        return built

    def encoder(self, name: str) -> E:
        found = self._encoders.get(name)
        if found is not None:
            return found
        if ("encode", name) in self._building:

            def deferred(*args: Any) -> Any:
                return self._encoders[name](*args)

            return cast(E, deferred)
        self._building.add(("encode", name))
        built = self._build_encoder(name, self._shapes[name])
        self._building.discard(("encode", name))
        self._encoders[name] = built
        return built

    def _build_decoder(self, name: str, shape: Mapping[str, Any]) -> D:
        kind = shape["type"]
        if kind == "structure":
            return self.structure_decoder(shape)
        if kind == "list":
            return self.list_decoder(shape)
        if kind == "map":
            return self.map_decoder(shape)
        if kind == "string":
            return self.string_decoder(shape)
        if kind == "blob":
            return self.blob_decoder(shape)
        if kind in INTEGER_RANGES:
            return self.integer_decoder(kind, shape)
        if kind in ("float", "double"):
            return self.float_decoder(shape)
        if kind == "boolean":
            return self.boolean_decoder()
        if kind == "timestamp":
            self.check_timestamp(name, shape)
            return self.timestamp_decoder()
        raise _unknown_type(name, kind)

    def _build_encoder(self, name: str, shape: Mapping[str, Any]) -> E:
        kind = shape["type"]
        if kind == "structure":
            return self.structure_encoder(name, shape)
        if kind == "list":
            return self.list_encoder(shape)
        if kind == "map":
            return self.map_encoder(shape)
        if kind == "timestamp":
            self.check_timestamp(name, shape)
        leaf = self.leaf_encoders.get(kind)
        if leaf is None:
            raise _unknown_type(name, kind)
        return leaf

    def string_check(self, shape: Mapping[str, Any], wrong_type: WrongType) -> StringCheck:
        """A string shape's checks: length, enum, pattern, in AWS's words."""
        low, high = bounds(shape)
        allowed = frozenset(shape["enum"]) if "enum" in shape else None
        enum_rule = f"satisfy enum value set: [{', '.join(shape.get('enum', ()))}]"
        pattern = self.pattern(shape["pattern"]) if "pattern" in shape else None
        pattern_rule = f"satisfy regular expression pattern: {shape.get('pattern')}"
        sensitive = bool(shape.get("sensitive"))

        def check(value: Any, path: str, violations: list[str]) -> Any:
            if type(value) is not str:
                raise wrong_type(path, "a string", value)
            size = len(value)
            shown = None if sensitive else value
            if not low <= size <= high:
                violations.append(size_violation(path, size, low, high, "length", value=shown))
            if allowed is not None and value not in allowed:
                violations.append(violation(path, enum_rule, shown))
            # An over-long value is not matched at all: its length is already an
            # error and a pattern should never get the chance to backtrack on it.
            if pattern is not None and size <= high and pattern.fullmatch(value) is None:
                violations.append(violation(path, pattern_rule, shown))
            return value

        return check

    # -- what each wire builds --

    # The encoders of the shapes that are not containers, by type.
    leaf_encoders: Mapping[str, E]

    def check_timestamp(self, name: str, shape: Mapping[str, Any]) -> None:
        """Refuses, at load, a timestamp shape the wire cannot carry."""

    @abstractmethod
    def structure_decoder(self, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def list_decoder(self, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def map_decoder(self, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def string_decoder(self, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def blob_decoder(self, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def integer_decoder(self, kind: str, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def float_decoder(self, shape: Mapping[str, Any]) -> D: ...

    @abstractmethod
    def boolean_decoder(self) -> D: ...

    @abstractmethod
    def timestamp_decoder(self) -> D: ...

    @abstractmethod
    def structure_encoder(self, name: str, shape: Mapping[str, Any]) -> E: ...

    @abstractmethod
    def list_encoder(self, shape: Mapping[str, Any]) -> E: ...

    @abstractmethod
    def map_encoder(self, shape: Mapping[str, Any]) -> E: ...


def _unknown_type(name: str, kind: str) -> ValueError:
    return ValueError(f"shape {name!r} has type {kind!r}, which this codec does not know")
