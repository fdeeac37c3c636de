"""What the audit log records about one request.

The record type is the guard against leaking secrets: it has no field that
could carry plaintext, data keys, key material, signatures' private inputs or
secret access keys, so a handler cannot log them by mistake. The encryption
context is logged because AWS's contract says it is not secret.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# What one record may carry, so that a request cannot make the log write
# (and fsync) much more than the few hundred bytes a record needs: an
# encryption context of at most MAX_CONTEXT_BYTES (UTF-8 of its keys and
# values), and at most MAX_TEXT characters in any other text field. Bigger
# ones are cut, never dropped, with a marker (below) that says so and a
# SHA-256 of what was cut, so the request can still be matched to its data.
MAX_CONTEXT_BYTES = 4096
MAX_TEXT = 2048
# Each kept key and value is cut to this many characters.
_MAX_CONTEXT_ITEM = 256
# The key of the pair that marks a cut context. A caller may send this key
# too; a record's context is cut only if the marker's SHA-256 is present.
TRUNCATED_MARKER = "keycask:truncated"
_CUT = "...[cut]"

DECISIONS = frozenset({"allow", "deny", "none"})
OUTCOMES = frozenset({"success", "error"})


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One request, allowed or denied, as it will appear in the log.

    ``decision`` is ``"none"`` when the request failed before authorization
    (bad signature, unknown operation); ``operation`` is ``None`` when the
    target was unknown or absent; ``principal`` is ``None`` when the caller
    was not authenticated.
    """

    time: datetime
    request_id: str
    operation: str | None
    principal: str | None
    access_key_id: str | None
    source_ip: str | None
    key_arn: str | None
    encryption_context: Mapping[str, str] | None
    decision: str
    decided_by: str | None
    outcome: str
    error_code: str | None
    region: str | None = None
    detail: str | None = None
    # The front door a request came in by ("kms", "admin", "operator",
    # "dev"); None for what no request asked (scheduled jobs, refusals at
    # the HTTP edge), and absent from the line then, as in records written
    # before doors were recorded.
    door: str | None = None

    @classmethod
    def event(
        cls,
        *,
        time: datetime,
        request_id: str,
        operation: str,
        outcome: str,
        detail: str,
        principal: str | None = None,
        source_ip: str | None = None,
        error_code: str | None = None,
    ) -> AuditRecord:
        """A record of something no authenticated caller asked about a key: a
        refusal at the HTTP edge, a readiness probe, the adoption of a segment."""
        return cls(
            time=time,
            request_id=request_id,
            operation=operation,
            principal=principal,
            access_key_id=None,
            source_ip=source_ip,
            key_arn=None,
            encryption_context=None,
            decision="none",
            decided_by=None,
            outcome=outcome,
            error_code=error_code,
            detail=detail,
        )

    def __post_init__(self) -> None:
        # Checked here, on the caller's task, so a malformed record fails the
        # request that built it and never reaches the shared flusher.
        if self.time.utcoffset() is None:
            raise ValueError("audit record time must be timezone-aware")
        if self.decision not in DECISIONS:
            raise ValueError(f"audit decision must be one of {sorted(DECISIONS)}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {sorted(OUTCOMES)}")
        if self.encryption_context is not None:
            object.__setattr__(self, "encryption_context", _frozen_context(self.encryption_context))
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and len(value) > MAX_TEXT:
                object.__setattr__(self, name, _cut_text(value))

    def fields(self) -> dict[str, Any]:
        """A JSON-ready dict in a fixed order (the order is part of the format).
        ``door`` comes last, and only when known: a line without it is what
        every record looked like before, and verifies as it always did."""
        context = self.encryption_context
        fields = {
            "time": format_time(self.time),
            "request_id": self.request_id,
            "operation": self.operation,
            "principal": self.principal,
            "access_key_id": self.access_key_id,
            "source_ip": self.source_ip,
            "region": self.region,
            "key_arn": self.key_arn,
            "encryption_context": None if context is None else dict(context),
            "decision": self.decision,
            "decided_by": self.decided_by,
            "outcome": self.outcome,
            "error_code": self.error_code,
            "detail": self.detail,
        }
        if self.door is not None:
            fields["door"] = self.door
        return fields


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``."""
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)
    return naive_utc.isoformat(timespec="milliseconds") + "Z"


_TEXT_FIELDS = (
    "request_id",
    "operation",
    "principal",
    "access_key_id",
    "source_ip",
    "key_arn",
    "decided_by",
    "error_code",
    "region",
    "detail",
    "door",
)


def _frozen_context(context: Mapping[str, str]) -> Mapping[str, str]:
    # A snapshot: the line is serialised later by the flusher, and a caller
    # mutating its dict in the meantime must not change what gets logged.
    snapshot = dict(context)
    size = 0
    for key, value in snapshot.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("encryption context keys and values must be str")
        size += _utf8_length(key) + _utf8_length(value)
    if size > MAX_CONTEXT_BYTES:
        snapshot = _cut_context(snapshot, size)
    return MappingProxyType(snapshot)


def _cut_context(context: dict[str, str], size: int) -> dict[str, str]:
    """The pairs that fit (each key and value cut to 256 characters), then
    the marker: how many pairs and bytes there were, and their SHA-256."""
    digest = hashlib.sha256(
        json.dumps(sorted(context.items()), ensure_ascii=False).encode("utf-8", "surrogatepass")
    ).hexdigest()
    kept: dict[str, str] = {}
    budget = MAX_CONTEXT_BYTES - 200  # room for the marker
    for full_key, full_value in context.items():
        key, value = _cut_item(full_key), _cut_item(full_value)
        cost = _utf8_length(key) + _utf8_length(value)
        if cost > budget or key in kept:
            break
        kept[key] = value
        budget -= cost
    kept[TRUNCATED_MARKER] = (
        f"{len(context)} pairs, {size} bytes, {len(context) - len(kept)} left out, "
        f"keys and values over {_MAX_CONTEXT_ITEM} characters cut; sha256 {digest}"
    )
    return kept


def _cut_item(text: str) -> str:
    return text if len(text) <= _MAX_CONTEXT_ITEM else text[:_MAX_CONTEXT_ITEM] + _CUT


def _cut_text(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{text[:MAX_TEXT]}{_CUT} ({len(text)} characters, sha256 {digest})"


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
