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
_TABLE = """
operation                        E    D    PD   PI
Encrypt                          ok   dis  inv  inv
Decrypt                          ok   dis  inv  inv
ReEncrypt                        ok   dis  inv  inv
GenerateDataKey                  ok   dis  inv  inv
GenerateDataKeyWithoutPlaintext  ok   dis  inv  inv
DescribeKey                      ok   ok   ok   ok
GetKeyPolicy                     ok   ok   ok   ok
PutKeyPolicy                     ok   ok   ok   ok
ListKeyPolicies                  ok   ok   ok   ok
ListResourceTags                 ok   ok   ok   ok
ListAliases                      ok   ok   ok   ok
DeleteAlias                      ok   ok   ok   ok
EnableKey                        ok   ok   inv  inv
DisableKey                       ok   ok   inv  inv
UpdateKeyDescription             ok   ok   inv  ok
TagResource                      ok   ok   inv  ok
UntagResource                    ok   ok   inv  ok
CreateAlias                      ok   ok   inv  ok
UpdateAlias                      ok   ok   inv  ok
EnableKeyRotation                ok   dis  inv  inv
DisableKeyRotation               ok   dis  inv  inv
GetKeyRotationStatus             ok   ok   ok   ok
RotateKeyOnDemand                ok   dis  inv  inv
ListKeyRotations                 ok   ok   ok   ok
GetKeyLastUsage                  ok   ok   ok   ok
ScheduleKeyDeletion              ok   ok   inv  ok
CancelKeyDeletion                inv  inv  ok   inv
GetParametersForImport           ok   ok   inv  ok
ImportKeyMaterial                ok   ok   inv  ok
DeleteImportedKeyMaterial        ok   ok   ok   ok
Sign                             ok   dis  inv  inv
Verify                           ok   dis  inv  inv
GetPublicKey                     ok   dis  inv  inv
GenerateMac                      ok   dis  inv  inv
VerifyMac                        ok   dis  inv  inv
DeriveSharedSecret               ok   dis  inv  inv
GenerateDataKeyPair              ok   dis  inv  inv
GenerateDataKeyPairWithoutPlaintext ok dis inv  inv
CreateGrant                      ok   dis  inv  inv
ListGrants                       ok   ok   ok   ok
RetireGrant                      ok   ok   ok   ok
RevokeGrant                      ok   ok   ok   ok
"""
_ANSWERS: dict[str, type[Exception] | None] = {
    "ok": None,
    "dis": DisabledException,
    "inv": KMSInvalidStateException,
}
_COLUMNS = [KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_DELETION, KeyState.PENDING_IMPORT]
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
