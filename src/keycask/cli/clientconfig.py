"""``keycask config show``: what the CLI will use to reach the server (the
address, the CA, the AWS profile, where the credentials come from, the
operator token's source), resolved exactly as a call resolves them, and
where each came from. Never a secret: an access key id is shown masked, as
``aws configure list`` does, and a token only by where it is."""

from __future__ import annotations

import argparse
import json
import os

from keycask.cli.client import (
    Setting,
    add_connection_options,
    aws_session,
    credentials,
    region,
    resolve_ca,
    resolve_endpoint,
)


def _masked(access_key_id: str) -> str:
    return "*" * max(len(access_key_id) - 4, 0) + access_key_id[-4:]


def _token_source(args: argparse.Namespace) -> Setting:
    """Where ``keycask operator`` would take its token from (same order)."""
    path = getattr(args, "token_file", None)
    if path:
        return Setting(path, "--token-file")
    if os.environ.get("KEYCASK_OPERATOR_TOKEN_FILE"):
        return Setting(os.environ["KEYCASK_OPERATOR_TOKEN_FILE"], "env KEYCASK_OPERATOR_TOKEN_FILE")
    if os.environ.get("KEYCASK_OPERATOR_TOKEN"):
        return Setting("(set)", "env KEYCASK_OPERATOR_TOKEN")
    return Setting(None, "none")


def show(args: argparse.Namespace) -> dict[str, dict[str, str | None]]:
    session, profile = aws_session(args)
    endpoint = resolve_endpoint(args, session)
    assert endpoint.value is not None
    ca = resolve_ca(args, endpoint.value, session)
    found = credentials(session)
    if found is None:
        creds = Setting(None, "none found")
    else:
        creds = Setting(_masked(found.access_key), found.method)
    shown = {
        "endpoint": endpoint,
        "ca_file": ca,
        "profile": profile,
        "credentials": creds,
        "region": region(session, args),
        "operator_token": _token_source(args),
    }
    return {name: {"value": s.value, "source": s.source} for name, s in shown.items()}


def cmd_config_show(args: argparse.Namespace) -> int:
    shown = show(args)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    for name, setting in shown.items():
        value = setting["value"] if setting["value"] is not None else "-"
        print(f"{name + ':':<16}{value}  ({setting['source']})")
    return 0


def add_config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "config", help="show the server, profile, credentials and CA the CLI will use"
    ).add_subparsers(dest="config_action", required=True, metavar="ACTION")
    shown = group.add_parser(
        "show",
        help="print the connection settings every client command would use, and where "
        "each comes from (never a secret)",
        description="Print the server address, CA file, AWS profile, credentials source "
        "(botocore's method, with the access key id masked), region and operator token "
        "source that `keycask principals`, `operator` and `dev` would use with the same "
        "options and environment. Secrets are never printed.",
        epilog="examples:\n  keycask config show\n"
        "  AWS_PROFILE=keycask-admin keycask config show --json",
    )
    add_connection_options(shown, signed=True)
    shown.add_argument(
        "--token-file",
        help="a file holding the operator token (as for `keycask operator`)",
    )
    shown.add_argument("--json", action="store_true", help="print JSON")
    shown.set_defaults(func=cmd_config_show)
