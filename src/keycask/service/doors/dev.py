"""The --dev-only operation that moves keycask's lifecycle clock.

It is not part of the AWS model, so it has its own target and a tiny JSON
shape: ``{"Seconds": <number>, "RunJobs"?: bool}`` in, ``{"Now": ...,
"OffsetSeconds": ..., "JobsRun": ...}`` out. ``RunJobs`` (default true) runs
what came due before answering; false leaves it to the scheduler of whichever
node runs jobs (a cluster test of that node's failover needs exactly that).
Like every request it is signed, authorized (admins only) and audited. A
server started without --dev does not know the target and answers
UnknownOperationException, as for any other unknown name.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from keycask.errors import SerializationException, ValidationException

DEV_ADVANCE_CLOCK = "KeycaskDev.AdvanceClock"
# The clock file refuses more; checking here answers with a clear error
# before anything is audited as done.
MAX_OFFSET_SECONDS = 100 * 366 * 86400  # keep in step with storage/devclock.py


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
    if current_offset + seconds > MAX_OFFSET_SECONDS:
        raise ValidationException("The clock cannot move more than a century ahead.")
    return float(seconds), run_jobs


def advance_clock_reply(now: datetime, offset: float, jobs: int) -> bytes:
    return orjson.dumps({"Now": now.isoformat(), "OffsetSeconds": offset, "JobsRun": jobs})
