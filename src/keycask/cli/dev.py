"""``keycask dev advance-clock``: conveniences for a running ``--dev`` server."""

from __future__ import annotations

import argparse
import re

from keycask import config
from keycask.cli.client import add_connection_options, print_json, server_call

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


def format_duration(seconds: float) -> str:
    """``182d``, ``1d12h30m``, ``45s``: the largest units first, none that
    is zero, whole seconds (``0s`` for none)."""
    left = round(seconds)
    parts = []
    for unit, size in _UNITS.items():
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def cmd_dev_advance_clock(args: argparse.Namespace) -> int:
    """Ask a running --dev server to move its lifecycle clock forward. The
    request is signed like any client's (the dev profile by default)."""
    seconds = parse_duration(args.duration)
    answer = server_call(args, "KeycaskDev.AdvanceClock", {"Seconds": seconds}, timeout=300)
    if args.json:
        print_json(answer)
        return 0
    offset = float(str(answer["OffsetSeconds"]))
    print(
        f"keycask time is now {answer['Now']}, {format_duration(offset)} "
        f"({round(offset)} s) ahead of the wall clock; "
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
        description="Move a running --dev server's lifecycle clock forward, so that "
        "rotations, deletions and expiries come due now; what came due runs before the "
        "answer. The offset is kept in the data dir: it survives restarts and cannot be "
        "undone (the clock only moves forward); start from a new data dir to get today "
        "back.",
        epilog="examples:\n  keycask dev advance-clock 91d      # an automatic rotation "
        "comes due\n  keycask dev advance-clock 1d12h30m --json",
    )
    advance.add_argument("duration", help="how far: 91d, 12h, 1d12h30m, or seconds")
    advance.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    add_connection_options(advance, signed=True)
    advance.set_defaults(func=cmd_dev_advance_clock)
