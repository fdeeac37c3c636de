"""The operator API (``X-Amz-Target: KeycaskOperator.<Op>``): the calls
``keycask operator`` makes to a running server (the calls themselves and
their JSON shapes: ``core/handlers/operator.py``). Each body is decoded into a
typed request (``core/operator_requests.py``) and each typed result encoded
back (``core/operator_results.py``) by the table ``CALLS``.

Authenticated by the operator token (``Authorization: Bearer kco_...``), or,
once unsealed, by the SigV4 signature of an administrator of the operator
account (the one ``keycask operator init`` made). Failed authentications,
and failed unseal or rekey inputs, are rate-limited per source address. The
only door served while sealed, and then only for ``Status`` and ``Unseal``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import orjson

from keycask.auth.operator_token import OperatorToken
from keycask.auth.sigv4 import HttpRequest
from keycask.errors import (
    AccessDeniedException,
    KMSInvalidStateException,
    Sealed,
    ThrottlingException,
    UnrecognizedClientException,
    ValidationException,
)
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.core.handlers.operator import Operator, seal_errors
from keycask.service.core.operator_requests import (
    BackupTagRequest,
    NoInput,
    RekeyRequest,
    RekeyVerifyRequest,
    UnsealRequest,
)
from keycask.service.core.operator_results import (
    BackupTagged,
    NowSealed,
    OperatorStatus,
    RekeyAuthorising,
    RekeyCancelled,
    RekeyDone,
    RekeyStarted,
    RekeyVerifying,
    Rotated,
    TokenRotated,
)
from keycask.service.door import Action, header
from keycask.service.doors.awsjson import (
    AwsJsonErrors,
    WireCodec,
    check_content_type,
    json_object,
)
from keycask.service.doors.signed import AUTHENTICATION_FAILURES, SignedCallers
from keycask.service.ratelimit import RateLimiter
from keycask.service.sealing import NewSeal, SealProof, UnsealInput, VerifyInput

TARGET_PREFIX = "KeycaskOperator."
WHILE_SEALED = frozenset({"Status", "Unseal"})
# Changes that outlive the call: recorded in the audit log before they happen.
RECORDED_FIRST = frozenset({"Seal", "Rotate", "Rekey", "RekeyVerify", "RekeyCancel", "RotateToken"})
# Sealing only takes capability away: an attacker who can break the audit
# log must not be able to prevent it. Done all the same, answered with this.
_DONE_UNRECORDED = {"Seal": "keycask is sealed, but the audit log could not record it."}
# Recorded before it acted; its answer holds the only copy of the new
# shares, so a failed final record must not lose it (or the root key).
_ANSWERED_UNRECORDED = frozenset({"Rekey"})
# Not for an administrator's signature alone (see Rekey in
# core/handlers/operator.py). A backup tag makes a file that restore trusts;
# a new token is the operator credential.
TOKEN_ONLY = frozenset({"Rekey", "RekeyVerify", "RekeyCancel", "BackupTag", "RotateToken"})
# Calls that try a seal secret (shares, passphrase, PIN): their failures are
# rate-limited per address, apart from failed authentications.
TRIES_SEAL_SECRETS = frozenset({"Unseal", "Rekey", "RekeyVerify"})
# Failed operator authentications per source address: a burst of 20, then 5
# a second. A valid credential is never throttled.
_OPERATOR_RATE, _OPERATOR_BURST = 5.0, 20
# Failed unseal or rekey inputs (wrong shares, passphrase, PIN) per source
# address: a burst of 10, then one every 10 seconds. Passphrases and PINs are
# chosen by people, so this bounds guessing even by a holder of the token.
_SEAL_SECRET_RATE, _SEAL_SECRET_BURST = 0.1, 10


# Request decoding. Members a call does not take are ignored, as they always were.

Doc = dict[str, Any]
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _text(fields: Doc, name: str, *, limit: int = 4096) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValidationException(f"{name} must be a non-empty string of at most {limit} chars")
    return value


def _number(fields: Doc, name: str, default: int) -> int:
    value = fields.get(name, default)
    if type(value) is not int or not 1 <= value <= 255:
        raise ValidationException(f"{name} must be an integer from 1 to 255")
    return value


def _share_lines(value: object, name: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > 255
        or not all(isinstance(s, str) and 0 < len(s) <= 4096 for s in value)
    ):
        raise ValidationException(f"{name} must be a list of share lines")
    return tuple(value)


def _proof(value: object) -> SealProof:
    if not isinstance(value, dict):
        raise ValidationException(
            "Current is required: the current seal's Shares, Passphrase or Pin"
        )
    shares = _share_lines(value.get("Shares", []), "Current.Shares")
    collect = value.get("Collect", False)
    if not isinstance(collect, bool):
        raise ValidationException("Current.Collect must be a boolean")
    return SealProof(
        shares=shares,
        passphrase=_text(value, "Passphrase"),
        pin=_text(value, "Pin"),
        collect=collect,
    )


def _share_keys(value: object) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > 255
        or not all(isinstance(k, str) and 0 < len(k) <= 16384 for k in value)
    ):
        raise ValidationException("ShareKeys must be a list of PEM public keys")
    return tuple(value)


_NO_INPUT = NoInput()


def _no_input(fields: Doc) -> NoInput:
    return _NO_INPUT


def _unseal(fields: Doc) -> UnsealRequest:
    if fields.get("Reset") is True:
        if len(fields) != 1:
            raise ValidationException("Reset takes no Share, Passphrase or Pin")
        return UnsealRequest(None)
    given = UnsealInput(
        share=_text(fields, "Share"),
        passphrase=_text(fields, "Passphrase"),
        pin=_text(fields, "Pin"),
    )
    if sum(v is not None for v in (given.share, given.passphrase, given.pin)) != 1:
        raise ValidationException("give exactly one of Share, Passphrase or Pin")
    return UnsealRequest(given)


def _backup_tag(fields: Doc) -> BackupTagRequest:
    digest = _text(fields, "Digest", limit=64)
    if digest is None or not _HEX_DIGEST.fullmatch(digest):
        raise ValidationException("Digest must be 64 lowercase hex digits (SHA-256)")
    return BackupTagRequest(bytes.fromhex(digest))


def _rekey(fields: Doc) -> RekeyRequest:
    seal_kind = _text(fields, "Seal")
    if seal_kind is None:
        raise ValidationException("Seal is required: shamir, passphrase or pkcs11")
    new = NewSeal(
        kind=seal_kind,
        shares=_number(fields, "Shares", 5),
        threshold=_number(fields, "Threshold", 3),
        passphrase=_text(fields, "Passphrase"),
        module=_text(fields, "Module"),
        token_label=_text(fields, "TokenLabel"),
        key_label=_text(fields, "KeyLabel"),
        pin=_text(fields, "Pin"),
        share_keys=_share_keys(fields.get("ShareKeys", [])),
    )
    return RekeyRequest(new, _proof(fields.get("Current")))


def _rekey_verify(fields: Doc) -> RekeyVerifyRequest:
    shares = _share_lines(fields.get("Shares", []), "Shares")
    one = _text(fields, "Share")
    given = VerifyInput(
        shares=shares + ((one,) if one else ()),
        passphrase=_text(fields, "Passphrase"),
    )
    if bool(given.shares) == (given.passphrase is not None):
        raise ValidationException("give the new Share(s) or the new Passphrase")
    return RekeyVerifyRequest(given)


# Result encoding: today's JSON members, in today's order.


def _status(status: OperatorStatus) -> Doc:
    answer = dict(status.seal)
    if status.keys is not None:
        answer["keys"] = status.keys
    if status.jobs is not None:
        answer["jobs"] = status.jobs
    if status.runs_jobs is not None:
        answer["runs_jobs"] = status.runs_jobs
    return answer


def _sealed(_: NowSealed) -> Doc:
    return {}


def _rotated(result: Rotated) -> Doc:
    return {"term": result.term}


def _tagged(result: BackupTagged) -> Doc:
    return {"Tag": result.tag.hex()}


def _token(result: TokenRotated) -> Doc:
    return {"Token": result.token}


def _authorising(result: RekeyAuthorising) -> Doc:
    return {
        "seal": result.seal,
        "authorising": True,
        "progress": result.progress,
        "threshold": result.threshold,
    }


def _started(result: RekeyStarted) -> Doc:
    answer: Doc = {"seal": result.seal, "pending": True}
    if result.shares:
        answer.update(shares=result.shares, threshold=result.threshold)
    if result.encrypted:
        answer["encrypted"] = True
    return answer


def _verifying(result: RekeyVerifying) -> Doc:
    return {
        "seal": result.seal,
        "pending": True,
        "progress": result.progress,
        "threshold": result.threshold,
    }


def _done(result: RekeyDone) -> Doc:
    answer: Doc = {"seal": result.seal, "settled": result.settled}
    if result.note:
        answer["note"] = result.note
    return answer


def _cancelled(_: RekeyCancelled) -> Doc:
    return {"cancelled": True}


# The rekey calls answer one of several results, each with its own shape.
_REKEY_ANSWERS: Mapping[type, Callable[[Any], Doc]] = {
    RekeyAuthorising: _authorising,
    RekeyStarted: _started,
    RekeyVerifying: _verifying,
    RekeyDone: _done,
}


def _rekey_answer(result: object) -> Doc:
    return _REKEY_ANSWERS[type(result)](result)


Q = TypeVar("Q")
R = TypeVar("R")


def _always(_: Operator) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class OperatorCall(Generic[Q, R]):
    """One operator call: its body decoded to a typed request, the core
    handler (the answer and the audit detail), the answer encoded."""

    decode: Callable[[Doc], Q]
    handle: Callable[[Operator, Q], Awaitable[tuple[R, str]]]
    encode: Callable[[R], Doc]
    # Calls a server may be built without: otherwise answered as unknown,
    # before the body is looked at.
    offered: Callable[[Operator], bool] = _always


def _tags_backups(operator: Operator) -> bool:
    return operator.tags_backups


def _rotates_token(operator: Operator) -> bool:
    return operator.rotates_token


CALLS: Mapping[str, OperatorCall[Any, Any]] = {
    "Status": OperatorCall(_no_input, Operator.status, _status),
    "Unseal": OperatorCall(_unseal, Operator.unseal, _status),
    "Seal": OperatorCall(_no_input, Operator.seal, _sealed),
    "Rotate": OperatorCall(_no_input, Operator.rotate, _rotated),
    "Rekey": OperatorCall(_rekey, Operator.rekey, _rekey_answer),
    "RekeyVerify": OperatorCall(_rekey_verify, Operator.rekey_verify, _rekey_answer),
    "RekeyCancel": OperatorCall(_no_input, Operator.rekey_cancel, _cancelled),
    "BackupTag": OperatorCall(_backup_tag, Operator.backup_tag, _tagged, _tags_backups),
    "RotateToken": OperatorCall(_no_input, Operator.rotate_token, _token, _rotates_token),
}
OPERATIONS = frozenset(CALLS)


def operation(target: str) -> str | None:
    if not target.startswith(TARGET_PREFIX):
        return None
    name = target[len(TARGET_PREFIX) :]
    return name if name in OPERATIONS else None


class OperatorDoor(AwsJsonErrors):
    name = "operator"
    prefixes = (TARGET_PREFIX,)
    serves_sealed = True

    def __init__(
        self,
        operator: Operator,
        *,
        token: OperatorToken | None,
        sealed: Callable[[], bool],
        signed: SignedCallers,
        account: str | None,
        codec: WireCodec,
    ) -> None:
        """``account`` is the account whose administrators may make operator
        calls with a signature (the one ``operator init`` made, or the dev
        account); None: the operator token only."""
        super().__init__(codec)
        self._operator = operator
        self._token = token
        self._sealed = sealed
        self._signed = signed
        self._account = account
        self._auth_failures = RateLimiter(_OPERATOR_RATE, _OPERATOR_BURST)
        self._seal_secret_failures = RateLimiter(_SEAL_SECRET_RATE, _SEAL_SECRET_BURST)
        self._actions = {
            TARGET_PREFIX + name: Action(
                TARGET_PREFIX + name,
                partial(self._run, name),
                announce=f"operator {name} requested" if name in RECORDED_FIRST else None,
                unrecorded=_DONE_UNRECORDED.get(name),
                answer_unrecorded=name in _ANSWERED_UNRECORDED,
            )
            for name in OPERATIONS
        }

    def operation(self, target: str) -> str | None:
        return target if operation(target) is not None else None

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        # Only failures count against an address, so a flood of bad or
        # missing credentials from a shared address (a NAT, a load balancer,
        # localhost) never throttles the operator's own calls.
        address = call.source_ip or "-"
        authorization = (header(request, b"authorization") or b"").decode("latin-1")
        if authorization.startswith("Bearer "):
            token = self._token
            if token is None or not token.verify(authorization[len("Bearer ") :].strip()):
                self._auth_failed(address)
                raise UnrecognizedClientException("The operator token is not valid.")
            call.principal_name = "operator token"
        else:
            if self._sealed():
                raise Sealed(
                    "keycask is sealed: while sealed, operator calls authenticate "
                    "with the operator token"
                )
            try:
                await self._signed.authenticate(call, request)
            except AUTHENTICATION_FAILURES:
                self._auth_failed(address)
                raise
            assert call.caller is not None
            principal = call.caller.principal
            # The operator API runs the whole server (every account's keys):
            # an administrator of a tenant account runs only that account.
            # A session policy cannot be applied here (no policy decides these
            # calls): a narrowed session must not act as its whole role.
            session = call.caller.session
            narrowed = session is not None and session.policy is not None
            if not principal.admin or principal.account != self._account or narrowed:
                call.decision, call.decided_by = "deny", "not an operator"
                raise AccessDeniedException(
                    f"{call.caller.arn} is not an administrator of the operator account: "
                    "operator calls need the operator token or an administrator of the "
                    "account `keycask operator init` made"
                )
        assert call.operation is not None
        name = call.operation[len(TARGET_PREFIX) :]
        if name in TOKEN_ONLY and call.principal_name is None:
            raise AccessDeniedException(f"{name} needs the operator token")
        call.decision, call.decided_by = "allow", call.principal_name or "administrator"
        if self._sealed() and name not in WHILE_SEALED:
            raise Sealed(f"keycask is sealed: only Status and Unseal are served, not {name}")

    def _auth_failed(self, address: str) -> None:
        """Count a failed operator authentication from ``address``; past the
        budget, answer ThrottlingException instead of saying why."""
        if not self._auth_failures.allow(address):
            raise ThrottlingException("Too many failed operator authentications; slow down.")

    def action(self, call: Call, request: HttpRequest) -> Action:
        assert call.operation is not None
        check_content_type(request)
        return self._actions[call.operation]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        fields = json_object(request.body)
        name = action.name[len(TARGET_PREFIX) :]
        if name in TRIES_SEAL_SECRETS and self._seal_secret_failures.exhausted(
            call.source_ip or "-"
        ):
            # Checked before the input is tried (and before anything is
            # recorded as requested), so guessing a passphrase, PIN or shares
            # really is slowed, even with the operator token.
            raise ThrottlingException(
                "Too many failed unseal or rekey attempts from this address; wait and retry."
            )
        return fields

    async def _run(self, name: str, call: Call, fields: Doc) -> Outcome:
        # The body is decoded here, not in decode(): a malformed seal input
        # spends one of the address's attempts, and a call recorded as
        # requested is recorded so even when its input is malformed.
        wire = CALLS[name]
        try:
            if not wire.offered(self._operator):
                raise ValidationException(f"unknown operator call {name!r}")
            with seal_errors():
                request = wire.decode(fields)
                result, call.detail = await wire.handle(self._operator, request)
        except (KMSInvalidStateException, ValidationException):
            if name in TRIES_SEAL_SECRETS:
                self._seal_secret_failures.allow(call.source_ip or "-")  # spends one attempt
            raise
        return Outcome(result)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        return orjson.dumps(CALLS[action.name[len(TARGET_PREFIX) :]].encode(result))

    async def commit(self, writes: Sequence[Write]) -> None:
        # Operator calls act on the seal and the barrier themselves; they
        # stage no writes for the pipeline to commit.
        raise AssertionError("operator calls commit nothing")
