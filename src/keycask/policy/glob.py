"""Wildcard patterns (``*`` and ``?``) compiled to matchers whose cost is
linear in the text: the Action, Resource and ``...Like`` matching of every
authorization goes through here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Wildcard tokens for ``wildcard_match``: a pattern is a sequence of tokens,
# each one literal character or one of these two (longer, so never a char).
ANY_RUN = "<*>"
ANY_CHAR = "<?>"


def pattern_tokens(pattern: str) -> tuple[str, ...]:
    """The wildcard tokens of a pattern where ``*`` and ``?`` are wildcards."""
    return tuple(ANY_RUN if c == "*" else ANY_CHAR if c == "?" else c for c in pattern)


def wildcard_match(tokens: Sequence[str], text: str) -> bool:
    """Whether ``text`` matches the token sequence (see ``pattern_tokens``)."""
    return compile_glob(tuple(tokens)).match(text)


# A Python-level scan (the bit-parallel search below) costs about as much per
# character as the C regex engine spends trying a segment of this many
# characters at one position; longer segments with "?" use the scan.
_REGEX_SEGMENT = 64


@dataclass(frozen=True, slots=True)
class _Segment:
    """The tokens between two ``*``: literal runs at fixed offsets, with a
    ``?`` (any one character) wherever no run covers."""

    length: int
    runs: tuple[tuple[int, str], ...]  # (offset, literal text), in order
    literal: str | None  # the whole segment when it has no "?"
    regex: re.Pattern[str] | None  # a short segment with "?": one C-level search
    # A long segment with "?": bit-parallel search. Per character, the bits of
    # the positions it may take (those of "?" included); any_mask for others.
    masks: dict[str, int] | None
    any_mask: int

    def at(self, text: str, start: int) -> bool:
        """Whether the segment matches ``text`` at ``start`` (the caller has
        checked that it fits): one comparison per literal run."""
        return all(text.startswith(run, start + offset) for offset, run in self.runs)

    def find(self, text: str, start: int, end: int) -> int:
        """The leftmost position >= start where the segment matches and ends
        by ``end``; -1 if none.

        Cost, with n = end - start: a literal segment is one ``str.find``,
        which CPython (3.10+) runs in O(n + length) with its two-way search for
        long needles and in at most n * min(length, 100) comparisons for short
        ones. A short segment with "?" is one regex search: the pattern has no
        repetition, so the engine tries each start once and compares at most
        ``length`` <= 64 characters there, O(64 n). A longer one is a
        Shift-And scan: n steps of three integer operations on ``length``
        bits. Each is linear in n for a bounded segment; nothing backtracks
        over earlier segments.
        """
        if self.literal is not None:
            return text.find(self.literal, start, end)
        if self.regex is not None:
            found = self.regex.search(text, start, end)
            return -1 if found is None else found.start()
        assert self.masks is not None
        masks, any_mask = self.masks, self.any_mask
        done = 1 << (self.length - 1)
        state = 0
        for index in range(start, end):
            state = ((state << 1) | 1) & masks.get(text[index], any_mask)
            if state & done:
                return index - self.length + 1
        return -1

    @property
    def weight(self) -> int:
        """What searching costs per character of text, in characters
        compared by ``str.find`` (about 5 ns for a long needle; see
        benchmarks/glob_bench.py): a regex search of up to 64 characters
        measures about 30 times that, a Shift-And step about 200 times."""
        if self.literal is not None:
            return 1
        return 64 if self.regex is not None else 256


def _segment(tokens: Sequence[str]) -> _Segment:
    runs: list[tuple[int, str]] = []
    run: list[str] = []
    for offset, token in enumerate(tokens):
        if token == ANY_CHAR:
            if run:
                runs.append((offset - len(run), "".join(run)))
                run = []
        else:
            run.append(token)
    if run:
        runs.append((len(tokens) - len(run), "".join(run)))
    length = len(tokens)
    if not any(token == ANY_CHAR for token in tokens):
        return _Segment(length, tuple(runs), "".join(tokens), None, None, 0)
    if length <= _REGEX_SEGMENT:
        source = "".join(re.escape(t) if t != ANY_CHAR else "." for t in tokens)
        return _Segment(length, tuple(runs), None, re.compile(source, re.DOTALL), None, 0)
    any_mask = 0
    for offset, token in enumerate(tokens):
        if token == ANY_CHAR:
            any_mask |= 1 << offset
    masks: dict[str, int] = {}
    for offset, token in enumerate(tokens):
        if token != ANY_CHAR:
            masks[token] = masks.get(token, any_mask) | 1 << offset
    return _Segment(length, tuple(runs), None, None, masks, any_mask)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled wildcard pattern: the segments between its ``*`` tokens.

    Matching is the standard non-backtracking glob algorithm: the first
    segment must match at the start, the last at the end, and each one in
    between is searched for left to right from where the previous one ended,
    taking the leftmost occurrence. Leftmost is always safe: any match that
    uses a later occurrence of a segment can use the leftmost instead, since
    the ``*`` after it absorbs the difference. So every character of the text
    is scanned by at most one segment search, and the whole match costs
    O(len(text) + len(pattern)) segment-search steps (see ``_Segment.find``
    for the constant), where the old two-pointer loop could retry every
    position of the text for every position of the pattern.
    """

    head: _Segment
    middle: tuple[_Segment, ...]
    tail: _Segment | None  # None: the pattern has no "*"
    size: int  # the shortest text that can match (every token but "*")
    # Per character of text, what the costliest middle segment's search costs
    # relative to str.find (``_Segment.weight``); the searches together scan
    # each character once.
    weight: int = 1

    def cost(self, text_length: int) -> int:
        """An upper bound on the work of ``match`` on a text this long, in
        units of one character compared by a C-level search."""
        return (text_length + self.size) * self.weight

    def match(self, text: str) -> bool:
        size = len(text)
        if size < self.size:
            return False
        head, tail = self.head, self.tail
        if tail is None:
            return size == head.length and head.at(text, 0)
        end = size - tail.length
        if not (head.at(text, 0) and tail.at(text, end)):
            return False
        position = head.length
        for segment in self.middle:
            found = segment.find(text, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True


# A compiled pattern holds, for a long segment with "?", one integer as wide
# as the segment per distinct character: up to 2 MB for a 4,096-character
# condition value. So patterns are cached by size: many small ones, few big.
_SMALL_PATTERN = 256


def compile_glob(tokens: tuple[str, ...]) -> Glob:
    """The pattern's segments, split at ``*`` (runs of ``*`` are one); cached."""
    if len(tokens) <= _SMALL_PATTERN:
        return _compile_small(tokens)
    return _compile_large(tokens)


def _compile_glob(tokens: tuple[str, ...]) -> Glob:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == ANY_RUN:
            parts.append([])
        else:
            parts[-1].append(token)
    segments = [_segment(part) for part in parts]
    size = sum(segment.length for segment in segments)
    if len(segments) == 1:
        return Glob(segments[0], (), None, size)
    middle = tuple(segment for segment in segments[1:-1] if segment.length)
    weight = max((segment.weight for segment in middle), default=1)
    return Glob(segments[0], middle, segments[-1], size, weight)


# At most about 4,096 x 16 KB and 16 x 2 MB.
_compile_small = lru_cache(maxsize=4096)(_compile_glob)
_compile_large = lru_cache(maxsize=16)(_compile_glob)


def action_matches(pattern: str, action: str) -> bool:
    """Whether an Action pattern (``kms:*``, ``kms:generatedatakey*``, ``*``)
    covers ``action``; case-insensitive, ``*`` and ``?`` wildcards."""
    return wildcard_match(pattern_tokens(pattern.lower()), action.lower())
