"""Everything a server does that no request asks for, on one timer: the
lifecycle jobs (rotation, deletion, expiry), writing keys' last use, moving
the store's epoch (every node), the node's heartbeat (``core/nodes.py``),
and the barrier rewrite after a rotation.

``app.py`` builds one per process and starts it; the request path never
touches it, except the operator's Rotate and Status and the dev clock, which
are handed the few methods they need.
"""

from __future__ import annotations

from keycask import metrics
from keycask.audit import AuditLog, AuditRecord
from keycask.barrier import Barrier
from keycask.errors import Sealed
from keycask.ports import Clock, Coordinator
from keycask.service.background.barrier_terms import BarrierTerms
from keycask.service.background.scheduler import SCHEDULER_PRINCIPAL, Scheduler
from keycask.service.core.call import new_request_id
from keycask.service.core.deps import Deps
from keycask.service.core.nodes import NodeRegistry
from keycask.service.freshness import Freshness

# The scheduler's audited operations (as CloudTrail names them), by the job
# name keycask_jobs_total counts them under.
_JOBS = {
    "RotateKey": "rotation",
    "DeleteKey": "deletion",
    "DeleteExpiredKeyMaterial": "expiry",
    "AzureKeyVault.RotateKey": "azure_rotation",
    "AzureKeyVault.KeyNearExpiry": "azure_notify",
}


class Maintenance:
    def __init__(
        self,
        deps: Deps,
        audit: AuditLog,
        coordinator: Coordinator,
        barrier: Barrier,
        freshness: Freshness,
        *,
        wall_clock: Clock,
        interval: float = 1.0,
        nodes: NodeRegistry | None = None,
    ) -> None:
        self._deps = deps
        self._nodes = nodes
        self.scheduler_started = False
        self._coordinator = coordinator
        self._barrier = barrier
        self._freshness = freshness
        self.terms = BarrierTerms(barrier, coordinator, freshness)
        self.scheduler = Scheduler(
            deps,
            audit,
            coordinator,
            wall_clock=wall_clock,
            refresh=freshness.refresh,
            request_id=new_request_id,
            interval=interval,
            paused=lambda: barrier.sealed,
        )
        self.scheduler.every_tick.append(self.flush_usage)
        if nodes is not None:
            # Every node: its entry in the store, every few seconds (quiet).
            self.scheduler.every_tick.append(nodes.heartbeat)
        # Every node, leader or not: moves the store's epoch past its own
        # commits, and seals if the store was rolled back under it.
        self.scheduler.every_tick.append(barrier.tick)
        # What the metrics count as plain integers, into the series (for a
        # scrape another worker answers).
        self.scheduler.every_tick.append(metrics.sync)
        self.scheduler.after_tick.append(self._rewrite)
        # Every job the scheduler runs is audited (principal keycask): its
        # record is what the metrics count, whoever ran it (a tick, the dev clock).
        audit.observers.append(_count_job)

    async def _rewrite(self) -> None:
        if self._barrier.sealed or not self._barrier.keyring.rewrite:
            return
        try:
            await self.terms.rewrite()
        except Sealed:
            raise
        except Exception:
            metrics.JOBS.labels("rewrite", "error").inc()
            raise
        metrics.JOBS.labels("rewrite", "success").inc()

    def start(self) -> None:
        self.scheduler.start()
        self.scheduler_started = True

    async def stop(self) -> None:
        """Stop the timer, then write the last uses it had not written yet."""
        await self.scheduler.stop()
        await self.flush_usage()
        if self._nodes is not None and self.scheduler_started:
            await self._nodes.stop()
        metrics.sync()  # a worker's last second of counts, into the shared files

    async def flush_usage(self) -> None:
        if self._barrier.sealed:
            return
        # Not announced: no cache holds last-use records (a PostgreSQL node
        # counts its own commits itself; see storage/pgcoord.py).
        await self._deps.usage.flush(self._coordinator.exclusive(), self._freshness.refresh)

    async def rotate_barrier(self) -> int:
        return await self.terms.rotate()

    def jobs_status(self) -> str:
        return self.scheduler.jobs_status()

    def runs_jobs(self) -> bool:
        """Whether this node runs the scheduled jobs (holds the jobs lock)."""
        return self.scheduler.leads

    async def run_due(self) -> int:
        return await self.scheduler.run_due()


def _count_job(record: AuditRecord) -> None:
    if record.principal == SCHEDULER_PRINCIPAL and record.operation is not None:
        job = _JOBS.get(record.operation)
        if job is not None:
            metrics.JOBS.labels(job, record.outcome).inc()
