"""The STS API (AWS Query protocol): ``POST /`` with no ``X-Amz-Target`` and
an ``application/x-www-form-urlencoded`` body naming its ``Action`` and
``Version=2011-06-15``, as every AWS SDK and the CLI send STS calls to an
``endpoint_url`` (``AWS_ENDPOINT_URL_STS``). Answers are STS's XML.

Steps, as the pipeline runs them:

- **authenticate**: the form is parsed first (a malformed body is a
  ValidationError before anything else, since the body names the action);
  the action is named on the call, so even a refused request is audited
  under it. Actions the model marks unsigned (AssumeRoleWithWebIdentity,
  AssumeRoleWithSAML) are not signature-checked: their token is the
  credential, checked by the handler. Every other action is SigV4 with
  the credential scope's service ``sts`` and ``host`` signed (there is no
  X-Amz-Target to sign). An unknown action is answered only once the caller
  is authenticated, like the KMS door's unknown targets.
- **action**: InvalidAction for a missing or unknown ``Action``, a
  ``Version`` other than the model's, or an action keycask does not serve.
- **decode**: the codec checks the form against the input shape; members
  the model has but keycask does not implement (MFA's SerialNumber and
  TokenCode, ProvidedContexts, ...) are refused (UnsupportedOperation),
  never ignored.

Errors keep keycask's classes (and their codes in the audit record) and are
answered with STS's codes and statuses (``_WIRE_ERRORS``): InvalidClientTokenId,
SignatureDoesNotMatch, IncompleteSignature, MissingAuthenticationToken,
ExpiredToken (an expired session signing the call; ExpiredTokenException
is the model's code for an expired web identity token), AccessDenied,
ValidationError, InvalidAction, the model's own codes (IDPRejectedClaim,
InvalidIdentityToken, ...), InternalFailure and ServiceUnavailable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final, Protocol

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import (
    AccessDeniedException,
    DependencyTimeoutException,
    ExpiredTokenException,
    IncompleteSignatureException,
    InvalidSignatureException,
    KMSError,
    KMSInternalException,
    MalformedPolicyDocumentException,
    MissingAuthenticationTokenException,
    Sealed,
    SerializationException,
    ThrottlingException,
    UnknownOperationException,
    UnrecognizedClientException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.ports import Write
from keycask.service.core.call import Call
from keycask.service.core.handlers.sts import OPERATIONS, Sts, authenticate_web_identity
from keycask.service.door import Action
from keycask.service.doors.signed import SignedCallers

FORM: Final = b"application/x-www-form-urlencoded"
_SCOPE_SERVICE: Final = "sts"
_SIGNED_HEADERS: Final = ("host",)
_MAX_SHOWN: Final = 64


class QueryWire(Protocol):
    """The edge's AWS Query codec (``http/awsquery.py``), handed in by the
    composition root."""

    @property
    def api_version(self) -> str: ...

    def operation_names(self) -> frozenset[str]: ...

    def unsigned_operations(self) -> frozenset[str]: ...

    def parse(self, body: bytes) -> dict[str, str]: ...

    def decode(self, operation: str, fields: Mapping[str, str]) -> dict[str, Any]: ...

    def encode(self, operation: str, result: object | None, request_id: str) -> bytes: ...

    def encode_error(self, code: str, message: str, request_id: str, *, sender: bool) -> bytes: ...


class ExpiredSessionToken(ExpiredTokenException):
    """A session token past its expiration signing the call: STS answers
    ``ExpiredToken`` (403), not the model's ExpiredTokenException, which is
    about a web identity token passed as a parameter."""


# keycask's error classes as STS answers them: (code, status). Looked up
# along the error's class hierarchy, most specific first; a class not here
# answers its own code and status (the model's codes: IDPRejectedClaim, ...).
_WIRE_ERRORS: Final[Mapping[type[KMSError], tuple[str, int]]] = {
    ValidationException: ("ValidationError", 400),
    SerializationException: ("ValidationError", 400),
    UnknownOperationException: ("InvalidAction", 400),
    UnsupportedOperationException: ("UnsupportedOperation", 400),
    MissingAuthenticationTokenException: ("MissingAuthenticationToken", 403),
    IncompleteSignatureException: ("IncompleteSignature", 400),
    InvalidSignatureException: ("SignatureDoesNotMatch", 403),
    UnrecognizedClientException: ("InvalidClientTokenId", 403),
    ExpiredSessionToken: ("ExpiredToken", 403),
    AccessDeniedException: ("AccessDenied", 403),
    MalformedPolicyDocumentException: ("MalformedPolicyDocument", 400),
    ThrottlingException: ("Throttling", 400),
    Sealed: ("ServiceUnavailable", 503),
    DependencyTimeoutException: ("ServiceUnavailable", 503),
    KMSInternalException: ("InternalFailure", 500),
}


def wire_error(error: KMSError) -> tuple[str, int]:
    """The STS code and HTTP status ``error`` is answered with."""
    for cls in type(error).__mro__:
        found = _WIRE_ERRORS.get(cls)
        if found is not None:
            return found
    return error.code, error.status


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _member(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


# Typed requests hold sequences as tuples; the codec gives lists of what
# the wire nests (a tag is {key, value}, a policy descriptor {arn}).
def _policy_arns(value: list[dict[str, str]]) -> tuple[str, ...]:
    arns = []
    for i, descriptor in enumerate(value, 1):
        arn = descriptor.get("arn")
        if arn is None:
            raise ValidationException(
                f"1 validation error detected: Value null at 'policyArns.{i}.member.arn' "
                "failed to satisfy constraint: Member must not be null"
            )
        arns.append(arn)
    return tuple(arns)


def _tags(value: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((tag["key"], tag["value"]) for tag in value)


_CONVERT: Final[Mapping[str, Callable[[Any], Any]]] = {
    "policy_arns": _policy_arns,
    "tags": _tags,
    "transitive_tag_keys": tuple,
}


def _builder(operation: str, request: type) -> Callable[[dict[str, Any]], object]:
    fields = frozenset(field.name for field in dataclasses.fields(request))

    def build(decoded: dict[str, Any]) -> object:
        for snake in decoded:
            if snake not in fields:
                raise UnsupportedOperationException(
                    f"keycask does not support the parameter {_member(snake)} of {operation}."
                )
        return request(**{k: _CONVERT.get(k, _same)(v) for k, v in decoded.items()})

    return build


def _same(value: Any) -> Any:
    return value


class StsDoor:
    name = "sts"
    prefixes: tuple[str, ...] = ()
    media_types = (FORM,)
    content_type = b"text/xml"
    serves_sealed = False

    def __init__(
        self,
        wire: QueryWire,
        signed: SignedCallers,
        commit: Callable[[Sequence[Write]], Awaitable[None]],
        services: Sts,
    ) -> None:
        self._wire = wire
        self._signed = signed
        self._commit = commit
        self._services = services
        self._version = wire.api_version
        self._model_operations = wire.operation_names()
        self._unsigned = wire.unsigned_operations()
        self._actions: dict[str, Action] = {}
        self._builders: dict[str, Callable[[dict[str, Any]], object]] = {}
        for op in OPERATIONS.values():
            if op.name not in self._model_operations:
                raise ValueError(f"{op.name} is not an operation of botocore's STS model")
            self._actions[op.name] = Action(
                op.name, partial(op.handler, services), op.mutates, op.request
            )
            self._builders[op.name] = _builder(op.name, op.request)

    def operation(self, target: str) -> str | None:
        return None  # claimed by content type, never by a target

    def _fields(self, request: HttpRequest) -> dict[str, str]:
        if request.query_string:
            raise ValidationException(
                "keycask's STS endpoint reads parameters from the POST body only, "
                "not the query string."
            )
        return self._wire.parse(request.body)

    def _named(self, fields: Mapping[str, str]) -> str | None:
        action = fields.get("Action")
        if action in self._model_operations and fields.get("Version") == self._version:
            return action
        return None

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        fields = self._fields(request)
        call.operation = self._named(fields)
        if call.operation in self._unsigned:
            # The token is the caller's authentication: verified here, before
            # the write lock the issuance runs under, so a garbage token (or
            # the JWKS refresh an unknown key id provokes) never holds a lock
            # that every other write waits for.
            if call.operation == "AssumeRoleWithWebIdentity":
                await authenticate_web_identity(
                    self._services,
                    call,
                    token=fields.get("WebIdentityToken", ""),
                    role_arn=fields.get("RoleArn", ""),
                )
            return
        try:
            await self._signed.authenticate(
                call, request, service=_SCOPE_SERVICE, required_signed_headers=_SIGNED_HEADERS
            )
        except ExpiredSessionToken:
            raise
        except ExpiredTokenException as exc:
            raise ExpiredSessionToken(exc.message) from None

    def action(self, call: Call, request: HttpRequest) -> Action:
        name = call.operation
        if name is None:
            fields = self._fields(request)
            action, version = fields.get("Action"), fields.get("Version")
            if not action:
                raise UnknownOperationException("The request names no Action.")
            raise UnknownOperationException(
                f"Could not find operation {_shown(action)} for version "
                f"{_shown(version or '(none)')}"
            )
        found = self._actions.get(name)
        if found is None:
            raise UnknownOperationException(f"keycask does not support {name}.")
        return found

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        decoded = self._wire.decode(action.name, self._fields(request))
        return self._builders[action.name](decoded)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        return self._wire.encode(action.name, result, request_id)

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        code, status = wire_error(error)
        return self._wire.encode_error(code, error.message, request_id, sender=status < 500)

    def error_status(self, error: KMSError) -> int:
        return wire_error(error)[1]

    def unavailable(self, operation: str | None) -> KMSError:
        return DependencyTimeoutException(
            "keycask's store did not answer in time; the request had no effect. Retry it."
        )

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._commit(writes)

    def committed(self) -> None:
        """Nothing cached here goes stale with a commit."""
