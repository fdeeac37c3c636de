"""``keycask policy who-can``: who may be allowed an action on a key, and
on what conditions, read from the key policy, the principals' identity
policies and the key's grants. What the principal and the key decide is
decided with the server's condition keys (request_context.py); the rest
is listed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from keycask.keys.model import Key
from keycask.policy.conditions import RequestContext, condition_matches
from keycask.policy.evaluate import CROSS_ACCOUNT, GrantView, Subject, cross_account_refusal, listed
from keycask.policy.model import Condition, Policy, Statement, Variable
from keycask.policy.request_context import Transport, request_context
from keycask.policy.statements import (
    account_of,
    covers,
    covers_resource,
    is_any,
    is_root,
    normalize_action,
    restricts,
    statement_name,
)
from keycask.policy.values import parse_template

# Condition keys whose value follows from the principal alone, and from the
# key alone: who_can decides these for each principal; the rest (encryption
# context, source address, time, ...) depend on the request and are reported.
_PRINCIPAL_KEYS = frozenset(
    {
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principaltype",
        "aws:principalisawsservice",
        "aws:userid",
        "aws:username",
        "aws:viaawsservice",
        "kms:calleraccount",
    }
)
_PRINCIPAL_PREFIXES = ("aws:principaltag/",)
_KEY_KEYS = frozenset(
    {
        "aws:requestedregion",
        "aws:securetransport",
        "kms:keyspec",
        "kms:customermasterkeyspec",
        "kms:keyusage",
        "kms:customermasterkeyusage",
        "kms:keyorigin",
        "kms:multiregion",
        "aws:resourceaccount",
    }
)
_KEY_PREFIXES = ("aws:resourcetag/",)


@dataclass(frozen=True, slots=True)
class Finding:
    """One way a principal (or a class of principals) may be allowed.

    ``kind``: "principal" (a known principal; ``principal`` is its ARN),
    "account" (any principal of that account whose identity policies allow
    it; ``principal`` is the account's root ARN), "any" (a ``Principal: *``
    or NotPrincipal statement) or "grant". ``conditions`` must all hold for
    the request; empty means always.
    """

    principal: str
    kind: Literal["principal", "account", "any", "grant"]
    via: str
    conditions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "principal": self.principal,
            "kind": self.kind,
            "via": self.via,
            "conditions": list(self.conditions),
        }

    def describe(self) -> str:
        who = {
            "principal": self.principal,
            "account": f"any principal of account {account_of(self.principal)} "
            "whose identity policies allow it",
            "any": "any principal" if self.principal == "*" else self.principal,
            "grant": self.principal,
        }[self.kind]
        when = "always" if not self.conditions else "if " + " and ".join(self.conditions)
        return f"{who}: {when} (via {self.via})"


def _render(condition: Condition, context: RequestContext | None) -> str:
    """``kms:EncryptionContext:tenant = ${aws:PrincipalTag/tenant}``; with a
    principal's context, variables it resolves are shown too."""
    operator = condition.operator
    symbol = {"StringEquals": "=", "StringNotEquals": "!="}.get(operator, operator)
    if condition.set_operator:
        symbol = f"{condition.set_operator}:{operator}"
    if condition.if_exists:
        symbol = f"{operator}IfExists (or absent)"
        if condition.set_operator:
            symbol = f"{condition.set_operator}:{symbol}"
    shown: list[str] = []
    for value in condition.values:
        text = value if value.startswith("${") and value.endswith("}") else json.dumps(value)
        resolved = _resolved_value(condition, value, context)
        if resolved is not None and resolved != value:
            text += f" (= {json.dumps(resolved)})"
        elif resolved is None and context is not None:
            text += " (unresolved: matches nothing)"
        shown.append(text)
    values = shown[0] if len(shown) == 1 else "one of [" + ", ".join(shown) + "]"
    return f"{condition.key_as_written or condition.key} {symbol} {values}"


def _resolved_value(condition: Condition, value: str, context: RequestContext | None) -> str | None:
    """The value with the variables ``context`` knows substituted; the value
    unchanged when it has none (or no context); None if one has no value."""
    if context is None or not condition.variables:
        return value
    try:
        parts = parse_template(value, variables=True)
    except ValueError:
        return value
    text: list[str] = []
    for part in parts:
        if isinstance(part, Variable):
            if not _static_key(part.key, principal_known=True):
                return value  # a request key: shown as written
            found = context.get(part.key)
            if isinstance(found, str):
                text.append(found)
            elif part.default is not None:
                text.append(part.default)
            else:
                return None
        elif isinstance(part, str):
            text.append(part)
        else:
            text.append(part.text)
    return "".join(text)


def _static_key(key: str, *, principal_known: bool) -> bool:
    if key in _KEY_KEYS or key.startswith(_KEY_PREFIXES):
        return True
    return principal_known and (key in _PRINCIPAL_KEYS or key.startswith(_PRINCIPAL_PREFIXES))


def _decidable(condition: Condition, *, principal_known: bool) -> bool:
    keys = {condition.key}
    if condition.variables:
        for value in condition.values:
            try:
                parts = parse_template(value, variables=True)
            except ValueError:
                return False
            keys.update(part.key for part in parts if isinstance(part, Variable))
    return all(_static_key(key, principal_known=principal_known) for key in keys)


def _open_conditions(
    statement: Statement, static: RequestContext, *, principal_known: bool
) -> tuple[str, ...] | None:
    """The statement's conditions left to the request, rendered; None when
    one that the principal or the key decides does not hold."""
    rendered: list[str] = []
    for condition in statement.conditions:
        if _decidable(condition, principal_known=principal_known):
            if not condition_matches(condition, static):
                return None
            continue
        if principal_known and restricts(condition):
            resolved = [_resolved_value(condition, v, static) for v in condition.values]
            if all(value is None for value in resolved):
                return None  # its variables name what the principal lacks: never holds
        rendered.append(_render(condition, static if principal_known else None))
    return tuple(rendered)


def _scope(statement: Statement, subject: Subject) -> str | None:
    """How a key policy statement names the subject (as evaluate.py reads
    it): "direct", "account", or None."""

    if statement.principal is not None:
        return listed(statement.principal, subject)
    if statement.not_principal is not None:
        return None if listed(statement.not_principal, subject) else "direct"
    return "direct"


@dataclass(frozen=True, slots=True)
class _Path:
    via: str
    conditions: tuple[str, ...]


def _paths_for(
    subject: Subject,
    action: str,
    *,
    key_arn: str,
    key_account: str,
    key_policy: Policy | None,
    static: RequestContext,
) -> tuple[list[_Path], list[str]] | None:
    """The ways ``subject`` may be allowed (ignoring grants), and the
    caveats explicit denies add; None if an explicit deny always applies."""
    if cross_account_refusal(subject, action, key_arn, key_account) is not None:
        return None
    caveats: list[str] = []
    identity = subject.identity_policies()

    def check(statement: Statement, *, key: bool) -> tuple[str, ...] | None:
        if not covers(statement, action):
            return None
        if not covers_resource(statement, key_arn, key_policy=key):
            return None
        return _open_conditions(statement, static, principal_known=True)

    denies: list[tuple[str, Statement]] = []
    if key_policy is not None:
        denies += [
            (f"key policy statement {statement_name(s)}", s)
            for s in key_policy.statements
            if s.effect == "Deny" and _scope(s, subject) is not None
        ]
    for name, policy in identity:
        denies += [
            (f"identity policy {name} statement {statement_name(s)}", s)
            for s in policy.statements
            if s.effect == "Deny"
        ]
    for where, statement in denies:
        found = check(statement, key=where.startswith("key policy"))
        if found is None:
            continue
        if not found:
            return None
        caveats.append(f"not ({' and '.join(found)}) [explicit deny in {where}]")

    def identity_paths() -> list[_Path]:
        paths = []
        for name, policy in identity:
            for statement in policy.statements:
                if statement.effect == "Allow":
                    found = check(statement, key=False)
                    if found is not None:
                        paths.append(
                            _Path(
                                f"identity policy {name} statement {statement_name(statement)}",
                                found,
                            )
                        )
        return paths

    paths: list[_Path] = []
    if key_policy is None:
        if key_account == subject.account:
            paths = identity_paths()
        return paths, caveats
    for statement in key_policy.statements:
        if statement.effect != "Allow":
            continue
        scope = _scope(statement, subject)
        if scope is None:
            continue
        found = check(statement, key=True)
        if found is None:
            continue
        name = f"key policy statement {statement_name(statement)}"
        if scope == "direct":
            paths.append(_Path(name, found))
        else:
            for path in identity_paths():
                paths.append(_Path(f"{path.via} ({name})", found + path.conditions))
    return paths, caveats


def _grant_conditions(grant: GrantView) -> tuple[str, ...]:
    conditions: list[str] = []
    if grant.context_equals is not None:
        conditions.append(f"encryption context equals {json.dumps(dict(grant.context_equals))}")
    if grant.context_subset is not None:
        conditions.append(f"encryption context includes {json.dumps(dict(grant.context_subset))}")
    return tuple(conditions)


def who_can(
    action: str,
    key: Key,
    key_policy: Policy | None,
    principals: Sequence[Subject],
    grants: Sequence[GrantView] = (),
) -> list[Finding]:
    """Who may be allowed ``action`` on the key, and on what conditions.

    For each known principal, the statements (key policy, and identity
    policies where the key policy delegates to its account) that could allow
    it; conditions on who the principal is (its tags, ARN, account) and on
    the key (its tags and attributes) are decided, the rest are listed.
    Explicit denies remove a principal, or add "not (...)" when
    conditional. Then every account the key policy delegates to, every
    ``Principal: *`` or NotPrincipal statement, and every grant that covers
    the operation. A principal allowed unconditionally is listed once.
    """
    action = normalize_action(action)
    findings: list[Finding] = []
    key_arn, key_account = key.arn, key.account
    denied: set[str] = set()
    caveats_of: dict[str, list[str]] = {}

    for subject in sorted(principals, key=lambda s: s.arn):
        # No particular request: no time, address or encryption context.
        static = request_context(subject, region=key.region, key=key, transport=Transport())
        result = _paths_for(
            subject,
            action,
            key_arn=key_arn,
            key_account=key_account,
            key_policy=key_policy,
            static=static,
        )
        if result is None:
            denied.add(subject.arn)
            continue
        paths, caveats = result
        caveats_of[subject.arn] = caveats
        unconditional = [p for p in paths if not p.conditions]
        for path in unconditional[:1] or paths:
            findings.append(
                Finding(subject.arn, "principal", path.via, path.conditions + tuple(caveats))
            )

    if key_policy is not None:
        anonymous = request_context(None, region=key.region, key=key, transport=Transport())
        for statement in key_policy.statements:
            if statement.effect != "Allow" or not covers(statement, action):
                continue
            if not covers_resource(statement, key_arn, key_policy=True):
                continue
            found = _open_conditions(statement, anonymous, principal_known=False)
            if found is None:
                continue
            via = f"key policy statement {statement_name(statement)}"
            if statement.not_principal is not None:
                excluded = ", ".join(statement.not_principal.aws) or "none"
                findings.append(Finding(f"* except {excluded}", "any", via, found))
                continue
            spec = statement.principal
            assert spec is not None
            if is_any(spec):
                findings.append(Finding("*", "any", via, found))
                continue
            for arn in spec.aws:
                crosses = account_of(arn) != key_account and action not in CROSS_ACCOUNT
                if is_root(arn) and not crosses:
                    findings.append(Finding(arn, "account", via, found))

    operation = action.removeprefix("kms:")
    for grant in grants:
        if operation not in grant.operations or grant.grantee in denied:
            continue
        findings.append(
            Finding(
                grant.grantee,
                "grant",
                f"grant {grant.grant_id}",
                _grant_conditions(grant) + tuple(caveats_of.get(grant.grantee, ())),
            )
        )
    return findings
