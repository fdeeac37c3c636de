"""KeycaskOperator: the calls ``keycask operator`` makes to a running server.

``POST /`` with ``X-Amz-Target: KeycaskOperator.<Op>`` and a JSON body, like
the KMS API. Authenticated by the operator token (``Authorization: Bearer
kco_...``), or, once unsealed, by an administrator's SigV4 signature;
failed authentications and failed unseal inputs rate-limited per source
address; audited like every request (shares,
passphrases and PINs never reach the record). While sealed only ``Status``
and ``Unseal`` are served.

    Status   {} -> {sealed, seal, progress, threshold, shares?, term?, rewrite_pending?, keys?,
              jobs? ("ok" or "overdue by N s")}
    Unseal   {Share? | Passphrase? | Pin?} -> Status's answer
    Seal     {} -> {}
    Rotate   {} -> {term}
    BackupTag {Digest} -> {Tag}   (hex; the MAC of a backup file, see storage/backup.py)
    RotateToken {} -> {Token}     (the new operator token, shown this once)
    Rekey    {Seal, Shares?, Threshold?, ShareKeys?, Passphrase?, Module?, TokenLabel?,
              KeyLabel?, Pin?,
              Current: {Shares: [...], Collect?} | {Passphrase} | {Pin}}
             -> {seal, authorising, progress, threshold} while Collect gathers current
                shares one operator at a time (the same target each time), then
             -> {seal, pending, shares?, threshold?}   (the new share lines, shown this once)
                or {seal, settled} for a PKCS#11 target (verified by the server itself)
    RekeyVerify {Share? | Shares? | Passphrase?}
             -> {seal, pending, progress, threshold} while new shares are missing,
                then {seal, settled, note?}: the store is under the new seal
    RekeyCancel {} -> {cancelled}   (the pending seal is discarded; the current one stays)

A rekey is two calls: ``Rekey`` writes the new seal aside and answers with
the new shares, and nothing changes until ``RekeyVerify`` gets a threshold
of them (or the new passphrase) back. An answer lost on the way (a client
gone, a timeout) therefore loses nothing: the current seal still opens the
store, and ``Status`` shows the pending rekey (``rekey``) to verify or cancel.
``Unseal {Reset: true}`` drops the shares given so far.

Rekey takes the operator token only (not an administrator's signature) and
proof of the current seal (``Current``): without it one credential could
move the root key under a seal its holder chose, and so learn it. A PKCS#11
target's ``Module`` must be the current seal's library or one the server
was started with (``KEYCASK_PKCS11_MODULES``): a request never names a
library for the server to load.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from keycask.errors import (
    KMSInvalidStateException,
    SealError,
    ValidationException,
    WeakPassphrase,
)
from keycask.seal import Secret
from keycask.service.sealing import (
    NewSeal,
    RekeyOutcome,
    SealKeeper,
    SealProof,
    UnsealInput,
    VerifyInput,
)

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


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
    collect = value.get("Collect", False)
    if not isinstance(collect, bool):
        raise ValidationException("Current.Collect must be a boolean")
    return SealProof(
        shares=tuple(shares),
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


class Operator:
    def __init__(
        self,
        keeper: SealKeeper,
        *,
        rotate: Callable[[], Awaitable[int]],
        count_keys: Callable[[], Awaitable[int]],
        backup_tag: Callable[[bytes], bytes] | None = None,
        rotate_token: Callable[[], str] | None = None,
        jobs: Callable[[], str] | None = None,
        runs_jobs: Callable[[], bool] | None = None,
    ) -> None:
        """``jobs`` says whether the cluster's scheduled jobs run, and
        ``runs_jobs`` whether this node is the one running them (Status)."""
        self.keeper = keeper
        self._rotate = rotate
        self._count_keys = count_keys
        self._backup_tag = backup_tag
        self._rotate_token = rotate_token
        self._jobs = jobs
        self._runs_jobs = runs_jobs

    async def status(self) -> dict[str, object]:
        status = self.keeper.status()
        if not self.keeper.sealed:
            status["keys"] = await self._count_keys()
            if self._jobs is not None:
                status["jobs"] = self._jobs()
            if self._runs_jobs is not None:
                status["runs_jobs"] = self._runs_jobs()
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
        if name == "Unseal" and fields.get("Reset") is True:
            if len(fields) != 1:
                raise ValidationException("Reset takes no Share, Passphrase or Pin")
            self.keeper.reset_unseal()
            return await self.status(), "unseal progress reset"
        if name == "Unseal":
            given = UnsealInput(
                share=_text(fields, "Share"),
                passphrase=_text(fields, "Passphrase"),
                pin=_text(fields, "Pin"),
            )
            if sum(v is not None for v in (given.share, given.passphrase, given.pin)) != 1:
                raise ValidationException("give exactly one of Share, Passphrase or Pin")
            secret = Secret.PASSPHRASE if given.passphrase else Secret.PIN
            kind = "share" if given.share else secret.noun
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
        if name == "BackupTag" and self._backup_tag is not None:
            digest = _text(fields, "Digest", limit=64)
            if digest is None or not _HEX_DIGEST.fullmatch(digest):
                raise ValidationException("Digest must be 64 lowercase hex digits (SHA-256)")
            tag = self._backup_tag(bytes.fromhex(digest))
            return {"Tag": tag.hex()}, f"backup tagged: sha256 {digest}"
        if name == "RotateToken" and self._rotate_token is not None:
            try:
                token = self._rotate_token()
            except OSError as exc:
                raise KMSInvalidStateException(
                    f"the operator token could not be replaced: {exc}"
                ) from None
            return {"Token": token}, "operator token replaced; the old one no longer works"
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
                share_keys=_share_keys(fields.get("ShareKeys", [])),
            )
            outcome = await self.keeper.rekey(new, _proof(fields.get("Current")))
            if outcome.authorising:
                threshold = self.keeper.status().get("threshold")
                return {
                    "seal": seal_kind,
                    "authorising": True,
                    "progress": outcome.progress,
                    "threshold": threshold,
                }, f"rekey to a {seal_kind} seal: {outcome.progress} current shares given"
            if outcome.pending:
                started: dict[str, object] = {"seal": seal_kind, "pending": True}
                if outcome.shares:
                    started.update(shares=outcome.shares, threshold=new.threshold)
                if new.share_keys:
                    started["encrypted"] = True
                return started, (
                    f"rekey to a new {seal_kind} seal started; "
                    "the current seal stays until it is verified"
                )
            return self._rekey_done(seal_kind, outcome)
        if name == "RekeyVerify":
            return await self._rekey_verify(fields)
        if name == "RekeyCancel":
            kind = await self.keeper.rekey_cancel()
            return {"cancelled": True}, f"pending rekey to a {kind} seal cancelled"
        raise ValidationException(f"unknown operator call {name!r}")

    async def _rekey_verify(self, fields: dict[str, Any]) -> tuple[dict[str, object], str]:
        shares = fields.get("Shares", [])
        if (
            not isinstance(shares, list)
            or len(shares) > 255
            or not all(isinstance(s, str) and 0 < len(s) <= 4096 for s in shares)
        ):
            raise ValidationException("Shares must be a list of share lines")
        one = _text(fields, "Share")
        given = VerifyInput(
            shares=tuple(shares) + ((one,) if one else ()),
            passphrase=_text(fields, "Passphrase"),
        )
        if bool(given.shares) == (given.passphrase is not None):
            raise ValidationException("give the new Share(s) or the new Passphrase")
        pending = self.keeper.status().get("rekey")
        if not isinstance(pending, dict):
            raise KMSInvalidStateException("no rekey is pending: start one with `operator rekey`")
        kind = str(pending["seal"])
        outcome = await self.keeper.rekey_verify(given)
        if outcome.pending:
            answer: dict[str, object] = {
                "seal": kind,
                "pending": True,
                "progress": outcome.progress,
                "threshold": pending.get("threshold"),
            }
            return answer, f"rekey verification: {outcome.progress} new shares given"
        return self._rekey_done(kind, outcome)

    @staticmethod
    def _rekey_done(seal_kind: str, outcome: RekeyOutcome) -> tuple[dict[str, object], str]:
        answer: dict[str, object] = {"seal": seal_kind, "settled": outcome.settled}
        if outcome.note:
            answer["note"] = outcome.note
        if outcome.settled:
            return answer, f"root key moved to a new {seal_kind} seal"
        return answer, f"root key move to a new {seal_kind} seal not confirmed: {outcome.note}"
