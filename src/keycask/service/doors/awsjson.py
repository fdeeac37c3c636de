"""What the four AWS-JSON-shaped doors share: ``POST /`` with an
``X-Amz-Target`` and a JSON body, AWS JSON 1.1 error bodies, and which
errors a store that did not answer in time becomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import (
    DependencyTimeoutException,
    KMSError,
    KMSInternalException,
    SerializationException,
)
from keycask.service.door import header

_CONTENT_TYPES = (b"application/x-amz-json-1.1", b"application/x-amz-json-1.0")


class WireCodec(Protocol):
    """The edge's AWS JSON codec, handed in by the composition root."""

    def operation_names(self) -> frozenset[str]: ...

    def decode(self, operation: str, body: bytes) -> dict[str, Any]: ...

    def encode(self, operation: str, result: object | None) -> bytes: ...

    def encode_error(self, code: str, message: str) -> bytes: ...

    def parse(self, body: bytes) -> Any: ...

    def decode_parsed(self, operation: str, document: Any) -> dict[str, Any]: ...

    def flat_decoder(
        self, operation: str, fields: frozenset[str], required: frozenset[str]
    ) -> Callable[[Any], dict[str, Any] | None] | None: ...

    def flat_encoder(self, operation: str, result: type) -> Callable[[Any], bytes] | None: ...


def check_content_type(request: HttpRequest) -> None:
    raw = header(request, b"content-type")
    if raw in _CONTENT_TYPES:
        return  # as every SDK sends it: no split, no strip
    content_type = (raw or b"").split(b";")[0].strip()
    if content_type not in _CONTENT_TYPES:
        raise SerializationException("Content-Type must be application/x-amz-json-1.1.")


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``), for keycask's own
    targets; SerializationException otherwise, as AWS answers."""
    try:
        doc = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise SerializationException("The request body is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise SerializationException("The request body must be a JSON object.")
    return doc


# Operations whose model lists no DependencyTimeoutException: they answer
# KMSInternalException, the model's own retryable server fault, instead.
# (tests/unit/test_pipeline_errors.py pins this against botocore's model.)
NO_DEPENDENCY_TIMEOUT = frozenset(
    {
        "ConnectCustomKeyStore",
        "CreateCustomKeyStore",
        "DeleteCustomKeyStore",
        "DescribeCustomKeyStores",
        "DisconnectCustomKeyStore",
        "GenerateMac",
        "ListKeyRotations",
        "ListResourceTags",
        "ReplicateKey",
        "TagResource",
        "UntagResource",
        "UpdateCustomKeyStore",
        "UpdatePrimaryRegion",
        "VerifyMac",
    }
)


def unavailable(operation: str | None) -> KMSError:
    """The retryable answer for a store (or its write lock) not there in time."""
    message = "keycask's key store did not answer in time; the request had no effect. Retry it."
    if operation in NO_DEPENDENCY_TIMEOUT:
        return KMSInternalException(message)
    return DependencyTimeoutException(message)


class AwsJsonErrors:
    """Errors as AWS JSON 1.1 answers them: ``{"__type": ..., "message": ...}``,
    with the error's own status; the AWS-JSON-shaped doors claim no request
    by content type (their requests carry an ``X-Amz-Target``)."""

    media_types: tuple[bytes, ...] = ()
    content_type = b"application/x-amz-json-1.1"

    def __init__(self, codec: WireCodec) -> None:
        self._codec = codec

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        return self._codec.encode_error(error.code, error.message)

    def error_status(self, error: KMSError) -> int:
        return error.status

    def unavailable(self, operation: str | None) -> KMSError:
        return unavailable(operation)

    def committed(self) -> None:
        """Nothing cached here goes stale with a commit."""
