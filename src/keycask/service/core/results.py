"""Typed results; field names are the snake_case of the model's output members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keycask.crypto import (
    encapsulation_algorithms,
    encryption_algorithms,
    key_agreement_algorithms,
    mac_algorithms,
    signing_algorithms,
)
from keycask.keys.model import (
    SYMMETRIC_DEFAULT_ALGORITHM,
    Key,
    KeySpec,
    KeyState,
    KeyUsage,
    Tag,
    key_arn,
)


def algorithms_of(key: Key) -> dict[str, tuple[str, ...]]:
    """The algorithm lists DescribeKey and GetPublicKey show: one list, for
    the key's usage."""
    spec = key.key_spec
    if key.key_usage is KeyUsage.ENCRYPT_DECRYPT:
        if spec is KeySpec.SYMMETRIC_DEFAULT:
            return {"encryption_algorithms": (SYMMETRIC_DEFAULT_ALGORITHM,)}
        return {"encryption_algorithms": encryption_algorithms(spec.value)}
    if key.key_usage is KeyUsage.SIGN_VERIFY:
        return {"signing_algorithms": signing_algorithms(spec.value)}
    if key.key_usage is KeyUsage.GENERATE_VERIFY_MAC:
        return {"mac_algorithms": mac_algorithms(spec.value)}
    if key.key_usage is KeyUsage.ENCAPSULATE_DECAPSULATE:
        return {"encapsulation_algorithms": encapsulation_algorithms(spec.value)}
    return {"key_agreement_algorithms": key_agreement_algorithms(spec.value)}


@dataclass(frozen=True, slots=True)
class MultiRegionKey:
    arn: str
    region: str


@dataclass(frozen=True, slots=True)
class MultiRegionConfiguration:
    multi_region_key_type: str
    primary_key: MultiRegionKey
    replica_keys: tuple[MultiRegionKey, ...]

    @classmethod
    def of(cls, key: Key) -> MultiRegionConfiguration | None:
        """DescribeKey's view of ``key``'s set, from the copy in the
        caller's region (every copy holds the set's regions alike)."""
        if key.mrk is None or key.primary_region is None:
            return None
        primary = key.primary_region
        return cls(
            multi_region_key_type="PRIMARY" if key.region == primary else "REPLICA",
            primary_key=MultiRegionKey(key_arn(primary, key.account, key.public_id), primary),
            replica_keys=tuple(
                MultiRegionKey(key_arn(region, key.account, key.public_id), region)
                for region in key.regions
                if region != primary
            ),
        )


@dataclass(frozen=True, slots=True)
class XksKeyConfiguration:
    id: str


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
    multi_region: bool
    encryption_algorithms: tuple[str, ...] | None = None
    signing_algorithms: tuple[str, ...] | None = None
    mac_algorithms: tuple[str, ...] | None = None
    key_agreement_algorithms: tuple[str, ...] | None = None
    encapsulation_algorithms: tuple[str, ...] | None = None
    deletion_date: datetime | None = None
    valid_to: datetime | None = None
    expiration_model: str | None = None
    current_key_material_id: str | None = None
    multi_region_configuration: MultiRegionConfiguration | None = None
    # A primary in PendingReplicaDeletion: the window its deletion starts
    # with when its last replica is gone (it has no DeletionDate until then).
    pending_deletion_window_in_days: int | None = None
    custom_key_store_id: str | None = None
    cloud_hsm_cluster_id: str | None = None
    xks_key_configuration: XksKeyConfiguration | None = None

    @classmethod
    def of(
        cls, key: Key, *, cluster_id: str | None = None, unavailable: bool = False
    ) -> KeyMetadata:
        """``cluster_id``: the token of the key's custom key store;
        ``unavailable``: that store is disconnected or its token is gone,
        which DescribeKey shows as KeyState Unavailable (never stored)."""
        current = key.current
        return cls(
            aws_account_id=key.account,
            key_id=key.public_id,
            arn=key.arn,
            creation_date=key.created,
            enabled=key.state is KeyState.ENABLED,
            description=key.description,
            key_usage=key.key_usage.value,
            key_state="Unavailable" if unavailable else key.state.value,
            origin=key.origin.value,
            key_manager="AWS" if key.aws_managed else "CUSTOMER",
            customer_master_key_spec=key.key_spec.value,
            key_spec=key.key_spec.value,
            multi_region=key.mrk is not None,
            multi_region_configuration=MultiRegionConfiguration.of(key),
            **algorithms_of(key),
            deletion_date=key.deletion_date,
            valid_to=key.valid_to,
            expiration_model=key.expiration_model,
            # Only keys that rotate have several materials to tell apart.
            current_key_material_id=(
                None
                if current is None or key.key_spec is not KeySpec.SYMMETRIC_DEFAULT
                else current.material_id
            ),
            pending_deletion_window_in_days=(
                key.pending_window_days if key.state is KeyState.PENDING_REPLICA_DELETION else None
            ),
            custom_key_store_id=key.custom_key_store_id,
            cloud_hsm_cluster_id=cluster_id,
            xks_key_configuration=(
                None if key.xks_key_id is None else XksKeyConfiguration(id=key.xks_key_id)
            ),
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
    # None for a predefined alias/aws/<service> whose key is not made yet.
    target_key_id: str | None = None
    creation_date: datetime | None = None
    last_updated_date: datetime | None = None


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
    source_key_material_id: str | None = None
    destination_key_material_id: str | None = None


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


@dataclass(frozen=True, slots=True)
class SignResult:
    key_id: str
    signature: bytes
    signing_algorithm: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    key_id: str
    signature_valid: bool
    signing_algorithm: str


@dataclass(frozen=True, slots=True)
class GetPublicKeyResult:
    key_id: str
    public_key: bytes
    customer_master_key_spec: str
    key_spec: str
    key_usage: str
    encryption_algorithms: tuple[str, ...] | None = None
    signing_algorithms: tuple[str, ...] | None = None
    key_agreement_algorithms: tuple[str, ...] | None = None
    encapsulation_algorithms: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GenerateMacResult:
    mac: bytes
    mac_algorithm: str
    key_id: str


@dataclass(frozen=True, slots=True)
class VerifyMacResult:
    key_id: str
    mac_valid: bool
    mac_algorithm: str


@dataclass(frozen=True, slots=True)
class DeriveSharedSecretResult:
    key_id: str
    shared_secret: bytes
    key_agreement_algorithm: str
    key_origin: str

    def __repr__(self) -> str:
        return f"DeriveSharedSecretResult(key_id={self.key_id!r}, shared_secret=<redacted>)"


@dataclass(frozen=True, slots=True)
class GenerateDataKeyPairResult:
    private_key_ciphertext_blob: bytes
    public_key: bytes
    key_id: str
    key_pair_spec: str
    private_key_plaintext: bytes | None = None
    key_material_id: str | None = None

    def __repr__(self) -> str:
        return f"GenerateDataKeyPairResult(key_id={self.key_id!r}, private_key=<redacted>)"


# -- grants --


@dataclass(frozen=True, slots=True)
class CreateGrantResult:
    grant_token: str
    grant_id: str


@dataclass(frozen=True, slots=True)
class GrantConstraints:
    encryption_context_subset: dict[str, str] | None = None
    encryption_context_equals: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class GrantListEntry:
    key_id: str  # the key ARN, as AWS lists it
    grant_id: str
    creation_date: datetime
    grantee_principal: str
    issuing_account: str
    operations: tuple[str, ...]
    name: str | None = None
    retiring_principal: str | None = None
    constraints: GrantConstraints | None = None


@dataclass(frozen=True, slots=True)
class ListGrantsResult:
    grants: list[GrantListEntry]
    truncated: bool
    next_marker: str | None = None


# -- ML-KEM --


@dataclass(frozen=True, slots=True)
class EncapsulateResult:
    key_id: str
    shared_secret: bytes
    shared_secret_ciphertext_blob: bytes
    encapsulation_algorithm: str

    def __repr__(self) -> str:
        return f"EncapsulateResult(key_id={self.key_id!r}, shared_secret=<redacted>)"


@dataclass(frozen=True, slots=True)
class DecapsulateResult:
    key_id: str
    shared_secret: bytes
    encapsulation_algorithm: str

    def __repr__(self) -> str:
        return f"DecapsulateResult(key_id={self.key_id!r}, shared_secret=<redacted>)"


# -- custom key stores (issue 19) --


@dataclass(frozen=True, slots=True)
class CreateCustomKeyStoreResult:
    custom_key_store_id: str


@dataclass(frozen=True, slots=True)
class XksProxyConfiguration:
    connectivity: str | None = None
    access_key_id: str | None = None
    uri_endpoint: str | None = None
    uri_path: str | None = None
    vpc_endpoint_service_name: str | None = None
    vpc_endpoint_service_owner: str | None = None


@dataclass(frozen=True, slots=True)
class CustomKeyStoreEntry:
    custom_key_store_id: str
    custom_key_store_name: str
    custom_key_store_type: str
    connection_state: str
    creation_date: datetime
    connection_error_code: str | None = None
    cloud_hsm_cluster_id: str | None = None
    trust_anchor_certificate: str | None = None
    xks_proxy_configuration: XksProxyConfiguration | None = None


@dataclass(frozen=True, slots=True)
class DescribeCustomKeyStoresResult:
    custom_key_stores: list[CustomKeyStoreEntry]
    truncated: bool
    next_marker: str | None = None
