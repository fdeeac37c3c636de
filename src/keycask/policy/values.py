"""Condition values shared by validation (document.py) and evaluation
(conditions.py): numbers, instants, booleans, base64, networks, and the
``${...}`` policy variables in a value."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from keycask.policy.messages import show, suggest_folded
from keycask.policy.model import TemplatePart, Text, Variable
from keycask.policy.vocabulary import CONDITION_KEYS, key_kind

_VARIABLE = re.compile(r"\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ISO_8601 = re.compile(
    "([0-9]{4})-([0-9]{2})"
    "(?:-([0-9]{2})"
    "(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.]([0-9]+))?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?)?"
)
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


def parse_number(text: str) -> Decimal | None:
    """A Numeric operand, compared exactly as a decimal; None if not a number."""
    if not _NUMBER.fullmatch(text):
        return None
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):  # an exponent beyond Decimal's range
        return None
    return number if number.is_finite() else None


def parse_instant(text: str) -> Decimal | None:
    """A Date operand as seconds since the epoch, or None.

    Accepts epoch seconds (integer or decimal; an all-digit string is always
    epoch seconds, never a bare year) and the W3C profiles of ISO 8601 that
    IAM documents: YYYY-MM, YYYY-MM-DD, and date-times with minutes, seconds
    and fractions, with "Z" or a +hh:mm offset. A date-time without a zone is
    taken as UTC, the zone AWS reports times in.
    """
    if _EPOCH.fullmatch(text):
        return Decimal(text)
    match = _ISO_8601.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        tz = UTC
        if zone is not None and zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(-offset if zone[0] == "-" else offset)
        moment = datetime(
            int(year),
            int(month),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
    except ValueError:  # month 13, hour 25, an offset of a day or more, ...
        return None
    delta = moment - _EPOCH_START
    seconds = Decimal(delta.days * 86400 + delta.seconds)
    return seconds + Decimal("0." + fraction) if fraction else seconds


def parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    return True if lowered == "true" else False if lowered == "false" else None


def parse_binary(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR block; a bare address means /32 (IPv4) or /128 (IPv6)."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def parse_template(value: str, *, variables: bool) -> tuple[TemplatePart, ...]:
    """Split a condition value into text and ``${...}`` policy variables.

    Raises ValueError (with a message for the policy author) for a ``${``
    without its ``}``, an unknown key, or a multivalued key, which AWS does
    not allow as a variable.
    """
    if not variables or "${" not in value:
        return (value,)
    parts: list[TemplatePart] = []
    rest = value
    while (start := rest.find("${")) >= 0:
        end = rest.find("}", start + 2)
        if end < 0:
            raise ValueError(
                f"{show(rest[start:])} opens a policy variable that is never closed "
                '(write "${$}" for a literal "$")'
            )
        if start:
            parts.append(rest[:start])
        inner = rest[start + 2 : end]
        if inner in ("*", "?", "$"):
            parts.append(Text(inner))
        else:
            match = _VARIABLE.fullmatch(inner)
            if match is None:
                raise ValueError(f"{show('${' + inner + '}')} is not a policy variable")
            name, default = match.groups()
            kind = key_kind(name.lower())
            if kind is None:
                raise ValueError(
                    f"policy variable {show('${' + name + '}')} names no known condition key"
                    + suggest_folded(name, CONDITION_KEYS)
                )
            if kind:
                raise ValueError(
                    f"policy variable {show('${' + name + '}')} names a multivalued key, "
                    "which cannot be a policy variable"
                )
            parts.append(Variable(name.lower(), default))
        rest = rest[end + 1 :]
    if rest:
        parts.append(rest)
    return tuple(parts)
