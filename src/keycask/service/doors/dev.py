"""The dev API (``X-Amz-Target: KeycaskDev.AdvanceClock``), registered in
--dev only: it moves keycask's lifecycle clock.

It is not part of the AWS model, so it has its own target and a tiny JSON
shape: ``{"Seconds": <number>, "RunJobs"?: bool}`` in, ``{"Now": ...,
"OffsetSeconds": ..., "JobsRun": ...}`` out. ``RunJobs`` (default true) runs
what came due before answering; false leaves it to the scheduler of whichever
node runs jobs (a cluster test of that node's failover needs exactly that).
Like every request it is signed, authorized (admins only) and audited. A
server started without --dev has no such door, and answers
UnknownOperationException, as for any other unknown name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import AccessDeniedException, SerializationException, ValidationException
from keycask.ports import MovableClock, Write
from keycask.service.core.call import Call, Outcome
from keycask.service.door import Action
from keycask.service.doors.awsjson import (
    AwsJsonErrors,
    WireCodec,
    check_content_type,
)
from keycask.service.doors.signed import SignedCallers

DEV_ADVANCE_CLOCK = "KeycaskDev.AdvanceClock"
# The clock file refuses more; checking here answers with a clear error
# before anything is audited as done.
MAX_OFFSET_SECONDS = 100 * 366 * 86400  # keep in step with storage/devclock.py


def _check_room(current_offset: float, seconds: float) -> None:
    if current_offset + seconds > MAX_OFFSET_SECONDS:
        raise ValidationException("The clock cannot move more than a century ahead.")


def advance_clock_request(body: bytes, current_offset: float) -> tuple[float, bool]:
    try:
        doc = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise SerializationException("The request body is not valid JSON.") from None
    if not isinstance(doc, dict) or not {"Seconds"} <= set(doc) <= {"Seconds", "RunJobs"}:
        raise ValidationException(
            'The request must be {"Seconds": <number of seconds>, "RunJobs"?: true|false}.'
        )
    run_jobs = doc.get("RunJobs", True)
    if not isinstance(run_jobs, bool):
        raise ValidationException("RunJobs must be true or false.")
    seconds = doc["Seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValidationException("Seconds must be a number.")
    if not seconds > 0:
        raise ValidationException("Seconds must be positive: the clock only moves forward.")
    _check_room(current_offset, seconds)
    return float(seconds), run_jobs


class DevDoor(AwsJsonErrors):
    name = "dev"
    prefixes = ("KeycaskDev.",)
    serves_sealed = False

    def __init__(
        self,
        clock: MovableClock,
        *,
        account: str | None,
        run_due: Callable[[], Awaitable[int]],
        signed: SignedCallers,
        codec: WireCodec,
    ) -> None:
        """``account``: the dev account, whose administrators alone move the clock."""
        super().__init__(codec)
        self._clock = clock
        self._account = account
        self._run_due = run_due
        # Writes (the clock file): one at a time, under the write lock.
        self._advance = Action(DEV_ADVANCE_CLOCK, self._run, mutates=True)
        self.authenticate = signed.authenticate

    def operation(self, target: str) -> str | None:
        return target if target == DEV_ADVANCE_CLOCK else None

    def action(self, call: Call, request: HttpRequest) -> Action:
        check_content_type(request)
        return self._advance

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        return advance_clock_request(request.body, self._clock.offset_seconds)

    async def _run(self, call: Call, request: tuple[float, bool]) -> Outcome:
        """Move lifecycle time forward once audited, then run what came due,
        so the caller sees the rotation or deletion it asked time to bring."""
        seconds, run_jobs = request
        # Lifecycle time is the whole server's (every account's rotations and
        # deletions), so no identity policy can grant it: an administrator of
        # the operator account (the dev account) only.
        assert call.caller is not None
        principal = call.caller.principal
        # A session policy cannot be applied here (no policy decides these
        # calls): a narrowed session must not act as its whole role.
        session = call.caller.session
        narrowed = session is not None and session.policy is not None
        if not principal.admin or principal.account != self._account or narrowed:
            call.decision, call.decided_by = "deny", "not an administrator of the dev account"
            raise AccessDeniedException(
                f"User: {principal.arn} is not authorized to perform: keycask:AdvanceClock: "
                "only an administrator of the dev account moves the clock"
            )
        call.decision, call.decided_by = "allow", "administrator of the dev account"
        # Checked again under the write lock: another worker may have moved it.
        _check_room(self._clock.offset_seconds, seconds)
        call.detail = f"lifecycle clock advanced by {seconds:g} s"
        return Outcome(effect=partial(self._move, seconds), then=partial(self._answer, run_jobs))

    async def _move(self, seconds: float) -> None:
        self._clock.advance(seconds)

    async def _answer(self, run_jobs: bool) -> object:
        jobs = await self._run_due() if run_jobs else 0
        clock = self._clock
        return {
            "Now": clock.now().isoformat(),
            "OffsetSeconds": clock.offset_seconds,
            "JobsRun": jobs,
        }

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        return orjson.dumps(result)

    async def commit(self, writes: Sequence[Write]) -> None:
        raise AssertionError("the dev clock stages no writes")
