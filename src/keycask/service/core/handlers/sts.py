"""The temporary-credential operations (the STS door's): GetCallerIdentity,
AssumeRole, AssumeRoleWithWebIdentity.

A placeholder written with the STS door: GetCallerIdentity is real, the two
AssumeRole* handlers answer UnsupportedOperationException until the roles
and sessions work replaces them (issue 25). The door binds whatever
``OPERATIONS`` holds, by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keycask.errors import UnsupportedOperationException
from keycask.service.core.call import Call, Outcome
from keycask.service.core.sts_requests import (
    AssumeRoleRequest,
    AssumeRoleWithWebIdentityRequest,
    GetCallerIdentityRequest,
)
from keycask.service.core.sts_results import GetCallerIdentityResult

Handler = Callable[[Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class StsOperation:
    name: str
    request: type
    handler: Handler
    # Writes (a session token key made on first use): run under the write lock.
    mutates: bool = False


async def get_caller_identity(call: Call, request: GetCallerIdentityRequest) -> Outcome:
    """Who signed the request. As in AWS no permission is needed, and no
    policy can deny it: the same facts are in any AccessDenied message."""
    assert call.caller is not None
    principal = call.caller.principal
    call.decision, call.decided_by = "allow", "sts:GetCallerIdentity needs no permission"
    return Outcome(
        GetCallerIdentityResult(
            user_id=principal.unique_id, account=principal.account, arn=principal.arn
        )
    )


async def assume_role(call: Call, request: AssumeRoleRequest) -> Outcome:
    raise UnsupportedOperationException("keycask does not support AssumeRole yet.")


async def assume_role_with_web_identity(
    call: Call, request: AssumeRoleWithWebIdentityRequest
) -> Outcome:
    raise UnsupportedOperationException("keycask does not support AssumeRoleWithWebIdentity yet.")


OPERATIONS: Mapping[str, StsOperation] = {
    op.name: op
    for op in (
        StsOperation("GetCallerIdentity", GetCallerIdentityRequest, get_caller_identity),
        StsOperation("AssumeRole", AssumeRoleRequest, assume_role, mutates=True),
        StsOperation(
            "AssumeRoleWithWebIdentity",
            AssumeRoleWithWebIdentityRequest,
            assume_role_with_web_identity,
            mutates=True,
        ),
    )
}
