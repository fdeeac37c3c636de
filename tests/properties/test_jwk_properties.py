"""Properties of the JWK reader and writer (crypto/jwk.py): no input makes
them raise anything but InvalidJwk, no refusal quotes the input, and a
changed JWK is either refused or still the same key."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keycask.crypto import InvalidJwk, private_key_from_jwk, public_jwk


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def uint(value: int, size: int | None = None) -> str:
    return b64(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


def _rsa_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
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


def _ec_jwk(key: ec.EllipticCurvePrivateKey, crv: str) -> dict[str, str]:
    size = (key.curve.key_size + 7) // 8
    n = key.private_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": uint(n.public_numbers.x, size),
        "y": uint(n.public_numbers.y, size),
        "d": uint(n.private_value, size),
    }


RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEYS = {
    "P-256": ec.generate_private_key(ec.SECP256R1()),
    "P-521": ec.generate_private_key(ec.SECP521R1()),
    "P-256K": ec.generate_private_key(ec.SECP256K1()),
}
VALID: list[tuple[dict[str, str], Any]] = [
    (_rsa_jwk(RSA_KEY), RSA_KEY),
    *((_ec_jwk(key, crv), key) for crv, key in EC_KEYS.items()),
]
MEMBERS = ["kty", "crv", "n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y", "oth", "kid"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=8,
)  # fmt: skip
member_values = st.one_of(
    json_values,
    st.sampled_from(["RSA", "EC", "oct", "OKP", "P-256", "P-384", "P-521", "P-256K", "secp256k1"]),
    st.builds(b64, st.binary(max_size=80)),
    st.builds(lambda b: b64(b) + "=", st.binary(min_size=1, max_size=8)),
    st.text(alphabet="ABCabc012-_=+/. \n\x00", max_size=40),
)


def _outcome(fields: Any) -> tuple[str, bytes] | None:
    """(spec, DER) if ``fields`` is accepted, None if refused with InvalidJwk
    (whose message quotes no value of the input); anything else propagates."""
    try:
        spec, material = private_key_from_jwk(fields)
    except InvalidJwk as refused:
        message = str(refused)
        if isinstance(fields, dict):
            for value in fields.values():
                if isinstance(value, str) and len(value) >= 8:
                    assert value not in message
        return None
    return spec, material.reveal()


def _same_key(der: bytes, key: Any) -> bool:
    got = serialization.load_der_private_key(
        der, password=None, unsafe_skip_rsa_key_validation=True
    )
    return bool(got.private_numbers() == key.private_numbers())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(MEMBERS) | st.text(max_size=4), member_values, max_size=10))
@example({"kty": "RSA", "d": ""})
@example({"kty": "EC", "crv": "P-256", "x": "", "y": "", "d": ""})
@example({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AQ"})
def test_arbitrary_dicts_are_refused_with_the_one_error(fields: dict[str, Any]) -> None:
    assert _outcome(fields) is None


@settings(max_examples=100)
@given(json_values)
def test_anything_but_an_object_is_refused(value: Any) -> None:
    if not isinstance(value, dict):
        assert _outcome(value) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(VALID))),
    st.lists(
        st.tuples(st.sampled_from(MEMBERS), st.one_of(st.none(), member_values)),
        min_size=1,
        max_size=3,
    ),
)
def test_a_changed_jwk_is_refused_or_still_the_same_key(
    which: int, changes: list[tuple[str, Any]]
) -> None:
    jwk, key = VALID[which]
    changed: dict[str, Any] = dict(jwk)
    for name, value in changes:
        if value is None:
            changed.pop(name, None)
        else:
            changed[name] = value
    outcome = _outcome(changed)
    if outcome is not None:
        assert _same_key(outcome[1], key)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(VALID))),
    st.sampled_from(["n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y"]),
    st.integers(min_value=0, max_value=520),
    st.integers(min_value=0, max_value=3),
)
def test_one_changed_bit_is_refused(which: int, name: str, bit: int, zeros: int) -> None:
    jwk = VALID[which][0]
    if name not in jwk:
        return
    raw = base64.urlsafe_b64decode(jwk[name] + "=" * (-len(jwk[name]) % 4))
    value = int.from_bytes(raw, "big") ^ (1 << (bit % (len(raw) * 8)))
    size = len(raw) + zeros
    outcome = _outcome({**jwk, name: uint(value, size)})
    assert outcome is None


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_public_jwk_of_any_bytes_is_a_jwk_or_refused(der: bytes) -> None:
    try:
        jwk = public_jwk(der)
    except InvalidJwk:
        return
    assert jwk["kty"] in {"RSA", "EC"}
