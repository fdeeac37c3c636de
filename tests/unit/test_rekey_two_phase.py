"""The rekey's phases on a real SQLite store and real seal files: current
shares collected one operator at a time, nothing moving before the new
shares come back, cancel, and the finished rewrite retiring the old terms."""

from __future__ import annotations

from pathlib import Path

import pytest

from keycask.barrier import Barrier
from keycask.barrier.rewrite import retirable, rewrite_batch
from keycask.errors import BarrierBusy, SealError
from keycask.seal import REKEY_SEAL_FILE, SEAL_FILE
from keycask.seal.shamir import ShamirSeal
from keycask.service.sealing import NewSeal, SealKeeper, SealProof, VerifyInput
from keycask.storage.sqlite import SQLiteStorage

TARGET = NewSeal(kind="shamir", shares=3, threshold=2)


async def _keeper(tmp_path: Path) -> tuple[SealKeeper, Barrier, SQLiteStorage, list[str]]:
    root, shares = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    storage = SQLiteStorage(tmp_path / "keycask.db")
    barrier = Barrier(storage)
    await barrier.initialise(root)
    await barrier.commit([barrier.put(f"value/{i}", b"kept %d" % i, expect=0) for i in range(5)])
    return SealKeeper(tmp_path, barrier), barrier, storage, shares


async def test_current_shares_one_operator_at_a_time(tmp_path: Path) -> None:
    keeper, _, storage, shares = await _keeper(tmp_path)
    one = await keeper.rekey(TARGET, SealProof(shares=(shares[0],), collect=True))
    assert one.authorising and one.progress == 1 and not one.shares
    assert keeper.status()["rekey_authorisation"] == {
        "seal": "shamir",
        "progress": 1,
        "threshold": 3,
    }
    # Another target while shares are being collected is refused.
    other = NewSeal(kind="shamir", shares=5, threshold=2)
    with pytest.raises(SealError, match="another target"):
        await keeper.rekey(other, SealProof(shares=(shares[1],), collect=True))
    two = await keeper.rekey(TARGET, SealProof(shares=(shares[3],), collect=True))
    assert two.authorising and two.progress == 2
    assert not (tmp_path / REKEY_SEAL_FILE).exists()
    started = await keeper.rekey(TARGET, SealProof(shares=(shares[4],), collect=True))
    assert started.pending and len(started.shares) == 3
    assert "rekey_authorisation" not in keeper.status()
    await storage.close()


async def test_nothing_moves_before_verification_and_cancel_discards(tmp_path: Path) -> None:
    keeper, barrier, storage, shares = await _keeper(tmp_path)
    seal_before = (tmp_path / SEAL_FILE).read_bytes()
    started = await keeper.rekey(TARGET, SealProof(shares=tuple(shares[:3])))
    assert (tmp_path / SEAL_FILE).read_bytes() == seal_before
    assert barrier.keyring.active_term == 1
    one = await keeper.rekey_verify(VerifyInput(shares=(started.shares[0],)))
    assert one.pending and one.progress == 1
    assert await keeper.rekey_cancel() == "shamir"
    with pytest.raises(SealError, match="no rekey is pending"):
        await keeper.rekey_verify(VerifyInput(shares=(started.shares[1],)))
    assert (tmp_path / SEAL_FILE).read_bytes() == seal_before
    assert await barrier.opens_store()
    await storage.close()


async def test_verified_rekey_rotates_and_the_rewrite_retires_old_terms(tmp_path: Path) -> None:
    keeper, barrier, storage, shares = await _keeper(tmp_path)
    await barrier.rotate()  # term 2: values under term 1 remain
    started = await keeper.rekey(TARGET, SealProof(shares=tuple(shares[:3])))
    done = await keeper.rekey_verify(VerifyInput(shares=tuple(started.shares[1:])))
    assert done.settled
    assert barrier.keyring.active_term == 3 and set(barrier.keyring.terms) == {1, 2, 3}
    # Nothing may retire while values still use the old terms.
    assert await retirable(barrier, 3) == frozenset({2})
    step = await rewrite_batch(barrier, "")
    assert step.moved == 5 and step.cursor is None
    assert await retirable(barrier, 3) == frozenset({1, 2})
    await barrier.rewritten(3, retire=await retirable(barrier, 3))
    assert set(barrier.keyring.terms) == {3} and not barrier.keyring.rewrite
    for i in range(5):
        got = await barrier.get(f"value/{i}")
        assert got is not None and got.value == b"kept %d" % i
    # A new term after retirement never reuses a number.
    assert await barrier.rotate() == 4
    await storage.close()


async def test_a_value_sealed_under_a_term_retired_meanwhile_is_refused(tmp_path: Path) -> None:
    """A write sealed before a slow await, committed after the rewrite
    retired its term, would be unreadable: it is refused, never stored."""
    keeper, barrier, storage, _ = await _keeper(tmp_path)
    late = barrier.put("value/late", b"sealed under term 1", expect=0)
    await barrier.rotate()
    await rewrite_batch(barrier, "")
    await barrier.rewritten(2, retire=await retirable(barrier, 2))
    assert set(barrier.keyring.terms) == {2}
    with pytest.raises(BarrierBusy):
        await barrier.commit([late])
    assert await storage.get("value/late") is None
    await barrier.commit([barrier.put("value/late", b"sealed again", expect=0)])
    got = await barrier.get("value/late")
    assert got is not None and got.value == b"sealed again"
    assert keeper.status()["term"] == 2
    await storage.close()
