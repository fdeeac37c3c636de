"""Tools for people who write policies: simulate a request, list who can do
an action on a key, and lint policies for broad grants of power.

Pure functions over parsed policies (document.py) and the evaluator
(evaluate.py); ``keycask policy ...`` (policy_cli.py) reads the store and
calls them. The rules ``lint_key_policy`` and ``lint_identity_policy`` apply
are listed in ``RULES`` and explained in docs/least-privilege.md.

Why one module of ~900 lines: simulate, who-can and lint share the way a
request context is built from a principal and a key, and the lint rules read
the same parsed statements; issue 14 item 9 splits it into simulate /
who-can / lint once that context comes from the one builder the server uses
(item 6).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from keycask.arn import Arn
from keycask.config import partition
from keycask.keys.model import Key
from keycask.policy.conditions import ContextInput, RequestContext, condition_matches
from keycask.policy.evaluate import (
    CROSS_ACCOUNT,
    Decision,
    GrantView,
    Request,
    Subject,
    cross_account_refusal,
    decide,
    listed,
)
from keycask.policy.glob import action_matches, pattern_tokens, wildcard_match
from keycask.policy.model import Condition, Policy, PrincipalSpec, Statement, Variable
from keycask.policy.request_context import NO_TRANSPORT, Transport, request_context
from keycask.policy.values import parse_template
from keycask.policy.vocabulary import KMS_ACTIONS, NEGATED_OPERATORS

Severity = Literal["high", "medium", "low"]
SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3}

# Every lint rule: id -> (severity, what it flags). docs/least-privilege.md
# explains each one and how to fix it.
RULES: dict[str, tuple[Severity, str]] = {
    "public-principal": (
        "high",
        'Allow to Principal "*" with no condition: every principal of every account',
    ),
    "public-principal-weak-condition": (
        "medium",
        'Allow to Principal "*" whose conditions never say who the caller must be',
    ),
    "kms-star-to-non-admin": (
        "medium",
        'Allow of every KMS action ("kms:*" or "*") to a principal that is not an administrator',
    ),
    "decrypt-without-context": (
        "high",
        "Allow of Decrypt, ReEncrypt* or GenerateDataKey* on a multi-tenant key "
        "without an encryption context condition",
    ),
    "allow-with-notprincipal": (
        "high",
        "Allow with NotPrincipal: everyone except those listed, in every account",
    ),
    "notaction-allow": (
        "medium",
        "Allow with NotAction: every action but those listed, including ones added later",
    ),
    "lockout": (
        "high",
        "no principal may change the key policy any more: it would lock everyone out",
    ),
    "cross-account-wildcard": (
        "medium",
        "Allow of every KMS action to a principal of another account",
    ),
    "malformed-policy": (
        "high",
        "the stored policy does not parse: keycask denies every request it governs",
    ),
}

MULTI_TENANT_TAG = "multi-tenant"

# Operations whose permission a multi-tenant key must tie to an encryption
# context: they reveal plaintext (or a data key) or move ciphertext.
CONTEXT_ACTIONS = (
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
)
_CONTEXT_KEY_PREFIX = "kms:encryptioncontext:"
_CONTEXT_KEYS_KEY = "kms:encryptioncontextkeys"

# Condition keys that say who the caller is (so a Principal "*" statement
# that tests one of them is scoped to someone).
_IDENTITY_KEYS = frozenset(
    {
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:principaltype",
        "aws:userid",
        "aws:username",
        "aws:sourceaccount",
        "aws:sourcearn",
        "aws:sourceorgid",
        "aws:sourceorgpaths",
        "kms:calleraccount",
        "kms:viaservice",
    }
)
_IDENTITY_PREFIXES = ("aws:principaltag/",)

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


# -- shared helpers ------------------------------------------------------------


def statement_name(statement: Statement) -> str:
    """How messages name a statement: its Sid, or ``#<position>``."""
    return statement.sid if statement.sid else f"#{statement.index + 1}"


def normalize_action(action: str) -> str:
    """``kms:decrypt`` or ``Decrypt`` -> ``kms:Decrypt``; ValueError if no
    KMS operation has that name."""
    name = action if ":" in action else "kms:" + action
    for known in KMS_ACTIONS:
        if known.lower() == name.lower():
            return known
    raise ValueError(f"{action!r} is not a KMS action (such as kms:Decrypt)")


def _covers(statement: Statement, action: str) -> bool:
    if statement.actions is not None:
        return any(action_matches(p, action) for p in statement.actions)
    assert statement.not_actions is not None
    return not any(action_matches(p, action) for p in statement.not_actions)


def _covers_every_kms_action(statement: Statement) -> bool:
    return all(_covers(statement, action) for action in KMS_ACTIONS)


def _covers_resource(statement: Statement, resource: str, *, key_policy: bool) -> bool:
    def matches(patterns: tuple[str, ...]) -> bool:
        return any(wildcard_match(pattern_tokens(p), resource) for p in patterns)

    if statement.resources is not None:
        return ("*" in statement.resources and key_policy) or matches(statement.resources)
    assert statement.not_resources is not None
    return not matches(statement.not_resources)


def _any(spec: PrincipalSpec) -> bool:
    return spec.any or "*" in spec.aws


def _account_of(arn: str) -> str | None:
    parsed = Arn.parse_or_none(arn)
    return parsed.account if parsed is not None and parsed.account else None


def _is_root(arn: str) -> bool:
    return arn.endswith(":root")


def _restricts(condition: Condition) -> bool:
    """Whether the condition demands something of every request it lets
    through: a positive operator, never true for an absent key."""
    return (
        condition.operator not in NEGATED_OPERATORS
        and condition.operator != "Null"
        and not condition.if_exists
        and condition.set_operator != "ForAllValues"
    )


def _names_caller(condition: Condition) -> bool:
    key = condition.key
    return _restricts(condition) and (key in _IDENTITY_KEYS or key.startswith(_IDENTITY_PREFIXES))


def _binds_context(condition: Condition) -> bool:
    key = condition.key
    return _restricts(condition) and (
        key.startswith(_CONTEXT_KEY_PREFIX) or key == _CONTEXT_KEYS_KEY
    )


# -- simulate ------------------------------------------------------------------


def simulate(
    subject: Subject,
    action: str,
    key: Key,
    key_policy: Policy | None,
    grants: Sequence[GrantView] = (),
    *,
    region: str | None = None,
    parameters: Mapping[str, ContextInput] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    transport: Transport = NO_TRANSPORT,
) -> Decision:
    """What keycask would decide if ``subject`` asked for ``action`` on
    ``key`` from ``region`` (default: the key's): the same condition keys
    (request_context.py) and the same ``decide`` the server runs.
    ``parameters`` are the operation's own condition keys
    (``kms:EncryptionAlgorithm``, ``kms:RequestAlias``, ...);
    ``encryption_context`` is also what grants' constraints see."""
    action = normalize_action(action)

    def build() -> RequestContext:
        return request_context(
            subject,
            region=region or key.region,
            key=key,
            encryption_context=encryption_context,
            parameters=parameters,
            transport=transport,
        )

    return decide(
        Request(
            subject,
            action,
            key.arn,
            key.account,
            build,
            key_policy=key_policy,
            grants=tuple(grants),
            encryption_context=encryption_context,
        )
    )


# -- who can -------------------------------------------------------------------


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
            "account": f"any principal of account {_account_of(self.principal)} "
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
        if principal_known and _restricts(condition):
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
        if not _covers(statement, action):
            return None
        if not _covers_resource(statement, key_arn, key_policy=key):
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
            if statement.effect != "Allow" or not _covers(statement, action):
                continue
            if not _covers_resource(statement, key_arn, key_policy=True):
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
            if _any(spec):
                findings.append(Finding("*", "any", via, found))
                continue
            for arn in spec.aws:
                crosses = _account_of(arn) != key_account and action not in CROSS_ACCOUNT
                if _is_root(arn) and not crosses:
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


# -- lint ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LintFinding:
    severity: Severity
    statement: str  # the Sid, "#<n>", or "(policy)" for the policy as a whole
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "statement": self.statement,
            "rule": self.rule,
            "message": self.message,
        }


def _finding(rule: str, statement: Statement | None, message: str) -> LintFinding:
    severity = RULES[rule][0]
    return LintFinding(
        severity, "(policy)" if statement is None else statement_name(statement), rule, message
    )


def at_least(findings: Sequence[LintFinding], severity: str) -> list[LintFinding]:
    """The findings of ``severity`` or worse."""
    floor = SEVERITY_RANK[severity]
    return [f for f in findings if SEVERITY_RANK[f.severity] >= floor]


def home_account(policy: Policy) -> str | None:
    """The account a key policy most likely belongs to when nobody says:
    that of the first account root it names, else of the first principal."""
    arns = [
        arn
        for statement in policy.statements
        for spec in (statement.principal, statement.not_principal)
        if spec is not None
        for arn in spec.aws
    ]
    for arn in arns:
        if _is_root(arn):
            return _account_of(arn)
    return _account_of(arns[0]) if arns else None


def _is_multi_tenant(tags: Mapping[str, str], tag: str) -> bool:
    return tags.get(tag, "").strip().lower() == "true"


def lint_key_policy(
    policy: Policy,
    *,
    key_tags: Mapping[str, str] | None = None,
    admins: Collection[str] = frozenset(),
    key_account: str | None = None,
    existing_principals: Collection[str] | None = None,
    multi_tenant_tag: str = MULTI_TENANT_TAG,
) -> list[LintFinding]:
    """Broad grants of power in a key policy.

    ``admins``: ARNs of principals trusted with the whole key (keycask's
    administrators); the key's own account root is trusted too, since it
    only delegates to that account's identity policies. ``key_account``: the
    key's account (default: ``home_account(policy)``). ``existing_principals``:
    ARNs of the principals that exist; when given, a statement naming only
    principals that do not exist does not count as letting anyone manage
    the key. A key whose ``multi_tenant_tag`` tag is "true" needs an
    encryption context condition on every use that reveals plaintext.
    """
    home = key_account or home_account(policy)
    home_root = f"arn:{partition()}:iam::{home}:root" if home else None
    trusted = set(admins) | ({home_root} if home_root else set())
    multi_tenant = _is_multi_tenant(key_tags or {}, multi_tenant_tag)
    findings: list[LintFinding] = []
    managers: list[Statement] = []
    denied_to_all: Statement | None = None

    for statement in policy.statements:
        if statement.effect == "Deny":
            spec = statement.principal
            if (
                spec is not None
                and _any(spec)
                and not statement.conditions
                and _covers(statement, "kms:PutKeyPolicy")
            ):
                denied_to_all = denied_to_all or statement
            continue
        spec = statement.principal
        everyone = spec is not None and _any(spec)
        named = () if spec is None or everyone else spec.aws
        if statement.not_principal is not None:
            findings.append(
                _finding(
                    "allow-with-notprincipal",
                    statement,
                    "Allow with NotPrincipal allows every principal of every account except "
                    f"{', '.join(statement.not_principal.aws) or 'the services listed'}; "
                    "name the principals that need access in Principal instead.",
                )
            )
        if everyone:
            if not statement.conditions:
                findings.append(
                    _finding(
                        "public-principal",
                        statement,
                        'Allow to Principal "*" with no condition: any principal of any '
                        "account may use it. Name the principals, or add a condition on "
                        "aws:PrincipalArn, aws:PrincipalAccount or kms:CallerAccount.",
                    )
                )
            elif not any(_names_caller(c) for c in statement.conditions):
                findings.append(
                    _finding(
                        "public-principal-weak-condition",
                        statement,
                        'Allow to Principal "*" whose conditions never say who the caller is '
                        "(none tests aws:PrincipalArn, aws:PrincipalAccount, kms:CallerAccount, "
                        "aws:PrincipalTag/... with a positive operator).",
                    )
                )
        if statement.not_actions is not None:
            findings.append(
                _finding(
                    "notaction-allow",
                    statement,
                    "Allow with NotAction allows every action except "
                    f"{', '.join(statement.not_actions)}, including administrative ones and "
                    "any added later; list the actions in Action instead.",
                )
            )

        if _covers_every_kms_action(statement):
            outsiders = [a for a in named if home and _account_of(a) not in (home, None)]
            locals_ = [a for a in named if a not in trusted and a not in outsiders]
            if outsiders:
                findings.append(
                    _finding(
                        "cross-account-wildcard",
                        statement,
                        f"every KMS action is allowed to {', '.join(outsiders)} of another "
                        f"account than the key's ({home}); allow only the operations it uses.",
                    )
                )
            whom = locals_ + (["every principal"] if everyone else [])
            if statement.not_principal is not None:
                whom.append("every principal not listed in NotPrincipal")
            if whom:
                findings.append(
                    _finding(
                        "kms-star-to-non-admin",
                        statement,
                        f"every KMS action (administration included) is allowed to "
                        f"{', '.join(whom)}, which is not an administrator; allow only the "
                        "operations it needs.",
                    )
                )

        if multi_tenant:
            actions = [a for a in CONTEXT_ACTIONS if _covers(statement, a)]
            untrusted = (
                everyone
                or statement.not_principal is not None
                or any(a not in trusted for a in named)
            )
            if actions and untrusted and not any(_binds_context(c) for c in statement.conditions):
                findings.append(
                    _finding(
                        "decrypt-without-context",
                        statement,
                        f"the key is tagged {multi_tenant_tag}=true, but "
                        f"{', '.join(actions)} is allowed without a kms:EncryptionContext:<key> "
                        "or kms:EncryptionContextKeys condition: one tenant's principal can "
                        "use another tenant's data.",
                    )
                )

        if _covers(statement, "kms:PutKeyPolicy") and _can_manage(statement, existing_principals):
            managers.append(statement)

    if denied_to_all is not None:
        findings.append(
            _finding(
                "lockout",
                denied_to_all,
                "kms:PutKeyPolicy is denied to every principal with no condition: nobody can "
                "ever change this policy (recovery: keycask policy reset).",
            )
        )
    elif not managers:
        unknown = (
            " (the principals it names do not exist)"
            if existing_principals is not None and _names_anyone(policy, "kms:PutKeyPolicy")
            else ""
        )
        findings.append(
            _finding(
                "lockout",
                None,
                "no statement allows kms:PutKeyPolicy to the account root or to any existing "
                f"principal{unknown}: the policy would lock everyone out of the key "
                "(recovery: keycask policy reset).",
            )
        )
    return findings


def _can_manage(statement: Statement, existing: Collection[str] | None) -> bool:
    if statement.not_principal is not None:
        return True
    spec = statement.principal
    if spec is None:
        return False
    if _any(spec):
        return True
    return any(_is_root(arn) or existing is None or arn in existing for arn in spec.aws)


def _names_anyone(policy: Policy, action: str) -> bool:
    return any(
        s.effect == "Allow" and s.principal is not None and s.principal.aws and _covers(s, action)
        for s in policy.statements
    )


def lint_identity_policy(
    name: str, policy: Policy, *, principal_is_admin: bool
) -> list[LintFinding]:
    """Broad grants of power in an identity policy attached to a principal
    (``name`` is the policy's name, for messages)."""
    findings: list[LintFinding] = []
    for statement in policy.statements:
        if statement.effect != "Allow":
            continue
        if statement.not_actions is not None:
            findings.append(
                _finding(
                    "notaction-allow",
                    statement,
                    f"identity policy {name}: Allow with NotAction allows every action except "
                    f"{', '.join(statement.not_actions)}; list the actions in Action instead.",
                )
            )
        if not principal_is_admin and _covers_every_kms_action(statement):
            findings.append(
                _finding(
                    "kms-star-to-non-admin",
                    statement,
                    f"identity policy {name} allows every KMS action (administration included) "
                    "to a principal that is not an administrator; allow only the operations "
                    "it needs.",
                )
            )
    return findings
