"""cli/errors.py: how every command ends, an interrupt included, and what
reaches the terminal of a failure's text."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keycask.cli.errors import CommandFailed, Stopped, printable, run


def _raise(error: BaseException) -> int:
    raise error


def test_ctrl_c_before_a_command_sets_its_handler_is_one_line_and_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # KeyboardInterrupt is what Python's own SIGINT handler raises, e.g.
    # during connect() before `interruptible` took over.
    assert run(_raise, KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "keycask: interrupted by SIGINT\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stopping_signal_exits_128_plus_its_number(
    sig: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_raise, Stopped(f"interrupted by {sig.name}", sig)) == 128 + sig
    assert capsys.readouterr().err == f"keycask: interrupted by {sig.name}\n"


def test_a_failures_text_is_printed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_raise, CommandFailed("key arn:x\x1b[2J\nkeycask: forged\x9b\u2028")) == 1
    err = capsys.readouterr().err
    assert err == "keycask: key arn:x\\x1b[2J\\x0akeycask: forged\\x9b\\u2028\n"


@given(st.text())
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text
