"""Operator calls on a production server: the operator account is the one
``operator init`` made (recorded in operator.json, whatever the server's
configured account); failed token guesses are limited per address but never
throttle the valid token; failed unseal inputs are limited before they are
tried, even for the token's holder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from production import Production

ACCOUNT = "222222222222"


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    server = Production(tmp_path / "data")
    server.initialise(
        "--seal", "shamir", "--shares", "3", "--threshold", "2", "--account-id", ACCOUNT
    )
    server.start()  # no KEYCASK_ACCOUNT_ID: the server's own default account differs
    yield server
    if server.proc is not None:
        server.stop()


@pytest.mark.slow
def test_token_guesses_never_throttle_the_operator(prod: Production) -> None:
    assert json.loads((prod.data_dir / "operator.json").read_text())["account"] == ACCOUNT
    codes = [
        prod.raw("KeycaskOperator.Status", {"Authorization": "Bearer kco_guess"})[1]["__type"]
        for _ in range(40)
    ]
    assert codes[0] == "UnrecognizedClientException"
    assert codes.count("ThrottlingException") >= 15
    # The valid token, from the same address, right after the flood.
    for _ in range(25):
        status, answer = prod.raw(
            "KeycaskOperator.Status", {"Authorization": "Bearer " + prod.token}
        )
        assert status == 200, answer
    prod.unseal_with(prod.shares[:2])
    # The first administrator is in the operator account: its signature works.
    admin = prod.init["admin"]
    status, answer = prod.signed(
        "KeycaskOperator.Status", {}, (admin["access_key_id"], admin["secret_access_key"])
    )
    assert status == 200 and answer["sealed"] is False, answer


@pytest.mark.slow
def test_failed_unseal_inputs_are_limited_before_they_are_tried(prod: Production) -> None:
    token = {"Authorization": "Bearer " + prod.token}
    for _ in range(10):
        status, answer = prod.raw_json("KeycaskOperator.Unseal", token, {"Share": "not-a-share"})
        assert status == 400 and answer["__type"] == "KMSInvalidStateException", answer
    # The budget is spent: even a right share is not tried now.
    status, answer = prod.raw_json("KeycaskOperator.Unseal", token, {"Share": prod.shares[0]})
    assert status == 400 and answer["__type"] == "ThrottlingException", answer
    assert prod.status()["progress"] == 0
    # Status is no unseal attempt: it still answers.
    assert prod.status()["sealed"] is True
