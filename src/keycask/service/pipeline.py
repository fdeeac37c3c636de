"""Every request takes the same path: authenticate, decode, authorize and
handle, audit, commit, answer.

The audit record is durable before the answer leaves, and before any write is
committed: if it cannot be written the request fails with KMSInternalException
and has no effect. A handler's writes are staged, so a refused or failed
request leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from keycask.audit import AuditLog, AuditRecord
from keycask.auth import sigv4
from keycask.auth.credentials import CredentialStore
from keycask.auth.operator_token import OperatorToken
from keycask.barrier import Barrier
from keycask.barrier.rewrite import retirable, rewrite_batch
from keycask.errors import (
    AccessDeniedException,
    AuditUnavailable,
    DependencyTimeoutException,
    IncompleteSignatureException,
    InvalidSignatureException,
    KMSError,
    KMSInternalException,
    KMSInvalidStateException,
    MissingAuthenticationTokenException,
    Sealed,
    SerializationException,
    StorageUnavailable,
    ThrottlingException,
    UnknownOperationException,
    UnrecognizedClientException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.ports import Clock, Coordinator, MovableClock
from keycask.service.background.scheduler import Scheduler
from keycask.service.core.call import Call, Caller, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import operator
from keycask.service.core.handlers import principals as admin
from keycask.service.core.managed import ManagedKeys
from keycask.service.core.operations import OPERATIONS, Operation
from keycask.service.core.requests import build
from keycask.service.core.usage import Usage
from keycask.service.doors.dev import DEV_ADVANCE_CLOCK, advance_clock_reply, advance_clock_request
from keycask.service.ratelimit import RateLimiter

log = logging.getLogger("keycask")

TARGET_PREFIX = "TrentService."
_CONTENT_TYPES = (b"application/x-amz-json-1.1", b"application/x-amz-json-1.0")
_INTERNAL = "An internal error occurred; the request had no effect."
_CALLER_CACHE = 4096
# Failed operator authentications per source address: a burst of 20, then 5
# a second. A valid credential is never throttled.
_OPERATOR_RATE, _OPERATOR_BURST = 5.0, 20
# Failed unseal or rekey inputs (wrong shares, passphrase, PIN) per source
# address: a burst of 10, then one every 10 seconds. Passphrases and PINs are
# chosen by people, so this bounds guessing even by a holder of the token.
_SEAL_SECRET_RATE, _SEAL_SECRET_BURST = 0.1, 10
# How long one scheduler tick may spend moving values to a new barrier term.
_REWRITE_SLICE = 0.5
# Requests the HTTP layer refuses (400/408/431) recorded one by one, process
# wide: a burst of 50, then 20 a second. Beyond that they are counted, and the
# count is recorded once a second while any go unrecorded: a flood of garbage
# costs at most ~21 small audit lines a second, not one per refusal.
_EDGE_RATE, _EDGE_BURST = 20.0, 50
_EDGE_SUMMARY_DELAY = 1.0
EDGE_REFUSED = "HttpRefused"
# A finished rewrite retires old terms only once its term has been active this
# long: a node of a cluster that has not reloaded the keyring yet may still
# seal under the old term (it reloads on the next commit notice or epoch poll,
# within about a second); until then the passes go on, finding nothing.
_RETIRE_AFTER = 5.0
# How long /readyz waits for the store before calling it unreachable.
_READY_TIMEOUT = 2.0


def _edge_code(status: int) -> str:
    """``BadRequest``, ``RequestTimeout``, ...: the status's name, AWS-style."""
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


# What a failed SigV4 authentication raises (sigv4.parse, the key lookup,
# sigv4.verify).
_AUTHENTICATION_FAILURES = (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)


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


_VARIANT: Final = "89ab"


def _request_id() -> str:
    """A random (version 4) UUID, as AWS's x-amzn-RequestId is: nothing in it
    tells how many requests this server has answered or which process
    answered. 16 bytes of os.urandom formatted by hand cost ~1.7 us against
    ~5.5 us for str(uuid.uuid4()) on the same loaded machine (uuid4 builds an
    int and a UUID object first); the id is random in its 122 free bits either way."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


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
        operator_account: str | None = None,
    ) -> None:
        """``clock`` is the wall clock (SigV4 freshness, audit times);
        ``deps.clock`` is lifecycle time. ``dev_clock``, given only in --dev,
        is that lifecycle clock and enables the endpoint that moves it.
        ``operator_account`` is the account whose administrators may make
        operator calls with a signature (the one ``operator init`` made, or
        the dev account); None: the operator token only."""
        self._deps = deps
        self._credentials = credentials
        self._audit = audit
        self._codec = codec
        self._clock = clock
        self._signing_keys = sigv4.SigningKeyCache()
        self._callers: dict[tuple[str, str], Caller] = {}
        self._model_operations = codec.operation_names()
        # Writes run one at a time across all processes on the store.
        self._coordinator = coordinator
        self._dev_clock = dev_clock
        self._barrier = barrier
        self.operator_api = operator_api
        self._operator_token = operator_token
        self._edge_limits = RateLimiter(_EDGE_RATE, _EDGE_BURST, max_callers=1)
        self._edge_unrecorded = 0
        self._edge_summary: asyncio.TimerHandle | None = None
        self._edge_tasks: set[asyncio.Task[None]] = set()
        self._operator_account = operator_account
        self._operator_failures = RateLimiter(_OPERATOR_RATE, _OPERATOR_BURST)
        self._seal_secret_failures = RateLimiter(_SEAL_SECRET_RATE, _SEAL_SECRET_BURST)
        self._rewrite_cursor = ""
        self._rewrite_moved = 0
        self._rewrite_term = 0
        self._rewrite_since = 0.0  # when this process first saw _rewrite_term active
        self.scheduler = Scheduler(
            deps,
            audit,
            coordinator,
            wall_clock=clock,
            refresh=self._refresh,
            request_id=_request_id,
            interval=scheduler_interval,
            paused=lambda: barrier.sealed,
        )
        self._managed = ManagedKeys(
            deps.keys,
            deps.clock,
            audit,
            coordinator,
            wall_clock=clock,
            refresh=self._refresh,
            request_id=_request_id,
        )
        self.scheduler.every_tick.append(self.flush_usage)
        # Every node, leader or not: moves the store's epoch past its own
        # commits, and seals if the store was rolled back under it.
        self.scheduler.every_tick.append(barrier.tick)
        self.scheduler.after_tick.append(self.rewrite_barrier)

    async def flush_usage(self) -> None:
        if self._barrier.sealed:
            return
        # Not announced: no cache holds last-use records (a PostgreSQL node
        # counts its own commits itself; see storage/pgcoord.py).
        await self._deps.usage.flush(self._coordinator.exclusive(), self._refresh)

    def _new_call(self, source_ip: str | None, secure_transport: bool = False) -> Call:
        return Call(
            request_id=_request_id(),
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
            request_id=_request_id(),
            operation="ReadinessCheck",
            outcome="success",
            detail="audit log writable again",
        )
        try:
            await asyncio.wait_for(self._audit.append(record), _READY_TIMEOUT)
        except (AuditUnavailable, TimeoutError):
            return False
        return True

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
            term = self._barrier.keyring.active_term
            if term != self._rewrite_term:
                self._rewrite_term, self._rewrite_since = term, loop.time()
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
            if done and loop.time() - self._rewrite_since < _RETIRE_AFTER:
                return  # clean, but too soon to retire terms: another pass next tick
            if done:
                async with self._coordinator.exclusive():
                    retire = await retirable(self._barrier, self._rewrite_term)
                    await self._barrier.rewritten(self._rewrite_term, retire=retire)
                    self._coordinator.committed()
                log.info("barrier rewrite finished: every value is under the active term")
            return

    # -- KeycaskOperator: seal, unseal, status, rotate, rekey (service/operator.py) --

    async def _operator_call(self, call: Call, request: sigv4.HttpRequest) -> Reply:
        assert call.operation is not None
        name = call.operation[len(operator.TARGET_PREFIX) :]
        if self.operator_api is None:
            raise UnsupportedOperationException("this server takes no operator calls")
        # Authenticate first: only failures count against an address, so a
        # flood of bad or missing credentials from a shared address (a NAT, a
        # load balancer, localhost) never throttles the operator's own calls.
        address = call.source_ip or "-"
        authorization = (_header(request, b"authorization") or b"").decode("latin-1")
        if authorization.startswith("Bearer "):
            token = self._operator_token
            if token is None or not token.verify(authorization[len("Bearer ") :].strip()):
                self._operator_auth_failed(address)
                raise UnrecognizedClientException("The operator token is not valid.")
            call.principal_name = "operator token"
        else:
            if self._barrier.sealed:
                raise Sealed(
                    "keycask is sealed: while sealed, operator calls authenticate "
                    "with the operator token"
                )
            try:
                await self._authenticate(call, request)
            except _AUTHENTICATION_FAILURES:
                self._operator_auth_failed(address)
                raise
            assert call.caller is not None
            principal = call.caller.principal
            # The operator API runs the whole server (every account's keys):
            # an administrator of a tenant account runs only that account.
            if not principal.admin or principal.account != self._operator_account:
                call.decision, call.decided_by = "deny", "not an operator"
                raise AccessDeniedException(
                    f"{principal.arn} is not an administrator of the operator account: "
                    "operator calls need the operator token or an administrator of the "
                    "account `keycask operator init` made"
                )
        if name in operator.TOKEN_ONLY and call.principal_name is None:
            raise AccessDeniedException(f"{name} needs the operator token")
        call.decision, call.decided_by = "allow", call.principal_name or "administrator"
        if self._barrier.sealed and name not in operator.WHILE_SEALED:
            raise Sealed(f"keycask is sealed: only Status and Unseal are served, not {name}")
        self._check_content_type(request)
        fields = admin.json_object(request.body)
        if name in operator.TRIES_SEAL_SECRETS and self._seal_secret_failures.exhausted(address):
            # Checked before the input is tried, so guessing a passphrase,
            # PIN or shares really is slowed, even with the operator token.
            raise ThrottlingException(
                "Too many failed unseal or rekey attempts from this address; wait and retry."
            )
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
        try:
            result, call.detail = await self.operator_api.handle(name, fields)
        except (KMSInvalidStateException, ValidationException):
            if name in operator.TRIES_SEAL_SECRETS:
                self._seal_secret_failures.allow(address)  # spends one attempt
            raise
        try:
            await self._audit.append(self._record(call, None))
        except AuditUnavailable:
            if name != "Rekey":
                raise
            # Recorded before it acted; its answer holds the only copy of the
            # new shares, so losing it would lose the root key.
            log.error("request %s: rekey done, its final audit record failed", call.request_id)
        return Reply(200, orjson.dumps(result), call.request_id)

    def _operator_auth_failed(self, address: str) -> None:
        """Count a failed operator authentication from ``address``; past the
        budget, answer ThrottlingException instead of saying why."""
        if not self._operator_failures.allow(address):
            raise ThrottlingException("Too many failed operator authentications; slow down.")

    async def _advance_clock(self, call: Call, request: sigv4.HttpRequest) -> Reply:
        """--dev only: move lifecycle time forward, then run what came due,
        so the caller sees the rotation or deletion it asked time to bring."""
        assert self._dev_clock is not None
        clock = self._dev_clock
        self._check_content_type(request)
        seconds, run_jobs = advance_clock_request(request.body, clock.offset_seconds)
        # Lifecycle time is the whole server's (every account's rotations and
        # deletions), so no identity policy can grant it: an administrator of
        # the operator account (the dev account) only.
        assert call.caller is not None
        principal = call.caller.principal
        if not principal.admin or principal.account != self._operator_account:
            call.decision, call.decided_by = "deny", "not an administrator of the dev account"
            raise AccessDeniedException(
                f"User: {principal.arn} is not authorized to perform: keycask:AdvanceClock: "
                "only an administrator of the dev account moves the clock"
            )
        call.decision, call.decided_by = "allow", "administrator of the dev account"
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
            request_id=_request_id(),
            operation=EDGE_REFUSED,
            outcome="error",
            detail=detail,
            source_ip=source_ip,
            error_code=code,
        )

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
