"""The node registry (``service/core/nodes.py``): each node's entry in the
store, round trip, staleness and pruning, a stable node id per data dir, and
heartbeats that are quiet (they move no epoch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.service.core.nodes import (
    PREFIX,
    PRUNE_AFTER,
    STALE_AFTER,
    NodeRecord,
    NodeRegistry,
    node_id,
)
from keycask.storage.sqlite import SQLiteStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def barrier(tmp_path: Path) -> AsyncIterator[Barrier]:
    storage = SQLiteStorage(tmp_path / "kv.db")
    yield await Barrier.open(storage, KeyMaterial.generate())
    await storage.close()


def _record(node: str, name: str) -> NodeRecord:
    return NodeRecord(node, name, f"http://{name}:9567", "1.2.3", 1_799_999_000.0, 0.0, "ready")


def _registry(barrier: Barrier, clock: Clock, node: str = "aaaa", **kw: object) -> NodeRegistry:
    return NodeRegistry(barrier, _record(node, f"host-{node}"), clock=clock, **kw)  # type: ignore[arg-type]


async def test_an_entry_round_trips_through_the_store(barrier: Barrier) -> None:
    clock = Clock()
    registry = _registry(barrier, clock)
    await registry.heartbeat()
    [view] = await registry.nodes()
    assert view.this and view.state == "ready"
    assert view.record == NodeRecord(
        "aaaa", "host-aaaa", "http://host-aaaa:9567", "1.2.3", 1_799_999_000.0, clock.now, "ready"
    )
    stored = await barrier.get(PREFIX + "aaaa")
    assert stored is not None and NodeRecord.from_bytes(stored.value) == view.record
    # Sealed through the barrier like every value: the raw row is ciphertext.
    raw = await barrier.storage.get(PREFIX + "aaaa")
    assert raw is not None and b"host-aaaa" not in raw.value


async def test_heartbeats_are_written_every_interval_and_go_stale(barrier: Barrier) -> None:
    clock = Clock()
    mine, theirs = _registry(barrier, clock), _registry(barrier, clock, "bbbb")
    await mine.heartbeat()
    await theirs.heartbeat()
    first = clock.now
    clock.now += 1
    await theirs.heartbeat()  # within the interval: not written again
    [_, other] = await mine.nodes()
    assert (other.record.node_id, other.record.heartbeat, other.this) == ("bbbb", first, False)
    clock.now = first + STALE_AFTER + 1
    await mine.heartbeat()
    states = {v.record.node_id: v.state for v in await mine.nodes()}
    assert states == {"aaaa": "ready", "bbbb": "unreachable"}
    await theirs.heartbeat()
    assert {v.record.node_id: v.state for v in await mine.nodes()}["bbbb"] == "ready"


async def test_a_clean_stop_says_stopped_and_old_entries_are_pruned(barrier: Barrier) -> None:
    clock = Clock()
    mine, theirs = _registry(barrier, clock), _registry(barrier, clock, "bbbb")
    await mine.heartbeat()
    await theirs.heartbeat()
    await theirs.stop()
    assert [v.state for v in await mine.nodes()] == ["ready", "stopped"]
    clock.now += PRUNE_AFTER / 2
    await mine.heartbeat()
    assert len(await mine.nodes()) == 2  # unreachable, but kept for a day
    clock.now += PRUNE_AFTER / 2 + 1
    await mine.heartbeat()
    assert [v.record.node_id for v in await mine.nodes()] == ["aaaa"]
    assert await barrier.get(PREFIX + "bbbb") is None


async def test_only_the_writing_worker_writes_and_nothing_while_sealed(barrier: Barrier) -> None:
    clock = Clock()
    other_worker = _registry(barrier, clock, writes=False)
    await other_worker.heartbeat()
    assert await other_worker.nodes() == []
    registry = _registry(barrier, clock)
    barrier.seal()
    await registry.heartbeat()  # no key: nothing written, and no error
    await registry.stop()
    assert await barrier.storage.get(PREFIX + "aaaa") is None


async def test_a_heartbeat_moves_no_epoch(barrier: Barrier) -> None:
    clock = Clock()
    registry = _registry(barrier, clock)
    await barrier.tick()
    epoch = barrier.keyring.epoch
    for _ in range(3):
        await registry.heartbeat()
        clock.now += 10
        await barrier.tick()
    await registry.stop()
    await barrier.tick()
    assert barrier.keyring.epoch == epoch
    # A commit of a cached value does move it, on the next tick.
    await barrier.commit([barrier.put("alias/x", b"{}", expect=None)])
    await barrier.tick()
    assert barrier.keyring.epoch == epoch + 1


def test_the_node_id_is_stable_per_data_dir(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = node_id(tmp_path / "a")
    assert len(first) == 16 and int(first, 16) >= 0
    assert node_id(tmp_path / "a") == first
    assert node_id(tmp_path / "b") != first
    assert (tmp_path / "a" / "node-id").stat().st_mode & 0o777 == 0o600


def test_a_workers_node_is_named_as_the_node_not_the_worker() -> None:
    from keycask.app import _node_name

    assert _node_name("node-a-0", 0) == "node-a"  # the supervisor's --node-id node-a-0
    assert _node_name("node-a", None) == "node-a"
    assert _node_name(None, 0) is None
