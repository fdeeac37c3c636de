"""cli/outfile.py: an output file appears whole, with its mode, or not at all."""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from keycask.cli.errors import CommandFailed, UsageError
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
    for force in (False, True):
        with (
            pytest.raises(CommandFailed, match="is a symlink, not a regular file"),
            output(str(target), mode=0o644, force=force),
        ):
            pass  # pragma: no cover
        assert target.is_symlink() and not elsewhere.exists()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_fifo, "a FIFO"), (_socket, "a socket"), (lambda p: p.symlink_to(os.devnull), "a symlink")],
)
def test_force_replaces_only_a_regular_file(tmp_path: Path, make: Any, kind: str) -> None:
    target = tmp_path / "out.bin"
    make(target)
    before = os.lstat(target)
    with (
        pytest.raises(CommandFailed, match=f"is {kind}, not a regular file.*redirect stdout"),
        output(str(target), mode=0o644, force=True) as stream,
    ):
        stream.write(b"new")  # pragma: no cover - refused before the block
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert _leftovers(tmp_path) == []


def test_a_fifo_that_takes_the_name_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with (
        pytest.raises(CommandFailed, match="is a FIFO"),
        output(str(target), mode=0o644, force=True) as stream,
    ):
        stream.write(b"new")
        os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_becomes_an_exception_and_the_handler_is_restored(
    tmp_path: Path, sig: signal.Signals
) -> None:
    before = signal.getsignal(sig)
    target = tmp_path / "out.bin"
    with (
        pytest.raises(Interrupted, match=sig.name) as raised,
        interruptible(),
        output(str(target), mode=0o644, force=False) as stream,
    ):
        stream.write(b"partial")
        os.kill(os.getpid(), sig)
    assert raised.value.signum == sig
    assert signal.getsignal(sig) == before
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_a_second_signal_during_the_cleanup_cannot_skip_it(tmp_path: Path) -> None:
    """The first SIGTERM unwinds the block; a second arrives (Ctrl-C pressed
    again, a supervisor's repeat) just as the temporary file is being
    unlinked: it is sent from a profiler hook the moment pathlib's unlink
    is entered, so its Python handler would run before os.unlink does."""
    target = tmp_path / "out.bin"
    sent: list[str] = []

    def second_signal(frame: FrameType, event: str, _arg: object) -> None:
        code = frame.f_code
        in_unlink = code.co_name == "unlink" and code.co_filename.endswith("pathlib.py")
        if event == "call" and in_unlink and not sent:
            sent.append("SIGINT")
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="SIGTERM"), interruptible():
        try:
            with output(str(target), mode=0o644, force=False) as stream:
                stream.write(b"partial")
                sys.setprofile(second_signal)
                os.kill(os.getpid(), signal.SIGTERM)
        finally:
            sys.setprofile(None)
    assert sent == ["SIGINT"]
    assert _leftovers(tmp_path) == []
