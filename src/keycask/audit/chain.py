"""The audit log: a hash-chained JSON-lines segment with group commit.

Line format (one JSON object per line, UTF-8, ``\\n``-terminated)::

    {"seq": n, <AuditRecord.fields() in order>, "prev": "<sha256 hex>"}

``seq`` starts at 1 and increases by 1; ``prev`` is the SHA-256 of the
previous line's bytes without its newline, or ``GENESIS`` on the first line.
Each writer (worker process) owns one segment, ``<directory>/<segment>.jsonl``,
under an exclusive ``flock``; ``verify`` checks every segment in a directory.

Durability costs one fsync, so concurrent ``append`` calls share one
write + fsync (group commit) and each returns only once its batch is durable.
If a batch cannot be made durable the file is cut back to its last durable
length and every caller in the batch gets ``AuditUnavailable``: the request
fails and has no effect.

What the chain detects, and what it does not: ``verify`` reports the first
line at which the chain breaks. An edit that leaves line k well-formed is
detected at line k + 1 (its ``prev`` no longer matches); an edit that breaks
line k's JSON, ``seq`` or ``prev`` is detected at line k. Deleting line k is
detected at line k (``seq`` skips), reordering at the first moved line, a
forged inserted line at the line after it at the latest, and a line cut short
at that line (no newline). The hash is unkeyed, so the chain is evidence only
up to its tip: edits to the last line, removal of whole lines from the end, or
a rewrite of every line after an edit cannot be seen from the file alone.
Anchor the tip (``prev`` of a new line) somewhere the attacker cannot write.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import orjson

from keycask.audit.record import AuditRecord
from keycask.errors import AuditUnavailable

GENESIS = "0" * 64
SEGMENT_SUFFIX = ".jsonl"
_TAIL_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Tip:
    """The durable end of the chain: what the next line links to."""

    seq: int
    prev: str
    size: int


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a segment ended when last recorded outside the file (in the
    barrier-protected store): line ``seq`` hashed to ``digest``.

    The hash chain alone shows an edit, but not lines cut from the end, nor a
    tail rewritten by someone who can write the file; the anchor does.
    """

    seq: int
    digest: str


@dataclass(slots=True)
class _Pending:
    body: bytes
    done: asyncio.Future[None]


class AuditLog:
    """The writer of one segment. Create it with ``AuditLog.open``."""

    def __init__(self, path: Path, fd: int, tip: _Tip) -> None:
        self._path = path
        self._fd = fd
        self._tip = tip
        # Serialises the chain state and the fd between the flusher's thread
        # and append_sync/close callers.
        self._io_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keycask-audit")
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._poisoned: str | None = None
        # The last write's result: a failed write (disk full, I/O error) is
        # cut away and the log stays open, so only this says it is failing.
        self._failing = False
        self._batches = 0
        self._records = 0
        self._node = b""

    @classmethod
    def open(cls, directory: Path, segment: str, *, node: str | None = None) -> AuditLog:
        """Open (or create) ``<directory>/<segment>.jsonl`` and continue its chain.

        ``node`` (a cluster node's id) is written into every record as
        ``"node"``, after ``detail``, so records from several nodes' segments
        can be merged and still say where each came from.

        Raises ``AuditUnavailable`` when another process holds the segment or
        its last complete line cannot be read.
        """
        _check_segment_name(segment)
        path = directory / f"{segment}{SEGMENT_SUFFIX}"
        try:
            _make_private_dir(directory)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditUnavailable(f"audit segment {path} could not be opened: {exc}") from exc
        try:
            _lock(fd, path)
            tip = _recover_tip(fd, path)
            _fsync_dir(directory)  # makes a newly created file's name durable
        except OSError as exc:
            os.close(fd)
            raise AuditUnavailable(f"audit segment {path} could not be opened: {exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        log = cls(path, fd, tip)
        if node is not None:
            log._node = b',"node":' + orjson.dumps(node)
        return log

    @property
    def tip(self) -> Anchor:
        """The last durable line: its seq and the SHA-256 of its bytes."""
        return Anchor(self._tip.seq, self._tip.prev)

    @property
    def segment(self) -> str:
        return self._path.name.removesuffix(SEGMENT_SUFFIX)

    @property
    def batches_written(self) -> int:
        """Write + fsync batches made durable by this writer since ``open``."""
        return self._batches

    @property
    def records_written(self) -> int:
        """Records made durable by this writer since ``open``."""
        return self._records

    async def append(self, record: AuditRecord) -> None:
        """Return once ``record`` is durable; raise ``AuditUnavailable`` if it cannot be."""
        self._check_accepting()
        loop = asyncio.get_running_loop()
        entry = _Pending(_encode_body(record) + self._node, loop.create_future())
        self._pending.append(entry)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        await entry.done

    def append_sync(self, record: AuditRecord) -> None:
        """Write and fsync one record now, without an event loop (CLI use)."""
        self._check_accepting()
        self._commit([_encode_body(record) + self._node])

    async def aclose(self) -> None:
        """Flush what is pending, then close. Later appends raise ``AuditUnavailable``."""
        self._closed = True
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._fd >= 0:
            # Off the loop: the lock may be held by an append_sync mid-fsync.
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_fd)
        self._executor.shutdown(wait=False)

    def close(self) -> None:
        """Close now. Records not yet in a batch fail with ``AuditUnavailable``."""
        self._closed = True
        self._close_fd()
        self._executor.shutdown(wait=False)

    # -- group commit --

    async def _flush(self) -> None:
        # One flusher per log. No await separates the emptiness check from
        # clearing _flusher, so an append can never be left without one.
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush_batch(batch)
        finally:
            self._flusher = None

    async def _flush_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._commit, [p.body for p in batch])
        except asyncio.CancelledError:
            # The batch may still land on disk; its callers must not be
            # answered as if it had, and must not wait forever.
            _fail(batch, AuditUnavailable("audit flush was cancelled"), None)
            raise
        except AuditUnavailable as exc:
            _fail(batch, exc, exc.__cause__)
        except Exception as exc:
            _fail(batch, AuditUnavailable(f"audit log failed: {exc!r}"), exc)
        else:
            for pending in batch:
                if not pending.done.done():  # the caller may have been cancelled
                    pending.done.set_result(None)

    def _commit(self, bodies: Sequence[bytes]) -> None:
        """Append ``bodies`` as chained lines with one write + fsync (blocking)."""
        with self._io_lock:
            if self._poisoned is not None:
                raise AuditUnavailable(self._poisoned)
            if self._fd < 0:
                raise AuditUnavailable("audit log is closed")
            data, tip = _chain(bodies, self._tip)
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                self._roll_back(f"audit log write failed: {exc}", exc)
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._roll_back(f"audit log fsync failed: {exc}", exc)
            self._tip = tip
            self._failing = False
            self._batches += 1
            self._records += len(bodies)

    def _roll_back(self, failure: str, cause: OSError) -> NoReturn:
        """Cut the failed batch away, then raise ``AuditUnavailable(failure)``.

        The file must end on the durable chain tip so the next batch links to
        it. If even the cut fails the file's end is unknown and appending could
        fork the chain, so the log refuses everything until restart.
        """
        self._failing = True
        try:
            os.ftruncate(self._fd, self._tip.size)
            os.fsync(self._fd)
        except OSError as exc:
            self._poisoned = (
                f"{failure}; cutting {self._path} back to {self._tip.size} bytes also "
                f"failed: {exc}; audit log is unusable until restart"
            )
            raise AuditUnavailable(self._poisoned) from exc
        raise AuditUnavailable(failure) from cause

    @property
    def writable(self) -> bool:
        """False once the log refuses appends (closed, or poisoned by a failed cut)."""
        return self._poisoned is None and not self._closed

    @property
    def failing(self) -> bool:
        """True while the last write failed: until a write succeeds again,
        every request will be refused."""
        return self._failing

    def _check_accepting(self) -> None:
        if self._poisoned is not None:
            raise AuditUnavailable(self._poisoned)
        if self._closed:
            raise AuditUnavailable("audit log is closed")

    def _close_fd(self) -> None:
        with self._io_lock:
            if self._fd >= 0:
                os.close(self._fd)  # also releases the flock
                self._fd = -1


def _fail(batch: list[_Pending], exc: AuditUnavailable, cause: BaseException | None) -> None:
    for pending in batch:
        if not pending.done.done():
            # One exception object per caller: tracebacks get attached per raise.
            error = AuditUnavailable(str(exc))
            error.__cause__ = cause
            pending.done.set_exception(error)


def _encode_body(record: AuditRecord) -> bytes:
    """The record's JSON members without braces, ready to splice between seq and prev.

    Done on the caller's task: an unencodable record fails its own request
    instead of the whole batch.
    """
    try:
        encoded = orjson.dumps(record.fields())
    except (TypeError, ValueError) as exc:
        raise AuditUnavailable(f"audit record could not be encoded: {exc}") from exc
    return encoded[1:-1]


def _chain(bodies: Sequence[bytes], tip: _Tip) -> tuple[bytes, _Tip]:
    """Serialise ``bodies`` as lines linked from ``tip``; return the bytes and the new tip.

    Same bytes as ``orjson.dumps({"seq": n, **fields, "prev": prev})``.
    """
    seq, prev = tip.seq, tip.prev
    lines: list[bytes] = []
    for body in bodies:
        seq += 1
        line = b'{"seq":%d,%b,"prev":"%b"}' % (seq, body, prev.encode("ascii"))
        prev = hashlib.sha256(line).hexdigest()
        lines.append(line)
    lines.append(b"")
    data = b"\n".join(lines)
    return data, _Tip(seq, prev, tip.size + len(data))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]


# -- opening a segment --


def _check_segment_name(segment: str) -> None:
    if not segment or segment in (".", "..") or "/" in segment or "\0" in segment:
        raise ValueError(f"invalid audit segment name: {segment!r}")


def _make_private_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _fsync_dir(directory.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise AuditUnavailable(f"audit segment {path} is in use by another process") from exc


def _recover_tip(fd: int, path: Path) -> _Tip:
    """Find where the chain ends, cutting away a partial last line.

    A line without its newline was being written when the process died, so
    its batch was never acknowledged: dropping it loses no answered request.
    """
    size = os.fstat(fd).st_size
    last_newline = _rfind_newline(fd, size)
    complete = last_newline + 1
    if complete < size:
        os.ftruncate(fd, complete)
        os.fsync(fd)
    if complete == 0:
        return _Tip(0, GENESIS, 0)
    start = _rfind_newline(fd, last_newline) + 1
    line = _pread_exact(fd, last_newline - start, start)
    seq = _seq_of(line)
    if seq is None:
        raise AuditUnavailable(
            f"audit segment {path} ends with an unreadable line; run audit verify"
        )
    return _Tip(seq, hashlib.sha256(line).hexdigest(), complete)


def _rfind_newline(fd: int, end: int) -> int:
    """Offset of the last ``\\n`` before ``end``, or -1. Reads backwards in chunks."""
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        found = _pread_exact(fd, pos - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        pos = start
    return -1


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        part = os.pread(fd, length, offset)
        if not part:
            raise AuditUnavailable("audit segment shrank while being read")
        parts.append(part)
        length -= len(part)
        offset += len(part)
    return b"".join(parts)


def _seq_of(line: bytes) -> int | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    seq = obj.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1:
        return seq
    return None


# -- verification --


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of ``verify``: the first problem found, if any.

    ``records`` counts the lines that checked out before the problem;
    ``line`` is 1-based.
    """

    ok: bool
    records: int
    segments: int
    file: Path | None = None
    line: int | None = None
    problem: str | None = None


def verify(directory: Path, anchors: Mapping[str, Anchor] | None = None) -> VerifyResult:
    """Check every ``*.jsonl`` segment in ``directory``, in name order.

    With ``anchors`` (segment name -> Anchor), also check that each anchored
    segment still exists and still holds its anchored line unchanged.
    """
    if not directory.is_dir():
        return VerifyResult(False, 0, 0, problem=f"{directory} is not a directory")
    records = 0
    segments = sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))
    anchors = anchors or {}
    missing = sorted(set(anchors) - {p.name.removesuffix(SEGMENT_SUFFIX) for p in segments})
    if missing:
        path = directory / f"{missing[0]}{SEGMENT_SUFFIX}"
        return VerifyResult(
            False, 0, 0, path, 1, "segment is missing, but the store recorded lines in it"
        )
    for index, segment in enumerate(segments, start=1):
        anchor = anchors.get(segment.name.removesuffix(SEGMENT_SUFFIX))
        checked, failure = _verify_segment(segment, anchor)
        records += checked
        if failure is not None:
            line, problem = failure
            return VerifyResult(False, records, index, segment, line, problem)
    return VerifyResult(True, records, len(segments))


def _verify_segment(path: Path, anchor: Anchor | None = None) -> tuple[int, tuple[int, str] | None]:
    """Return how many lines checked out, and (line, problem) for the first bad one."""
    prev = GENESIS
    number = 0
    with path.open("rb") as stream:
        for raw in stream:
            number += 1
            problem = _check_line(raw, number, prev)
            if problem is not None:
                return number - 1, (number, problem)
            prev = hashlib.sha256(raw[:-1]).hexdigest()
            if anchor is not None and number == anchor.seq and prev != anchor.digest:
                return number - 1, (number, "line differs from the one the store recorded")
    if anchor is not None and number < anchor.seq:
        return number, (
            number + 1,
            f"segment ends at line {number}, but the store recorded line {anchor.seq}: "
            "lines were removed from the end",
        )
    return number, None


def _check_line(raw: bytes, number: int, prev: str) -> str | None:
    if not raw.endswith(b"\n"):
        return "line does not end with a newline (cut short)"
    try:
        obj = orjson.loads(raw[:-1])
    except orjson.JSONDecodeError as exc:
        return f"line is not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return "line is not a JSON object"
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq != number:
        return f"seq is {seq!r}, expected {number}"
    if obj.get("prev") != prev:
        linked = "GENESIS" if number == 1 else f"line {number - 1}"
        return f"prev does not match the hash of {linked}"
    return None
