"""The wildcard matcher against a reference, and its cost on hostile input.

The reference is the textbook translation of a glob into a regular
expression (``*`` -> ``.*``, ``?`` -> ``.``, everything else escaped) run by
``re.fullmatch``: slow on hostile input, but obviously right.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.policy import glob
from keycask.policy.glob import ANY_CHAR, ANY_RUN, wildcard_match


def _reference(tokens: tuple[str, ...], text: str) -> bool:
    source = "".join(
        ".*" if t == ANY_RUN else "." if t == ANY_CHAR else re.escape(t) for t in tokens
    )
    return re.fullmatch(source, text, re.DOTALL) is not None


# A small alphabet makes matches (and near-misses) common.
_CHARS = st.sampled_from(["a", "b", "\n", "é"])
_TOKENS = st.lists(_CHARS | st.sampled_from([ANY_RUN, ANY_CHAR]), max_size=14).map(tuple)
_TEXT = st.text(alphabet=_CHARS, max_size=30)


@settings(max_examples=800, deadline=None)
@given(_TOKENS, _TEXT)
def test_matches_the_reference(tokens: tuple[str, ...], text: str) -> None:
    assert wildcard_match(tokens, text) is _reference(tokens, text)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", ANY_CHAR]), min_size=65, max_size=90).map(tuple),
    st.text(alphabet="ab", max_size=200),
)
def test_long_segments_with_any_char_match_the_reference(
    segment: tuple[str, ...], text: str
) -> None:
    # Segments over 64 tokens with "?" use the bit-parallel scan.
    tokens = (ANY_RUN, *segment, ANY_RUN)
    assert wildcard_match(tokens, text) is _reference(tokens, text)
    # And a planted occurrence is always found.
    planted = "".join("a" if t == ANY_CHAR else t for t in segment)
    assert wildcard_match(tokens, text + planted + text)


@contextmanager
def _counting_lines(budget: int) -> Iterator[list[int]]:
    """Counts the Python lines the matcher executes (glob.py only), and
    stops it with RecursionError-free AssertionError past ``budget``: the old
    backtracking loop would otherwise run for minutes before failing."""
    count = [0]
    code_file = glob.__file__

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            count[0] += 1
            if count[0] > budget:
                raise AssertionError(f"the matcher ran more than {budget} lines")
        return local

    def outer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == code_file else None

    previous = sys.gettrace()
    sys.settrace(outer)
    try:
        yield count
    finally:
        sys.settrace(previous)


def _hostile(pattern: str, value_size: int) -> tuple[tuple[str, ...], str]:
    return glob.pattern_tokens(pattern), "a" * value_size


def test_the_reported_pattern_costs_a_bounded_number_of_steps() -> None:
    # Finding 3: "*aaa...ab" (3,000 characters) against 30,000 "a"s. The
    # old two-pointer loop retried every text position for every pattern
    # position (about 90 million steps); the segment matcher checks the
    # tail once, and scans the text once for a middle segment.
    for pattern in ("*" + "a" * 2998 + "b", "*" + "a" * 2998 + "b*", "*" + "a?" * 1499 + "b*"):
        tokens = glob.pattern_tokens(pattern)
        value = "a" * 30_000
        with _counting_lines(budget=200_000) as lines:
            assert not wildcard_match(tokens, value)
        # Linear: a value twice as long costs at most twice the steps (the
        # bit-parallel scan is the only Python-level loop over the value).
        with _counting_lines(budget=400_000) as longer:
            assert not wildcard_match(tokens, value * 2)
        assert longer[0] <= 2 * lines[0]
