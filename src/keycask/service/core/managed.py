"""AWS managed keys: the keys behind the predefined ``alias/aws/<service>``
aliases, made on first use as AWS makes them.

AWS lists these aliases in every account and Region before their keys exist
(ListAliases shows them without a TargetKeyId); the first DescribeKey,
Encrypt, GenerateDataKey, ... that names one creates the key (KeyManager
AWS, symmetric, rotating every year) and points the alias at it. Code
written for AWS that names ``alias/aws/s3`` or ``alias/aws/secretsmanager``
therefore works here unchanged.

Nobody manages such a key: its policy allows the account's principals the
cryptographic operations and the read-only ones (as AWS's managed key
policies do), and nothing else, so PutKeyPolicy, DisableKey,
ScheduleKeyDeletion, EnableKeyRotation, TagResource, CreateAlias onto it...
answer AccessDeniedException, whoever asks, as in AWS. Its alias is never
changed or deleted (``alias/aws/`` names are refused by the alias
operations).

AWS's policies also require ``kms:ViaService`` (the call must come through
the service the key is for). keycask has no services calling on a
principal's behalf, so that condition would allow nothing; in its place
keycask asks what AWS's condition stands for, that the caller is authorized
for it: the policy delegates the cryptographic operations to the account
(``arn:aws:iam::<account>:root``), so a caller's own identity policies must
allow them, and ``kms:CallerAccount`` keeps other accounts out even if a
grant or policy would let them in.

Only a caller who may use the key gets it made: the call is authorized
against the key it would make before anything is written, so a principal
with no permission cannot fill the store with keys (one set per Region it
signs for).

Creation is race-free across workers and nodes: it runs under the store's
exclusive write lock and re-reads the alias there, so two first uses at once
make one key; the key and its alias are one commit, audited (principal
``keycask``, operation ``CreateKey``) before it lands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta

import orjson

from keycask.audit import AuditLog, AuditRecord
from keycask.crypto import KeyMaterial, key_material_id
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import (
    DEFAULT_ROTATION_DAYS,
    Alias,
    Key,
    KeyState,
    KeyVersion,
    iam_root_arn,
)
from keycask.ports import Clock, Coordinator

MANAGED_PREFIX = "alias/aws/"
MANAGED_PRINCIPAL = "keycask"

# The services whose alias/aws/<service> keycask lists and creates on first
# use: those a fresh AWS account lists (ListAliases), by their alias names.
# Other alias/aws/ names do not exist, as in AWS.
MANAGED_SERVICES: tuple[str, ...] = (
    "acm",
    "backup",
    "cloud9",
    "codecommit",
    "codeartifact",
    "connect",
    "dms",
    "dynamodb",
    "ebs",
    "elasticfilesystem",
    "es",
    "fsx",
    "glue",
    "kafka",
    "kinesis",
    "kinesisvideo",
    "lambda",
    "lightsail",
    "rds",
    "redshift",
    "s3",
    "sagemaker",
    "secretsmanager",
    "sns",
    "sqs",
    "ssm",
    "timestream",
    "xray",
)
MANAGED_ALIASES: tuple[str, ...] = tuple(sorted(MANAGED_PREFIX + s for s in MANAGED_SERVICES))
_MANAGED_SET = frozenset(MANAGED_ALIASES)


def is_managed_alias(name: str) -> bool:
    """A predefined alias/aws/<service> alias keycask creates a key for."""
    return name in _MANAGED_SET


# What AWS's managed key policies allow, minus kms:ViaService (see above).
_CRYPTO_ACTIONS = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:CreateGrant",
    "kms:DescribeKey",
)
_READ_ACTIONS = ("kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant")


def managed_key_policy(account: str, service: str) -> str:
    root = iam_root_arn(account)
    return orjson.dumps(
        {
            "Version": "2012-10-17",
            "Id": f"auto-{service}-1",
            "Statement": [
                {
                    "Sid": f"Allow access through {service} for all principals in the "
                    f"account that are authorized to use {service}",
                    "Effect": "Allow",
                    "Principal": {"AWS": root},
                    "Action": list(_CRYPTO_ACTIONS),
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:CallerAccount": account}},
                },
                {
                    "Sid": "Allow direct access to key metadata to the account",
                    "Effect": "Allow",
                    "Principal": {"AWS": root},
                    "Action": list(_READ_ACTIONS),
                    "Resource": "*",
                },
            ],
        },
        option=orjson.OPT_INDENT_2,
    ).decode()


class ManagedKeys:
    """Makes the AWS managed key of a predefined alias, once."""

    def __init__(
        self,
        keys: KeyStore,
        clock: Clock,
        audit: AuditLog,
        coordinator: Coordinator,
        *,
        wall_clock: Clock,
        refresh: Callable[[], None],
        request_id: Callable[[], str],
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._audit = audit
        self._coordinator = coordinator
        self._wall = wall_clock
        self._refresh = refresh
        self._request_id = request_id

    async def ensure(
        self, account: str, region: str, name: str, *, by: str, request_id: str
    ) -> Stored[Alias] | None:
        """The alias ``name`` (a predefined one), its key made if it has none
        yet. ``by`` and ``request_id`` name the call that needed it (for the
        audit record). Must not be called under ``exclusive`` (it takes it)."""
        if not is_managed_alias(name):
            return None
        keys = self._keys
        async with self._coordinator.exclusive():
            self._refresh()  # another process may have made it meanwhile
            found = await keys.get_alias(account, region, name)
            if found is not None:
                return found
            key, material, alias = self.new_key(account, region, name)
            writes = keys.stage_create(key, material) + keys.stage_put_alias(alias, expect=0)
            record = AuditRecord(
                time=self._wall.now(),
                request_id=self._request_id(),
                operation="CreateKey",
                principal=MANAGED_PRINCIPAL,
                access_key_id=None,
                source_ip=None,
                key_arn=key.arn,
                encryption_context=None,
                decision="none",
                decided_by="AWS managed key created on first use",
                outcome="success",
                error_code=None,
                region=region,
                detail=f"AWS managed key for {name}, first used by {by} in request {request_id}",
            )
            await self._audit.append(record)
            commit = asyncio.ensure_future(keys.commit(writes))
            commit.add_done_callback(lambda _: self._coordinator.committed())
            try:
                await asyncio.shield(commit)
            except Exception:
                await self._audit.append(
                    dataclasses.replace(
                        record, outcome="error", error_code="KMSInternalException",
                        detail=f"{record.detail}: commit failed",
                    )
                )  # fmt: skip
                raise
        return await keys.get_alias(account, region, name)

    def new_key(self, account: str, region: str, name: str) -> tuple[Key, KeyMaterial, Alias]:
        """The key (with its material and alias) ``ensure`` would make; also
        what a caller is authorized against before anything is made."""
        service = name[len(MANAGED_PREFIX) :]
        now = self._clock.now()
        key_id = uuid.uuid4()
        material = KeyMaterial.generate(32)
        key = Key(
            key_id=key_id,
            account=account,
            region=region,
            created=now,
            description=(
                f"Default key that protects my {service} resources when no other key is defined"
            ),
            state=KeyState.ENABLED,
            policy=managed_key_policy(account, service),
            versions=(KeyVersion(1, key_material_id(material, key_id.bytes)),),
            current_version=1,
            last_version=1,
            # AWS rotates its managed keys every year.
            rotation_period_days=DEFAULT_ROTATION_DAYS,
            next_rotation=now + timedelta(days=DEFAULT_ROTATION_DAYS),
            aws_managed=True,
        )
        return key, material, Alias(name, account, region, key_id, now, now)
