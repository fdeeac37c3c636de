"""Vault Transit's sign, verify and hmac in the forms the main suite does
not drive: batch_input, prehashed digests and hmac batches; each signature
checked independently with cryptography."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import hvac
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from tests.conftest import Server


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw(signature: str) -> bytes:
    return base64.b64decode(signature.split(":", 2)[2])


@pytest.fixture(scope="module")
def vault(server: Server) -> hvac.Client:
    name = f"sign-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    allow = {"Effect": "Allow", "Action": ["kms:*"], "Resource": "*"}
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": [allow]}))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    token = json.loads(server.cli("principals", "token", "create", name, "--json").stdout)["Token"]
    return hvac.Client(url=server.endpoint, token=token)


def _post(vault: hvac.Client, path: str, body: dict[str, object]) -> dict[str, Any]:
    return dict(vault.adapter.post(f"/v1/transit/{path}", json=body)["data"])


def _public(vault: hvac.Client, name: str) -> object:
    shown = vault.secrets.transit.read_key(name)["data"]["keys"]["1"]["public_key"]
    return serialization.load_pem_public_key(shown.encode())


def test_batch_sign_and_verify_each_item(vault: hvac.Client) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name, key_type="ecdsa-p256")
    messages = [f"message {n}".encode() for n in range(5)]
    batch = [{"input": _b64(m)} for m in messages]
    signed = vault.secrets.transit.sign_data(name, batch_input=batch)["data"]["batch_results"]
    assert len(signed) == 5
    public = _public(vault, name)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for message, result in zip(messages, signed, strict=True):
        public.verify(_raw(result["signature"]), message, ec.ECDSA(hashes.SHA256()))
    # Verify in a batch: a swapped signature is false, the others true.
    checks = [
        {"input": _b64(m), "signature": r["signature"]}
        for m, r in zip(messages, signed, strict=True)
    ]
    checks[2]["signature"] = signed[3]["signature"]
    # hvac 2.3.0's verify_signed_data takes no batch_input: its adapter posts it.
    verdicts = _post(vault, f"verify/{name}", {"batch_input": checks})
    assert [v["valid"] for v in verdicts["batch_results"]] == [True, True, False, True, True]
    # A bad item (not base64) gets its own error; the rest are signed.
    bad = [{"input": _b64(b"ok")}, {"input": "***"}]
    mixed = vault.adapter.post(f"/v1/transit/sign/{name}", json={"batch_input": bad})["data"]
    assert mixed["batch_results"][0]["signature"].startswith("vault:v1:")
    assert "error" in mixed["batch_results"][1]


@pytest.mark.parametrize(
    ("kind", "algorithm", "digest"),
    [
        ("ecdsa-p256", "sha2-256", hashes.SHA256()),
        ("ecdsa-p384", "sha2-384", hashes.SHA384()),
        ("rsa-2048", "sha2-256", hashes.SHA256()),
        ("rsa-3072", "sha2-512", hashes.SHA512()),
    ],
)
def test_prehashed_signatures_sign_the_digest(
    vault: hvac.Client, kind: str, algorithm: str, digest: hashes.HashAlgorithm
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name, key_type=kind)
    message = b"hashed by the caller"
    hasher = hashes.Hash(digest)
    hasher.update(message)
    hashed = hasher.finalize()
    signed = vault.secrets.transit.sign_data(
        name, _b64(hashed), hash_algorithm=algorithm, prehashed=True
    )["data"]["signature"]
    public = _public(vault, name)
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(_raw(signed), hashed, ec.ECDSA(utils.Prehashed(digest)))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(padding.MGF1(digest), digest.digest_size)
        public.verify(_raw(signed), hashed, pss, utils.Prehashed(digest))
    # The message itself, verified as such, is the same signature.
    assert vault.secrets.transit.verify_signed_data(
        name, _b64(message), signature=signed, hash_algorithm=algorithm
    )["data"]["valid"]
    # A digest of the wrong length for its hash is refused.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.secrets.transit.sign_data(
            name, _b64(hashed[:-1]), hash_algorithm=algorithm, prehashed=True
        )


def test_hmac_batch_and_batch_verify(vault: hvac.Client) -> None:
    """The HMAC key never leaves keycask, so no outside check can recompute
    an HMAC: each is checked by verify (a tampered input is false), by its
    form (32 bytes of HMAC-SHA-256), and by being keyed (not a bare hash,
    nor an HMAC under an empty key)."""
    name = f"k{uuid.uuid4().hex[:8]}"
    # hvac 2.3.0's create_key does not know the hmac type: its adapter posts it.
    vault.adapter.post(f"/v1/transit/keys/{name}", json={"type": "hmac"})
    inputs = [f"item {n}".encode() for n in range(4)]
    # hvac 2.3.0's generate_hmac takes no batch_input: its adapter posts it.
    out = _post(vault, f"hmac/{name}", {"batch_input": [{"input": _b64(i)} for i in inputs]})[
        "batch_results"
    ]
    macs = [r["hmac"] for r in out]
    assert all(m.startswith("vault:v1:") and len(_raw(m)) == 32 for m in macs)
    assert len(set(macs)) == 4
    checks = [{"input": _b64(i), "hmac": m} for i, m in zip(inputs, macs, strict=True)]
    checks[0]["input"] = _b64(b"tampered")
    verdicts = _post(vault, f"verify/{name}", {"batch_input": checks})
    assert [v["valid"] for v in verdicts["batch_results"]] == [False, True, True, True]
    # Not a digest of the input alone: a keyed hash.
    assert _raw(macs[1]) != hashlib.sha256(inputs[1]).digest()
    assert not hmac.compare_digest(_raw(macs[1]), hmac.new(b"", inputs[1], "sha256").digest())
