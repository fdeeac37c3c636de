"""Production mode with a Shamir seal, end to end: init 5/3, start sealed,
refusals while sealed, 2 shares not enough, 3 unseal, seal again, unseal with
other shares, old ciphertexts decrypt; operator calls authenticated,
rate-limited and audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from production import Production

from keycask.crypto import Share


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    server = Production(tmp_path / "data")
    server.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3")
    server.start()
    yield server
    if server.proc is not None:
        server.stop()


def _refused_while_sealed(kms: Any, ciphertext: bytes | None = None) -> None:
    for call in (
        lambda: kms.list_keys(),
        lambda: kms.create_key(),
        lambda: kms.decrypt(CiphertextBlob=ciphertext or b"\x01" * 64),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) == "KMSInvalidStateException"
        assert "sealed" in refused.value.response["Error"]["Message"]


def test_init_prints_shares_once_and_stores_none(tmp_path: Path) -> None:
    server = Production(tmp_path / "data")
    init = server.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3")
    assert len(init["shares"]) == 5 and init["threshold"] == 3
    assert init["operator_token"].startswith("kco_")
    assert init["admin"]["arn"].endswith(":user/admin")
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert (path.stat().st_mode & 0o077) == 0, path
            for share in init["shares"]:
                assert share.encode() not in raw, path
                assert share.split("-")[3].encode() not in raw, path
            assert init["operator_token"].encode() not in raw, path
            assert init["admin"]["secret_access_key"].encode() not in raw, path
    # A second init into the same directory is refused and changes nothing.
    before = (server.data_dir / "seal.json").read_bytes()
    again = server.operator("init", "--data-dir", str(server.data_dir), check=False)
    assert again.returncode != 0 and "not empty" in again.stderr
    assert (server.data_dir / "seal.json").read_bytes() == before


def test_sealed_unseal_seal_unseal(prod: Production) -> None:
    kms = prod.client()
    assert prod.status() == {
        "sealed": True, "seal": "shamir", "progress": 0, "threshold": 3, "shares": 5,
    }  # fmt: skip
    assert prod.health("/healthz") == (200, {"status": "sealed"})
    assert prod.health("/readyz") == (503, {"status": "sealed"})
    _refused_while_sealed(kms)

    shares = prod.shares
    # Two shares are not enough: still sealed, still refusing.
    assert json.loads(prod.unseal(shares[0]).stdout)["progress"] == 1
    duplicate = prod.unseal(shares[0], check=False)
    assert duplicate.returncode != 0 and "already given" in duplicate.stderr
    typo = shares[1][:-1] + ("0" if shares[1][-1] != "0" else "1")
    mistyped = prod.unseal(typo, check=False)
    assert mistyped.returncode != 0 and "checksum" in mistyped.stderr
    status = json.loads(prod.unseal(shares[1]).stdout)
    assert status["sealed"] is True and status["progress"] == 2
    _refused_while_sealed(kms)

    status = json.loads(prod.unseal(shares[2]).stdout)
    assert status["sealed"] is False and status["term"] == 1
    assert prod.health("/readyz") == (200, {"status": "ok"})
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blobs = [kms.encrypt(KeyId=key, Plaintext=b"secret %d" % i)["CiphertextBlob"] for i in range(5)]
    assert prod.status()["keys"] == 1

    prod.operator("seal")
    assert prod.status()["sealed"] is True
    _refused_while_sealed(kms, blobs[0])
    # Operator calls other than Status and Unseal are refused while sealed.
    rotate = prod.operator("rotate", check=False)
    assert rotate.returncode != 0 and "KMSInvalidStateException" in rotate.stderr

    # Any three shares open it: here the other three.
    prod.unseal_with(shares[2:])
    for i, blob in enumerate(blobs):
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret %d" % i

    # A restart starts sealed again, and the data is still there.
    prod.stop()
    prod.start()
    assert prod.status()["sealed"] is True
    _refused_while_sealed(kms, blobs[0])
    prod.unseal_with([shares[4], shares[0], shares[3]])
    for i, blob in enumerate(blobs):
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret %d" % i


def test_shares_of_another_split_do_not_open_it(prod: Production, tmp_path: Path) -> None:
    other = Production(tmp_path / "other")
    other.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3")
    # The seal file knows its own shares (by digest): others never count.
    for share in other.shares[:3]:
        wrong = prod.unseal(share, check=False)
        assert wrong.returncode != 0 and "not one this seal handed out" in wrong.stderr
    assert prod.status()["progress"] == 0
    prod.unseal_with(prod.shares[:3])


def test_forged_shares_do_not_jam_the_unseal(prod: Production) -> None:
    """Whoever holds the operator token can hand in well-formed shares (the
    checksum on a share line is public): they must neither count nor block
    the genuine shares with the same index; and an operator can start over."""
    shares = prod.shares
    for index in (1, 2, 3):
        forged = Share(index=index, threshold=3, value=bytes([index]) * 32).encode()
        refused = prod.unseal(forged, check=False)
        assert refused.returncode != 0 and "not one this seal handed out" in refused.stderr
    assert prod.status()["progress"] == 0
    prod.unseal(shares[0])
    prod.unseal(shares[1])
    assert prod.status()["progress"] == 2
    reset = json.loads(prod.operator("unseal", "--reset", "--json").stdout)
    assert reset["sealed"] is True and reset["progress"] == 0
    prod.unseal_with(shares[:3])


def test_operator_calls_need_the_token_and_are_audited(prod: Production) -> None:
    bad = prod.operator("status", env={"KEYCASK_OPERATOR_TOKEN": "kco_" + "a" * 52}, check=False)
    assert bad.returncode != 0 and "UnrecognizedClientException" in bad.stderr
    prod.unseal_with(prod.shares[:3])
    # Once unsealed an administrator's SigV4 signature works too; not a plain user's.
    admin = prod.init["admin"]
    creds = (admin["access_key_id"], admin["secret_access_key"])
    kms = prod.client()
    assert kms.list_keys()["Keys"] == []
    status, answer = prod.signed("KeycaskOperator.Status", {}, creds)
    assert status == 200 and answer["sealed"] is False
    user = prod.signed("KeycaskAdmin.CreatePrincipal", {"Name": "alice"}, creds)[1]
    alice = (user["AccessKeyId"], user["SecretAccessKey"])
    status, answer = prod.signed("KeycaskOperator.Seal", {}, alice)
    assert status == 400 and answer["__type"] == "AccessDeniedException"
    assert prod.status()["sealed"] is False
    audit = (prod.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in audit]
    unseals = [r for r in records if r["operation"] == "KeycaskOperator.Unseal"]
    assert len(unseals) == 3 and all(r["principal"] == "operator token" for r in unseals)
    assert unseals[-1]["detail"].endswith("unsealed")
    denied = [r for r in records if r["error_code"] == "UnrecognizedClientException"]
    assert denied and denied[0]["operation"] == "KeycaskOperator.Status"
    text = "\n".join(audit)
    for share in prod.shares:
        assert share not in text and share.split("-")[3] not in text
    assert prod.token not in text


def test_operator_calls_are_rate_limited(prod: Production) -> None:
    codes = []
    for _ in range(40):
        _status, answer = prod.raw("KeycaskOperator.Unseal", {"Authorization": "Bearer kco_guess"})
        codes.append(answer["__type"])
    assert codes[0] == "UnrecognizedClientException"
    assert "ThrottlingException" in codes


def test_rekey_needs_the_token_and_the_current_seal(prod: Production) -> None:
    """One credential alone must not move the root key under a seal its holder
    chooses (and so learn it)."""
    prod.unseal_with(prod.shares[:3])
    token = {"Authorization": "Bearer " + prod.token}
    new = {"Seal": "shamir", "Shares": 2, "Threshold": 2}
    # No proof, a wrong proof, too few shares: refused, and no file written.
    for current in (None, {"Shares": prod.shares[:2]}, {"Passphrase": "guess"}):
        body = {**new, **({"Current": current} if current is not None else {})}
        status, answer = prod.raw_json("KeycaskOperator.Rekey", token, body)
        assert status == 400, answer
        assert answer["__type"] in ("ValidationException", "KMSInvalidStateException")
        assert not (prod.data_dir / "seal.next.json").exists()
    # An administrator's signature is not enough, even with the shares.
    admin = prod.init["admin"]
    creds = (admin["access_key_id"], admin["secret_access_key"])
    status, answer = prod.signed(
        "KeycaskOperator.Rekey", {**new, "Current": {"Shares": prod.shares[:3]}}, creds
    )
    assert status == 400 and answer["__type"] == "AccessDeniedException"
    # A library the server was not told it may load is refused before use.
    status, answer = prod.raw_json(
        "KeycaskOperator.Rekey",
        token,
        {
            "Seal": "pkcs11", "Module": "/tmp/evil.so", "TokenLabel": "t", "KeyLabel": "k",
            "Pin": "1234", "Current": {"Shares": prod.shares[:3]},
        },
    )  # fmt: skip
    assert status == 400 and "not one this server may load" in answer["message"]
    # With the token and three current shares it works.
    status, answer = prod.raw_json(
        "KeycaskOperator.Rekey", token, {**new, "Current": {"Shares": prod.shares[2:]}}
    )
    assert status == 200 and len(answer["shares"]) == 2
