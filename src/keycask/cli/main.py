"""The entry point: one argparse tree whose command groups each live in their
own module, one help style (``HelpFormatter``: defaults shown, examples kept
as written) and one way of ending (``cli/errors.py``)."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import metadata
from typing import Any, cast

from keycask.cli import errors
from keycask.cli.appsecrets import add_appsecrets_commands
from keycask.cli.audit import add_audit_commands
from keycask.cli.clientconfig import add_config_commands
from keycask.cli.completion import add_completion_commands
from keycask.cli.dev import add_dev_commands
from keycask.cli.envelope import add_envelope_commands
from keycask.cli.execute import add_exec_commands
from keycask.cli.operator import add_operator_commands
from keycask.cli.policy import add_policy_commands
from keycask.cli.principals import add_principals_commands
from keycask.cli.server import add_server_commands

DESCRIPTION = """\
keycask: a self-hosted KMS that speaks the AWS KMS API.

`server` serves it (--dev on a laptop; in production after `operator init`);
`principals` manages principals, their identity policies, tags and access keys;
`policy` resets, lints and simulates key policies; `audit` verifies the audit
log; `operator` runs a production server (init, status, unseal, seal, rotate,
rekey, backup, restore); `dev` moves a --dev server's lifecycle clock; `config
show` says what the CLI will connect with; `completion` prints a shell
completion script. For applications: `encrypt` and `decrypt` turn files and
streams into AWS Encryption SDK messages under keycask keys and back; `secrets`
keeps an app's secrets in a file you can commit, and `exec` runs the app with
them in its environment. `keycask COMMAND --help` tells more."""

EXAMPLES = """\
examples:
  keycask server --dev                               # a dev server in ./.keycask
  keycask principals create alice --tag tenant=a --json
  keycask operator init --data-dir /var/lib/keycask --output-dir /root/keycask-init \\
      --tls-self-signed
  KEYCASK_ADDR=https://kms.internal:9567 KEYCASK_CACERT=cert.pem keycask operator status
  keycask config show
  keycask encrypt --key-id alias/backups -o db.dump.enc db.dump   # then: keycask decrypt
  keycask secrets set secrets.env API_TOKEN --key-id alias/app   # value from a prompt
  keycask exec --secrets secrets.env -- ./app
  source <(keycask completion bash)"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs kept as written (examples), and every option's
    default shown where it has one its help does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default: Any = action.default
        if (
            action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
            and not isinstance(default, list)
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Every parser of the tree (argparse.ArgumentParser.add_subparsers makes its children of the
    parent's class) formats its help with ``HelpFormatter``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def version() -> str:
    try:
        return metadata.version("keycask")
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="keycask", description=DESCRIPTION, epilog=f"{EXAMPLES}\n\n{errors.EPILOG}")
    root.add_argument("--version", action="version", version=f"keycask {version()}")
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        root.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    add_server_commands(sub)
    add_principals_commands(sub)
    add_audit_commands(sub)
    add_policy_commands(sub)
    add_operator_commands(sub)
    add_dev_commands(sub)
    add_config_commands(sub)
    add_envelope_commands(sub)
    add_appsecrets_commands(sub)
    add_exec_commands(sub)
    add_completion_commands(sub, parser)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parser().parse_args(argv)
    return errors.run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
