"""Cloud KMS's IAM policy of a key ring (getIamPolicy, setIamPolicy): its
bindings hold for every crypto key in it, as Cloud KMS's inherited
bindings do. testIamPermissions answers the key ring's own permissions
(``PERMISSIONS``) the caller holds.

The bindings are kept in the key ring's document, and each becomes a
statement (Sid ``GcpIamRing<Role>``, the same actions as a crypto key's
binding of that role, ``gcp_iam.ROLES``) in the key policy of every
keycask key of the key ring, once each: its crypto keys and their later
versions' keys (those the crypto keys' settings documents name), put
with PutKeyPolicy (``kms:PutKeyPolicy`` on each, after
``kms:PutKeyPolicy`` on ``*`` for the key ring itself), and in the policy
of every crypto key created in it afterwards. A crypto key's own bindings
(Sid ``GcpIam<Role>``) are left alone, and a crypto key's getIamPolicy
shows its own bindings only, as Cloud KMS's shows a resource's own.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson

from keycask.errors import NotFoundException, ValidationException
from keycask.keys.model import Key, alias_arn
from keycask.ports import Write
from keycask.service.core import gcp
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp_iam import (
    RING_SID_PREFIX,
    EtagMismatch,
    build_statements,
    etag_of,
    with_statements,
)
from keycask.service.core.gcp_requests import (
    Binding,
    CreateKeyRequest,
    IamPolicyResult,
    KeyName,
    KeySettings,
    RingName,
    RingRequest,
    SetIamPolicyRequest,
    TestPermissionsRequest,
    TestPermissionsResult,
)
from keycask.service.core.handlers import keys


def ring_sid(role: str) -> str:
    name = role.removeprefix("roles/cloudkms.")
    return RING_SID_PREFIX + name[:1].upper() + name[1:]


def _is_ring_statement(sid: str) -> bool:
    return sid.startswith(RING_SID_PREFIX)


async def _ring_doc(deps: Deps, call: Call, name: RingName) -> tuple[dict[str, Any], int]:
    stored = await deps.keys.gcp_ring(call.account, name.project, name.location, name.ring)
    if not stored.revision:
        raise NotFoundException(f"KeyRing {name.name} not found.")
    return orjson.loads(stored.value), stored.revision


def _bindings(doc: dict[str, Any]) -> tuple[Binding, ...]:
    return tuple(Binding(b["role"], tuple(b["members"])) for b in doc.get("bindings", []))


def _etag(doc: dict[str, Any]) -> str:
    return etag_of(orjson.dumps(doc.get("bindings", [])).decode())


async def ring_statements(deps: Deps, call: Call, name: RingName) -> list[dict[str, Any]]:
    """The statements a crypto key created in the key ring starts with."""
    doc, _ = await _ring_doc(deps, call, name)
    return await build_statements(deps, call.account, _bindings(doc), ring_sid, drop_missing=True)


def with_ring(policy: str, statements: list[dict[str, Any]]) -> str:
    return with_statements(policy, _is_ring_statement, statements)


async def get_policy(deps: Deps, call: Call, req: RingRequest) -> Outcome:
    """Authorized as ``kms:GetKeyPolicy`` on ``*``: a key ring's bindings
    are part of every key policy in it."""
    await call.authorize("kms:GetKeyPolicy")
    doc, _ = await _ring_doc(deps, call, req.name)
    return Outcome(IamPolicyResult(_bindings(doc), _etag(doc)))


async def _ring_keys(deps: Deps, call: Call, name: RingName) -> list[Key]:
    """Every keycask key of the key ring, each once: its crypto keys (the
    keys the aliases ``alias/gcp/P/L/R/K`` name whose Cloud KMS settings
    document names that very crypto key) and their later versions' (the
    key ids those documents record). A key with no such document is no
    crypto key of this ring, whatever names it."""
    prefix = KeyName(name.project, name.location, name.ring, "").alias
    found: dict[uuid.UUID, Key] = {}

    async def add(key_id: uuid.UUID) -> None:
        stored = await deps.keys.get(key_id)
        if stored is not None and (stored.value.account, stored.value.region) == (
            call.account,
            call.region,
        ):
            found.setdefault(key_id, stored.value)

    after = prefix
    while True:
        page = await deps.keys.list_aliases(call.account, call.region, after, 1000)
        for alias in page:
            if not alias.name.startswith(prefix):
                return list(found.values())
            crypto_key = alias.name[len(prefix) :]
            if "/" in crypto_key:
                continue  # a version's alias: found through its crypto key's document
            doc = await deps.keys.gcp_key(alias.target)
            if not doc.revision:
                continue
            settings = KeySettings.from_doc(doc.value, "")
            if settings.name != KeyName(name.project, name.location, name.ring, crypto_key).name:
                continue
            await add(alias.target)
            for version_id in settings.version_keys.values():
                with contextlib.suppress(ValueError):
                    await add(uuid.UUID(version_id))
        if len(page) < 1000:
            return list(found.values())
        after = page[-1].name


async def set_policy(deps: Deps, call: Call, req: SetIamPolicyRequest) -> Outcome:
    name = req.name
    assert isinstance(name, RingName)
    await call.authorize("kms:PutKeyPolicy")
    doc, revision = await _ring_doc(deps, call, name)
    if req.etag and req.etag != _etag(doc):
        raise EtagMismatch(
            "There were concurrent policy changes: read the policy again "
            "(getIamPolicy), apply the change to it and set it with its etag."
        )
    statements = await build_statements(deps, call.account, req.bindings, ring_sid)
    writes: list[Write] = []
    for key in await _ring_keys(deps, call, name):
        out = await keys.put_key_policy(
            deps,
            call,
            aws.PutKeyPolicyRequest(key_id=key.arn, policy=with_ring(key.policy, statements)),
        )
        writes.extend(out.writes)
    doc["bindings"] = [
        {"role": b.role, "members": sorted(set(b.members))} for b in req.bindings if b.members
    ]
    writes.append(
        deps.keys.stage_gcp_ring(
            call.account, name.project, name.location, name.ring, orjson.dumps(doc), expect=revision
        )
    )
    roles = ", ".join(b.role for b in req.bindings) or "none"
    call.detail = f"IAM policy of {name.name} set: bindings for {roles}"
    return Outcome(IamPolicyResult(_bindings(doc), _etag(doc)), writes)


async def create_key(deps: Deps, call: Call, req: CreateKeyRequest) -> Outcome:
    """A crypto key made in a key ring starts with the key ring's bindings."""
    statements = await ring_statements(deps, call, req.parent)
    ring_policy = None
    if statements:

        def ring_policy(policy: str) -> str:
            return with_ring(policy, statements)

    return await gcp.create_key(deps, call, req, ring_policy=ring_policy)


# A key ring's Cloud KMS permissions -> the kms: actions the methods they
# allow are authorized as: on "*", or (True) on the key ring's aliases.
PERMISSIONS: Final[Mapping[str, tuple[tuple[str, bool], ...]]] = {
    "cloudkms.keyRings.get": (("kms:ListKeys", False),),
    "cloudkms.keyRings.getIamPolicy": (("kms:GetKeyPolicy", False),),
    "cloudkms.keyRings.setIamPolicy": (("kms:PutKeyPolicy", False),),
    "cloudkms.cryptoKeys.create": (("kms:CreateKey", False), ("kms:CreateAlias", True)),
    "cloudkms.cryptoKeys.list": (("kms:ListAliases", False), ("kms:ListKeys", False)),
}


async def check_permissions(deps: Deps, call: Call, req: TestPermissionsRequest) -> Outcome:
    """The key ring's permissions the caller holds, each checked as the
    ``kms:`` actions of the method it allows would be, without recording or
    enforcing. cryptoKeys.create's kms:CreateAlias is checked on the key
    ring's aliases (``alias/gcp/P/L/R/*``): a policy that allows only some
    of them does not hold it."""
    name = req.name
    assert isinstance(name, RingName)
    unknown = [p for p in req.permissions if p not in PERMISSIONS]
    if unknown:
        raise ValidationException(
            f"Permission {unknown[0][:128]} is not valid for a key ring: keycask answers "
            f"{', '.join(PERMISSIONS)}."
        )
    await _ring_doc(deps, call, name)
    ring_aliases = KeyName(name.project, name.location, name.ring, "*").alias
    aliases = alias_arn(call.region, call.account, ring_aliases)
    held = [
        permission
        for permission in req.permissions
        if all(
            call.would_allow_on(action, aliases if on_alias else "*")
            for action, on_alias in PERMISSIONS[permission]
        )
    ]
    call.detail = f"{len(held)} of {len(req.permissions)} permissions held on {name.name}"
    return Outcome(TestPermissionsResult(tuple(held)))
