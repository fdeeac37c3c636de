"""The audit log: record format, group commit, recovery, tamper evidence, failure.

Everything here uses real files and real fsync. Write failures are produced
for real in a child process (tests/unit/audit_child.py): tests run as root,
so permission bits cannot make a file unwritable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.audit import GENESIS, AuditLog, AuditRecord, VerifyResult, verify
from keycask.errors import AuditUnavailable

CHILD = Path(__file__).with_name("audit_child.py")
WHEN = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

FIELD_ORDER = (
    "time",
    "request_id",
    "operation",
    "principal",
    "access_key_id",
    "source_ip",
    "region",
    "key_arn",
    "encryption_context",
    "decision",
    "decided_by",
    "outcome",
    "error_code",
    "detail",
)


def make_record(request_id: str = "req-1", **changes: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "time": WHEN,
        "request_id": request_id,
        "operation": "Encrypt",
        "principal": "arn:aws:iam::111122223333:user/alice",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "source_ip": "192.0.2.1",
        "key_arn": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd",
        "encryption_context": {"purpose": "test"},
        "decision": "allow",
        "decided_by": "key policy",
        "outcome": "success",
        "error_code": None,
    }
    values.update(changes)
    return AuditRecord(**values)


def segment_path(directory: Path, segment: str = "w1") -> Path:
    return directory / f"{segment}.jsonl"


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def sha(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def build_sync(directory: Path, count: int, segment: str = "w1") -> Path:
    log = AuditLog.open(directory, segment)
    for i in range(count):
        log.append_sync(make_record(f"req-{i + 1}"))
    log.close()
    return segment_path(directory, segment)


# -- the record --


def test_fields_are_in_fixed_order_and_none_can_hold_secrets() -> None:
    record = make_record()
    assert tuple(record.fields()) == FIELD_ORDER
    # The type is the guard: every attribute is one of the logged fields,
    # and none is meant for plaintext, keys, signatures or secrets.
    optional = ("door", "source_identity")  # written only when there is one
    assert {f.name for f in dataclasses.fields(AuditRecord)} == {*FIELD_ORDER, *optional}
    forbidden = ("plaintext", "secret", "material", "ciphertext", "data_key", "signature", "blob")
    names = (*FIELD_ORDER, *optional)
    assert not [name for name in names if any(word in name for word in forbidden)]


def test_time_is_iso8601_utc_with_milliseconds_and_z() -> None:
    assert make_record().fields()["time"] == "2024-05-01T12:00:00.123Z"
    plus_two = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert make_record(time=plus_two).fields()["time"] == "2024-05-01T12:00:00.123Z"
    whole_second = WHEN.replace(microsecond=0)
    assert make_record(time=whole_second).fields()["time"] == "2024-05-01T12:00:00.000Z"


@pytest.mark.parametrize(
    "changes",
    [
        {"time": WHEN.replace(tzinfo=None)},
        {"decision": "maybe"},
        {"outcome": "fine"},
    ],
)
def test_malformed_records_are_refused_at_construction(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="audit"):
        make_record(**changes)


def test_encryption_context_is_snapshotted() -> None:
    context = {"purpose": "test"}
    record = make_record(encryption_context=context)
    context["purpose"] = "changed after the fact"
    assert record.fields()["encryption_context"] == {"purpose": "test"}


def test_encryption_context_must_be_strings() -> None:
    with pytest.raises(TypeError):
        make_record(encryption_context={"n": 1})


def test_records_round_trip_through_the_log(tmp_path: Path) -> None:
    records = [
        make_record("plain"),
        make_record(
            "awkward",
            operation=None,
            principal=None,
            access_key_id=None,
            source_ip=None,
            key_arn=None,
            encryption_context=None,
            decision="none",
            decided_by=None,
            outcome="error",
            error_code="InvalidSignatureException",
            region="eu-west-1",
            detail='quote " newline \n tab \t unicode é 🔑',
        ),
        make_record(
            "denied",
            decision="deny",
            decided_by="implicit deny",
            outcome="error",
            error_code="AccessDeniedException",
            encryption_context={},
        ),
    ]

    async def scenario() -> None:
        log = AuditLog.open(tmp_path, "w1")
        for record in records:
            await log.append(record)
        await log.aclose()

    asyncio.run(scenario())
    lines = read_lines(segment_path(tmp_path))
    assert len(lines) == len(records)
    prev = GENESIS
    for seq, (line, record) in enumerate(zip(lines, records, strict=True), start=1):
        expected = {"seq": seq, **record.fields(), "prev": prev}
        assert line == orjson.dumps(expected) + b"\n"  # byte-exact, key order included
        prev = sha(line)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request_id=st.text(st.characters(codec="utf-8"), max_size=40),
    detail=st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=80)),
    context=st.dictionaries(
        st.text(st.characters(codec="utf-8"), max_size=10),
        st.text(st.characters(codec="utf-8"), max_size=10),
        max_size=4,
    ),
)
def test_any_text_stays_on_one_line_and_round_trips(
    request_id: str, detail: str | None, context: dict[str, str]
) -> None:
    record = make_record(request_id, detail=detail, encryption_context=context)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        log = AuditLog.open(directory, "w1")
        log.append_sync(record)
        log.append_sync(record)
        log.close()
        lines = read_lines(segment_path(directory))
        assert len(lines) == 2
        parsed = orjson.loads(lines[1])
        assert {k: v for k, v in parsed.items() if k not in ("seq", "prev")} == record.fields()
        assert verify(directory) == VerifyResult(ok=True, records=2, segments=1)


def test_the_door_comes_last_and_only_when_known_so_old_lines_keep_their_form(
    tmp_path: Path,
) -> None:
    # A record no door answered (a scheduled job, an edge refusal) is written
    # exactly as every record was before doors were recorded.
    assert tuple(make_record().fields()) == FIELD_ORDER
    assert tuple(make_record(door="kms").fields()) == (*FIELD_ORDER, "door")
    log = AuditLog.open(tmp_path, "w1", node="node-a")
    log.append_sync(make_record("req-1"))
    log.append_sync(make_record("req-2", door="admin"))
    log.close()
    first, second = (orjson.loads(line) for line in read_lines(segment_path(tmp_path)))
    assert "door" not in first
    assert list(second)[-3:] == ["door", "node", "prev"]
    assert second["door"] == "admin"
    assert verify(tmp_path) == VerifyResult(ok=True, records=2, segments=1)


def test_a_segment_written_before_doors_still_verifies_and_chains_on(tmp_path: Path) -> None:
    # Lines as the previous format wrote them: no "door" member at all.
    path = segment_path(tmp_path)
    lines, prev = [], GENESIS
    for seq in (1, 2):
        line = orjson.dumps({"seq": seq, **make_record(f"old-{seq}").fields(), "prev": prev})
        lines.append(line + b"\n")
        prev = sha(line)
    write_lines(path, lines)
    log = AuditLog.open(tmp_path, "w1")
    log.append_sync(make_record("new-3", door="kms"))
    log.close()
    assert verify(tmp_path) == VerifyResult(ok=True, records=3, segments=1)


# -- group commit --


def test_thousand_concurrent_appends_share_batches(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        log = AuditLog.open(tmp_path, "w1")
        await asyncio.gather(*(log.append(make_record(f"req-{i}")) for i in range(1000)))
        counts = log.batches_written, log.records_written
        await log.aclose()
        return counts

    batches, records = asyncio.run(scenario())
    lines = read_lines(segment_path(tmp_path))
    assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, 1001))
    assert sorted(orjson.loads(line)["request_id"] for line in lines) == sorted(
        f"req-{i}" for i in range(1000)
    )
    assert records == 1000
    # All 1,000 were queued before the flusher first ran: one write, one fsync.
    assert batches == 1
    assert verify(tmp_path) == VerifyResult(ok=True, records=1000, segments=1)


def test_appenders_in_a_loop_join_the_next_batch(tmp_path: Path) -> None:
    # Records that arrive while a batch is in flight form the next batch.
    async def appender(log: AuditLog, worker: int) -> None:
        for i in range(10):
            await log.append(make_record(f"w{worker}-{i}"))

    async def scenario() -> int:
        log = AuditLog.open(tmp_path, "w1")
        await asyncio.gather(*(appender(log, w) for w in range(64)))
        batches = log.batches_written
        await log.aclose()
        return batches

    # 64 appenders in lockstep: about one batch per round of 10, never one per record.
    assert asyncio.run(scenario()) <= 20
    assert verify(tmp_path) == VerifyResult(ok=True, records=640, segments=1)


def test_a_cancelled_caller_does_not_disturb_its_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = AuditLog.open(tmp_path, "w1")
        doomed = asyncio.create_task(log.append(make_record("cancelled")))
        await asyncio.sleep(0)  # its record is now pending
        doomed.cancel()
        await log.append(make_record("kept"))
        await log.aclose()

    asyncio.run(scenario())
    # Whether the cancelled caller's record landed is not specified; the chain must hold.
    result = verify(tmp_path)
    assert result.ok
    ids = [orjson.loads(line)["request_id"] for line in read_lines(segment_path(tmp_path))]
    assert "kept" in ids


def test_an_unencodable_record_fails_only_its_own_caller(tmp_path: Path) -> None:
    async def scenario() -> list[BaseException | None]:
        log = AuditLog.open(tmp_path, "w1")
        results = await asyncio.gather(
            log.append(make_record("good-1")),
            log.append(make_record("bad \ud800 surrogate")),
            log.append(make_record("good-2")),
            return_exceptions=True,
        )
        await log.aclose()
        return list(results)

    good_1, bad, good_2 = asyncio.run(scenario())
    assert good_1 is None and good_2 is None
    assert isinstance(bad, AuditUnavailable)
    assert verify(tmp_path) == VerifyResult(ok=True, records=2, segments=1)


def test_sync_and_async_appends_share_one_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = AuditLog.open(tmp_path, "w1")
        log.append_sync(make_record("sync-1"))
        await log.append(make_record("async-2"))
        log.append_sync(make_record("sync-3"))
        await log.aclose()

    asyncio.run(scenario())
    lines = read_lines(segment_path(tmp_path))
    assert [orjson.loads(line)["request_id"] for line in lines] == ["sync-1", "async-2", "sync-3"]
    assert verify(tmp_path).ok


# -- opening, reopening, recovery --


def test_new_directory_is_0700_and_segment_0600(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "audit"
    build_sync(directory, 1)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(segment_path(directory).stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape"])
def test_segment_names_cannot_leave_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="segment"):
        AuditLog.open(tmp_path, name)


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    build_sync(tmp_path, 3)

    async def more() -> None:
        log = AuditLog.open(tmp_path, "w1")
        await log.append(make_record("req-4"))
        await log.append(make_record("req-5"))
        await log.aclose()

    asyncio.run(more())
    lines = read_lines(segment_path(tmp_path))
    assert [orjson.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert orjson.loads(lines[3])["prev"] == sha(lines[2])
    assert verify(tmp_path) == VerifyResult(ok=True, records=5, segments=1)


def test_reopen_finds_a_last_line_longer_than_one_read_chunk(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, "w1")
    log.append_sync(make_record("short"))
    log.append_sync(make_record("long", detail="x" * 200_000))
    log.close()
    lines = read_lines(segment_path(tmp_path))

    log = AuditLog.open(tmp_path, "w1")
    log.append_sync(make_record("after"))
    log.close()
    third = orjson.loads(read_lines(segment_path(tmp_path))[2])
    assert (third["seq"], third["prev"]) == (3, sha(lines[1]))
    assert verify(tmp_path).ok


def test_partial_last_line_is_cut_at_open(tmp_path: Path) -> None:
    path = build_sync(tmp_path, 3)
    size = path.stat().st_size
    with path.open("ab") as stream:
        stream.write(b'{"seq":4,"time":"2024-05-01T12:0')  # a crash mid-write
    assert verify(tmp_path).line == 4

    log = AuditLog.open(tmp_path, "w1")
    assert path.stat().st_size == size
    log.append_sync(make_record("req-4"))
    log.close()
    assert [orjson.loads(line)["seq"] for line in read_lines(path)] == [1, 2, 3, 4]
    assert verify(tmp_path) == VerifyResult(ok=True, records=4, segments=1)


def test_a_lone_partial_line_leaves_an_empty_segment(tmp_path: Path) -> None:
    path = segment_path(tmp_path)
    path.write_bytes(b'{"seq":1,"ti')
    log = AuditLog.open(tmp_path, "w1")
    log.append_sync(make_record())
    log.close()
    assert orjson.loads(read_lines(path)[0])["prev"] == GENESIS
    assert verify(tmp_path).ok


def test_unreadable_last_line_refuses_to_open(tmp_path: Path) -> None:
    path = build_sync(tmp_path, 2)
    with path.open("ab") as stream:
        stream.write(b"not json\n")
    with pytest.raises(AuditUnavailable, match="unreadable"):
        AuditLog.open(tmp_path, "w1")


def test_second_opener_is_refused(tmp_path: Path) -> None:
    first = AuditLog.open(tmp_path, "w1")
    with pytest.raises(AuditUnavailable, match="in use by another process"):
        AuditLog.open(tmp_path, "w1")
    other = AuditLog.open(tmp_path, "w2")  # segments are independent
    other.close()
    first.close()
    AuditLog.open(tmp_path, "w1").close()  # closing released the lock


def test_second_opener_in_another_process_is_refused(tmp_path: Path) -> None:
    holder = AuditLog.open(tmp_path, "w1")
    code = (
        "import sys; from pathlib import Path\n"
        "from keycask.audit import AuditLog\n"
        "from keycask.errors import AuditUnavailable\n"
        "try:\n"
        "    AuditLog.open(Path(sys.argv[1]), 'w1')\n"
        "except AuditUnavailable as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    holder.close()
    assert done.returncode == 3, done.stderr
    assert "in use by another process" in done.stdout


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = AuditLog.open(tmp_path, "w1")
        await log.append(make_record())
        await log.aclose()
        await log.aclose()  # idempotent
        with pytest.raises(AuditUnavailable, match="closed"):
            await log.append(make_record())
        with pytest.raises(AuditUnavailable, match="closed"):
            log.append_sync(make_record())

    asyncio.run(scenario())
    sync_log = AuditLog.open(tmp_path, "w1")
    sync_log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        sync_log.append_sync(make_record())
    assert verify(tmp_path) == VerifyResult(ok=True, records=1, segments=1)


def test_aclose_flushes_what_is_pending(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = AuditLog.open(tmp_path, "w1")
        tasks = [asyncio.create_task(log.append(make_record(f"req-{i}"))) for i in range(20)]
        await asyncio.sleep(0)  # every record is pending, none acknowledged yet
        await log.aclose()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert verify(tmp_path) == VerifyResult(ok=True, records=20, segments=1)


def _writers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "keycask-audit"}


def _ended(threads: set[threading.Thread]) -> bool:
    """Whether ``threads`` end: each has answered its last caller and only returns
    (a thread that does not end hangs the test rather than failing it by a clock)."""
    for thread in threads:
        thread.join()
    return not any(thread.is_alive() for thread in threads)


def test_the_writer_wakes_the_loop_once_per_batch_not_per_record(tmp_path: Path) -> None:
    wake_ups: list[object] = []

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counted(callback: Callable[..., object], *args: Any) -> asyncio.Handle:
            wake_ups.append(callback)
            return real(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign, assignment]
        log = AuditLog.open(tmp_path, "w1")
        for round_ in range(3):
            await asyncio.gather(*(log.append(make_record(f"r{round_}-{i}")) for i in range(50)))
        counts = log.batches_written, log.records_written
        await log.aclose()
        return counts

    batches, records = asyncio.run(scenario())
    assert (batches, records) == (3, 150)
    # One per batch, and one for the close.
    assert len(wake_ups) == 4
    assert verify(tmp_path) == VerifyResult(ok=True, records=150, segments=1)


def test_one_writer_thread_per_log_and_none_left_after_close(tmp_path: Path) -> None:
    before = _writers()

    async def scenario() -> set[threading.Thread]:
        log = AuditLog.open(tmp_path, "w1")
        for i in range(5):
            await log.append(make_record(f"req-{i}"))
        started = _writers() - before
        await log.aclose()
        return started

    started = asyncio.run(scenario())
    assert len(started) == 1
    assert _ended(started)
    # A log only ever written synchronously (the CLI) starts none.
    log = AuditLog.open(tmp_path, "w1")
    log.append_sync(make_record("sync"))
    log.close()
    assert _writers() - before == set()
    assert verify(tmp_path) == VerifyResult(ok=True, records=6, segments=1)


def test_close_fails_what_is_queued_and_stops_the_writer(tmp_path: Path) -> None:
    before = _writers()

    async def scenario() -> list[BaseException | None]:
        log = AuditLog.open(tmp_path, "w1")
        await log.append(make_record("written"))
        tasks = [asyncio.create_task(log.append(make_record(f"req-{i}"))) for i in range(5)]
        await asyncio.sleep(0)  # queued, the writer not yet woken
        log.close()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(scenario())
    assert all(isinstance(r, AuditUnavailable) and "closed" in str(r) for r in results)
    assert _ended(_writers() - before)
    assert verify(tmp_path) == VerifyResult(ok=True, records=1, segments=1)


# -- verify and tamper evidence --
#
# Documented in keycask.audit.chain, for unkeyed (v1) lines: an edit that keeps
# line k well-formed is named at k (line k + 1's prev no longer matches it);
# one that breaks line k's JSON or seq at k; deleting line k at k. The tip is
# not protected by the chain alone. Keyed lines: tests/unit/test_audit_anchor.py.


def _edit_decision(lines: list[bytes], k: int) -> None:
    assert b'"decision":"allow"' in lines[k - 1]
    lines[k - 1] = lines[k - 1].replace(b'"decision":"allow"', b'"decision":"deny"')


def _edit_seq(lines: list[bytes], k: int) -> None:
    lines[k - 1] = lines[k - 1].replace(b'"seq":%d,' % k, b'"seq":%d,' % (k + 100))


def _delete(lines: list[bytes], k: int) -> None:
    del lines[k - 1]


def _swap_with_next(lines: list[bytes], k: int) -> None:
    lines[k - 1], lines[k] = lines[k], lines[k - 1]


def _insert_copy(lines: list[bytes], k: int) -> None:
    lines.insert(k - 1, lines[0])


def _insert_forgery(lines: list[bytes], k: int) -> None:
    # The best an attacker can do without rewriting the rest: correct seq and
    # prev for position k. The original line k then no longer fits.
    forged = {"seq": k, **make_record("forged").fields(), "prev": sha(lines[k - 2])}
    lines.insert(k - 1, orjson.dumps(forged) + b"\n")


def _cut_mid_line(lines: list[bytes], k: int) -> None:
    lines[k - 1] = lines[k - 1][:20]
    del lines[k:]


def _garble(lines: list[bytes], k: int) -> None:
    lines[k - 1] = b"{not json\n"


Tamper = Callable[[list[bytes], int], None]


@pytest.mark.parametrize(
    ("tamper", "detected_at", "problem"),
    [
        (_edit_decision, 5, "changed"),
        (_edit_seq, 5, "seq"),
        (_delete, 5, "seq"),
        (_swap_with_next, 5, "seq"),
        (_insert_copy, 5, "seq"),
        (_insert_forgery, 6, "seq"),
        (_cut_mid_line, 5, "newline"),
        (_garble, 5, "JSON"),
    ],
)
def test_tampering_with_line_5_is_detected(
    tmp_path: Path, tamper: Tamper, detected_at: int, problem: str
) -> None:
    path = build_sync(tmp_path, 10)
    lines = read_lines(path)
    tamper(lines, 5)
    write_lines(path, lines)
    result = verify(tmp_path)
    assert not result.ok
    assert (result.file, result.line, result.segments) == (path, detected_at, 1)
    assert result.problem is not None and problem in result.problem
    assert result.records == detected_at - 1


def test_edit_of_the_first_line_is_named_at_the_first(tmp_path: Path) -> None:
    path = build_sync(tmp_path, 3)
    lines = read_lines(path)
    _edit_decision(lines, 1)
    write_lines(path, lines)
    result = verify(tmp_path)
    assert (result.line, result.records) == (1, 0)
    assert "line 2's prev" in (result.problem or "")


def test_first_line_must_link_to_genesis(tmp_path: Path) -> None:
    path = build_sync(tmp_path, 3)
    lines = read_lines(path)
    del lines[0]
    for seq, line in enumerate(lines, start=1):  # renumber, keep the links
        lines[seq - 1] = line.replace(b'"seq":%d,' % (seq + 1), b'"seq":%d,' % seq)
    write_lines(path, lines)
    result = verify(tmp_path)
    assert (result.line, result.problem) == (1, "prev does not match the hash of GENESIS")


def test_the_tip_is_not_protected_by_the_chain_alone(tmp_path: Path) -> None:
    # The documented limit: the last line links to nothing after it.
    path = build_sync(tmp_path, 3)
    lines = read_lines(path)
    _edit_decision(lines, 3)
    write_lines(path, lines)
    assert verify(tmp_path).ok
    write_lines(path, lines[:2])
    assert verify(tmp_path).ok


def test_verify_checks_every_segment_in_name_order(tmp_path: Path) -> None:
    build_sync(tmp_path, 4, segment="a-worker")
    second = build_sync(tmp_path, 6, segment="b-worker")
    assert verify(tmp_path) == VerifyResult(ok=True, records=10, segments=2)

    lines = read_lines(second)
    _delete(lines, 3)
    write_lines(second, lines)
    result = verify(tmp_path)
    assert (result.ok, result.file, result.line, result.segments, result.records) == (
        False,
        second,
        3,
        2,
        4 + 2,
    )


def test_verify_of_an_empty_or_missing_directory(tmp_path: Path) -> None:
    assert verify(tmp_path) == VerifyResult(ok=True, records=0, segments=0)
    missing = verify(tmp_path / "missing")
    assert not missing.ok and missing.segments == 0


# -- write failures, for real, in a child process --


def run_child(mode: str, directory: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(CHILD), mode, str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


def test_a_failed_write_fails_its_batch_and_the_log_recovers(tmp_path: Path) -> None:
    report = run_child("efbig", tmp_path)
    failures = [*report["at_limit"], report["sync"], *report["partial"]]
    assert len(failures) == 9
    assert all(msg == "audit log write failed: [Errno 27] File too large" for msg in failures)
    assert (report["batches"], report["records"]) == (5, 5)

    assert verify(tmp_path) == VerifyResult(ok=True, records=5, segments=1)
    lines = [orjson.loads(line) for line in read_lines(segment_path(tmp_path, "child"))]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert [line["request_id"] for line in lines] == ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]


def test_a_failed_cut_back_poisons_the_log_until_restart(tmp_path: Path) -> None:
    report = run_child("poison", tmp_path)
    messages = [*report["first"], *report["later"]]
    assert len(messages) == 5
    for message in messages:
        assert message.startswith("audit log write failed: [Errno 9] Bad file descriptor")
        assert message.endswith("audit log is unusable until restart")
    assert verify(tmp_path) == VerifyResult(ok=True, records=2, segments=1)

    # A restart (a fresh open) continues the chain from the durable tip.
    log = AuditLog.open(tmp_path, "child")
    log.append_sync(make_record("after-restart"))
    log.close()
    assert verify(tmp_path) == VerifyResult(ok=True, records=3, segments=1)


def test_a_writer_that_dies_unexpectedly_answers_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a hang: if the writer thread dies of something unforeseen (here
    its answering step raises), every request waiting on it, and every later
    one, is refused with AuditUnavailable, and close still returns."""
    from keycask.audit import chain

    real = chain._answer
    calls = 0

    def broken(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unforeseen")
        real(*args)

    async def scenario() -> None:
        log = AuditLog.open(tmp_path, "w1")
        await log.append(make_record("before"))
        monkeypatch.setattr(chain, "_answer", broken)
        waited = await asyncio.gather(
            *(log.append(make_record(f"r{i}")) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, AuditUnavailable) for r in waited), waited
        assert "audit writer stopped unexpectedly" in str(waited[0])
        with pytest.raises(AuditUnavailable):
            await log.append(make_record("after"))
        assert not log.writable
        # Bounded only so that a regression fails instead of hanging the suite.
        await asyncio.wait_for(log.aclose(), 30)

    asyncio.run(scenario())
