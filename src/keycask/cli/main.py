"""``keycask server | principals | audit | policy | operator | dev``

The entry point: one argparse tree whose command groups each live in their
own module, and one way of ending (``cli/errors.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from keycask.cli import errors
from keycask.cli.audit import add_audit_commands
from keycask.cli.dev import add_dev_commands
from keycask.cli.operator import add_operator_commands
from keycask.cli.policy import add_policy_commands
from keycask.cli.principals import add_principals_commands
from keycask.cli.server import add_server_commands


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="keycask",
        description=__doc__,
        epilog=errors.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = root.add_subparsers(dest="command", required=True)
    add_server_commands(sub)
    add_principals_commands(sub)
    add_audit_commands(sub)
    add_policy_commands(sub)
    add_operator_commands(sub)
    add_dev_commands(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parser().parse_args(argv)
    return errors.run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
