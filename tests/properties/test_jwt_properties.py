"""Properties of the web identity token parser (crypto/jwt.py) and of the
JWK Set parser: no input makes them raise anything but their own refusal,
and no change to a signed token that changes what it says is accepted."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keycask.crypto import jwt as kjwt
from oidc_tokens import Signer, b64url, claims, jwks

NOW = time.time()
SIGNERS = {alg: Signer(alg, kid=f"key-{alg}") for alg in ("RS256", "ES256", "EdDSA")}
KEYS = kjwt.parse_jwks(jwks(*SIGNERS.values()))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=8,
)  # fmt: skip
segments = st.one_of(
    st.text(alphabet="ABCabc012-_=+/. \n", max_size=40),
    st.builds(lambda v: b64url(json.dumps(v).encode()), json_values),
    st.builds(lambda b: b64url(b), st.binary(max_size=40)),
)


def _accepts(token: str) -> dict[str, Any] | None:
    """The claims ``token`` is accepted with, or None if it is refused (by
    the module's own errors only: anything else propagates and fails)."""
    try:
        parsed = kjwt.parse(token)
        kjwt.verify_signature(parsed, KEYS)
        kjwt.check_times(parsed.claims, now=NOW)
    except kjwt.TokenError:
        return None
    return dict(parsed.claims)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
@example("..")
@example("e30.e30.")
@example("eyJhbGciOiJub25lIn0.e30.")
def test_text_is_never_accepted_and_never_crashes(text: str) -> None:
    assert _accepts(text) is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(segments, segments, segments)
def test_three_segments_of_anything_are_refused(head: str, body: str, sig: str) -> None:
    assert _accepts(f"{head}.{body}.{sig}") is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(SIGNERS)),
    st.data(),
)
def test_a_changed_token_is_accepted_only_if_it_says_the_same(
    alg: str, data: st.DataObject
) -> None:
    signer = SIGNERS[alg]
    token = signer.token(claims(NOW, nonce=data.draw(st.text(max_size=6))))
    original = _accepts(token)
    assert original is not None
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("Aa0-_.=/+ "))
    changed = token[:position] + replacement + token[position + 1 :]
    accepted = _accepts(changed)
    if accepted is not None:
        # Only a change that decodes to the same bytes (base64url's spare
        # low bits in a segment's last character) can keep the signature.
        assert accepted == original
        assert _decoded(changed) == _decoded(token)


def _decoded(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_as_a_jwks_is_a_jwks_or_refused(value: Any) -> None:
    for doc in (value, {"keys": value}, {"keys": [value]}):
        try:
            parsed = kjwt.parse_jwks(json.dumps(doc))
        except kjwt.MalformedJwks:
            continue
        assert parsed.keys  # never an empty set


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["kty", "crv", "x", "y", "n", "e", "kid", "use", "alg"]),
        st.one_of(st.text(max_size=12), st.integers(), st.none()),
        max_size=9,
    )
)
def test_any_jwk_loads_or_is_refused(jwk: dict[str, Any]) -> None:
    with contextlib.suppress(kjwt.MalformedJwks):
        kjwt.parse_jwks(json.dumps({"keys": [jwk]}))
