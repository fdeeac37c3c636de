"""The KMS door's flat path (``KmsDoor.flat``, ``Codec.flat_decoder`` and
``flat_encoder``) answers every request exactly as the general path does.

Each request is sent twice through the whole pipeline of one server (the
app as ``keycask.app.build`` builds it, tests/service_harness.py): once with
the flat path, once with ``door.flat = False``. The answers must be the same
bytes, status included, and the audit records the same but for their time,
request id and chain members. The randomness a success draws (the message
salt and nonce, a data key) comes from one seeded stream, restarted before
each of the two sends, so successes are byte-identical too; the one
exception is RSA-OAEP encryption, whose randomness is OpenSSL's: those two
ciphertexts must decrypt to the same plaintext.

Every error of the fast-pathed operations is covered by name below (malformed
JSON, wrong types, missing, null, unknown and unsupported members, lengths,
key references, key states, denial, ciphertexts, contexts, grant tokens,
DryRun, key usage and algorithms), and hypothesis adds bodies built from the
operations' members and values of every JSON type.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.crypto import message as message_module
from keycask.errors import KMSError
from keycask.http.awsjson import Codec
from keycask.service.core.handlers import crypto as crypto_handlers
from keycask.service.core.operations import OPERATIONS
from keycask.service.core.requests import build, fields_of
from keycask.service.doors.kms import FLAT, KmsDoor
from keycask.service.pipeline import Reply
from service_harness import ACCOUNT, REGION, Service, service

# Members of an audit line that differ between any two requests.
_PER_LINE = frozenset({"time", "request_id", "seq", "prev", "mac"})
_OTHER_REGION = "us-east-2" if REGION != "us-east-2" else "us-west-2"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _Stream:
    """A deterministic stand-in for the OS CSPRNG, restarted per send."""

    def __init__(self) -> None:
        self.counter = 0

    def restart(self) -> None:
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self.counter += 1
            out += hashlib.sha256(self.counter.to_bytes(8, "big")).digest()
        return out[:n]


@dataclass
class World:
    svc: Service
    nobody: Service  # a principal with no permissions at all
    door: KmsDoor
    stream: _Stream
    key: str
    key_arn: str
    alias: str
    disabled: str
    rsa: str
    signer: str
    mac: str
    ciphertext: str  # under ``key``, with the context {"purpose": "test"}
    disabled_ciphertext: str
    rsa_ciphertext: str

    def refs(self) -> list[str]:
        alias_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:{self.alias}"
        return [
            self.key,
            self.key_arn,
            self.alias,
            alias_arn,
            self.disabled,
            self.rsa,
            self.signer,
            self.mac,
            "alias/missing",
            "not-a-key",
            "00000000-0000-4000-8000-000000000000",
            f"arn:aws:kms:{_OTHER_REGION}:{ACCOUNT}:key/{self.key}",
            f"arn:aws-cn:kms:{REGION}:{ACCOUNT}:key/{self.key}",
            f"arn:aws:kms:{REGION}:444455556666:key/{self.key}",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/missing",
        ]


async def _ok(svc: Service, operation: str, **body: Any) -> dict[str, Any]:
    reply = await svc.send("TrentService." + operation, body)
    assert reply.status == 200, reply.body
    answer: dict[str, Any] = json.loads(reply.body or b"{}")
    return answer


async def _world(svc: Service) -> World:
    kms_door = svc.pipeline.doors.fallback
    assert isinstance(kms_door, KmsDoor)
    meta = (await _ok(svc, "CreateKey"))["KeyMetadata"]
    key, key_arn = meta["KeyId"], meta["Arn"]
    await _ok(svc, "CreateAlias", AliasName="alias/flat", TargetKeyId=key)
    disabled = (await _ok(svc, "CreateKey"))["KeyMetadata"]["KeyId"]
    rsa = (await _ok(svc, "CreateKey", KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT"))[
        "KeyMetadata"
    ]["KeyId"]
    signer = (await _ok(svc, "CreateKey", KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY"))[
        "KeyMetadata"
    ]["KeyId"]
    mac = (await _ok(svc, "CreateKey", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"))[
        "KeyMetadata"
    ]["KeyId"]
    context = {"purpose": "test"}
    ciphertext = (
        await _ok(svc, "Encrypt", KeyId=key, Plaintext=_b64(b"secret"), EncryptionContext=context)
    )["CiphertextBlob"]
    disabled_ciphertext = (await _ok(svc, "Encrypt", KeyId=disabled, Plaintext=_b64(b"x")))[
        "CiphertextBlob"
    ]
    rsa_ciphertext = (
        await _ok(
            svc,
            "Encrypt",
            KeyId=rsa,
            Plaintext=_b64(b"rsa secret"),
            EncryptionAlgorithm="RSAES_OAEP_SHA_256",
        )
    )["CiphertextBlob"]
    await _ok(svc, "DisableKey", KeyId=disabled)
    access = await svc.runtime.credentials.create_principal(ACCOUNT, "nobody", admin=False)
    nobody = replace(svc, access_key=(access.access_key_id, access.secret))
    return World(
        svc,
        nobody,
        kms_door,
        _Stream(),
        key,
        key_arn,
        "alias/flat",
        disabled,
        rsa,
        signer,
        mac,
        ciphertext,
        disabled_ciphertext,
        rsa_ciphertext,
    )


@contextmanager
def _seeded(stream: _Stream) -> Iterator[None]:
    """Message salts and nonces and data keys drawn from ``stream``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message_module, "os", types.SimpleNamespace(urandom=stream))
        patch.setattr(crypto_handlers, "random_bytes", stream)
        yield


def _records(svc: Service, reply: Reply) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in record.items() if k not in _PER_LINE} for record in svc.record_of(reply)
    ]


async def _decrypt(world: World, blob: str, algorithm: str) -> bytes:
    answer = await _ok(
        world.svc, "Decrypt", KeyId=world.rsa, CiphertextBlob=blob, EncryptionAlgorithm=algorithm
    )
    return base64.b64decode(answer["Plaintext"])


async def _both(
    world: World, operation: str, body: dict[str, Any] | bytes, *, caller: Service | None = None
) -> tuple[Reply, Reply]:
    """Send ``body`` by the flat path and by the general one; assert the two
    answers and their audit records are the same."""
    svc = caller or world.svc
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    replies = []
    try:
        for flat in (True, False):
            world.door.flat = flat
            world.stream.restart()
            with _seeded(world.stream):
                replies.append(await svc.send("TrentService." + operation, data))
    finally:
        world.door.flat = True
    fast, general = replies
    assert fast.status == general.status, (fast.body, general.body)
    if fast.body != general.body:
        # Only RSA-OAEP draws randomness that is not ours to seed.
        assert operation == "Encrypt" and fast.status == 200, (fast.body, general.body)
        one, other = json.loads(fast.body), json.loads(general.body)
        assert one.keys() == other.keys()
        assert {k: v for k, v in one.items() if k != "CiphertextBlob"} == {
            k: v for k, v in other.items() if k != "CiphertextBlob"
        }
        algorithm = one["EncryptionAlgorithm"]
        assert await _decrypt(world, one["CiphertextBlob"], algorithm) == await _decrypt(
            world, other["CiphertextBlob"], algorithm
        )
    assert _records(world.svc, fast) == _records(world.svc, general)
    assert _records(world.svc, fast), "every request is audited"
    return fast, general


def _cases(w: World) -> list[tuple[str, Any, str]]:
    """(operation, body, what the answer is: "ok" or the error code)."""
    pt = _b64(b"hello")
    ctx = {"purpose": "test"}
    key = w.key
    cases: list[tuple[str, Any, str]] = []
    for op in FLAT:
        cases += [
            (op, b"", "*"),
            (op, b"{", "SerializationException"),
            (op, b"[]", "SerializationException"),
            (op, b"null", "SerializationException"),
            (op, b'"text"', "SerializationException"),
            (op, b"\xff\xfe", "SerializationException"),
            (op, {}, "ValidationException"),
            (op, {"KeyId": key, "Unknown": 1}, "ValidationException"),
            (op, {"KeyId": 5}, "SerializationException"),
            (op, {"KeyId": key, "GrantTokens": "token"}, "SerializationException"),
        ]
    cases += [
        # Encrypt
        ("Encrypt", {"KeyId": key, "Plaintext": pt}, "ok"),
        ("Encrypt", {"KeyId": w.key_arn, "Plaintext": pt, "EncryptionContext": ctx}, "ok"),
        ("Encrypt", {"KeyId": w.alias, "Plaintext": pt, "GrantTokens": []}, "ok"),
        (
            "Encrypt",
            {"KeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:{w.alias}", "Plaintext": pt},
            "ok",
        ),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
            "ok",
        ),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "DryRun": True}, "DryRunOperationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "DryRun": False}, "ok"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "DryRun": "yes"}, "SerializationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": _b64(os.urandom(4096))}, "ok"),
        ("Encrypt", {"KeyId": key, "Plaintext": _b64(os.urandom(4097))}, "ValidationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": ""}, "ValidationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": "not base64!"}, "SerializationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": 12}, "SerializationException"),
        ("Encrypt", {"KeyId": key}, "ValidationException"),
        ("Encrypt", {"Plaintext": pt}, "ValidationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "EncryptionContext": None}, "ok"),
        ("Encrypt", {"KeyId": None, "Plaintext": pt}, "ValidationException"),
        ("Encrypt", {"KeyId": "", "Plaintext": pt}, "ValidationException"),
        ("Encrypt", {"KeyId": "k" * 2049, "Plaintext": pt}, "ValidationException"),
        ("Encrypt", {"KeyId": "not-a-key", "Plaintext": pt}, "NotFoundException"),
        ("Encrypt", {"KeyId": "alias/missing", "Plaintext": pt}, "NotFoundException"),
        ("Encrypt", {"KeyId": w.refs()[10], "Plaintext": pt}, "NotFoundException"),
        ("Encrypt", {"KeyId": w.refs()[11], "Plaintext": pt}, "NotFoundException"),
        ("Encrypt", {"KeyId": w.refs()[12], "Plaintext": pt}, "NotFoundException"),
        ("Encrypt", {"KeyId": w.refs()[13], "Plaintext": pt}, "*"),
        ("Encrypt", {"KeyId": w.disabled, "Plaintext": pt}, "DisabledException"),
        ("Encrypt", {"KeyId": w.mac, "Plaintext": pt}, "InvalidKeyUsageException"),
        ("Encrypt", {"KeyId": w.signer, "Plaintext": pt}, "InvalidKeyUsageException"),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
            "InvalidKeyUsageException",
        ),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionAlgorithm": "ROT13"},
            "ValidationException",
        ),
        ("Encrypt", {"KeyId": w.rsa, "Plaintext": pt}, "InvalidKeyUsageException"),
        (
            "Encrypt",
            {"KeyId": w.rsa, "Plaintext": pt, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
            "ok",
        ),
        (
            "Encrypt",
            {
                "KeyId": w.rsa,
                "Plaintext": pt,
                "EncryptionAlgorithm": "RSAES_OAEP_SHA_1",
                "EncryptionContext": ctx,
            },
            "ValidationException",
        ),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "EncryptionContext": []}, "*"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "EncryptionContext": {"a": 1}}, "*"),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionContext": {"a": "1", "A": "2"}},
            "ValidationException",
        ),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionContext": {str(i): "" for i in range(257)}},
            "ValidationException",
        ),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionContext": {"big": "v" * 70000}},
            "ValidationException",
        ),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "EncryptionContext": {"a": "\ud800"}},
            "*",
        ),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "GrantTokens": ["bogus"]}, "*"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "GrantTokens": [""]}, "ValidationException"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "GrantTokens": [1]}, "*"),
        ("Encrypt", {"KeyId": key, "Plaintext": pt, "GrantTokens": ["t"] * 11}, "*"),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": pt, "Recipient": {"KeyEncryptionAlgorithm": "x"}},
            "*",
        ),
        (
            "Encrypt",
            f'{{"KeyId": "{key}", "Plaintext": "{pt}", "KeyId": "alias/missing"}}'.encode(),
            "NotFoundException",
        ),
        (
            "Encrypt",
            f'{{"KeyId": "{key}", "Plaintext": "{pt}", "Plaintext": ""}}'.encode(),
            "ValidationException",
        ),
        # Decrypt
        ("Decrypt", {"CiphertextBlob": w.ciphertext, "EncryptionContext": ctx}, "ok"),
        (
            "Decrypt",
            {"CiphertextBlob": w.ciphertext, "EncryptionContext": ctx, "KeyId": w.alias},
            "ok",
        ),
        ("Decrypt", {"CiphertextBlob": w.ciphertext}, "InvalidCiphertextException"),
        (
            "Decrypt",
            {"CiphertextBlob": w.ciphertext, "EncryptionContext": {"purpose": "other"}},
            "InvalidCiphertextException",
        ),
        (
            "Decrypt",
            {"CiphertextBlob": w.ciphertext, "EncryptionContext": ctx, "KeyId": w.disabled},
            "IncorrectKeyException",
        ),
        (
            "Decrypt",
            {"CiphertextBlob": w.ciphertext, "EncryptionContext": ctx, "DryRun": True},
            "DryRunOperationException",
        ),
        (
            "Decrypt",
            {"CiphertextBlob": w.ciphertext, "EncryptionContext": ctx, "GrantTokens": ["x"]},
            "*",
        ),
        (
            "Decrypt",
            {
                "CiphertextBlob": w.ciphertext,
                "EncryptionContext": ctx,
                "EncryptionAlgorithm": "RSAES_OAEP_SHA_1",
            },
            "InvalidKeyUsageException",
        ),
        ("Decrypt", {"CiphertextBlob": w.disabled_ciphertext}, "DisabledException"),
        (
            "Decrypt",
            {"CiphertextBlob": w.rsa_ciphertext, "KeyId": w.rsa},
            "InvalidKeyUsageException",
        ),
        (
            "Decrypt",
            {
                "CiphertextBlob": w.rsa_ciphertext,
                "KeyId": w.rsa,
                "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            },
            "ok",
        ),
        ("Decrypt", {"CiphertextBlob": _b64(os.urandom(200))}, "InvalidCiphertextException"),
        ("Decrypt", {"CiphertextBlob": _b64(b"\x01" * 80)}, "InvalidCiphertextException"),
        ("Decrypt", {"CiphertextBlob": w.ciphertext[:40]}, "*"),
        ("Decrypt", {"CiphertextBlob": _b64(os.urandom(6145))}, "ValidationException"),
        ("Decrypt", {"CiphertextBlob": ""}, "ValidationException"),
        ("Decrypt", {"EncryptionContext": ctx}, "ValidationException"),
        ("Decrypt", {"CiphertextBlob": w.ciphertext, "DryRunModifiers": []}, "*"),
        (
            "Decrypt",
            {"CiphertextBlob": w.ciphertext, "Recipient": {"AttestationDocument": "AA=="}},
            "*",
        ),
        # GenerateDataKey, GenerateDataKeyWithoutPlaintext
        *[
            case
            for op in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext")
            for case in [
                (op, {"KeyId": key, "KeySpec": "AES_256"}, "ok"),
                (op, {"KeyId": w.alias, "KeySpec": "AES_128", "EncryptionContext": ctx}, "ok"),
                (op, {"KeyId": key, "NumberOfBytes": 64}, "ok"),
                (op, {"KeyId": key, "NumberOfBytes": 1024}, "ok"),
                (op, {"KeyId": key, "NumberOfBytes": 1025}, "ValidationException"),
                (op, {"KeyId": key, "NumberOfBytes": 0}, "ValidationException"),
                (op, {"KeyId": key, "NumberOfBytes": 2**40}, "*"),
                (op, {"KeyId": key, "NumberOfBytes": 1.5}, "SerializationException"),
                (op, {"KeyId": key, "NumberOfBytes": True}, "SerializationException"),
                (op, {"KeyId": key}, "ValidationException"),
                (op, {"KeyId": key, "KeySpec": "AES_256", "NumberOfBytes": 32}, "*"),
                (op, {"KeyId": key, "KeySpec": "AES_512"}, "ValidationException"),
                (op, {"KeyId": key, "KeySpec": "AES_256", "DryRun": True}, "*"),
                (op, {"KeyId": w.disabled, "KeySpec": "AES_256"}, "DisabledException"),
                (op, {"KeyId": w.rsa, "KeySpec": "AES_256"}, "InvalidKeyUsageException"),
                (op, {"KeyId": "alias/missing", "KeySpec": "AES_256"}, "NotFoundException"),
                (op, {"KeyId": key, "KeySpec": "AES_256", "GrantTokens": ["g"]}, "*"),
                (
                    op,
                    {"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"x": "", "X": ""}},
                    "ValidationException",
                ),
                (op, {"KeySpec": "AES_256"}, "ValidationException"),
            ]
        ],
        # Sign (RSASSA-PKCS1-v1_5 is deterministic: the two signatures are equal)
        (
            "Sign",
            {
                "KeyId": w.signer,
                "Message": pt,
                "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            },
            "ok",
        ),
        (
            "Sign",
            {
                "KeyId": w.signer,
                "Message": _b64(b"\x00" * 32),
                "MessageType": "DIGEST",
                "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            },
            "ok",
        ),
        (
            "Sign",
            {
                "KeyId": w.signer,
                "Message": pt,
                "MessageType": "DIGEST",
                "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            },
            "*",
        ),
        ("Sign", {"KeyId": w.signer, "Message": pt}, "ValidationException"),
        (
            "Sign",
            {"KeyId": w.signer, "Message": pt, "SigningAlgorithm": "ECDSA_SHA_256"},
            "InvalidKeyUsageException",
        ),
        (
            "Sign",
            {"KeyId": key, "Message": pt, "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"},
            "InvalidKeyUsageException",
        ),
        (
            "Sign",
            {
                "KeyId": w.signer,
                "Message": pt,
                "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
                "DryRun": True,
            },
            "DryRunOperationException",
        ),
        (
            "Sign",
            {
                "KeyId": w.signer,
                "Message": _b64(b"m" * 4097),
                "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            },
            "ValidationException",
        ),
        # GenerateMac
        ("GenerateMac", {"KeyId": w.mac, "Message": pt, "MacAlgorithm": "HMAC_SHA_256"}, "ok"),
        (
            "GenerateMac",
            {"KeyId": w.mac, "Message": pt, "MacAlgorithm": "HMAC_SHA_512"},
            "InvalidKeyUsageException",
        ),
        (
            "GenerateMac",
            {"KeyId": key, "Message": pt, "MacAlgorithm": "HMAC_SHA_256"},
            "InvalidKeyUsageException",
        ),
        (
            "GenerateMac",
            {"KeyId": w.mac, "Message": pt, "MacAlgorithm": "HMAC_SHA_256", "DryRun": True},
            "DryRunOperationException",
        ),
        (
            "GenerateMac",
            {"KeyId": w.mac, "Message": "", "MacAlgorithm": "HMAC_SHA_256"},
            "ValidationException",
        ),
        ("GenerateMac", {"KeyId": w.mac, "Message": pt}, "ValidationException"),
    ]
    return cases


def _code(reply: Reply) -> str:
    if reply.status == 200:
        return "ok"
    return str(json.loads(reply.body)["__type"])


async def test_the_flat_path_answers_every_case_as_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        world = await _world(svc)
        for operation, body, expected in _cases(world):
            fast, _ = await _both(world, operation, body)
            if expected != "*":
                assert _code(fast) == expected, (operation, body, fast.body)


async def test_a_caller_without_permission_is_denied_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        world = await _world(svc)
        pt = _b64(b"hello")
        cases: list[tuple[str, dict[str, Any]]] = [
            ("Encrypt", {"KeyId": world.key, "Plaintext": pt}),
            ("Encrypt", {"KeyId": world.alias, "Plaintext": pt, "DryRun": True}),
            (
                "Decrypt",
                {"CiphertextBlob": world.ciphertext, "EncryptionContext": {"purpose": "test"}},
            ),
            ("GenerateDataKey", {"KeyId": world.key, "KeySpec": "AES_256"}),
            ("GenerateDataKeyWithoutPlaintext", {"KeyId": world.key, "NumberOfBytes": 16}),
            ("GenerateMac", {"KeyId": world.mac, "Message": pt, "MacAlgorithm": "HMAC_SHA_256"}),
        ]
        for operation, body in cases:
            fast, _ = await _both(world, operation, body, caller=world.nobody)
            assert _code(fast) == "AccessDeniedException", fast.body


async def test_the_flat_path_is_taken_for_the_hot_operations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam works: with the flat path on, a well-formed body never
    reaches the general decoder or encoder; with it off, always."""
    async with service(tmp_path, monkeypatch) as svc:
        world = await _world(svc)
        codec = world.door._codec
        general: list[str] = []
        decode, decode_parsed, encode = codec.decode, codec.decode_parsed, codec.encode

        def counting_decode(operation: str, body: bytes) -> dict[str, Any]:
            general.append("decode")
            return decode(operation, body)

        def counting_decode_parsed(operation: str, document: Any) -> dict[str, Any]:
            general.append("decode")
            return decode_parsed(operation, document)

        def counting_encode(operation: str, result: object | None) -> bytes:
            general.append("encode")
            return encode(operation, result)

        monkeypatch.setattr(codec, "decode", counting_decode)
        monkeypatch.setattr(codec, "decode_parsed", counting_decode_parsed)
        monkeypatch.setattr(codec, "encode", counting_encode)
        body = {"KeyId": world.key, "Plaintext": _b64(b"x"), "EncryptionContext": {"a": "b"}}
        reply = await svc.send("TrentService.Encrypt", body)
        assert reply.status == 200 and general == []
        world.door.flat = False
        reply = await svc.send("TrentService.Encrypt", body)
        world.door.flat = True
        assert reply.status == 200 and general == ["decode", "encode"]


# -- bodies from hypothesis --

_MEMBERS = {
    "Encrypt": ["KeyId", "Plaintext", "EncryptionContext", "GrantTokens", "EncryptionAlgorithm"],
    "Decrypt": ["CiphertextBlob", "EncryptionContext", "KeyId", "EncryptionAlgorithm"],
    "GenerateDataKey": ["KeyId", "EncryptionContext", "NumberOfBytes", "KeySpec", "GrantTokens"],
    "GenerateDataKeyWithoutPlaintext": ["KeyId", "KeySpec", "NumberOfBytes", "GrantTokens"],
    "Sign": ["KeyId", "Message", "MessageType", "SigningAlgorithm", "GrantTokens"],
    "GenerateMac": ["KeyId", "Message", "MacAlgorithm", "GrantTokens"],
}
_COMMON = ["DryRun", "Recipient", "Bogus", "keyId"]
_ENUMS = [
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_256",
    "AES_256",
    "AES_128",
    "RAW",
    "DIGEST",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "ECDSA_SHA_256",
    "HMAC_SHA_256",
    "HMAC_SHA_512",
    "",
]


def _values(world: World) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.integers(min_value=-2, max_value=1100),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(world.refs() + _ENUMS + [world.ciphertext, world.rsa_ciphertext]),
        st.binary(min_size=0, max_size=300).map(_b64),
        st.binary(min_size=4090, max_size=4100).map(_b64),
        st.just("not base64!"),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=12),
        st.dictionaries(st.text(max_size=8), scalars, max_size=4),
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    )


def _bodies(world: World) -> st.SearchStrategy[tuple[str, Any]]:
    values = _values(world)

    # Well formed but for what hypothesis picks: this world's keys and
    # ciphertexts, so that many bodies get as far as the handler.
    valid = {
        **_VALID,
        "KeyId": st.sampled_from(world.refs()),
        "CiphertextBlob": st.sampled_from([world.ciphertext, world.rsa_ciphertext])
        | _VALID["CiphertextBlob"],
        "EncryptionContext": st.just({"purpose": "test"}) | _VALID["EncryptionContext"],
    }

    def for_operation(op: str) -> st.SearchStrategy[tuple[str, Any]]:
        names = st.sampled_from(_MEMBERS[op] + _COMMON)
        required = _REQUIRED[op]
        body = st.one_of(
            st.fixed_dictionaries(
                {name: valid[name] for name in required},
                optional={
                    name: valid[name] for name in _MEMBERS[op] + ["DryRun"] if name not in required
                },
            ),
            st.dictionaries(names, values, max_size=6),
            st.fixed_dictionaries(
                {name: st.sampled_from(world.refs()) for name in _MEMBERS[op][:1]},
                optional={name: values for name in _MEMBERS[op][1:] + _COMMON},
            ),
            st.binary(max_size=30),
            values,
        )
        return st.tuples(st.just(op), body)

    return st.sampled_from(list(_MEMBERS)).flatmap(for_operation)


def test_generated_bodies_are_answered_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.new_event_loop()
    opened = service(tmp_path, monkeypatch)
    svc = loop.run_until_complete(opened.__aenter__())
    try:
        world = loop.run_until_complete(_world(svc))

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(_bodies(world))
        def check(case: tuple[str, Any]) -> None:
            operation, body = case
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            loop.run_until_complete(_both(world, operation, data))

        check()
    finally:
        loop.run_until_complete(opened.__aexit__(None, None, None))
        loop.close()


# -- the flat decoder alone, against the general decoder and builder --

_CODEC = Codec.load()
_SAMPLES = [
    "1234abcd-12ab-34cd-56ef-1234567890ab",
    "alias/flat",
    "",
    "k" * 2049,
    "SYMMETRIC_DEFAULT",
    "AES_256",
    "HMAC_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RAW",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=1100),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(_SAMPLES),
    st.binary(max_size=64).map(_b64),
    st.binary(min_size=4094, max_size=4098).map(_b64),
    st.just("not base64!"),
)
_JSON_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=12),
    st.lists(st.text(min_size=0, max_size=3), max_size=12),
    st.dictionaries(st.text(max_size=6), _SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
)


def _general(operation: str, data: bytes) -> tuple[object | None, str | None]:
    """The general path's typed request, or the error it answers."""
    request = OPERATIONS[operation].request
    try:
        return build(request, _CODEC.decode(operation, data)), None
    except KMSError as error:
        return None, f"{error.code}: {error.message}"


# Values each member takes when it is well formed (mostly; some bounds are
# crossed on purpose), so that many bodies are accepted and compared.
_VALID: dict[str, st.SearchStrategy[Any]] = {
    "KeyId": st.sampled_from(_SAMPLES[:2]) | st.text(min_size=1, max_size=40),
    "Plaintext": st.binary(min_size=1, max_size=64).map(_b64),
    "Message": st.binary(min_size=0, max_size=64).map(_b64),
    "CiphertextBlob": st.binary(min_size=1, max_size=64).map(_b64),
    "EncryptionContext": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
    "GrantTokens": st.lists(st.text(min_size=0, max_size=5), max_size=11),
    "EncryptionAlgorithm": st.sampled_from(["SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256", "X"]),
    "KeySpec": st.sampled_from(["AES_256", "AES_128", "AES_512"]),
    "NumberOfBytes": st.integers(min_value=0, max_value=1025),
    "MessageType": st.sampled_from(["RAW", "DIGEST", "EXTERNAL_MU", "raw"]),
    "SigningAlgorithm": st.sampled_from(["ECDSA_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256", "X"]),
    "MacAlgorithm": st.sampled_from(["HMAC_SHA_256", "HMAC_SHA_512", "HMAC_MD5"]),
    "DryRun": st.booleans(),
}


_REQUIRED = {
    "Encrypt": ["KeyId", "Plaintext"],
    "Decrypt": ["CiphertextBlob"],
    "GenerateDataKey": ["KeyId"],
    "GenerateDataKeyWithoutPlaintext": ["KeyId"],
    "Sign": ["KeyId", "Message", "SigningAlgorithm"],
    "GenerateMac": ["KeyId", "Message", "MacAlgorithm"],
}


def _decoder_bodies(op: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    required = _REQUIRED[op]
    well_formed = st.fixed_dictionaries(
        {name: _VALID[name] for name in required},
        optional={name: _VALID[name] for name in _MEMBERS[op] + ["DryRun"] if name not in required},
    )
    anything = st.dictionaries(st.sampled_from(_MEMBERS[op] + _COMMON), _JSON_VALUES, max_size=6)
    return st.tuples(st.just(op), well_formed | anything)


@settings(max_examples=1500, deadline=None, database=None)
@given(st.sampled_from(list(_MEMBERS)).flatmap(_decoder_bodies))
def test_the_flat_decoder_accepts_exactly_what_the_general_path_accepts(
    case: tuple[str, dict[str, Any]],
) -> None:
    operation, body = case
    data = json.dumps(body).encode()
    request = OPERATIONS[operation].request
    fields, required = fields_of(request)
    flat = _CODEC.flat_decoder(operation, fields, required)
    assert flat is not None
    try:
        decoded = flat(_CODEC.parse(data))
    except KMSError:
        decoded = None
    typed, error = _general(operation, data)
    if decoded is None:
        # Refused: the general path answers an error, or the body held a
        # null member (absent to the general path), which the flat one leaves to it.
        assert error is not None or None in body.values(), body
        return
    try:
        flat_typed: object | None = request(**decoded)
        flat_error = None
    except KMSError as exc:
        flat_typed, flat_error = None, f"{exc.code}: {exc.message}"
    assert (flat_typed, flat_error) == (typed, error)
