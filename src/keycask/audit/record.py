"""What the audit log records about one request.

The record type is the guard against leaking secrets: it has no field that
could carry plaintext, data keys, key material, signatures' private inputs or
secret access keys, so a handler cannot log them by mistake. The encryption
context is logged because AWS's contract says it is not secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

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

    def fields(self) -> dict[str, Any]:
        """A JSON-ready dict in a fixed order (the order is part of the format)."""
        context = self.encryption_context
        return {
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


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``."""
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)
    return naive_utc.isoformat(timespec="milliseconds") + "Z"


def _frozen_context(context: Mapping[str, str]) -> Mapping[str, str]:
    # A snapshot: the line is serialised later by the flusher, and a caller
    # mutating its dict in the meantime must not change what gets logged.
    snapshot = dict(context)
    for key, value in snapshot.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("encryption context keys and values must be str")
    return MappingProxyType(snapshot)
