"""The AWS KMS JSON API (``X-Amz-Target: TrentService.<Op>``): the door
every AWS SDK and CLI comes in by, and the one that answers a target no
door knows (UnknownOperationException). The hot path: everything here is
built once at start, so a request costs two dict lookups (door, operation)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import UnknownOperationException, UnsupportedOperationException
from keycask.ports import Write
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.operations import OPERATIONS
from keycask.service.core.requests import build
from keycask.service.door import Action, header
from keycask.service.doors.awsjson import AwsJsonErrors, WireCodec, check_content_type
from keycask.service.doors.signed import SignedCallers

TARGET_PREFIX = "TrentService."


class KmsDoor(AwsJsonErrors):
    name = "kms"
    prefixes = (TARGET_PREFIX,)
    serves_sealed = False

    def __init__(self, deps: Deps, codec: WireCodec, signed: SignedCallers) -> None:
        super().__init__(codec)
        self._model_operations = codec.operation_names()
        self._actions = {
            op.name: Action(op.name, partial(op.handler, deps), op.mutates, op.request)
            for op in OPERATIONS.values()
        }
        self._keys = deps.keys
        self.authenticate = signed.authenticate

    def operation(self, target: str) -> str | None:
        name = target[len(TARGET_PREFIX) :]
        return name if name in self._model_operations else None

    def action(self, call: Call, request: HttpRequest) -> Action:
        name = call.operation
        if name is None:
            target = (header(request, b"x-amz-target") or b"").decode("latin-1")
            raise UnknownOperationException(f"Unknown operation {target[:128]!r}")
        check_content_type(request)
        action = self._actions.get(name)
        if action is None:
            raise UnsupportedOperationException(f"keycask does not support {name} yet.")
        return action

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        assert action.request is not None
        typed: object = build(action.request, self._codec.decode(action.name, request.body))
        call.grant_tokens = tuple(getattr(typed, "grant_tokens", None) or ())
        return typed

    def encode(self, action: Action, result: object | None) -> bytes:
        return self._codec.encode(action.name, result)

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._keys.commit(writes)
