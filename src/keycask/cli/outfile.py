"""Output files that appear whole or not at all.

A failed decryption must not leave half a plaintext behind, and a failed
encryption must not leave something that looks like a ciphertext: the bytes
go to a temporary file beside the target (same directory, so the final rename
is atomic and never crosses a filesystem), created 0600, and take the
target's name only once everything is written and flushed. On any failure,
Ctrl-C, SIGTERM or SIGHUP (an ssh session dropped) included, the temporary
file is removed, and a second signal during that removal cannot skip it.

An existing target is kept unless the caller asked to replace it
(``force``): the final step is ``link(2)``, which fails when the name is
taken, so a file that appears while the command runs is not overwritten
either. Only a regular file is ever replaced: a FIFO, a device, a socket or
a symlink at the target is refused even with ``force`` (a rename would put
a plain file where a pipe or a device was expected, or cut a link); to
write into one, the caller redirects stdout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from keycask.cli.errors import CommandFailed, Stopped, UsageError
from keycask.privatefile import fsync_dir

STDIO = "-"
# Files holding plaintext: the owner's alone, whatever the umask says.
PRIVATE = 0o600
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(Stopped):
    """SIGINT, SIGTERM or SIGHUP arrived mid-way; what was half-written is
    gone."""


def is_stdio(path: str | None) -> bool:
    return path is None or path == STDIO


def refuse_existing(path: str | None, *, force: bool) -> None:
    """Fail before any work when ``path`` exists and may not be replaced."""
    if is_stdio(path):
        return
    assert path is not None
    refuse_special(path)
    if not force and os.path.lexists(path):
        raise UsageError(f"{path} exists: give --force to replace it")


def refuse_special(path: str | Path) -> None:
    """``CommandFailed`` when something other than a regular file or a
    directory (refused on its own) has the name ``path``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return
    raise CommandFailed(
        f"{path} is {_kind(info.st_mode)}, not a regular file: keycask replaces only "
        f"regular files, even with --force; to write into it, redirect stdout (> {path})"
    )


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def default_mode() -> int:
    """0666 less the umask: what ``open(path, "w")`` would have made."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def output(path: str | None, *, mode: int, force: bool) -> Iterator[BinaryIO]:
    """A binary stream for ``path`` (None or ``-``: stdout) that becomes the
    file ``path`` with ``mode`` only when the block ends without an
    exception."""
    if is_stdio(path):
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    assert path is not None
    target = Path(path)
    refuse_existing(path, force=force)
    if target.is_dir():
        raise UsageError(f"{path} is a directory")
    # SIGTERM/SIGINT/SIGHUP held back from the file's creation until the block
    # that removes it is entered: ``interruptible`` raising in between would
    # leave the file behind. They arrive (and raise) right after.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".keycask-tmp", dir=target.parent or "."
        )
        tmp = Path(tmp_name)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        _publish(tmp, target, force=force)
    finally:
        _remove(tmp)


def _remove(tmp: Path) -> None:
    """Unlink ``tmp`` with the stopping signals held back: one arriving now
    (a second Ctrl-C) is delivered after, instead of raising before the
    unlink. ``interruptible``'s handler raises only for the first signal,
    which covers the few steps before the mask is set."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        tmp.unlink(missing_ok=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _publish(tmp: Path, target: Path, *, force: bool) -> None:
    if force:
        # Checked again: a FIFO or a link may have taken the name meanwhile.
        refuse_special(target)
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise UsageError(
                f"{target} appeared while writing it: give --force to replace it"
            ) from None
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links on this filesystem: check, then rename. The gap
            # between the two is the best such a filesystem allows.
            if os.path.lexists(target):
                raise UsageError(
                    f"{target} appeared while writing it: give --force to replace it"
                ) from None
            os.rename(tmp, target)
    fsync_dir(target.parent)


class Interruption:
    """The signal that arrived in an ``interruptible`` block, if one did.
    Kept because the exception the handler raises lands wherever the
    process stands, and a broad except clause in a library could swallow
    it: ``check`` raises it again at a point of the caller's choosing."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def error(self) -> Interrupted | None:
        if self.received is None:
            return None
        return Interrupted(f"interrupted by {self.received.name}", self.received)

    def check(self) -> None:
        error = self.error()
        if error is not None:
            raise error


@contextlib.contextmanager
def interruptible() -> Iterator[Interruption]:
    """SIGTERM, SIGINT and SIGHUP end the block with ``Interrupted`` (so the
    finally clauses, the temporary file's removal among them, run) rather
    than killing the process where it stands or printing a traceback. Only
    the first raises: a later one would land in those finally clauses and
    skip what they clean up; the process is already stopping."""
    state = Interruption()

    def stop(signum: int, _frame: FrameType | None) -> None:
        if state.received is not None:
            return
        state.received = signal.Signals(signum)
        raise Interrupted(f"interrupted by {state.received.name}", state.received)

    previous = {sig: signal.signal(sig, stop) for sig in _STOPPING}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
