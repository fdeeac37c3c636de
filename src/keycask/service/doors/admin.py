"""The admin API (``X-Amz-Target: KeycaskAdmin.<Op>``): principals, their
policies, tags and access keys (``core/handlers/principals.py``), signed like
the KMS API, with small JSON shapes of keycask's own."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import orjson

from keycask.auth.credentials import CredentialStore
from keycask.auth.sigv4 import HttpRequest
from keycask.errors import ValidationException
from keycask.ports import Write
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call
from keycask.service.core.handlers.principals import OPERATIONS, AdminOperation
from keycask.service.door import Action
from keycask.service.doors.awsjson import (
    AwsJsonErrors,
    WireCodec,
    check_content_type,
    json_object,
)
from keycask.service.doors.signed import SignedCallers

TARGET_PREFIX = "KeycaskAdmin."


def decode(target: str, operation: AdminOperation, body: bytes) -> dict[str, Any]:
    """The request's members, checked against the operation's shape."""
    doc = json_object(body)
    unknown = sorted(set(doc) - operation.members)
    if unknown:
        raise ValidationException(
            f"{unknown[0][:64]!r} is not a member of {target}; "
            f"its members are {', '.join(sorted(operation.members))}."
        )
    missing = sorted(operation.required - set(doc))
    if missing:
        raise ValidationException(f"{target} requires {', '.join(missing)}.")
    return doc


class AdminDoor(AwsJsonErrors):
    name = "admin"
    prefixes = (TARGET_PREFIX,)
    serves_sealed = False

    def __init__(
        self,
        credentials: CredentialStore,
        authz: Authorizer,
        codec: WireCodec,
        signed: SignedCallers,
    ) -> None:
        super().__init__(codec)
        self._credentials = credentials
        self._authz = authz
        self._operations = {TARGET_PREFIX + name: op for name, op in OPERATIONS.items()}
        self._actions = {
            target: Action(target, partial(op.handler, credentials), op.mutates)
            for target, op in self._operations.items()
        }
        self.authenticate = signed.authenticate

    def operation(self, target: str) -> str | None:
        return target if target in self._actions else None

    def action(self, call: Call, request: HttpRequest) -> Action:
        assert call.operation is not None
        check_content_type(request)
        return self._actions[call.operation]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        return decode(action.name, self._operations[action.name], request.body)

    def encode(self, action: Action, result: object | None) -> bytes:
        return orjson.dumps(result if result is not None else {})

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._credentials.commit(writes)

    def committed(self) -> None:
        # Policies or tags may have changed: callers' subjects are built again.
        self._authz.clear()
