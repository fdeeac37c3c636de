"""KeycaskOperator: the calls ``keycask operator`` makes to a running server.

``POST /`` with ``X-Amz-Target: KeycaskOperator.<Op>`` and a JSON body, like
the KMS API. Authenticated by the operator token (``Authorization: Bearer
kco_...``), or, once unsealed, by an administrator's SigV4 signature;
rate-limited per source address; audited like every request (shares,
passphrases and PINs never reach the record). While sealed only ``Status``
and ``Unseal`` are served.

    Status   {} -> {sealed, seal, progress, threshold, shares?, term?, rewrite_pending?, keys?,
              jobs? ("ok" or "overdue by N s")}
    Unseal   {Share? | Passphrase? | Pin?} -> Status's answer
    Seal     {} -> {}
    Rotate   {} -> {term}
    Rekey    {Seal, Shares?, Threshold?, Passphrase?, Module?, TokenLabel?, KeyLabel?, Pin?,
              Current: {Shares: [...]} | {Passphrase} | {Pin}}
             -> {seal, shares?}   (the new share lines, shown this once)

Rekey takes the operator token only (not an administrator's signature) and
proof of the current seal (``Current``): without it one credential could
move the root key under a seal its holder chose, and so learn it. A PKCS#11
target's ``Module`` must be the current seal's library or one the server
was started with (``KEYCASK_PKCS11_MODULES``): a request never names a
library for the server to load.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from keycask.errors import (
    KMSInvalidStateException,
    SealError,
    ValidationException,
    WeakPassphrase,
)
from keycask.service.sealing import NewSeal, SealKeeper, SealProof, UnsealInput

TARGET_PREFIX = "KeycaskOperator."
OPERATIONS = frozenset({"Status", "Unseal", "Seal", "Rotate", "Rekey"})
WHILE_SEALED = frozenset({"Status", "Unseal"})
# Changes that outlive the call: recorded in the audit log before they happen.
RECORDED_FIRST = frozenset({"Seal", "Rotate", "Rekey"})
# Not for an administrator's signature alone (see Rekey above).
TOKEN_ONLY = frozenset({"Rekey"})


def operation(target: str) -> str | None:
    if not target.startswith(TARGET_PREFIX):
        return None
    name = target[len(TARGET_PREFIX) :]
    return name if name in OPERATIONS else None


def _text(fields: dict[str, Any], name: str, *, limit: int = 4096) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValidationException(f"{name} must be a non-empty string of at most {limit} chars")
    return value


def _number(fields: dict[str, Any], name: str, default: int) -> int:
    value = fields.get(name, default)
    if type(value) is not int or not 1 <= value <= 255:
        raise ValidationException(f"{name} must be an integer from 1 to 255")
    return value


def _proof(value: object) -> SealProof:
    if not isinstance(value, dict):
        raise ValidationException(
            "Current is required: the current seal's Shares, Passphrase or Pin"
        )
    shares = value.get("Shares", [])
    if (
        not isinstance(shares, list)
        or len(shares) > 255
        or not all(isinstance(s, str) and 0 < len(s) <= 4096 for s in shares)
    ):
        raise ValidationException("Current.Shares must be a list of share lines")
    return SealProof(
        shares=tuple(shares),
        passphrase=_text(value, "Passphrase"),
        pin=_text(value, "Pin"),
    )


class Operator:
    def __init__(
        self,
        keeper: SealKeeper,
        *,
        rotate: Callable[[], Awaitable[int]],
        count_keys: Callable[[], Awaitable[int]],
        jobs: Callable[[], str] | None = None,
    ) -> None:
        """``jobs`` says whether the cluster's scheduled jobs run (Status)."""
        self.keeper = keeper
        self._rotate = rotate
        self._count_keys = count_keys
        self._jobs = jobs

    async def status(self) -> dict[str, object]:
        status = self.keeper.status()
        if not self.keeper.sealed:
            status["keys"] = await self._count_keys()
            if self._jobs is not None:
                status["jobs"] = self._jobs()
        return status

    async def handle(self, name: str, fields: dict[str, Any]) -> tuple[dict[str, object], str]:
        """Run ``name``; returns the answer and the audit detail."""
        try:
            return await self._handle(name, fields)
        except WeakPassphrase as exc:
            raise ValidationException(str(exc)) from None  # the caller's input
        except SealError as exc:
            # The seal's own messages name files and counts, never secrets.
            raise KMSInvalidStateException(str(exc)) from None

    async def _handle(self, name: str, fields: dict[str, Any]) -> tuple[dict[str, object], str]:
        if name == "Status":
            return await self.status(), "status"
        if name == "Unseal":
            given = UnsealInput(
                share=_text(fields, "Share"),
                passphrase=_text(fields, "Passphrase"),
                pin=_text(fields, "Pin"),
            )
            if sum(v is not None for v in (given.share, given.passphrase, given.pin)) != 1:
                raise ValidationException("give exactly one of Share, Passphrase or Pin")
            kind = "share" if given.share else "passphrase" if given.passphrase else "PIN"
            try:
                await self.keeper.unseal(given)
            finally:
                status = await self.status()
            detail = f"unseal with a {kind}: " + (
                "unsealed" if not status["sealed"] else f"progress {status['progress']}"
            )
            return status, detail
        if name == "Seal":
            self.keeper.seal()
            return {}, "sealed"
        if name == "Rotate":
            term = await self._rotate()
            return {"term": term}, f"barrier rotated to term {term}"
        if name == "Rekey":
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
            )
            outcome = await self.keeper.rekey(new, _proof(fields.get("Current")))
            answer: dict[str, object] = {"seal": seal_kind, "settled": outcome.settled}
            if outcome.shares:
                answer["shares"] = outcome.shares
            if outcome.note:
                answer["note"] = outcome.note
            if outcome.settled:
                return answer, f"root key moved to a new {seal_kind} seal"
            return answer, f"root key move to a new {seal_kind} seal not confirmed: {outcome.note}"
        raise ValidationException(f"unknown operator call {name!r}")
