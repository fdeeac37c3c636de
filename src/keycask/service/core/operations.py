"""The operation table: one row per operation keycask implements.

``mutates`` marks operations that write; the pipeline runs them one at a time
per process so that their read-modify-write sees a consistent state, and
commits their writes only after their audit record is durable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import (
    aliases,
    asymmetric,
    crypto,
    custom_key_stores,
    deletion,
    grants,
    imports,
    kem,
    keys,
    last_usage,
    multiregion,
    rotation,
    tags,
)
from keycask.service.core.requests import (
    AliasRequest,
    CreateCustomKeyStoreRequest,
    CreateGrantRequest,
    CreateKeyRequest,
    CustomKeyStoreRequest,
    DecapsulateRequest,
    DecryptRequest,
    DeleteAliasRequest,
    DeleteImportedKeyMaterialRequest,
    DeriveSharedSecretRequest,
    DescribeCustomKeyStoresRequest,
    DescribeKeyRequest,
    EnableKeyRotationRequest,
    EncapsulateRequest,
    EncryptRequest,
    GenerateDataKeyPairRequest,
    GenerateDataKeyRequest,
    GenerateMacRequest,
    GenerateRandomRequest,
    GetKeyPolicyRequest,
    GetParametersForImportRequest,
    GetPublicKeyRequest,
    ImportKeyMaterialRequest,
    KeyRequest,
    ListAliasesRequest,
    ListGrantsRequest,
    ListKeyRotationsRequest,
    ListKeyScopedRequest,
    ListRequest,
    ListRetirableGrantsRequest,
    PutKeyPolicyRequest,
    ReEncryptRequest,
    ReplicateKeyRequest,
    RetireGrantRequest,
    RevokeGrantRequest,
    ScheduleKeyDeletionRequest,
    SignRequest,
    TagResourceRequest,
    UntagResourceRequest,
    UpdateCustomKeyStoreRequest,
    UpdateKeyDescriptionRequest,
    UpdatePrimaryRegionRequest,
    VerifyMacRequest,
    VerifyRequest,
)

Handler = Callable[[Deps, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    request: type
    handler: Handler
    mutates: bool = False


_ROWS = [
    # CreateKey writes only fresh paths of a new random key id (expect=0): no
    # read-modify-write to serialise, and RSA generation must not hold the lock.
    Operation("CreateKey", CreateKeyRequest, keys.create_key),
    Operation("DescribeKey", DescribeKeyRequest, keys.describe_key),
    Operation("ListKeys", ListRequest, keys.list_keys),
    Operation(
        "UpdateKeyDescription",
        UpdateKeyDescriptionRequest,
        keys.update_key_description,
        mutates=True,
    ),
    Operation("EnableKey", KeyRequest, keys.enable_key, mutates=True),
    Operation("DisableKey", KeyRequest, keys.disable_key, mutates=True),
    Operation("GetKeyPolicy", GetKeyPolicyRequest, keys.get_key_policy),
    Operation("ListKeyPolicies", ListKeyScopedRequest, keys.list_key_policies),
    Operation("PutKeyPolicy", PutKeyPolicyRequest, keys.put_key_policy, mutates=True),
    Operation("Encrypt", EncryptRequest, crypto.encrypt),
    Operation("Decrypt", DecryptRequest, crypto.decrypt),
    Operation("ReEncrypt", ReEncryptRequest, crypto.re_encrypt),
    Operation("GenerateDataKey", GenerateDataKeyRequest, crypto.generate_data_key),
    Operation(
        "GenerateDataKeyWithoutPlaintext",
        GenerateDataKeyRequest,
        crypto.generate_data_key_without_plaintext,
    ),
    Operation("GenerateRandom", GenerateRandomRequest, crypto.generate_random),
    Operation("CreateAlias", AliasRequest, aliases.create_alias, mutates=True),
    Operation("UpdateAlias", AliasRequest, aliases.update_alias, mutates=True),
    Operation("DeleteAlias", DeleteAliasRequest, aliases.delete_alias, mutates=True),
    Operation("ListAliases", ListAliasesRequest, aliases.list_aliases),
    Operation("TagResource", TagResourceRequest, tags.tag_resource, mutates=True),
    Operation("UntagResource", UntagResourceRequest, tags.untag_resource, mutates=True),
    Operation("ListResourceTags", ListKeyScopedRequest, tags.list_resource_tags),
    # Lifecycle.
    Operation(
        "EnableKeyRotation", EnableKeyRotationRequest, rotation.enable_key_rotation, mutates=True
    ),
    Operation("DisableKeyRotation", KeyRequest, rotation.disable_key_rotation, mutates=True),
    Operation("GetKeyRotationStatus", KeyRequest, rotation.get_key_rotation_status),
    Operation("RotateKeyOnDemand", KeyRequest, rotation.rotate_key_on_demand, mutates=True),
    Operation("ListKeyRotations", ListKeyRotationsRequest, rotation.list_key_rotations),
    Operation(
        "ScheduleKeyDeletion",
        ScheduleKeyDeletionRequest,
        deletion.schedule_key_deletion,
        mutates=True,
    ),
    Operation("CancelKeyDeletion", KeyRequest, deletion.cancel_key_deletion, mutates=True),
    Operation("GetKeyLastUsage", KeyRequest, last_usage.get_key_last_usage),
    # Multi-Region keys: each rewrites every copy of the set in one commit.
    Operation("ReplicateKey", ReplicateKeyRequest, multiregion.replicate_key, mutates=True),
    Operation(
        "UpdatePrimaryRegion",
        UpdatePrimaryRegionRequest,
        multiregion.update_primary_region,
        mutates=True,
    ),
    # Writes only a new import token at a fresh random path: no
    # read-modify-write to serialise, and RSA key generation must not hold
    # the store's write lock.
    Operation(
        "GetParametersForImport", GetParametersForImportRequest, imports.get_parameters_for_import
    ),
    Operation(
        "ImportKeyMaterial", ImportKeyMaterialRequest, imports.import_key_material, mutates=True
    ),
    Operation(
        "DeleteImportedKeyMaterial",
        DeleteImportedKeyMaterialRequest,
        imports.delete_imported_key_material,
        mutates=True,
    ),
    # Asymmetric, HMAC and key agreement.
    Operation("Sign", SignRequest, asymmetric.sign),
    Operation("Verify", VerifyRequest, asymmetric.verify),
    Operation("GetPublicKey", GetPublicKeyRequest, asymmetric.get_public_key),
    Operation("GenerateMac", GenerateMacRequest, asymmetric.generate_mac),
    Operation("VerifyMac", VerifyMacRequest, asymmetric.verify_mac),
    Operation("DeriveSharedSecret", DeriveSharedSecretRequest, asymmetric.derive_shared_secret),
    Operation("GenerateDataKeyPair", GenerateDataKeyPairRequest, asymmetric.generate_data_key_pair),
    Operation(
        "GenerateDataKeyPairWithoutPlaintext",
        GenerateDataKeyPairRequest,
        asymmetric.generate_data_key_pair_without_plaintext,
    ),
    # Grants: every change to a grant is a read-modify-write of the key's grants.
    Operation("CreateGrant", CreateGrantRequest, grants.create_grant, mutates=True),
    Operation("ListGrants", ListGrantsRequest, grants.list_grants),
    Operation("ListRetirableGrants", ListRetirableGrantsRequest, grants.list_retirable_grants),
    Operation("RetireGrant", RetireGrantRequest, grants.retire_grant, mutates=True),
    Operation("RevokeGrant", RevokeGrantRequest, grants.revoke_grant, mutates=True),
    # Custom key stores: each read-modify-writes the account's stores
    # (names, the one store per token), so all that write run one at a time.
    Operation(
        "CreateCustomKeyStore",
        CreateCustomKeyStoreRequest,
        custom_key_stores.create_custom_key_store,
        mutates=True,
    ),
    Operation(
        "DescribeCustomKeyStores",
        DescribeCustomKeyStoresRequest,
        custom_key_stores.describe_custom_key_stores,
    ),
    Operation(
        "UpdateCustomKeyStore",
        UpdateCustomKeyStoreRequest,
        custom_key_stores.update_custom_key_store,
        mutates=True,
    ),
    Operation(
        "ConnectCustomKeyStore",
        CustomKeyStoreRequest,
        custom_key_stores.connect_custom_key_store,
        mutates=True,
    ),
    Operation(
        "DisconnectCustomKeyStore",
        CustomKeyStoreRequest,
        custom_key_stores.disconnect_custom_key_store,
        mutates=True,
    ),
    Operation(
        "DeleteCustomKeyStore",
        CustomKeyStoreRequest,
        custom_key_stores.delete_custom_key_store,
        mutates=True,
    ),
    # ML-KEM.
    Operation("Encapsulate", EncapsulateRequest, kem.encapsulate),
    Operation("Decapsulate", DecapsulateRequest, kem.decapsulate),
]

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ROWS}
