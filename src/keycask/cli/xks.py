"""``keycask xks credentials create | list | revoke``: the SigV4 credentials
AWS KMS (or another keycask) signs its XKS proxy requests with
(docs/xks.md), managed through ``KeycaskAdmin`` calls to the running server
(signed with an administrator's profile). ``create --json`` prints
``Arn``, ``AccessKeyId``, ``SecretAccessKey`` and the server's
``XksProxyUriPath``; ``create --console-file FILE`` writes them as the XKS
specification's proxy configuration file, which the AWS KMS console reads
when a custom key store is created or edited (an owner-only file, never
over an existing one)."""

from __future__ import annotations

import argparse
import json
import os

from keycask import privatefile
from keycask.cli.client import add_connection_options, print_json
from keycask.cli.errors import UsageError
from keycask.cli.principals import _admin_call, _print_secret


def cmd_xks_credentials_create(args: argparse.Namespace) -> int:
    if args.console_file and os.path.lexists(args.console_file):
        raise UsageError(f"{args.console_file} exists: give a new file for the secret")
    created = _admin_call(args, "CreateXksCredential", {"Name": args.name})
    if args.console_file:
        console = {
            "XksProxyUriPath": created["XksProxyUriPath"],
            "XksProxyAuthenticationCredential": {
                "AccessKeyId": created["AccessKeyId"],
                "RawSecretAccessKey": created["SecretAccessKey"],
            },
        }
        try:
            privatefile.write_new(args.console_file, json.dumps(console, indent=2) + "\n")
        except FileExistsError:
            raise UsageError(
                f"{args.console_file} exists: the credential {created['AccessKeyId']} was made, "
                f"but its secret is not written over a file; revoke it and create another"
            ) from None
        created = {k: v for k, v in created.items() if k != "SecretAccessKey"}
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
        "--json",
        action="store_true",
        help="print Arn, AccessKeyId, SecretAccessKey, XksProxyUriPath as JSON",
    )
    create.add_argument(
        "--console-file",
        metavar="FILE",
        help="write the secret not to the terminal but to FILE (new, owner-only), as the "
        "proxy configuration file the AWS KMS console takes",
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
