"""CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey,
DisableKey, GetKeyPolicy, ListKeyPolicies."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from keycask.crypto import (
    KeyMaterial,
    generate_hmac_key,
    generate_private_key,
    key_material_id,
)
from keycask.errors import (
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNotFoundException,
    InvalidMarkerException,
    MalformedPolicyDocumentException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
    XksKeyAlreadyInUseException,
)
from keycask.keys.custom_stores import CONNECTED, STORE_ID, CustomKeyStore
from keycask.keys.ids import new_mrk, parse_mrk, record_id
from keycask.keys.model import (
    KEY_USAGES,
    Key,
    KeySpec,
    KeyState,
    KeyUsage,
    KeyVersion,
    Origin,
    default_key_policy,
    key_arn,
)
from keycask.policy.document import parse_policy
from keycask.service.core import hsm_keys, xks_keys
from keycask.service.core.authz import principal_arns, render_policy
from keycask.service.core.call import Call, Outcome
from keycask.service.core.custom_store_types import TYPES, key_metadata
from keycask.service.core.deps import Deps
from keycask.service.core.handlers.tags import validate_new_tags
from keycask.service.core.offload import run_slow
from keycask.service.core.paging import page_limit
from keycask.service.core.requests import (
    CreateKeyRequest,
    DescribeKeyRequest,
    GetKeyPolicyRequest,
    KeyRequest,
    ListKeyScopedRequest,
    ListRequest,
    PutKeyPolicyRequest,
    UpdateKeyDescriptionRequest,
)
from keycask.service.core.resolve import use_key
from keycask.service.core.results import (
    GetKeyPolicyResult,
    KeyListEntry,
    KeyMetadata,
    KeyMetadataResult,
    ListKeyPoliciesResult,
    ListKeysResult,
)
from keycask.service.core.version_gate import primary_version

POLICY_NAME = "default"


# AWS KMS's quota on a key policy document (the model allows more).
MAX_KEY_POLICY_BYTES = 32 * 1024
# AWS's first sentence, then the ways on: the caller may simply be the wrong
# principal to put a policy that names another administrator.
_LOCKOUT = (
    "The new key policy will not allow you to update the key policy in the future. "
    "Keep kms:PutKeyPolicy for yourself in it, or put it as a principal it gives "
    "kms:PutKeyPolicy; "
    "to proceed anyway, set BypassPolicyLockoutSafetyCheck "
    "(aws kms put-key-policy --bypass-policy-lockout-safety-check)."
)


def check_policy(policy: str) -> None:
    """A key policy is parsed in full before it is stored: a document keycask
    could not evaluate exactly must be refused, never stored to deny later."""
    if len(policy.encode()) > MAX_KEY_POLICY_BYTES:
        raise MalformedPolicyDocumentException(
            f"The key policy is larger than {MAX_KEY_POLICY_BYTES} bytes."
        )
    parse_policy(policy, kind="key")


async def check_lockout(call: Call, key: Key, bypass: bool | None) -> None:
    """AWS's policy lockout safety check: the caller must still be able to
    change the policy under the new one, unless it says it knows better."""
    if bypass:
        return
    # The future call, as it would come: without the bypass.
    future = {"kms:BypassPolicyLockoutSafetyCheck": False}
    if not await call.would_allow("kms:PutKeyPolicy", key, context=future):
        raise MalformedPolicyDocumentException(_LOCKOUT)


_KEY_USAGE_REQUIRED = (
    "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."
)


def _key_spec(req: CreateKeyRequest) -> tuple[KeySpec, KeyUsage]:
    name = req.key_spec or req.customer_master_key_spec or "SYMMETRIC_DEFAULT"
    if (
        req.key_spec
        and req.customer_master_key_spec
        and req.key_spec != req.customer_master_key_spec
    ):
        raise ValidationException("KeySpec and CustomerMasterKeySpec must not differ.")
    if name not in KeySpec.__members__:
        # SM2 (China Regions only).
        raise UnsupportedOperationException(f"keycask does not support KeySpec {name}.")
    spec = KeySpec(name)
    if req.key_usage is None and spec is not KeySpec.SYMMETRIC_DEFAULT:
        # AWS defaults KeyUsage only for symmetric encryption keys: an RSA key
        # that silently became ENCRYPT_DECRYPT when its caller meant to sign
        # with it would be a key of the wrong kind for its whole life.
        raise ValidationException(_KEY_USAGE_REQUIRED)
    usage = KeyUsage(req.key_usage or KeyUsage.ENCRYPT_DECRYPT)
    if usage not in KEY_USAGES[spec]:
        raise ValidationException(
            f"KeyUsage {usage.value} is not compatible with KeySpec {spec.value}; "
            f"it supports {', '.join(u.value for u in KEY_USAGES[spec])}."
        )
    return spec, usage


def _generate_material(spec: KeySpec) -> KeyMaterial:
    if spec is KeySpec.SYMMETRIC_DEFAULT:
        return KeyMaterial.generate(32)
    if spec.is_hmac:
        return generate_hmac_key(spec.value)
    return generate_private_key(spec.value)


async def _authorize_create(
    call: Call, req: CreateKeyRequest, spec: KeySpec, usage: KeyUsage
) -> None:
    tags_in = {t["tag_key"]: t["tag_value"] for t in req.tags or []}
    await call.authorize(
        "kms:CreateKey",
        context={
            "kms:KeySpec": spec.value,
            "kms:CustomerMasterKeySpec": spec.value,
            "kms:KeyUsage": usage.value,
            "kms:CustomerMasterKeyUsage": usage.value,
            "kms:KeyOrigin": req.origin or "AWS_KMS",
            "kms:MultiRegion": bool(req.multi_region),
            "kms:BypassPolicyLockoutSafetyCheck": bool(req.bypass_policy_lockout_safety_check),
            **{"aws:RequestTag/" + k: v for k, v in tags_in.items()},
            **({"aws:TagKeys": tuple(tags_in)} if tags_in else {}),
        },
    )


async def authorize_create(call: Call, req: CreateKeyRequest) -> None:
    """CreateKey's authorization alone (create_key authorizes again), for a
    caller that must refuse before it looks further: the Cloud KMS door's
    HSM keys, before it picks their custom key store."""
    spec, usage = _key_spec(req)
    await _authorize_create(call, req, spec, usage)


async def prepare_material(call: Call, req: CreateKeyRequest) -> None:
    """An RSA key's material, made before the write lock is taken by a
    caller whose CreateKey runs under it (the Vault door's, which also
    makes an alias): generating it takes up to seconds, and no other write
    should wait that long. Authorized first, as CreateKey itself is, so that
    no caller who may not create the key makes keycask spend that time."""
    spec, usage = _key_spec(req)
    if not spec.is_rsa or (req.origin or Origin.AWS_KMS) != Origin.AWS_KMS:
        return
    await _authorize_create(call, req, spec, usage)
    call.prepared = (spec, await run_slow(_generate_material, spec))


async def _material(call: Call, spec: KeySpec) -> KeyMaterial:
    """What ``prepare_material`` made for this call, or new material."""
    prepared, call.prepared = call.prepared, None
    # Made for this call's request, so for this spec; checked all the same.
    if isinstance(prepared, tuple) and prepared[0] is spec:
        material = prepared[1]
        assert isinstance(material, KeyMaterial)
        return material
    # RSA key generation takes up to seconds: off the event loop.
    return await run_slow(_generate_material, spec) if spec.is_rsa else _generate_material(spec)


async def create_key(
    deps: Deps,
    call: Call,
    req: CreateKeyRequest,
    *,
    adjust: Callable[[Key], Key] | None = None,
    asymmetric_in_hsm: bool = False,
) -> Outcome:
    """CreateKey. ``adjust``: another door's settings for the new key that
    CreateKey's request has no field for (the Cloud KMS door's rotation
    schedule), applied before it is staged. ``asymmetric_in_hsm``: an RSA
    or EC key pair may be made in an AWS_CLOUDHSM store (the Cloud KMS and
    Azure doors' HSM keys); the AWS door's CreateKey never passes it, and
    refuses such a KeySpec there as AWS does."""
    spec, usage = _key_spec(req)
    await _authorize_create(call, req, spec, usage)
    if req.origin not in (
        None,
        Origin.AWS_KMS,
        Origin.EXTERNAL,
        Origin.AWS_CLOUDHSM,
        Origin.EXTERNAL_KEY_STORE,
    ):
        raise UnsupportedOperationException(f"keycask does not support Origin {req.origin}.")
    origin = Origin(req.origin or Origin.AWS_KMS)
    store = await _custom_store_for(
        deps, call, req, origin=origin, spec=spec, usage=usage, pairs=asymmetric_in_hsm
    )
    if origin is Origin.EXTERNAL and spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise UnsupportedOperationException(
            "keycask imports symmetric key material only; "
            f"KeySpec {spec.value} with Origin EXTERNAL is not supported."
        )
    if req.multi_region and origin is not Origin.AWS_KMS:
        raise UnsupportedOperationException(
            "keycask does not support multi-Region keys with imported key material "
            f"(Origin {origin.value}) yet."
        )
    if req.policy is not None:
        check_policy(req.policy)
    tags = validate_new_tags((), req.tags or [])
    # A multi-Region key starts as the primary of a set of one: its id is the
    # set's, and its copy here is stored under the record id for this region.
    mrk = new_mrk() if req.multi_region else None
    key_id = uuid.uuid4() if mrk is None else record_id(mrk, call.region)
    material: KeyMaterial | None = None
    versions: tuple[KeyVersion, ...] = ()
    if origin is Origin.AWS_CLOUDHSM:
        # The key is made inside the token last (below), once everything else
        # has been checked, so a refusal leaves no object behind; until then
        # its one version is a placeholder.
        versions = (KeyVersion(1, ""),)
    elif origin in (Origin.AWS_KMS, Origin.EXTERNAL_KEY_STORE):
        # An external key store's key has keycask's material too: the inner
        # layer of its double encryption (xks_keys.py).
        material = await _material(call, spec)
        versions = (KeyVersion(1, key_material_id(material, key_id.bytes if mrk is None else mrk)),)
    key = Key(
        key_id=key_id,
        account=call.account,
        region=call.region,
        created=deps.clock.now(),
        description=req.description or "",
        # A key for imported material has none until ImportKeyMaterial.
        state=KeyState.ENABLED if versions else KeyState.PENDING_IMPORT,
        policy=req.policy if req.policy is not None else default_key_policy(call.account),
        key_spec=spec,
        key_usage=usage,
        origin=origin,
        current_version=1 if versions else 0,
        last_version=1 if versions else 0,
        tags=tags,
        versions=versions,
        mrk=mrk,
        primary_region=None if mrk is None else call.region,
        regions=() if mrk is None else (call.region,),
        custom_key_store_id=None if store is None else store.store_id,
    )
    call.key_arn = key.arn
    if req.policy is not None:
        key = key.replace(policy_principals=await policy_principals(deps, req.policy))
        await check_lockout(call, key, req.bypass_policy_lockout_safety_check)
    # The external or HSM key last: once everything else has been checked.
    if store is not None and origin is Origin.EXTERNAL_KEY_STORE:
        assert req.xks_key_id is not None
        await _xks_key_free(deps, store, req.xks_key_id)
        await xks_keys.check_external_key(deps, call, store, req.xks_key_id)
        key = key.replace(xks_key_id=req.xks_key_id)
        call.detail = f"external key {req.xks_key_id} of {store.store_id}"
    elif store is not None:
        hsm_object = await hsm_keys.generate(deps, store, spec, usage)
        key = key.replace(
            hsm_object=hsm_object,
            versions=(KeyVersion(1, hsm_keys.material_id(key_id.bytes, hsm_object)),),
        )
        call.detail = f"generated in the HSM {store.cluster_id} of {store.store_id}"
    # The other door's settings on the key as it is staged (its token
    # object included).
    if adjust is not None:
        key = adjust(key)
    writes = deps.keys.stage_create(key, material)
    if mrk is not None:
        writes.append(deps.keys.stage_mrk_marker(mrk))
    return Outcome(KeyMetadataResult(await key_metadata(deps, call, key)), writes)


async def describe_key(deps: Deps, call: Call, req: DescribeKeyRequest) -> Outcome:
    key = (await use_key(deps.keys, call, req.key_id, "kms:DescribeKey", allow_alias=True)).value
    if key.custom_key_store_id is None:
        meta = KeyMetadata.of(key)
        # The material Encrypt uses: a primary chosen through the Cloud KMS
        # door's updatePrimaryVersion, else the newest.
        primary = await primary_version(deps.keys, key)
        chosen = key.version(primary) if primary != key.current_version else None
        if chosen is not None and meta.current_key_material_id is not None:
            meta = dataclasses.replace(meta, current_key_material_id=chosen.material_id)
        return Outcome(KeyMetadataResult(meta))
    return Outcome(KeyMetadataResult(await key_metadata(deps, call, key)))


async def _custom_store_for(
    deps: Deps,
    call: Call,
    req: CreateKeyRequest,
    *,
    origin: Origin,
    spec: KeySpec,
    usage: KeyUsage,
    pairs: bool = False,
) -> CustomKeyStore | None:
    """The connected custom key store a new key goes into, or None.
    ``pairs``: an RSA or EC signing or RSA decryption key may go into an
    AWS_CLOUDHSM store too."""
    if req.xks_key_id is not None and origin is not Origin.EXTERNAL_KEY_STORE:
        raise ValidationException("XksKeyId is only for Origin EXTERNAL_KEY_STORE.")
    if req.custom_key_store_id is None:
        if origin in (Origin.AWS_CLOUDHSM, Origin.EXTERNAL_KEY_STORE):
            raise ValidationException(f"Origin {origin.value} needs a CustomKeyStoreId.")
        return None
    if origin not in (Origin.AWS_CLOUDHSM, Origin.EXTERNAL_KEY_STORE):
        raise ValidationException(
            "A key in a custom key store needs Origin AWS_CLOUDHSM (an AWS_CLOUDHSM store) "
            "or EXTERNAL_KEY_STORE (an EXTERNAL_KEY_STORE store)."
        )
    if origin is Origin.EXTERNAL_KEY_STORE and req.xks_key_id is None:
        raise ValidationException("Origin EXTERNAL_KEY_STORE needs an XksKeyId.")
    symmetric = spec is KeySpec.SYMMETRIC_DEFAULT and usage is KeyUsage.ENCRYPT_DECRYPT
    if not symmetric and not (
        pairs and origin is Origin.AWS_CLOUDHSM and hsm_keys.token_makes(spec, usage)
    ):
        raise UnsupportedOperationException(
            "Keys in custom key stores are symmetric encryption keys only "
            "(KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT)."
        )
    if req.multi_region:
        raise UnsupportedOperationException("Keys in custom key stores cannot be multi-Region.")
    found = None
    if STORE_ID.fullmatch(req.custom_key_store_id):
        found = await deps.keys.custom_store(call.account, call.region, req.custom_key_store_id)
    if found is None:
        raise CustomKeyStoreNotFoundException(
            f"Custom key store {req.custom_key_store_id} does not exist in this account and Region."
        )
    store = found.value
    store_type = TYPES[store.store_type]
    if store_type.origin != origin.value:
        raise ValidationException(
            f"A key in a custom key store of type {store.store_type} needs Origin "
            f"{store_type.origin}."
        )
    if store.state != CONNECTED or await store_type.failure(deps, call, store) is not None:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {store.store_id} is not connected (or its HSM or XKS proxy "
            "does not answer); keys can be created only in a CONNECTED store."
        )
    return store


async def _xks_key_free(deps: Deps, store: CustomKeyStore, xks_key_id: str) -> None:
    """One external key backs at most one KMS key of a store, as in AWS."""
    for key_id in await deps.keys.custom_store_keys(store.store_id):
        found = await deps.keys.get(key_id)
        if found is not None and found.value.xks_key_id == xks_key_id:
            raise XksKeyAlreadyInUseException(
                f"The external key {xks_key_id} already backs {found.value.arn}."
            )


async def list_keys(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    await call.authorize("kms:ListKeys")
    limit = page_limit(req.limit, 100)
    after = ""
    if req.marker is not None:
        # A marker is the last key id of a page: a UUID or an mrk- id.
        if parse_mrk(req.marker) is not None:
            after = req.marker
        else:
            try:
                after = str(uuid.UUID(req.marker))
            except ValueError:
                raise InvalidMarkerException("The marker is not valid.") from None
    ids = await deps.keys.list_public_ids(call.account, call.region, after, limit + 1)
    truncated = len(ids) > limit
    ids = ids[:limit]
    entries = [KeyListEntry(key_id=i, key_arn=key_arn(call.region, call.account, i)) for i in ids]
    marker = ids[-1] if truncated else None
    return Outcome(ListKeysResult(keys=entries, truncated=truncated, next_marker=marker))


async def _change_key(
    deps: Deps, call: Call, ref: str, action: str, operation: str, **changes: object
) -> Outcome:
    stored = await use_key(deps.keys, call, ref, action, state=operation)
    key = stored.value
    new = key.replace(**changes)
    if new == key:
        return Outcome()
    return Outcome(None, deps.keys.stage_update(stored, new))


async def update_key_description(
    deps: Deps, call: Call, req: UpdateKeyDescriptionRequest
) -> Outcome:
    return await _change_key(
        deps,
        call,
        req.key_id,
        "kms:UpdateKeyDescription",
        "UpdateKeyDescription",
        description=req.description,
    )


async def enable_key(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    return await _change_key(
        deps, call, req.key_id, "kms:EnableKey", "EnableKey", state=KeyState.ENABLED
    )


async def disable_key(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    return await _change_key(
        deps, call, req.key_id, "kms:DisableKey", "DisableKey", state=KeyState.DISABLED
    )


async def policy_principals(deps: Deps, text: str) -> tuple[tuple[str, str], ...]:
    """(ARN, unique id) of each user or role ``text`` names that exists now:
    recorded with the policy, so it keeps naming that principal only."""
    if deps.credentials is None:
        return ()
    found = []
    for arn in principal_arns(deps.authz.parse_key_policy(text)):
        unique_id = await deps.credentials.unique_id(arn)
        if unique_id is not None:
            found.append((arn, unique_id))
    return tuple(sorted(found))


async def get_key_policy(deps: Deps, call: Call, req: GetKeyPolicyRequest) -> Outcome:
    key = (await use_key(deps.keys, call, req.key_id, "kms:GetKeyPolicy")).value
    if req.policy_name not in (None, POLICY_NAME):
        raise NotFoundException("No such policy exists")
    # As AWS shows a principal deleted since the policy was put: by its
    # unique id, which no principal created later under that name has.
    gone: dict[str, str] = {}
    if deps.credentials is not None:
        for arn, unique_id in key.policy_principals:
            if await deps.credentials.unique_id(arn) != unique_id:
                gone[arn] = unique_id
    policy = render_policy(key.policy, gone)
    return Outcome(GetKeyPolicyResult(policy=policy, policy_name=POLICY_NAME))


async def put_key_policy(deps: Deps, call: Call, req: PutKeyPolicyRequest) -> Outcome:
    stored = await use_key(
        deps.keys,
        call,
        req.key_id,
        "kms:PutKeyPolicy",
        state="PutKeyPolicy",
        context={
            "kms:BypassPolicyLockoutSafetyCheck": bool(req.bypass_policy_lockout_safety_check)
        },
    )
    key = stored.value
    if req.policy_name not in (None, POLICY_NAME):
        raise ValidationException(f"PolicyName must be {POLICY_NAME!r}: a key has one policy.")
    check_policy(req.policy)
    new = key.replace(
        policy=req.policy, policy_principals=await policy_principals(deps, req.policy)
    )
    await check_lockout(call, new, req.bypass_policy_lockout_safety_check)
    if req.bypass_policy_lockout_safety_check:
        call.detail = "policy lockout safety check bypassed"
    if new == key:
        return Outcome()
    return Outcome(None, deps.keys.stage_update(stored, new))


async def list_key_policies(deps: Deps, call: Call, req: ListKeyScopedRequest) -> Outcome:
    await use_key(deps.keys, call, req.key_id, "kms:ListKeyPolicies")
    return Outcome(ListKeyPoliciesResult(policy_names=[POLICY_NAME], truncated=False))
