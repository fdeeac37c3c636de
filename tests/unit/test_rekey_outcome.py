"""A rekey whose keyring commit lands but whose confirmation is lost
(PostgreSQL gone after COMMIT) is settled by the next unseal: the operators
hold the new shares, since they just gave them back to verify the rekey."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from keycask.barrier import Barrier
from keycask.errors import StorageUnavailable
from keycask.ports import Entry, Write
from keycask.seal import NEXT_SEAL_FILE
from keycask.seal.shamir import ShamirSeal
from keycask.service.sealing import NewSeal, SealKeeper, SealProof, UnsealInput, VerifyInput
from keycask.storage.sqlite import SQLiteStorage


class _LostAnswer:
    """Applies a commit, then fails as if the connection dropped after COMMIT,
    and stays unreachable for reads from then on."""

    def __init__(self, inner: SQLiteStorage) -> None:
        self.inner = inner
        self.armed = False
        self.down = False

    async def get(self, path: str) -> Entry | None:
        if self.down:
            raise StorageUnavailable("connection lost")
        return await self.inner.get(path)

    async def list(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> Sequence[tuple[str, Entry]]:
        return await self.inner.list(prefix, after, limit)

    async def commit(self, writes: Sequence[Write]) -> None:
        await self.inner.commit(writes)
        if self.armed:
            self.down = True
            raise StorageUnavailable("connection lost after COMMIT")

    async def close(self) -> None:
        await self.inner.close()


async def test_shares_survive_a_rekey_whose_answer_was_lost(tmp_path: Path) -> None:
    root, old = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    sqlite = SQLiteStorage(tmp_path / "keycask.db")
    flaky = _LostAnswer(sqlite)
    barrier = Barrier(flaky)  # type: ignore[arg-type]
    await barrier.initialise(root)
    await barrier.commit([barrier.put("secret/1", b"kept", expect=0)])
    keeper = SealKeeper(tmp_path, barrier)

    started = await keeper.rekey(
        NewSeal(kind="shamir", shares=5, threshold=3), SealProof(shares=tuple(old[:3]))
    )
    assert started.pending and len(started.shares) == 5
    assert not (tmp_path / NEXT_SEAL_FILE).exists()
    flaky.armed = True
    outcome = await keeper.rekey_verify(VerifyInput(shares=tuple(started.shares[:3])))
    assert outcome.settled is False
    assert "keep the old and the new" in (outcome.note or "")
    assert (tmp_path / NEXT_SEAL_FILE).exists()

    # "Restart": the store moved to the new root, and the new shares open it.
    fresh = Barrier(sqlite)
    restarted = SealKeeper(tmp_path, fresh)
    for share in old[:3]:
        try:
            await restarted.unseal(UnsealInput(share=share))
        except Exception as exc:  # the old shares are refused
            assert "does not open the keyring" in str(exc) or "not one this seal" in str(exc)
    assert fresh.sealed
    for share in started.shares[:3]:
        await restarted.unseal(UnsealInput(share=share))
    assert not fresh.sealed
    got = await fresh.get("secret/1")
    assert got is not None and got.value == b"kept"
    assert not (tmp_path / NEXT_SEAL_FILE).exists()
    await sqlite.close()
