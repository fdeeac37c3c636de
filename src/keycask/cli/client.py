"""What the command-line modules (``cli``, ``operator_cli``, ``policy_cli``)
share: the audit record of a local operator's change, and one JSON call to
the running server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

from keycask.audit import AuditRecord


class CallError(Exception):
    """A call failed; the text is what to print: ``<Code>: <message>``, or why
    the server could not be reached."""


def local_record(
    operation: str,
    detail: str,
    *,
    outcome: str = "success",
    key_arn: str | None = None,
    region: str | None = None,
) -> AuditRecord:
    """A change made straight in the data dir, whose access is the authority."""
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        operation=operation,
        principal="local operator",
        access_key_id=None,
        source_ip=None,
        key_arn=key_arn,
        encryption_context=None,
        decision="allow",
        decided_by="local access to the data directory",
        outcome=outcome,
        error_code=None if outcome == "success" else "KMSInternalException",
        region=region,
        detail=detail,
    )


def post_json(
    request: urllib.request.Request,
    *,
    where: str,
    timeout: float,
    opener: urllib.request.OpenerDirector | None = None,
) -> dict[str, object]:
    """Send ``request``; its JSON object answer, or ``CallError`` with the
    AWS error code and message of an error answer."""
    open_ = opener.open if opener is not None else urllib.request.urlopen
    try:
        with open_(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read() or b"{}")
        except ValueError:
            detail = {}
        code = str(detail.get("__type", error.code)).rsplit("#", 1)[-1]
        raise CallError(f"{code}: {detail.get('message', '')}") from None
    except OSError as error:
        raise CallError(f"cannot reach {where}: {error}") from None
    if not isinstance(answer, dict):
        raise CallError(f"unexpected answer from {where}")
    return answer
