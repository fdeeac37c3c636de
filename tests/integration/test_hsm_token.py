"""keycask.hsm against a real SoftHSM2 token: keys made inside it as the
issue requires (sensitive, never extractable, no wrap), AES-GCM inside it,
destruction, a token that is not there, and the flags that configure it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as pkcs11_errors

from keycask.hsm.registry import HsmConfigError, Tokens, parse
from keycask.hsm.token import DecryptFailed, ObjectMissing, Token, TokenUnavailable

LABEL = "keycask-hsm-test"
PIN = "hsm-pin-5678"
NAME = "cluster-keycasktest2"
MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    found = [m for m in MODULES if Path(m).exists()]
    util = shutil.which("softhsm2-util")
    if not found or util is None:
        pytest.fail("SoftHSM2 is not installed: run `make softhsm`")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--so-pin", "1234", "--pin", PIN],
        check=True, capture_output=True, env=dict(os.environ),
    )  # fmt: skip
    # python-pkcs11 keeps one library per path per process; SoftHSM2 reads
    # SOFTHSM2_CONF only when initialised: start it again on this token.
    pkcs11.lib(found[0]).reinitialize()
    try:
        yield found[0]
    finally:
        pkcs11.lib(found[0]).finalize()
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _object(module: str, object_id: str, *, rw: bool = False) -> Any:
    token = pkcs11.lib(module).get_token(token_label=LABEL)
    try:
        session = token.open(rw=rw, user_pin=PIN)
    except pkcs11_errors.UserAlreadyLoggedIn:  # keycask's session is, for the process
        session = token.open(rw=rw)
    (key,) = session.get_objects(
        {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.ID: bytes.fromhex(object_id)}
    )
    return session, key


def test_a_generated_key_never_leaves_the_token(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    object_id = _run(token.generate())
    assert len(object_id) == 32
    session, key = _object(module, object_id)
    try:
        assert key[Attribute.KEY_TYPE] == KeyType.AES
        assert key[Attribute.VALUE_LEN] == 32
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.WRAP] is False and key[Attribute.UNWRAP] is False
        assert key[Attribute.LABEL] == "keycask-" + object_id
        with pytest.raises(pkcs11_errors.AttributeSensitive):
            key[Attribute.VALUE]
    finally:
        session.close()
    token.close()


def test_aes_gcm_inside_the_token(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)

    async def go() -> None:
        object_id = await token.generate()
        other = await token.generate()
        iv, sealed = await token.encrypt(object_id, b"secret", b"aad")
        assert len(iv) == 12 and len(sealed) == len(b"secret") + 16
        assert await token.decrypt(object_id, iv, sealed, b"aad") == b"secret"
        again = await token.encrypt(object_id, b"secret", b"aad")
        assert again[0] != iv  # a fresh IV each time
        for bad in (
            token.decrypt(object_id, iv, sealed, b"other aad"),
            token.decrypt(other, iv, sealed, b"aad"),
            token.decrypt(object_id, iv, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"aad"),
        ):
            with pytest.raises(DecryptFailed):
                await bad
        # Concurrent calls share the token's one session safely.
        results = await asyncio.gather(
            *(token.encrypt(object_id, b"%d" % i, b"") for i in range(20))
        )
        opened = await asyncio.gather(*(token.decrypt(object_id, iv, s, b"") for iv, s in results))
        assert opened == [b"%d" % i for i in range(20)]
        assert await token.destroy(object_id) is True
        assert await token.has(object_id) is False
        assert await token.destroy(object_id) is False
        with pytest.raises(ObjectMissing):
            await token.encrypt(object_id, b"x", b"")

    _run(go())
    token.close()


def test_a_token_that_is_not_there(module: str) -> None:
    absent = Token(NAME, module, "no-such-token", PIN)
    assert _run(absent.present()) is False
    with pytest.raises(TokenUnavailable):
        _run(absent.generate())
    wrong_pin = Token(NAME, module, LABEL, "not-the-pin")
    assert _run(wrong_pin.present()) is False
    assert _run(Token(NAME, module, LABEL, PIN).present()) is True
    missing_library = Token(NAME, "/nonexistent/libpkcs11.so", LABEL, PIN)
    assert _run(missing_library.present()) is False


def test_pin_is_compared_and_never_shown(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    assert token.pin_matches(PIN)
    assert not token.pin_matches(PIN + "x")
    assert not token.pin_matches("")
    assert PIN not in repr(token)


def test_flags(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    (config,) = parse([f"{NAME}=/lib/x.so:my:label"], [str(pin_file)], {})
    assert (config.name, config.module, config.token_label, config.pin) == (
        NAME, "/lib/x.so", "my:label", PIN,
    )  # fmt: skip
    assert PIN not in repr(config)
    (from_env,) = parse([f"{NAME}=/lib/x.so:t"], [], {"KEYCASK_HSM_PIN": "p"})
    assert from_env.pin == "p"
    two = [f"{NAME}=/lib/x.so:a", "cluster-anotherhsm77=/lib/x.so:b"]
    named = parse(two, [f"{NAME}={pin_file}", f"cluster-anotherhsm77={pin_file}"], {})
    assert [c.name for c in named] == [NAME, "cluster-anotherhsm77"]
    for specs, pins, env, words in (
        (["bad"], [], {}, r"NAME\[@ACCOUNT\]=MODULE_PATH:TOKEN_LABEL"),
        ([f"{NAME}@12345=/lib/x.so:t"], [str(pin_file)], {}, "12 digits"),
        (["hsm1=/lib/x.so:t"], [str(pin_file)], {}, "CloudHsmClusterId"),
        ([f"{NAME}=/lib/x.so:t"], [], {}, "no PIN"),
        (two, [str(pin_file)], {}, "NAME=FILE"),
        (two, [], {"KEYCASK_HSM_PIN": "p"}, "no PIN"),
        ([f"{NAME}=/lib/x.so:t"], [f"cluster-unknownhsm22={pin_file}"], {}, "no --hsm"),
        ([f"{NAME}=/lib/x.so:t"], [str(tmp_path / "missing")], {}, "cannot read"),
        ([f"{NAME}=/a:t", f"{NAME}=/b:t"], [], {}, "twice"),
        ([f"{NAME}=/a:t", "cluster-anotherhsm77=/a:t"], [], {}, "the same token"),
    ):
        with pytest.raises(HsmConfigError, match=words):
            parse(specs, pins, env)
    (bound,) = parse([f"{NAME}@111122223333=/lib/x.so:t"], [str(pin_file)], {})
    assert bound.account == "111122223333" and bound.name == NAME
    assert Tokens().names() == ()


def test_random_bytes_from_the_token(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    first, second = _run(token.random(32)), _run(token.random(32))
    assert len(first) == 32 and first != second
    token.close()


def test_a_key_destroyed_elsewhere_is_not_used_through_a_stale_handle(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    object_id = _run(token.generate())
    _run(token.encrypt(object_id, b"x", b""))  # its handle is cached now
    session, key = _object(module, object_id, rw=True)  # another session, as another process
    try:
        key.destroy()
    finally:
        session.close()
    replacement = _run(token.generate())
    with pytest.raises(ObjectMissing):
        _run(token.encrypt(object_id, b"x", b""))
    assert _run(token.has(replacement)) is True
    token.close()
