"""Makes the audit log's disk writes fail for real, in a child process.

Run by tests/unit/test_audit_chain.py as ``python audit_child.py MODE DIRECTORY``;
prints one JSON line describing what it saw and exits 0 when every check held.
A child, because the faults (a file-size rlimit, a file descriptor swapped
under the log) must not leak into the pytest process.

Modes:

``efbig``
    RLIMIT_FSIZE at the current size makes ``write`` fail with EFBIG (CPython
    ignores SIGXFSZ); at size + 10 the write is partial first, so the cut-back
    really has bytes to remove. After the limit is lifted, appends succeed.
``poison``
    The log's descriptor is replaced (dup2) by a read-only one on the same
    file: ``write`` fails with EBADF and the cut-back ``ftruncate`` fails with
    EINVAL. The log must stay refused even once the writable descriptor is back.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from keycask.audit import AuditLog, AuditRecord
from keycask.errors import AuditUnavailable

SEGMENT = "child"


def record(request_id: str) -> AuditRecord:
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=request_id,
        operation="Encrypt",
        principal="arn:aws:iam::111122223333:user/alice",
        access_key_id="AKIAEXAMPLE",
        source_ip="192.0.2.1",
        key_arn="arn:aws:kms:eu-west-1:111122223333:key/1234",
        encryption_context={"purpose": "test"},
        decision="allow",
        decided_by="key policy",
        outcome="success",
        error_code=None,
    )


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"check failed: {message}")


async def failing_batch(log: AuditLog, prefix: str, count: int) -> list[str]:
    """Append ``count`` records concurrently; return each caller's error message."""
    results = await asyncio.gather(
        *(log.append(record(f"{prefix}-{i}")) for i in range(count)), return_exceptions=True
    )
    for result in results:
        check(isinstance(result, AuditUnavailable), f"expected AuditUnavailable, got {result!r}")
    return [str(result) for result in results]


async def efbig(directory: Path) -> dict[str, object]:
    log = AuditLog.open(directory, SEGMENT)
    path = directory / f"{SEGMENT}.jsonl"
    for i in range(3):
        await log.append(record(f"ok-{i}"))
    size = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    at_limit = await failing_batch(log, "lost-at-limit", 4)
    check(path.stat().st_size == size, "size changed after a write at the limit")
    try:
        log.append_sync(record("lost-sync"))
        check(False, "append_sync succeeded past the limit")
    except AuditUnavailable as exc:
        sync_error = str(exc)
    check(path.stat().st_size == size, "size changed after append_sync at the limit")

    # A little room: the first bytes land, the rest fails, the cut-back removes them.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
    partial = await failing_batch(log, "lost-partial", 4)
    check(path.stat().st_size == size, "partial write was not cut back")

    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    await log.append(record("ok-3"))
    log.append_sync(record("ok-4"))
    batches, records = log.batches_written, log.records_written
    await log.aclose()
    return {
        "at_limit": at_limit,
        "sync": sync_error,
        "partial": partial,
        "batches": batches,
        "records": records,
    }


def descriptor_of(path: Path) -> int:
    """The fd this process holds on ``path`` (found through /proc, not the log's internals)."""
    target = str(path.resolve())
    fds = [
        int(name)
        for name in os.listdir("/proc/self/fd")
        if _readlink(f"/proc/self/fd/{name}") == target
    ]
    check(len(fds) == 1, f"expected one descriptor on {target}, found {fds}")
    return fds[0]


def _readlink(link: str) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


async def poison(directory: Path) -> dict[str, object]:
    log = AuditLog.open(directory, SEGMENT)
    path = directory / f"{SEGMENT}.jsonl"
    for i in range(2):
        await log.append(record(f"ok-{i}"))
    size = path.stat().st_size

    fd = descriptor_of(path)
    writable = os.dup(fd)  # keeps the original open file (and its flock) alive
    read_only = os.open(path, os.O_RDONLY)
    os.dup2(read_only, fd)
    first = await failing_batch(log, "lost-poison", 3)
    check(path.stat().st_size == size, "size changed while poisoned")

    os.dup2(writable, fd)  # the cause is gone, but the log must stay refused
    later: list[str] = []
    try:
        await log.append(record("lost-after-restore"))
        check(False, "append succeeded on a poisoned log")
    except AuditUnavailable as exc:
        later.append(str(exc))
    try:
        log.append_sync(record("lost-sync-after-restore"))
        check(False, "append_sync succeeded on a poisoned log")
    except AuditUnavailable as exc:
        later.append(str(exc))
    check(path.stat().st_size == size, "a poisoned log wrote")
    log.close()
    return {"first": first, "later": later}


def main() -> None:
    mode, directory = sys.argv[1], Path(sys.argv[2])
    scenarios = {"efbig": efbig, "poison": poison}
    report = asyncio.run(scenarios[mode](directory))
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main()
