"""Which key states each operation accepts, and the error AWS gives otherwise.

One table, so the answer for every (state, operation) pair is written down once
and tested exhaustively. It follows the AWS KMS Developer Guide's "Key states
of KMS keys" table. Where AWS's answer depends on the key's origin rather than
its state (automatic rotation of imported keys, import on AWS-made keys), the
handler checks the origin first and this table covers the rest.
"""

from __future__ import annotations

from keycask.errors import DisabledException, KMSError, KMSInvalidStateException
from keycask.keys.model import Key, KeyState

_ALL = frozenset(KeyState)
_CRYPTO = frozenset({KeyState.ENABLED})
_MANAGE = frozenset({KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_IMPORT})
_TOGGLE = frozenset({KeyState.ENABLED, KeyState.DISABLED})
_PENDING_DELETION = frozenset({KeyState.PENDING_DELETION})

ALLOWED_STATES: dict[str, frozenset[KeyState]] = {
    "Encrypt": _CRYPTO,
    "Decrypt": _CRYPTO,
    "ReEncrypt": _CRYPTO,
    "GenerateDataKey": _CRYPTO,
    "GenerateDataKeyWithoutPlaintext": _CRYPTO,
    "DescribeKey": _ALL,
    "GetKeyPolicy": _ALL,
    "PutKeyPolicy": _ALL,
    "ListKeyPolicies": _ALL,
    "ListResourceTags": _ALL,
    "ListAliases": _ALL,
    "DeleteAlias": _ALL,
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
    "GetKeyRotationStatus": _ALL,
    "RotateKeyOnDemand": _CRYPTO,
    "ListKeyRotations": _ALL,
    "GetKeyLastUsage": _ALL,
    "ScheduleKeyDeletion": _MANAGE,
    "CancelKeyDeletion": _PENDING_DELETION,
    # Imported key material.
    "GetParametersForImport": _MANAGE,
    "ImportKeyMaterial": _MANAGE,
    "DeleteImportedKeyMaterial": _ALL,
    # Asymmetric, HMAC and key agreement: cryptographic use.
    "Sign": _CRYPTO,
    "Verify": _CRYPTO,
    "GetPublicKey": _CRYPTO,
    "GenerateMac": _CRYPTO,
    "VerifyMac": _CRYPTO,
    "DeriveSharedSecret": _CRYPTO,
    "GenerateDataKeyPair": _CRYPTO,
    "GenerateDataKeyPairWithoutPlaintext": _CRYPTO,
    # Grants. CreateGrant answers like a cryptographic operation (AWS's
    # table: DisabledException when disabled, KMSInvalidStateException when
    # pending deletion or import); the others work in every state.
    "CreateGrant": _CRYPTO,
    "ListGrants": _ALL,
    "RetireGrant": _ALL,
    "RevokeGrant": _ALL,
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
}


def require_state(operation: str, key: Key) -> None:
    error = state_error(operation, key)
    if error is not None:
        raise error
