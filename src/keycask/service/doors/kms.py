"""The AWS KMS JSON API (``X-Amz-Target: TrentService.<Op>``): the door
every AWS SDK and CLI comes in by, and the one that answers a target no
door knows (UnknownOperationException). The hot path: everything here is
built once at start, so a request costs two dict lookups (door, operation).

The cryptographic operations most calls are (``FLAT``) take a flat path
through the same steps: the body is decoded straight into the typed request
and the result encoded straight into bytes (``Codec.flat_decoder``,
``flat_encoder``), with no member paths, violation lists or per-member
closures. A body the flat decoder does not accept as it is goes the general
way, which then gives the error, so both answer every request alike
(tests/unit/test_flat_path.py runs both on the same requests; ``flat``
switches the flat path off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import UnknownOperationException, UnsupportedOperationException
from keycask.ports import Write
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.operations import OPERATIONS
from keycask.service.core.requests import build, fields_of
from keycask.service.core.results import (
    DecryptResult,
    EncryptResult,
    GenerateDataKeyResult,
    GenerateMacResult,
    SignResult,
)
from keycask.service.door import Action, header
from keycask.service.doors.awsjson import AwsJsonErrors, WireCodec, check_content_type
from keycask.service.doors.signed import SignedCallers

TARGET_PREFIX = "TrentService."

# The operations with a flat path, and the result type each answers with.
FLAT: dict[str, type] = {
    "Encrypt": EncryptResult,
    "Decrypt": DecryptResult,
    "GenerateDataKey": GenerateDataKeyResult,
    "GenerateDataKeyWithoutPlaintext": GenerateDataKeyResult,
    "Sign": SignResult,
    "GenerateMac": GenerateMacResult,
}


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
        # Off: every request goes the general way (the differential test's seam).
        self.flat = True
        self._flat_decoders: dict[str, Callable[[Any], dict[str, Any] | None]] = {}
        self._flat_encoders: dict[str, Callable[[Any], bytes]] = {}
        for name, result in FLAT.items():
            request = OPERATIONS[name].request
            fields, required = fields_of(request)
            decoder = codec.flat_decoder(name, fields, required)
            encoder = codec.flat_encoder(name, result)
            if decoder is None or encoder is None:
                raise ValueError(f"{name} has no flat path in this botocore model")
            self._flat_decoders[name] = decoder
            self._flat_encoders[name] = encoder

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
        flat = self._flat_decoders.get(action.name) if self.flat else None
        if flat is None:
            fields = self._codec.decode(action.name, request.body)
            typed: object = build(action.request, fields)
        else:
            # Parsed once: a body the flat decoder refuses is decoded from the
            # same document by the general path, which words the error.
            document = self._codec.parse(request.body)
            flat_fields = flat(document)
            if flat_fields is None:
                typed = build(action.request, self._codec.decode_parsed(action.name, document))
            else:
                # What build does once the fields are known to fit (the
                # context checks run in the request's __post_init__ either way).
                typed = action.request(**flat_fields)
        call.grant_tokens = tuple(getattr(typed, "grant_tokens", None) or ())
        return typed

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        flat = self._flat_encoders.get(action.name) if self.flat else None
        if flat is not None:
            return flat(result)
        return self._codec.encode(action.name, result)

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._keys.commit(writes)
