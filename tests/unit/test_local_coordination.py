"""Workers on one data dir see each other's commits and never write at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keycask.storage.local import SharedFile, SingleProcess


def test_a_commit_makes_the_other_workers_stale_once(tmp_path: Path) -> None:
    a, b, c = (SharedFile(tmp_path, slot) for slot in (0, 1, 2))
    try:
        for worker in (a, b, c):
            worker.stale()  # absorb the start-up announcements (see the next test)
        assert not a.stale() and not b.stale() and not c.stale()
        a.committed()
        assert not a.stale(), "a worker's own commit does not make it stale"
        assert b.stale() and c.stale()
        assert not b.stale() and not c.stale(), "stale is reported once per change"
        b.committed()
        b.committed()
        assert a.stale() and c.stale()
    finally:
        for worker in (a, b, c):
            worker.close()


def test_a_starting_worker_announces_itself(tmp_path: Path) -> None:
    """A worker killed between commit and announcement is covered by its successor."""
    a = SharedFile(tmp_path, 0)
    assert not a.stale()
    successor = SharedFile(tmp_path, 1)
    assert a.stale()
    a.close()
    successor.close()


def test_a_restarted_worker_starts_fresh(tmp_path: Path) -> None:
    a = SharedFile(tmp_path, 0)
    a.committed()
    a.close()
    again = SharedFile(tmp_path, 1)
    assert not again.stale(), "changes before a worker started are already in storage"
    again.close()


def test_slots_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SharedFile(tmp_path, 64)


async def test_exclusive_serialises_writers_across_workers(tmp_path: Path) -> None:
    a, b = SharedFile(tmp_path, 0), SharedFile(tmp_path, 1)
    order: list[str] = []
    a_inside = asyncio.Event()
    release_a = asyncio.Event()

    async def first() -> None:
        async with a.exclusive():
            order.append("a in")
            a_inside.set()
            await release_a.wait()
            order.append("a out")

    async def second() -> None:
        await a_inside.wait()
        async with b.exclusive():
            order.append("b in")

    task_a, task_b = asyncio.create_task(first()), asyncio.create_task(second())
    await a_inside.wait()
    for _ in range(20):  # give b every chance to get in while a holds the lock
        await asyncio.sleep(0.01)
    assert order == ["a in"]
    release_a.set()
    await asyncio.gather(task_a, task_b)
    assert order == ["a in", "a out", "b in"]
    a.close()
    b.close()


async def test_single_process_is_never_stale_and_still_serialises() -> None:
    single = SingleProcess()
    single.committed()
    assert not single.stale()
    order: list[str] = []
    inside, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with single.exclusive():
            order.append("a in")
            inside.set()
            await release.wait()
            order.append("a out")

    async def second() -> None:
        await inside.wait()
        async with single.exclusive():
            order.append("b in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await inside.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["a in"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["a in", "a out", "b in"]
