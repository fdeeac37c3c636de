"""The entry point: one argparse tree whose command groups each live in their
own module, one help style (``HelpFormatter``: defaults shown, examples kept
as written) and one way of ending (``cli/errors.py``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib import metadata
from typing import Any, cast

from keycask.cli import errors
from keycask.cli.completion import add_completion_commands

# The command groups, by the top-level commands each adds, imported only when
# the command line names one of them: `keycask exec` runs at every start of an
# application, and importing every group (the server's modules, the store, the
# Encryption SDK) cost it 0.63 s of the 0.85 s `keycask --version` took
# (python -X importtime). `keycask --help`, completion and an unknown command
# load them all.
GROUPS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("server",), "keycask.cli.server", "add_server_commands"),
    (("principals",), "keycask.cli.principals", "add_principals_commands"),
    (
        ("identity-providers",),
        "keycask.cli.identityproviders",
        "add_identity_provider_commands",
    ),
    (("audit",), "keycask.cli.audit", "add_audit_commands"),
    (("policy",), "keycask.cli.policy", "add_policy_commands"),
    (("operator",), "keycask.cli.operator", "add_operator_commands"),
    (("dev",), "keycask.cli.dev", "add_dev_commands"),
    (("config",), "keycask.cli.clientconfig", "add_config_commands"),
    (("encrypt", "decrypt"), "keycask.cli.envelope", "add_envelope_commands"),
    (("secrets",), "keycask.cli.appsecrets", "add_appsecrets_commands"),
    (("exec",), "keycask.cli.execute", "add_exec_commands"),
    (("xks",), "keycask.cli.xks", "add_xks_commands"),
)
COMPLETION = "completion"

DESCRIPTION = """\
keycask: a self-hosted KMS that speaks the AWS KMS API.

`server` serves it (--dev on a laptop; in production after `operator init`);
`principals` manages principals, their identity policies, tags and access keys;
`xks credentials` the credentials AWS KMS signs its XKS proxy calls with;
`identity-providers` the OpenID Connect issuers whose tokens can assume roles;
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


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command tree, or (``only``) the root with just the group
    that adds the top-level command ``only``."""
    root = Parser(prog="keycask", description=DESCRIPTION, epilog=f"{EXAMPLES}\n\n{errors.EPILOG}")
    root.add_argument("--version", action="version", version=f"keycask {version()}")
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        root.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    for names, module, function in GROUPS:
        if only is None or only in names:
            getattr(importlib.import_module(module), function)(sub)
    if only is None or only == COMPLETION:
        add_completion_commands(sub, parser)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    given = sys.argv[1:] if argv is None else argv
    if given == ["--version"]:
        # Answered without building any command group (0.7 s of imports).
        print(f"keycask {version()}")
        return 0
    args = parser(_named_command(given)).parse_args(argv)
    return errors.run(args.func, args)


def _named_command(argv: list[str]) -> str | None:
    """The top-level command ``argv`` starts with, when it is one keycask
    has (the root takes no option before it but -h and --version)."""
    if not argv:
        return None
    known = {name for names, _, _ in GROUPS for name in names} | {COMPLETION}
    return argv[0] if argv[0] in known else None


if __name__ == "__main__":
    sys.exit(main())
