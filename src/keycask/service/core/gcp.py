"""Google Cloud KMS's operations over keycask's own (the Cloud KMS door,
``service/doors/gcp_kms.py``, decodes the wire into these requests).

A key ring is a small document behind the barrier at
``gcp/ring/<account>/<project>/<location>/<ring>`` (its creation time): it
holds nothing but the names of the crypto keys to come. A crypto key
``projects/P/locations/L/keyRings/R/cryptoKeys/K`` is the keycask key that
the alias ``alias/gcp/P/L/R/K`` names, in the region of location L: the
AWS door sees and uses it by that alias (and finds the Cloud KMS name in its
description). What Cloud KMS has and AWS KMS has not (purpose, algorithm,
labels, destroyScheduledDuration) is one document per key at
``gcp/key/<key id>``. A crypto key version N is keycask's key version N (a
rotation), and a ciphertext is keycask's own ciphertext blob, whose header
names the version that sealed it.

Every operation runs the AWS door's core handlers (CreateKey, CreateAlias,
Encrypt, Decrypt, RotateKeyOnDemand, GenerateRandom, ...), so the same key
policies, identity policies and grants decide, under the same ``kms:``
actions (docs/gcp-kms.md has the table).

Why one module of ~530 lines: key rings, crypto keys, encrypt, decrypt and
random bytes share the name-to-key resolution and the settings document
read here; what grew beside them is in modules of its own (versions,
rotation, IAM, protection level HSM, the asymmetric and MAC operations:
gcp_versions, gcp_rotation, gcp_iam, gcp_hsm, gcp_crypto).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import orjson

from keycask.errors import (
    AlreadyExistsException,
    KMSInvalidStateException,
    LimitExceededException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.model import (
    SYMMETRIC_DEFAULT_ALGORITHM,
    Alias,
    Key,
    KeySpec,
    KeyState,
    KeyUsage,
    KeyVersion,
    alias_arn,
    default_key_policy,
)
from keycask.keys.wire import (
    BLOB_FORMAT_HSM,
    BLOB_FORMAT_V2,
    BLOB_FORMAT_XKS,
    blob_header,
    encode_context,
    mrk_blob_header,
    parse_xks_blob,
)
from keycask.ports import Write
from keycask.service.core import gcp_hsm, gcp_imports, gcp_pages, gcp_rotation
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp_algorithms import KINDS
from keycask.service.core.gcp_requests import (
    CreateKeyRequest,
    CreateRingRequest,
    DecryptRequest,
    DecryptResult,
    EncryptRequest,
    EncryptResult,
    KeyName,
    KeyRequest,
    KeyResult,
    KeySettings,
    ListRequest,
    LocationName,
    LocationRequest,
    LocationsResult,
    RandomRequest,
    RandomResult,
    RingName,
    RingRequest,
    RingResult,
    UpdateKeyRequest,
    check_version,
)
from keycask.service.core.handlers import crypto, keys
from keycask.service.core.resolve import resolve_key, use_key
from keycask.service.core.results import (
    DecryptResult as AwsDecrypt,
)
from keycask.service.core.results import (
    EncryptResult as AwsEncrypt,
)
from keycask.service.core.results import (
    GenerateRandomResult,
    KeyMetadataResult,
)

# The encryption context pair that binds Cloud KMS's additional
# authenticated data: its SHA-256 (hex), so that the context (which the
# audit record shows) holds a fixed-size digest, never the data itself.
AAD_CONTEXT = "gcp-kms:aad-sha256"
_PAGE_MAX = 1000
# Key rings per account and Region, over all its projects (Cloud KMS cannot
# delete one, so neither can keycask; an unbounded count would be an
# unbounded store), like the bound on Vault Transit mounts
# (transit_mounts.MAX_MOUNTS).
MAX_RINGS = 1000


def _ring_doc(created: datetime) -> bytes:
    return orjson.dumps({"create_time": created.timestamp()})


def _ring_result(name: RingName, raw: bytes) -> RingResult:
    doc = orjson.loads(raw)
    return RingResult(name.name, datetime.fromtimestamp(float(doc["create_time"]), UTC))


async def _ring(deps: Deps, call: Call, name: RingName) -> RingResult:
    stored = await deps.keys.gcp_ring(call.account, name.project, name.location, name.ring)
    if not stored.revision:
        raise NotFoundException(f"KeyRing {name.name} not found.")
    return _ring_result(name, stored.value)


# -- key rings --


async def create_ring(deps: Deps, call: Call, req: CreateRingRequest) -> Outcome:
    """A key ring holds only the crypto keys to come: authorized as
    ``kms:CreateKey`` (on ``*``), the right to make them."""
    await call.authorize("kms:CreateKey")
    name = RingName(req.parent.project, req.parent.location, req.ring_id)
    parent = req.parent
    stored = await deps.keys.gcp_ring(call.account, parent.project, parent.location, req.ring_id)
    if stored.revision:
        raise AlreadyExistsException(f"KeyRing {name.name} already exists.")
    counted = await deps.keys.gcp_ring_count(call.account, call.region)
    count = int(orjson.loads(counted.value)) if counted.revision else 0
    if count >= MAX_RINGS:
        raise LimitExceededException(
            f"This account has {count} key rings in {call.region}, the limit: key rings "
            "cannot be deleted, so make crypto keys in the ones it has."
        )
    now = deps.clock.now()
    call.detail = f"key ring {name.name}"
    writes = [
        deps.keys.stage_gcp_ring(
            call.account, parent.project, parent.location, req.ring_id, _ring_doc(now)
        ),
        deps.keys.stage_gcp_ring_count(
            call.account, call.region, orjson.dumps(count + 1), expect=counted.revision
        ),
    ]
    return Outcome(RingResult(name.name, now), writes)


async def get_ring(deps: Deps, call: Call, req: RingRequest) -> Outcome:
    """Authorized as ``kms:ListKeys``: a key ring is a listing of keys."""
    await call.authorize("kms:ListKeys")
    return Outcome(await _ring(deps, call, req.name))


async def list_rings(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    await call.authorize("kms:ListKeys")
    parent = req.parent
    assert isinstance(parent, LocationName)

    async def rings(after: str) -> AsyncGenerator[tuple[str, RingResult]]:
        while True:
            rows = await deps.keys.list_gcp_rings(
                call.account, parent.project, parent.location, after, _PAGE_MAX
            )
            for ring, raw in rows:
                yield ring, _ring_result(RingName(parent.project, parent.location, ring), raw)
            if len(rows) < _PAGE_MAX:
                return
            after = rows[-1][0]

    return Outcome(await gcp_pages.page(req, rings))


# -- crypto keys --


def _kind(purpose: str, algorithm: str) -> tuple[KeySpec, KeyUsage]:
    served = KINDS.get(purpose)
    if served is None:
        raise ValidationException(
            f"Unsupported purpose {purpose}: keycask serves {', '.join(KINDS)}."
        )
    kind = served.get(algorithm)
    if kind is None:
        raise ValidationException(
            f"Algorithm {algorithm} is not valid for purpose {purpose}: "
            f"use {', '.join(sorted(served))}."
        )
    return kind


async def settings_of(deps: Deps, key: Key, name: KeyName) -> KeySettings:
    return KeySettings.from_doc((await deps.keys.gcp_key(key.key_id)).value, name.name)


def aws_create(name: KeyName, spec: KeySpec, usage: KeyUsage) -> aws.CreateKeyRequest:
    return aws.CreateKeyRequest(
        description=f"Cloud KMS crypto key {name.name}",
        key_spec=spec.value,
        key_usage=usage.value,
    )


async def prepare_create(deps: Deps, call: Call, req: CreateKeyRequest) -> None:
    """An RSA key's material, made before the write lock is taken
    (generating a 4096-bit key takes seconds): nothing is made for a
    request that create_key will refuse anyway."""
    try:
        spec, usage = _kind(req.purpose, req.algorithm)
    except ValidationException:
        return
    name = KeyName(req.parent.project, req.parent.location, req.parent.ring, req.key_id)
    if not spec.is_rsa or req.protection_level != "SOFTWARE":
        return
    if await deps.keys.get_alias(call.account, call.region, name.alias) is not None:
        return
    await keys.prepare_material(call, aws_create(name, spec, usage))


async def create_key(
    deps: Deps,
    call: Call,
    req: CreateKeyRequest,
    *,
    ring_policy: Callable[[str], str] | None = None,
) -> Outcome:
    """CreateKey, then the alias that names it (kms:CreateKey, then
    kms:CreateAlias on the alias), and the key's Cloud KMS settings.
    ``ring_policy``: the key ring's bindings added to a key policy
    (``gcp_ring_iam.create_key``)."""
    spec, usage = _kind(req.purpose, req.algorithm)
    hsm = req.protection_level == gcp_hsm.HSM
    if hsm:
        gcp_hsm.check_request(
            req.purpose, req.algorithm, spec, usage, req.rotation is not None, req.import_only
        )
    elif req.protection_level != "SOFTWARE":
        raise KMSInvalidStateException(
            f"protection level {req.protection_level} is not available: keycask's Cloud KMS "
            "door makes SOFTWARE and HSM keys"
        )
    name = KeyName(req.parent.project, req.parent.location, req.parent.ring, req.key_id)
    request = aws_create(name, spec, usage)
    if req.import_only:  # Origin EXTERNAL: no version until one is imported
        request = gcp_imports.import_only(request, spec, req.algorithm)
    await _ring(deps, call, req.parent)
    if await deps.keys.get_alias(call.account, call.region, name.alias) is not None:
        raise AlreadyExistsException(f"CryptoKey {name.name} already exists.")
    rotating = None
    if req.rotation is not None:
        if req.purpose != "ENCRYPT_DECRYPT":
            raise ValidationException(
                "Automatic rotation is supported for ENCRYPT_DECRYPT keys only."
            )
        if req.import_only:
            # Imported material rotates by importing new material; keycask
            # making material on a schedule would seal under a key its owner
            # never held (and cannot restore after deleting it).
            raise ValidationException(
                "Automatic rotation is supported for ENCRYPT_DECRYPT keys whose material "
                "keycask made: rotate an import-only key by importing a new version."
            )
        rotating = gcp_rotation.schedule(deps.clock.now(), req.rotation, None)
    policy = None
    if ring_policy is not None:
        text = ring_policy(default_key_policy(call.account))
        # Only allows are added to the default policy: no lockout to check.
        policy = (text, await keys.policy_principals(deps, text))

    def adjust(key: Key) -> Key:
        if rotating is not None:
            key = key.replace(rotation_period_days=rotating[0], next_rotation=rotating[1])
        if policy is not None:
            key = key.replace(policy=policy[0], policy_principals=policy[1])
        return key

    alias_resource = alias_arn(call.region, call.account, name.alias)
    if hsm:
        request = await gcp_hsm.create_request(deps, call, request, alias_resource)
    created = await gcp_hsm.as_precondition(
        keys.create_key(deps, call, request, adjust=adjust, asymmetric_in_hsm=hsm)
    )
    made_by = call.detail
    result = created.result
    assert isinstance(result, KeyMetadataResult)
    await call.authorize("kms:CreateAlias", resource=alias_resource)
    now = deps.clock.now()
    key_id = uuid.UUID(result.key_metadata.key_id)
    alias = Alias(name.alias, call.account, call.region, key_id, now, now)
    settings = KeySettings(
        name.name,
        req.purpose,
        req.algorithm,
        req.protection_level,
        dict(req.labels),
        req.destroy_scheduled_seconds,
    )
    writes = [
        *created.writes,
        *deps.keys.stage_put_alias(alias, expect=0),
        deps.keys.stage_gcp_key(key_id, settings.to_doc(), 0),
    ]
    call.detail = f"crypto key {name.name} ({req.purpose}, {req.algorithm})"
    call.detail += f", {made_by}" if hsm else ""
    # What the answer shows of the key just staged (the store has it once
    # the writes commit): created now, enabled, with its first version.
    meta = result.key_metadata
    key = Key(
        key_id,
        call.account,
        call.region,
        meta.creation_date,
        meta.description,
        KeyState.ENABLED,
        default_key_policy(call.account),
        key_usage=usage,
        key_spec=spec,
        versions=(KeyVersion(1, ""),),
    )
    key = adjust(key) if not req.import_only else gcp_imports.awaiting_import(adjust(key))
    if rotating is not None:
        # Automatic rotation needs the right to turn it on, as on the AWS door.
        await call.authorize("kms:EnableKeyRotation", key)
    return Outcome(KeyResult(name, key, settings), writes)


async def _use(deps: Deps, call: Call, name: KeyName, action: str) -> Key:
    try:
        return (await use_key(deps.keys, call, name.alias, action, allow_alias=True)).value
    except NotFoundException:
        raise NotFoundException(f"CryptoKey {name.name} not found.") from None


async def get_key(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    key = await _use(deps, call, req.name, "kms:DescribeKey")
    return Outcome(KeyResult(req.name, key, await settings_of(deps, key, req.name)))


async def list_keys(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    """The crypto keys of a key ring: the aliases under its prefix (kms:ListKeys,
    kms:ListAliases on ``*``), each shown only if the caller may DescribeKey it
    (its labels, algorithm, state): the filter never sees the others."""
    parent = req.parent
    assert isinstance(parent, RingName)
    await call.authorize("kms:ListAliases")
    await call.authorize("kms:ListKeys")
    await _ring(deps, call, parent)
    prefix = KeyName(parent.project, parent.location, parent.ring, "").alias

    async def crypto_keys(after: str) -> AsyncGenerator[tuple[str, KeyResult | None]]:
        # Aliases are listed in name order: this key ring's are one run.
        start = prefix + after
        while True:
            page = await deps.keys.list_aliases(call.account, call.region, start, _PAGE_MAX)
            for alias in page:
                key_id = alias.name[len(prefix) :]
                if not alias.name.startswith(prefix):
                    return
                if "/" in key_id:
                    continue  # a version's alias
                stored = await deps.keys.get(alias.target)
                if stored is None or not await call.would_allow("kms:DescribeKey", stored.value):
                    yield key_id, None
                    continue
                name = KeyName(parent.project, parent.location, parent.ring, key_id)
                settings = await settings_of(deps, stored.value, name)
                yield key_id, KeyResult(name, stored.value, settings)
            if len(page) < _PAGE_MAX:
                return
            start = page[-1].name

    return Outcome(await gcp_pages.page(req, crypto_keys))


async def update_key(deps: Deps, call: Call, req: UpdateKeyRequest) -> Outcome:
    """Labels, like tags, need ``kms:TagResource``; a rotation schedule
    ``kms:EnableKeyRotation`` (or ``kms:DisableKeyRotation`` to end it)."""
    writes: list[Write] = []
    key = await resolve_key_for(deps, call, req.name)
    details = []
    if req.rotation is not None:
        key, staged = await gcp_rotation.rotate_on(deps, call, key, req.rotation)
        writes.extend(staged)
        details.append("rotation schedule")
    stored = await deps.keys.gcp_key(key.key_id)
    settings = KeySettings.from_doc(stored.value, req.name.name)
    if req.labels is not None:
        await _use(deps, call, req.name, "kms:TagResource")
        settings = settings.with_labels(req.labels)
        writes.append(deps.keys.stage_gcp_key(key.key_id, settings.to_doc(), stored.revision))
        details.append(f"labels {sorted(req.labels)}")
    call.detail = f"crypto key {req.name.name} updated: {', '.join(details)}"
    return Outcome(KeyResult(req.name, key, settings), writes)


# -- versions --


async def resolve_key_for(deps: Deps, call: Call, name: KeyName) -> Key:
    try:
        return (await resolve_key(deps.keys, call, name.alias, allow_alias=True)).value
    except NotFoundException:
        raise NotFoundException(f"CryptoKey {name.name} not found.") from None


# -- encrypt / decrypt / random --


def _context(aad: bytes) -> dict[str, str] | None:
    return {AAD_CONTEXT: hashlib.sha256(aad).hexdigest()} if aad else None


def _version_of(blob: bytes) -> int:
    if blob[:1] == bytes((BLOB_FORMAT_V2,)):
        return mrk_blob_header(blob)[1]
    if blob[:1] == bytes((BLOB_FORMAT_HSM,)):
        return 1  # an HSM-backed key has one version
    if blob[:1] == bytes((BLOB_FORMAT_XKS,)):
        return parse_xks_blob(blob).version
    return blob_header(blob)[1]


async def encrypt(deps: Deps, call: Call, req: EncryptRequest) -> Outcome:
    key = await resolve_key_for(deps, call, req.name)
    settings = await settings_of(deps, key, req.name)
    if settings.purpose != "ENCRYPT_DECRYPT":
        raise ValidationException(
            f"Encrypt is not valid for CryptoKey {req.name.name} with purpose {settings.purpose}."
        )
    context = _context(req.aad)
    if req.version is None:
        out = await crypto.encrypt(
            deps,
            call,
            aws.EncryptRequest(
                key_id=req.name.alias, plaintext=req.plaintext, encryption_context=context
            ),
        )
        result = out.result
        assert isinstance(result, AwsEncrypt)
        blob = result.ciphertext_blob
    else:
        blob = await _encrypt_older(deps, call, req, context)
    version = _version_of(blob)
    return Outcome(EncryptResult(req.name.version_name(version), blob, settings, req.verified))


async def _encrypt_older(
    deps: Deps, call: Call, req: EncryptRequest, context: dict[str, str] | None
) -> bytes:
    """Encrypt under the version a version name in the request names (the
    primary too: a primary chosen meanwhile must not change which version
    seals): Encrypt's checks, then that version's material."""
    call.encryption_context = context
    call.conditions["kms:EncryptionAlgorithm"] = SYMMETRIC_DEFAULT_ALGORITHM
    key = (
        await use_key(
            deps.keys, call, req.name.alias, "kms:Encrypt", state="Encrypt", allow_alias=True
        )
    ).value
    assert req.version is not None
    check_version(key, KeySettings.from_doc(b"", ""), req.name, req.version)
    blob, _ = await crypto.seal_for(
        deps, call, key, req.plaintext, encode_context(context), version=req.version
    )
    return blob


async def decrypt(deps: Deps, call: Call, req: DecryptRequest) -> Outcome:
    key = await resolve_key_for(deps, call, req.name)
    settings = await settings_of(deps, key, req.name)
    if settings.purpose != "ENCRYPT_DECRYPT":
        raise ValidationException(
            f"Decrypt is not valid for CryptoKey {req.name.name} with purpose {settings.purpose}."
        )
    out = await crypto.decrypt(
        deps,
        call,
        aws.DecryptRequest(
            ciphertext_blob=req.ciphertext,
            encryption_context=_context(req.aad),
            key_id=req.name.alias,
        ),
    )
    result = out.result
    assert isinstance(result, AwsDecrypt)
    used = _version_of(req.ciphertext)
    return Outcome(
        DecryptResult(result.plaintext, used == settings.primary_of(key), settings.protection_level)
    )


async def random_bytes(deps: Deps, call: Call, req: RandomRequest) -> Outcome:
    """GenerateRandom (kms:GenerateRandom): Cloud KMS's 8 to 1024 bytes; for
    protection level HSM from the account's HSM if it has one connected."""
    # Authorized before the account's HSM stores are looked at (GenerateRandom
    # checks again, at no cost): no token work for a caller with no right.
    await call.authorize("kms:GenerateRandom")
    store = await gcp_hsm.random_store(deps, call) if req.protection_level == gcp_hsm.HSM else None
    out = await gcp_hsm.as_precondition(
        crypto.generate_random(
            deps,
            call,
            aws.GenerateRandomRequest(number_of_bytes=req.length, custom_key_store_id=store),
        )
    )
    result = out.result
    assert isinstance(result, GenerateRandomResult)
    return Outcome(RandomResult(result.plaintext))


# -- locations --


def _locations(call: Call, project: str) -> tuple[LocationName, ...]:
    """The locations a project has here: "global" and the server's region
    (a request's location names its region, so any region's name works;
    these are the ones that need no choosing)."""
    names = dict.fromkeys(("global", call.region))
    return tuple(LocationName(project, name) for name in names)


async def list_locations(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    """No key is involved: a valid token is enough."""
    parent = req.parent
    assert isinstance(parent, LocationName)
    return Outcome(LocationsResult(_locations(call, parent.project)))


async def get_location(deps: Deps, call: Call, req: LocationRequest) -> Outcome:
    return Outcome(LocationsResult((req.location,)))
