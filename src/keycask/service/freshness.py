"""Whether this process's caches still hold what the store holds.

Another process (a worker, a cluster node) may commit at any moment; the
coordinator says when one did. Requests, scheduled jobs and the barrier
rewrite all ask here before they read, so each sees the others' writes.
"""

from __future__ import annotations

from keycask.auth.credentials import CredentialStore
from keycask.barrier import Barrier
from keycask.ports import Coordinator, MovableClock
from keycask.service.core.deps import Deps


class Freshness:
    def __init__(
        self,
        deps: Deps,
        credentials: CredentialStore,
        coordinator: Coordinator,
        barrier: Barrier,
        *,
        dev_clock: MovableClock | None = None,
    ) -> None:
        self._deps = deps
        self._credentials = credentials
        self._coordinator = coordinator
        self._barrier = barrier
        self._dev_clock = dev_clock

    def refresh(self) -> None:
        """Drop what another process's commit made stale."""
        if self._coordinator.stale():
            self.forget()
            if not self._barrier.sealed:
                self._barrier.reload_soon()  # another process may have rotated it
            if self._dev_clock is not None:
                self._dev_clock.reload()

    def noticed(self) -> None:
        """Another node committed (told at once, not at the next request): if
        it moved the keyring, follow now. After a rekey elsewhere this node's
        root key opens it no more, and the reload seals this node within
        milliseconds of that commit, whether or not requests come in."""
        if not self._barrier.sealed:
            self._barrier.reload_soon()

    async def current(self, timeout: float) -> None:
        """``refresh``, then wait for a keyring reload that a commit elsewhere
        started: what a request or a probe is told next (served or sealed)
        is what the store says now, not what this node held before."""
        self.refresh()
        await self._barrier.current(timeout)

    def forget(self) -> None:
        """Drop every cached key, access key and authorization document."""
        self._deps.keys.clear()
        self._credentials.clear()
        self._deps.authz.clear()
