"""Typed requests, one per operation, built from the edge's decoded fields.

Field names are the snake_case of the AWS member names; parameters the model
allows but keycask does not yet implement are absent here, and the builder
refuses them with UnsupportedOperationException instead of ignoring them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from keycask.errors import UnsupportedOperationException, ValidationException
from keycask.service.core.contexts import check_new_context

R = TypeVar("R")


# Per request type: (all field names, names without a default).
_FIELDS: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def fields_of(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """A typed request's field names, and those without a default (which
    ``build`` requires)."""
    found = _FIELDS.get(cls)
    if found is None:
        fields = dataclasses.fields(cls)
        required = frozenset(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        found = _FIELDS[cls] = (frozenset(f.name for f in fields), required)
    return found


def _member(name: str) -> str:
    """The AWS member name for a field name (``key_id`` -> ``KeyId``), for messages."""
    return "".join(part.capitalize() for part in name.split("_"))


def build(cls: type[R], fields: dict[str, Any]) -> R:
    names, required = fields_of(cls)
    extra = fields.keys() - names
    if extra:
        name = _member(sorted(extra)[0])
        raise UnsupportedOperationException(f"keycask does not support the parameter {name} yet")
    # Some members the model leaves optional are required in practice
    # (Decrypt's CiphertextBlob): refuse them here as AWS does.
    missing = required - fields.keys()
    if missing:
        member = _member(sorted(missing)[0])
        name = member[0].lower() + member[1:]
        raise ValidationException(
            f"1 validation error detected: Value null at '{name}' failed to satisfy "
            "constraint: Member must not be null"
        )
    return cls(**fields)


@dataclass(frozen=True, slots=True)
class CreateKeyRequest:
    policy: str | None = None
    description: str | None = None
    key_usage: str | None = None
    customer_master_key_spec: str | None = None
    key_spec: str | None = None
    origin: str | None = None
    bypass_policy_lockout_safety_check: bool | None = None
    tags: list[dict[str, str]] | None = None
    multi_region: bool | None = None
    custom_key_store_id: str | None = None
    xks_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """Operations that take only a key reference."""

    key_id: str


@dataclass(frozen=True, slots=True)
class UpdateKeyDescriptionRequest:
    key_id: str
    description: str


@dataclass(frozen=True, slots=True)
class DescribeKeyRequest:
    key_id: str
    grant_tokens: list[str] | None = None


@dataclass(frozen=True, slots=True)
class ListRequest:
    limit: int | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class ListKeyScopedRequest:
    key_id: str
    limit: int | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class ListAliasesRequest:
    key_id: str | None = None
    limit: int | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class EncryptRequest:
    key_id: str
    plaintext: bytes = field(repr=False)
    encryption_context: dict[str, str] | None = None
    grant_tokens: list[str] | None = None
    encryption_algorithm: str | None = None
    dry_run: bool | None = None

    def __post_init__(self) -> None:
        check_new_context("encryptionContext", self.encryption_context)


@dataclass(frozen=True, slots=True)
class DecryptRequest:
    ciphertext_blob: bytes
    encryption_context: dict[str, str] | None = None
    grant_tokens: list[str] | None = None
    key_id: str | None = None
    encryption_algorithm: str | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class ReEncryptRequest:
    ciphertext_blob: bytes
    destination_key_id: str
    source_encryption_context: dict[str, str] | None = None
    source_key_id: str | None = None
    destination_encryption_context: dict[str, str] | None = None
    source_encryption_algorithm: str | None = None
    destination_encryption_algorithm: str | None = None
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None

    def __post_init__(self) -> None:
        # The source context names an existing ciphertext: never refused.
        check_new_context("destinationEncryptionContext", self.destination_encryption_context)


@dataclass(frozen=True, slots=True)
class GenerateDataKeyRequest:
    key_id: str
    encryption_context: dict[str, str] | None = None
    number_of_bytes: int | None = None
    key_spec: str | None = None
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None

    def __post_init__(self) -> None:
        check_new_context("encryptionContext", self.encryption_context)


@dataclass(frozen=True, slots=True)
class GenerateRandomRequest:
    number_of_bytes: int | None = None
    custom_key_store_id: str | None = None


@dataclass(frozen=True, slots=True)
class AliasRequest:
    alias_name: str
    target_key_id: str


@dataclass(frozen=True, slots=True)
class DeleteAliasRequest:
    alias_name: str


@dataclass(frozen=True, slots=True)
class TagResourceRequest:
    key_id: str
    tags: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class UntagResourceRequest:
    key_id: str
    tag_keys: list[str]


@dataclass(frozen=True, slots=True)
class GetKeyPolicyRequest:
    key_id: str
    policy_name: str | None = None


@dataclass(frozen=True, slots=True)
class EnableKeyRotationRequest:
    key_id: str
    rotation_period_in_days: int | None = None


@dataclass(frozen=True, slots=True)
class ListKeyRotationsRequest:
    key_id: str
    include_key_material: str | None = None
    limit: int | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleKeyDeletionRequest:
    key_id: str
    pending_window_in_days: int | None = None


@dataclass(frozen=True, slots=True)
class GetParametersForImportRequest:
    key_id: str
    wrapping_algorithm: str
    wrapping_key_spec: str


@dataclass(frozen=True, slots=True)
class ImportKeyMaterialRequest:
    key_id: str
    import_token: bytes
    encrypted_key_material: bytes = field(repr=False)
    valid_to: datetime | None = None
    expiration_model: str | None = None
    import_type: str | None = None
    key_material_description: str | None = None
    key_material_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteImportedKeyMaterialRequest:
    key_id: str
    key_material_id: str | None = None


@dataclass(frozen=True, slots=True)
class SignRequest:
    key_id: str
    message: bytes = field(repr=False)
    signing_algorithm: str
    message_type: str | None = None
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    key_id: str
    message: bytes = field(repr=False)
    signature: bytes
    signing_algorithm: str
    message_type: str | None = None
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class GetPublicKeyRequest:
    key_id: str
    grant_tokens: list[str] | None = None


@dataclass(frozen=True, slots=True)
class GenerateMacRequest:
    message: bytes = field(repr=False)
    key_id: str
    mac_algorithm: str
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class VerifyMacRequest:
    message: bytes = field(repr=False)
    key_id: str
    mac_algorithm: str
    mac: bytes
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class DeriveSharedSecretRequest:
    key_id: str
    key_agreement_algorithm: str
    public_key: bytes
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class GenerateDataKeyPairRequest:
    key_id: str
    key_pair_spec: str
    encryption_context: dict[str, str] | None = None
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None

    def __post_init__(self) -> None:
        check_new_context("encryptionContext", self.encryption_context)


@dataclass(frozen=True, slots=True)
class PutKeyPolicyRequest:
    key_id: str
    policy: str
    policy_name: str | None = None
    bypass_policy_lockout_safety_check: bool | None = None


# -- grants --


@dataclass(frozen=True, slots=True)
class CreateGrantRequest:
    key_id: str
    operations: list[str]
    # Required in practice: a grant for a service principal
    # (GranteeServicePrincipal) is not supported.
    grantee_principal: str
    retiring_principal: str | None = None
    constraints: dict[str, Any] | None = None
    grant_tokens: list[str] | None = None
    name: str | None = None
    dry_run: bool | None = None

    def __post_init__(self) -> None:
        for name in ("encryption_context_equals", "encryption_context_subset"):
            pairs = (self.constraints or {}).get(name)
            member = "constraints." + ("encryptionContextEquals" if name.endswith("equals")
                                       else "encryptionContextSubset")  # fmt: skip
            check_new_context(member, pairs)


@dataclass(frozen=True, slots=True)
class ListGrantsRequest:
    key_id: str
    limit: int | None = None
    marker: str | None = None
    grant_id: str | None = None
    grantee_principal: str | None = None


@dataclass(frozen=True, slots=True)
class ListRetirableGrantsRequest:
    # Required in practice: RetiringServicePrincipal is not supported.
    retiring_principal: str
    limit: int | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class RetireGrantRequest:
    """A grant token, or a key and a grant id."""

    grant_token: str | None = None
    key_id: str | None = None
    grant_id: str | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class RevokeGrantRequest:
    key_id: str
    grant_id: str
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class ReplicateKeyRequest:
    key_id: str
    replica_region: str
    policy: str | None = None
    bypass_policy_lockout_safety_check: bool | None = None
    description: str | None = None
    tags: list[dict[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class UpdatePrimaryRegionRequest:
    key_id: str
    primary_region: str


# -- ML-KEM --


@dataclass(frozen=True, slots=True)
class EncapsulateRequest:
    key_id: str
    encapsulation_algorithm: str
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class DecapsulateRequest:
    key_id: str
    shared_secret_ciphertext_blob: bytes
    encapsulation_algorithm: str
    grant_tokens: list[str] | None = None
    dry_run: bool | None = None


# -- custom key stores (issue 19) --


@dataclass(frozen=True, slots=True)
class CreateCustomKeyStoreRequest:
    custom_key_store_name: str
    custom_key_store_type: str | None = None
    cloud_hsm_cluster_id: str | None = None
    trust_anchor_certificate: str | None = None
    key_store_password: str | None = field(default=None, repr=False)
    xks_proxy_uri_endpoint: str | None = None
    xks_proxy_uri_path: str | None = None
    xks_proxy_vpc_endpoint_service_name: str | None = None
    xks_proxy_vpc_endpoint_service_owner: str | None = None
    xks_proxy_authentication_credential: dict[str, str] | None = field(default=None, repr=False)
    xks_proxy_connectivity: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateCustomKeyStoreRequest:
    custom_key_store_id: str
    new_custom_key_store_name: str | None = None
    cloud_hsm_cluster_id: str | None = None
    key_store_password: str | None = field(default=None, repr=False)
    xks_proxy_uri_endpoint: str | None = None
    xks_proxy_uri_path: str | None = None
    xks_proxy_vpc_endpoint_service_name: str | None = None
    xks_proxy_vpc_endpoint_service_owner: str | None = None
    xks_proxy_authentication_credential: dict[str, str] | None = field(default=None, repr=False)
    xks_proxy_connectivity: str | None = None


@dataclass(frozen=True, slots=True)
class DescribeCustomKeyStoresRequest:
    custom_key_store_id: str | None = None
    custom_key_store_name: str | None = None
    limit: int | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class CustomKeyStoreRequest:
    """ConnectCustomKeyStore, DisconnectCustomKeyStore, DeleteCustomKeyStore."""

    custom_key_store_id: str
