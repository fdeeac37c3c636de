"""The PKCS#11 seal against a real SoftHSM2 token (fresh per test module).

SoftHSM2 is a prerequisite of ``make test`` (the Makefile installs it): if it
is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as pkcs11_errors
from pkcs11._pkcs11 import WrapMixin
from pkcs11.mechanisms import GCMParams

from keycask.errors import SealError
from keycask.seal.pkcs11 import (
    GCM,
    KEY_WRAP_PAD,
    SAFE_MECHANISMS,
    SEAL_FILE,
    Pkcs11Seal,
    attribute_mapper,
    choose_mechanism,
)

TOKEN_LABEL = "keycask-test"
SO_PIN = "1234"
PIN = "5678"
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def _module_path() -> str:
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    pytest.fail(
        "SoftHSM2 is not installed (no libsofthsm2.so in "
        f"{', '.join(MODULE_CANDIDATES)}): run `make softhsm` or `apt-get install softhsm2`"
    )


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token labelled keycask-test; yields the module path."""
    path = _module_path()
    util = shutil.which("softhsm2-util")
    if util is None:
        pytest.fail("softhsm2-util is not on PATH: run `make softhsm` or install softhsm2")
    base = tmp_path_factory.mktemp("softhsm")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        init_token = ["--init-token", "--free", "--label", TOKEN_LABEL]
        subprocess.run(
            [util, *init_token, "--so-pin", SO_PIN, "--pin", PIN],
            check=True,
            capture_output=True,
            env=dict(os.environ),
        )
        yield path
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _init(module: str, directory: Path, key_label: str, **kwargs: Any) -> Any:
    return Pkcs11Seal.init(
        directory,
        module=module,
        token_label=TOKEN_LABEL,
        key_label=key_label,
        pin=PIN,
        **kwargs,
    )


def _token_session(module: str, *, rw: bool = False) -> Any:
    token = pkcs11.lib(module).get_token(token_label=TOKEN_LABEL)
    return token.open(rw=rw, user_pin=PIN)


@pytest.mark.parametrize("mechanism", [None, GCM, KEY_WRAP_PAD])
def test_init_then_two_restarts_give_the_same_root(
    module: str, tmp_path: Path, mechanism: str | None
) -> None:
    label = f"root-{mechanism or 'default'}"
    root = _init(module, tmp_path, label, mechanism=mechanism)
    first = Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)
    second = Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)
    assert first.matches(root)
    assert second.matches(root)
    assert len(root) == 32
    document = json.loads((tmp_path / SEAL_FILE).read_text())
    assert document["type"] == "pkcs11"
    assert document["module"] == module
    assert document["token_label"] == TOKEN_LABEL
    assert document["key_label"] == label
    assert document["mechanism"] == (mechanism or GCM)
    assert ("iv" in document) is (document["mechanism"] == GCM)


def test_wrapping_key_cannot_be_read_out_of_the_token(module: str, tmp_path: Path) -> None:
    _init(module, tmp_path, "unreadable")
    with _token_session(module) as session:
        key = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="unreadable")
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.TOKEN] is True
        with pytest.raises(pkcs11_errors.AttributeSensitive):
            key[Attribute.VALUE]


def test_seal_file_is_private_and_holds_no_root(module: str, tmp_path: Path) -> None:
    root = _init(module, tmp_path, "private-file")
    path = tmp_path / SEAL_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    raw = root.reveal()
    for form in (
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
    ):
        assert form not in data
    assert PIN.encode() not in data


def test_wrong_pin_is_a_seal_error(module: str, tmp_path: Path) -> None:
    _init(module, tmp_path, "wrong-pin")
    with pytest.raises(SealError, match="wrong PIN") as info:
        Pkcs11Seal(tmp_path, modules=[module]).unseal("0000")
    assert "0000" not in str(info.value)
    # A wrong PIN locks nothing on SoftHSM; the right one still works.
    Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)


def test_deleted_token_key_fails_clearly_and_changes_nothing(module: str, tmp_path: Path) -> None:
    _init(module, tmp_path, "to-delete")
    path = tmp_path / SEAL_FILE
    before = path.read_bytes()
    with _token_session(module, rw=True) as session:
        session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="to-delete").destroy()
    with pytest.raises(SealError, match=r"no key labelled 'to-delete' \(was it deleted\?\)"):
        Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [SEAL_FILE]


@pytest.mark.parametrize("mechanism", [GCM, KEY_WRAP_PAD])
def test_tampered_wrapped_root_is_refused(module: str, tmp_path: Path, mechanism: str) -> None:
    _init(module, tmp_path, f"tamper-{mechanism}", mechanism=mechanism)
    path = tmp_path / SEAL_FILE
    document = json.loads(path.read_text())
    wrapped = bytearray(base64.b64decode(document["wrapped_root"]))
    wrapped[len(wrapped) // 2] ^= 0x01
    document["wrapped_root"] = base64.b64encode(bytes(wrapped)).decode()
    path.write_text(json.dumps(document))
    with pytest.raises(SealError):
        Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)


def test_root_moved_to_another_keys_label_is_refused(module: str, tmp_path: Path) -> None:
    # A seal file pointed at another token key (label edited) is refused.
    a, b = tmp_path / "a", tmp_path / "b"
    _init(module, a, "label-a")
    _init(module, b, "label-b")
    document = json.loads((a / SEAL_FILE).read_text())
    document["key_label"] = "label-b"
    (a / SEAL_FILE).write_text(json.dumps(document))
    with pytest.raises(SealError):
        Pkcs11Seal(a, modules=[module]).unseal(PIN)


def test_init_refuses_an_existing_seal_file(module: str, tmp_path: Path) -> None:
    _init(module, tmp_path, "first")
    before = (tmp_path / SEAL_FILE).read_bytes()
    with pytest.raises(SealError, match="already exists"):
        _init(module, tmp_path, "second")
    assert (tmp_path / SEAL_FILE).read_bytes() == before
    with _token_session(module) as session:
        assert not list(session.get_objects({Attribute.LABEL: "second"}))


def test_init_refuses_an_existing_key_label(module: str, tmp_path: Path) -> None:
    _init(module, tmp_path / "one", "taken")
    with pytest.raises(SealError, match="already has a key labelled 'taken'"):
        _init(module, tmp_path / "two", "taken")
    assert not (tmp_path / "two" / SEAL_FILE).exists()
    with _token_session(module) as session:
        assert len(list(session.get_objects({Attribute.LABEL: "taken"}))) == 1


def test_extractable_key_under_the_label_is_refused(module: str, tmp_path: Path) -> None:
    _init(module, tmp_path, "swapped")
    # Someone replaces the token key with a readable one under the same label.
    with _token_session(module, rw=True) as session:
        session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="swapped").destroy()
        session.generate_key(
            KeyType.AES,
            256,
            label="swapped",
            store=True,
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(SealError, match="must be sensitive and never extractable"):
        Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)


def test_unknown_token_and_bad_module_are_seal_errors(module: str, tmp_path: Path) -> None:
    with pytest.raises(SealError, match="no PKCS#11 token labelled 'nope'"):
        Pkcs11Seal.init(tmp_path, module=module, token_label="nope", key_label="k", pin=PIN)
    with pytest.raises(SealError, match="cannot load the PKCS#11 module"):
        Pkcs11Seal.init(
            tmp_path,
            module=str(tmp_path / "missing.so"),
            token_label=TOKEN_LABEL,
            key_label="k",
            pin=PIN,
        )
    assert not (tmp_path / SEAL_FILE).exists()


def test_missing_or_loose_seal_file(module: str, tmp_path: Path) -> None:
    with pytest.raises(SealError, match="no PKCS#11 seal"):
        Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)
    _init(module, tmp_path, "loose")
    (tmp_path / SEAL_FILE).chmod(0o644)
    with pytest.raises(SealError, match="chmod 600"):
        Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN)


# -- the mechanism probe's choice, without a token --


def test_choose_prefers_gcm() -> None:
    offered = {Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_GCM, Mechanism.AES_CBC_PAD}
    assert choose_mechanism(offered) == GCM


def test_choose_falls_back_to_key_wrap_pad() -> None:
    assert choose_mechanism({Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_ECB}) == KEY_WRAP_PAD


def test_choose_refuses_and_lists_what_is_offered() -> None:
    with pytest.raises(SealError, match="no safe mechanism") as info:
        choose_mechanism({Mechanism.AES_ECB, Mechanism.AES_CBC_PAD, Mechanism.AES_KEY_WRAP})
    message = str(info.value)
    assert "AES_ECB" in message
    assert "AES_CBC_PAD" in message
    assert "AES_GCM" in message  # named as what is needed
    with pytest.raises(SealError, match="it offers: nothing"):
        choose_mechanism(set())


def _restricted_session(module: str) -> Any:
    token = pkcs11.lib(module).get_token(token_label=TOKEN_LABEL)
    return token.open(rw=True, user_pin=PIN, attribute_mapper=attribute_mapper())


@pytest.mark.parametrize(
    ("mechanism", "can", "cannot"),
    [
        (GCM, {Attribute.ENCRYPT, Attribute.DECRYPT}, {Attribute.WRAP, Attribute.UNWRAP}),
        (KEY_WRAP_PAD, {Attribute.UNWRAP}, {Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP}),
    ],
)
def test_the_seal_key_does_only_what_the_seal_does(
    module: str, tmp_path: Path, mechanism: str, can: set[Attribute], cannot: set[Attribute]
) -> None:
    """Whoever holds the PIN (the keycask host) must not be able to use the
    seal key to carry another extractable key out of the token."""
    label = f"restricted-{mechanism}"
    root = _init(module, tmp_path, label, mechanism=mechanism)
    with _restricted_session(module) as session:
        keys = list(session.get_objects({Attribute.LABEL: label}))
        assert len(keys) == 1  # the key-wrap mode's session original is gone
        key = keys[0]
        for attribute in can:
            assert key[attribute] is True, attribute
        for attribute in cannot:
            assert key[attribute] is False, attribute
        assert key[Attribute.MODIFIABLE] is False
        assert key[Attribute.TOKEN] and key[Attribute.ALWAYS_SENSITIVE]
        assert key[Attribute.NEVER_EXTRACTABLE]
        assert key[Attribute.ALLOWED_MECHANISMS] == [int(SAFE_MECHANISMS[mechanism])]
        # Another application's key: sensitive, but extractable by wrapping.
        victim = session.generate_key(
            KeyType.AES,
            256,
            label=f"victim-{mechanism}",
            store=True,
            capabilities=MechanismFlag.ENCRYPT,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True},
        )
        try:
            for wrapping in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
                # C_WrapKey with the seal key (python-pkcs11 hides wrap_key on
                # a key without WRAP; the token is asked all the same).
                with pytest.raises(pkcs11_errors.PKCS11Error):
                    WrapMixin.wrap_key(key, victim, mechanism=wrapping)
            # Nor can the PIN holder give it those powers back.
            for attribute in cannot:
                with pytest.raises(pkcs11_errors.PKCS11Error):
                    key[attribute] = True
                assert key[attribute] is False
        finally:
            victim.destroy()
    assert Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN).matches(root)


def test_softhsm_enforces_allowed_mechanisms(module: str, tmp_path: Path) -> None:
    """SoftHSM2 2.6.1 honours CKA_ALLOWED_MECHANISMS: the GCM seal key refuses
    every other mechanism, not only the wrapping ones its flags forbid."""
    _init(module, tmp_path, "allowed-only-gcm", mechanism=GCM)
    with _restricted_session(module) as session:
        key = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="allowed-only-gcm")
        with pytest.raises(pkcs11_errors.MechanismInvalid):
            key.encrypt(b"\0" * 16, mechanism=Mechanism.AES_ECB)
        with pytest.raises(pkcs11_errors.MechanismInvalid):
            key.encrypt(b"\0" * 16, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=b"\0" * 16)


def test_a_key_made_by_an_older_keycask_unseals_with_a_warning(
    module: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Old data dirs keep working: a key with every capability and any
    mechanism (as keycask made them before) still unseals, loudly."""
    label = "old-style"
    root = os.urandom(32)
    iv = os.urandom(12)
    with _token_session(module, rw=True) as session:
        key = session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            capabilities=(
                MechanismFlag.ENCRYPT
                | MechanismFlag.DECRYPT
                | MechanismFlag.WRAP
                | MechanismFlag.UNWRAP
            ),
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
        wrapped = key.encrypt(
            root,
            mechanism=Mechanism.AES_GCM,
            mechanism_param=GCMParams(iv, b"keycask pkcs11 seal v1|" + label.encode(), 128),
        )
    document = {
        "type": "pkcs11",
        "module": module,
        "token_label": TOKEN_LABEL,
        "key_label": label,
        "mechanism": GCM,
        "iv": base64.b64encode(iv).decode(),
        "wrapped_root": base64.b64encode(wrapped).decode(),
    }
    path = tmp_path / SEAL_FILE
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="keycask"):
        assert Pkcs11Seal(tmp_path, modules=[module]).unseal(PIN).reveal() == root
    warning = caplog.text
    assert "SECURITY" in warning and "WRAP" in warning and "UNWRAP" in warning
    assert "keycask operator rekey --seal pkcs11" in warning
    # A restricted key says nothing.
    caplog.clear()
    _init(module, tmp_path / "new", "new-style")
    with caplog.at_level("WARNING", logger="keycask"):
        Pkcs11Seal(tmp_path / "new", modules=[module]).unseal(PIN)
    assert "SECURITY" not in caplog.text
