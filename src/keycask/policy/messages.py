"""How the parser's messages quote the policy they complain about."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable


class JsonNumber(str):
    """A JSON number, kept as the text it was written as (never converted to a
    float, so no precision is lost and no huge integer is ever built)."""

    __slots__ = ()


def show(value: object, limit: int = 80) -> str:
    """A value quoted for a message, cut short: messages echo policies, and a
    131 KB string helps nobody."""
    text = json.dumps(value) if isinstance(value, str) else kind_of(value)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, JsonNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def suggest_folded(word: str, choices: Iterable[str]) -> str:
    """Like suggest, but case-insensitive, answering with the AWS spelling."""
    spelled = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(spelled), n=1, cutoff=0.75)
    return f' (did you mean "{spelled[close[0]]}"?)' if close else ""
