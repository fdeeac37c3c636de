"""Anchors catch what the hash chain alone cannot: a cut or rewritten tail."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import orjson

from keycask.audit import Anchor, AuditLog, AuditRecord, verify


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=f"req-{n}",
        operation="Encrypt",
        principal=None,
        access_key_id=None,
        source_ip=None,
        key_arn=None,
        encryption_context=None,
        decision="none",
        decided_by=None,
        outcome="success",
        error_code=None,
    )


def _write(directory: Path, count: int) -> Anchor:
    log = AuditLog.open(directory, "server")
    for n in range(count):
        log.append_sync(_record(n))
    tip = log.tip
    log.close()
    return tip


def test_tip_is_the_hash_of_the_last_line(tmp_path: Path) -> None:
    tip = _write(tmp_path, 5)
    last = (tmp_path / "server.jsonl").read_bytes().splitlines()[-1]
    assert tip == Anchor(5, hashlib.sha256(last).hexdigest())
    assert verify(tmp_path, {"server": tip}).ok


def test_lines_cut_from_the_end_are_caught(tmp_path: Path) -> None:
    tip = _write(tmp_path, 5)
    path = tmp_path / "server.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))
    assert verify(tmp_path).ok, "the chain alone cannot see a cut tail"
    result = verify(tmp_path, {"server": tip})
    assert not result.ok
    assert result.line == 4 and "removed from the end" in (result.problem or "")


def test_a_rewritten_last_line_is_caught(tmp_path: Path) -> None:
    tip = _write(tmp_path, 3)
    path = tmp_path / "server.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    forged = orjson.loads(lines[-1])
    forged["outcome"] = "error"
    lines[-1] = orjson.dumps(forged) + b"\n"
    path.write_bytes(b"".join(lines))
    assert verify(tmp_path).ok, "a valid-looking last line passes the chain"
    result = verify(tmp_path, {"server": tip})
    assert not result.ok and result.line == 3
    assert "differs from the one the store recorded" in (result.problem or "")


def test_a_deleted_segment_is_caught(tmp_path: Path) -> None:
    tip = _write(tmp_path, 2)
    (tmp_path / "server.jsonl").unlink()
    result = verify(tmp_path, {"server": tip})
    assert not result.ok and "missing" in (result.problem or "")


def test_lines_written_after_the_anchor_are_fine(tmp_path: Path) -> None:
    tip = _write(tmp_path, 2)
    _write(tmp_path, 3)
    assert verify(tmp_path, {"server": tip}).ok
