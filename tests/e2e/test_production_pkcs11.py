"""Production mode with a PKCS#11 seal on SoftHSM2, end to end: init, the server
unseals itself at every start with the PIN it is given, the wrapping key never
leaves the token, and every way a start can fail (key deleted, no PIN, wrong
PIN) fails clearly, touching nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as pkcs11_errors
from pkcs11._pkcs11 import WrapMixin
from production import (
    SOFTHSM_PIN,
    Production,
    SoftHsm,
    pkcs11_flags,
    secret_file,
    softhsm_session,
    tree_digest,
)

KEY_LABEL = "keycask-root-e2e"
PIN_ENV = {"KEYCASK_PKCS11_PIN": SOFTHSM_PIN}


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    return SoftHsm(tmp_path / "softhsm")


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    return secret_file(tmp_path / "pin", SOFTHSM_PIN)


@pytest.fixture
def prod(tmp_path: Path, hsm: SoftHsm, pin_file: Path) -> Iterator[Production]:
    """Initialised with a PKCS#11 seal; not started."""
    server = Production(tmp_path / "data", extra_env=hsm.env())
    init = server.initialise("--seal", "pkcs11", *pkcs11_flags(hsm, KEY_LABEL, pin_file))
    assert init["seal"] == "pkcs11" and "shares" not in init
    yield server
    if server.proc is not None:
        server.stop()


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def _encrypt_five(kms: Any) -> list[bytes]:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    return [kms.encrypt(KeyId=key, Plaintext=b"message %d" % i)["CiphertextBlob"] for i in range(5)]


def _all_decrypt(kms: Any, blobs: list[bytes]) -> None:
    for i, blob in enumerate(blobs):
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"message %d" % i


def _failed_start(prod: Production, env: dict[str, str] | None) -> tuple[int, str]:
    """Start expecting the server to exit; its code and only this start's output."""
    before = prod.log_path.read_text() if hasattr(prod, "log_path") else ""
    prod.start(expect_exit=True, env=env)
    assert prod.proc is not None
    code = prod.proc.wait(timeout=30)
    prod.proc = None
    return code, prod.log()[len(before) :]


def test_unseals_itself_at_every_start(prod: Production) -> None:
    prod.start(env=PIN_ENV)
    status = prod.status()
    assert status["sealed"] is False and status["seal"] == "pkcs11"
    assert prod.health("/readyz") == (200, {"status": "ok"})
    kms = prod.client()
    blobs = _encrypt_five(kms)
    for _ in range(2):
        kms.close()  # see test_stop_is_prompt_with_an_idle_tls_client
        prod.stop()
        prod.start(env=PIN_ENV)
        status = prod.status()
        assert status["sealed"] is False and status["seal"] == "pkcs11"
        assert status["keys"] == 1
        _all_decrypt(kms, blobs)
    seal = json.loads((prod.data_dir / "seal.json").read_text())
    assert seal["type"] == "pkcs11" and seal["key_label"] == KEY_LABEL
    assert SOFTHSM_PIN not in json.dumps(seal)
    assert not (prod.data_dir / "seal.next.json").exists()


def test_wrapping_key_cannot_leave_the_token(prod: Production, hsm: SoftHsm) -> None:
    with softhsm_session(hsm, rw=True) as session:
        keys = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: KEY_LABEL}
            )
        )
        assert len(keys) == 1
        key = keys[0]
        assert key[Attribute.KEY_TYPE] == KeyType.AES
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(pkcs11_errors.PKCS11Error) as refused:
            key[Attribute.VALUE]
        assert isinstance(refused.value, pkcs11_errors.AttributeSensitive)
        # Nor can another key carry it out of the token.
        other = session.generate_key(
            KeyType.AES,
            256,
            label="e2e-exfiltration",
            store=False,
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
        )
        for mechanism in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
            with pytest.raises(pkcs11_errors.PKCS11Error) as unwrappable:
                other.wrap_key(key, mechanism=mechanism)
            assert isinstance(unwrappable.value, pkcs11_errors.KeyUnextractable)
        # And the seal key cannot carry another key out: it does only what
        # the seal does (AES-GCM), and nobody can change that.
        assert key[Attribute.WRAP] is False and key[Attribute.UNWRAP] is False
        assert key[Attribute.MODIFIABLE] is False
        victim = session.generate_key(
            KeyType.AES,
            256,
            label="e2e-victim",
            store=False,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True},
        )
        for mechanism in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
            with pytest.raises(pkcs11_errors.PKCS11Error):
                WrapMixin.wrap_key(key, victim, mechanism=mechanism)
        with pytest.raises(pkcs11_errors.PKCS11Error):
            key[Attribute.WRAP] = True


def test_start_fails_when_the_token_key_is_gone(prod: Production, hsm: SoftHsm) -> None:
    prod.start(env=PIN_ENV)
    kms = prod.client()
    _encrypt_five(kms)
    kms.close()
    prod.stop()
    with softhsm_session(hsm, rw=True) as session:
        for key in session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: KEY_LABEL}
        ):
            key.destroy()
    before = tree_digest(prod.data_dir)
    code, output = _failed_start(prod, PIN_ENV)
    assert code != 0
    assert f"has no key labelled {KEY_LABEL!r}" in output, output
    assert tree_digest(prod.data_dir) == before


def test_start_without_a_pin_stays_sealed_until_unsealed(prod: Production, pin_file: Path) -> None:
    prod.start(env=PIN_ENV)
    kms = prod.client()
    blobs = _encrypt_five(kms)
    kms.close()
    prod.stop()

    prod.start()
    kms = prod.client()
    status = prod.status()
    assert status["sealed"] is True and status["seal"] == "pkcs11"
    assert prod.health("/readyz") == (503, {"status": "sealed"})
    for call in (lambda: kms.list_keys(), lambda: kms.decrypt(CiphertextBlob=blobs[0])):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) == "KMSInvalidStateException"
    # Shares are no use to it.
    share = prod.operator("unseal", "--json", "kcs1-3-1-00", check=False)
    assert share.returncode != 0
    assert prod.status()["sealed"] is True

    opened = json.loads(prod.operator("unseal", "--json", "--pin-file", str(pin_file)).stdout)
    assert opened["sealed"] is False and opened["seal"] == "pkcs11"
    _all_decrypt(kms, blobs)
    kms.close()


def test_wrong_pin_fails_clearly_and_is_not_echoed(prod: Production, tmp_path: Path) -> None:
    wrong = "wrong-pin-Qz81x7"
    before = tree_digest(prod.data_dir)
    code, output = _failed_start(prod, {"KEYCASK_PKCS11_PIN": wrong})
    assert code != 0
    assert "wrong PIN" in output, output
    assert wrong not in output
    assert tree_digest(prod.data_dir) == before

    # The same through an operator on a server started without a PIN.
    prod.start()
    wrong_file = secret_file(tmp_path / "wrong-pin", wrong)
    refused = prod.operator("unseal", "--json", "--pin-file", str(wrong_file), check=False)
    assert refused.returncode != 0
    assert "wrong PIN" in refused.stderr
    assert wrong not in refused.stderr + refused.stdout
    assert prod.status()["sealed"] is True
    assert wrong not in prod.log()
    audit = (prod.data_dir / "audit" / "server.jsonl").read_text()
    assert wrong not in audit


def test_stop_is_prompt_with_an_idle_tls_client(prod: Production) -> None:
    """A restart (the moment a PKCS#11 server unseals itself) should not wait
    out the whole shutdown grace because a client keeps an idle TLS connection:
    ``HttpServer.shutdown`` says it closes idle connections at once."""
    prod.start(env=PIN_ENV)
    kms = prod.client()
    kms.list_keys()  # leaves one idle keep-alive TLS connection in boto's pool
    started = time.monotonic()
    prod.stop()
    elapsed = time.monotonic() - started
    kms.close()
    assert elapsed < 3, f"stopping took {elapsed:.1f} s with one idle TLS connection open"
