"""``keycask policy lint``: broad grants of power in key policies, identity
policies and roles' trust policies. The rules are listed in ``RULES`` and
explained in docs/least-privilege.md."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from keycask.config import partition
from keycask.policy.model import Condition, Policy, Statement
from keycask.policy.statements import (
    account_of,
    covers,
    covers_every_kms_action,
    is_any,
    is_root,
    restricts,
    statement_name,
)

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
    "trust-public-principal": (
        "high",
        'a trust policy lets Principal "*" assume the role with no condition on who calls',
    ),
    "web-identity-any-subject": (
        "high",
        "a trust policy lets an identity provider's tokens assume the role without a "
        "condition on the token's subject (<provider>:sub)",
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


def _names_caller(condition: Condition) -> bool:
    key = condition.key
    return restricts(condition) and (key in _IDENTITY_KEYS or key.startswith(_IDENTITY_PREFIXES))


def _binds_context(condition: Condition) -> bool:
    key = condition.key
    return restricts(condition) and (
        key.startswith(_CONTEXT_KEY_PREFIX) or key == _CONTEXT_KEYS_KEY
    )


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
        if is_root(arn):
            return account_of(arn)
    return account_of(arns[0]) if arns else None


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
                and is_any(spec)
                and not statement.conditions
                and covers(statement, "kms:PutKeyPolicy")
            ):
                denied_to_all = denied_to_all or statement
            continue
        spec = statement.principal
        everyone = spec is not None and is_any(spec)
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

        if covers_every_kms_action(statement):
            outsiders = [a for a in named if home and account_of(a) not in (home, None)]
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
            actions = [a for a in CONTEXT_ACTIONS if covers(statement, a)]
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

        if covers(statement, "kms:PutKeyPolicy") and _can_manage(statement, existing_principals):
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
    if is_any(spec):
        return True
    return any(is_root(arn) or existing is None or arn in existing for arn in spec.aws)


def _names_anyone(policy: Policy, action: str) -> bool:
    return any(
        s.effect == "Allow" and s.principal is not None and s.principal.aws and covers(s, action)
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
        if not principal_is_admin and covers_every_kms_action(statement):
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


_WEB_IDENTITY = "sts:assumerolewithwebidentity"


def lint_trust_policy(role: str, policy: Policy) -> list[LintFinding]:
    """Who may become the role ``role`` (its ARN, for messages) too broadly."""
    findings: list[LintFinding] = []
    for statement in policy.statements:
        spec = statement.principal
        if statement.effect != "Allow" or spec is None:
            continue
        if is_any(spec) and not any(_names_caller(c) for c in statement.conditions):
            findings.append(
                _finding(
                    "trust-public-principal",
                    statement,
                    f"trust policy of {role}: every principal of every account may assume "
                    "it; name the principals, or condition on aws:PrincipalArn.",
                )
            )
        if not covers(statement, _WEB_IDENTITY):
            continue
        for provider in spec.federated:
            name = provider.partition(":oidc-provider/")[2].lower()
            subject_key = f"{name}:sub"
            if name and not any(
                c.key == subject_key and restricts(c) for c in statement.conditions
            ):
                findings.append(
                    _finding(
                        "web-identity-any-subject",
                        statement,
                        f"trust policy of {role}: every token {name} issues for a registered "
                        f"audience may assume it (every pod, every CI job); condition on "
                        f"{subject_key}.",
                    )
                )
    return findings
