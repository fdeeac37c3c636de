"""``keycask dev advance-clock``: conveniences for a running ``--dev`` server."""

from __future__ import annotations

import argparse
import re

from keycask import config
from keycask.cli.client import add_connection_options, server_call

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str) -> float:
    """``91d``, ``12h``, ``1d12h30m``, ``90s`` or plain seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise config.ConfigError(
            f"duration must look like 91d, 12h, 1d12h30m or 3600, got {text!r}"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def cmd_dev_advance_clock(args: argparse.Namespace) -> int:
    """Ask a running --dev server to move its lifecycle clock forward. The
    request is signed with the dev profile keycask wrote, like any client's."""
    seconds = parse_duration(args.duration)
    answer = server_call(args, "KeycaskDev.AdvanceClock", {"Seconds": seconds}, timeout=300)
    print(
        f"keycask time is now {answer['Now']} ({answer['OffsetSeconds']:g} s ahead); "
        f"{answer['JobsRun']} lifecycle job(s) ran"
    )
    return 0


def add_dev_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="--dev conveniences").add_subparsers(
        dest="action", required=True
    )
    advance = dev.add_parser(
        "advance-clock",
        help="move a running --dev server's lifecycle clock forward (rotation, deletion)",
    )
    advance.add_argument("duration", help="how far: 91d, 12h, 1d12h30m, or seconds")
    add_connection_options(advance, signed=True)
    advance.set_defaults(func=cmd_dev_advance_clock)
