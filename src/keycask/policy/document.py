"""The AWS policy language: a policy JSON string in, validated frozen dataclasses out.

Key policies and identity policies are parsed by one function, ``parse_policy``.
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
https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html.

Why one module of ~1,200 lines: it is the policy language as one unit, the
vocabulary tables (actions, condition operators and keys), the value parsers
and the parser that uses them, and the glob matcher the parsed conditions
compile to; a change to the language touches all of them together, and a
reader checking what is accepted needs them side by side. Issue 14 item 9
splits it into vocabulary / model / value parsers / parse.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import accumulate
from typing import Literal, NoReturn

from keycask.arn import Arn
from keycask.config import partition
from keycask.errors import MalformedPolicyDocumentException

# The KMS model's PolicyType bound (also its character set, below). The KMS
# Developer Guide quotes a 32 KB key policy quota; the API model allows more,
# and the caller may apply the smaller quota on top.
MAX_POLICY_BYTES = 131072
# The longest single condition value. AWS bounds only the whole key policy
# (32 KB); this bounds what one comparison can cost and what one pattern
# can make the matcher hold. Longer than any ARN (2,048), tag value (256),
# alias (256) or principal name; an encryption context value could be
# longer, but no policy compares against a 4,000-character context value.
MAX_CONDITION_VALUE_CHARS = 4096
# A valid policy nests at most six levels (document, Statement list,
# statement, Condition, operator block, value list); anything deeper is
# refused before the JSON parser can recurse on it.
MAX_NESTING = 8

VERSIONS = frozenset({"2012-10-17", "2008-10-17"})
# Policy variables exist only in this version of the language; in older (or
# unversioned) policies "${aws:username}" is a literal string.
VARIABLES_VERSION = "2012-10-17"

# Every permission the KMS authorizes: the operations in botocore's KMS model
# (tests compare the two), except ReEncrypt, which AWS authorizes as the two
# permissions ReEncryptFrom (source key) and ReEncryptTo (destination key);
# plus SynchronizeMultiRegionKey, which no API exposes but AWS's multi-Region
# service-linked role is granted.
KMS_ACTIONS: frozenset[str] = frozenset(
    "kms:" + name
    for name in (
        "CancelKeyDeletion",
        "ConnectCustomKeyStore",
        "CreateAlias",
        "CreateCustomKeyStore",
        "CreateGrant",
        "CreateKey",
        "Decapsulate",
        "Decrypt",
        "DeleteAlias",
        "DeleteCustomKeyStore",
        "DeleteImportedKeyMaterial",
        "DeriveSharedSecret",
        "DescribeCustomKeyStores",
        "DescribeKey",
        "DisableKey",
        "DisableKeyRotation",
        "DisconnectCustomKeyStore",
        "EnableKey",
        "EnableKeyRotation",
        "Encapsulate",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateMac",
        "GenerateRandom",
        "GetKeyLastUsage",
        "GetKeyPolicy",
        "GetKeyRotationStatus",
        "GetParametersForImport",
        "GetPublicKey",
        "ImportKeyMaterial",
        "ListAliases",
        "ListGrants",
        "ListKeyPolicies",
        "ListKeyRotations",
        "ListKeys",
        "ListResourceTags",
        "ListRetirableGrants",
        "PutKeyPolicy",
        "ReEncryptFrom",
        "ReEncryptTo",
        "ReplicateKey",
        "RetireGrant",
        "RevokeGrant",
        "RotateKeyOnDemand",
        "ScheduleKeyDeletion",
        "Sign",
        "SynchronizeMultiRegionKey",
        "TagResource",
        "UntagResource",
        "UpdateAlias",
        "UpdateCustomKeyStore",
        "UpdateKeyDescription",
        "UpdatePrimaryRegion",
        "Verify",
        "VerifyMac",
    )
)
_KMS_ACTIONS_LOWER = {action.lower(): action for action in KMS_ACTIONS}

STRING_OPERATORS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
    }
)
NUMERIC_OPERATORS = frozenset(
    {
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
    }
)
DATE_OPERATORS = frozenset(
    {
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
    }
)
ARN_OPERATORS = frozenset({"ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike"})
IP_OPERATORS = frozenset({"IpAddress", "NotIpAddress"})
OPERATORS = (
    STRING_OPERATORS
    | NUMERIC_OPERATORS
    | DATE_OPERATORS
    | ARN_OPERATORS
    | IP_OPERATORS
    | {"Bool", "BinaryEquals", "Null"}
)
# Operators that hold when the key does *not* match; with the key absent
# from the request they are true (IAM: "If the policy condition requires that
# the key is not matched ... and the right key is not present, the condition
# is true").
NEGATED_OPERATORS = frozenset(
    {
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
        "StringNotLike",
        "NumericNotEquals",
        "DateNotEquals",
        "NotIpAddress",
        "ArnNotEquals",
        "ArnNotLike",
    }
)
# IAM allows policy variables only in string and ARN comparisons.
VARIABLE_OPERATORS = STRING_OPERATORS | ARN_OPERATORS
SET_OPERATORS = ("ForAllValues", "ForAnyValue")

# Known condition keys, lower-cased, each marked multivalued or not (the
# "Value type" column of the KMS and IAM references). Multivalued keys hold a
# set of values in the request and are meant for ForAllValues/ForAnyValue.
_KMS_KEYS: dict[str, bool] = {
    "kms:bypasspolicylockoutsafetycheck": False,
    "kms:calleraccount": False,
    "kms:customermasterkeyspec": False,
    "kms:customermasterkeyusage": False,
    "kms:datakeypairspec": False,
    "kms:encryptionalgorithm": False,
    "kms:encryptioncontextkeys": True,
    "kms:expirationmodel": False,
    "kms:grantconstrainttype": False,
    "kms:grantisforawsresource": False,
    "kms:grantoperations": True,
    "kms:granteeprincipal": False,
    "kms:keyagreementalgorithm": False,
    "kms:keyorigin": False,
    "kms:keyspec": False,
    "kms:keyusage": False,
    "kms:macalgorithm": False,
    "kms:messagetype": False,
    "kms:multiregion": False,
    "kms:multiregionkeytype": False,
    "kms:primaryregion": False,
    "kms:reencryptonsamekey": False,
    "kms:replicaregion": False,
    "kms:requestalias": False,
    "kms:resourcealiases": True,
    "kms:retiringprincipal": False,
    "kms:rotationperiodindays": False,
    "kms:schedulekeydeletionpendingwindowindays": False,
    "kms:signingalgorithm": False,
    "kms:validto": False,
    "kms:viaservice": False,
    "kms:wrappingalgorithm": False,
    "kms:wrappingkeyspec": False,
}
_GLOBAL_KEYS: dict[str, bool] = {
    "aws:calledvia": True,
    "aws:calledviafirst": False,
    "aws:calledvialast": False,
    "aws:currenttime": False,
    "aws:epochtime": False,
    "aws:federatedprovider": False,
    "aws:multifactorauthage": False,
    "aws:multifactorauthpresent": False,
    "aws:principalaccount": False,
    "aws:principalarn": False,
    "aws:principalisawsservice": False,
    "aws:principalorgid": False,
    "aws:principalorgpaths": True,
    "aws:principalservicename": False,
    "aws:principalservicenameslist": True,
    "aws:principaltype": False,
    "aws:referer": False,
    "aws:requestedregion": False,
    "aws:resourceaccount": False,
    "aws:resourceorgid": False,
    "aws:resourceorgpaths": True,
    "aws:securetransport": False,
    "aws:sourceaccount": False,
    "aws:sourcearn": False,
    "aws:sourceidentity": False,
    "aws:sourceip": False,
    "aws:sourceorgid": False,
    "aws:sourceorgpaths": True,
    "aws:sourcevpc": False,
    "aws:sourcevpce": False,
    "aws:tagkeys": True,
    "aws:tokenissuetime": False,
    "aws:userid": False,
    "aws:username": False,
    "aws:viaawsservice": False,
    "aws:vpcsourceip": False,
}
CONDITION_KEYS: dict[str, bool] = {**_KMS_KEYS, **_GLOBAL_KEYS}
# Keys with a caller-chosen suffix; all single-valued.
CONDITION_KEY_PREFIXES = (
    "kms:encryptioncontext:",
    "aws:principaltag/",
    "aws:resourcetag/",
    "aws:requesttag/",
)
# AWS KMS refuses ForAllValues with these single-valued keys
# (OverlyPermissiveCondition): it matches requests without the pair at all.
_NO_FOR_ALL_VALUES = ("kms:encryptioncontext:", "aws:requesttag/")

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
_ACTION = re.compile("([^:]*):(.*)", re.DOTALL)
_SERVICE_PREFIX = re.compile("[A-Za-z0-9-]+")
_ACTION_NAME = re.compile("[A-Za-z0-9_*?-]+")
_VARIABLE = re.compile(r"\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ISO_8601 = re.compile(
    "([0-9]{4})-([0-9]{2})"
    "(?:-([0-9]{2})"
    "(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.]([0-9]+))?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?)?"
)
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)

# AWS's unique ids of users (AIDA) and roles (AROA).
UNIQUE_ID = re.compile(r"A(?:IDA|ROA)[A-Z0-9]{17}")

# Wildcard tokens for ``wildcard_match``: a pattern is a sequence of tokens,
# each one literal character or one of these two (longer, so never a char).
ANY_RUN = "<*>"
ANY_CHAR = "<?>"


@dataclass(frozen=True, slots=True)
class PrincipalSpec:
    """A Principal or NotPrincipal element."""

    any: bool  # "*" or {"AWS": "*"}
    # AWS principal ARNs as written; a bare account id is normalised to
    # "arn:aws:iam::<id>:root", which is what it means.
    aws: tuple[str, ...] = ()
    # {"Service": ...} principals, kept; they never match a keycask caller.
    services: tuple[str, ...] = ()
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


class _JsonNumber(str):
    """A JSON number, kept as the text it was written as (never converted to a
    float, so no precision is lost and no huge integer is ever built)."""

    __slots__ = ()


def _fail(message: str) -> NoReturn:
    raise MalformedPolicyDocumentException(message)


def _show(value: object, limit: int = 80) -> str:
    """A value quoted for a message, cut short: messages echo policies, and a
    131 KB string helps nobody."""
    text = json.dumps(value) if isinstance(value, str) else _kind(value)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _JsonNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _suggest_folded(word: str, choices: Iterable[str]) -> str:
    """Like _suggest, but case-insensitive, answering with the AWS spelling."""
    spelled = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(spelled), n=1, cutoff=0.75)
    return f' (did you mean "{spelled[close[0]]}"?)' if close else ""


# -- wildcards -----------------------------------------------------------------


def pattern_tokens(pattern: str) -> tuple[str, ...]:
    """The wildcard tokens of a pattern where ``*`` and ``?`` are wildcards."""
    return tuple(ANY_RUN if c == "*" else ANY_CHAR if c == "?" else c for c in pattern)


def wildcard_match(tokens: Sequence[str], text: str) -> bool:
    """Whether ``text`` matches the token sequence (see ``pattern_tokens``)."""
    return compile_glob(tuple(tokens)).match(text)


# A Python-level scan (the bit-parallel search below) costs about as much per
# character as the C regex engine spends trying a segment of this many
# characters at one position; longer segments with "?" use the scan.
_REGEX_SEGMENT = 64


@dataclass(frozen=True, slots=True)
class _Segment:
    """The tokens between two ``*``: literal runs at fixed offsets, with a
    ``?`` (any one character) wherever no run covers."""

    length: int
    runs: tuple[tuple[int, str], ...]  # (offset, literal text), in order
    literal: str | None  # the whole segment when it has no "?"
    regex: re.Pattern[str] | None  # a short segment with "?": one C-level search
    # A long segment with "?": bit-parallel search. Per character, the bits of
    # the positions it may take (those of "?" included); any_mask for others.
    masks: dict[str, int] | None
    any_mask: int

    def at(self, text: str, start: int) -> bool:
        """Whether the segment matches ``text`` at ``start`` (the caller has
        checked that it fits): one comparison per literal run."""
        return all(text.startswith(run, start + offset) for offset, run in self.runs)

    def find(self, text: str, start: int, end: int) -> int:
        """The leftmost position >= start where the segment matches and ends
        by ``end``; -1 if none.

        Cost, with n = end - start: a literal segment is one ``str.find``,
        which CPython (3.10+) runs in O(n + length) with its two-way search for
        long needles and in at most n * min(length, 100) comparisons for short
        ones. A short segment with "?" is one regex search: the pattern has no
        repetition, so the engine tries each start once and compares at most
        ``length`` <= 64 characters there, O(64 n). A longer one is a
        Shift-And scan: n steps of three integer operations on ``length``
        bits. Each is linear in n for a bounded segment; nothing backtracks
        over earlier segments.
        """
        if self.literal is not None:
            return text.find(self.literal, start, end)
        if self.regex is not None:
            found = self.regex.search(text, start, end)
            return -1 if found is None else found.start()
        assert self.masks is not None
        masks, any_mask = self.masks, self.any_mask
        done = 1 << (self.length - 1)
        state = 0
        for index in range(start, end):
            state = ((state << 1) | 1) & masks.get(text[index], any_mask)
            if state & done:
                return index - self.length + 1
        return -1

    @property
    def weight(self) -> int:
        """What searching costs per character of text, in characters
        compared by ``str.find`` (about 5 ns for a long needle; see
        benchmarks/glob_bench.py): a regex search of up to 64 characters
        measures about 30 times that, a Shift-And step about 200 times."""
        if self.literal is not None:
            return 1
        return 64 if self.regex is not None else 256


def _segment(tokens: Sequence[str]) -> _Segment:
    runs: list[tuple[int, str]] = []
    run: list[str] = []
    for offset, token in enumerate(tokens):
        if token == ANY_CHAR:
            if run:
                runs.append((offset - len(run), "".join(run)))
                run = []
        else:
            run.append(token)
    if run:
        runs.append((len(tokens) - len(run), "".join(run)))
    length = len(tokens)
    if not any(token == ANY_CHAR for token in tokens):
        return _Segment(length, tuple(runs), "".join(tokens), None, None, 0)
    if length <= _REGEX_SEGMENT:
        source = "".join(re.escape(t) if t != ANY_CHAR else "." for t in tokens)
        return _Segment(length, tuple(runs), None, re.compile(source, re.DOTALL), None, 0)
    any_mask = 0
    for offset, token in enumerate(tokens):
        if token == ANY_CHAR:
            any_mask |= 1 << offset
    masks: dict[str, int] = {}
    for offset, token in enumerate(tokens):
        if token != ANY_CHAR:
            masks[token] = masks.get(token, any_mask) | 1 << offset
    return _Segment(length, tuple(runs), None, None, masks, any_mask)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled wildcard pattern: the segments between its ``*`` tokens.

    Matching is the standard non-backtracking glob algorithm: the first
    segment must match at the start, the last at the end, and each one in
    between is searched for left to right from where the previous one ended,
    taking the leftmost occurrence. Leftmost is always safe: any match that
    uses a later occurrence of a segment can use the leftmost instead, since
    the ``*`` after it absorbs the difference. So every character of the text
    is scanned by at most one segment search, and the whole match costs
    O(len(text) + len(pattern)) segment-search steps (see ``_Segment.find``
    for the constant), where the old two-pointer loop could retry every
    position of the text for every position of the pattern.
    """

    head: _Segment
    middle: tuple[_Segment, ...]
    tail: _Segment | None  # None: the pattern has no "*"
    size: int  # the shortest text that can match (every token but "*")
    # Per character of text, what the costliest middle segment's search costs
    # relative to str.find (``_Segment.weight``); the searches together scan
    # each character once.
    weight: int = 1

    def cost(self, text_length: int) -> int:
        """An upper bound on the work of ``match`` on a text this long, in
        units of one character compared by a C-level search."""
        return (text_length + self.size) * self.weight

    def match(self, text: str) -> bool:
        size = len(text)
        if size < self.size:
            return False
        head, tail = self.head, self.tail
        if tail is None:
            return size == head.length and head.at(text, 0)
        end = size - tail.length
        if not (head.at(text, 0) and tail.at(text, end)):
            return False
        position = head.length
        for segment in self.middle:
            found = segment.find(text, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True


# A compiled pattern holds, for a long segment with "?", one integer as wide
# as the segment per distinct character: up to 2 MB for a 4,096-character
# condition value. So patterns are cached by size: many small ones, few big.
_SMALL_PATTERN = 256


def compile_glob(tokens: tuple[str, ...]) -> Glob:
    """The pattern's segments, split at ``*`` (runs of ``*`` are one); cached."""
    if len(tokens) <= _SMALL_PATTERN:
        return _compile_small(tokens)
    return _compile_large(tokens)


def _compile_glob(tokens: tuple[str, ...]) -> Glob:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == ANY_RUN:
            parts.append([])
        else:
            parts[-1].append(token)
    segments = [_segment(part) for part in parts]
    size = sum(segment.length for segment in segments)
    if len(segments) == 1:
        return Glob(segments[0], (), None, size)
    middle = tuple(segment for segment in segments[1:-1] if segment.length)
    weight = max((segment.weight for segment in middle), default=1)
    return Glob(segments[0], middle, segments[-1], size, weight)


# At most about 4,096 x 16 KB and 16 x 2 MB.
_compile_small = lru_cache(maxsize=4096)(_compile_glob)
_compile_large = lru_cache(maxsize=16)(_compile_glob)


def action_matches(pattern: str, action: str) -> bool:
    """Whether an Action pattern (``kms:*``, ``kms:generatedatakey*``, ``*``)
    covers ``action``; case-insensitive, ``*`` and ``?`` wildcards."""
    return wildcard_match(pattern_tokens(pattern.lower()), action.lower())


# -- values shared by validation (here) and evaluation (conditions.py) ---------


def parse_number(text: str) -> Decimal | None:
    """A Numeric operand, compared exactly as a decimal; None if not a number."""
    if not _NUMBER.fullmatch(text):
        return None
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):  # an exponent beyond Decimal's range
        return None
    return number if number.is_finite() else None


def parse_instant(text: str) -> Decimal | None:
    """A Date operand as seconds since the epoch, or None.

    Accepts epoch seconds (integer or decimal; an all-digit string is always
    epoch seconds, never a bare year) and the W3C profiles of ISO 8601 that
    IAM documents: YYYY-MM, YYYY-MM-DD, and date-times with minutes, seconds
    and fractions, with "Z" or a +hh:mm offset. A date-time without a zone is
    taken as UTC, the zone AWS reports times in.
    """
    if _EPOCH.fullmatch(text):
        return Decimal(text)
    match = _ISO_8601.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        tz = UTC
        if zone is not None and zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(-offset if zone[0] == "-" else offset)
        moment = datetime(
            int(year),
            int(month),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
    except ValueError:  # month 13, hour 25, an offset of a day or more, ...
        return None
    delta = moment - _EPOCH_START
    seconds = Decimal(delta.days * 86400 + delta.seconds)
    return seconds + Decimal("0." + fraction) if fraction else seconds


def parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    return True if lowered == "true" else False if lowered == "false" else None


def parse_binary(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR block; a bare address means /32 (IPv4) or /128 (IPv6)."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def key_kind(key: str) -> bool | None:
    """Whether the (lower-cased) condition key is multivalued; None if unknown."""
    multivalued = CONDITION_KEYS.get(key)
    if multivalued is not None:
        return multivalued
    for prefix in CONDITION_KEY_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return False
    return None


def parse_template(value: str, *, variables: bool) -> tuple[TemplatePart, ...]:
    """Split a condition value into text and ``${...}`` policy variables.

    Raises ValueError (with a message for the policy author) for a ``${``
    without its ``}``, an unknown key, or a multivalued key, which AWS does
    not allow as a variable.
    """
    if not variables or "${" not in value:
        return (value,)
    parts: list[TemplatePart] = []
    rest = value
    while (start := rest.find("${")) >= 0:
        end = rest.find("}", start + 2)
        if end < 0:
            raise ValueError(
                f"{_show(rest[start:])} opens a policy variable that is never closed "
                '(write "${$}" for a literal "$")'
            )
        if start:
            parts.append(rest[:start])
        inner = rest[start + 2 : end]
        if inner in ("*", "?", "$"):
            parts.append(Text(inner))
        else:
            match = _VARIABLE.fullmatch(inner)
            if match is None:
                raise ValueError(f"{_show('${' + inner + '}')} is not a policy variable")
            name, default = match.groups()
            kind = key_kind(name.lower())
            if kind is None:
                raise ValueError(
                    f"policy variable {_show('${' + name + '}')} names no known condition key"
                    + _suggest_folded(name, CONDITION_KEYS)
                )
            if kind:
                raise ValueError(
                    f"policy variable {_show('${' + name + '}')} names a multivalued key, "
                    "which cannot be a policy variable"
                )
            parts.append(Variable(name.lower(), default))
        rest = rest[end + 1 :]
    if rest:
        parts.append(rest)
    return tuple(parts)


# -- parsing -------------------------------------------------------------------


def parse_policy(text: str, *, kind: Literal["key", "identity"]) -> Policy:
    """Parse and validate a key policy (``kind="key"``: every statement names
    its Principal or NotPrincipal) or an identity policy (``kind="identity"``:
    neither is allowed)."""
    if kind not in ("key", "identity"):
        raise ValueError(f"kind must be 'key' or 'identity', not {kind!r}")
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
            parse_int=_JsonNumber,
            parse_float=_JsonNumber,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        _fail(f"The policy is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.")
    except RecursionError:  # defence in depth: _nesting already bounds this
        _fail("The policy nests JSON objects and lists too deeply.")
    if not isinstance(document, dict):
        _fail(f"The policy must be a JSON object, not {_kind(document)}.")
    for name in document:
        if name not in _TOP_ELEMENTS:
            _fail(
                f"The policy has an unknown element {_show(name)}{_suggest(name, _TOP_ELEMENTS)}; "
                "a policy has only Version, Id and Statement."
            )
    version = document.get("Version")
    if version is not None:
        if not isinstance(version, str) or isinstance(version, _JsonNumber):
            _fail(f'Version must be the string "2012-10-17", not {_kind(version)}.')
        if version not in VERSIONS:
            _fail(f'Version {_show(version)} is not a policy language version; use "2012-10-17".')
    policy_id = document.get("Id")
    if policy_id is not None:
        policy_id = _string(policy_id, "Id")
    if "Statement" not in document:
        _fail("The policy has no Statement.")
    raw_statements = document["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list):
        _fail(f"Statement must be an object or a list of objects, not {_kind(raw_statements)}.")
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
                    f"Sid {_show(statement.sid)}; Sids must be unique within a policy."
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
            _fail(f"The policy repeats the name {_show(name)} within one JSON object.")
        result[name] = value
    return result


def _constant(name: str) -> NoReturn:
    _fail(f"The policy contains {name}, which is not JSON.")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or isinstance(value, _JsonNumber):
        _fail(f"{where} must be a string, not {_kind(value)}.")
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
        _fail(f"{where} must be a JSON object, not {_kind(raw)}.")
    sid: str | None = None
    if "Sid" in raw:
        sid = _string(raw["Sid"], f"{where}: Sid")
        if kind == "identity" and not _IDENTITY_SID.fullmatch(sid):
            _fail(
                f"{where}: Sid {_show(sid)} may contain only letters and digits "
                "in an identity policy (key policies also allow spaces)."
            )
        if sid:
            where = f"{where} (Sid {_show(sid, 60)})"
    for name in raw:
        if name not in _STATEMENT_ELEMENTS:
            _fail(
                f"{where} has an unknown element {_show(name)}"
                f"{_suggest(name, _STATEMENT_ELEMENTS)}."
            )

    if "Effect" not in raw:
        _fail(f'{where} has no Effect; write "Allow" or "Deny".')
    effect = raw["Effect"]
    if not isinstance(effect, str) or effect not in ("Allow", "Deny"):
        _fail(f'{where}: Effect must be exactly "Allow" or "Deny", not {_show(effect)}.')

    principal = not_principal = None
    if kind == "identity":
        for name in ("Principal", "NotPrincipal"):
            if name in raw:
                _fail(
                    f"{where}: an identity policy cannot have a {name}; the identity it is "
                    "attached to is the principal."
                )
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
        raw, "Action", _actions, where, f"{where} has no Action (or NotAction)."
    )
    resources, not_resources = _either(
        raw,
        "Resource",
        _resources,
        where,
        f'{where} has no Resource (or NotResource); a key policy uses "Resource": "*".',
    )

    conditions: tuple[Condition, ...] = ()
    if "Condition" in raw:
        conditions = _conditions(raw["Condition"], f"{where}: Condition", variables)
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


def _principal(raw: object, where: str) -> PrincipalSpec:
    if raw == "*":
        return PrincipalSpec(any=True)
    if not isinstance(raw, dict):
        _fail(f'{where} must be "*" or an object such as {{"AWS": "<ARN>"}}, not {_show(raw)}.')
    if not raw:
        _fail(f"{where} is an empty object.")
    for name in raw:
        if name not in ("AWS", "Service"):
            _fail(
                f"{where} has the principal type {_show(name)}"
                f"{_suggest(name, ('AWS', 'Service'))}; "
                'keycask supports "AWS" and "Service" principals.'
            )
    any_principal = False
    aws: list[str] = []
    services: list[str] = []
    if "AWS" in raw:
        for value in _strings(raw["AWS"], f"{where} AWS"):
            if value == "*":
                any_principal = True
            else:
                arn = _aws_principal(value, f"{where} AWS")
                if arn not in aws:
                    aws.append(arn)
    if "Service" in raw:
        for value in _strings(raw["Service"], f"{where} Service"):
            if not _SERVICE_PRINCIPAL.fullmatch(value):
                _fail(
                    f"{where} Service {_show(value)} is not a service principal "
                    'such as "ec2.amazonaws.com".'
                )
            if value not in services:
                services.append(value)
    return PrincipalSpec(any_principal, tuple(aws), tuple(services))


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
            f"{where} {_show(value)}: wildcards are not allowed in a principal "
            '(use "*" with an aws:PrincipalArn condition and ArnLike instead).'
        )
    _fail(
        f"{where} {_show(value)} is not a principal: use a 12-digit account id, "
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
        _fail(f'{where} {_show(value)} is not an action: write "*" or "<service>:<action>".')
    prefix, name = match.groups()
    if "*" in prefix or "?" in prefix:
        _fail(f"{where} {_show(value)}: wildcards are not allowed in the service prefix.")
    if not _SERVICE_PREFIX.fullmatch(prefix) or not _ACTION_NAME.fullmatch(name):
        _fail(f'{where} {_show(value)} is not an action: write "*" or "<service>:<action>".')
    lowered = value.lower()
    if prefix.lower() != "kms":
        return lowered  # another service's action: valid, never a KMS request
    if "*" in name or "?" in name:
        tokens = pattern_tokens(lowered)
        if not any(wildcard_match(tokens, action) for action in _KMS_ACTIONS_LOWER):
            _fail(f"{where} {_show(value)} matches no KMS operation.")
        return lowered
    if lowered not in _KMS_ACTIONS_LOWER:
        hint = _suggest_folded(value, KMS_ACTIONS)
        if lowered == "kms:reencrypt":
            hint = ' (AWS authorizes ReEncrypt as "kms:ReEncryptFrom" and "kms:ReEncryptTo"; '
            hint += 'write "kms:ReEncrypt*" for both)'
        _fail(f"{where} {_show(value)} names no KMS operation{hint}.")
    return lowered


def _resources(raw: object, where: str) -> tuple[str, ...]:
    resources = _strings(raw, where)
    for value in resources:
        if value != "*" and Arn.parse_or_none(value) is None:
            _fail(
                f'{where} {_show(value)} is neither "*" nor an ARN such as '
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
        _fail(f"{where}: {_show(text)} is not a condition operator{_suggest(base, OPERATORS)}.")
    if base == "Null":
        if if_exists:
            _fail(f'{where}: {_show(text)}: "IfExists" cannot qualify Null, which tests existence.')
        if set_operator is not None:
            _fail(f"{where}: {_show(text)}: {set_operator} cannot qualify Null.")
    return set_operator, base, if_exists


def _condition_key(written: str, where: str) -> tuple[str, bool]:
    key = written.lower()
    kind = key_kind(key)
    if kind is None:
        for prefix in CONDITION_KEY_PREFIXES:
            if key == prefix:
                _fail(f"{where}: the condition key {_show(written)} needs a name after the prefix.")
        known = [*CONDITION_KEYS, *(prefix + "<name>" for prefix in CONDITION_KEY_PREFIXES)]
        _fail(f"{where}: {_show(written)} is not a known condition key{_suggest(key, known)}.")
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
                f"not {_kind(item)}."
            )
    return tuple(values)


def _conditions(raw: object, where: str, variables: bool) -> tuple[Condition, ...]:
    if not isinstance(raw, dict):
        _fail(f"{where} must be an object of condition operators, not {_kind(raw)}.")
    conditions: list[Condition] = []
    for operator_text, block in raw.items():
        set_operator, base, if_exists = _operator(operator_text, where)
        here = f"{where} {_show(operator_text)}"
        if not isinstance(block, dict):
            _fail(f"{here} must be an object of condition keys and values, not {_kind(block)}.")
        if not block:
            _fail(f"{here} names no condition key.")
        for written, raw_values in block.items():
            key, _multivalued = _condition_key(written, here)
            at = f"{here} key {_show(written)}"
            if set_operator == "ForAllValues" and key.startswith(_NO_FOR_ALL_VALUES):
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
        _fail(f"{where}: the value {_show(value)} {problem}{hint}.")
