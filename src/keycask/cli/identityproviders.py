"""``keycask identity-providers ...``: OpenID Connect identity providers
whose tokens AssumeRoleWithWebIdentity accepts, managed through
``KeycaskAdmin`` calls to the running server (signed with an
administrator's profile). ``create --jwks`` takes a file of the JWK Set
(sent as text) or its URL (fetched by the server, once, at registration)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from keycask import config
from keycask.cli.client import add_connection_options, print_json, server_call

_URL_SCHEMES = ("https://", "http://")


def _admin_call(
    args: argparse.Namespace, operation: str, body: dict[str, object]
) -> dict[str, object]:
    if getattr(args, "account", None):
        body = {**body, "Account": args.account}
    return server_call(args, "KeycaskAdmin." + operation, body)


def _jwks_member(source: str) -> dict[str, object]:
    """``JwksUrl`` for a URL, else ``Jwks`` with the named file's text."""
    if source.startswith(_URL_SCHEMES):
        return {"JwksUrl": source}
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise config.ConfigError(f"cannot read the JWKS file: {error}") from None
    return {"Jwks": text}


def cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"Url": args.issuer, "Audiences": args.audience}
    body.update(_jwks_member(args.jwks))
    created = _admin_call(args, "CreateIdentityProvider", body)
    if args.json:
        print_json(created)
    else:
        print(created["Arn"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    providers = _admin_call(args, "ListIdentityProviders", {})["IdentityProviders"]
    if args.json:
        print_json(providers)
        return 0
    assert isinstance(providers, list)
    for provider in providers:
        assert isinstance(provider, dict)
        print(f"{provider['Arn']}  audiences: {', '.join(provider['Audiences'])}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    provider = _admin_call(args, "GetIdentityProvider", {"Arn": args.arn})
    if args.json:
        print_json(provider)
        return 0
    for name, value in provider.items():
        if name == "Jwks":
            continue  # long, and in --json
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        print(f"{name + ':':<12}{shown}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _admin_call(args, "DeleteIdentityProvider", {"Arn": args.arn})
    return 0


def add_identity_provider_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    add_connection_options(remote, signed=True)

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=help_text, parents=[remote])
        parser.set_defaults(func=func)
        return parser

    group = sub.add_parser(
        "identity-providers",
        help="manage OpenID Connect identity providers (web identity federation)",
        description="OpenID Connect identity providers: issuers whose tokens "
        "AssumeRoleWithWebIdentity accepts for the roles that trust them. KeycaskAdmin calls "
        "to the running server, signed like an AWS CLI call (--profile or AWS_PROFILE; "
        "--endpoint-url or KEYCASK_ADDR; --ca-file, KEYCASK_CACERT or AWS_CA_BUNDLE).",
        epilog="examples:\n"
        "  keycask identity-providers create --issuer https://token.actions.githubusercontent.com"
        " \\\n      --audience sts.amazonaws.com"
        " --jwks https://token.actions.githubusercontent.com/.well-known/jwks\n"
        "  keycask identity-providers create --issuer https://idp.internal/realms/apps \\\n"
        "      --audience ci --audience deploy --jwks jwks.json\n"
        "  keycask identity-providers list --json",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")

    create = command("create", cmd_create, "register an identity provider")
    create.add_argument(
        "--issuer", required=True, metavar="URL", help="the issuer (https://host/path): tokens' iss"
    )
    create.add_argument(
        "--audience",
        required=True,
        action="append",
        metavar="CLIENT_ID",
        help="a client id tokens may be for, their aud (repeatable)",
    )
    create.add_argument(
        "--jwks",
        required=True,
        metavar="FILE|URL",
        help="the signing keys: a JWK Set file (- for stdin), or its https:// URL, "
        "fetched by the server now and kept",
    )
    create.add_argument("--account", help="account id (default: the caller's account)")
    create.add_argument("--json", action="store_true", help="print {Arn} as JSON")

    listing = command("list", cmd_list, "list identity providers")
    listing.add_argument("--account", help="account id (default: the caller's account)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = command("show", cmd_show, "show an identity provider")
    show.add_argument("arn", help="the provider's ARN (arn:aws:iam::ACCOUNT:oidc-provider/...)")
    show.add_argument("--json", action="store_true", help="print JSON (with the JWKS)")
    delete = command("delete", cmd_delete, "delete an identity provider: its tokens stop at once")
    delete.add_argument("arn", help="the provider's ARN")
