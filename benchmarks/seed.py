"""Fill a data dir with N symmetric keys, fast, through keycask's own key store
and barrier (so every value is sealed exactly as the server would seal it).

    python benchmarks/seed.py DATA_DIR N [WORKERS]

Going through the API would cost one audited, fsynced CreateKey per key; this
writes 2,000 keys per transaction instead. For benchmarks only.

Three choices make 10,000,000 keys feasible; none changes a stored row:

- The key ids are random version-4 UUIDs, drawn up front and staged in
  sorted order. Each transaction then adds rows next to the previous one's
  in each of the store's key ranges (``key/``, ``idx/key/``, ``mat/``),
  instead of touching a random B-tree page per row: with random order the
  WAL (and the checkpoint after it) carries a whole page per row.
- Two worker processes (each with keycask's store and barrier, as two
  server workers would be) seal and commit their own runs of ids; SQLite's
  busy timeout queues their commits. 40,000 keys: 14.2 s with one, 12.4 s
  with two (the machine's two cores shared with other jobs).
- Batches of 2,000 keys (6,000 sealed values), and a pause for the event
  loop after each commit: the barrier starts reserving seal capacity in the
  background once half a block (2**15 seals) is used, and schedules a task
  per seal until that is done. With 5,000-key batches sealed while the
  previous one committed, 60% of seals scheduled one; now 10%, and seeding
  takes a fifth less CPU (40,000 keys: 3.4-3.8 s user, now 2.9-3.0 s).

The ids are written, one a line in that same sorted order, to ``N.ids``
beside the data dir, so a benchmark can reuse a seeded data dir.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from keycask import config
from keycask.app import open_store
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import BarrierBusy
from keycask.keys.keystore import KeyStore
from keycask.keys.model import Key, KeyState, default_key_policy
from keycask.ports import Write

BATCH = 2000
PROGRESS_EVERY = 500_000
WORKERS = 2
ACCOUNT = "000000000000"


def sorted_ids(count: int) -> list[bytes]:
    """``count`` distinct random version-4 UUIDs (as 16 bytes), sorted."""
    ids: set[bytes] = set()
    while len(ids) < count:  # a collision in 122 random bits: never, but exact
        ids.add(uuid.UUID(bytes=os.urandom(16), version=4).bytes)
    return sorted(ids)


def ids_file(data_dir: Path, count: int) -> Path:
    """The seeded ids, one a line (``ID_LINE`` bytes each), sorted."""
    return data_dir.parent / f"{count}.ids"


ID_LINE = 37


def seed_sync(data_dir: Path, count: int, workers: int = WORKERS) -> Path:
    """Seed ``count`` keys into ``data_dir`` with ``workers`` processes;
    returns the file of their ids."""
    ids = sorted_ids(count)
    out = ids_file(data_dir, count)
    # Named as done only once every batch is committed.
    partial = out.with_suffix(".partial")
    with partial.open("w") as listing:
        for start in range(0, count, BATCH):
            listing.write("".join(f"{uuid.UUID(bytes=b)}\n" for b in ids[start : start + BATCH]))
    # Each worker takes one contiguous run of the sorted ids, so its commits
    # still append next to its own previous ones.
    workers = max(1, min(workers, count))
    bounds = [count * w // workers for w in range(workers + 1)]
    slices = [b"".join(ids[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    del ids
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(slices), mp_context=context) as pool:
        for done in pool.map(_worker, [data_dir] * len(slices), slices):
            print(f"a worker seeded {done:,} keys", file=sys.stderr, flush=True)
    partial.rename(out)
    return out


async def seed(data_dir: Path, count: int, workers: int = WORKERS) -> Path:
    """``seed_sync`` for a caller already in an event loop."""
    return await asyncio.to_thread(seed_sync, data_dir, count, workers)


def _worker(data_dir: Path, ids: bytes) -> int:
    return asyncio.run(_seed_ids(data_dir, [ids[i : i + 16] for i in range(0, len(ids), 16)]))


async def _seed_ids(data_dir: Path, ids: list[bytes], account: str = ACCOUNT) -> int:
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    store = KeyStore(barrier)
    policy = default_key_policy(account)

    async def stage(batch: list[uuid.UUID]) -> list[Write]:
        while True:
            try:
                return _stage(store, batch, account, settings.region, policy)
            except BarrierBusy:
                # The barrier reserves seal capacity in the background; a
                # batch that ran out of it waits for that and is sealed anew.
                await asyncio.sleep(0.01)

    try:
        for start in range(0, len(ids), BATCH):
            writes = await stage([uuid.UUID(bytes=b) for b in ids[start : start + BATCH]])
            await barrier.commit(writes)
            # Let the barrier's background reservation of seal capacity (it
            # starts once half a block is used) finish before the next batch.
            for _ in range(3):
                await asyncio.sleep(0)
            if (start + BATCH) % PROGRESS_EVERY == 0:
                print(f"{os.getpid()}: {start + BATCH:,} keys", file=sys.stderr, flush=True)
    finally:
        await storage.close()
    return len(ids)


def _stage(
    store: KeyStore, batch: list[uuid.UUID], account: str, region: str, policy: str
) -> list[Write]:
    writes: list[Write] = []
    now = datetime.now(UTC)
    for key_id in batch:
        key = Key(
            key_id=key_id,
            account=account,
            region=region,
            created=now,
            description="seeded",
            state=KeyState.ENABLED,
            policy=policy,
        )
        writes += store.stage_create(key, KeyMaterial.generate(32))
    return writes


async def _commit(barrier: Barrier, writes: list[Write]) -> None:
    await barrier.commit(writes)


def main() -> None:
    data_dir, count = Path(sys.argv[1]), int(sys.argv[2])
    started = time.perf_counter()
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else WORKERS
    seed_sync(data_dir, count, workers)
    print(f"seeded {count} keys in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
