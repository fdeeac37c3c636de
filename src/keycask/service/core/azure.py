"""Azure Key Vault's key operations over keycask's own (the Azure Key Vault
door, ``service/doors/azure_keyvault.py``, decodes the wire into the
requests of ``azure_requests.py``).

A Key Vault key NAME in vault VAULT is the keycask key the alias
``alias/azure/VAULT/NAME`` names: its first version. Its Key Vault
attributes that AWS KMS has not (each version's key_ops, nbf, exp, tags,
created and updated times) are one document at ``azure/key/<that key's
id>``, which also records every later version: keycask's asymmetric keys
have one key material each (AWS KMS's semantics), so each version is a
keycask key of its own, whose alias ``alias/azure/VAULT/NAME/<version>``
shows it to the AWS door. A version id is its keycask key's id (32 hex
digits), and a version is found by the id the document records, never by
an alias. A version's enabled attribute is its keycask key's state.

Every operation runs the AWS door's core handlers under their ``kms:``
actions (docs/azure-keyvault.md has the table), so the same key policies,
identity policies and grants decide.

Why one module: create, rotate, get, list and update all read and write the
one settings document and the alias of each version together (anchor,
version lookup, the settings' revision), and the HSM-backed key types are
a step of create; the parts that stand alone are their own modules
(azure_crypto, azure_deletion, azure_backup, azure_rotation, hsm_choice).
"""

from __future__ import annotations

import dataclasses

from keycask.errors import (
    KMSInternalException,
    KMSInvalidStateException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Alias, Key, KeySpec, KeyState, KeyUsage, alias_arn
from keycask.ports import Write
from keycask.service.core import gcp_hsm, hsm_choice, hsm_keys
from keycask.service.core import requests as aws
from keycask.service.core.azure_gate import gate_doc
from keycask.service.core.azure_requests import (
    CreateRequest,
    GetRequest,
    KeyBundle,
    KeyItem,
    KeyRef,
    ListRequest,
    ListResult,
    Settings,
    UpdateRequest,
    Version,
)
from keycask.service.core.azure_schedule import stage_entries
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import keys
from keycask.service.core.resolve import authorize_key, resolve_key
from keycask.service.core.results import KeyMetadataResult

RSA_SIZES = {2048: KeySpec.RSA_2048, 3072: KeySpec.RSA_3072, 4096: KeySpec.RSA_4096}
CURVES = {
    "P-256": KeySpec.ECC_NIST_P256,
    "P-384": KeySpec.ECC_NIST_P384,
    "P-521": KeySpec.ECC_NIST_P521,
    "P-256K": KeySpec.ECC_SECG_P256K1,
}
CURVE_OF = {spec: crv for crv, spec in CURVES.items()}
SIGN_OPS = ("sign", "verify")
ENCRYPT_OPS = ("encrypt", "decrypt", "wrapKey", "unwrapKey")
ALL_OPS = (*ENCRYPT_OPS, *SIGN_OPS)
_PAGE_MAX = 25  # Key Vault's page size, and its most


class KeyNotFound(NotFoundException):
    """Key Vault's KeyNotFound (404)."""


class KeyConflict(KMSInvalidStateException):
    """Key Vault's 409 Conflict (a deleted key's name, a state that does not
    allow the change)."""


def gate_write(keys: KeyStore, entry: Version) -> Write:
    """The version's nbf, exp and key_ops beside its own keycask key, for
    every door's Sign, Verify, Encrypt and Decrypt (``azure_gate.py``)."""
    return keys.stage_azure_gate(entry.key_id, gate_doc(entry.nbf, entry.exp, entry.ops))


def not_found(ref: KeyRef, version: str = "") -> KeyNotFound:
    what = f"{ref.name}/{version}" if version else ref.name
    return KeyNotFound(f"A key with (name/id) {what} was not found in this key vault.")


HSM_TYPES = ("RSA-HSM", "EC-HSM")


def kind_of(kty: str, size: int | None, crv: str | None, exponent: int | None) -> KeySpec:
    """The keycask key spec of a Key Vault key type and size or curve."""
    if kty in HSM_TYPES:
        # An HSM-backed key (create picks the HSM key store): its kind as a
        # software key's.
        kty = kty.removesuffix("-HSM")
    if kty == "RSA":
        if crv is not None:
            raise ValidationException("crv is for EC keys; an RSA key takes key_size.")
        if exponent not in (None, 65537):
            raise ValidationException("public_exponent must be 65537, the only one keycask makes.")
        spec = RSA_SIZES.get(2048 if size is None else size)
        if spec is None:
            raise ValidationException(
                f"key_size {size} is not supported for RSA keys: use 2048, 3072 or 4096."
            )
        return spec
    if kty == "EC":
        if size is not None:
            raise ValidationException("key_size is for RSA keys; an EC key takes crv.")
        spec = CURVES.get("P-256" if crv is None else crv)
        if spec is None:
            raise ValidationException(
                f"crv {crv} is not supported: use P-256, P-384, P-521 or P-256K."
            )
        return spec
    if kty in ("oct", "oct-HSM"):
        raise UnsupportedOperationException(
            f"Key type {kty} is for Managed HSM, which keycask's Key Vault door does not serve: "
            "use RSA or EC."
        )
    raise ValidationException(f"Invalid kty {kty}: use RSA or EC.")


def usage_of(spec: KeySpec, ops: tuple[str, ...] | None) -> tuple[KeyUsage, tuple[str, ...]]:
    """The keycask key usage that ``ops`` ask for, and the ops the key gets.
    A keycask key has one usage, as an AWS KMS key does: signing ops and
    encryption ops together are refused. None: RSA keys encrypt (AWS's
    default usage), EC keys sign."""
    if ops is None:
        if spec.is_rsa:
            return KeyUsage.ENCRYPT_DECRYPT, ENCRYPT_OPS
        return KeyUsage.SIGN_VERIFY, SIGN_OPS
    unknown = [op for op in ops if op not in ALL_OPS]
    if unknown:
        raise ValidationException(
            f"Invalid key_ops {', '.join(unknown)[:200]}: use {', '.join(ALL_OPS)}."
        )
    signs = [op for op in ops if op in SIGN_OPS]
    encrypts = [op for op in ops if op in ENCRYPT_OPS]
    if signs and encrypts:
        raise ValidationException(
            "key_ops mixes signing (sign, verify) with encryption (encrypt, decrypt, wrapKey, "
            "unwrapKey): a keycask key has one key usage, as an AWS KMS key does. Create one "
            "key for each."
        )
    if encrypts and not spec.is_rsa:
        raise ValidationException("EC keys sign and verify only: key_ops must be sign, verify.")
    usage = KeyUsage.ENCRYPT_DECRYPT if encrypts else KeyUsage.SIGN_VERIFY
    return usage, tuple(dict.fromkeys(ops))


def _aws_create(ref: KeyRef, spec: KeySpec, usage: KeyUsage) -> aws.CreateKeyRequest:
    return aws.CreateKeyRequest(
        description=f"Azure Key Vault key {ref.vault}/{ref.name}",
        key_spec=spec.value,
        key_usage=usage.value,
    )


async def anchor_of(
    deps: Deps, call: Call, ref: KeyRef, *, deleted: bool | None = False
) -> tuple[Key, Stored[bytes], Settings]:
    """The key's first version's keycask key and its settings (not
    authorized: the core operation that uses them authorizes).
    ``deleted``: False, a key that is not soft-deleted (a deleted one is
    not found, as in Key Vault); True, a soft-deleted one; None, either."""
    try:
        anchor = (await resolve_key(deps.keys, call, ref.alias, allow_alias=True)).value
    except NotFoundException:
        raise not_found(ref) from None
    stored = await deps.keys.azure_key(anchor.key_id)
    settings = Settings.from_doc(stored.value)
    if settings is None:
        raise not_found(ref)
    if deleted is False and settings.deleted is not None:
        raise not_found(ref)
    if deleted is True and settings.deleted is None:
        raise KeyNotFound(
            f"A deleted key with (name/id) {ref.name} was not found in this key vault."
        )
    return anchor, stored, settings


async def version_key(deps: Deps, call: Call, anchor: Key, entry: Version) -> Key:
    """The keycask key of a version: by the id the settings record, and
    only while it is the anchor's account's and Region's."""
    found = await find_version_key(deps.keys, anchor, entry)
    if found is None:
        raise KeyNotFound(f"The key version {entry.id} was not found in this key vault.")
    return found


async def find_version_key(store: KeyStore, anchor: Key, entry: Version) -> Key | None:
    """``version_key`` without a request (the scheduler's): None if gone."""
    if entry.key_id == anchor.key_id:
        return anchor
    stored = await store.get(entry.key_id)
    if stored is None or (stored.value.account, stored.value.region) != (
        anchor.account,
        anchor.region,
    ):
        return None
    return stored.value


async def latest_of(deps: Deps, call: Call, anchor: Key, settings: Settings) -> tuple[Version, Key]:
    """The newest version whose keycask key is still there (one deleted
    through the AWS door, its window over, is passed over)."""
    for entry in reversed(settings.versions):
        try:
            return entry, await version_key(deps, call, anchor, entry)
        except KeyNotFound:
            continue
    raise KeyNotFound(f"A key with (name/id) {settings.name} was not found in this key vault.")


async def resolve_version(
    deps: Deps, call: Call, ref: KeyRef, version: str
) -> tuple[Key, Stored[bytes], Settings, Version, Key]:
    """A version (""; the latest) and its keycask key (not authorized)."""
    anchor, stored, settings = await anchor_of(deps, call, ref)
    if not version:
        return anchor, stored, settings, *await latest_of(deps, call, anchor, settings)
    entry = settings.find(version)
    if entry is None:
        raise not_found(ref, version)
    return anchor, stored, settings, entry, await version_key(deps, call, anchor, entry)


async def public_der(deps: Deps, key: Key) -> bytes:
    if key.hsm_object is not None:
        return await hsm_keys.public_der(deps, key)
    private = await deps.keys.private_key(key)
    if private is None:
        raise KMSInternalException("key material is missing")
    return private.public_der()


# -- create --


async def prepare_create(deps: Deps, call: Call, req: CreateRequest) -> None:
    """An RSA key's material, made before the write lock is taken."""
    if req.material is not None:
        return  # imported: the caller's
    try:
        spec = kind_of(req.kty, req.size, req.crv, req.public_exponent)
        usage, _ = usage_of(spec, req.ops)
    except (ValidationException, UnsupportedOperationException):
        return
    if spec.is_rsa and req.kty not in HSM_TYPES:
        await keys.prepare_material(call, _aws_create(req.ref, spec, usage))


async def create(deps: Deps, call: Call, req: CreateRequest) -> Outcome:
    """CreateKey and the alias that names it (kms:CreateKey, kms:CreateAlias
    on the alias), with the key's settings. For a name that exists, a new
    version: kms:RotateKeyOnDemand on the key, then CreateKey and
    CreateAlias of the version's alias."""
    if req.material is not None:
        spec = req.material[0]
    else:
        spec = kind_of(req.kty, req.size, req.crv, req.public_exponent)
    usage, ops = usage_of(spec, req.ops)
    existing = await deps.keys.get_alias(call.account, call.region, req.ref.alias)
    anchor: Key | None = None
    stored: Stored[bytes] | None = None
    settings: Settings | None = None
    if existing is not None:
        anchor, stored, settings = await anchor_of(deps, call, req.ref, deleted=None)
        await authorize_key(call, anchor, "kms:RotateKeyOnDemand")
        if settings.deleted is not None:
            raise KeyConflict(
                f"Key {req.ref.name} is currently in a deleted but recoverable state, and its "
                "name cannot be reused; in this state, the key can only be recovered or purged."
            )

    made: list[Key] = []

    def adjust(key: Key) -> Key:
        # A later version holds the first one's policy as it is (it passed
        # the lockout check when it was put); a key created disabled is
        # staged Disabled.
        if anchor is not None:
            key = key.replace(policy=anchor.policy, policy_principals=anchor.policy_principals)
        if not req.enabled:
            key = key.replace(state=KeyState.DISABLED)
        made.append(key)
        return key

    aws_req = _aws_create(req.ref, spec, usage)
    if req.material is not None:
        # Imported: the caller's private key stands for new material (sealed
        # like any key's), once CreateKey's own checks have passed.
        call.prepared = req.material
        described = f"{aws_req.description} (imported)"
        aws_req = dataclasses.replace(aws_req, description=described)
    hsm = req.kty in HSM_TYPES and req.material is None
    if hsm:
        aws_req = await _in_hsm(deps, call, aws_req, req.kty)
    created = await gcp_hsm.as_precondition(
        keys.create_key(deps, call, aws_req, adjust=adjust, asymmetric_in_hsm=hsm)
    )
    result = created.result
    assert isinstance(result, KeyMetadataResult)
    key = made[-1]
    if req.material is not None:
        await call.authorize("kms:ImportKeyMaterial", key)
    if not req.enabled:
        # Created disabled: DisableKey's right too, as on the AWS door.
        await call.authorize("kms:DisableKey", key)
    alias_name = req.ref.alias if anchor is None else req.ref.version_alias(key.key_id.hex)
    await call.authorize(
        "kms:CreateAlias", resource=alias_arn(call.region, call.account, alias_name)
    )
    now = deps.clock.now()
    entry = Version(key.key_id.hex, now.timestamp(), now.timestamp(), ops, req.nbf, req.exp,
                    dict(req.tags))  # fmt: skip
    writes: list[Write] = [
        *created.writes,
        *deps.keys.stage_put_alias(
            Alias(alias_name, call.account, call.region, key.key_id, now, now), expect=0
        ),
        gate_write(deps.keys, entry),
    ]
    if anchor is None or settings is None or stored is None:
        new = Settings(req.ref.vault, req.ref.name, (entry,))
        writes.append(deps.keys.stage_azure_key(key.key_id, new.to_doc(), 0))
    else:
        new = dataclasses.replace(settings, versions=(*settings.versions, entry))
        writes.append(deps.keys.stage_azure_key(anchor.key_id, new.to_doc(), stored.revision))
        # The policy's Rotate counts from the new version, its Notify
        # watches the new version's exp.
        writes.extend(stage_entries(deps.keys, anchor.key_id, new, now.timestamp()))
    made_in = f", {call.detail}" if hsm else ""
    call.detail = (
        f"Azure key {req.ref.vault}/{req.ref.name} version {key.key_id.hex} "
        f"({spec.value}, {usage.value}, key_ops {','.join(ops)}){made_in}"
    )

    async def answer() -> object:
        # Once committed: the public key of the material just stored.
        return KeyBundle(req.ref, req.base, key, entry, await public_der(deps, key))

    return Outcome(None, writes, then=answer)


async def _in_hsm(
    deps: Deps, call: Call, aws_req: aws.CreateKeyRequest, kty: str
) -> aws.CreateKeyRequest:
    """CreateKey's request for an RSA-HSM or EC-HSM key, in the HSM key
    store hsm_choice picks (the Cloud KMS door's rule), or refused with the
    reason, 400 BadParameter as Key Vault answers a key type the vault
    cannot hold."""
    door = (f"key type {kty}", f"create kty {kty.removesuffix('-HSM')} (a software key) instead")
    try:
        return await hsm_choice.in_hsm(deps, call, aws_req, door)
    except KMSInvalidStateException as error:
        raise UnsupportedOperationException(error.message) from None


# -- rotate --


async def _rotation_of(deps: Deps, call: Call, req: GetRequest) -> CreateRequest:
    """A new version like the latest: its key type and size or curve, its
    key_ops and tags (not its nbf and exp)."""
    _, _, _, entry, key = await resolve_version(deps, call, req.ref, "")
    spec = key.key_spec
    curve = CURVE_OF.get(spec)
    size = None if curve is not None else int(spec.value.removeprefix("RSA_"))
    kty = "EC" if curve is not None else "RSA"
    # An HSM-backed key's new version is HSM-backed too.
    return CreateRequest(
        ref=req.ref, base=req.base, kty=kty + ("-HSM" if key.hsm_object else ""), size=size,
        crv=curve, ops=entry.ops, enabled=True, nbf=None, exp=None, tags=dict(entry.tags),
    )  # fmt: skip


async def prepare_rotate(deps: Deps, call: Call, req: GetRequest) -> None:
    """A new RSA version's material, made before the write lock is taken."""
    try:
        made = await _rotation_of(deps, call, req)
    except NotFoundException:
        return
    await prepare_create(deps, call, made)


async def rotate(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    """A new version (kms:RotateKeyOnDemand on the key, then kms:CreateKey
    and kms:CreateAlias of the version's alias): keycask's asymmetric keys
    have one material each, so a version is a keycask key of its own."""
    return await create(deps, call, await _rotation_of(deps, call, req))


# -- get, list --


async def get(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    """DescribeKey's right (kms:DescribeKey) and GetPublicKey's
    (kms:GetPublicKey): Key Vault's get shows the public key."""
    _, _, _, entry, key = await resolve_version(deps, call, req.ref, req.version)
    await authorize_key(call, key, "kms:DescribeKey")
    await authorize_key(call, key, "kms:GetPublicKey")
    return Outcome(KeyBundle(req.ref, req.base, key, entry, await public_der(deps, key)))


async def list_keys(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    """The aliases under ``alias/azure/VAULT/`` (kms:ListAliases and
    kms:ListKeys), each shown only if the caller may DescribeKey it; a page
    may hold fewer than it could."""
    await call.authorize("kms:ListAliases")
    await call.authorize("kms:ListKeys")
    prefix = KeyRef(req.vault, "").alias
    size = min(req.max_results or _PAGE_MAX, _PAGE_MAX)
    after = prefix + req.after if req.after else prefix
    rows: list[Alias] = []
    while len(rows) <= size:
        page = await deps.keys.list_aliases(call.account, call.region, after, 1000)
        rows.extend(
            a for a in page if a.name.startswith(prefix) and "/" not in a.name[len(prefix) :]
        )
        if len(page) < 1000 or not page[-1].name.startswith(prefix):
            break
        after = page[-1].name
    items: list[KeyItem] = []
    for alias in rows[:size]:
        ref = KeyRef(req.vault, alias.name[len(prefix) :])
        stored = await deps.keys.get(alias.target)
        if stored is None or not await call.would_allow("kms:DescribeKey", stored.value):
            continue
        settings = Settings.from_doc((await deps.keys.azure_key(alias.target)).value)
        if settings is None or (settings.deleted is not None) != req.deleted:
            continue
        try:
            entry, latest = await latest_of(deps, call, stored.value, settings)
        except KeyNotFound:
            continue
        items.append(KeyItem(ref, latest, entry, settings.deleted))
    more = len(rows) > size
    nxt = rows[size - 1].name[len(prefix) :] if more else None
    return Outcome(ListResult(req.base, tuple(items), nxt, req))


async def list_versions(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    """A key's versions (kms:ListKeyRotations on its first version's key,
    the action that lists a keycask key's versions)."""
    assert req.ref is not None
    anchor, _, settings = await anchor_of(deps, call, req.ref)
    await authorize_key(call, anchor, "kms:ListKeyRotations")
    size = min(req.max_results or _PAGE_MAX, _PAGE_MAX)
    ids = [v.id for v in settings.versions]
    start = ids.index(req.after) + 1 if req.after in ids else 0
    chosen = settings.versions[start : start + size]
    items = []
    for entry in chosen:
        try:
            items.append(KeyItem(req.ref, await version_key(deps, call, anchor, entry), entry))
        except KeyNotFound:
            continue
    more = start + size < len(settings.versions)
    return Outcome(ListResult(req.base, tuple(items), chosen[-1].id if more else None, req))


# -- update --


async def update(deps: Deps, call: Call, req: UpdateRequest) -> Outcome:
    """enabled: EnableKey / DisableKey of the version's keycask key
    (kms:EnableKey, kms:DisableKey); nbf, exp and key_ops, which decide
    when and how the key may be used, as a key policy does:
    kms:PutKeyPolicy; tags: kms:TagResource."""
    anchor, stored, settings, entry, key = await resolve_version(deps, call, req.ref, req.version)
    writes: list[Write] = []
    details = []
    if req.enabled is not None:
        ref = aws.KeyRequest(key_id=key.arn)
        if req.enabled:
            out = await keys.enable_key(deps, call, ref)
            key = key.replace(state=KeyState.ENABLED)
        else:
            out = await keys.disable_key(deps, call, ref)
            key = key.replace(state=KeyState.DISABLED)
        writes.extend(out.writes)
        details.append(f"enabled {req.enabled}")
    new = entry
    if req.sets_nbf or req.sets_exp or req.ops is not None:
        await authorize_key(call, key, "kms:PutKeyPolicy")
        if req.ops is not None:
            usage, ops = usage_of(key.key_spec, req.ops)
            if usage is not key.key_usage:
                raise ValidationException(
                    f"key_ops {', '.join(req.ops)} need key usage {usage.value}; this key "
                    f"version's keycask key is {key.key_usage.value}, which cannot change. "
                    "Create a new key for the other use."
                )
            new = dataclasses.replace(new, ops=ops)
            details.append(f"key_ops {','.join(ops)}")
        if req.sets_nbf:
            new = dataclasses.replace(new, nbf=req.nbf)
            details.append("nbf")
        if req.sets_exp:
            new = dataclasses.replace(new, exp=req.exp)
            details.append("exp")
    if req.tags is not None:
        await authorize_key(call, key, "kms:TagResource")
        new = dataclasses.replace(new, tags=dict(req.tags))
        details.append(f"tags {sorted(req.tags)[:50]}")
    if not details:
        await authorize_key(call, key, "kms:DescribeKey")
    if new is not entry:
        now = deps.clock.now().timestamp()
        new = dataclasses.replace(new, updated=now)
        changed = settings.replace(new)
        writes.append(deps.keys.stage_azure_key(anchor.key_id, changed.to_doc(), stored.revision))
        writes.append(gate_write(deps.keys, new))
        if req.sets_exp:
            # A new exp moves the policy's actions (a Rotate before the
            # latest version's exp; a Notify, armed again for the new exp).
            writes.extend(stage_entries(deps.keys, anchor.key_id, changed, now))
    await authorize_key(call, key, "kms:GetPublicKey")
    call.detail = f"Azure key {req.ref.vault}/{req.ref.name} version {entry.id}: " + (
        ", ".join(details) or "nothing changed"
    )
    return Outcome(KeyBundle(req.ref, req.base, key, new, await public_der(deps, key)), writes)
