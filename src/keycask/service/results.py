"""Typed results; field names are the snake_case of the model's output members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keycask.keys.model import SYMMETRIC_DEFAULT_ALGORITHM, Key, KeyState, Tag


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    aws_account_id: str
    key_id: str
    arn: str
    creation_date: datetime
    enabled: bool
    description: str
    key_usage: str
    key_state: str
    origin: str
    key_manager: str
    customer_master_key_spec: str
    key_spec: str
    encryption_algorithms: tuple[str, ...]
    multi_region: bool
    deletion_date: datetime | None = None
    valid_to: datetime | None = None
    expiration_model: str | None = None
    current_key_material_id: str | None = None

    @classmethod
    def of(cls, key: Key) -> KeyMetadata:
        current = key.current
        return cls(
            aws_account_id=key.account,
            key_id=str(key.key_id),
            arn=key.arn,
            creation_date=key.created,
            enabled=key.state is KeyState.ENABLED,
            description=key.description,
            key_usage=key.key_usage.value,
            key_state=key.state.value,
            origin=key.origin.value,
            key_manager="CUSTOMER",
            customer_master_key_spec=key.key_spec.value,
            key_spec=key.key_spec.value,
            encryption_algorithms=(SYMMETRIC_DEFAULT_ALGORITHM,),
            multi_region=False,
            deletion_date=key.deletion_date,
            valid_to=key.valid_to,
            expiration_model=key.expiration_model,
            current_key_material_id=None if current is None else current.material_id,
        )


@dataclass(frozen=True, slots=True)
class KeyMetadataResult:
    key_metadata: KeyMetadata


@dataclass(frozen=True, slots=True)
class KeyListEntry:
    key_id: str
    key_arn: str


@dataclass(frozen=True, slots=True)
class ListKeysResult:
    keys: list[KeyListEntry]
    truncated: bool
    next_marker: str | None = None


@dataclass(frozen=True, slots=True)
class AliasListEntry:
    alias_name: str
    alias_arn: str
    target_key_id: str
    creation_date: datetime
    last_updated_date: datetime


@dataclass(frozen=True, slots=True)
class ListAliasesResult:
    aliases: list[AliasListEntry]
    truncated: bool
    next_marker: str | None = None


@dataclass(frozen=True, slots=True)
class ListResourceTagsResult:
    tags: list[Tag]
    truncated: bool
    next_marker: str | None = None


@dataclass(frozen=True, slots=True)
class GetKeyPolicyResult:
    policy: str
    policy_name: str


@dataclass(frozen=True, slots=True)
class ListKeyPoliciesResult:
    policy_names: list[str]
    truncated: bool


@dataclass(frozen=True, slots=True)
class EncryptResult:
    ciphertext_blob: bytes
    key_id: str
    encryption_algorithm: str = SYMMETRIC_DEFAULT_ALGORITHM


@dataclass(frozen=True, slots=True)
class DecryptResult:
    key_id: str
    plaintext: bytes
    encryption_algorithm: str = SYMMETRIC_DEFAULT_ALGORITHM
    key_material_id: str | None = None

    def __repr__(self) -> str:
        return f"DecryptResult(key_id={self.key_id!r}, plaintext=<redacted>)"


@dataclass(frozen=True, slots=True)
class ReEncryptResult:
    ciphertext_blob: bytes
    source_key_id: str
    key_id: str
    source_encryption_algorithm: str = SYMMETRIC_DEFAULT_ALGORITHM
    destination_encryption_algorithm: str = SYMMETRIC_DEFAULT_ALGORITHM


@dataclass(frozen=True, slots=True)
class GenerateDataKeyResult:
    ciphertext_blob: bytes
    key_id: str
    plaintext: bytes | None = None
    key_material_id: str | None = None

    def __repr__(self) -> str:
        return f"GenerateDataKeyResult(key_id={self.key_id!r}, plaintext=<redacted>)"


@dataclass(frozen=True, slots=True)
class GenerateRandomResult:
    plaintext: bytes

    def __repr__(self) -> str:
        return "GenerateRandomResult(plaintext=<redacted>)"


@dataclass(frozen=True, slots=True)
class KeyIdResult:
    key_id: str


@dataclass(frozen=True, slots=True)
class GetKeyRotationStatusResult:
    key_rotation_enabled: bool
    key_id: str
    rotation_period_in_days: int | None = None
    next_rotation_date: datetime | None = None
    on_demand_rotation_start_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class RotationsListEntry:
    key_id: str
    key_material_id: str
    key_material_state: str
    rotation_date: datetime | None = None
    rotation_type: str | None = None
    # imported material only
    key_material_description: str | None = None
    import_state: str | None = None
    expiration_model: str | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class ListKeyRotationsResult:
    rotations: list[RotationsListEntry]
    truncated: bool
    next_marker: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleKeyDeletionResult:
    key_id: str
    deletion_date: datetime
    key_state: str
    pending_window_in_days: int


@dataclass(frozen=True, slots=True)
class GetParametersForImportResult:
    key_id: str
    import_token: bytes
    public_key: bytes
    parameters_valid_to: datetime


@dataclass(frozen=True, slots=True)
class ImportKeyMaterialResult:
    key_id: str
    key_material_id: str | None = None


@dataclass(frozen=True, slots=True)
class KeyLastUsageData:
    operation: str | None = None
    timestamp: datetime | None = None
    cloud_trail_event_id: str | None = None
    kms_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class GetKeyLastUsageResult:
    key_id: str
    key_creation_date: datetime
    tracking_start_date: datetime
    key_last_usage: KeyLastUsageData | None = None
