"""Web identity tokens for tests, made by hand with ``cryptography`` (not
PyJWT, which keycask verifies with): the JWS compact form, JWKs from the
keys' numbers, well-formed and hostile tokens; and a JWKS served over
http://127.0.0.1 by a tiny server that counts its fetches."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

ISSUER = "https://idp.example.com/realms/ci"
AUDIENCE = "keycask-ci"

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES = {"ES256": (ec.SECP256R1, "P-256", 32), "ES384": (ec.SECP384R1, "P-384", 48),
           "ES512": (ec.SECP521R1, "P-521", 66)}  # fmt: skip


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int, size: int | None = None) -> str:
    length = size or max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


def segment(doc: Any) -> str:
    return b64url(json.dumps(doc).encode())


@dataclass
class Signer:
    """One signing key of an IdP: ``alg`` says its type (RS*/PS* RSA, ES*
    its curve, EdDSA Ed25519)."""

    alg: str
    kid: str | None = "key-1"
    rsa_bits: int = 2048
    private: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.private is not None:
            return
        if self.alg[:2] in ("RS", "PS"):
            self.private = rsa.generate_private_key(65537, self.rsa_bits)
        elif self.alg in _CURVES:
            self.private = ec.generate_private_key(_CURVES[self.alg][0]())
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()

    def jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        doc: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            doc = {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}
        elif isinstance(public, ec.EllipticCurvePublicKey):
            _, crv, size = _CURVES[self.alg]
            numbers = public.public_numbers()
            doc = {"kty": "EC", "crv": crv, "x": _int(numbers.x, size), "y": _int(numbers.y, size)}
        else:
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            doc = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        if self.kid is not None:
            doc["kid"] = self.kid
        doc.update(extra)
        return doc

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, data: bytes) -> bytes:
        alg = self.alg
        if alg.startswith("RS"):
            return bytes(self.private.sign(data, padding.PKCS1v15(), _HASHES[alg[2:]]()))
        if alg.startswith("PS"):
            digest = _HASHES[alg[2:]]()
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            return bytes(self.private.sign(data, pss, _HASHES[alg[2:]]()))
        if alg in _CURVES:
            der = self.private.sign(data, ec.ECDSA(_HASHES[alg[2:]]()))
            r, s = utils.decode_dss_signature(der)
            size = _CURVES[alg][2]
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return bytes(self.private.sign(data))

    def token(self, claims: dict[str, Any], *, header: dict[str, Any] | None = None) -> str:
        head: dict[str, Any] = {"alg": self.alg, "typ": "JWT"}
        if self.kid is not None:
            head["kid"] = self.kid
        head.update(header or {})
        return self.raw(json.dumps(head).encode(), json.dumps(claims).encode())

    def raw(self, header: bytes, payload: bytes) -> str:
        """A token of exactly these header and payload bytes, signed."""
        signing_input = f"{b64url(header)}.{b64url(payload)}"
        return f"{signing_input}.{b64url(self.sign(signing_input.encode()))}"


def claims(now: float, **changes: Any) -> dict[str, Any]:
    """A valid ID token's claims at ``now``: ``None`` removes one."""
    doc: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "repo:acme/app:ref:refs/heads/main",
        "aud": AUDIENCE,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 300,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def jwks(*signers: Signer, extra: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"keys": [s.jwk() for s in signers] + (extra or [])})


def hs256(claims_doc: dict[str, Any], secret: bytes, kid: str | None = "key-1") -> str:
    head: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        head["kid"] = kid
    signing_input = f"{segment(head)}.{segment(claims_doc)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def unsigned(claims_doc: dict[str, Any], signature: str = "") -> str:
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims_doc)}.{signature}"


class JwksServer:
    """A JWKS at http://127.0.0.1:<port>/jwks; ``body`` may be changed, and
    ``fetches`` counts the GETs."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.status = 200
        self.location: str | None = None  # sent as Location (a redirect)
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                data = outer.body.encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                if outer.location is not None:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving: the URL then refuses connections."""
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def jwks_server(body: str) -> Iterator[JwksServer]:
    server = JwksServer(body)
    try:
        yield server
    finally:
        server.close()
