"""Every request takes the same path: authenticate, decode, authorize and
handle, audit, commit, answer.

The audit record is durable before the answer leaves, and before any write is
committed: if it cannot be written the request fails with KMSInternalException
and has no effect. A handler's writes are staged, so a refused or failed
request leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from keycask.audit import AuditLog, AuditRecord
from keycask.auth import sigv4
from keycask.auth.credentials import CredentialStore
from keycask.auth.operator_token import OperatorToken
from keycask.barrier import Barrier
from keycask.barrier.rewrite import rewrite_batch
from keycask.errors import (
    AccessDeniedException,
    AuditUnavailable,
    DependencyTimeoutException,
    KMSError,
    KMSInternalException,
    Sealed,
    SerializationException,
    StorageUnavailable,
    ThrottlingException,
    UnknownOperationException,
    UnrecognizedClientException,
    UnsupportedOperationException,
)
from keycask.ports import Clock, Coordinator, MovableClock
from keycask.service import admin, operator
from keycask.service.call import Call, Caller, Outcome
from keycask.service.deps import Deps
from keycask.service.devops import DEV_ADVANCE_CLOCK, advance_clock_reply, advance_clock_request
from keycask.service.operations import OPERATIONS, Operation
from keycask.service.ratelimit import RateLimiter
from keycask.service.requests import build
from keycask.service.scheduler import Scheduler
from keycask.service.usage import Usage

log = logging.getLogger("keycask")

TARGET_PREFIX = "TrentService."
_CONTENT_TYPES = (b"application/x-amz-json-1.1", b"application/x-amz-json-1.0")
_INTERNAL = "An internal error occurred; the request had no effect."
_CALLER_CACHE = 4096
# Operator calls per source address: a burst of 20, then 5 a second.
_OPERATOR_RATE, _OPERATOR_BURST = 5.0, 20
# How long one scheduler tick may spend moving values to a new barrier term.
_REWRITE_SLICE = 0.5
# How long /readyz waits for the store before calling it unreachable.
_READY_TIMEOUT = 2.0


class WireCodec(Protocol):
    """The edge's AWS JSON codec, handed in by the composition root."""

    def operation_names(self) -> frozenset[str]: ...

    def decode(self, operation: str, body: bytes) -> dict[str, Any]: ...

    def encode(self, operation: str, result: object | None) -> bytes: ...

    def encode_error(self, code: str, message: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    request_id: str


def _header(request: sigv4.HttpRequest, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return value
    return None


class _RequestIds:
    """Request ids shaped like UUIDs: a random per-process prefix and a
    counter. Unique without a syscall per request (uuid4 costs ~2.5 us)."""

    def __init__(self) -> None:
        prefix = os.urandom(10).hex()
        self._prefix = f"{prefix[:8]}-{prefix[8:12]}-{prefix[12:16]}-{prefix[16:20]}-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


# Operations whose model lists no DependencyTimeoutException: they answer
# KMSInternalException, the model's own retryable server fault, instead.
# (tests/unit/test_pipeline_errors.py pins this against botocore's model.)
NO_DEPENDENCY_TIMEOUT = frozenset(
    {
        "ConnectCustomKeyStore",
        "CreateCustomKeyStore",
        "DeleteCustomKeyStore",
        "DescribeCustomKeyStores",
        "DisconnectCustomKeyStore",
        "GenerateMac",
        "ListKeyRotations",
        "ListResourceTags",
        "ReplicateKey",
        "TagResource",
        "UntagResource",
        "UpdateCustomKeyStore",
        "UpdatePrimaryRegion",
        "VerifyMac",
    }
)


def _unavailable(operation: str | None) -> KMSError:
    """The retryable answer for a store (or its write lock) not there in time."""
    message = "keycask's key store did not answer in time; the request had no effect. Retry it."
    if operation in NO_DEPENDENCY_TIMEOUT:
        return KMSInternalException(message)
    return DependencyTimeoutException(message)


class Pipeline:
    def __init__(
        self,
        deps: Deps,
        credentials: CredentialStore,
        audit: AuditLog,
        codec: WireCodec,
        clock: Clock,
        *,
        coordinator: Coordinator,
        dev_clock: MovableClock | None = None,
        scheduler_interval: float = 1.0,
        barrier: Barrier,
        operator_api: operator.Operator | None = None,
        operator_token: OperatorToken | None = None,
    ) -> None:
        """``clock`` is the wall clock (SigV4 freshness, audit times);
        ``deps.clock`` is lifecycle time. ``dev_clock``, given only in --dev,
        is that lifecycle clock and enables the endpoint that moves it."""
        self._deps = deps
        self._credentials = credentials
        self._audit = audit
        self._codec = codec
        self._clock = clock
        self._signing_keys = sigv4.SigningKeyCache()
        self._request_ids = _RequestIds()
        self._callers: dict[tuple[str, str], Caller] = {}
        self._model_operations = codec.operation_names()
        # Writes run one at a time across all processes on the store.
        self._coordinator = coordinator
        self._dev_clock = dev_clock
        self._barrier = barrier
        self.operator_api = operator_api
        self._operator_token = operator_token
        self._operator_limits = RateLimiter(_OPERATOR_RATE, _OPERATOR_BURST)
        self._rewrite_cursor = ""
        self._rewrite_moved = 0
        self._rewrite_term = 0
        self.scheduler = Scheduler(
            deps,
            audit,
            coordinator,
            wall_clock=clock,
            refresh=self._refresh,
            request_id=self._request_ids.next,
            interval=scheduler_interval,
            paused=lambda: barrier.sealed,
        )
        self.scheduler.every_tick.append(self.flush_usage)
        self.scheduler.after_tick.append(self.rewrite_barrier)

    async def flush_usage(self) -> None:
        if self._barrier.sealed:
            return
        # Not announced: no cache holds last-use records (a PostgreSQL node
        # counts its own commits itself; see storage/pgcoord.py).
        await self._deps.usage.flush(self._coordinator.exclusive(), self._refresh)

    def _new_call(self, source_ip: str | None, secure_transport: bool = False) -> Call:
        return Call(
            request_id=self._request_ids.next(),
            time=self._clock.now(),
            source_ip=source_ip,
            authz=self._deps.authz,
            secure_transport=secure_transport,
        )

    async def handle(
        self,
        request: sigv4.HttpRequest,
        source_ip: str | None,
        *,
        secure_transport: bool = False,
    ) -> Reply:
        call = self._new_call(source_ip, secure_transport)
        outcome: Outcome | None = None
        operation: Operation | None = None
        try:
            self._refresh()
            # Named in the audit record even if authentication then fails.
            call.operation = self._target(request)
            if call.operation is not None and call.operation.startswith(operator.TARGET_PREFIX):
                return await self._operator_call(call, request)
            if self._barrier.sealed:
                # Nothing behind the barrier, access keys included, can be read.
                raise Sealed()
            await self._authenticate(call, request)
            if call.operation == DEV_ADVANCE_CLOCK:
                return await self._advance_clock(call, request)
            if call.operation is not None and call.operation.startswith(admin.TARGET_PREFIX):
                return await self._admin(call, request)  # KeycaskAdmin (service/admin.py)
            operation = self._operation(call, request)
            fields = self._codec.decode(operation.name, request.body)
            typed: object = build(operation.request, fields)
            call.grant_tokens = tuple(getattr(typed, "grant_tokens", None) or ())
            if operation.mutates:
                async with self._coordinator.exclusive():
                    self._refresh()  # another process may have written while we waited
                    outcome = await operation.handler(self._deps, call, typed)
                    return await self._finish(call, operation, outcome)
            outcome = await operation.handler(self._deps, call, typed)
            return await self._finish(call, operation, outcome)
        except KMSError as error:
            return await self._fail(call, error)
        except AuditUnavailable:
            return self._no_audit(call)
        except StorageUnavailable as exc:
            # Before any commit (a failed commit is answered in _finish): the
            # request had no effect, and the client may retry, here or on
            # another node. A write lock not free in time is the same case.
            log.warning("request %s: the store did not answer: %s", call.request_id, exc)
            return await self._fail(call, _unavailable(call.operation))
        except Exception:
            log.exception("request %s failed unexpectedly", call.request_id)
            return await self._fail(call, KMSInternalException(_INTERNAL))

    def _refresh(self) -> None:
        if self._coordinator.stale():
            self._forget()
            if not self._barrier.sealed:
                self._barrier.reload_soon()  # another process may have rotated it
            if self._dev_clock is not None:
                self._dev_clock.reload()

    def _forget(self) -> None:
        self._deps.keys.clear()
        self._credentials.clear()
        self._deps.authz.clear()

    @property
    def sealed(self) -> bool:
        return self._barrier.sealed

    async def not_ready(self) -> str | None:
        """Why a load balancer should not send KMS calls here, or None."""
        if self._barrier.sealed:
            return "sealed"
        if not self._audit.writable:
            return "audit log unwritable"
        try:
            await asyncio.wait_for(self._barrier.storage.get("core/keyring"), _READY_TIMEOUT)
        except Exception:
            return "storage unreachable"
        return None

    def forget_all(self) -> None:
        """Drop everything decrypted this process holds (on seal)."""
        self._forget()
        self._callers.clear()
        self._signing_keys = sigv4.SigningKeyCache()

    # -- the barrier's terms --

    async def rotate_barrier(self) -> int:
        async with self._coordinator.exclusive():
            term = await self._barrier.rotate()
            self._coordinator.committed()
        self._rewrite_cursor, self._rewrite_moved = "", 0
        return term

    async def rewrite_barrier(self) -> None:
        """Move values to the active term, a batch at a time under the write
        lock (so requests interleave), for at most ``_REWRITE_SLICE`` seconds a
        tick. A pass that moves nothing ends the rewrite."""
        if self._barrier.sealed or not self._barrier.keyring.rewrite:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _REWRITE_SLICE
        if not self._rewrite_cursor:
            # A pass moves values to this term; a newer term needs its own pass.
            self._rewrite_term = self._barrier.keyring.active_term
        while loop.time() < deadline:
            async with self._coordinator.exclusive():
                self._refresh()
                step = await rewrite_batch(self._barrier, self._rewrite_cursor)
                if step.moved:
                    # Revisions moved: cached documents must be read again.
                    self._forget()
                    self._coordinator.committed()
            self._rewrite_moved += step.moved
            if step.cursor is not None:
                self._rewrite_cursor = step.cursor
                continue
            done = self._rewrite_moved == 0
            self._rewrite_cursor, self._rewrite_moved = "", 0
            if done:
                async with self._coordinator.exclusive():
                    await self._barrier.rewritten(self._rewrite_term)
                    self._coordinator.committed()
                log.info("barrier rewrite finished: every value is under the active term")
            return

    # -- KeycaskOperator: seal, unseal, status, rotate, rekey (service/operator.py) --

    async def _operator_call(self, call: Call, request: sigv4.HttpRequest) -> Reply:
        assert call.operation is not None
        name = call.operation[len(operator.TARGET_PREFIX) :]
        if not self._operator_limits.allow(call.source_ip or "-"):
            raise ThrottlingException("Too many operator calls; slow down.")
        if self.operator_api is None:
            raise UnsupportedOperationException("this server takes no operator calls")
        authorization = (_header(request, b"authorization") or b"").decode("latin-1")
        if authorization.startswith("Bearer "):
            token = self._operator_token
            if token is None or not token.verify(authorization[len("Bearer ") :].strip()):
                raise UnrecognizedClientException("The operator token is not valid.")
            call.principal_name = "operator token"
        else:
            if self._barrier.sealed:
                raise Sealed(
                    "keycask is sealed: while sealed, operator calls authenticate "
                    "with the operator token"
                )
            await self._authenticate(call, request)
            assert call.caller is not None
            if not call.caller.principal.admin:
                raise AccessDeniedException(
                    f"{call.caller.principal.arn} is not an administrator: "
                    "operator calls need the operator token or an administrator"
                )
        if name in operator.TOKEN_ONLY and call.principal_name is None:
            raise AccessDeniedException(f"{name} needs the operator token")
        call.decision, call.decided_by = "allow", call.principal_name or "administrator"
        if self._barrier.sealed and name not in operator.WHILE_SEALED:
            raise Sealed(f"keycask is sealed: only Status and Unseal are served, not {name}")
        self._check_content_type(request)
        fields = admin.json_object(request.body)
        if name in operator.RECORDED_FIRST:
            call.detail = f"operator {name} requested"
            try:
                await self._audit.append(self._record(call, None))
            except AuditUnavailable:
                if name != "Seal":
                    raise
                # Sealing only takes capability away: an attacker who can
                # break the audit log must not be able to prevent it.
                self.operator_api.keeper.seal()
                log.error("request %s: sealed, but the audit log cannot record", call.request_id)
                error = KMSInternalException(
                    "keycask is sealed, but the audit log could not record it."
                )
                return Reply(
                    error.status,
                    self._codec.encode_error(error.code, error.message),
                    call.request_id,
                )
        result, call.detail = await self.operator_api.handle(name, fields)
        try:
            await self._audit.append(self._record(call, None))
        except AuditUnavailable:
            if name != "Rekey":
                raise
            # Recorded before it acted; its answer holds the only copy of the
            # new shares, so losing it would lose the root key.
            log.error("request %s: rekey done, its final audit record failed", call.request_id)
        return Reply(200, orjson.dumps(result), call.request_id)

    async def _advance_clock(self, call: Call, request: sigv4.HttpRequest) -> Reply:
        """--dev only: move lifecycle time forward, then run what came due,
        so the caller sees the rotation or deletion it asked time to bring."""
        assert self._dev_clock is not None
        clock = self._dev_clock
        self._check_content_type(request)
        seconds, run_jobs = advance_clock_request(request.body, clock.offset_seconds)
        await call.authorize("keycask:AdvanceClock")
        call.detail = f"lifecycle clock advanced by {seconds:g} s"
        async with self._coordinator.exclusive():
            self._refresh()
            # Checked again under the lock: another worker may have moved it.
            advance_clock_request(request.body, clock.offset_seconds)
            await self._audit.append(self._record(call, None))
            try:
                clock.advance(seconds)
            finally:
                self._coordinator.committed()
        jobs = await self.scheduler.run_due() if run_jobs else 0
        return Reply(
            200, advance_clock_reply(clock.now(), clock.offset_seconds, jobs), call.request_id
        )

    # -- KeycaskAdmin: principals, policies, access keys (service/admin.py) --

    async def _admin(self, call: Call, request: sigv4.HttpRequest) -> Reply:
        """A KeycaskAdmin call: decoded, handled, audited, then committed,
        like a KMS operation; writes run under the store's write lock."""
        assert call.operation is not None
        operation = admin.operation(call.operation)
        assert operation is not None
        self._check_content_type(request)
        fields = admin.decode(operation, request.body)
        if not operation.mutates:
            outcome = await operation.handler(self._credentials, call, fields)
            return await self._admin_finish(call, outcome)
        async with self._coordinator.exclusive():
            self._refresh()  # another process may have written while we waited
            outcome = await operation.handler(self._credentials, call, fields)
            return await self._admin_finish(call, outcome)

    async def _admin_finish(self, call: Call, outcome: Outcome) -> Reply:
        body = admin.encode(outcome.result)
        await self._audit.append(self._record(call, None))
        if outcome.writes:
            commit = asyncio.ensure_future(self._credentials.commit(outcome.writes))

            def done(_: object) -> None:
                # As in _finish; and policies or tags may have changed, so
                # callers' subjects are built again.
                self._coordinator.committed()
                self._deps.authz.clear()

            commit.add_done_callback(done)
            try:
                await asyncio.shield(commit)
            except Exception:
                log.exception("commit failed after audit for request %s", call.request_id)
                return await self._fail(
                    call, KMSInternalException(_INTERNAL), detail="commit failed"
                )
        return Reply(200, body, call.request_id)

    # -- end of KeycaskAdmin --

    async def refuse(self, error: KMSError, source_ip: str | None) -> Reply:
        """Answer a request the edge refused before it could be parsed
        (too large, wrong path): it is audited like any other."""
        return await self._fail(self._new_call(source_ip), error)

    async def _authenticate(self, call: Call, request: sigv4.HttpRequest) -> None:
        signed = sigv4.parse(request, now=call.time)
        key = self._credentials.cached(signed.access_key_id)
        if key is None:
            key = await self._credentials.lookup(signed.access_key_id)
        if key is None or not key.active:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        sigv4.verify(signed, key.secret, cache=self._signing_keys)
        # One Caller per access key and region, built once: it is immutable.
        caller = self._callers.get((key.access_key_id, signed.region))
        if caller is None or caller.principal is not key.principal:
            subject = self._deps.authz.subject(key.principal)
            caller = Caller(key.principal, key.access_key_id, signed.region, subject)
            if len(self._callers) >= _CALLER_CACHE:
                self._callers.clear()
            self._callers[(key.access_key_id, signed.region)] = caller
        call.caller = caller

    def _target(self, request: sigv4.HttpRequest) -> str | None:
        """The operation the X-Amz-Target header names, if the model has it."""
        target = (_header(request, b"x-amz-target") or b"").decode("latin-1").strip()
        if target.startswith(TARGET_PREFIX):  # the KMS API: checked first, it is the hot path
            name = target[len(TARGET_PREFIX) :]
            return name if name in self._model_operations else None
        if target == DEV_ADVANCE_CLOCK and self._dev_clock is not None:
            return target  # outside --dev this target does not exist
        if admin.operation(target) is not None:
            return target  # KeycaskAdmin.<Op>, in every mode
        if operator.operation(target) is not None:
            return target  # KeycaskOperator.<Op>
        return None

    def _operation(self, call: Call, request: sigv4.HttpRequest) -> Operation:
        name = call.operation
        if name is None:
            target = (_header(request, b"x-amz-target") or b"").decode("latin-1")
            raise UnknownOperationException(f"Unknown operation {target[:128]!r}")
        self._check_content_type(request)
        operation = OPERATIONS.get(name)
        if operation is None:
            raise UnsupportedOperationException(f"keycask does not support {name} yet.")
        return operation

    @staticmethod
    def _check_content_type(request: sigv4.HttpRequest) -> None:
        content_type = (_header(request, b"content-type") or b"").split(b";")[0].strip()
        if content_type not in _CONTENT_TYPES:
            raise SerializationException("Content-Type must be application/x-amz-json-1.1.")

    async def _finish(self, call: Call, operation: Operation, outcome: Outcome) -> Reply:
        body = self._codec.encode(operation.name, outcome.result)
        await self._audit.append(self._record(call, None))
        if call.used_keys:
            usage = Usage(operation.name, self._deps.clock.now(), call.request_id)
            for key_id in call.used_keys:
                self._deps.usage.record(key_id, usage)
        if outcome.writes:
            commit = asyncio.ensure_future(self._deps.keys.commit(outcome.writes))
            # Announce the change when the commit has really finished, even if
            # this request is cancelled meanwhile (shutdown): announcing earlier
            # would let other workers re-read the old value and keep it. A
            # failed commit may still have landed, so it is announced too.
            commit.add_done_callback(lambda _: self._coordinator.committed())
            try:
                await asyncio.shield(commit)
            except Exception:
                log.exception("commit failed after audit for request %s", call.request_id)
                # The first record said success; this one says what really happened.
                return await self._fail(
                    call, KMSInternalException(_INTERNAL), detail="commit failed"
                )
        return Reply(200, body, call.request_id)

    async def _fail(self, call: Call, error: KMSError, detail: str | None = None) -> Reply:
        try:
            await self._audit.append(self._record(call, error, detail))
        except AuditUnavailable:
            return self._no_audit(call)
        return Reply(
            error.status, self._codec.encode_error(error.code, error.message), call.request_id
        )

    def _no_audit(self, call: Call) -> Reply:
        log.error("request %s refused: the audit log cannot record", call.request_id)
        error = KMSInternalException(_INTERNAL)
        return Reply(
            error.status, self._codec.encode_error(error.code, error.message), call.request_id
        )

    def _record(self, call: Call, error: KMSError | None, detail: str | None = None) -> AuditRecord:
        caller = call.caller
        context: Mapping[str, str] | None = call.encryption_context
        return AuditRecord(
            time=call.time,
            request_id=call.request_id,
            operation=call.operation,
            principal=caller.principal.arn if caller else call.principal_name,
            access_key_id=caller.access_key_id if caller else None,
            source_ip=call.source_ip,
            key_arn=call.key_arn,
            encryption_context=context,
            decision=call.decision,
            decided_by=call.decided_by,
            outcome="success" if error is None else "error",
            error_code=None if error is None else error.code,
            region=caller.region if caller else None,
            detail=detail or call.detail,
        )
