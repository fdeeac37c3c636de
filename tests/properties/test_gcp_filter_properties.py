"""Properties of the Cloud KMS door's filter and orderBy
(service/doors/gcp_filter.py): any text either parses or is refused with
ValidationException (the door's INVALID_ARGUMENT), and a parsed filter
selects what a plain reference evaluation of the same expression selects."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.errors import ValidationException
from keycask.service.doors import gcp_filter

# -- any text --

_PIECES = st.sampled_from([
    "a", "b", "labels", ".", "x", "=", "!=", "<", ">", "<=", ">=", "=>", ":", "*", " ", "  ",
    "(", ")", "AND", "OR", "NOT", "-", '"', "'", "\\", "1", "2026-01-01T00:00:00Z", "10s", "é",
    "\t",
])  # fmt: skip
_DOC = {
    "name": "projects/p/locations/global/keyRings/r",
    "a": "ab",
    "n": 3,
    "flag": True,
    "labels": {"x": "Y"},
    "list": ["a", 1],
    "createTime": "2026-12-07T21:35:47.123456Z",
}


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(_PIECES, max_size=40).map("".join), st.text(max_size=80)))
def test_any_filter_text_parses_or_is_invalid_argument(text: str) -> None:
    try:
        node = gcp_filter.parse_filter(text)
    except ValidationException as refused:
        assert refused.message
        return
    assert isinstance(gcp_filter.matches(node, _DOC), bool)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(_PIECES | st.sampled_from([",", "asc", "desc", "name"]), max_size=20)
                 .map("".join), st.text(max_size=60)))  # fmt: skip
def test_any_order_by_text_parses_or_is_invalid_argument(text: str) -> None:
    try:
        fields = gcp_filter.parse_order(text)
    except ValidationException:
        return
    docs = [_DOC, {"name": "b"}, {"name": "a", "a": 1}]
    assert sorted(gcp_filter.order(fields, docs)) == [0, 1, 2]


def test_long_and_deep_filters_are_refused() -> None:
    too_many = " OR ".join(["a=b"] * 65)
    for text in ("a=b " * 600, "(" * 17 + "a=b" + ")" * 17, "-(" * 20 + "a=b" + ")" * 20, too_many):
        try:
            gcp_filter.parse_filter(text)
        except ValidationException:
            continue
        raise AssertionError(text)
    assert gcp_filter.parse_filter("(" * 16 + "a=b" + ")" * 16) is not None
    assert gcp_filter.parse_filter(" OR ".join(["a=b"] * 64)) is not None


# -- evaluation against a reference --

_PATHS = [("a",), ("b",), ("n",), ("flag",), ("labels",), ("labels", "x"), ("labels", "y")]
_VALUES = ["a", "ab", "B", "1", "10", "true", "*", ""]
_OPS = ["=", "!=", "<", ">", "<=", ">=", "=>", ":"]

_restrictions = st.tuples(
    st.just("cmp"), st.sampled_from(_PATHS), st.sampled_from(_OPS), st.sampled_from(_VALUES),
    st.booleans(),
)  # fmt: skip


def _composite(children: Any) -> Any:
    return st.one_of(
        st.tuples(st.just("not"), children, st.booleans()),
        st.tuples(st.just("and"), st.lists(children, min_size=2, max_size=3), st.booleans()),
        st.tuples(st.just("or"), st.lists(children, min_size=2, max_size=3), st.booleans()),
    )


_trees = st.recursive(_restrictions, _composite, max_leaves=10)
_strings = st.sampled_from(["", "a", "ab", "AB", "b", "1", "10", "*"])
_docs = st.fixed_dictionaries(
    {},
    optional={
        "a": _strings,
        "b": _strings,
        "n": st.integers(-2, 12),
        "flag": st.booleans(),
        "labels": st.dictionaries(st.sampled_from(["x", "y"]), _strings, max_size=2),
    },
)


def _text(tree: Any) -> str:
    """The tree written as a filter: composites in parentheses, except an
    OR inside an AND, which binds tighter anyway (when ``bare``)."""
    kind = tree[0]
    if kind == "cmp":
        _, path, op, value, quoted = tree
        bare = value and value not in ("AND", "OR", "NOT") and not quoted
        return ".".join(path) + op + (value if bare else f'"{value}"')
    if kind == "not":
        _, child, dash = tree
        inner = _text(child) if child[0] == "cmp" else f"({_text(child)})"
        return ("-" if dash else "NOT ") + inner
    _, children, flag = tree
    if kind == "or":
        parts = [_text(c) if c[0] in ("cmp", "not") else f"({_text(c)})" for c in children]
        return " OR ".join(parts)
    parts = [
        _text(c) if c[0] in ("cmp", "not") or (c[0] == "or" and flag) else f"({_text(c)})"
        for c in children
    ]
    return (" AND " if flag else " ").join(parts)


_MISSING = object()


def _at(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _order(value: Any, literal: str) -> int | None:
    if isinstance(value, bool):
        if literal not in ("true", "false"):
            return None
        other = literal == "true"
        return 0 if value == other else (1 if value else -1)
    if isinstance(value, int):
        if not literal.isdigit():
            return None
        return 0 if value == int(literal) else (1 if value > int(literal) else -1)
    if isinstance(value, str):
        return 0 if value == literal else (1 if value > literal else -1)
    return None


def _reference(tree: Any, doc: dict[str, Any]) -> bool:
    kind = tree[0]
    if kind == "not":
        return not _reference(tree[1], doc)
    if kind == "and":
        return all(_reference(c, doc) for c in tree[1])
    if kind == "or":
        return any(_reference(c, doc) for c in tree[1])
    _, path, op, literal, quoted = tree
    op = ">=" if op == "=>" else op
    quoted = quoted or not literal
    value = _at(doc, path)
    if op == "!=":
        return not _reference(("cmp", path, "=", literal, quoted), doc)
    if value is _MISSING:
        return False
    if op == ":":
        if literal == "*" and not quoted:
            return True
        if isinstance(value, dict):
            return literal in value
        if isinstance(value, str):
            return literal.lower() in value.lower()
        return _order(value, literal) == 0
    found = None if isinstance(value, dict) else _order(value, literal)
    if found is None:
        return False
    return {"=": found == 0, "<": found < 0, ">": found > 0, "<=": found <= 0,
            ">=": found >= 0}[op]  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_restrictions, _trees), st.lists(_docs, min_size=1, max_size=4))
def test_evaluation_agrees_with_a_reference(tree: Any, docs: list[dict[str, Any]]) -> None:
    text = _text(tree)
    node = gcp_filter.parse_filter(text)
    for doc in docs:
        assert gcp_filter.matches(node, doc) == _reference(tree, doc), (text, doc)


@settings(max_examples=200, deadline=None)
@given(st.lists(_docs, max_size=6), st.sampled_from(_PATHS[:3]), st.booleans())
def test_order_by_sorts_by_the_field_then_name(
    docs: list[dict[str, Any]], path: tuple[str, ...], descending: bool
) -> None:
    docs = [{**d, "name": f"n{i}"} for i, d in enumerate(docs)]
    text = ".".join(path) + (" desc" if descending else "")
    indexes = gcp_filter.order(gcp_filter.parse_order(text), docs)
    assert sorted(indexes) == list(range(len(docs)))
    keys = [_at(docs[i], path) for i in indexes]
    present = [k for k in keys if k is not _MISSING]
    # Missing fields first (ascending) or last (descending); the rest in order.
    if descending:
        assert keys[: len(present)] == present
    else:
        assert keys[len(keys) - len(present) :] == present
    for a, b in itertools.pairwise(present):
        if type(a) is type(b):
            assert (a >= b) if descending else (a <= b)
