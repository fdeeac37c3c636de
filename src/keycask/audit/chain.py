"""The audit log: a hash-chained, keyed JSON-lines segment with group commit.

Why one module of ~920 lines: the writer and the verifier must agree byte for
byte on the line formats, the chain form, the MAC input and the tail
recovery; they share the low-level readers (``_pread_exact``,
``_rfind_newline``) and the format constants, and a reader checking that
verify rejects exactly what the writer never writes needs both in view.

Line formats (one JSON object per line, UTF-8, ``\\n``-terminated)::

    v1 (unkeyed): {"seq": n, <AuditRecord.fields() in order>, "prev": "<sha256 hex>"}
    v2 (keyed):   {"seq": n, <AuditRecord.fields() in order>, "prev": "<sha256 hex>",
                   "mac": "<hmac-sha256 hex>"}

A line's *chain form* is its bytes without the newline and, for v2, without
``,"mac":"<hex>"`` (so a v1 line is its own chain form). ``seq`` starts at 1
and increases by 1; ``prev`` is the SHA-256 of the previous line's chain
form, or ``GENESIS`` on the first line; anchors record the same hash. ``mac``
is HMAC-SHA256 under the store's audit key (held behind the barrier,
``audit/anchor.py``) over ``MAC_LABEL | segment name | 0x00 | SHA-256 of the
line's chain form (32 bytes)``: the hash the next line's ``prev`` needs
anyway, so keying a line costs one short HMAC, not a second pass over it.
The segment name in the MAC stops lines being copied into another segment.
A writer writes v2 whenever it holds the key, and v1 only while the store is
sealed (no key) or for logs written before v2; both verify side by side.

Each writer (worker process) owns one segment, ``<directory>/<segment>.jsonl``,
under an exclusive ``flock``; ``verify`` checks every segment in a directory.

Durability costs one fsync, so concurrent ``append`` calls share one
write + fsync (group commit) and each returns only once its batch is durable.
If a batch cannot be made durable the file is cut back to its last durable
length and every caller in the batch gets ``AuditUnavailable``: the request
fails and has no effect. One writer thread per log does the writing: an
append costs the event loop a future and a deque append, and the writer
wakes the loop once per batch, not once per record (see ``AuditLog``).

What ``verify`` detects: with the key, an edited v2 line fails its own MAC,
so the first changed line is named exactly, however the rest was re-chained;
a line forged after the tip, or a whole forged segment, carries no valid MAC.
A keyed line vouches for every line before it too (its MAC covers ``prev``).
For v1 lines the chain names line k when line k + 1's ``prev`` no longer
matches it (or line k + 1's own ``prev`` was edited); deleting line k is
named at k (``seq`` skips), a line cut short at that line. Cutting whole
lines from the end cannot be seen from the file alone: the anchors in the
store (``audit/anchor.py``) catch that, and vouch for v1 lines up to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import hmac
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

import orjson

from keycask import metrics
from keycask.audit.record import AuditRecord, EncodedRecord, encode
from keycask.crypto import KeyMaterial
from keycask.errors import AuditUnavailable

log = logging.getLogger("keycask")

GENESIS = "0" * 64
SEGMENT_SUFFIX = ".jsonl"
MAC_LABEL = b"keycask audit line v2\x00"
_TAIL_CHUNK = 64 * 1024
_MAC_OPEN = b',"mac":"'
# ,"mac":"<64 hex>"}
_MAC_TAIL = len(_MAC_OPEN) + 64 + 2


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
    # The file's length up to and including that line (-1: not recorded, an
    # anchor from before keyed lines); lets a server adopting its segment at
    # start read only what came after.
    size: int = field(default=-1, compare=False)


# A record waiting for the writer thread, and its caller's future.
_Entry = tuple[EncodedRecord, "asyncio.Future[None]"]


class AuditLog:
    """The writer of one segment. Create it with ``AuditLog.open``.

    Group commit with one writer thread: ``append`` puts the record and its
    future on a deque and, once per event-loop iteration that appended,
    schedules a kick that wakes the writer (so every record of the
    iteration is in its first batch). The writer takes everything queued,
    chains, writes and fsyncs it, answers the whole batch with one
    call_soon_threadsafe, and takes the next batch at once if records
    arrived meanwhile. Before, each batch cost a flusher task, an executor
    hand-off and its futures' callbacks, and each record a ``_Pending``
    object: 857,300 instructions per request through Pipeline.handle
    (callgrind over ``benchmarks/pipeline_bench.py``: 64 concurrent
    Encrypts), 849,100 now.
    """

    def __init__(self, path: Path, fd: int, tip: _Tip) -> None:
        self._path = path
        self._fd = fd
        self._tip = tip
        # Serialises the chain state and the fd between the writer thread
        # and append_sync/close callers.
        self._io_lock = threading.Lock()
        # Appended on the event loop, taken by the writer thread: both ends
        # of a deque are thread-safe, and only the writer takes.
        self._queue: deque[_Entry] = deque()
        self._kicked = False  # a kick is scheduled on the loop
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        # The log closes (aclose or close): the writer stops once the queue
        # is empty, then answers the future aclose waits on, if aclose asked.
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self._closed = False
        self._poisoned: str | None = None
        # The last write's result: a failed write (disk full, I/O error) is
        # cut away and the log stays open, so only this says it is failing.
        self._failing = False
        self._batches = 0
        self._records = 0
        # Told of every record ``append`` made durable (not ``append_encoded``,
        # the requests' path): the metrics count scheduled jobs from them.
        self.observers: list[Callable[[AuditRecord], None]] = []
        self._node = b""
        self._opened = Anchor(tip.seq, tip.prev, tip.size)
        # The store's audit MAC key while the barrier is unsealed (set by
        # audit/anchor.py), else None and lines are written unkeyed (v1).
        # Read once per batch by the flusher thread; assigning is atomic.
        self._key: KeyMaterial | None = None
        self._mac_prefix = mac_prefix(self.segment)

    @classmethod
    def open(cls, directory: Path, segment: str, *, node: str | None = None) -> AuditLog:
        """Open (or create) ``<directory>/<segment>.jsonl`` and continue its chain.

        ``node`` (a cluster node's id) is written into every record as
        ``"node"``, after ``detail`` (and ``door``, when the record has one),
        so records from several nodes' segments
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
        return Anchor(self._tip.seq, self._tip.prev, self._tip.size)

    @property
    def segment(self) -> str:
        return self._path.name.removesuffix(SEGMENT_SUFFIX)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def opened_at(self) -> Anchor:
        """The tip found at ``open``: lines up to it were written before this writer."""
        return self._opened

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def set_key(self, key: KeyMaterial | None) -> None:
        """Key the lines of later batches with ``key`` (v2), or stop keying (``None``:
        the store was sealed, and the key with it)."""
        self._key = key

    def refuse(self, reason: str) -> None:
        """Refuse every later append with ``reason`` (the segment's tip is not
        one this writer may chain on from)."""
        self._poisoned = reason

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
        await self.append_encoded(encode(record))
        for observer in self.observers:
            observer(record)

    async def append_encoded(self, body: EncodedRecord) -> None:
        """``append`` of a record already encoded (``record.encode_fields``)."""
        if self._poisoned is not None or self._closed:
            self._check_accepting()
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((body, done))
        if not self._kicked:
            self._kicked = True
            loop.call_soon(self._kick)
        await done

    def append_sync(self, record: AuditRecord) -> None:
        """Write and fsync one record now, without an event loop (CLI use)."""
        self._check_accepting()
        self._commit([encode(record)])

    async def aclose(self) -> None:
        """Flush what is pending, then close. Later appends raise ``AuditUnavailable``."""
        self._closed = True
        if not self._stopping:
            # The writer closes the fd once what was queued before is written
            # (off the loop: the lock may be held by an append_sync mid-fsync).
            self._stopped = asyncio.get_running_loop().create_future()
            self._stopping = True
            self._kick()
        if self._stopped is not None:
            await asyncio.shield(self._stopped)

    def close(self) -> None:
        """Close now. Records not yet in a batch fail with ``AuditUnavailable``."""
        self._closed = True
        self._close_fd()
        if not self._stopping:
            # The writer fails what is queued (the log is closed) and stops.
            self._stopping = True
            if self._writer is not None:
                self._wake.put(None)

    # -- group commit --

    def _kick(self) -> None:
        """Wake the writer (on the loop, once per iteration that appended)."""
        self._kicked = False
        if self._poisoned is not None and not self._writer_alive():
            # Appended after the writer died (it answered what it saw).
            queued = [self._queue.popleft()[1] for _ in range(len(self._queue))]
            if queued:
                _settle(queued, AuditUnavailable(self._poisoned), None)
            if self._stopping:
                self._close_fd()
                if self._stopped is not None and not self._stopped.done():
                    self._stopped.set_result(None)
            return
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_queued, name="keycask-audit", daemon=True
            )
            self._writer.start()
        self._wake.put(None)

    def _write_queued(self) -> None:
        """The writer thread: write what is queued, batch by batch, until
        the log closes and nothing is left."""
        entries, wake = self._queue, self._wake
        batch: list[tuple[EncodedRecord, asyncio.Future[None]]] = []
        try:
            while True:
                # Read before looking at the queue: once the log closes nothing
                # more is appended, so an empty queue then means all is written.
                stopping = self._stopping
                if entries:
                    batch = [entries.popleft() for _ in range(len(entries))]
                    bodies, futures = zip(*batch, strict=True)
                    _answer(futures, *self._write(bodies))
                    batch = []
                elif stopping:
                    break
                else:
                    wake.get()
        except BaseException as exc:
            # Never a hang: a writer that died unexpectedly would leave every
            # waiting request, and every later one, unanswered. The log
            # refuses from now on, and whoever waits is told.
            self._poisoned = f"audit writer stopped unexpectedly: {exc!r}; unusable until restart"
            log.error("%s", self._poisoned)
            waiting = [done for _, done in batch]
            waiting += [entries.popleft()[1] for _ in range(len(entries))]
            if waiting:
                _answer(waiting, AuditUnavailable(self._poisoned), exc)
            self._close_fd()
            if self._stopped is not None:
                _answer((self._stopped,), None, None)
            return
        self._close_fd()
        if self._stopped is not None:
            _answer((self._stopped,), None, None)

    def _writer_alive(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    def _write(
        self, bodies: Sequence[bytes]
    ) -> tuple[AuditUnavailable | None, BaseException | None]:
        """``_commit``; the error each caller of the batch gets, and its cause."""
        try:
            self._commit(bodies)
        except AuditUnavailable as exc:
            metrics.AUDIT_WRITE_FAILURES.inc()
            return exc, exc.__cause__
        except Exception as exc:
            metrics.AUDIT_WRITE_FAILURES.inc()
            return AuditUnavailable(f"audit log failed: {exc!r}"), exc
        return None, None

    def _commit(self, bodies: Sequence[bytes]) -> None:
        """Append ``bodies`` as chained lines with one write + fsync (blocking)."""
        with self._io_lock:
            if self._poisoned is not None:
                raise AuditUnavailable(self._poisoned)
            if self._fd < 0:
                raise AuditUnavailable("audit log is closed")
            data, tip = _chain(bodies, self._tip, self._key, self._mac_prefix, self._node)
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                self._roll_back(f"audit log write failed: {exc}", exc)
            started = time.perf_counter()
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._roll_back(f"audit log fsync failed: {exc}", exc)
            metrics.AUDIT_FSYNC_SECONDS.observe(time.perf_counter() - started)
            self._tip = tip
            self._failing = False
            self._batches += 1
            self._records += len(bodies)
            metrics.AUDIT_BATCH_SIZE.observe(len(bodies))
            metrics.AUDIT_RECORDS.inc(len(bodies))

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


def _answer(
    futures: Sequence[asyncio.Future[None]],
    error: AuditUnavailable | None,
    cause: BaseException | None,
) -> None:
    """From the writer thread: settle ``futures`` with one wake-up of their
    loop (of each loop, if a test appended from several)."""
    loop = futures[0].get_loop()
    for done in futures:
        if done.get_loop() is not loop:
            for other in {f.get_loop() for f in futures}:
                _answer([f for f in futures if f.get_loop() is other], error, cause)
            return
    # A closed loop raises RuntimeError: nobody waits on its futures any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, futures, error, cause)


def _settle(
    futures: Sequence[asyncio.Future[None]],
    error: AuditUnavailable | None,
    cause: BaseException | None,
) -> None:
    for done in futures:
        if done.done():
            continue  # the caller was cancelled
        if error is None:
            done.set_result(None)
        else:
            # One exception object per caller: tracebacks get attached per raise.
            failure = AuditUnavailable(str(error))
            failure.__cause__ = cause
            done.set_exception(failure)


def mac_prefix(segment: str) -> bytes:
    """What every MAC of ``segment``'s lines starts with."""
    return MAC_LABEL + segment.encode() + b"\x00"


def line_mac(key: KeyMaterial, prefix: bytes, digest: bytes) -> bytes:
    """The ``mac`` value (hex) of a line whose chain form hashes to ``digest``."""
    return key.hmac_sha256(prefix + digest).hex().encode("ascii")


def chain_form(line: bytes) -> bytes:
    """``line`` (no newline) without its ``mac`` member: what ``prev`` hashes."""
    if line[-_MAC_TAIL:].startswith(_MAC_OPEN) and line.endswith(b'"}'):
        return line[:-_MAC_TAIL] + b"}"
    return line


def _chain(
    bodies: Sequence[bytes], tip: _Tip, key: KeyMaterial | None, prefix: bytes, node: bytes = b""
) -> tuple[bytes, _Tip]:
    """Serialise ``bodies`` as lines linked from ``tip``; return the bytes and the new tip.

    Same bytes as ``orjson.dumps({"seq": n, **fields, "prev": prev})``, with
    ``node`` (``,"node":"<id>"`` or nothing) after the fields and ``"mac"``
    appended as the last member when keyed.
    """
    seq, prev = tip.seq, tip.prev
    lines: list[bytes] = []
    for body in bodies:
        seq += 1
        line = b'{"seq":%d,%b%b,"prev":"%b"}' % (seq, body, node, prev.encode("ascii"))
        digest = hashlib.sha256(line).digest()
        if key is not None:
            line = b'%b,"mac":"%b"}' % (line[:-1], line_mac(key, prefix, digest))
        prev = digest.hex()
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
    return _Tip(seq, hashlib.sha256(chain_form(line)).hexdigest(), complete)


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


# -- quarantine --


def quarantine_tail(path: Path, keep: int, stamp: str) -> Path | None:
    """Move everything after byte ``keep`` of segment ``path`` into
    ``<segment>.jsonl.quarantined-<stamp>`` (kept as evidence; ``verify``
    reads only ``*.jsonl``) and cut the segment back to ``keep`` bytes, under
    the writer's lock so no writer is using it. None if there was nothing past ``keep``."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        _lock(fd, path)
        size = os.fstat(fd).st_size
        if size <= keep:
            return None
        tail = _pread_exact(fd, size - keep, keep)
        aside = path.with_name(f"{path.name}.quarantined-{stamp}")
        out = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(out, tail)
            os.fsync(out)
        finally:
            os.close(out)
        _fsync_dir(path.parent)  # the evidence is durable before the segment shrinks
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return aside
    finally:
        os.close(fd)  # also releases the flock


# -- verification --


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of ``verify``: the first problem found, if any.

    ``records`` counts the lines that checked out before the problem;
    ``line`` is 1-based. ``beyond_anchors`` counts lines past their
    segment's anchor that a MAC vouches for (written in the last second
    before a crash, or by a server still running); ``unkeyed`` counts v1
    lines (older logs, or written while sealed). ``sealed_tails`` lists
    (segment, first, last) of unkeyed lines past an anchor that no MAC vouches
    for but that record only what a sealed server writes: written while
    sealed, or forged, which nobody can tell apart.
    """

    ok: bool
    records: int
    segments: int
    file: Path | None = None
    line: int | None = None
    problem: str | None = None
    beyond_anchors: int = field(default=0, compare=False)
    unkeyed: int = field(default=0, compare=False)
    sealed_tails: tuple[tuple[Path, int, int], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What ``scan_segment`` found in one segment.

    ``failure`` is (line, problem) for the first line that is certainly not
    what keycask wrote. ``sealed_tail`` is (first, last) of the unkeyed lines
    past the anchor that no MAC vouches for, when each records only what a
    sealed server writes. ``vouched`` is (line, byte length) of the last line
    the anchor or a MAC vouches for: what a quarantine keeps.
    """

    lines: int
    failure: tuple[int, str] | None
    sealed_tail: tuple[int, int] | None = None
    beyond_anchor: int = 0
    unkeyed: int = 0
    vouched: tuple[int, int] = (0, 0)


def verify(
    directory: Path,
    anchors: Mapping[str, Anchor] | None = None,
    key: KeyMaterial | None = None,
) -> VerifyResult:
    """Check every ``*.jsonl`` segment in ``directory``, in name order.

    With ``anchors`` (segment name -> Anchor, as read from the store), also
    check that each anchored segment still exists and still holds its
    anchored line unchanged, and that every line past its anchor (every line
    of a segment the store never anchored) is vouched for by a MAC under
    ``key``, the store's audit key, or is a sealed server's (see
    ``VerifyResult``). ``key`` None with ``anchors`` means the store has no
    audit key yet (it predates keyed lines): a keyed line then fails, and
    lines past the anchors are not authenticated. Without ``anchors`` (a
    sealed store) only the chain is checked.
    """
    if not directory.is_dir():
        return VerifyResult(False, 0, 0, problem=f"{directory} is not a directory")
    records = beyond = unkeyed = 0
    tails: list[tuple[Path, int, int]] = []
    segments = sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))
    missing = sorted(set(anchors or {}) - {p.name.removesuffix(SEGMENT_SUFFIX) for p in segments})
    if missing:
        path = directory / f"{missing[0]}{SEGMENT_SUFFIX}"
        return VerifyResult(
            False, 0, 0, path, 1, "segment is missing, but the store recorded lines in it"
        )
    for index, segment in enumerate(segments, start=1):
        name = segment.name.removesuffix(SEGMENT_SUFFIX)
        anchor = None if anchors is None else anchors.get(name)
        scan = scan_segment(segment, anchor, key, checked=anchors is not None)
        records += scan.lines
        beyond += scan.beyond_anchor
        unkeyed += scan.unkeyed
        if scan.sealed_tail is not None:
            tails.append((segment, *scan.sealed_tail))
        if scan.failure is not None:
            line, problem = scan.failure
            return VerifyResult(
                False, records, index, segment, line, problem, beyond, unkeyed, tuple(tails)
            )
    return VerifyResult(
        True, records, len(segments), None, None, None, beyond, unkeyed, tuple(tails)
    )


def sealed_shaped(obj: Mapping[str, object]) -> bool:
    """Whether a line records only what a sealed server writes: a refused
    call with no authenticated caller, or an operator call (Status and Unseal
    while sealed, and the record of a Seal written after it took effect).
    An unkeyed line past the anchor that is not is certainly forged."""
    operation = obj.get("operation")
    if isinstance(operation, str) and operation.startswith("KeycaskOperator."):
        return True
    return obj.get("principal") is None and obj.get("outcome") == "error"


def scan_segment(
    path: Path,
    anchor: Anchor | None,
    key: KeyMaterial | None,
    *,
    checked: bool = True,
    stop: int | None = None,
    from_anchor: bool = False,
) -> SegmentScan:
    """Check one segment's lines against the chain, their MACs and ``anchor``.

    ``checked`` False skips what needs the store (anchor and MACs: a sealed
    verify). ``stop`` ends the scan after that line; ``from_anchor`` starts
    it after the anchored line when the anchor knows its byte offset (a
    server adopting its segment at start need not read what it anchored).
    """
    state = _ScanState(mac_prefix(path.name.removesuffix(SEGMENT_SUFFIX)), key, checked, anchor)
    with path.open("rb") as stream:
        if from_anchor and anchor is not None and anchor.size > 0:
            if not _anchored_line_ends_at(stream, anchor):
                return SegmentScan(0, (anchor.seq, "line differs from the one the store recorded"))
            stream.seek(anchor.size)
            state.resume_at(anchor)
        for raw in stream:
            if stop is not None and state.number >= stop:
                break
            failure = state.check(raw)
            if failure is not None:
                return state.result(failure, failure[0] - 1)
    number = state.number
    if checked and anchor is not None and number < anchor.seq:
        return state.result(
            (
                number + 1,
                f"segment ends at line {number}, but the store recorded line {anchor.seq}: "
                "lines were removed from the end",
            ),
            number,
        )
    return state.finish()


def _anchored_line_ends_at(stream: BinaryIO, anchor: Anchor) -> bool:
    """Whether the line ending at byte ``anchor.size`` hashes to ``anchor.digest``."""
    fd = stream.fileno()
    if os.fstat(fd).st_size < anchor.size:
        return False
    try:
        end = anchor.size - 1
        if _pread_exact(fd, 1, end) != b"\n":
            return False
        start = _rfind_newline(fd, end) + 1
        line = _pread_exact(fd, end - start, start)
    except AuditUnavailable:
        return False
    return _same(hashlib.sha256(chain_form(line)).hexdigest(), anchor.digest)


def _same(digest: str, anchored: str) -> bool:
    return hmac.compare_digest(digest.encode(), anchored.encode())


class _ScanState:
    """The running state of one segment's scan."""

    def __init__(
        self, prefix: bytes, key: KeyMaterial | None, checked: bool, anchor: Anchor | None
    ) -> None:
        self.prefix = prefix
        self.key = key if checked else None
        self.checked = checked
        self.anchor = anchor
        self.anchor_seq = anchor.seq if anchor is not None else 0
        self.number = 0
        self.size = 0
        self.prev = GENESIS
        self.prev_keyed = False  # the previous line's MAC was checked and held
        self.keyed = False  # this line's MAC was checked and held
        self.vouched = (0, 0)
        # Lines past the anchor not yet vouched for: the first, and the first
        # that is not a sealed server's.
        self.pending: int | None = None
        self.not_sealed: int | None = None
        self.beyond = 0
        self.unkeyed = 0

    def resume_at(self, anchor: Anchor) -> None:
        self.number, self.prev, self.size = anchor.seq, anchor.digest, anchor.size
        self.prev_keyed = True  # the anchor vouches for it
        self.vouched = (anchor.seq, anchor.size)

    def result(self, failure: tuple[int, str], lines: int) -> SegmentScan:
        return SegmentScan(lines, failure, None, self.beyond, self.unkeyed, self.vouched)

    def finish(self) -> SegmentScan:
        if self.pending is None or not self.checked or self.key is None:
            # Nothing unvouched, or a store without an audit key (older logs):
            # nothing can vouch for lines past the anchor, nor refute them.
            return SegmentScan(self.number, None, None, self.beyond, self.unkeyed, self.vouched)
        if self.not_sealed is not None:
            where = (
                "the store never anchored this segment"
                if self.anchor is None
                else f"the store recorded up to line {self.anchor_seq}"
            )
            problem = (
                f"line carries no valid MAC, {where}, and it records more than a sealed "
                "server writes: forged"
            )
            return self.result((self.not_sealed, problem), self.not_sealed - 1)
        return SegmentScan(
            self.number,
            None,
            (self.pending, self.number),
            self.beyond,
            self.unkeyed,
            self.vouched,
        )

    def check(self, raw: bytes) -> tuple[int, str] | None:
        number = self.number + 1
        if not raw.endswith(b"\n"):
            return number, "line does not end with a newline (cut short)"
        line = raw[:-1]
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return number, f"line is not valid JSON: {exc}"
        if not isinstance(obj, dict):
            return number, "line is not a JSON object"
        seq = obj.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq != number:
            return number, f"seq is {seq!r}, expected {number}"
        self.keyed = False
        if "mac" in obj:
            if not (line.startswith(b"{") and line[-_MAC_TAIL:].startswith(_MAC_OPEN)):
                return number, "mac is not the line's last member"
            digest = hashlib.sha256(line[:-_MAC_TAIL] + b"}").digest()
            problem = self._check_mac(line, digest)
            if problem is not None:
                return number, problem
        else:
            digest = hashlib.sha256(line).digest()
            self.unkeyed += 1
        if obj.get("prev") != self.prev:
            return self._broken_link(number)
        self.number, self.prev = number, digest.hex()
        self.size += len(raw)
        self.prev_keyed = self.keyed
        if self.checked and number == self.anchor_seq:
            assert self.anchor is not None
            if not _same(self.prev, self.anchor.digest):
                return number, "line differs from the one the store recorded"
            self.vouched = (number, self.size)
        elif number > self.anchor_seq:
            self._past_anchor(number, obj)
        return None

    def _check_mac(self, line: bytes, digest: bytes) -> str | None:
        if self.key is None:
            if self.checked:
                return "line carries a MAC, but the store holds no audit key (was it removed?)"
            return None  # a sealed verify: the chain alone
        expected = line_mac(self.key, self.prefix, digest)
        if not hmac.compare_digest(expected, line[-_MAC_TAIL + len(_MAC_OPEN) : -2]):
            return "line was changed or forged: its MAC does not match"
        self.keyed = True
        return None

    def _broken_link(self, number: int) -> tuple[int, str]:
        if number == 1:
            return 1, "prev does not match the hash of GENESIS"
        if self.prev_keyed:
            # Line number - 1 is authentic, so this line's prev was changed.
            return number, f"prev does not match the hash of line {number - 1}"
        if self.keyed:
            return number - 1, f"line was changed: its hash no longer matches line {number}'s prev"
        return number - 1, (
            f"line was changed (or line {number}'s prev was): its hash no longer "
            f"matches line {number}'s prev"
        )

    def _past_anchor(self, number: int, obj: Mapping[str, object]) -> None:
        if self.keyed:
            # A MAC over prev vouches for every line before it.
            start = number if self.pending is None else self.pending
            self.beyond += number - start + 1
            self.pending = self.not_sealed = None
            self.vouched = (number, self.size)
            return
        if self.pending is None:
            self.pending = number
        if self.not_sealed is None and not sealed_shaped(obj):
            self.not_sealed = number
