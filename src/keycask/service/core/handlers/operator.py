"""KeycaskOperator: the calls ``keycask operator`` makes to a running server.

The handlers take the typed requests of ``core/operator_requests.py`` and
give the typed results of ``core/operator_results.py``, with the audit
detail; the operator door (``doors/operator.py``) decodes and encodes the
JSON shapes below.

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

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from keycask.errors import (
    KMSInvalidStateException,
    SealError,
    ValidationException,
    WeakPassphrase,
)
from keycask.seal import Secret
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
from keycask.service.sealing import RekeyOutcome, SealKeeper


@contextmanager
def seal_errors() -> Iterator[None]:
    """The seal's failures as the errors an operator call answers."""
    try:
        yield
    except WeakPassphrase as exc:
        raise ValidationException(str(exc)) from None  # the caller's input
    except SealError as exc:
        # The seal's own messages name files and counts, never secrets.
        raise KMSInvalidStateException(str(exc)) from None


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

    @property
    def tags_backups(self) -> bool:
        return self._backup_tag is not None

    @property
    def rotates_token(self) -> bool:
        return self._rotate_token is not None

    async def _status(self) -> OperatorStatus:
        seal = self.keeper.status()
        if self.keeper.sealed:
            return OperatorStatus(seal)
        return OperatorStatus(
            seal,
            keys=await self._count_keys(),
            jobs=None if self._jobs is None else self._jobs(),
            runs_jobs=None if self._runs_jobs is None else self._runs_jobs(),
        )

    async def status(self, _: NoInput) -> tuple[OperatorStatus, str]:
        return await self._status(), "status"

    async def unseal(self, request: UnsealRequest) -> tuple[OperatorStatus, str]:
        given = request.given
        if given is None:
            self.keeper.reset_unseal()
            return await self._status(), "unseal progress reset"
        secret = Secret.PASSPHRASE if given.passphrase else Secret.PIN
        kind = "share" if given.share else secret.noun
        try:
            await self.keeper.unseal(given)
        finally:
            status = await self._status()
        detail = f"unseal with a {kind}: " + (
            "unsealed" if not status.seal["sealed"] else f"progress {status.seal['progress']}"
        )
        return status, detail

    async def seal(self, _: NoInput) -> tuple[NowSealed, str]:
        self.keeper.seal()
        return NowSealed(), "sealed"

    async def rotate(self, _: NoInput) -> tuple[Rotated, str]:
        term = await self._rotate()
        return Rotated(term), f"barrier rotated to term {term}"

    async def backup_tag(self, request: BackupTagRequest) -> tuple[BackupTagged, str]:
        assert self._backup_tag is not None  # the door serves it only if tags_backups
        tag = self._backup_tag(request.digest)
        return BackupTagged(tag), f"backup tagged: sha256 {request.digest.hex()}"

    async def rotate_token(self, _: NoInput) -> tuple[TokenRotated, str]:
        assert self._rotate_token is not None  # the door serves it only if rotates_token
        try:
            token = self._rotate_token()
        except OSError as exc:
            raise KMSInvalidStateException(
                f"the operator token could not be replaced: {exc}"
            ) from None
        return TokenRotated(token), "operator token replaced; the old one no longer works"

    async def rekey(
        self, request: RekeyRequest
    ) -> tuple[RekeyAuthorising | RekeyStarted | RekeyDone, str]:
        new = request.new
        outcome = await self.keeper.rekey(new, request.proof)
        if outcome.authorising:
            threshold = self.keeper.status().get("threshold")
            return RekeyAuthorising(new.kind, outcome.progress, threshold), (
                f"rekey to a {new.kind} seal: {outcome.progress} current shares given"
            )
        if outcome.pending:
            return RekeyStarted(
                new.kind, new.threshold, outcome.shares, encrypted=bool(new.share_keys)
            ), (
                f"rekey to a new {new.kind} seal started; "
                "the current seal stays until it is verified"
            )
        return self._rekey_done(new.kind, outcome)

    async def rekey_verify(
        self, request: RekeyVerifyRequest
    ) -> tuple[RekeyVerifying | RekeyDone, str]:
        pending = self.keeper.status().get("rekey")
        if not isinstance(pending, dict):
            raise KMSInvalidStateException("no rekey is pending: start one with `operator rekey`")
        kind = str(pending["seal"])
        outcome = await self.keeper.rekey_verify(request.given)
        if outcome.pending:
            verifying = RekeyVerifying(kind, outcome.progress, pending.get("threshold"))
            return verifying, f"rekey verification: {outcome.progress} new shares given"
        return self._rekey_done(kind, outcome)

    async def rekey_cancel(self, _: NoInput) -> tuple[RekeyCancelled, str]:
        kind = await self.keeper.rekey_cancel()
        return RekeyCancelled(), f"pending rekey to a {kind} seal cancelled"

    @staticmethod
    def _rekey_done(seal_kind: str, outcome: RekeyOutcome) -> tuple[RekeyDone, str]:
        done = RekeyDone(seal_kind, outcome.settled, outcome.note or None)
        if outcome.settled:
            return done, f"root key moved to a new {seal_kind} seal"
        return done, f"root key move to a new {seal_kind} seal not confirmed: {outcome.note}"
