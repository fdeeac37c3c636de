"""Collecting shares while sealed: a forged share (well formed, with the
public checksum right) must not count, and nothing anyone hands in may jam
the collection for good (a reset, a timeout, and two different shares with
one index dropping the collection on a seal file without share digests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keycask.crypto import Share
from keycask.errors import SealError
from keycask.seal import SEAL_FILE
from keycask.seal.shamir import COLLECTION_TIMEOUT, ShamirSeal, ShareCollector


def _forged(index: int, threshold: int = 3) -> str:
    return Share(index=index, threshold=threshold, value=bytes(range(32))).encode()


def test_a_forged_share_is_refused_and_the_genuine_one_still_counts(tmp_path: Path) -> None:
    root, lines = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    seal = ShamirSeal(tmp_path)
    collector = ShareCollector(3, knows=seal.knows)
    with pytest.raises(SealError, match="not one this seal handed out"):
        collector.add(_forged(1))
    assert collector.progress == 0
    assert collector.add(lines[0]) is None
    assert collector.add(lines[1]) is None
    combined = collector.add(lines[2])
    assert combined is not None and combined.matches(root)


def test_the_seal_file_keeps_digests_not_shares(tmp_path: Path) -> None:
    _, lines = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    text = (tmp_path / SEAL_FILE).read_text()
    assert len(json.loads(text)["share_digests"]) == 5
    for line in lines:
        assert line.split("-")[3] not in text


def _legacy(tmp_path: Path) -> list[str]:
    """A seal file from before share digests."""
    _, lines = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    path = tmp_path / SEAL_FILE
    document = json.loads(path.read_text())
    del document["share_digests"]
    path.write_text(json.dumps(document))
    return lines


def test_without_digests_a_different_share_with_a_taken_index_drops_the_collection(
    tmp_path: Path,
) -> None:
    lines = _legacy(tmp_path)
    seal = ShamirSeal(tmp_path)
    assert seal.knows(Share.decode(lines[0])) is None
    collector = ShareCollector(3, knows=seal.knows)
    collector.add(_forged(1))  # cannot be told apart without digests
    with pytest.raises(SealError, match="two different shares numbered 1"):
        collector.add(lines[0])
    assert collector.progress == 0
    # The genuine shares now go in as if the forgery had never been.
    for line in lines[:2]:
        assert collector.add(line) is None
    assert collector.add(lines[2]) is not None


def test_the_same_share_twice_is_still_refused_and_kept(tmp_path: Path) -> None:
    _, lines = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    collector = ShareCollector(3, knows=ShamirSeal(tmp_path).knows)
    collector.add(lines[0])
    with pytest.raises(SealError, match="already given"):
        collector.add(lines[0])
    assert collector.progress == 1


def test_a_partial_collection_expires(tmp_path: Path) -> None:
    _, lines = ShamirSeal.init(tmp_path, shares=5, threshold=3)
    now = [1000.0]
    collector = ShareCollector(3, knows=ShamirSeal(tmp_path).knows, clock=lambda: now[0])
    collector.add(lines[0])
    collector.add(lines[1])
    now[0] += COLLECTION_TIMEOUT - 1
    assert collector.progress == 2
    now[0] += 2
    assert collector.progress == 0
    # Started again from the next share: two more are needed, not one.
    assert collector.add(lines[2]) is None
    assert collector.add(lines[3]) is None
    assert collector.add(lines[4]) is not None
