"""The operator door (service/doors/operator.py): each KeycaskOperator body
decoded into the core's typed request, or refused with the error and message
it has always had (missing, mistyped or out-of-range members; members a call
does not take are ignored, as they always were); typed results encoded to
the exact bytes of today's answers. Decoding is checked on the door's table
and, end to end, through the pipeline (tests/service_harness.py) with the
operator token, where refusals are audited and spend seal-secret attempts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from keycask.auth import operator_token
from keycask.auth.sigv4 import HttpRequest
from keycask.errors import ValidationException
from keycask.service.core.operator_requests import (
    BackupTagRequest,
    NoInput,
    RekeyRequest,
    RekeyVerifyRequest,
    UnsealRequest,
)
from keycask.service.core.operator_results import (
    BackupTagged,
    NowSealed,
    OperatorStatus,
    RekeyAuthorising,
    RekeyCancelled,
    RekeyDone,
    RekeyStarted,
    RekeyVerifying,
    Rotated,
    TokenRotated,
)
from keycask.service.doors.operator import CALLS, OPERATIONS
from keycask.service.pipeline import Reply
from keycask.service.sealing import NewSeal, SealProof, UnsealInput, VerifyInput
from service_harness import Service, service

DIGEST = "0123456789abcdef" * 4

# (operation, body, the typed request it decodes to)
GOOD: list[tuple[str, dict[str, Any], object]] = [
    ("Status", {}, NoInput()),
    ("Status", {"Anything": [1]}, NoInput()),
    ("Seal", {"Share": 5}, NoInput()),
    ("Rotate", {}, NoInput()),
    ("RotateToken", {"Junk": True}, NoInput()),
    ("RekeyCancel", {}, NoInput()),
    ("Unseal", {"Reset": True}, UnsealRequest(None)),
    ("Unseal", {"Share": "s1"}, UnsealRequest(UnsealInput(share="s1"))),
    ("Unseal", {"Passphrase": "p", "Other": 1}, UnsealRequest(UnsealInput(passphrase="p"))),
    ("Unseal", {"Pin": "1234", "Reset": False}, UnsealRequest(UnsealInput(pin="1234"))),
    ("Unseal", {"Pin": "1234", "Share": None}, UnsealRequest(UnsealInput(pin="1234"))),
    ("BackupTag", {"Digest": DIGEST}, BackupTagRequest(bytes.fromhex(DIGEST))),
    (
        "Rekey",
        {"Seal": "shamir", "Current": {"Shares": ["a", "b"]}},
        RekeyRequest(NewSeal("shamir"), SealProof(shares=("a", "b"))),
    ),
    (
        "Rekey",
        {
            "Seal": "pkcs11",
            "Shares": 7,
            "Threshold": 4,
            "Passphrase": "pw",
            "Module": "/m.so",
            "TokenLabel": "t",
            "KeyLabel": "k",
            "Pin": "9",
            "ShareKeys": ["PEM1", "PEM2"],
            "Current": {"Shares": ["a"], "Collect": True, "Passphrase": "cp", "Pin": "cpin"},
        },
        RekeyRequest(
            NewSeal("pkcs11", 7, 4, "pw", "/m.so", "t", "k", "9", ("PEM1", "PEM2")),
            SealProof(("a",), "cp", "cpin", collect=True),
        ),
    ),
    (
        "Rekey",
        {"Seal": "passphrase", "Passphrase": "new", "Current": {"Pin": "1"}},
        RekeyRequest(NewSeal("passphrase", passphrase="new"), SealProof(pin="1")),
    ),
    ("RekeyVerify", {"Share": "n1"}, RekeyVerifyRequest(VerifyInput(shares=("n1",)))),
    (
        "RekeyVerify",
        {"Shares": ["n1", "n2"], "Share": "n3"},
        RekeyVerifyRequest(VerifyInput(shares=("n1", "n2", "n3"))),
    ),
    ("RekeyVerify", {"Passphrase": "np"}, RekeyVerifyRequest(VerifyInput(passphrase="np"))),
]

_TEXT = "must be a non-empty string of at most 4096 chars"
# (operation, body, the message of the ValidationException it is refused with)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("Unseal", {}, "give exactly one of Share, Passphrase or Pin"),
    ("Unseal", {"Reset": False}, "give exactly one of Share, Passphrase or Pin"),
    ("Unseal", {"Share": "a", "Pin": "1"}, "give exactly one of Share, Passphrase or Pin"),
    ("Unseal", {"Reset": True, "Pin": "1"}, "Reset takes no Share, Passphrase or Pin"),
    ("Unseal", {"Share": 5}, "Share " + _TEXT),
    ("Unseal", {"Share": ""}, "Share " + _TEXT),
    ("Unseal", {"Passphrase": "x" * 4097}, "Passphrase " + _TEXT),
    ("Unseal", {"Pin": ["1"]}, "Pin " + _TEXT),
    ("BackupTag", {}, "Digest must be 64 lowercase hex digits (SHA-256)"),
    ("BackupTag", {"Digest": DIGEST.upper()}, "Digest must be 64 lowercase hex digits (SHA-256)"),
    (
        "BackupTag",
        {"Digest": DIGEST + "0"},
        "Digest must be a non-empty string of at most 64 chars",
    ),
    ("BackupTag", {"Digest": 1}, "Digest must be a non-empty string of at most 64 chars"),
    ("Rekey", {}, "Seal is required: shamir, passphrase or pkcs11"),
    ("Rekey", {"Seal": 1}, "Seal " + _TEXT),
    ("Rekey", {"Seal": "shamir", "Shares": "5"}, "Shares must be an integer from 1 to 255"),
    ("Rekey", {"Seal": "shamir", "Shares": 256}, "Shares must be an integer from 1 to 255"),
    ("Rekey", {"Seal": "shamir", "Threshold": True}, "Threshold must be an integer from 1 to 255"),
    ("Rekey", {"Seal": "shamir", "Threshold": 0}, "Threshold must be an integer from 1 to 255"),
    ("Rekey", {"Seal": "shamir", "Module": 3}, "Module " + _TEXT),
    ("Rekey", {"Seal": "shamir", "TokenLabel": ""}, "TokenLabel " + _TEXT),
    ("Rekey", {"Seal": "shamir", "KeyLabel": {}}, "KeyLabel " + _TEXT),
    ("Rekey", {"Seal": "shamir", "Pin": 1}, "Pin " + _TEXT),
    ("Rekey", {"Seal": "shamir", "ShareKeys": "k"}, "ShareKeys must be a list of PEM public keys"),
    ("Rekey", {"Seal": "shamir", "ShareKeys": [""]}, "ShareKeys must be a list of PEM public keys"),
    (
        "Rekey",
        {"Seal": "shamir"},
        "Current is required: the current seal's Shares, Passphrase or Pin",
    ),
    (
        "Rekey",
        {"Seal": "shamir", "Current": ["a"]},
        "Current is required: the current seal's Shares, Passphrase or Pin",
    ),
    (
        "Rekey",
        {"Seal": "shamir", "Current": {"Shares": "a"}},
        "Current.Shares must be a list of share lines",
    ),
    (
        "Rekey",
        {"Seal": "shamir", "Current": {"Shares": [1]}},
        "Current.Shares must be a list of share lines",
    ),
    (
        "Rekey",
        {"Seal": "shamir", "Current": {"Collect": "yes"}},
        "Current.Collect must be a boolean",
    ),
    ("Rekey", {"Seal": "shamir", "Current": {"Pin": 1}}, "Pin " + _TEXT),
    ("RekeyVerify", {}, "give the new Share(s) or the new Passphrase"),
    (
        "RekeyVerify",
        {"Share": "a", "Passphrase": "p"},
        "give the new Share(s) or the new Passphrase",
    ),
    ("RekeyVerify", {"Shares": "a"}, "Shares must be a list of share lines"),
    ("RekeyVerify", {"Shares": ["a"] * 256}, "Shares must be a list of share lines"),
    ("RekeyVerify", {"Share": 1}, "Share " + _TEXT),
    ("RekeyVerify", {"Passphrase": ""}, "Passphrase " + _TEXT),
]


def test_every_operation_has_a_decoder_handler_and_encoder() -> None:
    assert set(CALLS) == OPERATIONS == {
        "Status", "Unseal", "Seal", "Rotate", "Rekey", "RekeyVerify", "RekeyCancel",
        "BackupTag", "RotateToken",
    }  # fmt: skip
    assert {op for op, _, _ in GOOD} == OPERATIONS


@pytest.mark.parametrize(("op", "body", "typed"), GOOD)
def test_a_body_decodes_to_its_typed_request(op: str, body: dict[str, Any], typed: object) -> None:
    assert CALLS[op].decode(body) == typed


@pytest.mark.parametrize(("op", "body", "message"), BAD)
def test_a_bad_body_is_refused_with_its_message(
    op: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationException) as caught:
        CALLS[op].decode(body)
    assert caught.value.message == message


_SEAL = {"sealed": False, "seal": "shamir", "progress": 0, "threshold": 3, "term": 2}
# (operation, typed result, the exact bytes of its answer)
ANSWERS: list[tuple[str, object, bytes]] = [
    (
        "Status",
        OperatorStatus({"sealed": True, "seal": "shamir", "progress": 1, "threshold": 3}),
        b'{"sealed":true,"seal":"shamir","progress":1,"threshold":3}',
    ),
    (
        "Status",
        OperatorStatus(_SEAL, keys=4, jobs="ok", runs_jobs=True),
        b'{"sealed":false,"seal":"shamir","progress":0,"threshold":3,"term":2,'
        b'"keys":4,"jobs":"ok","runs_jobs":true}',
    ),
    (
        "Unseal",
        OperatorStatus(_SEAL, keys=0, jobs="overdue by 3 s"),
        b'{"sealed":false,"seal":"shamir","progress":0,"threshold":3,"term":2,'
        b'"keys":0,"jobs":"overdue by 3 s"}',
    ),
    ("Seal", NowSealed(), b"{}"),
    ("Rotate", Rotated(7), b'{"term":7}'),
    ("BackupTag", BackupTagged(b"\x01\xab"), b'{"Tag":"01ab"}'),
    ("RotateToken", TokenRotated("kco_x"), b'{"Token":"kco_x"}'),
    (
        "Rekey",
        RekeyAuthorising("shamir", 2, 3),
        b'{"seal":"shamir","authorising":true,"progress":2,"threshold":3}',
    ),
    (
        "Rekey",
        RekeyStarted("shamir", 2, ["l1", "l2", "l3"]),
        b'{"seal":"shamir","pending":true,"shares":["l1","l2","l3"],"threshold":2}',
    ),
    (
        "Rekey",
        RekeyStarted("shamir", 2, ["e1"], encrypted=True),
        b'{"seal":"shamir","pending":true,"shares":["e1"],"threshold":2,"encrypted":true}',
    ),
    ("Rekey", RekeyStarted("passphrase", 3), b'{"seal":"passphrase","pending":true}'),
    ("Rekey", RekeyDone("pkcs11", True), b'{"seal":"pkcs11","settled":true}'),
    (
        "RekeyVerify",
        RekeyVerifying("shamir", 1, 3),
        b'{"seal":"shamir","pending":true,"progress":1,"threshold":3}',
    ),
    (
        "RekeyVerify",
        RekeyDone("shamir", False, "the old seal file remains"),
        b'{"seal":"shamir","settled":false,"note":"the old seal file remains"}',
    ),
    ("RekeyCancel", RekeyCancelled(), b'{"cancelled":true}'),
]


@pytest.mark.parametrize(("op", "result", "answer"), ANSWERS)
def test_a_result_encodes_to_the_exact_answer(op: str, result: object, answer: bytes) -> None:
    assert orjson.dumps(CALLS[op].encode(result)) == answer


def test_secrets_stay_out_of_result_reprs() -> None:
    assert "kco_secret" not in repr(TokenRotated("kco_secret"))
    assert "line-secret" not in repr(RekeyStarted("shamir", 2, ["line-secret"]))


# End to end: a --dev server and its operator token.


async def _call(svc: Service, token: str, op: str, body: dict[str, Any], ip: str) -> Reply:
    signed = svc.signed("KeycaskOperator." + op, body)
    headers = tuple((k, v) for k, v in signed.headers if k != b"authorization")
    headers += ((b"authorization", b"Bearer " + token.encode()),)
    request = HttpRequest("POST", b"/", b"", headers, signed.body)
    return await svc.pipeline.handle(request, ip)


async def test_answers_and_records_through_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    token = operator_token.create(tmp_path / "data", None)
    async with service(tmp_path, monkeypatch) as svc:
        status = (
            b'{"sealed":false,"seal":"dev","progress":0,"threshold":1,"term":1,'
            b'"rewrite_pending":false,"keys":0,"jobs":"ok","runs_jobs":false}'
        )
        cases: list[tuple[str, dict[str, Any], int, bytes, list[str | None]]] = [
            ("Status", {"Ignored": 1}, 200, status, ["status"]),
            ("Unseal", {"Reset": True}, 200, status, ["unseal progress reset"]),
            ("Unseal", {"Share": "s"}, 200, status, ["unseal with a share: unsealed"]),
            ("Unseal", {"Pin": "1"}, 200, status, ["unseal with a PIN: unsealed"]),
            (
                "Unseal",
                {"Share": 5},
                400,
                b'{"__type":"ValidationException","message":"Share ' + _TEXT.encode() + b'"}',
                [None],
            ),
            (
                "Rotate",
                {},
                200,
                b'{"term":2}',
                ["operator Rotate requested", "barrier rotated to term 2"],
            ),
            # Recorded as requested before its input is even looked at.
            (
                "Rekey",
                {"Seal": "shamir", "Shares": "5"},
                400,
                b'{"__type":"ValidationException",'
                b'"message":"Shares must be an integer from 1 to 255"}',
                ["operator Rekey requested", "operator Rekey requested"],
            ),
            (
                "RekeyVerify",
                {"Passphrase": "p"},
                400,
                b'{"__type":"KMSInvalidStateException",'
                b'"message":"no rekey is pending: start one with `operator rekey`"}',
                ["operator RekeyVerify requested", "operator RekeyVerify requested"],
            ),
            (
                "BackupTag",
                {"Digest": DIGEST},
                200,
                b"",  # the tag's key is the store's own; its shape is checked below
                [f"backup tagged: sha256 {DIGEST}"],
            ),
        ]
        for op, body, status_code, answer, details in cases:
            reply = await _call(svc, token, op, body, "192.0.2.1")
            assert reply.status == status_code, (op, body, reply.body)
            if answer:
                assert reply.body == answer, (op, body)
            else:
                assert list(json.loads(reply.body)) == ["Tag"]
                assert len(json.loads(reply.body)["Tag"]) == 64
            assert [r["detail"] for r in svc.record_of(reply)] == details, (op, body)
        reply = await _call(svc, token, "RotateToken", {}, "192.0.2.1")
        (new_token,) = json.loads(reply.body).values()
        assert new_token.startswith("kco_") and new_token != token


async def test_a_malformed_seal_input_spends_an_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    token = operator_token.create(tmp_path / "data", None)
    async with service(tmp_path, monkeypatch) as svc:
        for _ in range(10):
            reply = await _call(svc, token, "Unseal", {"Share": 5}, "192.0.2.9")
            assert json.loads(reply.body)["__type"] == "ValidationException"
        reply = await _call(svc, token, "Unseal", {"Share": "s"}, "192.0.2.9")
        assert json.loads(reply.body)["__type"] == "ThrottlingException"
        # Another address still has its attempts.
        reply = await _call(svc, token, "Unseal", {"Share": "s"}, "192.0.2.10")
        assert reply.status == 200
