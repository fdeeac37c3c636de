"""A one-line progress bar on stderr for long ``encrypt`` / ``decrypt`` runs:
bytes done of the total, rate and time left, redrawn at most ten times a
second and ended with a newline.

Hand-written rather than a library (tqdm, rich): it is forty lines, keycask
has no other use for either, and a dependency on an application's host is
one more thing to audit and pin for a cosmetic feature. Drawn only when
stderr is a terminal and the total is known, so logs and pipes stay clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

# Ten redraws a second reads as smooth and costs nothing next to the crypto.
MIN_INTERVAL = 0.1
_WIDTH = 24
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(count: float) -> str:
    """``count`` bytes in the largest binary unit that keeps it >= 1."""
    unit = 0
    while count >= 1024 and unit < len(_UNITS) - 1:
        count /= 1024
        unit += 1
    return f"{count:.0f} {_UNITS[unit]}" if unit == 0 else f"{count:.1f} {_UNITS[unit]}"


def duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def line(done: int, total: int, elapsed: float) -> str:
    """The bar for ``done`` of ``total`` bytes after ``elapsed`` seconds."""
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(fraction * _WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    if done >= total:
        eta = "done"
    elif rate > 0:
        eta = f"ETA {duration((total - done) / rate)}"
    else:
        eta = "ETA --:--"
    return (
        f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction * 100:3.0f}% "
        f"{size(done)} / {size(total)}  {size(rate)}/s  {eta}"
    )


class Progress:
    """Redraws ``line`` on ``stream`` as ``update`` reports bytes done."""

    def __init__(
        self, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._total = total
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._last = float("-inf")
        self._done = 0
        self._drawn = 0

    def update(self, done: int) -> None:
        self._done = done
        now = self._clock()
        if now - self._last >= MIN_INTERVAL:
            self._last = now
            self._draw(now)

    def close(self) -> None:
        """The last state drawn and the line ended (also after a failure,
        so the error line that follows starts on a line of its own)."""
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        text = line(self._done, self._total, now - self._start)
        # Pad over what a longer previous line left behind.
        self._stream.write("\r" + text.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(text)


class NoProgress:
    """What a run without a bar reports to."""

    def update(self, done: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_for(total: int | None, stream: TextIO, *, quiet: bool) -> Progress | NoProgress:
    """A bar when one is wanted: not ``quiet``, a known ``total`` and a
    terminal to draw on."""
    if quiet or total is None or not stream.isatty():
        return NoProgress()
    return Progress(total, stream)
