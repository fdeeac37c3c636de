"""The AWS policy language: a policy JSON string in, validated frozen dataclasses out.

Why one module of ~650 lines: it is one recursive-descent parser, each element's checks
calling the next element's with the same failure and quoting conventions;
cut further, one grammar would be read across files.

Key policies, identity policies and roles' trust policies are parsed by one
function, ``parse_policy``.
Every problem raises ``MalformedPolicyDocumentException`` naming the statement
and the element. The parser refuses rather than guesses: a typo in an action, a
condition operator or a condition key would otherwise make a statement quietly
grant nothing, or quietly drop a restriction its author meant to impose.

Case rules (AWS IAM and the KMS Developer Guide):

* Element names (``Effect``, ``Action``, ...), ``Effect`` values and condition
  operators are matched exactly.
* Actions are case-insensitive; they are kept lower-cased (``kms:decrypt``).
* Condition key names are case-insensitive, *including* the part after
  ``kms:EncryptionContext:`` and after ``aws:PrincipalTag/``,
  ``aws:ResourceTag/`` and ``aws:RequestTag/``. The KMS guide's "Case
  sensitivity of the encryption context condition" says neither the prefix
  nor the context key is case-sensitive (only the *value* is, depending on the
  operator), and the AWS service guides say a condition tag key ``Owner``
  matches both ``Owner`` and ``owner``. So ``Condition.key`` is the whole key
  lower-cased, and ``Condition.key_as_written`` keeps the original spelling
  for messages. A policy that needs a case-sensitive encryption context key
  uses ``kms:EncryptionContextKeys``, whose *values* are compared by the
  operator.
* Resources and principals are kept as written.

Sources: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html,
https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html,
https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-idp_oidc.html (trust policies).

The language is split by job: ``vocabulary.py`` (limits, actions,
operators, condition keys), ``model.py`` (the parsed dataclasses),
``values.py`` (numbers, instants, networks, ``${...}`` variables, shared
with evaluation), ``glob.py`` (the wildcard matcher), ``messages.py`` (how
messages quote a policy); this module is the parser that uses them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Literal, NoReturn

from keycask.arn import Arn
from keycask.config import partition
from keycask.errors import MalformedPolicyDocumentException
from keycask.policy.glob import pattern_tokens, wildcard_match
from keycask.policy.messages import JsonNumber, kind_of, show, suggest, suggest_folded

# The parsed model, re-exported: the service and the policy tools read a
# Policy from here, next to the parse_policy that makes it.
from keycask.policy.model import Condition, Policy, PrincipalSpec, Statement
from keycask.policy.values import (
    parse_binary,
    parse_bool,
    parse_instant,
    parse_network,
    parse_number,
    parse_template,
)
from keycask.policy.vocabulary import (
    ARN_OPERATORS,
    CONDITION_KEY_PREFIXES,
    CONDITION_KEYS,
    DATE_OPERATORS,
    IP_OPERATORS,
    KMS_ACTIONS,
    KMS_ACTIONS_BY_LOWER,
    MAX_CONDITION_VALUE_CHARS,
    MAX_NESTING,
    MAX_POLICY_BYTES,
    NO_FOR_ALL_VALUES,
    NUMERIC_OPERATORS,
    OPERATORS,
    SET_OPERATORS,
    STS_TRUST_ACTIONS,
    STS_TRUST_ACTIONS_BY_LOWER,
    VARIABLE_OPERATORS,
    VARIABLES_VERSION,
    VERSIONS,
    key_kind,
    provider_claim_kind,
)

__all__ = ["Condition", "Policy", "PrincipalSpec", "Statement", "parse_policy"]

_TOP_ELEMENTS = ("Version", "Id", "Statement")
_STATEMENT_ELEMENTS = (
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
)

# The KMS model's PolicyType pattern: tab, LF, CR and U+0020..U+00FF.
_BAD_CHARACTER = re.compile("[^\t\n\r\x20-\xff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string, or an unterminated one running to the end of the text: the
# pattern never fails after its opening quote, so scanning stays linear.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\(?:.|\Z))*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_IDENTITY_SID = re.compile("[A-Za-z0-9]*")
_ACCOUNT_ID = re.compile("[0-9]{12}")
_PARTITION = "aws(?:-cn|-us-gov)?"
_NAME = r"[A-Za-z0-9+=,.@_\-]+"
_IAM_PRINCIPAL = re.compile(
    rf"arn:{_PARTITION}:iam::([0-9]{{12}}):(?:root|(?:user|role)/(?:{_NAME}/)*{_NAME})"
)
_STS_PRINCIPAL = re.compile(rf"arn:{_PARTITION}:sts::([0-9]{{12}}):assumed-role/{_NAME}/{_NAME}")
_SERVICE_PRINCIPAL = re.compile("[A-Za-z0-9.-]+")
# An identity provider keycask can register (OIDC) or AWS names (SAML): its
# ARN. The well-known names IAM also takes (accounts.google.com, ...) have no
# provider in keycask, so they are not principals here.
_FEDERATED_PRINCIPAL = re.compile(
    rf"arn:{_PARTITION}:iam::[0-9]{{12}}:(?:oidc|saml)-provider/[A-Za-z0-9._~:/%@+=,-]+"
)
_ACTION = re.compile("([^:]*):(.*)", re.DOTALL)
_SERVICE_PREFIX = re.compile("[A-Za-z0-9-]+")
_ACTION_NAME = re.compile("[A-Za-z0-9_*?-]+")

# AWS's unique ids of users (AIDA) and roles (AROA).
UNIQUE_ID = re.compile(r"A(?:IDA|ROA)[A-Z0-9]{17}")


def _fail(message: str) -> NoReturn:
    raise MalformedPolicyDocumentException(message)


# -- parsing -------------------------------------------------------------------


def parse_policy(text: str, *, kind: Literal["key", "identity", "trust"]) -> Policy:
    """Parse and validate a key policy (``kind="key"``: every statement names
    its Principal or NotPrincipal), an identity policy (``kind="identity"``:
    neither is allowed) or a role's trust policy (``kind="trust"``: every
    statement names its Principal, which may be ``Federated``; only the sts:
    actions of assuming a role; no Resource, since the role is the resource)."""
    if kind not in ("key", "identity", "trust"):
        raise ValueError(f"kind must be 'key', 'identity' or 'trust', not {kind!r}")
    if not isinstance(text, str):
        _fail("The policy must be a JSON document in a string.")
    if not text.strip():
        _fail("The policy is empty.")
    bad = _BAD_CHARACTER.search(text)
    if bad is not None:
        _fail(
            f"The policy contains the character U+{ord(bad.group()):04X} at offset {bad.start()}; "
            "a policy may contain only tab, line feed, carriage return and "
            "characters U+0020 to U+00FF (use a \\u escape inside a JSON string)."
        )
    # Every character is now at most two UTF-8 bytes, none a surrogate.
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        _fail(f"The policy is {size} bytes; the limit is {MAX_POLICY_BYTES}.")
    if _nesting(text) > MAX_NESTING:
        _fail(f"The policy nests JSON objects and lists more than {MAX_NESTING} levels deep.")
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=JsonNumber,
            parse_float=JsonNumber,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        _fail(f"The policy is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.")
    except RecursionError:  # defence in depth: _nesting already bounds this
        _fail("The policy nests JSON objects and lists too deeply.")
    if not isinstance(document, dict):
        _fail(f"The policy must be a JSON object, not {kind_of(document)}.")
    for name in document:
        if name not in _TOP_ELEMENTS:
            _fail(
                f"The policy has an unknown element {show(name)}{suggest(name, _TOP_ELEMENTS)}; "
                "a policy has only Version, Id and Statement."
            )
    version = document.get("Version")
    if version is not None:
        if not isinstance(version, str) or isinstance(version, JsonNumber):
            _fail(f'Version must be the string "2012-10-17", not {kind_of(version)}.')
        if version not in VERSIONS:
            _fail(f'Version {show(version)} is not a policy language version; use "2012-10-17".')
    policy_id = document.get("Id")
    if policy_id is not None:
        policy_id = _string(policy_id, "Id")
    if "Statement" not in document:
        _fail("The policy has no Statement.")
    raw_statements = document["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list):
        _fail(f"Statement must be an object or a list of objects, not {kind_of(raw_statements)}.")
    if not raw_statements:
        _fail("Statement is an empty list; a policy needs at least one statement.")
    variables = version == VARIABLES_VERSION
    statements = tuple(
        _statement(raw, index, kind, variables) for index, raw in enumerate(raw_statements)
    )
    seen: dict[str, int] = {}
    for statement in statements:
        if statement.sid:
            if statement.sid in seen:
                _fail(
                    f"Statements {seen[statement.sid] + 1} and {statement.index + 1} share the "
                    f"Sid {show(statement.sid)}; Sids must be unique within a policy."
                )
            seen[statement.sid] = statement.index
    return Policy(version, policy_id, statements)


def _nesting(text: str) -> int:
    """How deeply brackets nest outside JSON strings (an upper bound is all
    that matters: anything suspicious is refused before json.loads)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub('""', text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Python's json keeps the last of duplicate names; a policy where
    # "Effect" appears twice must not be read as either one.
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            _fail(f"The policy repeats the name {show(name)} within one JSON object.")
        result[name] = value
    return result


def _constant(name: str) -> NoReturn:
    _fail(f"The policy contains {name}, which is not JSON.")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or isinstance(value, JsonNumber):
        _fail(f"{where} must be a string, not {kind_of(value)}.")
    if _SURROGATE.search(value):
        _fail(f"{where} contains an unpaired UTF-16 surrogate escape.")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    """A string or a non-empty list of strings (Action, Resource, AWS, ...)."""
    if isinstance(value, list):
        if not value:
            _fail(f"{where} is an empty list.")
        return tuple(_string(item, f"{where} entry {i + 1}") for i, item in enumerate(value))
    return (_string(value, where),)


def _either(
    raw: dict[str, object],
    name: str,
    parse: Callable[[object, str], tuple[str, ...]],
    where: str,
    missing: str,
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """``name`` or ``Not<name>``: exactly one of them, parsed."""
    negated = "Not" + name
    if name in raw and negated in raw:
        _fail(f"{where} has both {name} and {negated}; use one.")
    if name in raw:
        return parse(raw[name], f"{where}: {name}"), None
    if negated in raw:
        return None, parse(raw[negated], f"{where}: {negated}")
    _fail(missing)


def _statement(raw: object, index: int, kind: str, variables: bool) -> Statement:
    where = f"Statement {index + 1}"
    if not isinstance(raw, dict):
        _fail(f"{where} must be a JSON object, not {kind_of(raw)}.")
    sid: str | None = None
    if "Sid" in raw:
        sid = _string(raw["Sid"], f"{where}: Sid")
        if kind == "identity" and not _IDENTITY_SID.fullmatch(sid):
            _fail(
                f"{where}: Sid {show(sid)} may contain only letters and digits "
                "in an identity policy (key policies also allow spaces)."
            )
        if sid:
            where = f"{where} (Sid {show(sid, 60)})"
    for name in raw:
        if name not in _STATEMENT_ELEMENTS:
            _fail(
                f"{where} has an unknown element {show(name)}{suggest(name, _STATEMENT_ELEMENTS)}."
            )

    if "Effect" not in raw:
        _fail(f'{where} has no Effect; write "Allow" or "Deny".')
    effect = raw["Effect"]
    if not isinstance(effect, str) or effect not in ("Allow", "Deny"):
        _fail(f'{where}: Effect must be exactly "Allow" or "Deny", not {show(effect)}.')

    principal = not_principal = None
    if kind == "identity":
        for name in ("Principal", "NotPrincipal"):
            if name in raw:
                _fail(
                    f"{where}: an identity policy cannot have a {name}; the identity it is "
                    "attached to is the principal."
                )
    elif kind == "trust":
        # IAM refuses NotPrincipal in a role's trust policy: who may assume
        # a role is named, never everyone-but.
        if "NotPrincipal" in raw:
            _fail(
                f"{where}: a trust policy names who may assume the role with Principal, "
                "not NotPrincipal."
            )
        if "Principal" not in raw:
            _fail(
                f"{where} has no Principal; every statement in a trust policy names who "
                "may assume the role."
            )
        principal = _principal(raw["Principal"], f"{where}: Principal", federated=True)
    else:
        if "Principal" in raw and "NotPrincipal" in raw:
            _fail(f"{where} has both Principal and NotPrincipal; use one.")
        if "Principal" in raw:
            principal = _principal(raw["Principal"], f"{where}: Principal")
        elif "NotPrincipal" in raw:
            not_principal = _principal(raw["NotPrincipal"], f"{where}: NotPrincipal")
        else:
            _fail(f"{where} has no Principal; every statement in a key policy needs one.")

    actions, not_actions = _either(
        raw,
        "Action",
        _trust_actions if kind == "trust" else _actions,
        where,
        f"{where} has no Action (or NotAction).",
    )
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    if kind == "trust":
        for name in ("Resource", "NotResource"):
            if name in raw:
                _fail(
                    f"{where}: a trust policy has no {name}; the role it belongs to is "
                    "the resource."
                )
        resources, not_resources = ("*",), None
    else:
        resources, not_resources = _either(
            raw,
            "Resource",
            _resources,
            where,
            f'{where} has no Resource (or NotResource); a key policy uses "Resource": "*".',
        )

    conditions: tuple[Condition, ...] = ()
    if "Condition" in raw:
        conditions = _conditions(
            raw["Condition"], f"{where}: Condition", variables, trust=kind == "trust"
        )
    return Statement(
        sid=sid,
        effect=effect,
        principal=principal,
        not_principal=not_principal,
        actions=actions,
        not_actions=not_actions,
        resources=resources,
        not_resources=not_resources,
        conditions=conditions,
        index=index,
    )


def _principal(raw: object, where: str, *, federated: bool = False) -> PrincipalSpec:
    if raw == "*":
        return PrincipalSpec(any=True)
    if not isinstance(raw, dict):
        _fail(f'{where} must be "*" or an object such as {{"AWS": "<ARN>"}}, not {show(raw)}.')
    if not raw:
        _fail(f"{where} is an empty object.")
    types = ("AWS", "Federated", "Service") if federated else ("AWS", "Service")
    for name in raw:
        if name not in types:
            supported = ", ".join(f'"{t}"' for t in types)
            _fail(
                f"{where} has the principal type {show(name)}{suggest(name, types)}; "
                f"keycask supports {supported} principals here."
            )
    any_principal = False
    aws: list[str] = []
    if "AWS" in raw:
        for value in _strings(raw["AWS"], f"{where} AWS"):
            if value == "*":
                any_principal = True
            else:
                arn = _aws_principal(value, f"{where} AWS")
                if arn not in aws:
                    aws.append(arn)
    services = _listed_principals(
        raw, "Service", where, _SERVICE_PRINCIPAL, 'a service principal such as "ec2.amazonaws.com"'
    )
    providers = _listed_principals(
        raw,
        "Federated",
        where,
        _FEDERATED_PRINCIPAL,
        'an identity provider: use its ARN, "arn:aws:iam::<account>:oidc-provider/<issuer '
        'host and path>"',
    )
    return PrincipalSpec(any_principal, tuple(aws), services, providers)


def _listed_principals(
    raw: dict[str, object], kind: str, where: str, form: re.Pattern[str], what: str
) -> tuple[str, ...]:
    """The ``kind`` principals (Service, Federated) named, each once, in order."""
    found: list[str] = []
    if kind in raw:
        for value in _strings(raw[kind], f"{where} {kind}"):
            if not form.fullmatch(value):
                _fail(f"{where} {kind} {show(value)} is not {what}.")
            if value not in found:
                found.append(value)
    return tuple(found)


def _aws_principal(value: str, where: str) -> str:
    if _ACCOUNT_ID.fullmatch(value):
        return f"arn:{partition()}:iam::{value}:root"
    if UNIQUE_ID.fullmatch(value):
        # A principal's unique id, as GetKeyPolicy shows a principal deleted
        # since the policy was put: kept, so such a policy can be put back.
        return value
    if _IAM_PRINCIPAL.fullmatch(value) or _STS_PRINCIPAL.fullmatch(value):
        return value
    if "*" in value or "?" in value:
        _fail(
            f"{where} {show(value)}: wildcards are not allowed in a principal "
            '(use "*" with an aws:PrincipalArn condition and ArnLike instead).'
        )
    _fail(
        f"{where} {show(value)} is not a principal: use a 12-digit account id, "
        '"arn:aws:iam::<account>:root", "arn:aws:iam::<account>:user/<name>" or '
        '"arn:aws:iam::<account>:role/<name>".'
    )


def _actions(raw: object, where: str) -> tuple[str, ...]:
    return tuple(_action(value, where) for value in _strings(raw, where))


def _action(value: str, where: str) -> str:
    if value == "*":
        return value
    match = _ACTION.fullmatch(value)
    if match is None:
        _fail(f'{where} {show(value)} is not an action: write "*" or "<service>:<action>".')
    prefix, name = match.groups()
    if "*" in prefix or "?" in prefix:
        _fail(f"{where} {show(value)}: wildcards are not allowed in the service prefix.")
    if not _SERVICE_PREFIX.fullmatch(prefix) or not _ACTION_NAME.fullmatch(name):
        _fail(f'{where} {show(value)} is not an action: write "*" or "<service>:<action>".')
    lowered = value.lower()
    if prefix.lower() != "kms":
        return lowered  # another service's action: valid, never a KMS request
    if "*" in name or "?" in name:
        tokens = pattern_tokens(lowered)
        if not any(wildcard_match(tokens, action) for action in KMS_ACTIONS_BY_LOWER):
            _fail(f"{where} {show(value)} matches no KMS operation.")
        return lowered
    if lowered not in KMS_ACTIONS_BY_LOWER:
        hint = suggest_folded(value, KMS_ACTIONS)
        if lowered == "kms:reencrypt":
            hint = ' (AWS authorizes ReEncrypt as "kms:ReEncryptFrom" and "kms:ReEncryptTo"; '
            hint += 'write "kms:ReEncrypt*" for both)'
        _fail(f"{where} {show(value)} names no KMS operation{hint}.")
    return lowered


def _trust_actions(raw: object, where: str) -> tuple[str, ...]:
    return tuple(_trust_action(value, where) for value in _strings(raw, where))


def _trust_action(value: str, where: str) -> str:
    lowered = value.lower()
    if value == "*" or lowered == "sts:*":
        return lowered
    if not lowered.startswith("sts:"):
        _fail(
            f"{where} {show(value)}: a trust policy allows only the sts: actions of assuming "
            'the role, such as "sts:AssumeRole" and "sts:AssumeRoleWithWebIdentity".'
        )
    _action(value, where)  # the general rules: well formed, no wildcard in the prefix
    if "*" in value or "?" in value:
        tokens = pattern_tokens(lowered)
        if not any(wildcard_match(tokens, action) for action in STS_TRUST_ACTIONS_BY_LOWER):
            _fail(f"{where} {show(value)} matches no action a trust policy governs.")
        return lowered
    if lowered not in STS_TRUST_ACTIONS_BY_LOWER:
        _fail(
            f"{where} {show(value)} is not an action a trust policy governs"
            f"{suggest_folded(value, STS_TRUST_ACTIONS)}."
        )
    return lowered


def _resources(raw: object, where: str) -> tuple[str, ...]:
    resources = _strings(raw, where)
    for value in resources:
        if value != "*" and Arn.parse_or_none(value) is None:
            _fail(
                f'{where} {show(value)} is neither "*" nor an ARN such as '
                '"arn:aws:kms:<region>:<account>:key/<key id>".'
            )
    return resources


def _operator(text: str, where: str) -> tuple[str | None, str, bool]:
    rest = text
    set_operator: str | None = None
    for candidate in SET_OPERATORS:
        if rest.startswith(candidate + ":"):
            set_operator = candidate
            rest = rest[len(candidate) + 1 :]
            break
    if_exists = rest.endswith("IfExists") and rest != "IfExists"
    base = rest[: -len("IfExists")] if if_exists else rest
    if base not in OPERATORS:
        _fail(f"{where}: {show(text)} is not a condition operator{suggest(base, OPERATORS)}.")
    if base == "Null":
        if if_exists:
            _fail(f'{where}: {show(text)}: "IfExists" cannot qualify Null, which tests existence.')
        if set_operator is not None:
            _fail(f"{where}: {show(text)}: {set_operator} cannot qualify Null.")
    return set_operator, base, if_exists


def _condition_key(written: str, where: str, *, trust: bool = False) -> tuple[str, bool]:
    key = written.lower()
    kind = key_kind(key)
    if kind is None and trust:
        kind = provider_claim_kind(key)
    if kind is None:
        for prefix in CONDITION_KEY_PREFIXES:
            if key == prefix:
                _fail(f"{where}: the condition key {show(written)} needs a name after the prefix.")
        known = [*CONDITION_KEYS, *(prefix + "<name>" for prefix in CONDITION_KEY_PREFIXES)]
        _fail(f"{where}: {show(written)} is not a known condition key{suggest(key, known)}.")
    return key, kind


def _condition_values(raw: object, where: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        _fail(f"{where} is an empty list; give at least one value.")
    values: list[str] = []
    for item in items:
        if isinstance(item, str) and len(item) > MAX_CONDITION_VALUE_CHARS:
            _fail(
                f"{where}: a condition value has {len(item)} characters; the limit is "
                f"{MAX_CONDITION_VALUE_CHARS}."
            )
        if isinstance(item, bool):
            values.append("true" if item else "false")
        elif isinstance(item, str):
            values.append(_string(str(item), where))
        else:
            _fail(
                f"{where}: a condition value must be a string, number or boolean, "
                f"not {kind_of(item)}."
            )
    return tuple(values)


def _conditions(
    raw: object, where: str, variables: bool, *, trust: bool = False
) -> tuple[Condition, ...]:
    if not isinstance(raw, dict):
        _fail(f"{where} must be an object of condition operators, not {kind_of(raw)}.")
    conditions: list[Condition] = []
    for operator_text, block in raw.items():
        set_operator, base, if_exists = _operator(operator_text, where)
        here = f"{where} {show(operator_text)}"
        if not isinstance(block, dict):
            _fail(f"{here} must be an object of condition keys and values, not {kind_of(block)}.")
        if not block:
            _fail(f"{here} names no condition key.")
        for written, raw_values in block.items():
            key, _multivalued = _condition_key(written, here, trust=trust)
            at = f"{here} key {show(written)}"
            if set_operator == "ForAllValues" and key.startswith(NO_FOR_ALL_VALUES):
                _fail(
                    f"{at}: OverlyPermissiveCondition: ForAllValues with a single-valued key "
                    "matches requests that lack the key or carry others; remove ForAllValues."
                )
            values = _condition_values(raw_values, at)
            substitutes = variables and base in VARIABLE_OPERATORS
            for value in values:
                _check_value(base, value, substitutes, variables, at)
            conditions.append(
                Condition(
                    operator=base,
                    if_exists=if_exists,
                    set_operator=set_operator,
                    key=key,
                    values=values,
                    key_as_written=written,
                    variables=substitutes,
                )
            )
    return tuple(conditions)


def _check_value(base: str, value: str, substitutes: bool, variables: bool, where: str) -> None:
    try:
        parts = parse_template(value, variables=substitutes)
    except ValueError as exc:
        _fail(f"{where}: {exc}.")
    problem: str | None = None
    if base in NUMERIC_OPERATORS and parse_number(value) is None:
        problem = "is not a number"
    elif base in DATE_OPERATORS and parse_instant(value) is None:
        problem = "is not a date (ISO 8601 such as 2025-01-31T12:00:00Z, or epoch seconds)"
    elif base in ("Bool", "Null") and parse_bool(value) is None:
        problem = 'is not "true" or "false"'
    elif base == "BinaryEquals" and parse_binary(value) is None:
        problem = "is not base64"
    elif base in IP_OPERATORS and parse_network(value) is None:
        problem = "is not an IP address or CIDR block such as 203.0.113.0/24"
    elif (
        base in ARN_OPERATORS
        and all(isinstance(part, str) for part in parts)
        and Arn.parse_or_none(value) is None
    ):
        problem = "is not an ARN (arn:partition:service:region:account:resource)"
    if problem is not None:
        hint = ""
        if variables and "${" in value and base not in VARIABLE_OPERATORS:
            hint = " (policy variables are allowed only with String and ARN operators)"
        _fail(f"{where}: the value {show(value)} {problem}{hint}.")
