"""Vault Transit's operations over keycask's own (the Vault door,
``service/doors/vault_transit.py``, decodes the wire into these requests).

Why one module of ~620 lines: every operation here names its key the same
way (mount and name -> alias -> key), and the ones that read or make
ciphertexts share one format (``vault:v<N>:``), one parser and one
min_decryption_version check, which must not drift apart; signing, with its
own algorithm table, is ``transit_sign.py``.

A transit key ``NAME`` of mount ``MOUNT`` is the keycask key the alias
``alias/MOUNT/NAME`` names (``alias/transit/NAME`` for the default mount):
keys created by the AWS door become transit keys once given such an alias.
Every operation runs the AWS door's core handlers (CreateKey, Encrypt,
Decrypt, RotateKeyOnDemand, ...), so the same key policies, identity
policies and grants decide, under the same ``kms:`` actions. What Vault has
and AWS KMS has not (``min_decryption_version``, ``min_encryption_version``,
``deletion_allowed``) is one small JSON document per key at
``transit/<key id>`` behind the barrier (``KeyStore.transit_settings``).

A transit ciphertext is ``vault:v<N>:<base64 of keycask's own blob>``: N is
the keycask key version that sealed the blob (its header names it too, and
the two must agree), so Vault's key versions are keycask's rotations.
"""

from __future__ import annotations

import asyncio
import binascii
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import pybase64

from keycask.errors import (
    AccessDeniedException,
    KMSError,
    NotFoundException,
    ValidationException,
)
from keycask.keys.model import (
    SYMMETRIC_DEFAULT_ALGORITHM,
    Alias,
    Key,
    KeySpec,
    KeyUsage,
    alias_arn,
)
from keycask.keys.wire import BLOB_FORMAT_V2, blob_header, encode_context, mrk_blob_header
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import aliases, asymmetric, crypto, deletion, keys, rotation
from keycask.service.core.requests import (
    CreateKeyRequest,
    DecryptRequest,
    DeleteAliasRequest,
    EnableKeyRotationRequest,
    EncryptRequest,
    GenerateDataKeyRequest,
    GenerateRandomRequest,
    GetPublicKeyRequest,
    KeyRequest,
    ListAliasesRequest,
    ReEncryptRequest,
    ScheduleKeyDeletionRequest,
)
from keycask.service.core.resolve import resolve_key, use_key
from keycask.service.core.results import (
    DecryptResult,
    EncryptResult,
    GenerateDataKeyResult,
    GenerateRandomResult,
    GetPublicKeyResult,
    KeyMetadataResult,
    ListAliasesResult,
    ReEncryptResult,
)
from keycask.service.core.transit_requests import (
    DecryptItem,
    EncryptItem,
    ItemsResult,
    Settings,
    TransitConfigRequest,
    TransitCreateRequest,
    TransitDataKeyRequest,
    TransitDecryptRequest,
    TransitEncryptRequest,
    TransitKeyRequest,
    TransitKeyResult,
    TransitListRequest,
    TransitListResult,
    TransitRandomRequest,
    TransitRewrapRequest,
)

# Vault's key types keycask makes, as (KeySpec, KeyUsage).
TYPES: Mapping[str, tuple[KeySpec, KeyUsage]] = {
    "aes256-gcm96": (KeySpec.SYMMETRIC_DEFAULT, KeyUsage.ENCRYPT_DECRYPT),
    "ecdsa-p256": (KeySpec.ECC_NIST_P256, KeyUsage.SIGN_VERIFY),
    "ecdsa-p384": (KeySpec.ECC_NIST_P384, KeyUsage.SIGN_VERIFY),
    "ecdsa-p521": (KeySpec.ECC_NIST_P521, KeyUsage.SIGN_VERIFY),
    "ed25519": (KeySpec.ECC_NIST_EDWARDS25519, KeyUsage.SIGN_VERIFY),
    "rsa-2048": (KeySpec.RSA_2048, KeyUsage.SIGN_VERIFY),
    "rsa-3072": (KeySpec.RSA_3072, KeyUsage.SIGN_VERIFY),
    "rsa-4096": (KeySpec.RSA_4096, KeyUsage.SIGN_VERIFY),
    "hmac": (KeySpec.HMAC_256, KeyUsage.GENERATE_VERIFY_MAC),
}
_BY_SPEC = {spec: name for name, (spec, _) in TYPES.items()}
# Vault's own answer for a version below min_decryption_version.
TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)"
_PREFIX = "vault:v"
_MAX_VERSION = 2**32 - 1
# Associated data is bound as this encryption context pair (authenticated,
# never stored): Vault's AES-GCM associated data, keycask's context.
ASSOCIATED_DATA = "vault-transit:associated_data"
# A derived key's context is bound as this pair (docs/vault-transit.md,
# "Derived keys"): its own key, so it never mixes with associated_data's.
CONTEXT = "vault-transit:context"
# Vault's answer for a derived key used without a context.
MISSING_CONTEXT = (
    "missing 'context' for key derivation; the key was created using a derived key, which "
    "means additional, per-request information must be included in order to perform "
    "operations with the key"
)
# Vault ignores a context sent for a key that is not derived; keycask refuses
# it, so that no caller believes a context is bound when it is not.
NOT_DERIVED = (
    "context is only for derived keys: this key was not created with derived=true, "
    "so the context would not be bound to the ciphertext"
)
# EnableKeyRotation's RotationPeriodInDays bounds (botocore's model, which the
# AWS door's codec checks; this door's requests do not pass through it).
_MIN_ROTATION_DAYS, _MAX_ROTATION_DAYS = 90, 2560


def alias_name(mount: str, name: str) -> str:
    return f"alias/{mount}/{name}"


# An AWS alias name's characters and length (botocore's AliasNameType): a
# transit key is named by its alias, which the AWS door must be able to name
# (and delete) too. Vault allows more (dots, for one); keycask refuses them.
_KEY_NAME = re.compile(r"[a-zA-Z0-9_-]+", re.ASCII)
_ALIAS_MAX = 256


def check_key_name(mount: str, name: str) -> None:
    """ValidationException unless ``name`` makes an alias the AWS door
    accepts: letters, digits, ``_`` and ``-``, the whole alias at most 256
    characters. A name arrives as its raw path segment, so ``..`` and
    percent-encoded bytes are refused here, never decoded into another path."""
    if _KEY_NAME.fullmatch(name) is None:
        raise ValidationException(
            f"invalid key name {name[:64]!r}: keycask names a transit key by an AWS alias, "
            "so it may hold only letters, digits, '_' and '-'"
        )
    if len(alias_name(mount, name)) > _ALIAS_MAX:
        raise ValidationException(
            f"invalid key name: alias/{mount}/<name> must be at most {_ALIAS_MAX} characters"
        )
    # The mount path check keeps reserved prefixes out already; asked again
    # here because this door writes its aliases directly, past CreateAlias.
    reserved = aliases.reserved_for_another_door(alias_name(mount, name), "vault-transit")
    if reserved is not None:
        raise ValidationException(f"invalid key name: {reserved}")


def vault_type(key: Key) -> str:
    """The Vault type a keycask key shows through transit."""
    return _BY_SPEC.get(key.key_spec, key.key_spec.value.lower())


# -- keys --


async def resolve_transit_key(deps: Deps, call: Call, mount: str, name: str) -> Key:
    """The transit key ``name`` (not authorized: the core operation that
    uses it authorizes); NotFoundException when the mount has no such key."""
    try:
        return (await resolve_key(deps.keys, call, alias_name(mount, name), allow_alias=True)).value
    except NotFoundException:
        raise NotFoundException(f"no such key {name!r} in mount {mount!r}") from None


async def settings_of(deps: Deps, key: Key) -> Settings:
    return Settings.from_doc((await deps.keys.transit_settings(key.key_id)).value)


def _create_request(req: TransitCreateRequest, kind: tuple[KeySpec, KeyUsage]) -> CreateKeyRequest:
    spec, usage = kind
    return CreateKeyRequest(
        description=f"Vault Transit key {req.mount}/{req.name}",
        key_spec=spec.value,
        key_usage=usage.value,
    )


async def prepare_create(deps: Deps, call: Call, req: TransitCreateRequest) -> None:
    """An RSA key's material, made before the write lock is taken (the
    lock is held while the alias is checked and made, and generating a
    4096-bit key takes seconds): nothing is made for a name in use or a
    request that create_key will refuse anyway."""
    kind = TYPES.get(req.type)
    if kind is None or req.derived:
        return
    check_key_name(req.mount, req.name)
    alias = alias_name(req.mount, req.name)
    if await deps.keys.get_alias(call.account, call.region, alias):
        return
    # Both rights create_key will need, so that no one who may not make the
    # transit key spends the CPU.
    await call.authorize("kms:CreateAlias", resource=alias_arn(call.region, call.account, alias))
    await keys.prepare_material(call, _create_request(req, kind))


async def create_key(deps: Deps, call: Call, req: TransitCreateRequest) -> Outcome:
    """CreateKey, then an alias naming it (kms:CreateKey, then
    kms:CreateAlias on the alias). A key that exists already is left as it
    is, as Vault does, if its type is the one asked for."""
    check_key_name(req.mount, req.name)
    kind = TYPES.get(req.type)
    if kind is None:
        raise ValidationException(f"unknown key type {req.type[:64]!r}")
    if req.derived and kind[0] is not KeySpec.SYMMETRIC_DEFAULT:
        raise ValidationException(
            f"derived is not supported for key type {req.type}: keycask derives "
            "aes256-gcm96 keys only"
        )
    alias = alias_name(req.mount, req.name)
    existing = await deps.keys.get_alias(call.account, call.region, alias)
    if existing is not None:
        key = await resolve_transit_key(deps, call, req.mount, req.name)
        await call.authorize("kms:DescribeKey", key)
        if vault_type(key) != req.type:
            raise ValidationException(
                f"key {req.name!r} exists with type {vault_type(key)}, not {req.type}"
            )
        if req.derived and not (await settings_of(deps, key)).derived:
            raise ValidationException(f"key {req.name!r} exists and is not derived")
        return Outcome(None)
    created = await keys.create_key(deps, call, _create_request(req, kind))
    result = created.result
    assert isinstance(result, KeyMetadataResult)
    await call.authorize("kms:CreateAlias", resource=alias_arn(call.region, call.account, alias))
    # What CreateAlias stages, for a key that exists only in this outcome's
    # writes so far (the aliases handler would look it up in the store).
    now = deps.clock.now()
    new_alias = Alias(
        alias, call.account, call.region, uuid.UUID(result.key_metadata.key_id), now, now
    )
    writes = [*created.writes, *deps.keys.stage_put_alias(new_alias, expect=0)]
    if req.derived:
        writes.append(
            deps.keys.stage_transit_settings(new_alias.target, Settings(derived=True).to_doc(), 0)
        )
    call.detail = (
        f"transit key {req.mount}/{req.name} ({req.type}{', derived' if req.derived else ''})"
    )
    return Outcome(None, writes)


async def read_key(deps: Deps, call: Call, req: TransitKeyRequest) -> Outcome:
    key = (
        await use_key(
            deps.keys, call, alias_name(req.mount, req.name), "kms:DescribeKey", allow_alias=True
        )
    ).value
    public = None
    if key.key_spec.is_asymmetric:
        got = await asymmetric.get_public_key(deps, call, GetPublicKeyRequest(key_id=key.arn))
        assert isinstance(got.result, GetPublicKeyResult)
        public = got.result.public_key
    settings = await settings_of(deps, key)
    return Outcome(TransitKeyResult(req.name, vault_type(key), key, settings, public))


async def list_keys(deps: Deps, call: Call, req: TransitListRequest) -> Outcome:
    prefix = alias_name(req.mount, "")
    names: list[str] = []
    marker = None
    while True:
        out = await aliases.list_aliases(deps, call, ListAliasesRequest(limit=100, marker=marker))
        result = out.result
        assert isinstance(result, ListAliasesResult)
        # A name with a slash is another mount's (or no transit key's).
        names.extend(
            e.alias_name[len(prefix) :]
            for e in result.aliases
            if e.alias_name.startswith(prefix) and "/" not in e.alias_name[len(prefix) :]
        )
        if not result.truncated or result.next_marker is None:
            break
        marker = result.next_marker
    if not names:
        raise NotFoundException("")  # Vault answers a LIST of nothing 404
    return Outcome(TransitListResult(tuple(sorted(names))))


async def rotate_key(deps: Deps, call: Call, req: TransitKeyRequest) -> Outcome:
    key = await resolve_transit_key(deps, call, req.mount, req.name)
    # RotateKeyOnDemand takes no alias: the key the alias names, by ARN.
    return await rotation.rotate_key_on_demand(deps, call, KeyRequest(key_id=key.arn))


async def config_key(deps: Deps, call: Call, req: TransitConfigRequest) -> Outcome:
    """Vault's per-key settings, kept beside the key. Authorized as
    kms:PutKeyPolicy: like a key policy they restrict who may use the key
    (old ciphertexts) and protect it (deletion), so whoever may only
    describe or use a key must not loosen them."""
    key = (
        await use_key(
            deps.keys, call, alias_name(req.mount, req.name), "kms:PutKeyPolicy", allow_alias=True
        )
    ).value
    stored = await deps.keys.transit_settings(key.key_id)
    old = Settings.from_doc(stored.value)
    latest = key.current_version
    min_dec = old.min_decryption_version
    if req.min_decryption_version is not None:
        min_dec = req.min_decryption_version
    min_enc = old.min_encryption_version
    if req.min_encryption_version is not None:
        min_enc = req.min_encryption_version
    min_dec = max(min_dec, 1)
    if min_dec > latest:
        raise ValidationException("cannot set min_decryption_version newer than the key's latest")
    if min_enc < 0 or min_enc > latest:
        raise ValidationException("cannot set min_encryption_version newer than the key's latest")
    if min_enc and min_enc < min_dec:
        raise ValidationException(
            "min_encryption_version must be 0 or at least min_decryption_version"
        )
    # Trimmed versions have no material: neither floor may reach below them.
    if min_dec < old.min_available_version:
        raise ValidationException(
            "min_decryption_version cannot be less than min_available_version "
            f"({old.min_available_version}): the versions below it were trimmed"
        )
    if old.min_available_version and min_enc < old.min_available_version:
        # 0 (the latest) too: Vault refuses it once versions were trimmed.
        raise ValidationException(
            "min_encryption_version cannot be less than min_available_version "
            f"({old.min_available_version}): the versions below it were trimmed"
        )
    if key.mrk is not None and (min_dec > 1 or min_enc > 0):
        # The settings are this copy's; the versions are the whole set's, and
        # a floor held in one region only would not hold in the others.
        raise ValidationException(
            "min_decryption_version and min_encryption_version are not supported for "
            "multi-Region keys: every copy, in every region, shares their versions"
        )
    new = Settings(
        min_dec,
        min_enc,
        old.deletion_allowed if req.deletion_allowed is None else req.deletion_allowed,
        old.derived,
        old.min_available_version,
    )
    call.detail = (
        f"transit settings: min_decryption_version {new.min_decryption_version}, "
        f"min_encryption_version {new.min_encryption_version}, "
        f"deletion_allowed {str(new.deletion_allowed).lower()}"
    )
    writes = []
    if new != old or not stored.revision:
        writes.append(deps.keys.stage_transit_settings(key.key_id, new.to_doc(), stored.revision))
    if req.auto_rotate_period is not None:
        writes.extend(await _auto_rotate(deps, call, key, req.auto_rotate_period))
    return Outcome(None, writes)


async def _auto_rotate(deps: Deps, call: Call, key: Key, seconds: int) -> list[Write]:
    """auto_rotate_period as AWS KMS's automatic rotation: 0 is
    DisableKeyRotation, a whole number of days from 90 to 2560
    EnableKeyRotation with that period (kms:EnableKeyRotation,
    kms:DisableKeyRotation)."""
    if seconds == 0:
        out = await rotation.disable_key_rotation(deps, call, KeyRequest(key_id=key.arn))
        return list(out.writes)
    days, rest = divmod(seconds, 86400)
    if rest or not _MIN_ROTATION_DAYS <= days <= _MAX_ROTATION_DAYS:
        raise ValidationException(
            "auto_rotate_period must be 0 or a whole number of days from "
            f"{_MIN_ROTATION_DAYS} to {_MAX_ROTATION_DAYS} "
            "(AWS KMS's automatic rotation periods)"
        )
    out = await rotation.enable_key_rotation(
        deps, call, EnableKeyRotationRequest(key_id=key.arn, rotation_period_in_days=days)
    )
    return list(out.writes)


# -- encrypt / decrypt --


def _context(
    settings: Settings, associated_data: str | None, context: str | None
) -> dict[str, str] | None:
    """The encryption context of a transit item: associated_data and a
    derived key's context, each under its own reserved key."""
    if settings.derived and not context:
        raise ValidationException(MISSING_CONTEXT)
    if context and not settings.derived:
        raise ValidationException(NOT_DERIVED)
    pairs: dict[str, str] = {}
    if associated_data is not None:
        pairs[ASSOCIATED_DATA] = associated_data
    if context:
        pairs[CONTEXT] = context
    return pairs or None


def _version_of(blob: bytes) -> int:
    if blob[:1] == bytes((BLOB_FORMAT_V2,)):
        return mrk_blob_header(blob)[1]
    return blob_header(blob)[1]


def ciphertext(version: int, blob: bytes) -> str:
    return f"{_PREFIX}{version}:{pybase64.b64encode_as_string(blob)}"


def parse_ciphertext(text: str, *, what: str = "ciphertext") -> tuple[int, bytes]:
    """(version, bytes) of ``vault:v<N>:<base64>`` (a ciphertext, signature
    or hmac); ValidationException for anything else."""
    if not text.startswith(_PREFIX):
        raise ValidationException(f"invalid {what}: no prefix")
    number, sep, encoded = text[len(_PREFIX) :].partition(":")
    if not sep or not number.isascii() or not number.isdigit() or len(number) > 10:
        raise ValidationException(f"invalid {what}: bad version")
    version = int(number)
    if not 1 <= version <= _MAX_VERSION:
        raise ValidationException(f"invalid {what}: bad version")
    try:
        blob = pybase64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException(f"invalid {what}: bad base64") from None
    if not blob:
        raise ValidationException(f"invalid {what}: empty")
    return version, blob


_Item = TypeVar("_Item")
# Items a batch runs between two yields to the event loop: one item is tens
# of microseconds, so a yield every 32 keeps a stall to about a millisecond.
_YIELD_EVERY = 32


def _sealed(blob: bytes) -> dict[str, Any]:
    """An encrypt or rewrap item's answer: the ciphertext and its version."""
    version = _version_of(blob)
    return {"ciphertext": ciphertext(version, blob), "key_version": version}


async def each_item(
    call: Call,
    items: Sequence[_Item | KMSError],
    batch: bool,
    answer: Callable[[_Item], Awaitable[dict[str, Any]]],
) -> Outcome:
    """Vault's rule for batch_input: an item that could not be read, or whose
    operation failed, is that item's error in a batch (the others go on) and
    the request's error otherwise. A refusal (AccessDenied) refuses the whole
    request: a caller learns nothing item by item that it may not do.

    The request has one audit record, so it names every distinct encryption
    context its items used (each core operation sets the call's context to
    its own): a batch cannot hide one item's context behind the last one's.
    The list is bounded by the request body's size limit."""
    answers: list[dict[str, Any] | KMSError] = []
    contexts: dict[bytes, Mapping[str, str]] = {}
    try:
        for count, item in enumerate(items, 1):
            if count % _YIELD_EVERY == 0:
                # A long batch lets the loop serve other requests between items.
                await asyncio.sleep(0)
            if isinstance(item, KMSError):
                answers.append(item)
                continue
            call.encryption_context = None
            try:
                answers.append(await answer(item))
            except AccessDeniedException:
                raise
            except KMSError as error:
                if not batch:
                    raise
                answers.append(error)
            finally:
                used = call.encryption_context
                if used:
                    contexts.setdefault(orjson.dumps(used, option=orjson.OPT_SORT_KEYS), used)
    finally:
        if batch:
            call.encryption_context = next(iter(contexts.values())) if len(contexts) == 1 else None
            call.detail = (
                f"batch of {len(items)} items, {len(contexts)} distinct encryption "
                f"contexts: [{b','.join(contexts).decode()}]"
            )
    return Outcome(ItemsResult(tuple(answers), batch))


async def encrypt(deps: Deps, call: Call, req: TransitEncryptRequest) -> Outcome:
    ref = alias_name(req.mount, req.name)
    # Not authorized here: each item's core operation authorizes under its
    # own encryption context, and a refusal refuses the whole request.
    key = await resolve_transit_key(deps, call, req.mount, req.name)
    settings = await settings_of(deps, key)

    async def one(item: EncryptItem) -> dict[str, Any]:
        wanted = item.key_version or key.current_version
        if not 1 <= wanted <= key.current_version:
            raise ValidationException(
                f"invalid key version {wanted}: the latest is {key.current_version}"
            )
        if wanted < settings.min_encryption_version:
            raise ValidationException(
                "requested version for encryption is less than the minimum encryption key version"
            )
        context = _context(settings, item.associated_data, item.context)
        # No key_version: the key's primary (the latest, unless the Cloud
        # KMS door chose another: crypto.seal_for). A key_version named is
        # that version, whatever the primary.
        named = item.key_version and key.key_spec is KeySpec.SYMMETRIC_DEFAULT
        if wanted == key.current_version and not named:
            out = await crypto.encrypt(
                deps,
                call,
                EncryptRequest(key_id=ref, plaintext=item.plaintext, encryption_context=context),
            )
        else:
            out = await _encrypt_older(deps, call, ref, item.plaintext, context, version=wanted)
        result = out.result
        assert isinstance(result, EncryptResult)
        return _sealed(result.ciphertext_blob)

    return await each_item(call, req.items, req.batch, one)


async def _encrypt_older(
    deps: Deps,
    call: Call,
    ref: str,
    plaintext: bytes,
    context: dict[str, str] | None,
    *,
    version: int,
) -> Outcome:
    """Encrypt under an older version (Vault's key_version): what Encrypt
    checks, with the same action, state and condition keys, then the blob
    sealed under that version's material."""
    call.encryption_context = context
    call.conditions["kms:EncryptionAlgorithm"] = SYMMETRIC_DEFAULT_ALGORITHM
    key = (
        await use_key(deps.keys, call, ref, "kms:Encrypt", state="Encrypt", allow_alias=True)
    ).value
    if key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise ValidationException("key_version applies to aes256-gcm96 keys only")
    blob, _ = await crypto.seal_for(
        deps, call, key, plaintext, encode_context(context), version=version
    )
    return Outcome(EncryptResult(blob, key.arn, SYMMETRIC_DEFAULT_ALGORITHM))


async def decrypt(deps: Deps, call: Call, req: TransitDecryptRequest) -> Outcome:
    ref = alias_name(req.mount, req.name)
    # Not authorized here: each item's core operation authorizes under its
    # own encryption context, and a refusal refuses the whole request.
    key = await resolve_transit_key(deps, call, req.mount, req.name)
    settings = await settings_of(deps, key)

    async def one(item: DecryptItem) -> dict[str, Any]:
        context = _context(settings, item.associated_data, item.context)
        blob = await _checked_blob(deps, key, item.ciphertext)
        out = await crypto.decrypt(
            deps,
            call,
            DecryptRequest(
                ciphertext_blob=blob,
                encryption_context=context,
                key_id=ref,
            ),
        )
        result = out.result
        assert isinstance(result, DecryptResult)
        return {"plaintext": pybase64.b64encode_as_string(result.plaintext)}

    return await each_item(call, req.items, req.batch, one)


# -- delete, rewrap, data keys, random --


async def delete_key(deps: Deps, call: Call, req: TransitKeyRequest) -> Outcome:
    """Vault deletes a key at once, and only with deletion_allowed; keycask
    schedules the key's deletion with the shortest waiting period (7 days,
    ScheduleKeyDeletion) and removes its transit alias (DeleteAlias), so
    the name is free at once and the key can still be recovered through
    the AWS door (CancelKeyDeletion) until the period ends."""
    key = await resolve_transit_key(deps, call, req.mount, req.name)
    settings = await settings_of(deps, key)
    if not settings.deletion_allowed:
        raise ValidationException("deletion is not allowed for this key")
    scheduled = await deletion.schedule_key_deletion(
        deps,
        call,
        ScheduleKeyDeletionRequest(
            key_id=key.arn, pending_window_in_days=deletion.MIN_PENDING_WINDOW_DAYS
        ),
    )
    unaliased = await aliases.delete_alias(
        deps, call, DeleteAliasRequest(alias_name=alias_name(req.mount, req.name))
    )
    call.detail = (
        f"transit key {req.mount}/{req.name} deleted: {key.arn} scheduled for deletion in "
        f"{deletion.MIN_PENDING_WINDOW_DAYS} days, its alias removed"
    )
    return Outcome(None, [*scheduled.writes, *unaliased.writes])


async def _checked_blob(deps: Deps, key: Key, text: str) -> bytes:
    """The keycask blob of a transit ciphertext of ``key``, once its version
    is allowed by min_decryption_version (checked before anything is opened)."""
    version, blob = parse_ciphertext(text)
    settings = await settings_of(deps, key)
    if version < settings.min_decryption_version:
        raise ValidationException(TOO_OLD)
    try:
        inner = _version_of(blob)
    except (KMSError, ValueError):
        raise ValidationException("invalid ciphertext: not a keycask ciphertext") from None
    if inner != version:
        raise ValidationException("invalid ciphertext: version does not match")
    return blob


async def rewrap(deps: Deps, call: Call, req: TransitRewrapRequest) -> Outcome:
    """ReEncrypt from the key to itself (kms:ReEncryptFrom and kms:ReEncryptTo):
    the plaintext never leaves keycask, and the new ciphertext is under the
    latest version."""
    ref = alias_name(req.mount, req.name)
    # Not authorized here: each item's core operation authorizes under its
    # own encryption context, and a refusal refuses the whole request.
    key = await resolve_transit_key(deps, call, req.mount, req.name)
    settings = await settings_of(deps, key)

    async def one(item: DecryptItem) -> dict[str, Any]:
        context = _context(settings, item.associated_data, item.context)
        blob = await _checked_blob(deps, key, item.ciphertext)
        out = await crypto.re_encrypt(
            deps,
            call,
            ReEncryptRequest(
                ciphertext_blob=blob,
                destination_key_id=ref,
                source_encryption_context=context,
                source_key_id=ref,
                destination_encryption_context=context,
            ),
        )
        result = out.result
        assert isinstance(result, ReEncryptResult)
        return _sealed(result.ciphertext_blob)

    return await each_item(call, req.items, req.batch, one)


async def datakey(deps: Deps, call: Call, req: TransitDataKeyRequest) -> Outcome:
    """GenerateDataKey (``plaintext``) or GenerateDataKeyWithoutPlaintext
    (``wrapped``) with NumberOfBytes = bits / 8."""
    if req.bits not in (128, 256, 512):
        raise ValidationException(f"invalid bits {req.bits}: use 128, 256 or 512")
    key = await resolve_transit_key(deps, call, req.mount, req.name)
    settings = await settings_of(deps, key)
    request = GenerateDataKeyRequest(
        key_id=alias_name(req.mount, req.name),
        number_of_bytes=req.bits // 8,
        encryption_context=_context(settings, req.associated_data, req.context),
    )
    if req.with_plaintext:
        out = await crypto.generate_data_key(deps, call, request)
    else:
        out = await crypto.generate_data_key_without_plaintext(deps, call, request)
    result = out.result
    assert isinstance(result, GenerateDataKeyResult)
    version = _version_of(result.ciphertext_blob)
    doc: dict[str, Any] = {
        "ciphertext": ciphertext(version, result.ciphertext_blob),
        "key_version": version,
    }
    if result.plaintext is not None:
        doc["plaintext"] = pybase64.b64encode_as_string(result.plaintext)
    return Outcome(ItemsResult((doc,), False))


async def random(deps: Deps, call: Call, req: TransitRandomRequest) -> Outcome:
    """GenerateRandom (kms:GenerateRandom), 1 to 1024 bytes as AWS allows."""
    if not 1 <= req.number_of_bytes <= 1024:
        raise ValidationException("bytes must be from 1 to 1024")
    if req.format not in ("base64", "hex"):
        raise ValidationException(f"unsupported encoding format {req.format[:16]!r}")
    out = await crypto.generate_random(
        deps, call, GenerateRandomRequest(number_of_bytes=req.number_of_bytes)
    )
    result = out.result
    assert isinstance(result, GenerateRandomResult)
    data = result.plaintext
    shown = data.hex() if req.format == "hex" else pybase64.b64encode_as_string(data)
    return Outcome(ItemsResult(({"random_bytes": shown},), False))
