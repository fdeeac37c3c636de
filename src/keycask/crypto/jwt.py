"""Web identity tokens: a compact JWS (an OpenID Connect ID token) checked
against a provider's JWK Set, and its time claims against a given time.

The only module that imports PyJWT, and it uses only PyJWT's per-algorithm
key loading and signature verification: the compact form, the header, the
claims and the times are parsed and checked here, so every rule is in one
place and nothing depends on PyJWT's defaults (its own ``decode`` reads the
system clock and trusts its ``algorithms`` argument to exclude ``none``).

Rules, each because a weaker one has been an attack somewhere:

* The algorithm comes from an allowlist of public-key signatures (RS*, PS*,
  ES*, EdDSA). ``none`` and every HMAC (HS*) are refused whatever the JWKS
  holds: an HMAC "verified" with a public key as its secret is the classic
  key-confusion forgery, since the public key is public.
* The key must fit the algorithm (RSA for RS/PS, the algorithm's own curve
  for ES, an OKP curve for EdDSA) and, when the JWK names an ``alg``, be
  that algorithm's; symmetric (``oct``) and encryption-only keys are never
  loaded, and a JWKS holding a private key is refused (it was pasted wrong,
  and keycask must not keep an IdP's secret).
* The key is the one the header's ``kid`` names; a token without ``kid``
  may use the only key of its algorithm's type, never "any key that works".
* Keys named in the token itself (``jwk``, ``jku``, ``x5u``, ``x5c``) are
  ignored, and any ``crit`` extension is refused (RFC 7515 4.1.11: one not
  understood must be refused; keycask understands none).
* Duplicate JSON members in the header or claims are refused: two readers
  taking different ``aud`` values from one token is a way past a check.
* The token is at most 20,000 characters, the ``WebIdentityToken`` maximum
  of botocore's STS model, so nothing larger is ever decoded.
* ``exp`` is required; ``exp``, ``nbf`` and ``iat`` are checked against the
  caller's ``now`` with 60 s of leeway: enough for clocks kept by NTP on
  two machines, small against the minutes an ID token lives (5 minutes and
  more at the common issuers), so a stolen token gains at most a minute.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError, PyJWKError

ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
MAX_TOKEN_CHARS = 20_000
MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 100
LEEWAY_SECONDS = 60.0
# NIST SP 800-131A: RSA below 2048 bits signs nothing new.
_MIN_RSA_BITS = 2048
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ALGORITHM = {name: get_default_algorithms()[name] for name in ALGORITHMS}


class TokenError(Exception):
    """A token refused; the message names the rule, never the token."""


class MalformedToken(TokenError):
    pass


class NoSigningKey(TokenError):
    """The JWKS has no key for the token (an unknown ``kid``): a fresher
    copy of the JWKS might."""


class BadSignature(TokenError):
    pass


class Expired(TokenError):
    pass


class NotYetValid(TokenError):
    """``nbf`` or ``iat`` later than now (past the leeway)."""


class MalformedJwks(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token taken apart, nothing in it trusted yet."""

    algorithm: str
    key_id: str | None
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str | None
    kty: str
    curve: str | None  # EC and OKP keys
    alg: str | None  # as the JWK names it, if it does
    key: Any = field(repr=False)  # PyJWT's loaded public key

    def fits(self, algorithm: str) -> bool:
        if self.alg is not None and self.alg != algorithm:
            return False
        if algorithm.startswith(("RS", "PS")):
            return self.kty == "RSA"
        if algorithm in _EC_CURVES:
            return self.kty == "EC" and self.curve == _EC_CURVES[algorithm]
        return algorithm == "EdDSA" and self.kty == "OKP" and self.curve in _OKP_CURVES


@dataclass(frozen=True, slots=True)
class Jwks:
    keys: tuple[SigningKey, ...]

    def find(self, algorithm: str, kid: str | None) -> SigningKey | None:
        """The key ``kid`` names (fitting the algorithm), or with no kid the
        only key that fits; None when there is none, or no single one."""
        fitting = [key for key in self.keys if key.fits(algorithm)]
        if kid is not None:
            named = [key for key in fitting if key.kid == kid]
            return named[0] if len(named) == 1 else None
        return fitting[0] if len(fitting) == 1 else None


# -- JSON, strictly --


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("duplicate member")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes | str, what: str, error: type[Exception]) -> dict[str, Any]:
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise error(f"the {what} is not JSON without duplicate members") from None
    if not isinstance(doc, dict):
        raise error(f"the {what} is not a JSON object")
    return doc


def _b64url(segment: str, what: str) -> bytes:
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise MalformedToken(f"the {what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken(f"the {what} is not unpadded base64url") from None


# -- tokens --


def parse(token: str) -> UnverifiedToken:
    """The token's parts; MalformedToken unless it is a compact JWS of an
    allowed algorithm with JSON object header and claims."""
    if len(token) > MAX_TOKEN_CHARS:
        raise MalformedToken(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("the token is not a compact JWS (three base64url parts)")
    header = _json_object(_b64url(parts[0], "header"), "header", MalformedToken)
    claims = _json_object(_b64url(parts[1], "payload"), "payload", MalformedToken)
    signature = _b64url(parts[2], "signature")
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        shown = algorithm[:16] if isinstance(algorithm, str) else type(algorithm).__name__
        raise MalformedToken(
            f"the token's alg {shown!r} is not one of {', '.join(sorted(ALGORITHMS))}"
        )
    if "crit" in header:
        raise MalformedToken("the token names critical header extensions (crit)")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise MalformedToken("the token's kid is not a string")
    if not signature:
        raise MalformedToken("the token is not signed")
    return UnverifiedToken(
        algorithm,
        kid,
        header,
        claims,
        f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature,
    )


def verify_signature(token: UnverifiedToken, jwks: Jwks) -> None:
    """NoSigningKey if ``jwks`` has no key for it; BadSignature if the key
    it has did not sign it."""
    key = jwks.find(token.algorithm, token.key_id)
    if key is None:
        raise NoSigningKey(
            "no key of the provider's JWKS fits the token's alg and kid"
            if token.key_id is None or any(k.kid == token.key_id for k in jwks.keys)
            else "the provider's JWKS has no key with the token's kid"
        )
    try:
        valid = _ALGORITHM[token.algorithm].verify(token.signing_input, key.key, token.signature)
    except (ValueError, TypeError, InvalidKeyError):
        valid = False
    if not valid:
        raise BadSignature("the token's signature does not verify")


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedToken(f"the token's {name} is not a number of seconds")
    try:
        seconds = float(value)
    except OverflowError:
        raise MalformedToken(f"the token's {name} is out of range") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise MalformedToken(f"the token's {name} is out of range")
    return seconds


def check_times(
    claims: Mapping[str, Any], *, now: float, leeway: float = LEEWAY_SECONDS
) -> tuple[float | None, float]:
    """(iat or None, exp) once the token is valid at ``now``: Expired past
    ``exp``, NotYetValid before ``nbf`` or ``iat``, MalformedToken
    without ``exp``."""
    expires = _time(claims, "exp")
    not_before = _time(claims, "nbf")
    issued = _time(claims, "iat")
    if expires is None:
        raise MalformedToken("the token has no exp")
    if now >= expires + leeway:
        raise Expired("the token has expired")
    if not_before is not None and now + leeway < not_before:
        raise NotYetValid("the token is not valid yet (nbf)")
    if issued is not None and now + leeway < issued:
        raise NotYetValid("the token was issued in the future (iat)")
    return issued, expires


# -- JWK sets --


def _load_key(jwk: dict[str, Any]) -> SigningKey | None:
    """The JWK as a signing key, or None for a key that signs nothing
    keycask accepts (symmetric, encryption-only, another curve)."""
    if _PRIVATE_MEMBERS & set(jwk):
        raise MalformedJwks("the JWKS holds a private or secret key; give the public keys only")
    kty, kid, alg, use = jwk.get("kty"), jwk.get("kid"), jwk.get("alg"), jwk.get("use")
    curve = jwk.get("crv")
    for name, value in (("kty", kty), ("kid", kid), ("alg", alg), ("use", use), ("crv", curve)):
        if value is not None and not isinstance(value, str):
            raise MalformedJwks(f"a key's {name} is not a string")
    if use not in (None, "sig") or (alg is not None and alg not in ALGORITHMS):
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if kty == "RSA":
        loader = "RS256"
    elif kty == "EC":
        loader = next((a for a, c in _EC_CURVES.items() if c == curve), "")
    elif kty == "OKP":
        loader = "EdDSA" if curve in _OKP_CURVES else ""
    else:
        return None
    if not loader:
        return None
    try:
        key = _ALGORITHM[loader].from_jwk(jwk)
    except (InvalidKeyError, PyJWKError, ValueError, TypeError, KeyError):
        # PyJWT's messages quote the JWK: not repeated.
        raise MalformedJwks(f"a {kty} key of the JWKS cannot be loaded") from None
    if isinstance(key, rsa.RSAPrivateKey):
        raise MalformedJwks("the JWKS holds a private key; give the public keys only")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise MalformedJwks(f"an RSA key of the JWKS is shorter than {_MIN_RSA_BITS} bits")
    return SigningKey(kid, kty, curve, alg, key)


def parse_jwks(text: str | bytes) -> Jwks:
    """A JWK Set ({"keys": [...]}) as signing keys; MalformedJwks if it is
    not one, holds a private key, or has no key keycask can verify with."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_JWKS_BYTES:
        raise MalformedJwks(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    doc = _json_object(text, "JWKS", MalformedJwks)
    keys = doc.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise MalformedJwks('the JWKS is not {"keys": [JWK, ...]}')
    if len(keys) > MAX_JWKS_KEYS:
        raise MalformedJwks(f"the JWKS has more than {MAX_JWKS_KEYS} keys")
    loaded = tuple(key for key in (_load_key(jwk) for jwk in keys) if key is not None)
    if not loaded:
        raise MalformedJwks(
            "the JWKS has no public signing key of a type keycask accepts "
            "(RSA, EC P-256/P-384/P-521, Ed25519, Ed448)"
        )
    return Jwks(loaded)
