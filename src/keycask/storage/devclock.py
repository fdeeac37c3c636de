"""The movable clock of a --dev server: wall-clock time plus an offset.

Lifecycle decisions (rotation due dates, deletion windows, expiry of imported
material and import tokens) read this clock, so a test can bring a rotation
a year ahead in a second. SigV4 freshness and audit timestamps stay on the
wall clock: moving them would make every client's signature look expired
and the audit log lie about when things happened.

The offset is kept in a small file beside the store, so it survives restarts
(keys created "in the future" must not find time going backwards) and every
worker process of one server reads the same one. It only ever grows.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLOCK_FILE = "dev-clock"
# Far enough for any test (a century), small enough that datetime never overflows.
MAX_OFFSET_SECONDS = 100 * 366 * 86400


class MovableClock:
    def __init__(self, directory: Path) -> None:
        self._path = directory / CLOCK_FILE
        self._offset = timedelta(seconds=self._read())

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @property
    def offset_seconds(self) -> float:
        return self._offset.total_seconds()

    def reload(self) -> None:
        """Pick up an advance another worker made."""
        self._offset = timedelta(seconds=self._read())

    def advance(self, seconds: float) -> None:
        """Move time forward for every worker, durably. Callers serialise
        advances (the server runs them under its exclusive write lock)."""
        if not seconds > 0:
            raise ValueError("the clock only moves forward")
        total = self._read() + seconds
        if total > MAX_OFFSET_SECONDS:
            raise ValueError("the clock cannot move more than a century ahead")
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, repr(total).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._offset = timedelta(seconds=total)

    def _read(self) -> float:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return 0.0
        value = float(text)
        if not 0 <= value <= MAX_OFFSET_SECONDS:
            raise ValueError(f"{self._path} holds an impossible clock offset")
        return value
