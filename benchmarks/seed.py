"""Fill a data dir with N symmetric keys, fast, through keycask's own key store
and barrier (so every value is sealed exactly as the server would seal it).

    python benchmarks/seed.py DATA_DIR N

Going through the API would cost one audited, fsynced CreateKey per key; this
writes 5,000 keys per transaction instead. For benchmarks only.

Two choices keep 10,000,000 keys within minutes; neither changes a stored row:

- The key ids are random version-4 UUIDs, drawn up front and staged in
  sorted order. Each transaction then adds rows next to the previous one's
  in each of the store's key ranges (``key/``, ``idx/key/``, ``mat/``),
  instead of touching a random B-tree page per row: with random order the
  WAL (and the checkpoint after it) carries a whole page per row.
- The next batch is sealed while SQLite writes the previous one in
  keycask's storage thread, so the two overlap on two cores.

The ids are written, one a line in that same sorted order, to ``N.ids``
beside the data dir, so a benchmark can reuse a seeded data dir.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
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

BATCH = 5000
PROGRESS_EVERY = 500_000


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


async def seed(data_dir: Path, count: int, account: str = "000000000000") -> Path:
    """Seed ``count`` keys into ``data_dir``; returns the file of their ids."""
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    store = KeyStore(barrier)
    policy = default_key_policy(account)
    ids = sorted_ids(count)
    out = ids_file(data_dir, count)
    # Named as done only once every batch is committed.
    partial = out.with_suffix(".partial")

    async def stage(batch: list[uuid.UUID]) -> list[Write]:
        while True:
            try:
                return _stage(store, batch, account, settings.region, policy)
            except BarrierBusy:
                # The barrier reserves seal capacity in the background; a
                # batch that ran out of it waits for that and is sealed anew.
                await asyncio.sleep(0.01)

    try:
        with partial.open("w") as listing:
            pending: asyncio.Task[None] | None = None
            for start in range(0, count, BATCH):
                batch = [uuid.UUID(bytes=b) for b in ids[start : start + BATCH]]
                writes = await stage(batch)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(_commit(barrier, writes))
                listing.write("".join(f"{k}\n" for k in batch))
                if (start + BATCH) % PROGRESS_EVERY == 0:
                    print(f"seeded {start + BATCH:,} keys", file=sys.stderr, flush=True)
            if pending is not None:
                await pending
    finally:
        await storage.close()
    partial.rename(out)
    return out


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
    asyncio.run(seed(data_dir, count))
    print(f"seeded {count} keys in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
