"""The audit log: every request, allowed or denied, recorded durably before its answer leaves."""

from __future__ import annotations

from keycask.audit.chain import GENESIS, Anchor, AuditLog, VerifyResult, verify
from keycask.audit.record import AuditRecord, EncodedRecord, encode_fields

__all__ = [
    "GENESIS",
    "Anchor",
    "AuditLog",
    "AuditRecord",
    "EncodedRecord",
    "VerifyResult",
    "encode_fields",
    "verify",
]
