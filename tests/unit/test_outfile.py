"""cli/outfile.py: an output file appears whole, with its mode, or not at all."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from keycask.cli.errors import UsageError
from keycask.cli.outfile import PRIVATE, Interrupted, interruptible, output


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".keycask-tmp"))


def test_written_whole_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with output(str(target), mode=PRIVATE, force=False) as stream:
        stream.write(b"a" * 100_000)
        # Nothing under the target's name until the block ends.
        assert not target.exists()
    assert target.read_bytes() == b"a" * 100_000
    assert stat.S_IMODE(target.stat().st_mode) == PRIVATE
    assert _leftovers(tmp_path) == []


def test_a_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), output(str(target), mode=0o644, force=False) as stream:
        stream.write(b"half a plaintext")
        raise RuntimeError("authentication failed")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_an_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"precious")
    with (
        pytest.raises(UsageError, match="give --force"),
        output(str(target), mode=0o644, force=False) as stream,
    ):
        stream.write(b"new")  # pragma: no cover - refused before the block
    assert target.read_bytes() == b"precious"
    with output(str(target), mode=0o644, force=True) as stream:
        stream.write(b"new")
    assert target.read_bytes() == b"new"


def test_a_file_that_appears_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with (
        pytest.raises(UsageError, match="appeared while writing"),
        output(str(target), mode=0o644, force=False) as stream,
    ):
        stream.write(b"new")
        target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's"
    assert _leftovers(tmp_path) == []


def test_a_planted_symlink_is_neither_followed_nor_replaced(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    target = tmp_path / "out.bin"
    target.symlink_to(elsewhere)  # dangling: lexists, not exists
    with pytest.raises(UsageError, match="exists"), output(str(target), mode=0o644, force=False):
        pass  # pragma: no cover
    assert not elsewhere.exists()


def test_sigterm_becomes_an_exception_and_the_handler_is_restored(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    target = tmp_path / "out.bin"
    with (
        pytest.raises(Interrupted, match="SIGTERM"),
        interruptible(),
        output(str(target), mode=0o644, force=False) as stream,
    ):
        stream.write(b"partial")
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before
    assert not target.exists()
    assert _leftovers(tmp_path) == []
