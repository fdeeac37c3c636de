"""Whether a statement's Condition block holds for a request.

Semantics follow the IAM User Guide ("Condition operators", "Single-valued vs.
multivalued context keys", "Variables and tags") and the KMS Developer Guide
("AWS KMS condition keys"):

* Several values for one key are alternatives (OR); several keys, and several
  operators, must all hold (AND).
* A key absent from the request makes a positive operator false and a negated
  one (StringNotEquals, NotIpAddress, ArnNotLike, ...) true; ``...IfExists``
  makes the condition true; ``Null`` with "true" holds exactly when the key is
  absent, with "false" exactly when it is present.
* ``ForAllValues`` holds when every request value matches (for a negated
  operator: matches none of the policy values), and also when the key is
  absent or its values are an empty set, AWS's well-known trap.
  ``ForAnyValue`` holds when at least one request value does, and never for
  an absent key or an empty set.
* Without a set operator, a multivalued request value behaves as AWS's
  single-value comparison applied to each value: a positive operator holds if
  any value matches, a negated one if none does. (AWS asks for set operators
  with multivalued keys; this keeps the evaluation well defined when a policy
  omits one.)
* ``${...}`` policy variables (2012-10-17 policies, string and ARN operators)
  are replaced by the request's single value for that key, or the variable's
  default (``${aws:userid, 'anonymous'}``). A variable whose key is absent, or
  multivalued, resolves to nothing: that policy value matches no request
  value, and a negated operator treats it as not matched (so a Deny with
  StringNotEquals still applies: the guardrail fails closed). Substituted text
  is always literal: a ``*`` in a user name is not a wildcard.

Comparisons: String* exact, ``...IgnoreCase`` by Unicode case folding,
``StringLike`` with ``*``/``?`` globs, all case-sensitive otherwise; ArnLike and
ArnEquals (identical in AWS) compare the six colon-separated ARN segments, each
a glob; Numeric* as exact decimals; Date* as instants (ISO 8601 or epoch
seconds); Bool case-insensitively; BinaryEquals on the base64-decoded bytes;
IpAddress by CIDR containment, IPv4 and IPv6. A request value that cannot be
read as the operator's type (a non-numeric value under NumericEquals) matches
nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import TypeAlias

from keycask.policy.glob import ANY_CHAR, ANY_RUN, Glob, compile_glob
from keycask.policy.model import Condition, TemplatePart, Text, Variable
from keycask.policy.values import (
    parse_binary,
    parse_bool,
    parse_instant,
    parse_network,
    parse_number,
    parse_template,
)
from keycask.policy.vocabulary import (
    ARN_OPERATORS,
    DATE_OPERATORS,
    IP_OPERATORS,
    NEGATED_OPERATORS,
    NUMERIC_OPERATORS,
    key_kind,
)

ContextValue: TypeAlias = str | tuple[str, ...]  # single- or multivalued key

# The wildcard matching one authorization may do, in characters compared by
# str.find (``Glob.cost``, which over-charges the slower searches): about two
# million, at most ~10 ms of matching. A real policy against a real request
# needs a tiny fraction of it; a key policy written to be slow (thousands of
# patterns against the longest context values keycask accepts) stops here
# instead of holding the event loop.
MAX_MATCH_WORK = 1 << 21


class EvaluationLimitExceeded(Exception):
    """The request's condition matching exceeded ``MAX_MATCH_WORK``."""


# What RequestContext.of accepts for one key: a string, a boolean ("true" /
# "false"), an integer, or an iterable of strings for a multivalued key.
ContextInput: TypeAlias = str | bool | int | Iterable[str]

_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_Resolved: TypeAlias = tuple[tuple[str, bool], ...]  # (text, wildcards active) pieces


class RequestContext(Mapping[str, ContextValue]):
    """The request's condition keys: a read-only mapping from the lower-cased
    key to its value. Lookups are case-insensitive.

    Keys are wholly lower-cased, encryption context and tag names included,
    because AWS compares condition key names case-insensitively (see
    document.py). Two input keys that differ only in case (an encryption
    context with both "Dept" and "dept") merge into one entry holding both
    values. Such a single-valued key is ambiguous, and the ambiguity never
    helps the caller: an Allow's condition must hold for every value, a
    Deny's for any one (``condition_matches``). New contexts and tags with
    such keys are refused before they get here; this is for the ones that
    already exist (a ciphertext made earlier must stay decryptable). An empty
    multivalued value is the same as an absent key (AWS: an empty set).

    The context also counts the wildcard matching done for one request
    (``charge``): whatever the policy and the request, an authorization
    never does more than ``MAX_MATCH_WORK`` of it.
    """

    __slots__ = ("_values", "_work")

    def __init__(self, values: Mapping[str, ContextValue] | None = None) -> None:
        self._values: dict[str, ContextValue] = {}
        self._work = 0
        for key, value in (values or {}).items():
            self._add(key, value)

    @classmethod
    def of(cls, values: Mapping[str, ContextInput]) -> RequestContext:
        """Build a context: a str is a single value, bool becomes "true" or
        "false", int its decimal digits, any other iterable of str a set."""
        context = cls()
        for key, value in values.items():
            context._add(key, _context_value(key, value))
        return context

    def with_values(self, values: Mapping[str, ContextInput]) -> RequestContext:
        """A copy with ``values`` added; a key given here replaces the same
        key already present."""
        added = RequestContext.of(values)
        context = RequestContext()
        context._values = {**self._values, **added._values}
        return context

    def _add(self, key: str, value: ContextValue) -> None:
        if not isinstance(key, str):
            raise TypeError(f"condition key must be str, not {type(key).__name__}")
        lowered = key.lower()
        if isinstance(value, tuple):
            value = tuple(dict.fromkeys(value))
            if not value:
                return
        previous = self._values.get(lowered)
        if previous is None or previous == value:
            self._values[lowered] = value
            return
        merged = (previous,) if isinstance(previous, str) else previous
        merged += (value,) if isinstance(value, str) else value
        self._values[lowered] = tuple(dict.fromkeys(merged))

    def charge(self, work: int) -> None:
        """Count ``work`` steps of matching; past the limit, stop the
        evaluation (the caller denies: an unfinished evaluation never allows)."""
        self._work += work
        if self._work > MAX_MATCH_WORK:
            raise EvaluationLimitExceeded(
                f"condition matching for this request exceeded {MAX_MATCH_WORK} steps"
            )

    def facts(self, keys: tuple[str, ...]) -> tuple[ContextValue | None, ...]:
        """The values of ``keys`` (lower-cased; None: absent), for comparing
        two requests (policy/decision_cache.py)."""
        values = self._values
        return tuple(values.get(key) for key in keys)

    def __getitem__(self, key: str) -> ContextValue:
        return self._values[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RequestContext({self._values!r})"


def _context_value(key: str, value: ContextInput) -> ContextValue:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"values of condition key {key!r} must be str, not {type(item).__name__}"
            )
    return items


def conditions_match(
    conditions: tuple[Condition, ...], context: RequestContext, *, deny: bool = False
) -> bool:
    """Whether every condition holds (a statement's Condition block is an AND).
    ``deny``: the statement is a Deny (see ``condition_matches``)."""
    return all(condition_matches(condition, context, deny=deny) for condition in conditions)


def condition_matches(condition: Condition, context: RequestContext, *, deny: bool = False) -> bool:
    """Whether one condition holds for the request.

    ``deny`` matters only for an ambiguous key (several values for a
    single-valued key, from names that differ only in case): a Deny's
    condition then holds if it holds for any of the values, an Allow's only
    if it holds for all of them.

    Raises EvaluationLimitExceeded when the request's matching work runs out.
    """
    operator = condition.operator
    present = context.get(condition.key)
    if operator == "Null":
        wanted = "true" if present is None else "false"
        return any(value.lower() == wanted for value in condition.values)
    if present is None:
        if condition.if_exists or condition.set_operator == "ForAllValues":
            return True
        if condition.set_operator == "ForAnyValue":
            return False
        return operator in NEGATED_OPERATORS
    request_values = (present,) if isinstance(present, str) else present
    if condition.set_operator is not None and request_values == ("",):
        # AWS: a key whose values resolve to an empty set (such as an empty
        # string) makes ForAllValues true and ForAnyValue false.
        return condition.set_operator == "ForAllValues"
    matches = _matcher(condition, context)
    negated = operator in NEGATED_OPERATORS
    if condition.set_operator == "ForAllValues":
        return all(matches(value) != negated for value in request_values)
    if condition.set_operator == "ForAnyValue":
        return any(matches(value) != negated for value in request_values)
    if len(request_values) > 1 and key_kind(condition.key) is False:
        readings = [matches(value) != negated for value in request_values]
        return any(readings) if deny else all(readings)
    return any(matches(value) for value in request_values) != negated


# -- one request value against the policy values ---------------------------


def _matcher(condition: Condition, context: RequestContext) -> Callable[[str], bool]:
    """A predicate: does this request value match any of the policy values
    under the operator's positive form (NotEquals compares as Equals, ...)?"""
    operator = condition.operator
    compiled = _compile(condition)
    if isinstance(compiled, _Templates):
        resolved = [r for t in compiled.templates if (r := _resolve(t, context)) is not None]
        if operator in ARN_OPERATORS:
            arns = [_arn_segments(r) for r in resolved]
            return lambda value: _arn_match(arns, value, context)
        if operator in ("StringLike", "StringNotLike"):
            patterns = [compile_glob(_tokens(r)) for r in resolved]
            return lambda value: _like(patterns, value, context)
        texts = ["".join(text for text, _ in r) for r in resolved]
        if operator in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
            folded = {text.casefold() for text in texts}
            return lambda value: value.casefold() in folded
        exact = set(texts)
        return lambda value: value in exact
    return compiled


class _Templates:
    """The parsed values of a string or ARN condition, resolved per request."""

    __slots__ = ("templates",)

    def __init__(self, templates: tuple[tuple[TemplatePart, ...], ...]) -> None:
        self.templates = templates


_ORDER: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "Equals": lambda request, policy: request == policy,
    "NotEquals": lambda request, policy: request == policy,  # negated by the caller
    "LessThan": lambda request, policy: request < policy,
    "LessThanEquals": lambda request, policy: request <= policy,
    "GreaterThan": lambda request, policy: request > policy,
    "GreaterThanEquals": lambda request, policy: request >= policy,
}


@lru_cache(maxsize=4096)
def _compile(condition: Condition) -> _Templates | Callable[[str], bool]:
    """Parse the policy values once per condition. Values that cannot be read
    (possible only in a Condition built by hand) are dropped: they match
    nothing, which no policy that parse_policy accepted relies on."""
    operator = condition.operator
    values = condition.values
    if operator in ARN_OPERATORS or operator.startswith("String"):
        templates: list[tuple[TemplatePart, ...]] = []
        for value in values:
            try:
                templates.append(parse_template(value, variables=condition.variables))
            except ValueError:
                continue
        return _Templates(tuple(templates))
    if operator in NUMERIC_OPERATORS or operator in DATE_OPERATORS:
        parse = parse_number if operator in NUMERIC_OPERATORS else parse_instant
        order = _ORDER[operator.removeprefix("Numeric").removeprefix("Date")]
        bounds = [bound for value in values if (bound := parse(value)) is not None]

        def ordered(value: str) -> bool:
            request = parse(value)
            return request is not None and any(order(request, bound) for bound in bounds)

        return ordered
    if operator == "Bool":
        wanted = {flag for value in values if (flag := parse_bool(value)) is not None}
        return lambda value: parse_bool(value) in wanted
    if operator == "BinaryEquals":
        blobs = {blob for value in values if (blob := parse_binary(value)) is not None}
        return lambda value: parse_binary(value) in blobs
    if operator in IP_OPERATORS:
        networks = [n for value in values if (n := parse_network(value)) is not None]
        return lambda value: _in_networks(value, networks)
    return lambda value: False  # an operator only a hand-built Condition could name


def _in_networks(value: str, networks: list[_Network]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # An IPv4 address is never in an IPv6 network and vice versa.
    return any(address in network for network in networks)


def _resolve(template: tuple[TemplatePart, ...], context: RequestContext) -> _Resolved | None:
    """The value with its variables replaced, as (text, wildcards active)
    pieces; None when a variable has no single value and no default."""
    pieces: list[tuple[str, bool]] = []
    for part in template:
        if isinstance(part, str):
            pieces.append((part, True))
        elif isinstance(part, Text):
            pieces.append((part.text, False))
        else:
            value = _variable(part, context)
            if value is None:
                return None
            pieces.append((value, False))
    return tuple(pieces)


def _variable(variable: Variable, context: RequestContext) -> str | None:
    value = context.get(variable.key)
    if isinstance(value, str):
        return value
    # Absent, or multivalued: IAM allows only single-valued keys as variables.
    return variable.default


def _tokens(resolved: _Resolved) -> tuple[str, ...]:
    tokens: list[str] = []
    for text, wild in resolved:
        if wild:
            tokens.extend(ANY_RUN if c == "*" else ANY_CHAR if c == "?" else c for c in text)
        else:
            tokens.extend(text)
    return tuple(tokens)


def _like(patterns: list[Glob], value: str, context: RequestContext) -> bool:
    for pattern in patterns:
        context.charge(pattern.cost(len(value)))
        if pattern.match(value):
            return True
    return False


def _arn_segments(resolved: _Resolved) -> list[Glob] | None:
    """The pattern's six segments: split at its first five colons, wherever
    they came from (a variable may supply a whole ARN). None if fewer."""
    segments: list[tuple[str, ...]] = []
    current: list[str] = []
    for item in _tokens(resolved):
        if item == ":" and len(segments) < 5:
            segments.append(tuple(current))
            current = []
        else:
            current.append(item)
    segments.append(tuple(current))
    return [compile_glob(segment) for segment in segments] if len(segments) == 6 else None


def _arn_match(patterns: list[list[Glob] | None], value: str, context: RequestContext) -> bool:
    parts = value.split(":", 5)
    if len(parts) != 6:
        return False
    for pattern in patterns:
        if pattern is None:
            continue
        context.charge(sum(glob.cost(len(part)) for glob, part in zip(pattern, parts, strict=True)))
        if all(glob.match(part) for glob, part in zip(pattern, parts, strict=True)):
            return True
    return False
