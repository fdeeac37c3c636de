"""Which key states each operation accepts, and the error AWS gives otherwise.

One table, so the answer for every (state, operation) pair is written down once
and tested exhaustively. It follows the AWS KMS Developer Guide's "Key states
of KMS keys" table. Where AWS's answer depends on the key's origin rather than
its state (automatic rotation of imported keys, import on AWS-made keys), the
handler checks the origin first and this table covers the rest.

The multi-Region states (Creating, Updating, PendingReplicaDeletion) allow only
what AWS's own prose verifies; the key-state.html table's cells for them could
not be read when they were added, so every other operation is refused in them
(KMSInvalidStateException) until those rows are checked. Sources:
- multi-region-keys-replicate.html: a Creating replica cannot be used in
  cryptographic operations (callers retry on KMSInvalidStateException) and
  can be described (DescribeKey).
- multi-region-update.html: while Updating, keys can be used in cryptographic
  operations and described, but not enabled, disabled or replicated.
- API_ScheduleKeyDeletion.html: a primary in PendingReplicaDeletion cannot be
  used in cryptographic operations or replicated; API_KeyMetadata.html
  (PendingDeletionWindowInDays, present only in that state): it is described;
  multi-region-keys-delete.html (as issue 22's brief read it): its deletion
  can be cancelled.
"""

from __future__ import annotations

from keycask.errors import DisabledException, KMSError, KMSInvalidStateException
from keycask.keys.model import Key, KeyState

_SINGLE_REGION = frozenset(
    {KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_DELETION, KeyState.PENDING_IMPORT}
)
# Every state: DescribeKey, verified for the multi-Region states (above).
_ALL = frozenset(KeyState)
# Every single-Region state. Unverified for the multi-Region states, so
# refused in them until key-state.html's rows are checked.
_ANY = _SINGLE_REGION
_CRYPTO = frozenset({KeyState.ENABLED})
# AWS's cryptographic operations, which an Updating key still serves.
_USE = frozenset({KeyState.ENABLED, KeyState.UPDATING})
_MANAGE = frozenset({KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_IMPORT})
_TOGGLE = frozenset({KeyState.ENABLED, KeyState.DISABLED})
_PENDING_DELETION = frozenset({KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION})

ALLOWED_STATES: dict[str, frozenset[KeyState]] = {
    "Encrypt": _USE,
    "Decrypt": _USE,
    "ReEncrypt": _USE,
    "GenerateDataKey": _USE,
    "GenerateDataKeyWithoutPlaintext": _USE,
    "DescribeKey": _ALL,
    "GetKeyPolicy": _ANY,
    "PutKeyPolicy": _ANY,
    "ListKeyPolicies": _ANY,
    "ListResourceTags": _ANY,
    "ListAliases": _ANY,
    "DeleteAlias": _ANY,
    "EnableKey": _TOGGLE,
    "DisableKey": _TOGGLE,
    "UpdateKeyDescription": _MANAGE,
    "TagResource": _MANAGE,
    "UntagResource": _MANAGE,
    "CreateAlias": _MANAGE,
    "UpdateAlias": _MANAGE,
    # Lifecycle. Rotation settings change only on a usable key.
    "EnableKeyRotation": _CRYPTO,
    "DisableKeyRotation": _CRYPTO,
    "GetKeyRotationStatus": _ANY,
    "RotateKeyOnDemand": _CRYPTO,
    "ListKeyRotations": _ANY,
    "GetKeyLastUsage": _ANY,
    "ScheduleKeyDeletion": _MANAGE,
    "CancelKeyDeletion": _PENDING_DELETION,
    # Imported key material.
    "GetParametersForImport": _MANAGE,
    "ImportKeyMaterial": _MANAGE,
    "DeleteImportedKeyMaterial": _ANY,
    # Asymmetric, HMAC and key agreement: cryptographic use. GetPublicKey is
    # not one of AWS's cryptographic operations: refused while Updating
    # (unverified).
    "Sign": _USE,
    "Verify": _USE,
    "GetPublicKey": _CRYPTO,
    "GenerateMac": _USE,
    "VerifyMac": _USE,
    "DeriveSharedSecret": _USE,
    "GenerateDataKeyPair": _USE,
    "GenerateDataKeyPairWithoutPlaintext": _USE,
    # Grants. CreateGrant answers like a cryptographic operation (AWS's
    # table: DisabledException when disabled, KMSInvalidStateException when
    # pending deletion or import); the others work in every single-Region
    # state.
    "CreateGrant": _CRYPTO,
    "ListGrants": _ANY,
    "RetireGrant": _ANY,
    "RevokeGrant": _ANY,
    # ML-KEM: cryptographic use, as AWS's key-state table lists them.
    "Encapsulate": _USE,
    "Decapsulate": _USE,
}


def state_error(operation: str, key: Key) -> KMSError | None:
    """The error ``operation`` gives on ``key`` in its current state, if any."""
    if key.state in ALLOWED_STATES[operation]:
        return None
    if operation == "CancelKeyDeletion":
        return KMSInvalidStateException(f"{key.arn} is not pending deletion.")
    if key.state is KeyState.DISABLED:
        return DisabledException(f"{key.arn} is disabled.")
    return KMSInvalidStateException(f"{key.arn} is {_STATE_WORDS[key.state]}.")


_STATE_WORDS = {
    KeyState.ENABLED: "enabled",
    KeyState.DISABLED: "disabled",
    KeyState.PENDING_DELETION: "pending deletion",
    KeyState.PENDING_IMPORT: "pending import",
    KeyState.CREATING: "being created",
    KeyState.UPDATING: "being updated",
    KeyState.PENDING_REPLICA_DELETION: "pending replica deletion",
}


def require_state(operation: str, key: Key) -> None:
    error = state_error(operation, key)
    if error is not None:
        raise error
