"""Every (state, operation) pair of the state table gives AWS's answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from keycask.errors import DisabledException, KMSInvalidStateException
from keycask.keys.model import Key, KeyState
from keycask.keys.states import ALLOWED_STATES, state_error
from keycask.service.core.operations import OPERATIONS

# What AWS answers, per the "Key states of KMS keys" table of the AWS KMS
# Developer Guide, written out cell by cell (E = Enabled, D = Disabled,
# PD = PendingDeletion, PI = PendingImport; "ok" = allowed, "dis" =
# DisabledException, "inv" = KMSInvalidStateException).
# The multi-Region columns (C = Creating, U = Updating, PRD =
# PendingReplicaDeletion) allow only what AWS's prose verifies (sources in
# keys/states.py's docstring): DescribeKey everywhere, management of a
# Creating key, cryptographic operations while Updating, and in
# PendingReplicaDeletion what PendingDeletion allows plus CancelKeyDeletion.
_TABLE = """
operation                           E    D    PD   PI   C    U    PRD
Encrypt                             ok   dis  inv  inv  inv  ok   inv
Decrypt                             ok   dis  inv  inv  inv  ok   inv
ReEncrypt                           ok   dis  inv  inv  inv  ok   inv
GenerateDataKey                     ok   dis  inv  inv  inv  ok   inv
GenerateDataKeyWithoutPlaintext     ok   dis  inv  inv  inv  ok   inv
DescribeKey                         ok   ok   ok   ok   ok   ok   ok
GetKeyPolicy                        ok   ok   ok   ok   ok   inv  ok
PutKeyPolicy                        ok   ok   ok   ok   ok   inv  ok
ListKeyPolicies                     ok   ok   ok   ok   ok   inv  ok
ListResourceTags                    ok   ok   ok   ok   ok   inv  ok
ListAliases                         ok   ok   ok   ok   ok   inv  ok
DeleteAlias                         ok   ok   ok   ok   ok   inv  ok
EnableKey                           ok   ok   inv  inv  inv  inv  inv
DisableKey                          ok   ok   inv  inv  inv  inv  inv
UpdateKeyDescription                ok   ok   inv  ok   ok   inv  inv
TagResource                         ok   ok   inv  ok   ok   inv  inv
UntagResource                       ok   ok   inv  ok   ok   inv  inv
CreateAlias                         ok   ok   inv  ok   ok   inv  inv
UpdateAlias                         ok   ok   inv  ok   ok   inv  inv
EnableKeyRotation                   ok   dis  inv  inv  inv  inv  inv
DisableKeyRotation                  ok   dis  inv  inv  inv  inv  inv
GetKeyRotationStatus                ok   ok   ok   ok   ok   inv  ok
RotateKeyOnDemand                   ok   dis  inv  inv  inv  inv  inv
ListKeyRotations                    ok   ok   ok   ok   ok   inv  ok
GetKeyLastUsage                     ok   ok   ok   ok   ok   inv  ok
ScheduleKeyDeletion                 ok   ok   inv  ok   inv  inv  inv
CancelKeyDeletion                   inv  inv  ok   inv  inv  inv  ok
ReplicateKey                        ok   dis  inv  ok   inv  inv  inv
UpdatePrimaryRegion                 ok   dis  inv  inv  inv  inv  inv
GetParametersForImport              ok   ok   inv  ok   inv  inv  inv
ImportKeyMaterial                   ok   ok   inv  ok   inv  inv  inv
DeleteImportedKeyMaterial           ok   ok   ok   ok   ok   inv  ok
Sign                                ok   dis  inv  inv  inv  ok   inv
Verify                              ok   dis  inv  inv  inv  ok   inv
GetPublicKey                        ok   dis  inv  inv  inv  inv  inv
GenerateMac                         ok   dis  inv  inv  inv  ok   inv
VerifyMac                           ok   dis  inv  inv  inv  ok   inv
DeriveSharedSecret                  ok   dis  inv  inv  inv  ok   inv
GenerateDataKeyPair                 ok   dis  inv  inv  inv  ok   inv
GenerateDataKeyPairWithoutPlaintext ok   dis  inv  inv  inv  ok   inv
CreateGrant                         ok   dis  inv  inv  inv  inv  inv
ListGrants                          ok   ok   ok   ok   ok   inv  ok
RetireGrant                         ok   ok   ok   ok   ok   inv  ok
RevokeGrant                         ok   ok   ok   ok   ok   inv  ok
Encapsulate                         ok   dis  inv  inv  inv  ok   inv
Decapsulate                         ok   dis  inv  inv  inv  ok   inv
"""
_ANSWERS: dict[str, type[Exception] | None] = {
    "ok": None,
    "dis": DisabledException,
    "inv": KMSInvalidStateException,
}
_COLUMNS = [
    KeyState.ENABLED,
    KeyState.DISABLED,
    KeyState.PENDING_DELETION,
    KeyState.PENDING_IMPORT,
    KeyState.CREATING,
    KeyState.UPDATING,
    KeyState.PENDING_REPLICA_DELETION,
]
EXPECTED: dict[str, dict[KeyState, type[Exception] | None]] = {
    row.split()[0]: {
        state: _ANSWERS[cell] for state, cell in zip(_COLUMNS, row.split()[1:], strict=True)
    }
    for row in _TABLE.strip().splitlines()[1:]
}


def _key(state: KeyState) -> Key:
    return Key(
        key_id=uuid.uuid4(),
        account="000000000000",
        region="us-east-1",
        created=datetime.now(UTC),
        description="",
        state=state,
        policy="{}",
    )


def test_table_covers_every_key_operation() -> None:
    assert set(ALLOWED_STATES) == set(EXPECTED)
    key_free = {"CreateKey", "ListKeys", "GenerateRandom", "ListRetirableGrants"}
    # Custom key stores are the account's, not a key's.
    key_free |= {
        "CreateCustomKeyStore",
        "DescribeCustomKeyStores",
        "UpdateCustomKeyStore",
        "ConnectCustomKeyStore",
        "DisconnectCustomKeyStore",
        "DeleteCustomKeyStore",
    }
    assert set(OPERATIONS) - key_free == set(EXPECTED)


@pytest.mark.parametrize("state", list(KeyState))
@pytest.mark.parametrize("operation", sorted(EXPECTED))
def test_state_answer(operation: str, state: KeyState) -> None:
    key = _key(state)
    error = state_error(operation, key)
    expected = EXPECTED[operation][state]
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert key.arn in error.message
