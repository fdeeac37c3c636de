"""Which key states each operation accepts, and the error AWS gives otherwise.

One table, so the answer for every (state, operation) pair is written down once
and tested exhaustively. It follows the AWS KMS Developer Guide's "Key states
of KMS keys" table. Where AWS's answer depends on the key's origin rather than
its state (automatic rotation of imported keys, import on AWS-made keys), the
handler checks the origin first and this table covers the rest.

The multi-Region states (Creating, Updating, PendingReplicaDeletion) follow
AWS's prose; key-state.html's cells for them could not be read (the stored
copies of the page end before its table), so only what the pages below say
is allowed, and every other cell is refused (KMSInvalidStateException).
keycask makes a set's changes in one commit, so Creating and Updating are
never stored today; their columns matter only to a document that names them.
Sources:
- API_ReplicateKey.html: "While the key state is Creating, you can manage
  key, but you cannot yet use it in cryptographic operations";
  multi-region-keys-replicate.html: a Creating replica can be described.
  So Creating allows DescribeKey, the read-only calls and the management
  calls that work on a PendingImport key (description, tags, aliases).
- multi-region-update.html: while Updating, keys can be used in cryptographic
  operations and described, but not enabled, disabled or replicated.
- API_ScheduleKeyDeletion.html: a primary in PendingReplicaDeletion "cannot
  be replicated or used in cryptographic operations"; API_KeyMetadata.html
  (PendingDeletionWindowInDays, present only in that state): it is
  described; it is a key "scheduled for deletion", so the calls AWS allows
  on a PendingDeletion key (policies, tags and aliases listed, grants
  listed, retired and revoked, rotation status) are allowed on it too, and
  CancelKeyDeletion brings it back (multi-region-keys-delete.html).
- ReplicateKey: Enabled (DisabledException when disabled, as its error list
  says); a PendingImport primary replicates into a PendingImport replica
  (API_ReplicateKey.html). UpdatePrimaryRegion: both keys Enabled
  (multi-region-update.html).
"""

from __future__ import annotations

from keycask.errors import DisabledException, KMSError, KMSInvalidStateException
from keycask.keys.model import Key, KeyState

_SINGLE_REGION = frozenset(
    {KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_DELETION, KeyState.PENDING_IMPORT}
)
# Every state: DescribeKey, verified for the multi-Region states (above).
_ALL = frozenset(KeyState)
# Every state but Updating, whose cells beyond use and DescribeKey are not
# documented (see above).
_ANY = _SINGLE_REGION | {KeyState.CREATING, KeyState.PENDING_REPLICA_DELETION}
_CRYPTO = frozenset({KeyState.ENABLED})
# AWS's cryptographic operations, which an Updating key still serves.
_USE = frozenset({KeyState.ENABLED, KeyState.UPDATING})
_MANAGE = frozenset({KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_IMPORT})
# Management of a key's own properties, which a Creating replica allows.
_EDIT = _MANAGE | {KeyState.CREATING}
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
    "UpdateKeyDescription": _EDIT,
    "TagResource": _EDIT,
    "UntagResource": _EDIT,
    "CreateAlias": _EDIT,
    "UpdateAlias": _EDIT,
    # Lifecycle. Rotation settings change only on a usable key.
    "EnableKeyRotation": _CRYPTO,
    "DisableKeyRotation": _CRYPTO,
    "GetKeyRotationStatus": _ANY,
    "RotateKeyOnDemand": _CRYPTO,
    "ListKeyRotations": _ANY,
    "GetKeyLastUsage": _ANY,
    "ScheduleKeyDeletion": _MANAGE,
    "CancelKeyDeletion": _PENDING_DELETION,
    # Multi-Region keys: only a primary is replicated or handed over.
    "ReplicateKey": frozenset({KeyState.ENABLED, KeyState.PENDING_IMPORT}),
    "UpdatePrimaryRegion": _CRYPTO,
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
