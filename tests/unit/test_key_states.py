"""Every (state, operation) pair of the state table gives AWS's answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from keycask.errors import DisabledException, KMSInvalidStateException
from keycask.keys.model import Key, KeyState
from keycask.keys.states import ALLOWED_STATES, state_error
from keycask.service.operations import OPERATIONS

CRYPTO = {"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext"}
ANY_STATE = {
    "DescribeKey",
    "GetKeyPolicy",
    "ListKeyPolicies",
    "ListResourceTags",
    "ListAliases",
    "DeleteAlias",
}
TOGGLE = {"EnableKey", "DisableKey"}
MANAGE = {"UpdateKeyDescription", "TagResource", "UntagResource", "CreateAlias", "UpdateAlias"}

# What AWS answers, per the "Key states of AWS KMS keys" table.
EXPECTED: dict[str, dict[KeyState, type[Exception] | None]] = {}
for op in CRYPTO:
    EXPECTED[op] = {
        KeyState.ENABLED: None,
        KeyState.DISABLED: DisabledException,
        KeyState.PENDING_DELETION: KMSInvalidStateException,
        KeyState.PENDING_IMPORT: KMSInvalidStateException,
    }
for op in ANY_STATE:
    EXPECTED[op] = dict.fromkeys(KeyState)
for op in TOGGLE:
    EXPECTED[op] = {
        KeyState.ENABLED: None,
        KeyState.DISABLED: None,
        KeyState.PENDING_DELETION: KMSInvalidStateException,
        KeyState.PENDING_IMPORT: KMSInvalidStateException,
    }
for op in MANAGE:
    EXPECTED[op] = {
        KeyState.ENABLED: None,
        KeyState.DISABLED: None,
        KeyState.PENDING_DELETION: KMSInvalidStateException,
        KeyState.PENDING_IMPORT: None,
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
    key_free = {"CreateKey", "ListKeys", "GenerateRandom"}
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
