"""Attacker review findings on HSM-backed keys: a configured token serves
one account (another account's administrator cannot claim it, nor guess its
PIN through ConnectCustomKeyStore), and wrong passwords are tried at most a
few times a minute."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from production import SOFTHSM_TOKEN, SoftHsm, secret_file
from test_hsm_key_store_e2e import CLUSTER, PIN, _certificate, _code, _create_store, _store

from conftest import Server

OTHER = "333344445555"


def _hsm_server(tmp_path: Path, hsm: SoftHsm, cluster: str) -> Server:
    pin_file = secret_file(tmp_path / "pin", PIN)
    return Server(
        tmp_path / "data",
        args=("--hsm", f"{cluster}={hsm.module}:{SOFTHSM_TOKEN}", "--hsm-pin-file", str(pin_file)),
        env_extra={"SOFTHSM2_CONF": str(hsm.conf)},
    ).start()


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    return SoftHsm(tmp_path / "softhsm", pin=PIN)


def _other_admin(server: Server) -> tuple[str, str]:
    made = server.cli(
        "principals", "create", "outsider", "--json", "--admin", "--account", OTHER, "--offline"
    )
    created = json.loads(made.stdout)
    return created["AccessKeyId"], created["SecretAccessKey"]


@pytest.fixture
def server(tmp_path: Path, hsm: SoftHsm) -> Iterator[Server]:
    srv = _hsm_server(tmp_path, hsm, CLUSTER)
    yield srv
    srv.stop()


def test_another_account_cannot_claim_the_token(server: Server, tmp_path: Path) -> None:
    anchor = _certificate(tmp_path)
    outsider = server.client(access_key=_other_admin(server))
    with pytest.raises(ClientError) as refused:
        _create_store(outsider, anchor, name="taken", password="guess-000")
    assert _code(refused) == "CloudHsmClusterNotFoundException"
    # The account it serves (the operator's) is not kept out by the attempt.
    owner = server.client()
    store_id = _create_store(owner, anchor)
    owner.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert _store(owner, store_id)["ConnectionState"] == "CONNECTED"


def test_a_token_bound_to_an_account_serves_that_account_only(tmp_path: Path, hsm: SoftHsm) -> None:
    srv = _hsm_server(tmp_path, hsm, f"{CLUSTER}@{OTHER}")
    try:
        anchor = _certificate(tmp_path)
        with pytest.raises(ClientError) as refused:
            _create_store(srv.client(), anchor)
        assert _code(refused) == "CloudHsmClusterNotFoundException"
        outsider = srv.client(access_key=_other_admin(srv))
        store_id = _create_store(outsider, anchor)
        outsider.connect_custom_key_store(CustomKeyStoreId=store_id)
        assert _store(outsider, store_id)["ConnectionState"] == "CONNECTED"
    finally:
        srv.stop()


def test_wrong_passwords_lock_the_token_out_for_a_while(server: Server, tmp_path: Path) -> None:
    kms = server.client()
    store_id = _create_store(kms, _certificate(tmp_path), password="wrong-000")

    def attempt(password: str) -> str:
        kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=password)
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        entry = _store(kms, store_id)
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        return f"{entry['ConnectionState']} {entry.get('ConnectionErrorCode', '')}".strip()

    for n in range(5):
        assert attempt(f"wrong-{n:03d}") == "FAILED INVALID_CREDENTIALS"
    # Locked out: even the right PIN is not compared now.
    assert attempt(PIN) == "FAILED INVALID_CREDENTIALS"
