"""The progress bar's arithmetic and pacing: units, ETA, percent, at most
ten redraws a second, and a newline at the end (after a failure too)."""

from __future__ import annotations

import io

from keycask.cli.progress import NoProgress, Progress, duration, line, progress_for, size

MIB = 1024 * 1024


def test_sizes_and_durations() -> None:
    assert size(0) == "0 B"
    assert size(1023) == "1023 B"
    assert size(1536) == "1.5 KiB"
    assert size(3 * 1024**3) == "3.0 GiB"
    assert duration(0) == "0:00"
    assert duration(59.6) == "1:00"
    assert duration(3725) == "1:02:05"


def test_line_shows_done_total_rate_and_eta() -> None:
    text = line(25 * MIB, 100 * MIB, 5.0)
    assert " 25% " in text
    assert "25.0 MiB / 100.0 MiB" in text
    assert "5.0 MiB/s" in text
    assert "ETA 0:15" in text  # 75 MiB left at 5 MiB/s
    assert text.startswith("[######" + "." * 18 + "]")
    assert line(100 * MIB, 100 * MIB, 4.0).endswith("done")
    assert "ETA --:--" in line(0, 100, 0.0)
    # An empty input is done at once; more than promised never exceeds 100%.
    assert "100%" in line(0, 0, 0.0)
    assert "100%" in line(200, 100, 1.0)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_redraws_at_most_ten_times_a_second_and_ends_the_line() -> None:
    out = io.StringIO()
    clock = _Clock()
    bar = Progress(1000, out, clock)
    for step in range(100):  # 100 updates over 1 s
        clock.now = step / 100
        bar.update(step * 10)
    assert out.getvalue().count("\r") == 10
    bar.close()
    assert out.getvalue().endswith("\n")
    assert out.getvalue().count("\n") == 1


def test_a_shorter_line_covers_a_longer_one() -> None:
    out = io.StringIO()
    clock = _Clock()
    bar = Progress(10 * 1024**3, out, clock)
    clock.now = 1.0
    bar.update(1)  # slow: a long ETA
    clock.now = 2.0
    bar.update(10 * 1024**3)  # "done": shorter
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) >= len(first)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_drawn_only_on_a_terminal_with_a_known_size_and_not_quiet() -> None:
    assert isinstance(progress_for(10, _Tty(), quiet=False), Progress)
    assert isinstance(progress_for(None, _Tty(), quiet=False), NoProgress)
    assert isinstance(progress_for(10, _Tty(), quiet=True), NoProgress)
    assert isinstance(progress_for(10, io.StringIO(), quiet=False), NoProgress)
