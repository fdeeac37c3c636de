"""The operator API (``X-Amz-Target: KeycaskOperator.<Op>``): the calls
``keycask operator`` makes to a running server (the calls themselves and
their JSON shapes: ``core/handlers/operator.py``).

Authenticated by the operator token (``Authorization: Bearer kco_...``), or,
once unsealed, by the SigV4 signature of an administrator of the operator
account (the one ``keycask operator init`` made). Failed authentications,
and failed unseal or rekey inputs, are rate-limited per source address. The
only door served while sealed, and then only for ``Status`` and ``Unseal``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

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
from keycask.service.core.handlers.operator import Operator
from keycask.service.door import Action, header
from keycask.service.doors.awsjson import (
    AwsJsonErrors,
    WireCodec,
    check_content_type,
    json_object,
)
from keycask.service.doors.signed import AUTHENTICATION_FAILURES, SignedCallers
from keycask.service.ratelimit import RateLimiter

TARGET_PREFIX = "KeycaskOperator."
OPERATIONS = frozenset(
    {
        "Status",
        "Unseal",
        "Seal",
        "Rotate",
        "Rekey",
        "RekeyVerify",
        "RekeyCancel",
        "BackupTag",
        "RotateToken",
    }
)
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
            if not principal.admin or principal.account != self._account:
                call.decision, call.decided_by = "deny", "not an operator"
                raise AccessDeniedException(
                    f"{principal.arn} is not an administrator of the operator account: "
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

    async def _run(self, name: str, call: Call, fields: dict[str, Any]) -> Outcome:
        try:
            result, call.detail = await self._operator.handle(name, fields)
        except (KMSInvalidStateException, ValidationException):
            if name in TRIES_SEAL_SECRETS:
                self._seal_secret_failures.allow(call.source_ip or "-")  # spends one attempt
            raise
        return Outcome(result)

    def encode(self, action: Action, result: object | None) -> bytes:
        return orjson.dumps(result)

    async def commit(self, writes: Sequence[Write]) -> None:
        # Operator calls act on the seal and the barrier themselves; they
        # stage no writes for the pipeline to commit.
        raise AssertionError("operator calls commit nothing")
