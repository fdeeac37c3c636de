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
from datetime import MAXYEAR, UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NewType

import orjson

from keycask.errors import AuditUnavailable

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

EncodedRecord = NewType("EncodedRecord", bytes)
"""A record's JSON members without the braces, as ``encode`` and
``encode_fields`` make them: what ``AuditLog`` splices between ``seq`` and
``prev``. Only those two make one, so nothing else reaches the log."""


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
    # "dev"); for a scheduled job, the door whose settings asked for it
    # (an Azure Key Vault rotation policy's actions: "azure-keyvault");
    # None for what no request asked (keycask's own scheduled jobs,
    # refusals at the HTTP edge), and absent from the line then, as in
    # records written before doors were recorded.
    door: str | None = None
    # A role session's source identity (sts:SourceIdentity, set when the
    # role was assumed): who is behind the session, as CloudTrail records
    # it. After ``door``, and only when there is one, so every line
    # written without sessions is byte for byte what it was.
    source_identity: str | None = None

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
        if self.source_identity is not None:
            fields["source_identity"] = self.source_identity
        return fields


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``."""
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)
    return naive_utc.isoformat(timespec="milliseconds") + "Z"


def encode(record: AuditRecord) -> EncodedRecord:
    """The record's JSON members without braces, ready to splice between seq and prev.

    Done on the caller's task: an unencodable record (a lone surrogate in a
    string) fails its own request instead of the whole batch.
    """
    try:
        encoded = orjson.dumps(record.fields())
    except (TypeError, ValueError) as exc:
        raise AuditUnavailable(f"audit record could not be encoded: {exc}") from exc
    return EncodedRecord(encoded[1:-1])


def encode_fields(
    *,
    time: datetime,
    request_id: str,
    operation: str | None,
    principal: str | None,
    access_key_id: str | None,
    source_ip: str | None,
    key_arn: str | None,
    encryption_context: Mapping[str, str] | None,
    decision: str,
    decided_by: str | None,
    outcome: str,
    error_code: str | None,
    region: str | None = None,
    detail: str | None = None,
    door: str | None = None,
    source_identity: str | None = None,
) -> EncodedRecord:
    """``encode(AuditRecord(...))`` of the same arguments, byte for byte and
    exception for exception, without building the record: every request's
    record is encoded here (``Pipeline._record``).

    It takes the common case only, and only when it can tell that the record
    would be left as given: a UTC time, a known decision and outcome, a
    context of strings, and an encoding of at most ``MAX_TEXT`` bytes. Such
    an encoding holds no text field over ``MAX_TEXT`` characters and no
    context over ``MAX_CONTEXT_BYTES`` (each character is at least one byte
    of it, and orjson refuses the lone surrogates that surrogatepass
    would count otherwise), so nothing would be cut. Anything else (a bound
    reached, a malformed record) goes through ``AuditRecord`` as before.
    Measured with callgrind on the bench's Encrypt record (3-pair context):
    19,800 instructions against 90,100 through ``AuditRecord`` (the frozen
    dataclass's setattrs, the bound checks one field at a time, the
    context's snapshot and datetime.isoformat, 12,600 alone, were most of it).
    """
    context = encryption_context
    if time.tzinfo is UTC and decision in DECISIONS and outcome in OUTCOMES:
        if context is not None:
            # orjson refuses keys that are not exactly str; values it would
            # write as numbers, lists, ... where AuditRecord raises.
            for value in context.values():
                if type(value) is not str:
                    context = _MALFORMED
                    break
            else:
                if type(context) is not dict:
                    context = dict(context)
        if context is not _MALFORMED:
            fields = {
                "time": _utc_stamp(time),
                "request_id": request_id,
                "operation": operation,
                "principal": principal,
                "access_key_id": access_key_id,
                "source_ip": source_ip,
                "region": region,
                "key_arn": key_arn,
                "encryption_context": context,
                "decision": decision,
                "decided_by": decided_by,
                "outcome": outcome,
                "error_code": error_code,
                "detail": detail,
            }
            if door is not None:
                fields["door"] = door
            if source_identity is not None:
                fields["source_identity"] = source_identity
            try:
                encoded = orjson.dumps(fields)
            except orjson.JSONEncodeError:
                pass  # the general path raises what it always raised
            else:
                if len(encoded) <= MAX_TEXT:
                    return EncodedRecord(encoded[1:-1])
    record = AuditRecord(
        time=time,
        request_id=request_id,
        operation=operation,
        principal=principal,
        access_key_id=access_key_id,
        source_ip=source_ip,
        key_arn=key_arn,
        encryption_context=encryption_context,
        decision=decision,
        decided_by=decided_by,
        outcome=outcome,
        error_code=error_code,
        region=region,
        detail=detail,
        door=door,
        source_identity=source_identity,
    )
    return encode(record)


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
    "source_identity",
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


# Stands for a context that is not all strings: the general path says why.
_MALFORMED: Mapping[str, str] = MappingProxyType({})
# The milliseconds and zone of a stamp, by millisecond.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
_SECOND = timedelta(seconds=1)
# The second last formatted: [start, end) and "YYYY-MM-DDTHH:MM:SS".
# Requests within one second share it. One tuple, replaced whole, so a
# thread reading it never sees one second's bounds with another's text.
_last_second: list[tuple[datetime, datetime, str]] = [
    (datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), "")
]


def _utc_stamp(moment: datetime) -> str:
    """``format_time`` of a datetime whose tzinfo is UTC: its second's text
    is made once per second, not per record (datetime.isoformat alone costs more
    than the rest of the stamp). Both bounds share the moment's tzinfo, so
    comparing with them compares fields, without asking the zone its offset."""
    start, end, head = _last_second[0]
    if not start <= moment < end:
        start = moment.replace(microsecond=0)
        if start.year == MAXYEAR:
            return format_time(moment)  # the second's end may not be representable
        head = start.replace(tzinfo=None).isoformat()
        _last_second[0] = (start, start + _SECOND, head)
    return head + _MILLIS[moment.microsecond // 1000]
