"""The operation table: one row per operation keycask implements.

``mutates`` marks operations that write; the pipeline runs them one at a time
per process so that their read-modify-write sees a consistent state, and
commits their writes only after their audit record is durable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from keycask.service import aliases, crypto_ops, keys_ops, tags
from keycask.service.call import Call, Outcome
from keycask.service.deps import Deps
from keycask.service.requests import (
    AliasRequest,
    CreateKeyRequest,
    DecryptRequest,
    DeleteAliasRequest,
    DescribeKeyRequest,
    EncryptRequest,
    GenerateDataKeyRequest,
    GenerateRandomRequest,
    GetKeyPolicyRequest,
    KeyRequest,
    ListAliasesRequest,
    ListKeyScopedRequest,
    ListRequest,
    ReEncryptRequest,
    TagResourceRequest,
    UntagResourceRequest,
    UpdateKeyDescriptionRequest,
)

Handler = Callable[[Deps, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    request: type
    handler: Handler
    mutates: bool = False


_ROWS = [
    Operation("CreateKey", CreateKeyRequest, keys_ops.create_key, mutates=True),
    Operation("DescribeKey", DescribeKeyRequest, keys_ops.describe_key),
    Operation("ListKeys", ListRequest, keys_ops.list_keys),
    Operation(
        "UpdateKeyDescription",
        UpdateKeyDescriptionRequest,
        keys_ops.update_key_description,
        mutates=True,
    ),
    Operation("EnableKey", KeyRequest, keys_ops.enable_key, mutates=True),
    Operation("DisableKey", KeyRequest, keys_ops.disable_key, mutates=True),
    Operation("GetKeyPolicy", GetKeyPolicyRequest, keys_ops.get_key_policy),
    Operation("ListKeyPolicies", ListKeyScopedRequest, keys_ops.list_key_policies),
    Operation("Encrypt", EncryptRequest, crypto_ops.encrypt),
    Operation("Decrypt", DecryptRequest, crypto_ops.decrypt),
    Operation("ReEncrypt", ReEncryptRequest, crypto_ops.re_encrypt),
    Operation("GenerateDataKey", GenerateDataKeyRequest, crypto_ops.generate_data_key),
    Operation(
        "GenerateDataKeyWithoutPlaintext",
        GenerateDataKeyRequest,
        crypto_ops.generate_data_key_without_plaintext,
    ),
    Operation("GenerateRandom", GenerateRandomRequest, crypto_ops.generate_random),
    Operation("CreateAlias", AliasRequest, aliases.create_alias, mutates=True),
    Operation("UpdateAlias", AliasRequest, aliases.update_alias, mutates=True),
    Operation("DeleteAlias", DeleteAliasRequest, aliases.delete_alias, mutates=True),
    Operation("ListAliases", ListAliasesRequest, aliases.list_aliases),
    Operation("TagResource", TagResourceRequest, tags.tag_resource, mutates=True),
    Operation("UntagResource", UntagResourceRequest, tags.untag_resource, mutates=True),
    Operation("ListResourceTags", ListKeyScopedRequest, tags.list_resource_tags),
]

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ROWS}
