"""Lifecycle jobs that come due with time: automatic rotation, the end of a
deletion window, the expiry of imported key material.

Every change to a key stages its schedule entries with it
(``keystore.due_jobs``), so the scheduler only lists ``sched/`` up to now.
Each job runs under the store's exclusive write lock and re-reads the key
there, so however many workers run the loop (or an advance of the dev clock
triggers it at the same moment) a due event is acted on exactly once: the
first to get the lock moves the due date, the others find nothing to do.

Catching up after downtime is the same rule: a key whose rotation came due
while the server was down rotates once, not once per missed period. Its next
date stays on the old cadence when less than a period was missed, and is a
full period after the catch-up otherwise.

A multi-Region set rotates from its primary's entry, writing the set's new
material once and every copy's shared fields in one commit. Destroying one
copy of a set removes its region from every other copy in the same commit;
when only a primary waiting in PendingReplicaDeletion is left, its deletion
window starts then (PendingDeletion, with its date). The set's last copy
takes the shared material with it.

Every job is audited like a request (principal ``keycask``), and its record
is durable before its writes are committed. A job that acts on several
things at once (an Azure Key Vault key's Notify action, for each version
near expiry) writes one record for each, all before its one commit; what it
announces besides (a log event, a count) follows the commit.

Whether jobs run at all is checked on every node, leader or not: a job still
listed ``JOBS_LATE_AFTER`` seconds after it came due means nobody runs them
(the jobs lock held by a node that cannot, or by a session that is not
keycask at all; a job failing every time). The node logs it and operator
Status says ``jobs: overdue by N s``.

Why one module: every job goes through the same ``_run`` (the lock, the
re-read, the stale-entry check) and ``_carry_out`` (records before the
commit, error records after a failed one); what a job decides lives in the
core (``gcp_versions``, ``azure_rotation``, the rotation handlers), and
only the few lines that hand it to ``_carry_out`` are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from keycask.audit import AuditLog, AuditRecord
from keycask.errors import BarrierBusy, KMSInternalException, Sealed
from keycask.keys.ids import record_id
from keycask.keys.keystore import (
    JOB_AZURE_NOTIFY,
    JOB_AZURE_ROTATE,
    JOB_DELETE,
    JOB_EXPIRE,
    JOB_GCP_DESTROY,
    JOB_ROTATE,
    JOB_TOKENS,
    KeyStore,
    Stored,
    due_jobs,
    import_token_expiry,
    parse_sched_path,
)
from keycask.keys.model import DEFAULT_PENDING_WINDOW_DAYS, Key, KeyState, RotationType
from keycask.ports import Clock, Coordinator, Write
from keycask.service.core import azure_rotation, hsm_keys
from keycask.service.core.deps import Deps
from keycask.service.core.gcp_versions import destroy_due
from keycask.service.core.handlers.rotation import rotate, stage_rotation

log = logging.getLogger("keycask")

SCHEDULER_PRINCIPAL = "keycask"
_BATCH = 100
# A job this long past due has not run: the node says so (log, Status).
JOBS_LATE_AFTER = 120.0
_LATE_CHECK_EVERY = 5.0
_LATE_LOG_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class JobResult:
    operation: str  # as CloudTrail names the event AWS KMS records
    key: Key
    writes: list[Write]
    detail: str
    # The door whose settings asked for the job (the Azure Key Vault door's
    # rotation policies), recorded as the record's door; None for keycask's own.
    door: str | None = None
    # Once the writes are committed (a notice's log event and count).
    then: Callable[[], None] | None = None


def next_rotation_after(due: datetime, period_days: int, now: datetime) -> datetime:
    """One rotation however many periods passed while nobody was looking:
    the next date on the cadence if it is still ahead, else a period from now
    (so a key that was down for years does not get a date days away)."""
    period = timedelta(days=period_days)
    following = due + period
    if following > now:
        return following
    return now + period


class Scheduler:
    def __init__(
        self,
        deps: Deps,
        audit: AuditLog,
        coordinator: Coordinator,
        *,
        wall_clock: Clock,
        refresh: Callable[[], None],
        request_id: Callable[[], str],
        interval: float = 1.0,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        """``paused`` says when to skip a tick: while sealed nothing can run."""
        self._deps = deps
        self._paused = paused
        self._audit = audit
        self._coordinator = coordinator
        self._wall = wall_clock
        self._refresh = refresh
        self._request_id = request_id
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # After each tick on the node that runs jobs / on every node.
        self.after_tick: list[Callable[[], object]] = []
        self.every_tick: list[Callable[[], object]] = []
        # Seconds the oldest job is overdue by, once over JOBS_LATE_AFTER.
        self.overdue: float | None = None
        # Whether this node ran the jobs at its last tick (operator Status).
        self.leads = False
        self._next_check = 0.0
        self._next_late_log = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._paused():
                self.leads = False
                try:
                    await self._coordinator.resign()
                except Exception:
                    log.exception("could not hand scheduled jobs to another node")
                continue
            try:
                leader = await self._coordinator.leads()
            except Exception:
                log.exception("could not tell whether this node runs scheduled jobs")
                leader = False
            self.leads = leader
            # A seal mid-tick (an operator's, or this node's own after a
            # rekey elsewhere, which it logged) fails the work in hand with
            # Sealed: not an error to report, the next ticks pause.
            if leader:
                try:
                    # Another worker may have moved the dev clock or changed keys.
                    self._refresh()
                    await self.run_due()
                except Sealed:
                    pass
                except BarrierBusy as exc:
                    log.info("scheduled lifecycle jobs wait a tick: %s", exc)
                except Exception:
                    log.exception("scheduled lifecycle jobs failed; retrying")
            try:
                await self._check_late()
            except Sealed:
                pass
            except Exception:
                log.exception("could not check whether scheduled jobs run")
            for hook in [*self.every_tick, *(self.after_tick if leader else ())]:
                try:
                    result = hook()
                    if asyncio.iscoroutine(result):
                        await result
                except Sealed:
                    pass
                except BarrierBusy as exc:
                    # Transient (capacity being reserved, a term retired
                    # meanwhile): the next tick retries; not a fault to trace.
                    log.info("background work waits a tick: %s", exc)
                except Exception:
                    log.exception("scheduler hook failed")

    def jobs_status(self) -> str:
        """For operator Status: ``ok``, or how late the oldest due job is."""
        if self.overdue is None:
            return "ok"
        return f"overdue by {self.overdue:.0f} s"

    async def _check_late(self) -> None:
        """Every few seconds, on every node: is a job long past due still
        listed? Then nobody runs the jobs, and the operator must hear of it:
        rotation, deletion and expiry would otherwise stop silently."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_check:
            return
        self._next_check = loop.time() + _LATE_CHECK_EVERY
        now = self._deps.clock.now().timestamp()
        due = await self._deps.keys.due(now - JOBS_LATE_AFTER, 1)
        if not due:
            if self.overdue is not None:
                log.info("scheduled jobs run again: none is overdue")
            self.overdue = None
            return
        when, job, key_id = parse_sched_path(due[0][0])
        self.overdue = now - when
        if loop.time() >= self._next_late_log:
            self._next_late_log = loop.time() + _LATE_LOG_EVERY
            log.error(
                "scheduled jobs do not run: %s for key %s came due %.0f s ago. Is the"
                " jobs lock held by a session that does not run them (see"
                " docs/deployment.md), or does the job fail (see earlier errors)?",
                job,
                key_id,
                self.overdue,
            )

    async def run_due(self) -> int:
        """Run every job due now; returns how many changed a key."""
        done = 0
        after = ""
        now = self._deps.clock.now()
        while True:
            # Entries are listed once per run, in order: a job that keeps
            # failing is retried next tick, but never blocks those after it.
            due = await self._deps.keys.due(now.timestamp(), _BATCH, after=after)
            for path, job, key_id in due:
                try:
                    if await self._run(path, job, key_id):
                        done += 1
                except Sealed:
                    raise  # no job after it can run either
                except Exception:
                    log.exception("lifecycle job %s for key %s failed", job, key_id)
            if len(due) < _BATCH:
                return done
            after = due[-1][0]

    async def _run(self, path: str, job: str, key_id: uuid.UUID) -> bool:
        keys = self._deps.keys
        async with self._coordinator.exclusive():
            self._refresh()
            if not await keys.exists(path):
                return False  # another worker ran it first
            if job == JOB_TOKENS:
                await self._sweep_tokens(path, key_id)
                return False
            stored = await keys.get(key_id)
            now = self._deps.clock.now()
            result: JobResult | list[JobResult] | None
            if job == JOB_GCP_DESTROY and stored is not None:
                result = await self._gcp_destroy(path, stored.value, now)
            elif job == JOB_AZURE_ROTATE and stored is not None:
                result = await self._azure_rotate(path, stored.value, now)
            elif job == JOB_AZURE_NOTIFY and stored is not None:
                result = await self._azure_notify(path, stored.value, now)
            elif stored is None or path not in due_jobs(stored.value):
                # Left behind (the key changed or is gone): just drop it.
                await self._commit([keys.stage_unschedule(path)])
                return False
            else:
                result = await self._job(job, stored, now)
            if result is None:
                return False
            await self._carry_out(result if isinstance(result, list) else [result])
            return True

    async def _carry_out(self, results: list[JobResult]) -> None:
        """One audit record per result, each durable before the one commit
        of all their writes; then what each does once committed."""
        records = []
        for one in results:
            record = AuditRecord(
                time=self._wall.now(),
                request_id=self._request_id(),
                operation=one.operation,
                principal=SCHEDULER_PRINCIPAL,
                access_key_id=None,
                source_ip=None,
                key_arn=one.key.arn,
                encryption_context=None,
                decision="none",
                decided_by="scheduled by keycask",
                outcome="success",
                error_code=None,
                region=one.key.region,
                detail=one.detail,
                door=one.door,
            )
            await self._audit.append(record)
            records.append(record)
        try:
            await self._commit([w for one in results for w in one.writes])
        except Exception:
            # The records above said success; these say what happened.
            for one, record in zip(results, records, strict=True):
                await self._audit.append(
                    dataclasses.replace(
                        record, outcome="error", error_code="KMSInternalException",
                        detail=f"{one.detail}: commit failed",
                    )
                )  # fmt: skip
            raise
        for one in results:
            if one.then is not None:
                one.then()

    async def _gcp_destroy(self, path: str, key: Key, now: datetime) -> JobResult | None:
        """Cloud KMS versions whose destroy time has come lose their
        material (``gcp_versions.destroy_due``); the entry goes either way."""
        keys = self._deps.keys
        done = await destroy_due(keys, key, now)
        if done is None:
            await self._commit([keys.stage_unschedule(path)])
            return None
        writes, detail = done
        # An HSM-backed key's one version: its token object goes, as at the
        # end of a deletion window (if the commit then fails, the job runs
        # again and finds it gone already).
        detail += await hsm_keys.destroy(self._deps, key)
        return JobResult("DestroyCryptoKeyVersion", key, [*writes, keys.stage_unschedule(path)],
                         detail)  # fmt: skip

    async def _azure_rotate(self, path: str, key: Key, now: datetime) -> JobResult | None:
        """An Azure Key Vault key's rotation by its policy
        (``azure_rotation.rotate_due``): a new version when it is due, else
        only the entry for when it will be; this entry goes either way."""
        keys = self._deps.keys
        writes, detail = await azure_rotation.rotate_due(keys, key, now)
        writes = [w for w in writes if w.path != path] + [keys.stage_unschedule(path)]
        if detail is None:
            await self._commit(writes)
            return None
        operation = azure_rotation.ROTATE_OPERATION
        return JobResult(operation, key, writes, detail, door=azure_rotation.DOOR)

    async def _azure_notify(self, path: str, key: Key, now: datetime) -> list[JobResult] | None:
        """An Azure Key Vault key's Notify action
        (``azure_rotation.notices_due``): a KeyNearExpiry notice for each
        version it is due for, audited one by one, recorded in the key's
        settings in one commit, then logged and counted; else only the
        entry for when one will be due. This entry goes either way."""
        keys = self._deps.keys
        writes, notices = await azure_rotation.notices_due(keys, key, now)
        writes = [w for w in writes if w.path != path] + [keys.stage_unschedule(path)]
        if not notices:
            await self._commit(writes)
            return None
        # The writes once (the first notice's), for the one commit.
        return [
            JobResult(
                azure_rotation.NOTIFY_OPERATION,
                notice.key,
                writes if i == 0 else [],
                notice.detail,
                door=azure_rotation.DOOR,
                then=partial(azure_rotation.announce, notice),
            )
            for i, notice in enumerate(notices)
        ]

    async def _sweep_tokens(self, path: str, key_id: uuid.UUID) -> None:
        """Delete expired import parameters: their RSA private keys have no
        use after 24 hours (a Cloud KMS import job's, keyed by the job's own
        id, after 3 days) and should not sit at rest. Housekeeping with no
        effect on any key, so it is not an audited event."""
        keys = self._deps.keys
        now = self._deps.clock.now().timestamp()
        writes = [keys.stage_unschedule(path)]
        for token_id, stored in await keys.import_tokens(key_id):
            if import_token_expiry(stored.value) <= now:
                writes.append(keys.stage_delete_import_token(key_id, token_id))
        await self._commit(writes)

    async def _commit(self, writes: list[Write]) -> None:
        # As in the pipeline: once started, the commit finishes even if the
        # scheduler is stopped meanwhile, and the change is announced only
        # when it has really landed (or failed), never before.
        commit = asyncio.ensure_future(self._deps.keys.commit(writes))
        commit.add_done_callback(lambda _: self._coordinator.committed())
        await asyncio.shield(commit)

    async def _job(self, job: str, stored: Stored[Key], now: datetime) -> JobResult | None:
        key = stored.value
        keys = self._deps.keys
        if job == JOB_ROTATE:
            if (
                key.state is not KeyState.ENABLED
                or not key.rotates_on_schedule
                or key.rotation_period_days is None
                or key.next_rotation is None
                or key.next_rotation > now
            ):
                return None
            new, material = rotate(key, now, RotationType.AUTOMATIC)
            new = new.replace(
                next_rotation=next_rotation_after(key.next_rotation, key.rotation_period_days, now)
            )
            writes = await stage_rotation(keys, stored, new)
            writes.append(keys.stage_key_material(key, new.current_version, material))
            return JobResult(
                "RotateKey", new, writes, f"automatic rotation to version {new.current_version}"
            )
        if job == JOB_DELETE:
            if (
                key.state is not KeyState.PENDING_DELETION
                or key.deletion_date is None
                or key.deletion_date > now
            ):
                return None
            if key.mrk is not None:
                return await destroy_copy(keys, stored, now)
            writes = await keys.stage_destroy(stored)
            # A key held in an HSM: its token object goes too (if the commit
            # then fails, the job runs again and finds it gone already).
            destroyed = await hsm_keys.destroy(self._deps, key)
            return JobResult(
                "DeleteKey",
                key,
                writes,
                f"deleted with {len(key.versions)} key material(s){destroyed}",
            )
        if job == JOB_EXPIRE:
            return expire_material(keys, stored, now)
        return None


def expire_material(keys: KeyStore, stored: Stored[Key], now: datetime) -> JobResult | None:
    """Delete imported material whose ValidTo has passed. Without its current
    material the key waits for the same material to be imported again."""
    key = stored.value
    expired = [
        v for v in key.versions if v.imported and v.valid_to is not None and v.valid_to <= now
    ]
    if not expired:
        return None
    gone = {v.version for v in expired}
    versions = tuple(
        dataclasses.replace(v, imported=False, valid_to=None) if v.version in gone else v
        for v in key.versions
    )
    new = key.replace(versions=versions).settled()
    writes = keys.stage_update(stored, new)
    writes.extend(keys.stage_delete_key_material(key, v) for v in sorted(gone))
    names = ", ".join(str(v) for v in sorted(gone))
    return JobResult("DeleteExpiredKeyMaterial", new, writes, f"expired material version {names}")


async def destroy_copy(keys: KeyStore, stored: Stored[Key], now: datetime) -> JobResult | None:
    """The end of one multi-Region copy's deletion window, in one commit:
    the copy, its region out of every other copy's ``regions``, the primary's
    deletion window started if it waited only for this replica, and the
    set's material if no copy is left."""
    key = stored.value
    others = [r for r in key.regions if r != key.region]
    if key.multi_region_type == "PRIMARY" and others:
        # A primary with replicas waits in PendingReplicaDeletion and never
        # reaches PendingDeletion: a set in this shape is not keycask's doing.
        log.error(
            "multi-Region primary %s in %s is due for deletion but still has replicas in %s;"
            " not deleted",
            key.public_id,
            key.region,
            ", ".join(others),
        )
        return None
    writes = await keys.stage_destroy(stored)
    if not others:
        writes.extend(await keys.stage_destroy_set_material(key))
        return JobResult(
            "DeleteKey",
            key,
            writes,
            f"deleted the last copy of {key.public_id} with {len(key.versions)} key material(s)",
        )
    assert key.primary_region is not None and key.mrk is not None
    primary = await keys.get(record_id(key.mrk, key.primary_region))
    if primary is None:
        raise KMSInternalException(f"multi-Region key {key.public_id} has no primary copy")
    local: dict[str, object] | None = None
    detail = f"deleted replica key in {key.region}"
    if others == [key.primary_region] and primary.value.state is KeyState.PENDING_REPLICA_DELETION:
        window = primary.value.pending_window_days or DEFAULT_PENDING_WINDOW_DAYS
        when = now + timedelta(days=window)
        local = {
            "state": KeyState.PENDING_DELETION,
            "deletion_date": when,
            "pending_window_days": None,
        }
        detail += f"; the primary key in {key.primary_region} is deleted {when.isoformat()}"
    writes.extend(
        await keys.stage_set_update(
            primary.value, {"regions": tuple(others)}, local=local, skip=(key.region,)
        )
    )
    return JobResult("DeleteKey", key, writes, detail)
