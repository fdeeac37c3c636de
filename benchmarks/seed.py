"""Fill a data dir with N symmetric keys, fast, through keycask's own key store
and barrier (so every value is sealed exactly as the server would seal it).

    python benchmarks/seed.py DATA_DIR N

Going through the API would cost one audited, fsynced CreateKey per key; this
writes 5,000 keys per transaction instead. For benchmarks only.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from keycask import config
from keycask.app import open_store
from keycask.crypto import KeyMaterial
from keycask.keys.keystore import KeyStore
from keycask.keys.model import Key, KeyState, default_key_policy

BATCH = 5000


async def seed(data_dir: Path, count: int, account: str = "000000000000") -> list[str]:
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    store = KeyStore(barrier)
    policy = default_key_policy(account)
    ids: list[str] = []
    try:
        for start in range(0, count, BATCH):
            writes = []
            now = datetime.now(UTC)
            for _ in range(min(BATCH, count - start)):
                key = Key(
                    key_id=uuid.uuid4(),
                    account=account,
                    region=settings.region,
                    created=now,
                    description="seeded",
                    state=KeyState.ENABLED,
                    policy=policy,
                )
                writes += store.stage_create(key, KeyMaterial.generate(32))
                ids.append(str(key.key_id))
            await barrier.commit(writes)
    finally:
        await storage.close()
    return ids


def main() -> None:
    data_dir, count = Path(sys.argv[1]), int(sys.argv[2])
    started = time.perf_counter()
    ids = asyncio.run(seed(data_dir, count))
    print(f"seeded {len(ids)} keys in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
