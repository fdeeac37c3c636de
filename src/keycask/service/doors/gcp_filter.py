"""Cloud KMS's ``filter`` and ``orderBy`` on list results: the subset of
the AIP-160 filter language that Cloud KMS documents ("Sorting and
filtering list results"), evaluated on a resource as the door renders it
(its JSON form, camelCase field names), so that any list, key rings,
crypto keys, versions or import jobs, can use it.

Filter: restrictions ``path OP value`` on a dotted field path
(``labels.env``, ``primary.state``, ``versionTemplate.algorithm``; a
snake_case segment finds its camelCase field), OP one of ``=``, ``!=``,
``<``, ``>``, ``<=``, ``>=`` (or ``=>``, as Cloud KMS writes it) and
``:`` (has: a case-insensitive substring of a string, a key of a map,
any element of a list; ``path:*`` the field is present); combined with
``AND`` (or a space), ``OR`` (which binds tighter than AND, as AIP-160
says), ``NOT`` or ``-`` before a term, and parentheses. A value is a
bare word or a quoted string (``"..."`` or ``'...'``, backslash
escapes). Comparisons are of strings, except that two RFC 3339 times
compare as times, two durations (``"86400s"``) as numbers, and a number
or boolean field takes its literal as one. A restriction on a field the
resource does not have is false (and ``!=`` is its NOT: true).

orderBy: ``path [asc|desc]``, comma-separated (Cloud KMS documents
``name`` and ``name desc``; any field path sorts the same way), ties in
name order.

Anything else (a bare value with no field, functions, wildcards in a
path, AND/OR with nothing on a side, a filter over ``MAX_FILTER``
characters, of more than ``MAX_RESTRICTIONS`` comparisons or nested
deeper than ``MAX_DEPTH``) is a ValidationException,
the door's 400 INVALID_ARGUMENT, raised before anything is listed.

Hand-written: the one AIP-160 package on PyPI (sqlalchemy-aip160) turns a
filter into an SQLAlchemy query, not a test of an in-memory document, and
Cloud KMS's subset is small enough to parse in a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from keycask.errors import ValidationException

MAX_FILTER: Final = 2048
MAX_ORDER_BY: Final = 512
MAX_ORDER_FIELDS: Final = 8
# Parentheses nested at most this deep, and at most this many comparisons:
# each item of a list (up to gcp_pages.SCAN_MAX a request) is tested on all.
MAX_DEPTH: Final = 16
MAX_RESTRICTIONS: Final = 64
# "=>": Cloud KMS's page lists it for >=.
COMPARATORS: Final = ("<=", ">=", "=>", "!=", "=", "<", ">", ":")

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*", re.ASCII)
_DURATION = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?s", re.ASCII)
_KEYWORDS = ("AND", "OR", "NOT")
# What ends a bare value (a quoted one ends at its quote).
_VALUE_END = frozenset(" \t\r\n()\"'")
_MISSING: Final = object()

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Restriction:
    path: tuple[str, ...]
    op: str
    value: str
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    term: Node


@dataclass(frozen=True, slots=True)
class All:
    terms: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    terms: tuple[Node, ...]


Node = Restriction | Not | All | Any_


def _invalid(text: str, at: int, why: str) -> ValidationException:
    return ValidationException(
        f"Invalid filter {text[:64]!r}: {why} at position {at}. keycask's Cloud KMS door "
        "serves field comparisons (=, !=, <, >, <=, >=, :) joined by AND, OR, NOT, - and "
        "parentheses."
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.depth = 0
        self.restrictions = 0

    def _space(self) -> bool:
        start = self.at
        while self.at < len(self.text) and self.text[self.at] in " \t\r\n":
            self.at += 1
        return self.at > start

    def _keyword(self, word: str) -> bool:
        """``word`` as a whole word here (then consumed)."""
        end = self.at + len(word)
        if self.text.startswith(word, self.at) and (
            end == len(self.text) or self.text[end] in " \t\r\n("
        ):
            self.at = end
            return True
        return False

    def _done(self) -> bool:
        return self.at >= len(self.text) or self.text[self.at] == ")"

    def expression(self) -> Node:
        terms = [self.factor()]
        while True:
            self._space()
            if self._done():
                break
            if self._keyword("AND"):
                self._space()
            terms.append(self.factor())
        return terms[0] if len(terms) == 1 else All(tuple(terms))

    def factor(self) -> Node:
        terms = [self.term()]
        while True:
            mark = self.at
            self._space()
            if not self._keyword("OR"):
                self.at = mark
                break
            self._space()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Any_(tuple(terms))

    def term(self) -> Node:
        self._space()
        if self._done() or self._keyword("AND") or self._keyword("OR"):
            raise _invalid(self.text, self.at, "a term is missing")
        if self._keyword("NOT"):
            self._space()
            return Not(self.simple())
        if self.text[self.at] == "-":
            self.at += 1
            return Not(self.simple())
        return self.simple()

    def simple(self) -> Node:
        if self.at < len(self.text) and self.text[self.at] == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _invalid(self.text, self.at, f"nested deeper than {MAX_DEPTH}")
            self.at += 1
            self._space()
            inner = self.expression()
            self._space()
            if self.at >= len(self.text) or self.text[self.at] != ")":
                raise _invalid(self.text, self.at, "a ( is not closed")
            self.at += 1
            self.depth -= 1
            return inner
        return self.restriction()

    def restriction(self) -> Restriction:
        self.restrictions += 1
        if self.restrictions > MAX_RESTRICTIONS:
            raise _invalid(self.text, self.at, f"more than {MAX_RESTRICTIONS} comparisons")
        path = self.path()
        self._space()
        op = next((c for c in COMPARATORS if self.text.startswith(c, self.at)), None)
        if op is None:
            raise _invalid(
                self.text, self.at, "a field needs a comparison (field = value, field : value)"
            )
        self.at += len(op)
        self._space()
        value, quoted = self.value()
        return Restriction(path, ">=" if op == "=>" else op, value, quoted)

    def path(self) -> tuple[str, ...]:
        segments = []
        while True:
            found = _SEGMENT.match(self.text, self.at)
            if found is None or found.group() in _KEYWORDS:
                raise _invalid(self.text, self.at, "a field name is expected")
            segments.append(found.group())
            self.at = found.end()
            if self.at < len(self.text) and self.text[self.at] == ".":
                self.at += 1
                continue
            return tuple(segments)

    def value(self) -> tuple[str, bool]:
        text = self.text
        if self.at >= len(text) or text[self.at] == ")":
            raise _invalid(text, self.at, "a value is missing")
        quote = text[self.at]
        if quote in "\"'":
            out = []
            i = self.at + 1
            while i < len(text) and text[i] != quote:
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                out.append(text[i])
                i += 1
            if i >= len(text):
                raise _invalid(text, self.at, "a quoted value is not closed")
            self.at = i + 1
            return "".join(out), True
        start = self.at
        while self.at < len(text) and text[self.at] not in _VALUE_END:
            self.at += 1
        value = text[start : self.at]
        if not value or value[0] in "=<>!:" or value in _KEYWORDS:
            raise _invalid(text, start, "a value is expected")
        return value, False


def parse_filter(text: str) -> Node | None:
    """The filter's tree, or None for an empty filter."""
    if len(text) > MAX_FILTER:
        raise ValidationException(f"The filter is longer than {MAX_FILTER} characters.")
    if not text.strip():
        return None
    parser = _Parser(text)
    node = parser.expression()
    parser._space()
    if parser.at < len(text):
        raise _invalid(text, parser.at, "an unmatched )")
    return node


# -- evaluation --


def _camel(segment: str) -> str:
    head, *rest = segment.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def field(doc: Doc, path: Sequence[str]) -> object:
    """The value at ``path`` in ``doc``, or ``_MISSING``."""
    value: object = doc
    for segment in path:
        if not isinstance(value, dict):
            return _MISSING
        if segment in value:
            value = value[segment]
        elif (camel := _camel(segment)) in value:
            value = value[camel]
        else:
            return _MISSING
    return value


def _time(text: str) -> datetime | None:
    if "T" not in text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def compare(value: object, literal: str) -> int | None:
    """``value`` against the literal: <0, 0, >0, or None if they do not compare."""
    if isinstance(value, bool):
        if literal.lower() not in ("true", "false"):
            return None
        return _cmp(value, literal.lower() == "true")
    if isinstance(value, int | float):
        try:
            return _cmp(float(value), float(literal))
        except ValueError:
            return None
    if not isinstance(value, str):
        return None
    times = _time(value), _time(literal)
    if times[0] is not None and times[1] is not None:
        return _cmp(times[0], times[1])
    if _DURATION.fullmatch(value) and _DURATION.fullmatch(literal):
        return _cmp(float(value[:-1]), float(literal[:-1]))
    return _cmp(value, literal)


def _has(value: object, literal: str, quoted: bool) -> bool:
    if value is _MISSING:
        return False
    if literal == "*" and not quoted:
        return True
    if isinstance(value, dict):
        return literal in value
    if isinstance(value, list):
        return any(compare(v, literal) == 0 for v in value)
    if isinstance(value, str):
        return literal.lower() in value.lower()
    return compare(value, literal) == 0


_ORDERING: Final[dict[str, Callable[[int], bool]]] = {
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}


def _restriction(node: Restriction, doc: Doc) -> bool:
    value = field(doc, node.path)
    if node.op == ":":
        return _has(value, node.value, node.quoted)
    if node.op == "!=":
        return not _restriction(Restriction(node.path, "=", node.value, node.quoted), doc)
    if value is _MISSING or isinstance(value, dict | list):
        return False
    found = compare(value, node.value)
    if found is None:
        return False
    if node.op == "=":
        return found == 0
    return _ORDERING[node.op](found)


def matches(node: Node | None, doc: Doc) -> bool:
    """Whether ``doc`` (a rendered resource) passes the filter."""
    if node is None:
        return True
    if isinstance(node, Restriction):
        return _restriction(node, doc)
    if isinstance(node, Not):
        return not matches(node.term, doc)
    if isinstance(node, All):
        return all(matches(t, doc) for t in node.terms)
    return any(matches(t, doc) for t in node.terms)


# -- orderBy --


@dataclass(frozen=True, slots=True)
class OrderField:
    path: tuple[str, ...]
    descending: bool = False


def parse_order(text: str) -> tuple[OrderField, ...]:
    """The orderBy's fields; () for an empty one (the list's own order)."""
    if len(text) > MAX_ORDER_BY:
        raise ValidationException(f"The order_by is longer than {MAX_ORDER_BY} characters.")
    if not text.strip():
        return ()
    parts = text.split(",")
    if len(parts) > MAX_ORDER_FIELDS:
        raise ValidationException(f"The order_by names more than {MAX_ORDER_FIELDS} fields.")
    fields = []
    for part in parts:
        words = part.split()
        direction = words[1].lower() if len(words) == 2 else "asc"
        if not words or len(words) > 2 or direction not in ("asc", "desc"):
            raise ValidationException(
                f"Invalid order_by {text[:64]!r}: each entry is a field, then asc or desc "
                '("name desc").'
            )
        segments = words[0].split(".")
        if not all(_SEGMENT.fullmatch(s) for s in segments):
            raise ValidationException(f"Invalid order_by field {words[0][:64]!r}.")
        fields.append(OrderField(tuple(segments), direction == "desc"))
    return tuple(fields)


def _sort_key(value: object) -> tuple[int, Any]:
    if value is _MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def order(fields: Sequence[OrderField], docs: Sequence[Doc]) -> list[int]:
    """The indexes of ``docs`` in the order ``fields`` say, ties by name."""
    indexes = sorted(range(len(docs)), key=lambda i: str(docs[i].get("name", "")))
    for spec in reversed(fields):
        indexes.sort(key=lambda i: _sort_key(field(docs[i], spec.path)), reverse=spec.descending)
    return indexes
