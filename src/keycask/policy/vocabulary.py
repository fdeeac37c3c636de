"""The vocabulary of the AWS policy language as keycask accepts it: the
limits, the versions, every KMS action, the condition operators and the
known condition keys (each single- or multivalued).

Tables only, read by the parser (document.py), the evaluator and the
policy tools. Sources are listed in document.py.
"""

from __future__ import annotations

import re

# The KMS model's PolicyType bound (its character set: document.py). The KMS
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
KMS_ACTIONS_BY_LOWER = {action.lower(): action for action in KMS_ACTIONS}

# What a role's trust policy may allow (the IAM reference's "Actions defined
# by AWS Security Token Service" that a trust policy governs): assuming the
# role, and attaching session tags, a source identity or context to the
# session. A trust policy names no other action.
STS_TRUST_ACTIONS: frozenset[str] = frozenset(
    "sts:" + name
    for name in (
        "AssumeRole",
        "AssumeRoleWithSAML",
        "AssumeRoleWithWebIdentity",
        "SetContext",
        "SetSourceIdentity",
        "TagSession",
    )
)
STS_TRUST_ACTIONS_BY_LOWER = {action.lower(): action for action in STS_TRUST_ACTIONS}

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
# STS's own keys, which decide in trust policies (and identity policies
# that allow sts: actions).
_STS_KEYS: dict[str, bool] = {
    "sts:externalid": False,
    "sts:rolesessionname": False,
    "sts:sourceidentity": False,
    "sts:transitivetagkeys": True,
}
# keycask's own: the XKS proxy API's requestMetadata (service/core/xks.py),
# present on the XKS door's requests only.
_KEYCASK_KEYS: dict[str, bool] = {
    "keycask:xksawsprincipalarn": False,
    "keycask:xkskmskeyarn": False,
    "keycask:xkskmsoperation": False,
    "keycask:xkskmsviaservice": False,
    "keycask:xkssourcevpc": False,
    "keycask:xkssourcevpce": False,
}
CONDITION_KEYS: dict[str, bool] = {**_KMS_KEYS, **_GLOBAL_KEYS, **_STS_KEYS, **_KEYCASK_KEYS}
# Keys with a caller-chosen suffix; all single-valued.
CONDITION_KEY_PREFIXES = (
    "kms:encryptioncontext:",
    "aws:principaltag/",
    "aws:resourcetag/",
    "aws:requesttag/",
)
# AWS KMS refuses ForAllValues with these single-valued keys
# (OverlyPermissiveCondition): it matches requests without the pair at all.
NO_FOR_ALL_VALUES = ("kms:encryptioncontext:", "aws:requesttag/")


# A web identity provider's claim as a trust policy's condition key:
# "<provider host and path>:<claim>" ("token.actions.githubusercontent.com:sub",
# "oidc.example.com/realms/prod:aud"). IAM takes aud, sub, amr and a few
# provider-specific claims; keycask takes any string claim the token carries,
# since a claim the token lacks is simply absent (``...IfExists``, Null).
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
# A host with a dot, or any host with a port: never a service prefix such as
# "kms:" or "aws:", whose keys are known (or refused) by name.
_PROVIDER_CLAIM_KEY = re.compile(
    rf"(?:{_LABEL}(?:\.{_LABEL})+(?::[0-9]{{1,5}})?|{_LABEL}:[0-9]{{1,5}})"
    r"(?:/[a-z0-9._~%!$&'()*+,;=@-]+)*:[a-z0-9_.-]+"
)
# The one multivalued claim of IAM's web identity keys.
_MULTIVALUED_CLAIMS = ("amr",)


def provider_claim_kind(key: str) -> bool | None:
    """Whether the lower-cased ``key`` names a provider's claim, and if so
    whether it is multivalued (None: it does not)."""
    if not _PROVIDER_CLAIM_KEY.fullmatch(key):
        return None
    return key.rsplit(":", 1)[1] in _MULTIVALUED_CLAIMS


def key_kind(key: str) -> bool | None:
    """Whether the (lower-cased) condition key is multivalued; None if unknown."""
    multivalued = CONDITION_KEYS.get(key)
    if multivalued is not None:
        return multivalued
    for prefix in CONDITION_KEY_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return False
    return None
