"""Cloud KMS's IAM methods on a crypto key (getIamPolicy, setIamPolicy,
testIamPermissions), translated to and from the keycask key policy of its
keycask key.

A binding (a Cloud KMS role and its members) is one key policy statement,
``Allow`` of the role's ``kms:`` actions (``ROLES``) to the members'
principals on ``*``, whose Sid names the role (``GcpIamCryptoKeyEncrypterDecrypter``
for roles/cloudkms.cryptoKeyEncrypterDecrypter). setIamPolicy replaces
every statement whose Sid starts ``GcpIam`` and keeps the others (the
account's root statement among them), through PutKeyPolicy: the same
checks (principals that exist, the lockout safety check) and the same
action, ``kms:PutKeyPolicy``. getIamPolicy (``kms:GetKeyPolicy``) reads
those statements back as bindings; statements of other Sids are not shown
(they are AWS policy, edited through the AWS door).

Members name keycask principals of the key's account: ``user:NAME`` a
user, ``serviceAccount:NAME`` a role, ``principal:ARN`` any principal of
that account by its ARN (another account's is refused). Google's other
member kinds (``allUsers``, ``group:``, ``domain:``) have no keycask
counterpart and are refused. The ``etag`` is
a digest of the key policy: a setIamPolicy whose etag is not the current
one is refused (409 ABORTED), so two read-modify-write cycles never undo
each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson
import pybase64

from keycask.errors import KMSInvalidStateException, ValidationException
from keycask.keys.model import Key
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp import resolve_key_for, settings_of
from keycask.service.core.gcp_requests import (
    Binding,
    IamPolicyResult,
    KeyName,
    KeyRequest,
    SetIamPolicyRequest,
    TestPermissionsRequest,
    TestPermissionsResult,
)
from keycask.service.core.handlers import keys
from keycask.service.core.results import GetKeyPolicyResult

_DESCRIBE = ("kms:DescribeKey",)
_ENCRYPT = ("kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*")
_DECRYPT = ("kms:Decrypt", "kms:ReEncrypt*")
_SIGN = ("kms:Sign", "kms:GenerateMac")
_VERIFY = ("kms:Verify", "kms:VerifyMac", "kms:GetPublicKey")
# Cloud KMS roles -> the kms: actions a binding of it allows.
ROLES: Final[Mapping[str, tuple[str, ...]]] = {
    "roles/cloudkms.admin": (
        "kms:Describe*", "kms:Get*", "kms:List*", "kms:Create*", "kms:Put*", "kms:Update*",
        "kms:Enable*", "kms:Disable*", "kms:TagResource", "kms:UntagResource",
        "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
    ),
    "roles/cloudkms.cryptoKeyEncrypterDecrypter": (*_DESCRIBE, *_ENCRYPT, "kms:Decrypt"),
    "roles/cloudkms.cryptoKeyEncrypter": (*_DESCRIBE, *_ENCRYPT),
    "roles/cloudkms.cryptoKeyDecrypter": (*_DESCRIBE, *_DECRYPT),
    "roles/cloudkms.signerVerifier": (*_DESCRIBE, *_SIGN, *_VERIFY),
    "roles/cloudkms.signer": (*_DESCRIBE, *_SIGN),
    "roles/cloudkms.publicKeyViewer": (*_DESCRIBE, "kms:GetPublicKey"),
    "roles/cloudkms.viewer": (
        *_DESCRIBE, "kms:GetKeyPolicy", "kms:ListKeyRotations", "kms:GetKeyRotationStatus",
        "kms:ListResourceTags",
    ),
}  # fmt: skip
_SID_PREFIX = "GcpIam"
# Cloud KMS permissions testIamPermissions answers -> the kms: action each is.
PERMISSIONS: Final[Mapping[str, str]] = {
    "cloudkms.cryptoKeys.get": "kms:DescribeKey",
    "cloudkms.cryptoKeys.update": "kms:TagResource",
    "cloudkms.cryptoKeys.getIamPolicy": "kms:GetKeyPolicy",
    "cloudkms.cryptoKeys.setIamPolicy": "kms:PutKeyPolicy",
    "cloudkms.cryptoKeyVersions.get": "kms:DescribeKey",
    "cloudkms.cryptoKeyVersions.list": "kms:ListKeyRotations",
    "cloudkms.cryptoKeyVersions.create": "kms:RotateKeyOnDemand",
    "cloudkms.cryptoKeyVersions.update": "kms:DisableKey",
    "cloudkms.cryptoKeyVersions.destroy": "kms:ScheduleKeyDeletion",
    "cloudkms.cryptoKeyVersions.restore": "kms:CancelKeyDeletion",
    "cloudkms.cryptoKeyVersions.useToEncrypt": "kms:Encrypt",
    "cloudkms.cryptoKeyVersions.useToDecrypt": "kms:Decrypt",
    "cloudkms.cryptoKeyVersions.useToSign": "kms:Sign",
    "cloudkms.cryptoKeyVersions.useToVerify": "kms:Verify",
    "cloudkms.cryptoKeyVersions.viewPublicKey": "kms:GetPublicKey",
}


class EtagMismatch(KMSInvalidStateException):
    """setIamPolicy with an etag that is not the policy's now (409 ABORTED)."""


def sid_of(role: str) -> str:
    name = role.removeprefix("roles/cloudkms.")
    return _SID_PREFIX + name[:1].upper() + name[1:]


_ROLE_BY_SID: Final = {sid_of(role): role for role in ROLES}


def etag_of(policy: str) -> str:
    return pybase64.b64encode_as_string(hashlib.sha256(policy.encode()).digest()[:12])


def _arn(account: str, member: str) -> str:
    kind, sep, value = member.partition(":")
    if sep and value:
        if kind == "user":
            return f"arn:aws:iam::{account}:user/{value}"
        if kind == "serviceAccount":
            return f"arn:aws:iam::{account}:role/{value}"
        if kind == "principal" and value.startswith("arn:"):
            parts = value.split(":")
            if len(parts) < 6 or parts[4] != account:
                # Only the key's own account's principals: a binding is no
                # way to give another account's principal a key (that is a
                # key policy statement, written knowingly through the AWS door).
                raise ValidationException(
                    f"Invalid member {member[:128]!r}: principal:ARN must name a principal "
                    f"of this account ({account})."
                )
            return value
    raise ValidationException(
        f"Invalid member {member[:128]!r}: keycask takes user:NAME (a user), "
        "serviceAccount:NAME (a role) and principal:ARN."
    )


def member_of(account: str, arn: str) -> str:
    for kind, marker in (("user", ":user/"), ("serviceAccount", ":role/")):
        prefix = f"arn:aws:iam::{account}{marker}"
        if arn.startswith(prefix) and "/" not in arn[len(prefix) :]:
            return f"{kind}:{arn[len(prefix) :]}"
    return f"principal:{arn}"


def _statements(policy: str) -> list[dict[str, Any]]:
    doc = orjson.loads(policy)
    found = doc.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def _bindings(key: Key, policy: str) -> tuple[Binding, ...]:
    bindings = []
    for statement in _statements(policy):
        role = _ROLE_BY_SID.get(str(statement.get("Sid", "")))
        if role is None or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        arns = principal.get("AWS", []) if isinstance(principal, dict) else []
        arns = [arns] if isinstance(arns, str) else arns
        bindings.append(Binding(role, tuple(sorted(member_of(key.account, a) for a in arns))))
    return tuple(bindings)


RING_SID_PREFIX: Final = "GcpIamRing"


def _own_statement(sid: str) -> bool:
    """A crypto key's own binding's statement (not its key ring's)."""
    return sid.startswith(_SID_PREFIX) and not sid.startswith(RING_SID_PREFIX)


async def build_statements(
    deps: Deps,
    account: str,
    bindings: Sequence[Binding],
    sid: Callable[[str], str],
    *,
    drop_missing: bool = False,
) -> list[dict[str, Any]]:
    """Key policy statements for ``bindings``: each allows its role's
    actions to its members, who must be principals that exist (or, with
    ``drop_missing``, are left out: a key ring's binding of a principal
    deleted since)."""
    added = []
    for binding in bindings:
        actions = ROLES.get(binding.role)
        if actions is None:
            raise ValidationException(
                f"Role {binding.role[:128]} is not supported by keycask: use one of "
                f"{', '.join(ROLES)}."
            )
        if not binding.members:
            continue
        arns = []
        for arn in sorted({_arn(account, m) for m in binding.members}):
            # As Cloud KMS refuses a member that does not exist.
            if deps.credentials is not None and await deps.credentials.unique_id(arn) is None:
                if drop_missing:
                    continue
                raise ValidationException(
                    f"Invalid member {member_of(account, arn)[:128]!r}: no such keycask principal."
                )
            arns.append(arn)
        if not arns:
            continue
        added.append({
            "Sid": sid(binding.role),
            "Effect": "Allow",
            "Principal": {"AWS": arns},
            "Action": list(actions),
            "Resource": "*",
        })  # fmt: skip
    return added


def with_statements(
    policy: str, drop: Callable[[str], bool], added: Sequence[dict[str, Any]]
) -> str:
    """``policy`` with the statements whose Sid ``drop`` names replaced by ``added``."""
    doc = orjson.loads(policy)
    kept = [s for s in _statements(policy) if not drop(str(s.get("Sid", "")))]
    doc["Statement"] = [*kept, *added]
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


async def _policy(deps: Deps, call: Call, key: Key) -> str:
    out = await keys.get_key_policy(deps, call, aws.GetKeyPolicyRequest(key_id=key.arn))
    result = out.result
    assert isinstance(result, GetKeyPolicyResult)
    return result.policy


async def get_policy_of(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    key = await resolve_key_for(deps, call, req.name)
    policy = await _policy(deps, call, key)
    return Outcome(IamPolicyResult(_bindings(key, policy), etag_of(key.policy)))


async def set_policy(deps: Deps, call: Call, req: SetIamPolicyRequest) -> Outcome:
    assert isinstance(req.name, KeyName)
    key = await resolve_key_for(deps, call, req.name)
    # Authorized first (PutKeyPolicy authorizes again below): whoever may
    # not change the policy learns nothing of its etag or of principals.
    await call.authorize("kms:PutKeyPolicy", key)
    current = key.policy
    if req.etag and req.etag != etag_of(current):
        raise EtagMismatch(
            "There were concurrent policy changes: read the policy again "
            "(getIamPolicy), apply the change to it and set it with its etag."
        )
    added = await build_statements(deps, key.account, req.bindings, sid_of)
    text = with_statements(current, _own_statement, added)
    out = await keys.put_key_policy(
        deps, call, aws.PutKeyPolicyRequest(key_id=key.arn, policy=text)
    )
    writes = list(out.writes)
    # An asymmetric or MAC crypto key's later versions are keys of their
    # own that share its policy: each gets the new one (PutKeyPolicy on it).
    settings = await settings_of(deps, key, req.name)
    for number in range(2, settings.version_count + 1):
        alias = req.name.version_alias(number)
        found = await deps.keys.get_alias(call.account, call.region, alias)
        if found is None:
            continue  # destroyed
        put = await keys.put_key_policy(
            deps, call, aws.PutKeyPolicyRequest(key_id=str(found.value.target), policy=text)
        )
        writes.extend(put.writes)
    roles = ", ".join(b.role for b in req.bindings) or "none"
    call.detail = f"IAM policy of {req.name.name} set: bindings for {roles}"
    bindings = _bindings(key, text)
    return Outcome(IamPolicyResult(bindings, etag_of(text)), writes)


async def check_permissions(deps: Deps, call: Call, req: TestPermissionsRequest) -> Outcome:
    """The permissions the caller holds on the crypto key, each checked as
    its ``kms:`` action would be, without recording or enforcing (as the
    policy lockout safety check does)."""
    unknown = [p for p in req.permissions if p not in PERMISSIONS]
    if unknown:
        raise ValidationException(
            f"Permission {unknown[0][:128]} is not valid for this resource: keycask answers "
            f"{', '.join(PERMISSIONS)}."
        )
    assert isinstance(req.name, KeyName)
    key = await resolve_key_for(deps, call, req.name)
    held = [p for p in req.permissions if await call.would_allow(PERMISSIONS[p], key)]
    call.detail = f"{len(held)} of {len(req.permissions)} permissions held"
    return Outcome(TestPermissionsResult(tuple(held)))
