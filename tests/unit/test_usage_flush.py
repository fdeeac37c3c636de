"""The last-use flush when the store is sealed under it (an operator's
seal, or a rekey on another node): one warning line, no traceback, and the
uses kept for after the unseal."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.keys.keystore import KeyStore
from keycask.service.core.usage import Usage, UsageTracker
from keycask.storage.sqlite import SQLiteStorage


async def test_a_flush_that_meets_a_seal_keeps_the_uses_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    barrier = await Barrier.open(storage, KeyMaterial.generate())
    try:
        tracker = UsageTracker(KeyStore(barrier))
        key_id = uuid.uuid4()
        use = Usage("Encrypt", datetime.now(UTC), "r-1")
        tracker.record(key_id, use)

        @contextlib.asynccontextmanager
        async def lock_then_seal() -> AsyncIterator[None]:
            barrier.seal("a rekey on another node")
            yield

        with caplog.at_level(logging.WARNING, logger="keycask"):
            await tracker.flush(lock_then_seal(), lambda: None)
        assert [r.getMessage() for r in caplog.records] == [
            "sealed: the last use of 1 keys is recorded once unsealed"
        ]
        assert all(r.exc_info is None for r in caplog.records)
        # Still pending (the store cannot be read while sealed to ask it).
        assert tracker._pending == {key_id: use}
    finally:
        await storage.close()
