"""Every request takes the same path, whichever front door it came in by:
match the door, authenticate, decode, authorize and handle, audit, commit,
answer. Written once, here; a door (``door.py``, ``doors/``) only knows its
wire, and a core operation (``core/``) only its typed request.

The audit record is durable before the answer leaves, and before any write is
committed: if it cannot be written the request fails with KMSInternalException
and has no effect. A handler's writes are staged, so a refused or failed
request leaves nothing behind. A commit that fails after its record was
written gets a second record saying so, and the answer KMSInternalException.

Why one module of ~510 lines: every way a request ends (answered, refused
before any door, refused at the edge, failed after its record) writes its
audit record and its metrics here, through the same ``_record`` and
``_fail``; apart, one of those endings could skip its record.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass
from time import perf_counter

from keycask import metrics
from keycask.audit import AuditLog, AuditRecord, EncodedRecord, encode_fields
from keycask.auth import sigv4
from keycask.barrier import Barrier
from keycask.errors import (
    AuditUnavailable,
    ExpiredTokenException,
    IncompleteSignatureException,
    InvalidIdentityTokenException,
    InvalidSignatureException,
    KMSError,
    KMSInternalException,
    MissingAuthenticationTokenException,
    Sealed,
    StorageUnavailable,
    UnrecognizedClientException,
)
from keycask.ports import Clock, Coordinator
from keycask.service.core.call import Call, Outcome, new_request_id
from keycask.service.core.deps import Deps
from keycask.service.core.managed import ManagedKeys
from keycask.service.core.usage import Usage
from keycask.service.door import Action, Door, Doors
from keycask.service.doors.signed import AUTHENTICATION_FAILURES
from keycask.service.freshness import Freshness
from keycask.service.ratelimit import RateLimiter

log = logging.getLogger("keycask")

_INTERNAL = "An internal error occurred; the request had no effect."
# Requests the HTTP layer refuses (400/408/431) recorded one by one, process
# wide: a burst of 50, then 20 a second. Beyond that they are counted, and the
# count is recorded once a second while any go unrecorded: a flood of garbage
# costs at most ~21 small audit lines a second, not one per refusal.
_EDGE_RATE, _EDGE_BURST = 20.0, 50
_EDGE_SUMMARY_DELAY = 1.0
EDGE_REFUSED = "HttpRefused"
# How long /readyz waits for the store before calling it unreachable.
_READY_TIMEOUT = 2.0
# How long a request waits for a keyring reload that another node's commit
# started (a rekey elsewhere seals this node; see Freshness.current).
_FOLLOW_TIMEOUT = 2.0


def _error_codes(cls: type[KMSError]) -> set[str]:
    codes = {cls.code}
    for sub in cls.__subclasses__():
        codes |= _error_codes(sub)
    return codes


# Every error a request can be answered with is a KMSError class of
# errors.py: its code is a label value; anything else would count as "other".
metrics.known_error_codes(_error_codes(KMSError))

_AUTHENTICATION_FAILURES = (*AUTHENTICATION_FAILURES, InvalidIdentityTokenException)


def auth_failure_reason(error: KMSError) -> str:
    """Why authentication failed, in a few words (keycask_auth_failures_total's
    reason label): from the error's class and, for a signature, its fixed wording."""
    if isinstance(error, MissingAuthenticationTokenException):
        return "missing"
    if isinstance(error, IncompleteSignatureException):
        return "malformed"
    if isinstance(error, InvalidSignatureException):
        message = str(error)
        if message.startswith(("Signature expired", "Signature not yet current")):
            return "skew"
        if message.startswith(("Date in Credential scope", "Credential should be scoped")):
            return "scope"
        return "bad_signature"
    if isinstance(error, UnrecognizedClientException):
        return "operator_token" if str(error).startswith("The operator token") else "unknown_key"
    if isinstance(error, ExpiredTokenException):
        return "expired"
    return "web_identity"


def _log_request(call: Call, seconds: float) -> None:
    """The request's log event: what the metrics count, with its request id;
    never a body, a key or a caller's secret."""
    log.info(
        "request %s answered",
        call.request_id,
        extra={
            "event": "request",
            "fields": {
                "request_id": call.request_id,
                "door": call.door,
                "operation": call.operation,
                "outcome": "error" if call.error_code else "success",
                "error_code": call.error_code,
                "duration_seconds": round(seconds, 6),
            },
        },
    )


def _edge_code(status: int) -> str:
    """``BadRequest``, ``RequestTimeout``, ...: the status's name, AWS-style."""
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


# Not frozen, though nothing changes one once made: 0.39 us per Reply frozen
# against ~0.14 us (thread_time; a frozen dataclass sets each field through
# object.__setattr__), and every request makes one.
@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    request_id: str
    content_type: bytes = b"application/x-amz-json-1.1"
    # More headers of the answer (the Azure Key Vault door's 401 challenge).
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Pipeline:
    def __init__(
        self,
        doors: Doors,
        deps: Deps,
        audit: AuditLog,
        clock: Clock,
        *,
        coordinator: Coordinator,
        barrier: Barrier,
        freshness: Freshness,
        managed: ManagedKeys,
    ) -> None:
        """``clock`` is the wall clock (SigV4 freshness, audit times);
        ``deps.clock`` is lifecycle time."""
        self.doors = doors
        self._deps = deps
        self._audit = audit
        self._clock = clock
        # Writes run one at a time across all processes on the store.
        self._coordinator = coordinator
        self._barrier = barrier
        self._refresh = freshness.refresh
        self._current = freshness.current
        self._managed = managed
        self._edge_limits = RateLimiter(_EDGE_RATE, _EDGE_BURST, max_callers=1)
        self._edge_unrecorded = 0
        self._edge_summary: asyncio.TimerHandle | None = None
        self._edge_tasks: set[asyncio.Task[None]] = set()
        # One log event per answered request (``--log-format json``).
        self.log_requests = False

    def _new_call(self, source_ip: str | None, secure_transport: bool = False) -> Call:
        return Call(
            request_id=new_request_id(),
            time=self._clock.now(),
            source_ip=source_ip,
            authz=self._deps.authz,
            secure_transport=secure_transport,
            managed=self._managed,
        )

    async def handle(
        self,
        request: sigv4.HttpRequest,
        source_ip: str | None,
        *,
        secure_transport: bool = False,
        door: Door | None = None,
    ) -> Reply:
        """Answer ``request``; ``door`` when the HTTP route already chose it
        (``GET /metrics``: the metrics door), else by its X-Amz-Target."""
        start = perf_counter()
        call = self._new_call(source_ip, secure_transport)
        routed, door = door, self.doors.fallback
        # Counted however the request ends (metrics; the request log).
        try:
            try:
                # Caches dropped if another process committed, and the keyring
                # followed: served or sealed, as the store says now. Freshness.current,
                # with its await only when a reload is in flight: two coroutines
                # fewer per request (~0.3 us, thread_time).
                self._refresh()
                if self._barrier.reloading:
                    await self._current(_FOLLOW_TIMEOUT)
                # Named in the audit record even if authentication then fails.
                if routed is None:
                    door = self.doors.match(call, request)
                else:
                    door, call.operation = routed, routed.operation("")
                call.door = door.name
                if self._barrier.sealed and not door.serves_sealed:
                    # Nothing behind the barrier, access keys included, can be read.
                    raise Sealed()
                await door.authenticate(call, request)
                action = door.action(call, request)
                typed = door.decode(call, action, request)
                if action.announce is not None:
                    refused = await self._announce(door, call, action, typed)
                    if refused is not None:
                        return refused
                if action.mutates:
                    if action.prepare is not None:
                        await action.prepare(call, typed)
                    async with self._coordinator.exclusive():
                        self._refresh()  # another process may have written while we waited
                        outcome = await action.run(call, typed)
                        reply = await self._finish(door, call, action, outcome)
                else:
                    outcome = await action.run(call, typed)
                    reply = await self._finish(door, call, action, outcome)
                if outcome.then is not None and reply.status == 200:
                    # Outside the write lock: it may take it itself (jobs do).
                    result = await outcome.then()
                    reply = Reply(
                        200,
                        door.encode(action, result, call.request_id),
                        call.request_id,
                        door.content_type,
                    )
                return reply
            except KMSError as error:
                return await self._fail(door, call, error)
            except AuditUnavailable:
                return self._no_audit(door, call)
            except StorageUnavailable as exc:
                # Before any commit (a failed commit is answered in _finish): the
                # request had no effect, and the client may retry, here or on
                # another node. A write lock not free in time is the same case.
                log.warning("request %s: the store did not answer: %s", call.request_id, exc)
                return await self._fail(door, call, door.unavailable(call.operation))
            except Exception:
                log.exception("request %s failed unexpectedly", call.request_id)
                return await self._fail(door, call, KMSInternalException(_INTERNAL))
        finally:
            seconds = perf_counter() - start
            metrics.request_done(call.door, call.operation, call.error_code, seconds)
            if self.log_requests:
                _log_request(call, seconds)

    async def _announce(
        self, door: Door, call: Call, action: Action, typed: object
    ) -> Reply | None:
        """Record that ``action`` is about to happen; None once recorded. An
        action that only takes capability away runs even when it cannot be
        recorded, and is answered as the failure it names."""
        call.detail = action.announce
        try:
            await self._audit.append_encoded(self._record(call, None))
        except AuditUnavailable:
            if action.unrecorded is None:
                raise
            await action.run(call, typed)
            log.error(
                "request %s: %s done, but the audit log cannot record",
                call.request_id,
                call.operation,
            )
            error = KMSInternalException(action.unrecorded)
            return self._error_reply(door, call, error)
        return None

    async def _finish(self, door: Door, call: Call, action: Action, outcome: Outcome) -> Reply:
        # Encoded first: an answer that cannot be encoded fails before it is
        # recorded as a success.
        body = door.encode(action, outcome.result, call.request_id) if outcome.then is None else b""
        try:
            await self._audit.append_encoded(self._record(call, None))
        except AuditUnavailable:
            if not action.answer_unrecorded:
                raise
            log.error("request %s: done, its final audit record failed", call.request_id)
        self._note_usage(action, call)
        if outcome.writes or outcome.effect is not None:
            try:
                await self._make_true(door, outcome)
            except Exception:
                log.exception("commit failed after audit for request %s", call.request_id)
                # The first record said success; this one says what really happened.
                return await self._fail(
                    door, call, KMSInternalException(_INTERNAL), detail="commit failed"
                )
        return Reply(200, body, call.request_id, door.content_type)

    def _note_usage(self, action: Action, call: Call) -> None:
        """GetKeyLastUsage's record of the keys a successful call used."""
        if call.used_keys:
            usage = Usage(action.name, self._deps.clock.now(), call.request_id)
            for key_id in call.used_keys:
                self._deps.usage.record(key_id, usage)

    async def _make_true(self, door: Door, outcome: Outcome) -> None:
        """Commit the outcome's writes, or make its effect, and announce it."""

        def announce(_: object = None) -> None:
            self._coordinator.committed()
            door.committed()

        if outcome.effect is not None:
            # Made in place: nothing to outlive a cancelled request, and no
            # yield to the loop while the write lock is held (the dev clock's
            # own jobs are then run by its caller, not by a scheduler tick
            # that saw the new time first).
            try:
                await outcome.effect()
            finally:
                announce()
            return
        commit = asyncio.ensure_future(door.commit(outcome.writes))
        # Announce the change when the commit has really finished, even if
        # this request is cancelled meanwhile (shutdown): announcing earlier
        # would let other workers re-read the old value and keep it. A failed
        # commit may still have landed, so it is announced too.
        commit.add_done_callback(announce)
        await asyncio.shield(commit)

    async def _fail(
        self, door: Door, call: Call, error: KMSError, detail: str | None = None
    ) -> Reply:
        try:
            await self._audit.append_encoded(self._record(call, error, detail))
        except AuditUnavailable:
            return self._no_audit(door, call)
        return self._error_reply(door, call, error)

    def _no_audit(self, door: Door, call: Call) -> Reply:
        log.error("request %s refused: the audit log cannot record", call.request_id)
        return self._error_reply(door, call, KMSInternalException(_INTERNAL))

    @staticmethod
    def _error_reply(door: Door, call: Call, error: KMSError) -> Reply:
        """An error answered in the door's wire: its body, status and content
        type; counted by the metrics of refusals (authentication, authorization)."""
        if call.caller is None and isinstance(error, _AUTHENTICATION_FAILURES):
            metrics.AUTH_FAILURES.labels(auth_failure_reason(error)).inc()
        elif call.decision == "deny":
            metrics.AUTHZ_DENIED.labels(call.operation or metrics.OTHER).inc()
        call.error_code = error.code
        # A door may add headers to an error answer (``error_headers``: the
        # Azure Key Vault door's WWW-Authenticate challenge).
        extra = getattr(door, "error_headers", None)
        return Reply(
            door.error_status(error),
            door.encode_error(error, call.request_id),
            call.request_id,
            door.content_type,
            () if extra is None else extra(error),
        )

    def _record(
        self, call: Call, error: KMSError | None, detail: str | None = None
    ) -> EncodedRecord:
        """The call's audit record, encoded straight to its line's bytes
        (``encode_fields``: the bytes and checks of ``AuditRecord``)."""
        caller = call.caller
        return encode_fields(
            time=call.time,
            request_id=call.request_id,
            operation=call.operation,
            principal=caller.arn if caller else call.principal_name,
            access_key_id=caller.access_key_id if caller else None,
            source_ip=call.source_ip,
            key_arn=call.key_arn,
            encryption_context=call.encryption_context,
            decision=call.decision,
            decided_by=call.decided_by,
            outcome="success" if error is None else "error",
            error_code=None if error is None else error.code,
            region=caller.region if caller else None,
            detail=detail or call.detail,
            door=call.door,
            source_identity=caller.session.source_identity
            if caller is not None and caller.session is not None
            else None,
        )

    # -- health --

    @property
    def sealed(self) -> bool:
        return self._barrier.sealed

    async def not_ready(self) -> str | None:
        """Why a load balancer should not send KMS calls here, or None."""
        # As a request would see it (operator Status included): the two
        # must never disagree on whether this node is sealed.
        await self._current(_READY_TIMEOUT)
        if self._barrier.sealed:
            return "sealed"
        if not self._audit.writable:
            return "audit log unwritable"
        if self._audit.failing and not await self._audit_recovered():
            return "audit log unwritable"
        try:
            await asyncio.wait_for(self._barrier.storage.get("core/keyring"), _READY_TIMEOUT)
        except Exception:
            return "storage unreachable"
        return None

    async def _audit_recovered(self) -> bool:
        """After a failed audit write, whether the log writes again.

        Nothing but a write tells (the disk may have room again, or not), and
        a load balancer sends no request to a node it thinks unready: so the
        probe writes a record saying the log recovered. It is written only
        while the last write failed, so at most once per failure, not once per
        probe, and a failing probe writes nothing.
        """
        record = AuditRecord.event(
            time=self._clock.now(),
            request_id=new_request_id(),
            operation="ReadinessCheck",
            outcome="success",
            detail="audit log writable again",
        )
        try:
            await asyncio.wait_for(self._audit.append(record), _READY_TIMEOUT)
        except (AuditUnavailable, TimeoutError):
            return False
        return True

    # -- refusals before any door --

    async def refuse(
        self, error: KMSError, source_ip: str | None, door: Door | None = None, operation: str = ""
    ) -> Reply:
        """Answer a request the edge refused before it could be parsed
        (too large, wrong path): it is audited like any other, and answered
        in the fallback door's wire (no door was reached), or in ``door``'s
        as its ``operation`` (the gRPC listener's refusal of a resource name)."""
        start = perf_counter()
        call = self._new_call(source_ip)
        if door is not None:
            call.door, call.operation = door.name, operation
        reply = await self._fail(door or self.doors.fallback, call, error)
        metrics.request_done(call.door, call.operation, call.error_code, perf_counter() - start)
        return reply

    async def refused_at_edge(self, source_ip: str | None, status: int, reason: str) -> None:
        """Record a request the HTTP layer refused before it parsed (malformed,
        smuggling, header limits, too slow): no identity, no body, a fixed
        reason. Rate-limited: past the budget the refusal is only counted,
        and the count goes into one record a second later."""
        if not self._edge_limits.allow(EDGE_REFUSED):
            self._edge_unrecorded += 1
            if self._edge_summary is None:
                loop = asyncio.get_running_loop()
                self._edge_summary = loop.call_later(_EDGE_SUMMARY_DELAY, self._summarise_edge)
            return
        record = self._edge_record(source_ip, f"HTTP {status}: {reason}", _edge_code(status))
        try:
            await self._audit.append(record)
        except AuditUnavailable:
            log.error(
                "request %s refused at the edge: the audit log cannot record", record.request_id
            )

    def _summarise_edge(self) -> None:
        self._edge_summary = None
        count, self._edge_unrecorded = self._edge_unrecorded, 0
        if not count:
            return
        record = self._edge_record(
            None, f"{count} more requests refused by the HTTP layer, over the record rate", None
        )
        task = asyncio.get_running_loop().create_task(self._append_quietly(record))
        self._edge_tasks.add(task)
        task.add_done_callback(self._edge_tasks.discard)

    async def _append_quietly(self, record: AuditRecord) -> None:
        try:
            await self._audit.append(record)
        except AuditUnavailable:
            log.error("%s: the audit log cannot record", record.detail)

    def _edge_record(self, source_ip: str | None, detail: str, code: str | None) -> AuditRecord:
        return AuditRecord.event(
            time=self._clock.now(),
            request_id=new_request_id(),
            operation=EDGE_REFUSED,
            outcome="error",
            detail=detail,
            source_ip=source_ip,
            error_code=code,
        )
