"""A parsed policy: the frozen dataclasses ``parse_policy`` (document.py)
returns and the evaluator reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PrincipalSpec:
    """A Principal or NotPrincipal element."""

    any: bool  # "*" or {"AWS": "*"}
    # AWS principal ARNs as written; a bare account id is normalised to
    # "arn:aws:iam::<id>:root", which is what it means.
    aws: tuple[str, ...] = ()
    # {"Service": ...} principals, kept; they never match a keycask caller.
    services: tuple[str, ...] = ()
    # {"Federated": ...} principals (trust policies only): identity provider
    # ARNs, matched by a caller holding that provider's web identity token.
    federated: tuple[str, ...] = ()
    # ARN -> the unique id of the principal it named when the policy was put
    # (keycask records it beside the key's policy; never parsed from text).
    bound: Mapping[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Condition:
    """One key under one operator: ``{"ForAnyValue:StringLikeIfExists": {key: values}}``."""

    operator: str  # the base operator, e.g. "StringEquals"
    if_exists: bool
    set_operator: str | None  # "ForAllValues" | "ForAnyValue" | None
    # The condition key, wholly lower-cased: AWS compares condition key names,
    # encryption context keys and tag keys in them case-insensitively.
    key: str
    # Every value as a string: JSON strings as written, JSON numbers as the
    # digits written (AWS compares them as the text), true/false as
    # "true"/"false". Several values are alternatives (OR).
    values: tuple[str, ...]
    # The key as the policy spelled it, for messages and audit.
    key_as_written: str = field(default="", compare=False)
    # Whether ${...} policy variables in the values are substituted: only in
    # 2012-10-17 policies and only for string and ARN operators.
    variables: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str | None
    effect: str  # "Allow" | "Deny"
    principal: PrincipalSpec | None
    not_principal: PrincipalSpec | None
    actions: tuple[str, ...] | None  # lower-cased patterns: "kms:decrypt", "kms:*", "*"
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    conditions: tuple[Condition, ...]
    index: int  # position in the policy (0-based), for messages when sid is None


@dataclass(frozen=True, slots=True)
class Policy:
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Variable:
    """``${key}`` or ``${key, 'default'}`` in a condition value."""

    key: str  # lower-cased
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """Characters that stand for themselves even where ``*`` and ``?`` are
    wildcards: the escapes ``${*}``, ``${?}`` and ``${$}``."""

    text: str


# A condition value is a sequence of parts: ``str`` is text as written (where
# "*" and "?" are wildcards for the Like operators), Text is literal text, and
# Variable is replaced by a request context value at evaluation time.
TemplatePart = str | Text | Variable
