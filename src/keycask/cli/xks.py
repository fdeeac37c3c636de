"""``keycask xks credentials create | list | revoke``: the SigV4 credentials
AWS KMS (or another keycask) signs its XKS proxy requests with
(docs/xks.md), managed through ``KeycaskAdmin`` calls to the running server
(signed with an administrator's profile). ``create --json`` prints
``Arn``, ``AccessKeyId`` and ``SecretAccessKey``; the XksProxyUriPath to give
AWS KMS with them is the server's ``--xks-path-prefix`` + ``/kms/xks/v1``."""

from __future__ import annotations

import argparse

from keycask.cli.client import add_connection_options, print_json
from keycask.cli.principals import _admin_call, _print_secret


def cmd_xks_credentials_create(args: argparse.Namespace) -> int:
    created = _admin_call(args, "CreateXksCredential", {"Name": args.name})
    _print_secret(created, args.json)
    return 0


def cmd_xks_credentials_list(args: argparse.Namespace) -> int:
    keys = _admin_call(args, "ListXksCredentials", {"Name": args.name})["AccessKeys"]
    if args.json:
        print_json(keys)
        return 0
    assert isinstance(keys, list)
    for key in keys:
        assert isinstance(key, dict)
        print(f"{key['AccessKeyId']}  {key['Status']:<8}  created {key['CreateDate']}")
    return 0


def cmd_xks_credentials_revoke(args: argparse.Namespace) -> int:
    _admin_call(args, "DeleteXksCredential", {"AccessKeyId": args.access_key_id})
    return 0


def add_xks_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    add_connection_options(remote, signed=True)
    in_account = argparse.ArgumentParser(add_help=False)
    in_account.add_argument("--account", help="account id (default: the caller's account)")
    group = sub.add_parser(
        "xks",
        help="keycask as an XKS proxy (AWS KMS external key stores): its credentials",
        description="keycask serves the XKS proxy API at <--xks-path-prefix>/kms/xks/v1; "
        "AWS KMS signs its calls with an XKS credential made here (docs/xks.md).",
    ).add_subparsers(dest="xks_action", required=True)
    credentials = group.add_parser(
        "credentials", help="XKS proxy credentials (XksProxyAuthenticationCredential)"
    ).add_subparsers(dest="xks_credentials_action", required=True)
    create = credentials.add_parser(
        "create",
        help="a new XKS credential for principal NAME (made if absent); at most two at once",
        parents=[remote, in_account],
    )
    create.set_defaults(func=cmd_xks_credentials_create)
    create.add_argument("name", help="the principal's name (key policies name its ARN)")
    create.add_argument(
        "--json", action="store_true", help="print Arn, AccessKeyId, SecretAccessKey as JSON"
    )
    listed = credentials.add_parser(
        "list", help="NAME's XKS credentials (no secrets)", parents=[remote, in_account]
    )
    listed.set_defaults(func=cmd_xks_credentials_list)
    listed.add_argument("name", help="the principal's name")
    listed.add_argument("--json", action="store_true", help="print JSON")
    revoke = credentials.add_parser(
        "revoke", help="revoke an XKS credential at once", parents=[remote]
    )
    revoke.set_defaults(func=cmd_xks_credentials_revoke)
    revoke.add_argument("access_key_id", help="the credential's access key id (XKKC...)")
