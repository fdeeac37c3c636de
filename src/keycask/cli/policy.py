"""``keycask policy simulate | who-can | lint | reset``: policy tools that
work on a data directory directly, like ``keycask audit verify``.

simulate, who-can and lint only read the store. reset is the recovery path
for a key whose policy locks everyone out (PutKeyPolicy with
BypassPolicyLockoutSafetyCheck): a local operator, whose access to the data
directory is already total, puts the default key policy back; the change is
audited in the ``cli`` segment and its anchor saved. A production store opens
with its seal's input (``cli/localstore.py``); a server running on it sees
the reset at its next request.

Why one module of ~600 lines: the four ``keycask policy`` commands share one
read-only way of opening a data dir and resolving keys and principals.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from keycask import config
from keycask.app import AUDIT_DIR
from keycask.arn import Arn
from keycask.audit import AuditRecord, anchor
from keycask.auth.credentials import CredentialStore, Principal
from keycask.barrier import Barrier
from keycask.cli import errors, localstore
from keycask.cli.client import local_record, print_json
from keycask.cli.errors import UsageError
from keycask.config import partition
from keycask.errors import (
    MalformedPolicyDocumentException,
    NotFoundException,
    StorageConflict,
)
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Key, default_key_policy
from keycask.keys.paths import index_entry_key_id
from keycask.policy.conditions import ContextInput
from keycask.policy.document import Policy, parse_policy
from keycask.policy.evaluate import Decision, Subject
from keycask.policy.lint import (
    MULTI_TENANT_TAG,
    RULES,
    SEVERITY_RANK,
    LintFinding,
    at_least,
    lint_identity_policy,
    lint_key_policy,
    lint_trust_policy,
)
from keycask.policy.request_context import REQUEST_ALIAS, RESOURCE_ALIASES, Transport
from keycask.policy.simulate import simulate, simulate_assume
from keycask.policy.statements import normalize_action
from keycask.policy.vocabulary import STS_TRUST_ACTIONS_BY_LOWER
from keycask.policy.who_can import who_can
from keycask.service.core.authz import Authorizer, bind_policy
from keycask.service.core.resolve import find_key

_PAGE = 1000
_KEY_INDEX = "idx/key/"
_PRINCIPALS = "principal/"


# -- argument types --------------------------------------------------------------


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _action(text: str) -> str:
    trust = STS_TRUST_ACTIONS_BY_LOWER.get(text.lower())
    if trust is not None:
        return trust  # with --role: assuming it
    try:
        return normalize_action(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _condition_keys(pairs: Sequence[tuple[str, str]]) -> dict[str, ContextInput]:
    """--condition pairs as condition keys: a key given more than once is
    multivalued (aws:TagKeys, kms:EncryptionContextKeys, ...)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: v[0] if len(v) == 1 else tuple(v) for name, v in grouped.items()}


# -- reading the store -----------------------------------------------------------


@dataclass
class _Store:
    settings: config.Settings
    barrier: Barrier
    keys: KeyStore
    authz: Authorizer
    credentials: CredentialStore


def _settings(args: argparse.Namespace) -> config.Settings:
    return localstore.settings(
        args, account=getattr(args, "account", None), region=getattr(args, "region", None)
    )


async def _resolve_key(
    store: _Store, ref: str, *, account: str | None, region: str | None
) -> tuple[Stored[Key], str | None]:
    """A key id, key ARN, alias name or alias ARN, resolved as the server
    resolves it for a caller of ``account`` in ``region`` (service/core/resolve.py),
    and the alias name it was named by. Without ``account`` or ``region``,
    those of a key or alias ARN, else --account / --region."""
    settings = store.settings
    arn = Arn.parse_or_none(ref)
    if arn is not None and arn.service == "kms" and arn.partition != partition():
        # The tools render ARNs (reset writes a default policy) in the
        # partition they run with: it must be the store's.
        raise NotFoundException(
            f"{ref} is in partition {arn.partition}, and this command runs in {partition()}: "
            "set KEYCASK_PARTITION as the server has it"
        )
    return await find_key(
        store.keys,
        ref,
        account=account or (arn.account if arn is not None else settings.account_id),
        region=region or (arn.region if arn is not None else settings.region),
    )


def _parse_principal_arn(arn: str) -> tuple[str, str, str]:
    parsed = Arn.parse_or_none(arn)
    if parsed is not None and parsed.service == "iam":
        kind, name = parsed.resource_type, parsed.resource_name
        if kind in ("user", "role") and name:
            return parsed.account, kind, name.rsplit("/", 1)[-1]
    raise UsageError(f"{arn} is not a principal ARN (arn:aws:iam::<account>:user/<name>)")


async def _principal(store: _Store, arn: str) -> Principal:
    account, kind, name = _parse_principal_arn(arn)
    principal = await store.credentials.get_principal(account, name)
    if principal is None or principal.kind != kind:
        raise UsageError(f"no principal {arn} in this data directory")
    return principal


async def _all_principals(barrier: Barrier) -> list[Principal]:
    principals: list[Principal] = []
    after = ""
    while rows := await barrier.list(_PRINCIPALS, after, _PAGE):
        for path, value in rows:
            account, name = path[len(_PRINCIPALS) :].split("/", 1)
            principals.append(Principal.from_doc(account, name, orjson.loads(value.value)))
        after = rows[-1][0]
    return principals


async def _all_key_ids(barrier: Barrier) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    after = ""
    while rows := await barrier.storage.list(_KEY_INDEX, after, _PAGE):
        # idx/key/<account>/<region>/<public id>: an mrk- entry names the
        # copy stored under that region's record id.
        for path, _ in rows:
            region, entry = path.rsplit("/", 2)[-2:]
            ids.append(index_entry_key_id(region, entry))
        after = rows[-1][0]
    return ids


_Work = Callable[["_Store", argparse.Namespace], Awaitable[int]]


async def _with_store(args: argparse.Namespace, work: _Work, *, write: bool) -> int:
    settings = _settings(args)
    opener = localstore.open_to_write if write else localstore.open_to_read
    storage, barrier = await opener(args, settings)
    try:
        keys = KeyStore(barrier)
        store = _Store(settings, barrier, keys, Authorizer(keys), CredentialStore(barrier))
        return await work(store, args)
    finally:
        await storage.close()


def _run(args: argparse.Namespace, work: _Work, *, write: bool = False) -> int:
    return asyncio.run(_with_store(args, work, write=write))


# -- simulate --------------------------------------------------------------------


async def _simulate_assume(store: _Store, args: argparse.Namespace) -> int:
    """--role: the role's trust policy decides, as AssumeRole does."""
    if not args.action.startswith("sts:"):
        raise UsageError(f"--role takes an sts: action such as sts:AssumeRole, not {args.action}")
    if args.context:
        raise UsageError("--context is an encryption context: it goes with --key")
    principal = await _principal(store, args.principal)
    account, kind, name = _parse_principal_arn(args.role)
    role = await store.credentials.get_principal(account, name)
    if role is None or kind != "role" or not role.trust_policy:
        raise UsageError(f"no role with a trust policy {args.role} in this data directory")
    trust = bind_policy(parse_policy(role.trust_policy, kind="trust"), dict(role.trust_principals))
    subject = store.authz.subject(principal)
    decision = simulate_assume(
        subject,
        args.action,
        role.arn,
        role.account,
        trust,
        region=_settings(args).region,
        parameters=_condition_keys(args.condition or []),
        transport=Transport(time=datetime.now(UTC)),
    )
    return _verdict(args, subject, decision, {"RoleArn": role.arn})


async def _simulate(store: _Store, args: argparse.Namespace) -> int:
    if args.role is not None:
        return await _simulate_assume(store, args)
    if args.action.startswith("sts:"):
        raise UsageError(f"{args.action} is decided by a role's trust policy: give --role")
    principal = await _principal(store, args.principal)
    # A bare key id or alias name means the caller's own account, as in the server.
    stored, alias = await _resolve_key(
        store, args.key, account=principal.account, region=args.region
    )
    key = stored.value
    subject = store.authz.subject(principal)
    # What the server's resolver and authorization add, then --condition.
    parameters: dict[str, ContextInput] = {}
    if alias is not None:
        parameters[REQUEST_ALIAS] = alias
    aliases = await store.authz.resource_aliases_if_used(key, principal.policies)
    if aliases is not None:
        parameters[RESOURCE_ALIASES] = aliases
    parameters.update(_condition_keys(args.condition or []))
    context = dict(args.context or []) or None
    decision = simulate(
        subject,
        args.action,
        key,
        store.authz.key_policy(key),
        await store.authz.grants(key),
        region=args.region,
        parameters=parameters,
        encryption_context=context,
        transport=Transport(time=datetime.now(UTC)),
    )
    return _verdict(
        args, subject, decision, {"KeyArn": key.arn, "EncryptionContext": context or {}}
    )


def _verdict(
    args: argparse.Namespace, subject: Subject, decision: Decision, target: dict[str, object]
) -> int:
    """simulate's answer: JSON, or a verdict line and the decider; exit 1 on DENY.
    ``target`` is what was asked about (its first member names it)."""
    if args.json:
        print_json(
            {
                "Principal": subject.arn,
                "Action": args.action,
                **target,
                "Decision": "allow" if decision.allowed else "deny",
                "DecidedBy": decision.decided_by,
                "Message": decision.message,
            }
        )
    else:
        verdict = "ALLOW" if decision.allowed else "DENY"
        print(f"{verdict}: {subject.arn} {args.action} on {next(iter(target.values()))}")
        print(f"decided by: {decision.decided_by}")
        if decision.message:
            print(decision.message)
    return 0 if decision.allowed else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    return _run(args, _simulate)


# -- who-can ---------------------------------------------------------------------


def _subjects(authz: Authorizer, principals: Sequence[Principal]) -> list[Subject]:
    return [authz.subject(p) for p in principals]


async def _whocan(store: _Store, args: argparse.Namespace) -> int:
    stored, _ = await _resolve_key(store, args.key, account=args.account, region=args.region)
    key = stored.value
    principals = await _all_principals(store.barrier)
    findings = who_can(
        args.action,
        key,
        store.authz.key_policy(key),
        _subjects(store.authz, principals),
        await store.authz.grants(key),
    )
    if args.json:
        print_json(
            {"KeyArn": key.arn, "Action": args.action, "Allowed": [f.to_dict() for f in findings]}
        )
    else:
        print(f"who can {args.action} on {key.arn}:")
        for finding in findings:
            print(f"  {finding.describe()}")
        if not findings:
            print("  nobody")
    return 0


def cmd_who_can(args: argparse.Namespace) -> int:
    return _run(args, _whocan)


# -- lint ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Located:
    where: str
    finding: LintFinding

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, **self.finding.to_dict()}


def _report(located: list[_Located], args: argparse.Namespace, checked: str) -> int:
    failing = at_least([item.finding for item in located], args.fail_on)
    if args.json:
        print_json({"Checked": checked, "Findings": [item.to_dict() for item in located]})
    else:
        order = sorted(located, key=lambda i: (-SEVERITY_RANK[i.finding.severity], i.where))
        for item in order:
            f = item.finding
            print(f"{f.severity.upper():6} {f.rule}: {item.where} statement {f.statement}")
            print(f"       {f.message}")
        print(f"{len(located)} finding(s) in {checked}; {len(failing)} at or above {args.fail_on}")
    return 1 if failing else 0


def _malformed(where: str, exc: MalformedPolicyDocumentException) -> _Located:
    return _Located(
        where, LintFinding(RULES["malformed-policy"][0], "(policy)", "malformed-policy", str(exc))
    )


async def _lintstore(store: _Store, args: argparse.Namespace) -> int:
    principals = await _all_principals(store.barrier)
    admins = {p.arn for p in principals if p.admin}
    existing = {p.arn for p in principals}
    located: list[_Located] = []
    keys = 0
    for key_id in await _all_key_ids(store.barrier):
        stored = await store.keys.get(key_id)
        if stored is None:
            continue
        key = stored.value
        keys += 1
        where = f"key {key.arn}"
        try:
            policy = parse_policy(key.policy, kind="key")
        except MalformedPolicyDocumentException as exc:
            located.append(_malformed(where, exc))
            continue
        tags = {t.tag_key: t.tag_value for t in key.tags}
        located.extend(
            _Located(where, f)
            for f in lint_key_policy(
                policy,
                key_tags=tags,
                admins={a for a in admins if Arn.parse(a).account == key.account},
                key_account=key.account,
                existing_principals=existing,
                multi_tenant_tag=args.multi_tenant_tag,
            )
        )
    policies = 0
    for principal in principals:
        for name, text in principal.policies:
            policies += 1
            where = f"principal {principal.arn} policy {name}"
            try:
                identity = parse_policy(text, kind="identity")
            except MalformedPolicyDocumentException as exc:
                located.append(_malformed(where, exc))
                continue
            located.extend(
                _Located(where, f)
                for f in lint_identity_policy(name, identity, principal_is_admin=principal.admin)
            )
    trusts = 0
    for principal in principals:
        if not principal.trust_policy:
            continue
        trusts += 1
        where = f"role {principal.arn} trust policy"
        try:
            trust = parse_policy(principal.trust_policy, kind="trust")
        except MalformedPolicyDocumentException as exc:
            located.append(_malformed(where, exc))
            continue
        located.extend(_Located(where, f) for f in lint_trust_policy(principal.arn, trust))
    checked = f"{keys} key policies and {policies} identity policies"
    if trusts:
        checked = f"{keys} key policies, {policies} identity policies and {trusts} trust policies"
    return _report(located, args, checked)


def _lint_file(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"keycask: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    # A document that does not parse raises MalformedPolicyDocumentException: exit 2.
    policy: Policy = parse_policy(text, kind="identity" if args.identity else "key")
    if args.identity:
        findings = lint_identity_policy(path.name, policy, principal_is_admin=args.admin_principal)
    else:
        findings = lint_key_policy(
            policy,
            key_tags=dict(args.tag or []),
            admins=set(args.admin or []),
            key_account=args.account,
            multi_tenant_tag=args.multi_tenant_tag,
        )
    return _report([_Located(str(path), f) for f in findings], args, str(path))


def cmd_lint(args: argparse.Namespace) -> int:
    if args.file:
        return _lint_file(args)
    return _run(args, _lintstore)


# -- reset -----------------------------------------------------------------------


def _reset_record(key: Key, previous: str, outcome: str, detail: str) -> AuditRecord:
    digest = hashlib.sha256(previous.encode()).hexdigest()
    return local_record(
        "keycask:ResetKeyPolicy",
        f"{detail}; the replaced policy had SHA-256 {digest}",
        outcome=outcome,
        key_arn=key.arn,
        region=key.region,
    )


async def _reset(store: _Store, args: argparse.Namespace) -> int:
    stored, _ = await _resolve_key(store, args.key, account=args.account, region=args.region)
    key = stored.value
    if key.aws_managed:
        # Its policy is keycask's, never changed by anyone: there is nothing
        # to recover, and the customer default would hand the account its
        # management (service/managed.py).
        raise UsageError(f"{key.arn} is an AWS managed key; its key policy cannot be changed")
    default = default_key_policy(key.account)
    changed = key.policy != default
    if changed:
        new = key.replace(policy=default, policy_principals=())
        writes = store.keys.stage_update(stored, new)
        settings = store.settings
        audit = await anchor.open_keyed(store.barrier, settings.data_dir / AUDIT_DIR, "cli")
        try:
            # Audit first: no record, no change. Under the writers' lock, so
            # a running server neither writes meanwhile nor keeps the old
            # policy cached after it.
            async with localstore.writing(settings, store.barrier.storage, store.barrier):
                audit.append_sync(
                    _reset_record(key, key.policy, "success", "key policy reset to the default")
                )
                try:
                    await store.barrier.commit(writes)
                except Exception as exc:
                    audit.append_sync(
                        _reset_record(
                            key, key.policy, "error", "the reset recorded above did not commit"
                        )
                    )
                    if isinstance(exc, StorageConflict):
                        raise UsageError(
                            f"{key.arn} changed during the reset, which did not happen; "
                            "run it again"
                        ) from None
                    raise
                finally:
                    await anchor.save(store.barrier, audit.segment, audit.tip)
        finally:
            audit.close()
    if args.json:
        print_json({"KeyArn": key.arn, "Changed": changed})
    elif changed:
        print(f"reset the key policy of {key.arn} to the default (audited)")
    else:
        print(f"{key.arn} already has the default key policy; nothing changed")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    return _run(args, _reset, write=True)


# -- wiring ----------------------------------------------------------------------


def add_policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``policy simulate | who-can | lint | reset`` to keycask's parser."""
    policy = sub.add_parser(
        "policy", help="simulate requests, list who can act on a key, lint policies"
    ).add_subparsers(dest="policy_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        # A production data dir's store: its --storage and its seal's input.
        localstore.add_store_flags(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")

    def key_scope(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--account", help="account of an alias name (default KEYCASK_ACCOUNT_ID)"
        )
        parser.add_argument("--region", help="region of an alias name (default KEYCASK_REGION)")

    sim = policy.add_parser(
        "simulate", help="the decision keycask would make, and the statement that makes it"
    )
    sim.add_argument("--principal", required=True, help="the caller's ARN")
    sim.add_argument(
        "--action", required=True, type=_action, help="such as kms:Decrypt (sts:AssumeRole)"
    )
    target = sim.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--key", help="key id, key ARN, alias name or alias ARN, as the principal would name it"
    )
    target.add_argument(
        "--role", metavar="ROLE_ARN", help="a role to assume: its trust policy decides"
    )
    sim.add_argument(
        "--context",
        action="append",
        type=_pair,
        metavar="K=V",
        help="an encryption context pair (repeatable)",
    )
    sim.add_argument(
        "--condition",
        action="append",
        type=_pair,
        metavar="KEY=VALUE",
        help="another condition key of the request, such as aws:SourceIp=10.0.0.1 (repeatable; "
        "a key given more than once is multivalued)",
    )
    sim.add_argument(
        "--region", help="the region the caller names (default: the ARN's, or KEYCASK_REGION)"
    )
    common(sim)
    sim.set_defaults(func=cmd_simulate)

    who = policy.add_parser(
        "who-can", help="the principals and grants that can do an action on a key, and when"
    )
    who.add_argument("--key", required=True, help="key id, key ARN, alias name or alias ARN")
    who.add_argument("--action", required=True, type=_action, help="such as kms:Decrypt")
    key_scope(who)
    common(who)
    who.set_defaults(func=cmd_who_can)

    lint = policy.add_parser(
        "lint",
        help="flag broad grants of power in every key policy and identity policy, or in a file",
    )
    lint.add_argument("--file", help="lint this policy document instead of the store")
    lint.add_argument(
        "--identity", action="store_true", help="--file is an identity policy (default: key policy)"
    )
    lint.add_argument(
        "--admin-principal",
        action="store_true",
        help="with --identity: the policy belongs to an administrator",
    )
    lint.add_argument(
        "--admin",
        action="append",
        metavar="ARN",
        help="with --file: a principal trusted with the whole key (repeatable)",
    )
    lint.add_argument(
        "--tag", action="append", type=_pair, metavar="K=V", help="with --file: a tag of the key"
    )
    lint.add_argument(
        "--account", help="with --file: the key's account (default: the first root it names)"
    )
    lint.add_argument(
        "--multi-tenant-tag",
        default=MULTI_TENANT_TAG,
        help=f"the tag that marks a key shared by tenants (value true; default {MULTI_TENANT_TAG})",
    )
    lint.add_argument(
        "--fail-on",
        choices=("high", "medium", "low"),
        default="high",
        help="exit 1 when a finding is at least this severe (default high)",
    )
    common(lint)
    lint.set_defaults(func=cmd_lint)

    reset = policy.add_parser(
        "reset",
        help="put the default key policy back on a key that locks everyone out (audited)",
    )
    reset.add_argument("key", help="key id, key ARN, alias name or alias ARN")
    key_scope(reset)
    common(reset)
    reset.set_defaults(func=cmd_reset)


def main(argv: Sequence[str] | None = None) -> int:
    """``main(["policy", "lint", ...])``: the policy commands alone, as
    ``keycask`` runs them once wired into its parser."""
    parser = argparse.ArgumentParser(prog="keycask")
    sub = parser.add_subparsers(dest="command", required=True)
    add_policy_commands(sub)
    args = parser.parse_args(None if argv is None else list(argv))
    return errors.run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
