"""Key Vault's backup and restore: a key with every version in one blob
that only keycask opens, and only in the account and Region it was made
in.

The blob is keycask's own ciphertext (blob format v1) under a symmetric
keycask key kept for this: one per account and Region, behind the alias
``alias/azure/_backup`` (never a vault's: vault names have no ``_``), made
by keycask on the first backup. Its key policy denies every action to
every principal, so no door can use, change or delete it: the blob opens
only here, in restore, and it is useless outside keycask. Its plaintext
(the versions' PKCS#8 private keys, their attributes, the rotation policy)
is bound to the account and Region as the encryption context
``azure-keyvault:backup``.

A backup is a copy of the key outside its key policy: it needs the right
to change that policy (``kms:PutKeyPolicy`` on every version's key), which
already gives its holder every use of the key. The blob carries each
version's key policy, and restore puts it back on the version's new key.
The blob itself is a secret of its account, as Key Vault's is of its
subscription; restoring it needs ``keycask:RestoreKeyVaultBackup`` (on
``*``, from an identity policy: no ``kms:`` wildcard grants it) besides the
rights to make the keys. Restore makes the key anew
(``kms:CreateKey``, ``kms:ImportKeyMaterial``, ``kms:CreateAlias`` for each
version, as import does), under the name it had, in the vault the request
names; a name that exists is 409 Conflict, as in Key Vault. Each version
is a new keycask key, so the restored versions have new ids.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

import orjson
import pybase64

from keycask.crypto import KeyMaterial, key_material_id
from keycask.errors import (
    InvalidCiphertextException,
    KMSInternalException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.model import (
    Alias,
    Key,
    KeySpec,
    KeyState,
    KeyUsage,
    KeyVersion,
    Origin,
    alias_arn,
)
from keycask.keys.wire import BlobHeader, blob_header, encode_context, open_blob, seal_blob
from keycask.ports import Write
from keycask.service.core import requests as aws
from keycask.service.core.azure import (
    KeyConflict,
    anchor_of,
    gate_write,
    public_der,
    version_key,
)
from keycask.service.core.azure_requests import (
    ALIAS_PREFIX,
    KEY_NAME,
    BackupResult,
    GetRequest,
    KeyBundle,
    KeyRef,
    RestoreRequest,
    RotationPolicy,
    Settings,
    Version,
)
from keycask.service.core.azure_schedule import stage_entries
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import keys
from keycask.service.core.resolve import authorize_key
from keycask.service.core.results import KeyMetadataResult

log = logging.getLogger("keycask")

BACKUP_ALIAS = ALIAS_PREFIX + "_backup"
RESTORE_ACTION = "keycask:RestoreKeyVaultBackup"
CONTEXT_KEY = "azure-keyvault:backup"
MAGIC = b"keycask-azure-backup-v1:"
_POLICY = orjson.dumps(
    {
        "Version": "2012-10-17",
        "Id": "keycask-azure-keyvault-backups",
        "Statement": [
            {
                "Sid": "OnlyKeycaskItselfUsesThisKey",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
).decode()


def _context(call: Call) -> bytes:
    return encode_context({CONTEXT_KEY: f"{call.account}/{call.region}"})


def _shield(key: Key, call: Call) -> Key:
    """``key`` if it is keycask's own backup key of this account and Region:
    symmetric, its policy exactly the deny-all one. Only this door writes
    ``alias/azure/`` names, but a key any door could use must never seal a
    backup (its holder would read the private keys in it; found in review
    when a Vault Transit mount could still write that alias)."""
    if (
        key.policy != _POLICY
        or key.key_spec is not KeySpec.SYMMETRIC_DEFAULT
        or key.origin is not Origin.AWS_KMS  # imported material is known to its importer
        or key.account != call.account
        or key.region != call.region
        or key.custom_key_store_id is not None
    ):
        log.error(
            "%s names key %s, which is not keycask's backup key (its policy lets someone use "
            "it): refusing to back up or restore through it",
            BACKUP_ALIAS,
            key.arn,
        )
        raise KMSInternalException(
            "the Azure Key Vault backup key of this account is not keycask's own; nothing was "
            "backed up or restored (see the server log)"
        )
    return key


async def _backup_key(deps: Deps, call: Call) -> tuple[Key, KeyMaterial, list[Write]]:
    """The account's and Region's backup key, made now if it is not there
    (its writes then go with the backup's)."""
    alias = await deps.keys.get_alias(call.account, call.region, BACKUP_ALIAS)
    if alias is not None:
        stored = await deps.keys.get(alias.value.target)
        material = None if stored is None else await deps.keys.material(alias.value.target, 1)
        if stored is None or material is None:
            raise KMSInternalException("the Azure Key Vault backup key is missing")
        return _shield(stored.value, call), material, []
    now = deps.clock.now()
    key_id = uuid.uuid4()
    material = KeyMaterial.generate(32)
    key = Key(
        key_id=key_id, account=call.account, region=call.region, created=now,
        description="keycask: protects the Azure Key Vault door's key backups in this "
        "account and Region (its policy lets no one use it)",
        state=KeyState.ENABLED, policy=_POLICY,
        versions=(KeyVersion(1, key_material_id(material, key_id.bytes)),),
        current_version=1, last_version=1,
    )  # fmt: skip
    writes = [
        *deps.keys.stage_create(key, material),
        *deps.keys.stage_put_alias(
            Alias(BACKUP_ALIAS, call.account, call.region, key_id, now, now), expect=0
        ),
    ]
    return key, material, writes


async def backup(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    anchor, _, settings = await anchor_of(deps, call, req.ref)
    versions: list[dict[str, Any]] = []
    for entry in settings.versions:
        key = await version_key(deps, call, anchor, entry)
        await authorize_key(call, key, "kms:PutKeyPolicy")
        if key.hsm_object is not None:
            raise UnsupportedOperationException(
                f"Key {settings.name} is HSM-backed (RSA-HSM or EC-HSM): its private key "
                "never leaves the HSM, so keycask cannot put it in a backup."
            )
        private = await deps.keys.material(key.key_id, 1)
        if private is None:
            raise KMSInternalException("key material is missing")
        versions.append({
            "entry": entry.to_doc(),
            "spec": key.key_spec.value,
            "usage": key.key_usage.value,
            "enabled": key.state is KeyState.ENABLED,
            "key_policy": key.policy,
            "pkcs8": pybase64.b64encode(private.reveal()).decode("ascii"),
        })  # fmt: skip
    doc = {
        "name": settings.name,
        "versions": versions,
        "policy": None if settings.policy is None else settings.policy.to_doc(),
    }
    shield, material, writes = await _backup_key(deps, call)
    blob = seal_blob(material, BlobHeader(shield.key_id, 1), orjson.dumps(doc), _context(call))
    call.key_arn = anchor.arn
    call.detail = f"Azure key {req.ref.vault}/{req.ref.name} backed up: {len(versions)} version(s)"
    return Outcome(BackupResult(MAGIC + blob), writes)


def _open(call: Call, shield: Key, material: KeyMaterial, blob: bytes) -> dict[str, Any]:
    refused = ValidationException(
        "The backup blob is not a keycask Azure Key Vault backup of this account and Region."
    )
    if not blob.startswith(MAGIC):
        raise refused
    sealed = blob[len(MAGIC) :]
    try:
        key_id, version = blob_header(sealed)
    except InvalidCiphertextException:
        raise refused from None
    if key_id != shield.key_id or version != 1:
        raise refused
    try:
        doc = orjson.loads(open_blob(material, sealed, _context(call)))
    except InvalidCiphertextException:
        raise refused from None
    assert isinstance(doc, dict)
    return doc


async def restore(deps: Deps, call: Call, req: RestoreRequest) -> Outcome:
    # A right of its own, granted by name (no kms: wildcard holds it): a blob
    # is a private key, and whoever may make keys must not thereby get one
    # back under rights scoped to their own key names (found in review).
    await call.authorize(RESTORE_ACTION)
    alias = await deps.keys.get_alias(call.account, call.region, BACKUP_ALIAS)
    stored = None if alias is None else await deps.keys.get(alias.value.target)
    material = None if alias is None else await deps.keys.material(alias.value.target, 1)
    if stored is None or material is None:
        raise ValidationException(
            "The backup blob is not a keycask Azure Key Vault backup of this account and Region."
        )
    doc = _open(call, _shield(stored.value, call), material, req.blob)
    try:
        # Authenticated: only keycask wrote it; read strictly all the same.
        name = str(doc["name"])
        items = [
            (KeySpec(item["spec"]), KeyUsage(item["usage"]), bool(item["enabled"]),
             KeyMaterial.any_size(pybase64.b64decode(item["pkcs8"])),
             Version.from_doc(item["entry"]), item.get("key_policy"))
            for item in doc["versions"]
        ]  # fmt: skip
        if not all(isinstance(item[5], str | None) for item in items):
            raise TypeError
        if KEY_NAME.fullmatch(name) is None:
            raise ValueError
        policy = None if doc.get("policy") is None else RotationPolicy.from_doc(doc["policy"])
    except (KeyError, ValueError, TypeError):
        raise ValidationException("The backup blob's contents are not readable.") from None
    if not items:
        raise ValidationException("The backup blob holds no version.")
    ref = KeyRef(req.vault, name)
    if await deps.keys.get_alias(call.account, call.region, ref.alias) is not None:
        raise KeyConflict(f"A key named {ref.name} exists already: restore makes it anew.")
    writes: list[Write] = []
    entries: list[Version] = []
    anchor: Key | None = None
    latest: Key | None = None
    now = deps.clock.now()
    for spec, usage, was_enabled, private, old, key_policy in items:
        made: list[Key] = []
        # Each version comes back under the key policy it had: a blob must
        # not turn into a key outside its policy for whoever may create keys
        # (found in review). Its principals are those that exist now.
        kept = (
            None
            if key_policy is None
            else (key_policy, await keys.policy_principals(deps, key_policy))
        )

        def adjust(
            key: Key,
            first: Key | None = anchor,
            enabled: bool = was_enabled,
            made: list[Key] = made,
            kept: tuple[str, tuple[tuple[str, str], ...]] | None = kept,
        ) -> Key:
            if kept is not None:
                key = key.replace(policy=kept[0], policy_principals=kept[1])
            elif first is not None:
                # Later versions hold the first one's policy, as made by create.
                key = key.replace(policy=first.policy, policy_principals=first.policy_principals)
            if not enabled:
                key = key.replace(state=KeyState.DISABLED)
            made.append(key)
            return key

        call.prepared = (spec, private)
        created = await keys.create_key(
            deps,
            call,
            aws.CreateKeyRequest(
                description=f"Azure Key Vault key {ref.vault}/{ref.name} (restored)",
                key_spec=spec.value, key_usage=usage.value,
            ),
            adjust=adjust,
        )  # fmt: skip
        assert isinstance(created.result, KeyMetadataResult)
        key = made[-1]
        await call.authorize("kms:ImportKeyMaterial", key)
        named = ref.alias if anchor is None else ref.version_alias(key.key_id.hex)
        await call.authorize(
            "kms:CreateAlias", resource=alias_arn(call.region, call.account, named)
        )
        writes.extend(created.writes)
        writes.extend(
            deps.keys.stage_put_alias(Alias(named, call.account, call.region, key.key_id, now, now),
                                      expect=0)
        )  # fmt: skip
        entries.append(dataclasses.replace(old, id=key.key_id.hex))
        writes.append(gate_write(deps.keys, entries[-1]))
        anchor = anchor or key
        latest = key
    assert anchor is not None and latest is not None
    settings = Settings(ref.vault, ref.name, tuple(entries), policy=policy)
    writes.append(deps.keys.stage_azure_key(anchor.key_id, settings.to_doc(), 0))
    writes.extend(stage_entries(deps.keys, anchor.key_id, settings, now.timestamp()))
    call.key_arn = anchor.arn
    call.detail = f"Azure key {ref.vault}/{ref.name} restored: {len(entries)} version(s)"
    entry, key = entries[-1], latest

    async def answer() -> object:
        return KeyBundle(ref, req.base, key, entry, await public_der(deps, key))

    return Outcome(None, writes, then=answer)
