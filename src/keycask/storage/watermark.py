"""The node's high-water mark of the store's epoch, kept in its data dir.

The barrier keyring carries a monotonic ``epoch`` sealed under the root key
(``barrier/keyring.py``); every keyring write moves it. The store itself
cannot say whether it was rolled back (it is untrusted, and a whole copy of
an older store is consistent in itself), so each node remembers the highest
epoch it saw, outside the store, and refuses a store below it. The file is
not a secret and needs no authentication: whoever can edit it can as well
remove it, which only turns the check off for that node, as an operator does
on purpose after restoring an older store.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_NAME = "store-epoch"


class Watermark:
    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / FILE_NAME
        self._seen: int | None = None

    @property
    def path(self) -> Path:
        return self._path

    def seen(self) -> int:
        """The highest epoch recorded (0 if none: a new node, or after an
        operator removed the file)."""
        if self._seen is None:
            self._seen = self._read()
        return self._seen

    def _read(self) -> int:
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return max(0, int(text))
        except ValueError:
            # A torn or edited file: it can only weaken the check, never
            # refuse a store, so read it as absent.
            return 0

    def record(self, epoch: int) -> None:
        """Remember ``epoch`` if it is above what was seen. Durable before it
        returns (a node that saw an epoch must not forget it in a crash).
        Processes sharing the data dir may race; the loser writes a lower
        value, which weakens the check a little and never refuses a store."""
        if epoch <= self.seen():
            return
        self._seen = max(epoch, self._read())
        if self._seen > epoch:
            return
        tmp = self._path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{epoch}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
