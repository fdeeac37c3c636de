"""``keycask principals ...``: principals, their policies, tags and access
keys, managed through ``KeycaskAdmin`` calls to the running server (signed
with an administrator's profile); ``create --offline`` writes to the data dir
directly, for an account's first administrator (a production store opens
with its seal's input, ``cli/localstore.py``)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from keycask import config
from keycask.app import AUDIT_DIR
from keycask.audit import anchor
from keycask.auth.credentials import CredentialStore
from keycask.cli import localstore
from keycask.cli.client import (
    CallError,
    add_connection_options,
    local_record,
    print_json,
    server_call,
)
from keycask.errors import KMSError


def _admin_call(
    args: argparse.Namespace, operation: str, body: dict[str, object]
) -> dict[str, object]:
    if getattr(args, "account", None):
        body = {**body, "Account": args.account}
    return server_call(args, "KeycaskAdmin." + operation, body)


def _print_secret(created: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(created))
        return
    for name, value in created.items():
        print(f"{name + ':':<17}{value}")
    if "SecretAccessKey" in created:
        print("The secret is shown once; keycask cannot show it again.", file=sys.stderr)


def _policy_text(path: str, what: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise config.ConfigError(f"cannot read the {what} file: {error}") from None


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"tags are KEY=VALUE, got {text!r}")
    return key, value


async def _create_principal_offline(args: argparse.Namespace) -> dict[str, object]:
    """Straight into the data dir, as the local operator: for an account's
    first administrator. Audited to ``cli.jsonl`` before it is committed."""
    settings = localstore.settings(args, account=args.account)
    storage, barrier = await localstore.open_to_write(args, settings)
    try:
        audit = await anchor.open_keyed(barrier, settings.data_dir / AUDIT_DIR, "cli")
    except BaseException:
        await storage.close()
        raise
    try:
        store = CredentialStore(barrier)
        key, writes = await store.stage_create_principal(
            settings.account_id,
            args.name,
            admin=args.admin,
            kind="role" if args.role else "user",
            tags=dict(args.tag or ()),
        )
        record = local_record(
            "keycask:CreatePrincipal",
            f"principal and access key {key.access_key_id} created: {key.principal.arn}",
        )
        async with localstore.writing(settings, storage, barrier):
            audit.append_sync(record)
            try:
                await store.commit(writes)
            except Exception:
                audit.append_sync(
                    dataclasses.replace(
                        record,
                        outcome="error",
                        error_code="KMSInternalException",
                        detail="commit failed",
                    )
                )
                raise
            finally:
                await anchor.save(barrier, audit.segment, audit.tip)
    finally:
        audit.close()
        await storage.close()
    return {
        "Arn": key.principal.arn,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret,
    }


def cmd_principals_create(args: argparse.Namespace) -> int:
    if args.trust_policy is not None and not args.role:
        raise config.ConfigError("--trust-policy makes a role: add --role")
    if args.max_session_duration is not None and args.trust_policy is None:
        raise config.ConfigError("--max-session-duration needs --trust-policy")
    if args.offline and args.trust_policy is not None:
        raise config.ConfigError(
            "--offline makes an account's first administrator; create roles on the server"
        )
    if args.offline:
        try:
            created = asyncio.run(_create_principal_offline(args))
        except KMSError as error:
            raise CallError(f"{error.code}: {error.message}") from None
    else:
        body: dict[str, object] = {"Name": args.name}
        if args.role:
            body["Role"] = True
        if args.admin:
            body["Admin"] = True
        if args.tag:
            body["Tags"] = dict(args.tag)
        if args.trust_policy is not None:
            body["TrustPolicy"] = _policy_text(args.trust_policy, "trust policy")
        if args.max_session_duration is not None:
            body["MaxSessionDuration"] = args.max_session_duration
        try:
            created = _admin_call(args, "CreatePrincipal", body)
        except CallError as error:
            if str(error).startswith("cannot reach"):
                raise CallError(
                    f"{error} (without a running server, --offline writes to the data dir)"
                ) from None
            raise
    _print_secret(created, args.json)
    return 0


def _text(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_principals_get(args: argparse.Namespace) -> int:
    principal = _admin_call(args, "GetPrincipal", {"Name": args.name})
    if args.json:
        print_json(principal)
        return 0
    for name, value in principal.items():
        print(f"{name + ':':<16}{_text(value)}")
    return 0


def cmd_principals_list(args: argparse.Namespace) -> int:
    principals: list[object] = []
    body: dict[str, object] = {}
    while True:
        page = _admin_call(args, "ListPrincipals", body)
        found = page.get("Principals")
        assert isinstance(found, list)
        principals.extend(found)
        if not page.get("Truncated"):
            break
        body = {"Marker": page["NextMarker"]}
    if args.json:
        print_json(principals)
        return 0
    for principal in principals:
        assert isinstance(principal, dict)
        print(f"{principal['Arn']}{'  (administrator)' if principal['Admin'] else ''}")
    return 0


def cmd_principals_delete(args: argparse.Namespace) -> int:
    _admin_call(args, "DeletePrincipal", {"Name": args.name})
    return 0


def cmd_principals_update_role(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"Name": args.name}
    if args.trust_policy is not None:
        body["TrustPolicy"] = _policy_text(args.trust_policy, "trust policy")
    if args.max_session_duration is not None:
        body["MaxSessionDuration"] = args.max_session_duration
    if len(body) == 1:
        raise config.ConfigError("give --trust-policy, --max-session-duration or both")
    _admin_call(args, "UpdateRole", body)
    return 0


def cmd_principals_put_policy(args: argparse.Namespace) -> int:
    text = _policy_text(args.file, "policy")
    body = {"Name": args.name, "PolicyName": args.policy_name, "PolicyDocument": text}
    _admin_call(args, "PutPrincipalPolicy", body)
    return 0


def cmd_principals_get_policy(args: argparse.Namespace) -> int:
    body = {"Name": args.name, "PolicyName": args.policy_name}
    document = str(_admin_call(args, "GetPrincipalPolicy", body)["PolicyDocument"])
    print(document, end="" if document.endswith("\n") else "\n")
    return 0


def cmd_principals_delete_policy(args: argparse.Namespace) -> int:
    _admin_call(args, "DeletePrincipalPolicy", {"Name": args.name, "PolicyName": args.policy_name})
    return 0


def cmd_principals_tag(args: argparse.Namespace) -> int:
    _admin_call(args, "TagPrincipal", {"Name": args.name, "Tags": dict(args.tags)})
    return 0


def cmd_principals_untag(args: argparse.Namespace) -> int:
    _admin_call(args, "UntagPrincipal", {"Name": args.name, "TagKeys": args.keys})
    return 0


def cmd_access_keys_create(args: argparse.Namespace) -> int:
    _print_secret(_admin_call(args, "CreateAccessKey", {"Name": args.name}), args.json)
    return 0


def cmd_access_keys_list(args: argparse.Namespace) -> int:
    keys = _admin_call(args, "ListAccessKeys", {"Name": args.name})["AccessKeys"]
    if args.json:
        print_json(keys)
        return 0
    assert isinstance(keys, list)
    for key in keys:
        assert isinstance(key, dict)
        print(f"{key['AccessKeyId']}  {key['Status']:<8}  created {key['CreateDate']}")
    return 0


def cmd_access_keys_activate(args: argparse.Namespace) -> int:
    _admin_call(args, "UpdateAccessKey", {"AccessKeyId": args.access_key_id, "Status": "Active"})
    return 0


def cmd_access_keys_deactivate(args: argparse.Namespace) -> int:
    body = {"AccessKeyId": args.access_key_id, "Status": "Inactive"}
    _admin_call(args, "UpdateAccessKey", body)
    return 0


def cmd_access_keys_delete(args: argparse.Namespace) -> int:
    _admin_call(args, "DeleteAccessKey", {"AccessKeyId": args.access_key_id})
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> int:
    """``3600``, ``90s``, ``30m``, ``1h``, ``7d`` -> seconds."""
    unit = _UNITS.get(text[-1:].lower())
    number = text[:-1] if unit is not None else text
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (3600, 90s, 30m, 1h, 7d)")
    return int(number) * (unit or 1)


def cmd_tokens_create(args: argparse.Namespace) -> int:
    created = _admin_call(args, "CreateToken", {"Name": args.name, "Ttl": args.ttl})
    if args.json:
        print(json.dumps({"Token": created["Token"], "ExpiresAt": created["ExpiresAt"]}))
        return 0
    print(created["Token"])
    print(
        f"token id {created['TokenId']}, expires {created['ExpiresAt']}; "
        "the token is shown once; keycask cannot show it again.",
        file=sys.stderr,
    )
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    tokens = _admin_call(args, "ListTokens", {"Name": args.name})["Tokens"]
    if args.json:
        print_json(tokens)
        return 0
    assert isinstance(tokens, list)
    for token in tokens:
        assert isinstance(token, dict)
        print(f"{token['TokenId']}  created {token['CreateDate']}  expires {token['ExpiresAt']}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    _admin_call(args, "RevokeToken", {"TokenId": args.token_id})
    return 0


def add_principals_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    add_connection_options(remote, signed=True)
    in_account = argparse.ArgumentParser(add_help=False)
    in_account.add_argument("--account", help="account id (default: the caller's account)")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_text: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=help_text, parents=[remote, *parents])
        parser.set_defaults(func=func)
        return parser

    principals = sub.add_parser(
        "principals",
        help="manage principals, their policies, tags and access keys (on the running server)",
        description="Principals (users and roles), their identity policies, tags and access "
        "keys: KeycaskAdmin calls to the running server, signed like an AWS CLI call "
        "(--profile or AWS_PROFILE, or credentials in the environment; --endpoint-url or "
        "KEYCASK_ADDR; --ca-file, KEYCASK_CACERT or AWS_CA_BUNDLE).",
        epilog="examples:\n"
        "  keycask principals create alice --tag tenant=a --json\n"
        "  keycask principals put-policy alice --policy-name decrypt --file policy.json\n"
        "  keycask principals access-keys create alice --json\n"
        "  AWS_PROFILE=keycask-admin KEYCASK_ADDR=https://kms.internal:9567 \\\n"
        "      AWS_CA_BUNDLE=cert.pem keycask principals list",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")

    create = command(
        principals,
        "create",
        cmd_principals_create,
        "create a principal with an access key (or a role assumed through STS)",
    )
    create.add_argument("name", help="the user's (or --role's) name")
    create.add_argument(
        "--account",
        help="account id (default: the caller's; with --offline KEYCASK_ACCOUNT_ID "
        "or 000000000000)",
    )
    create.add_argument("--role", action="store_true", help="a role (ARN .../role/NAME)")
    create.add_argument(
        "--trust-policy",
        metavar="FILE",
        help="with --role: who may assume it through STS (a trust policy document; - for "
        "stdin); such a role gets no access key",
    )
    create.add_argument(
        "--max-session-duration",
        type=int,
        metavar="SECONDS",
        help="with --trust-policy: the longest session, 3600 to 43200 (default 3600)",
    )
    create.add_argument(
        "--tag", action="append", type=_tag, metavar="KEY=VALUE", help="a tag (repeatable)"
    )
    create.add_argument("--admin", action="store_true", help="may do everything in its account")
    create.add_argument(
        "--json", action="store_true", help="print Arn, AccessKeyId, SecretAccessKey as JSON"
    )
    create.add_argument(
        "--offline",
        action="store_true",
        help="write to the data dir directly instead of calling the server "
        "(for an account's first administrator; a production store needs its seal's input)",
    )
    localstore.add_store_flags(create, data_dir=False)

    get = command(principals, "get", cmd_principals_get, "show a principal", in_account)
    get.add_argument("name", help="the principal's name")
    get.add_argument("--json", action="store_true", help="print JSON")
    listing = command(principals, "list", cmd_principals_list, "list principals", in_account)
    listing.add_argument("--json", action="store_true", help="print JSON")
    delete = command(
        principals,
        "delete",
        cmd_principals_delete,
        "delete a principal, its policies and all its access keys",
        in_account,
    )
    delete.add_argument("name", help="the principal's name")

    update_role = command(
        principals,
        "update-role",
        cmd_principals_update_role,
        "replace a role's trust policy or maximum session duration",
        in_account,
    )
    update_role.add_argument("name", help="the role's name")
    update_role.add_argument(
        "--trust-policy", metavar="FILE", help="the new trust policy (- for stdin)"
    )
    update_role.add_argument(
        "--max-session-duration", type=int, metavar="SECONDS", help="3600 to 43200"
    )

    put_policy = command(
        principals, "put-policy", cmd_principals_put_policy, "attach an identity policy", in_account
    )
    put_policy.add_argument("name", help="the principal's name")
    put_policy.add_argument("--policy-name", required=True, help="the policy's name")
    put_policy.add_argument("--file", required=True, help="the policy document (- for stdin)")
    for name, func, help_text in (
        ("get-policy", cmd_principals_get_policy, "print an identity policy"),
        ("delete-policy", cmd_principals_delete_policy, "remove an identity policy"),
    ):
        policy = command(principals, name, func, help_text, in_account)
        policy.add_argument("name", help="the principal's name")
        policy.add_argument("--policy-name", required=True, help="the policy's name")

    tag = command(principals, "tag", cmd_principals_tag, "set tags on a principal", in_account)
    tag.add_argument("name", help="the principal's name")
    tag.add_argument(
        "tags", nargs="+", type=_tag, metavar="KEY=VALUE", help="tags to set (or replace)"
    )
    untag = command(
        principals, "untag", cmd_principals_untag, "remove tags from a principal", in_account
    )
    untag.add_argument("name", help="the principal's name")
    untag.add_argument("keys", nargs="+", metavar="KEY", help="tag keys to remove")

    access_keys = principals.add_parser(
        "access-keys", help="a principal's access keys"
    ).add_subparsers(dest="access_keys_action", required=True)
    new_key = command(
        access_keys, "create", cmd_access_keys_create, "a new access key for NAME", in_account
    )
    new_key.add_argument("name", help="the principal's name")
    new_key.add_argument(
        "--json", action="store_true", help="print AccessKeyId, SecretAccessKey as JSON"
    )
    keys = command(
        access_keys, "list", cmd_access_keys_list, "NAME's access keys (no secrets)", in_account
    )
    keys.add_argument("name", help="the principal's name")
    keys.add_argument("--json", action="store_true", help="print JSON")
    for name, func, help_text in (
        ("activate", cmd_access_keys_activate, "let an access key sign requests again"),
        ("deactivate", cmd_access_keys_deactivate, "stop an access key at once (reversible)"),
        ("delete", cmd_access_keys_delete, "delete an access key"),
    ):
        command(access_keys, name, func, help_text).add_argument(
            "access_key_id", help="the access key's id (AKKC...)"
        )

    tokens = principals.add_parser(
        "token", help="a principal's bearer tokens (Vault's X-Vault-Token)"
    ).add_subparsers(dest="token_action", required=True)
    new_token = command(
        tokens, "create", cmd_tokens_create, "a new bearer token for NAME", in_account
    )
    new_token.add_argument("name", help="the principal's name")
    new_token.add_argument(
        "--ttl",
        type=_duration,
        default=3600,
        help="how long it is valid: 3600, 30m, 1h, 7d (default 1h; at most 32 days)",
    )
    new_token.add_argument("--json", action="store_true", help="print Token, ExpiresAt as JSON")
    token_list = command(
        tokens, "list", cmd_tokens_list, "NAME's tokens (ids only, never the tokens)", in_account
    )
    token_list.add_argument("name", help="the principal's name")
    token_list.add_argument("--json", action="store_true", help="print JSON")
    command(tokens, "revoke", cmd_tokens_revoke, "revoke a token at once").add_argument(
        "token_id", help="the token's id (16 hex digits, from create or list)"
    )
