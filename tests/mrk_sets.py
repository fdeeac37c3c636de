"""What the multi-Region unit tests share: a regional copy of a set built
directly, and a key store on a fresh SQLite file, so each test states only
the set it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.keys.ids import record_id
from keycask.keys.keystore import KeyStore
from keycask.keys.model import Key, KeyState, KeyVersion
from keycask.storage.sqlite import SQLiteStorage

ACCOUNT = "111122223333"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRIMARY = "us-east-1"


def mrk_copy(mrk: bytes, region: str, regions: tuple[str, ...], **changes: Any) -> Key:
    """The copy of set ``mrk`` in ``region``, enabled, one version, its
    primary in PRIMARY; ``changes`` replace any field."""
    key = Key(
        key_id=record_id(mrk, region),
        account=ACCOUNT,
        region=region,
        created=T0,
        description=f"copy in {region}",
        state=KeyState.ENABLED,
        policy="{}",
        versions=(KeyVersion(1, "b" * 64),),
        last_version=1,
        mrk=mrk,
        primary_region=PRIMARY,
        regions=tuple(sorted(regions)),
    )
    return key.replace(**changes)


@asynccontextmanager
async def sqlite_keystore(path: Path) -> AsyncIterator[KeyStore]:
    """A key store behind a barrier with a fresh root key, on ``path``."""
    storage = SQLiteStorage(path)
    barrier = await Barrier.open(storage, KeyMaterial.generate())
    try:
        yield KeyStore(barrier)
    finally:
        await storage.close()
