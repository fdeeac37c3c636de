"""The passphrase seal: the root key round-trips under the right passphrase only,
the file is 0600 and holds neither secret, tampering is refused with the same
message as a wrong passphrase, the scrypt parameters are the file's, and rekey
keeps the root key. Small scrypt parameters (n = 2^10) keep the tests fast."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from keycask.crypto import KeyMaterial, open_sealed, scrypt
from keycask.crypto.passphrase import check_scrypt_parameters
from keycask.errors import SealError, WeakPassphrase
from keycask.seal import PassphraseSeal
from keycask.seal import passphrase as seal_module
from keycask.seal.types import SealParams

FAST: dict[str, int] = {"n": 2**10, "r": 8, "p": 1}
PASSPHRASE = "correct horse battery staple"


def _init(tmp_path: Path, passphrase: bytes | str = PASSPHRASE, **params: int) -> KeyMaterial:
    return PassphraseSeal.init(tmp_path, passphrase, **{**FAST, **params})


def _document(tmp_path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((tmp_path / "seal.json").read_text())
    return loaded


def _rewrite(tmp_path: Path, document: dict[str, Any]) -> None:
    # write_text keeps the existing file's 0600 mode.
    (tmp_path / "seal.json").write_text(json.dumps(document))


# -- the KDF ------------------------------------------------------------------------


def test_scrypt_matches_rfc7914_vector() -> None:
    # RFC 7914 section 12, "password" / "NaCl", N=1024 r=8 p=16: first 32 bytes.
    key = scrypt(b"password", b"NaCl", n=1024, r=8, p=16)
    assert key.reveal().hex() == (
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
    )


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [(1000, 8, 1), (1, 8, 1), (2**23, 8, 1), (2**20, 16, 1), (2**10, 0, 1), (2**10, 8, 0)],
)
def test_scrypt_refuses_bad_or_huge_parameters(n: int, r: int, p: int) -> None:
    with pytest.raises(ValueError, match="scrypt"):
        check_scrypt_parameters(n, r, p)


# -- round trip ------------------------------------------------------------------


def test_init_then_unseal_round_trip(tmp_path: Path) -> None:
    root = _init(tmp_path)
    assert len(root) == 32
    assert PassphraseSeal(tmp_path).unseal(PASSPHRASE).matches(root)
    assert PassphraseSeal(tmp_path).unseal(PASSPHRASE.encode()).matches(root)


def test_two_inits_make_different_root_keys(tmp_path: Path) -> None:
    assert not _init(tmp_path / "a").matches(_init(tmp_path / "b"))


def test_str_passphrases_are_nfc_normalised(tmp_path: Path) -> None:
    root = _init(tmp_path, "caf\u00e9 au lait, deux sucres")
    assert PassphraseSeal(tmp_path).unseal("cafe\u0301 au lait, deux sucres").matches(root)


def test_init_refuses_to_replace_a_seal(tmp_path: Path) -> None:
    root = _init(tmp_path)
    with pytest.raises(SealError, match="already exists"):
        _init(tmp_path, "another passphrase")
    assert PassphraseSeal(tmp_path).unseal(PASSPHRASE).matches(root)


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="empty"):
        _init(tmp_path, "")
    _init(tmp_path)
    with pytest.raises(SealError, match="empty"):
        PassphraseSeal(tmp_path).unseal(b"")


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("Z", "has 1 character;"),
        ("abc", "has 3 characters"),
        ("fifteen chars!!", "has 15 characters"),
        ("caf\u00e9" * 3 + "cae\u0301", "has 15 characters"),  # 16 code points, 15 after NFC
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "too few characters"),
        ("abababababababababab", "too few characters"),
    ],
)
def test_a_weak_new_passphrase_is_refused(tmp_path: Path, weak: str, why: str) -> None:
    with pytest.raises(WeakPassphrase, match=why) as caught:
        _init(tmp_path, weak)
    assert weak not in str(caught.value)
    assert not (tmp_path / "seal.json").exists()
    assert seal_module.passphrase_problem("sixteen chars ok") is None


@pytest.mark.parametrize("weak", ["Z", "fifteen chars!!", "aaaaaaaaaaaaaaaaaaaaaaaa"])
def test_the_seal_type_refuses_a_weak_passphrase_before_writing(tmp_path: Path, weak: str) -> None:
    """``validate`` is what init and rekey ask first (before a rekey takes
    any current share): it refuses what ``init`` would."""
    kind = seal_module.PassphraseType()
    with pytest.raises(WeakPassphrase, match="at least") as caught:
        kind.validate(SealParams(passphrase=weak), modules=None)
    assert weak not in str(caught.value)
    kind.validate(SealParams(passphrase=PASSPHRASE), modules=None)
    assert str(seal_module.MIN_PASSPHRASE_CHARS) in (kind.new_secret.help or "")
    assert list(tmp_path.iterdir()) == []


def test_a_short_passphrase_set_before_still_unseals(tmp_path: Path) -> None:
    """Stores sealed before the rule keep opening; only new passphrases are checked."""
    root = KeyMaterial.generate(32)
    document = seal_module._wrap(root, b"abc", FAST["n"], FAST["r"], FAST["p"])
    seal_module.sealfile.write_new(tmp_path / "seal.json", document)
    assert PassphraseSeal(tmp_path).unseal("abc").matches(root)
    PassphraseSeal(tmp_path).rekey("abc", PASSPHRASE)
    assert PassphraseSeal(tmp_path).unseal(PASSPHRASE).matches(root)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="no passphrase seal"):
        PassphraseSeal(tmp_path).unseal(PASSPHRASE)


# -- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("wrong", ["Correct horse battery staple", "x", PASSPHRASE + " "])
def test_wrong_passphrase_refused(tmp_path: Path, wrong: str) -> None:
    _init(tmp_path)
    with pytest.raises(SealError) as caught:
        PassphraseSeal(tmp_path).unseal(wrong)
    assert str(caught.value) == "wrong passphrase"


def _flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


TAMPERS: dict[str, Any] = {
    "wrapped_root bit": lambda d: {**d, "wrapped_root": _flip_b64(d["wrapped_root"])},
    "wrapped_root cut": lambda d: {**d, "wrapped_root": d["wrapped_root"][:16]},
    "wrapped_root not base64": lambda d: {**d, "wrapped_root": "!!!"},
    "salt": lambda d: {**d, "salt": _flip_b64(d["salt"])},
    "n": lambda d: {**d, "n": d["n"] * 2},
    "n huge": lambda d: {**d, "n": 2**40},
    "n not power of two": lambda d: {**d, "n": d["n"] + 1},
    "r": lambda d: {**d, "r": d["r"] + 1},
    "p": lambda d: {**d, "p": d["p"] + 1},
    "p as bool": lambda d: {**d, "p": True},
    "n as string": lambda d: {**d, "n": str(d["n"])},
    "type": lambda d: {**d, "type": "dev"},
    "kdf": lambda d: {**d, "kdf": "argon2id"},
    "missing salt": lambda d: {k: v for k, v in d.items() if k != "salt"},
    "not an object": lambda d: [d],
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_file_refused_like_a_wrong_passphrase(tmp_path: Path, tamper: str) -> None:
    _init(tmp_path)
    _rewrite(tmp_path, TAMPERS[tamper](_document(tmp_path)))
    with pytest.raises(SealError) as caught:
        PassphraseSeal(tmp_path).unseal(PASSPHRASE)
    assert str(caught.value) == "wrong passphrase"


def test_garbage_file_refused_like_a_wrong_passphrase(tmp_path: Path) -> None:
    _init(tmp_path)
    (tmp_path / "seal.json").write_bytes(b"{not json")
    with pytest.raises(SealError, match=r"^wrong passphrase$"):
        PassphraseSeal(tmp_path).unseal(PASSPHRASE)


def test_group_readable_file_refused(tmp_path: Path) -> None:
    _init(tmp_path)
    (tmp_path / "seal.json").chmod(0o640)
    with pytest.raises(SealError, match="chmod 600"):
        PassphraseSeal(tmp_path).unseal(PASSPHRASE)


# -- the file -------------------------------------------------------------------------


def test_file_is_0600_and_has_the_documented_fields(tmp_path: Path) -> None:
    _init(tmp_path)
    path = tmp_path / "seal.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = _document(tmp_path)
    assert set(document) == {"type", "kdf", "n", "r", "p", "salt", "wrapped_root"}
    assert (document["type"], document["kdf"]) == ("passphrase", "scrypt")
    assert len(base64.b64decode(document["salt"])) == 16
    assert len(base64.b64decode(document["wrapped_root"])) == 12 + 32 + 16


def test_neither_secret_appears_in_the_file(tmp_path: Path) -> None:
    root = _init(tmp_path)
    raw = (tmp_path / "seal.json").read_bytes()
    text = raw.decode()
    secret = root.reveal()
    for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
        assert form not in raw
    assert PASSPHRASE not in text
    assert base64.b64encode(PASSPHRASE.encode()).decode() not in text
    assert PASSPHRASE.encode().hex() not in text


def test_parameters_are_recorded_and_used(tmp_path: Path) -> None:
    root = _init(tmp_path, n=2**11, r=4, p=2)
    document = _document(tmp_path)
    assert (document["n"], document["r"], document["p"]) == (2**11, 4, 2)
    # An independent scrypt with the recorded parameters opens the wrapped key.
    kek = hashlib.scrypt(
        PASSPHRASE.encode(),
        salt=base64.b64decode(document["salt"]),
        n=2**11,
        r=4,
        p=2,
        dklen=32,
    )
    opened = open_sealed(
        KeyMaterial(kek),
        base64.b64decode(document["wrapped_root"]),
        aad=seal_module._aad(2**11, 4, 2),
    )
    assert opened == root.reveal()


def test_default_parameters_are_the_production_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, int]] = []
    fixed = KeyMaterial(b"\x42" * 32)

    def cheap_scrypt(passphrase: bytes, salt: bytes, *, n: int, r: int, p: int) -> KeyMaterial:
        calls.append((n, r, p))
        return fixed

    monkeypatch.setattr(seal_module, "scrypt", cheap_scrypt)
    root = PassphraseSeal.init(tmp_path, PASSPHRASE)
    document = _document(tmp_path)
    assert (document["n"], document["r"], document["p"]) == (2**17, 8, 1)
    assert PassphraseSeal(tmp_path).unseal(PASSPHRASE).matches(root)
    assert calls == [(2**17, 8, 1), (2**17, 8, 1)]


def test_init_refuses_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="scrypt"):
        _init(tmp_path, n=1000)
    assert not (tmp_path / "seal.json").exists()


# -- rekey ------------------------------------------------------------------------------


def test_rekey_keeps_the_root_key(tmp_path: Path) -> None:
    root = _init(tmp_path)
    before = _document(tmp_path)
    seal = PassphraseSeal(tmp_path)
    seal.rekey(PASSPHRASE, "a new passphrase")
    after = _document(tmp_path)
    assert seal.unseal("a new passphrase").matches(root)
    with pytest.raises(SealError, match=r"^wrong passphrase$"):
        seal.unseal(PASSPHRASE)
    assert after["salt"] != before["salt"]
    assert (after["n"], after["r"], after["p"]) == (before["n"], before["r"], before["p"])
    assert stat.S_IMODE((tmp_path / "seal.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seal.json"]


def test_rekey_can_raise_the_parameters(tmp_path: Path) -> None:
    root = _init(tmp_path)
    seal = PassphraseSeal(tmp_path)
    seal.rekey(PASSPHRASE, PASSPHRASE, n=2**12, p=2)
    document = _document(tmp_path)
    assert (document["n"], document["r"], document["p"]) == (2**12, 8, 2)
    assert seal.unseal(PASSPHRASE).matches(root)


def test_rekey_with_the_wrong_old_passphrase_changes_nothing(tmp_path: Path) -> None:
    root = _init(tmp_path)
    before = (tmp_path / "seal.json").read_bytes()
    with pytest.raises(SealError, match=r"^wrong passphrase$"):
        PassphraseSeal(tmp_path).rekey("not it", "a new passphrase")
    assert (tmp_path / "seal.json").read_bytes() == before
    assert PassphraseSeal(tmp_path).unseal(PASSPHRASE).matches(root)


def test_rekey_refuses_bad_new_parameters_and_keeps_the_file(tmp_path: Path) -> None:
    _init(tmp_path)
    before = (tmp_path / "seal.json").read_bytes()
    with pytest.raises(SealError, match="scrypt"):
        PassphraseSeal(tmp_path).rekey(PASSPHRASE, "a new passphrase here", n=3)
    with pytest.raises(SealError, match="empty"):
        PassphraseSeal(tmp_path).rekey(PASSPHRASE, "")
    with pytest.raises(WeakPassphrase, match="at least 16"):
        PassphraseSeal(tmp_path).rekey(PASSPHRASE, "new")
    assert (tmp_path / "seal.json").read_bytes() == before
