"""What a statement covers, as the policy tools read it: its name in
messages, the actions, resources and principals it names, and whether a
condition restricts every request it lets through. Shared by who-can
(who_can.py) and lint (lint.py); evaluation has its own (evaluate.py)."""

from __future__ import annotations

from keycask.arn import Arn
from keycask.policy.glob import action_matches, pattern_tokens, wildcard_match
from keycask.policy.model import Condition, PrincipalSpec, Statement
from keycask.policy.vocabulary import KMS_ACTIONS, NEGATED_OPERATORS


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


def covers(statement: Statement, action: str) -> bool:
    if statement.actions is not None:
        return any(action_matches(p, action) for p in statement.actions)
    assert statement.not_actions is not None
    return not any(action_matches(p, action) for p in statement.not_actions)


def covers_every_kms_action(statement: Statement) -> bool:
    return all(covers(statement, action) for action in KMS_ACTIONS)


def covers_resource(statement: Statement, resource: str, *, key_policy: bool) -> bool:
    def matches(patterns: tuple[str, ...]) -> bool:
        return any(wildcard_match(pattern_tokens(p), resource) for p in patterns)

    if statement.resources is not None:
        return ("*" in statement.resources and key_policy) or matches(statement.resources)
    assert statement.not_resources is not None
    return not matches(statement.not_resources)


def is_any(spec: PrincipalSpec) -> bool:
    return spec.any or "*" in spec.aws


def account_of(arn: str) -> str | None:
    parsed = Arn.parse_or_none(arn)
    return parsed.account if parsed is not None and parsed.account else None


def is_root(arn: str) -> bool:
    return arn.endswith(":root")


def restricts(condition: Condition) -> bool:
    """Whether the condition demands something of every request it lets
    through: a positive operator, never true for an absent key."""
    return (
        condition.operator not in NEGATED_OPERATORS
        and condition.operator != "Null"
        and not condition.if_exists
        and condition.set_operator != "ForAllValues"
    )
