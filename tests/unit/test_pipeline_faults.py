"""The pipeline's promises under faults, in-process (tests/service_harness.py):
the app built as the server builds it, on a real SQLite store that can be
told to fail one commit, with requests signed by botocore.

* A commit that fails after its audit record was written: a second record
  says so, the answer is KMSInternalException, and nothing is visible.
* An audit record that cannot be written: nothing is committed.
* A door that raises something unexpected: its own wire's internal error
  (500 and its error body), audited under its name.
* Every record names the door the request came in by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import DependencyTimeoutException, KMSError
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.door import Action
from service_harness import Service, failing_fsync, service

INTERNAL = "An internal error occurred; the request had no effect."


def _alias_writes(writes: Sequence[Write]) -> bool:
    return any(write.path.startswith("alias/") for write in writes)


async def _key(svc: Service) -> str:
    status, answer = await svc.kms("CreateKey", Description="fault tests")
    assert status == 200, answer
    return str(answer["KeyMetadata"]["KeyId"])


async def _aliases(svc: Service) -> list[str]:
    status, answer = await svc.kms("ListAliases")
    assert status == 200, answer
    return [entry["AliasName"] for entry in answer["Aliases"]]


async def test_a_commit_failing_after_its_record_is_recorded_again_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        key = await _key(svc)
        svc.store.fail_when = _alias_writes
        reply = await svc.send(
            "TrentService.CreateAlias", {"AliasName": "alias/doomed", "TargetKeyId": key}
        )
        assert svc.store.failed == 1
        assert reply.status == 500
        assert json.loads(reply.body) == {"__type": "KMSInternalException", "message": INTERNAL}
        first, second = svc.record_of(reply)
        assert (first["outcome"], first["error_code"]) == ("success", None)
        assert (second["outcome"], second["error_code"]) == ("error", "KMSInternalException")
        assert second["detail"] == "commit failed"
        assert first["door"] == second["door"] == "kms"
        assert first["seq"] < second["seq"]
        # Nothing of it is visible, here or in the store.
        assert "alias/doomed" not in await _aliases(svc)
        assert await svc.store.list("alias/", "", 10) == []
        # The store works on: the same request succeeds now.
        again = await svc.send(
            "TrentService.CreateAlias", {"AliasName": "alias/doomed", "TargetKeyId": key}
        )
        assert again.status == 200, again.body
        assert "alias/doomed" in await _aliases(svc)


async def test_an_audit_record_that_cannot_be_written_commits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        key = await _key(svc)
        commits = svc.store.commits
        with failing_fsync(svc.audit_path) as failures:
            reply = await svc.send(
                "TrentService.CreateAlias", {"AliasName": "alias/unrecorded", "TargetKeyId": key}
            )
        assert failures, "the audit log's fsync was never reached"
        assert reply.status == 500
        assert json.loads(reply.body)["__type"] == "KMSInternalException"
        assert svc.store.commits == commits
        assert svc.record_of(reply) == []
        assert "alias/unrecorded" not in await _aliases(svc)
        assert await svc.store.list("alias/", "", 10) == []


class PlainDoor:
    """A door with a wire of its own (plain-text errors), claiming
    ``Plain.<Op>``, that raises a bug where it is told to."""

    name = "plain"
    prefixes = ("Plain.",)
    media_types: tuple[bytes, ...] = ()
    content_type = b"text/plain"
    serves_sealed = False

    def __init__(self, raise_in: str) -> None:
        self.raise_in = raise_in
        self.committed_calls = 0
        self._action = Action("Plain.Boom", self._run)

    def _boom(self, step: str) -> None:
        if step == self.raise_in:
            raise RuntimeError(f"a bug in {step}")

    def operation(self, target: str) -> str | None:
        return target if target == "Plain.Boom" else None

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        call.principal_name = "plain caller"
        self._boom("authenticate")

    def action(self, call: Call, request: HttpRequest) -> Action:
        self._boom("action")
        return self._action

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        self._boom("decode")
        return request.body

    async def _run(self, call: Call, request: object) -> Outcome:
        self._boom("run")
        call.decision, call.decided_by = "allow", "plain door"
        return Outcome("fine")

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        self._boom("encode")
        return f"OK {result}".encode()

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        return f"ERROR {error.code}: {error.message}".encode()

    def error_status(self, error: KMSError) -> int:
        return error.status

    def unavailable(self, operation: str | None) -> KMSError:
        return DependencyTimeoutException("later")

    async def commit(self, writes: Sequence[Write]) -> None:
        raise AssertionError("nothing to commit")

    def committed(self) -> None:
        self.committed_calls += 1


@pytest.mark.parametrize("raise_in", ["authenticate", "action", "decode", "run", "encode"])
async def test_a_door_that_raises_answers_its_own_internal_error_and_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raise_in: str
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        svc.pipeline.doors.add(PlainDoor(raise_in))
        reply = await svc.send("Plain.Boom", b"anything")
        assert reply.status == 500
        assert reply.body == f"ERROR KMSInternalException: {INTERNAL}".encode()
        (record,) = svc.record_of(reply)
        assert record["door"] == "plain"
        assert record["operation"] == "Plain.Boom"
        assert (record["outcome"], record["error_code"]) == ("error", "KMSInternalException")


async def test_a_door_that_does_not_raise_answers_in_its_own_wire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        svc.pipeline.doors.add(PlainDoor(raise_in="nowhere"))
        reply = await svc.send("Plain.Boom", b"anything")
        assert (reply.status, reply.body) == (200, b"OK fine")
        (record,) = svc.record_of(reply)
        assert (record["door"], record["outcome"], record["decided_by"]) == (
            "plain",
            "success",
            "plain door",
        )


async def test_every_record_names_the_door_the_request_came_in_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        key = await _key(svc)
        calls: dict[str, tuple[str, dict[str, Any]]] = {
            "kms": ("TrentService.Encrypt", {"KeyId": key, "Plaintext": "aGVsbG8="}),
            "admin": ("KeycaskAdmin.ListPrincipals", {}),
            "operator": ("KeycaskOperator.Status", {}),
            "dev": ("KeycaskDev.AdvanceClock", {"Seconds": 1, "RunJobs": False}),
        }
        for door, (target, body) in calls.items():
            reply = await svc.send(target, body)
            assert reply.status == 200, (door, reply.body)
            (record,) = svc.record_of(reply)
            assert (record["door"], record["operation"]) == (
                door,
                target.removeprefix("TrentService."),
            )
        # A target no door knows is answered, and recorded, by the KMS door.
        reply = await svc.send("KeycaskAdmin.NoSuchThing", {})
        assert json.loads(reply.body)["__type"] == "UnknownOperationException"
        (record,) = svc.record_of(reply)
        assert (record["door"], record["operation"]) == ("kms", None)
