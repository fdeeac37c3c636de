"""What one audit record may carry (issue 13, finding 4): cut, never dropped."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import orjson

from keycask.audit.record import MAX_CONTEXT_BYTES, MAX_TEXT, TRUNCATED_MARKER, AuditRecord


def _record(**overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "time": datetime(2026, 1, 1, tzinfo=UTC),
        "request_id": "r-1",
        "operation": "Encrypt",
        "principal": "arn:aws:iam::000000000000:user/nobody",
        "access_key_id": "AKIA",
        "source_ip": "127.0.0.1",
        "key_arn": None,
        "encryption_context": None,
        "decision": "deny",
        "decided_by": "implicit deny",
        "outcome": "error",
        "error_code": "AccessDeniedException",
    }
    fields.update(overrides)
    return AuditRecord(**fields)


def test_a_context_within_the_bound_is_kept_as_is() -> None:
    context = {"tenant": "a", "k": "v" * (MAX_CONTEXT_BYTES - 8)}
    assert _record(encryption_context=context).fields()["encryption_context"] == context


def test_a_huge_context_is_cut_with_a_marker_and_a_digest() -> None:
    context = {f"k{i}": "v" * 1000 for i in range(900)} | {"x" * 5000: "y"}
    line = orjson.dumps(_record(encryption_context=context).fields())
    assert len(line) < MAX_CONTEXT_BYTES + 1024
    logged = json.loads(line)["encryption_context"]
    assert logged["k0"] == "v" * 256 + "...[cut]"
    digest = hashlib.sha256(
        json.dumps(sorted(context.items()), ensure_ascii=False).encode()
    ).hexdigest()
    assert logged[TRUNCATED_MARKER].endswith(f"sha256 {digest}")
    assert logged[TRUNCATED_MARKER].startswith("901 pairs, ")


def test_one_huge_value_and_huge_text_fields_are_cut() -> None:
    record = _record(
        encryption_context={"k": "é" * 600_000},
        detail="d" * 1_000_000,
        key_arn="arn:" + "k" * 100_000,
    )
    line = orjson.dumps(record.fields())
    assert len(line) < MAX_CONTEXT_BYTES + 3 * MAX_TEXT + 2048
    fields = json.loads(line)
    assert fields["detail"].startswith("d" * MAX_TEXT + "...[cut] (1000000 characters, sha256 ")
    assert fields["encryption_context"]["k"] == "é" * 256 + "...[cut]"
    # Everything else is intact: the record still says who did what.
    assert fields["principal"] == "arn:aws:iam::000000000000:user/nobody"
    assert fields["error_code"] == "AccessDeniedException"


def test_one_byte_over_the_bound_is_cut() -> None:
    context = {"tenant": "a", "k": "v" * (MAX_CONTEXT_BYTES - 7)}
    assert TRUNCATED_MARKER in _record(encryption_context=context).fields()["encryption_context"]
