"""ListAuditRecords reads only the end of the audit log: the first,
cut, line of that end is dropped, never parsed as a record, and only records
of the caller's account match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keycask.service.core.handlers import inspection
from keycask.service.core.handlers.inspection import ListAuditRecordsRequest


def _line(seq: int, principal: str | None, key: str | None = None) -> bytes:
    record = {
        "seq": seq,
        "time": f"2026-01-01T00:00:{seq:02d}Z",
        "principal": principal,
        "key_arn": key,
        "outcome": "success",
        "prev": "x",
    }
    return json.dumps(record).encode() + b"\n"


def test_only_whole_lines_of_the_tail_are_read(tmp_path: Path) -> None:
    lines = [_line(n, "arn:aws:iam::000000000000:user/a") for n in range(1, 31)]
    segment = tmp_path / "server.jsonl"
    segment.write_bytes(b"".join(lines))
    whole = inspection._tail_lines(segment, inspection.TAIL_BYTES)
    assert len(whole) == 30
    # A tail that starts mid-line: that line is dropped, the rest are whole.
    tail = inspection._tail_lines(segment, len(b"".join(lines[-3:])) + 5)
    assert [json.loads(t)["seq"] for t in tail] == [28, 29, 30]
    # A tail that starts right at a line: that line is whole, and read.
    tail = inspection._tail_lines(segment, len(b"".join(lines[-2:])))
    assert [json.loads(t)["seq"] for t in tail] == [29, 30]


def test_the_read_budget_is_shared_by_every_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many segments there are, one call reads at most TAIL_BYTES,
    the most recently written segment first, and says when it ran out."""
    import os

    mine = "arn:aws:iam::000000000000:user/a"
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_bytes(b"".join(_line(n, mine) for n in range(1, 11)))
    new.write_bytes(b"".join(_line(n, mine) for n in range(11, 21)))
    os.utime(old, (1, 1))  # written long ago
    monkeypatch.setattr(inspection, "TAIL_BYTES", new.stat().st_size + 10)
    found, marker, exhausted = inspection._recent(
        tmp_path, "000000000000", ListAuditRecordsRequest(limit=500)
    )
    assert sorted(r["seq"] for r in found) == list(range(11, 21))
    assert marker is None and exhausted is True
    monkeypatch.setattr(inspection, "TAIL_BYTES", old.stat().st_size + new.stat().st_size + 10)
    found, _, exhausted = inspection._recent(
        tmp_path, "000000000000", ListAuditRecordsRequest(limit=500)
    )
    assert len(found) == 20 and exhausted is False


def test_records_of_other_accounts_and_of_nobody_are_not_shown(tmp_path: Path) -> None:
    mine = "arn:aws:iam::000000000000:user/a"
    theirs = "arn:aws:iam::111111111111:user/b"
    my_key = "arn:aws:kms:us-east-1:000000000000:key/k"
    (tmp_path / "server.jsonl").write_bytes(
        _line(1, mine) + _line(2, theirs) + _line(3, None) + _line(4, theirs, my_key)
        + b'{"seq": 5, "torn'  # a torn last line: skipped
    )  # fmt: skip
    found, _, _ = inspection._recent(tmp_path, "000000000000", ListAuditRecordsRequest())
    assert [r["seq"] for r in found] == [4, 1]  # newest first
    assert all("prev" not in r for r in found)
    assert {r["segment"] for r in found} == {"server"}
    theirs_seen, _, _ = inspection._recent(tmp_path, "111111111111", ListAuditRecordsRequest())
    assert [r["seq"] for r in theirs_seen] == [4, 2]
