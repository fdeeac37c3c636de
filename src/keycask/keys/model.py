"""Keys, their states and aliases as the KMS sees them (no storage, no HTTP)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class KeyState(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    PENDING_IMPORT = "PendingImport"


class KeyUsage(StrEnum):
    ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"


class KeySpec(StrEnum):
    SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"


SYMMETRIC_DEFAULT_ALGORITHM = "SYMMETRIC_DEFAULT"


def key_arn(region: str, account: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def alias_arn(region: str, account: str, alias_name: str) -> str:
    return f"arn:aws:kms:{region}:{account}:{alias_name}"


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Tag:
    tag_key: str
    tag_value: str


@dataclass(frozen=True, slots=True)
class Key:
    """A KMS key's metadata. Key material lives apart, one entry per version."""

    key_id: uuid.UUID
    account: str
    region: str
    created: datetime
    description: str
    state: KeyState
    policy: str
    key_usage: KeyUsage = KeyUsage.ENCRYPT_DECRYPT
    key_spec: KeySpec = KeySpec.SYMMETRIC_DEFAULT
    origin: str = "AWS_KMS"
    current_version: int = 1
    tags: tuple[Tag, ...] = ()
    # Derived, computed once: every request names the key by its ARN.
    arn: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arn", key_arn(self.region, self.account, str(self.key_id)))

    def replace(self, **changes: Any) -> Key:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        return {
            "key_id": str(self.key_id),
            "account": self.account,
            "region": self.region,
            "created": _ts(self.created),
            "description": self.description,
            "state": self.state.value,
            "policy": self.policy,
            "key_usage": self.key_usage.value,
            "key_spec": self.key_spec.value,
            "origin": self.origin,
            "current_version": self.current_version,
            "tags": [[t.tag_key, t.tag_value] for t in self.tags],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Key:
        return cls(
            key_id=uuid.UUID(doc["key_id"]),
            account=doc["account"],
            region=doc["region"],
            created=_dt(doc["created"]),
            description=doc["description"],
            state=KeyState(doc["state"]),
            policy=doc["policy"],
            key_usage=KeyUsage(doc["key_usage"]),
            key_spec=KeySpec(doc["key_spec"]),
            origin=doc["origin"],
            current_version=int(doc["current_version"]),
            tags=tuple(Tag(k, v) for k, v in doc["tags"]),
        )


@dataclass(frozen=True, slots=True)
class Alias:
    name: str  # "alias/..."
    account: str
    region: str
    target: uuid.UUID
    created: datetime
    updated: datetime

    @property
    def arn(self) -> str:
        return alias_arn(self.region, self.account, self.name)

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "account": self.account,
            "region": self.region,
            "target": str(self.target),
            "created": _ts(self.created),
            "updated": _ts(self.updated),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Alias:
        return cls(
            name=doc["name"],
            account=doc["account"],
            region=doc["region"],
            target=uuid.UUID(doc["target"]),
            created=_dt(doc["created"]),
            updated=_dt(doc["updated"]),
        )


def default_key_policy(account: str) -> str:
    """The policy AWS attaches when CreateKey is given none: the account's
    root (and so its IAM policies) may do everything with the key."""
    return (
        '{\n  "Version" : "2012-10-17",\n  "Id" : "key-default-1",\n  "Statement" : [ {\n'
        '    "Sid" : "Enable IAM User Permissions",\n    "Effect" : "Allow",\n'
        f'    "Principal" : {{\n      "AWS" : "arn:aws:iam::{account}:root"\n    }},\n'
        '    "Action" : "kms:*",\n    "Resource" : "*"\n  } ]\n}'
    )
