"""The Cloud KMS door over gRPC (``--gcp-grpc-listen``): a transcoder, not a
second door.

Each call to google.cloud.kms.v1.KeyManagementService (and the two mixins
Google's clients reach on the same channel, google.iam.v1.IAMPolicy and
google.cloud.location.Locations) becomes the REST request Google's own REST
client would send for it: the HTTP verb, path, query parameters and JSON
body of the method's google.api.http rule, the ``authorization``
metadata as the Authorization header. That request goes through the same
``Pipeline.handle`` as one to the REST door on the HTTP port (``kms.py``),
so authentication, authorization, limits, audit (door gcp-kms) and the
sealed answer are the REST door's; its JSON answer is parsed into the
method's response message, and its google.rpc.Status error becomes the
gRPC status of the same name, message kept. Each resource name must fit
its rule's template segment by segment (``_fits``), or the call is refused
INVALID_ARGUMENT as its own operation: a call reaches only its own REST
route, never another route or another door's path.

The rules and message classes are google-cloud-kms's (its REST transport's
table, the types its client returns), imported only when the listener is
asked for: the ``keycask[grpc]`` extra. Messages are bounded by the HTTP
port's body limit (grpcio refuses a larger one, RESOURCE_EXHAUSTED, before
it reaches keycask: that refusal is not audited).
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import SerializationException, ValidationException
from keycask.service.doors.gcp_kms import PATH_PREFIX
from keycask.service.pipeline import Pipeline, Reply

log = logging.getLogger("keycask")

KMS_SERVICE = "google.cloud.kms.v1.KeyManagementService"
IAM_SERVICE = "google.iam.v1.IAMPolicy"
LOCATIONS_SERVICE = "google.cloud.location.Locations"
_IAM_METHODS = ("GetIamPolicy", "SetIamPolicy", "TestIamPermissions")
_LOCATION_METHODS = ("GetLocation", "ListLocations")
MISSING_EXTRA = (
    "--gcp-grpc-listen needs grpcio and google-cloud-kms, which this installation "
    "lacks: install keycask with its grpc extra (pip install 'keycask[grpc]')"
)
_G = "GcpKms."  # the Cloud KMS door's operations, as audited
_VAR = re.compile(r"\{([a-z_.]+)(?:=([^}]*))?\}")
# An HTTP status by the gRPC status an answer in another wire than Google's
# maps to (the fallback door's, for a path no door claims).
_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def available() -> bool:
    """Whether grpcio and google-cloud-kms can be imported here."""
    try:
        import grpc  # noqa: F401
        from google.cloud import kms_v1  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Rpc:
    """One method: its REST rules (verb, URI template, body field) and messages."""

    name: str
    rules: tuple[tuple[str, str, str], ...]
    request: Callable[[], Any]
    response: Callable[[], Any]


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def _pb(cls: Any) -> Any:
    """The protobuf class of a proto-plus message class (or the class itself)."""
    return cls.pb() if hasattr(cls, "pb") else cls


def rpcs() -> dict[str, Rpc]:
    """Every method, by its gRPC path ("/google.cloud.kms.v1.KeyManagementService/Encrypt"),
    from the installed google-cloud-kms: the REST transport's rules, the client's types."""
    from google.cloud import kms_v1
    from google.cloud.kms_v1.services.key_management_service.transports import rest_base
    from google.cloud.location import locations_pb2
    from google.iam.v1 import iam_policy_pb2
    from google.longrunning import operations_pb2

    base = rest_base._BaseKeyManagementServiceRestTransport
    client = kms_v1.KeyManagementServiceClient
    found: dict[str, Rpc] = {}
    for attr in vars(base):
        if not attr.startswith("_Base"):
            continue
        name = attr[len("_Base") :]
        options = getattr(base, attr)._get_http_options()
        rules = tuple((o["method"].upper(), o["uri"], o.get("body", "")) for o in options)
        if name in _IAM_METHODS:
            service, request = IAM_SERVICE, getattr(iam_policy_pb2, name + "Request")
        elif name in _LOCATION_METHODS:
            service, request = LOCATIONS_SERVICE, getattr(locations_pb2, name + "Request")
        elif hasattr(kms_v1, name + "Request"):
            service, request = KMS_SERVICE, _pb(getattr(kms_v1, name + "Request"))
        else:
            continue  # GetOperation: keycask has no long-running operations
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        response = getattr(kms_v1, name + "Response", None)
        if response is None:
            response = inspect.signature(getattr(client, snake)).return_annotation
        if not hasattr(response, "pb") and not hasattr(response, "FromString"):
            # A long-running operation's client-side wrapper (DeleteCryptoKey):
            # on the wire, the Operation message.
            response = operations_pb2.Operation
        found[f"/{service}/{name}"] = Rpc(name, rules, request, _pb(response))
    return found


def _get(doc: dict[str, Any], path: str) -> Any:
    """The field at ``path`` (proto names, dotted) of a JSON doc, or None."""
    node: Any = doc
    for part in path.split("."):
        node = node.get(_camel(part)) if isinstance(node, dict) else None
    return node


def _take(doc: dict[str, Any], path: str) -> Any:
    """Remove and return the field at ``path`` of a JSON doc."""
    parent, _, leaf = path.rpartition(".")
    node = _get(doc, parent) if parent else doc
    return node.pop(_camel(leaf), None) if isinstance(node, dict) else None


class NameRefused(ValueError):
    """A request's resource name that does not fit its RPC's template."""


def _fits(value: object, template: str | None) -> bool:
    """Whether ``value`` is a name of ``template``'s shape, segment by
    segment: its literal segments, one segment per ``*``, one or more for a
    trailing ``**``; never an empty, ``.`` or ``..`` segment (``{name}``
    with no template is one segment)."""
    if not isinstance(value, str):
        return False
    parts, shape = value.split("/"), (template or "*").split("/")
    if any(part in ("", ".", "..") for part in parts) or "**" in shape[:-1]:
        return False
    if shape[-1] == "**":
        shape.pop()
        if len(parts) <= len(shape):
            return False
        parts = parts[: len(shape)]
    elif len(parts) != len(shape):
        return False
    return all(s in ("*", p) for s, p in zip(shape, parts, strict=True))


def _rule_for(rpc: Rpc, doc: dict[str, Any]) -> tuple[str, str, str]:
    """The first rule whose path variables the request's values fit, every
    rule (one or several) checked: a name that fits none is refused, so a
    call reaches only its own route, never another's or another door's."""
    for rule in rpc.rules:
        if all(_fits(_get(doc, v.group(1)), v.group(2)) for v in _VAR.finditer(rule[1])):
            return rule
    fields = sorted({v.group(1) for rule in rpc.rules for v in _VAR.finditer(rule[1])})
    shapes = " or ".join(
        sorted({v.group(2) or "*" for r in rpc.rules for v in _VAR.finditer(r[1])})
    )
    raise NameRefused(
        f"The {rpc.name} request's {', '.join(fields)} is not a resource name of the form {shapes}."
    )


def transcode(
    rpc: Rpc, doc: dict[str, Any], flatten: Callable[[dict[str, Any]], Any]
) -> tuple[str, bytes, bytes, bytes]:
    """The REST request of ``doc`` (the request message as proto3 JSON):
    method, raw path, query string, body. NameRefused: a resource name that
    fits none of the RPC's rules, or a path outside the Cloud KMS door's."""
    method, uri, body_field = _rule_for(rpc, doc)

    def fill(var: re.Match[str]) -> str:
        value = _take(doc, var.group(1))
        return quote(value if isinstance(value, str) else "", safe="/")

    path = _VAR.sub(fill, uri).encode()
    if not path.startswith(PATH_PREFIX):
        raise NameRefused(f"The {rpc.name} request names no Cloud KMS resource.")
    if body_field == "*":
        body, query = doc, {}
    elif body_field:
        body, query = _take(doc, body_field) or {}, doc
    else:
        body, query = None, doc
    query_string = urlencode(flatten(query)) if query else ""
    payload = b"" if body is None else orjson.dumps(body)
    return method, path, query_string.encode(), payload


def peer_address(peer: str) -> str | None:
    """The client's address in grpc's ``ipv4:1.2.3.4:5`` / ``ipv6:[::1]:5`` form."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host = rest.rpartition(":")[0].strip("[]")
    try:
        return str(ipaddress.ip_address(host.partition("%")[0]))
    except ValueError:
        return None


def grpc_status(reply: Reply) -> tuple[str, str]:
    """A failed reply's gRPC status name and message."""
    try:
        error = orjson.loads(reply.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("status"), str):
        return error["status"], str(error.get("message", ""))
    try:
        doc = orjson.loads(reply.body)
        message = str(doc.get("message") or doc.get("Message") or "")
    except (orjson.JSONDecodeError, AttributeError):
        message = ""
    status = _BY_HTTP.get(reply.status, "INTERNAL" if reply.status >= 500 else "UNKNOWN")
    return status, message


class GcpGrpcServer:
    """grpc.aio's server, in the HTTP server's event loop, handing every call
    to ``pipeline`` as the REST request it stands for."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        max_message: int,
        tls: tuple[bytes, bytes] | None = None,
        client_ca: bytes | None = None,
        max_concurrent: int = 1024,
    ) -> None:
        """``tls``: the private key and certificate chain (PEM) to serve TLS
        with; ``client_ca``: as the HTTP listener's --tls-client-ca, clients
        must present a certificate it issued."""
        import grpc
        from google.api_core import rest_helpers
        from google.protobuf import json_format

        self._grpc = grpc
        self._json = json_format
        self._flatten = rest_helpers.flatten_query_params
        self._pipeline = pipeline
        self._tls = tls
        self._client_ca = client_ca
        self._rpcs = rpcs()
        # Refusals of a resource name are the Cloud KMS door's, in its wire.
        self._door = pipeline.doors.by_path(PATH_PREFIX)
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.max_send_message_length", 4 * max_message),
                ("grpc.max_concurrent_streams", 100),
                ("grpc.max_metadata_size", 64 * 1024),
                # As the HTTP port's header and keep-alive timeouts bound a
                # connection that says nothing: a handshake, an idle channel
                # (a client's channel reconnects when it next calls).
                ("grpc.server_handshake_timeout_ms", 10_000),
                ("grpc.max_connection_idle_ms", 300_000),
            ],
            maximum_concurrent_rpcs=max_concurrent,
        )
        handlers: dict[str, dict[str, Any]] = {}
        for path, rpc in self._rpcs.items():
            service = path[1:].partition("/")[0]
            handlers.setdefault(service, {})[rpc.name] = grpc.unary_unary_rpc_method_handler(
                self._behaviour(rpc)
            )
        self._server.add_generic_rpc_handlers(
            tuple(
                grpc.method_handlers_generic_handler(service, methods)
                for service, methods in handlers.items()
            )
        )
        self.port = 0

    def bind(self, host: str, port: int) -> int:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self._tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            key, chain = self._tls
            credentials = self._grpc.ssl_server_credentials(
                ((key, chain),),
                root_certificates=self._client_ca,
                require_client_auth=self._client_ca is not None,
            )
            self.port = self._server.add_secure_port(address, credentials)
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {address}")
        return self.port

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)

    def _behaviour(self, rpc: Rpc) -> Callable[[bytes, Any], Any]:
        async def behaviour(message: bytes, context: Any) -> bytes:
            return await self._call(rpc, message, context)

        return behaviour

    async def _call(self, rpc: Rpc, message: bytes, context: Any) -> bytes:
        client = peer_address(context.peer())
        try:
            request = rpc.request()
            request.ParseFromString(message)
            # A value proto3 JSON cannot write (a timestamp out of its range)
            # is refused as a message that does not parse.
            doc = self._json.MessageToDict(request, use_integers_for_enums=True)
            method, path, query, body = transcode(rpc, doc, self._flatten)
        except NameRefused as refused:
            # Before authentication, as the REST door refuses a path it does
            # not route: audited as the RPC's own operation, no effect.
            invalid = ValidationException(str(refused))
            reply = await self._pipeline.refuse(invalid, client, self._door, _G + rpc.name)
            await self._abort(context, reply, "INVALID_ARGUMENT", invalid.message)
        except Exception:
            error = SerializationException(f"The {rpc.name} request is not a valid message.")
            reply = await self._pipeline.refuse(error, client)
            await self._abort(context, reply, "INVALID_ARGUMENT", error.message)
        headers = [(b"content-type", b"application/json")]
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                headers.append((b"authorization", value.encode("latin-1", "replace")))
                break
        http = HttpRequest(method, path, query, tuple(headers), body)
        reply = await self._pipeline.handle(http, client, secure_transport=self._tls is not None)
        if reply.status != 200:
            status, text = grpc_status(reply)
            await self._abort(context, reply, status, text)
        context.set_trailing_metadata((("x-request-id", reply.request_id),))
        try:
            answer = self._json.Parse(
                reply.body or b"{}", rpc.response(), ignore_unknown_fields=True
            )
        except self._json.ParseError:
            log.exception("request %s: its answer does not fit %s", reply.request_id, rpc.name)
            await self._abort(context, reply, "INTERNAL", "keycask's answer did not fit gRPC.")
        return bytes(answer.SerializeToString())

    async def _abort(self, context: Any, reply: Reply, status: str, message: str) -> NoReturn:
        code = getattr(self._grpc.StatusCode, status, self._grpc.StatusCode.UNKNOWN)
        context.set_trailing_metadata((("x-request-id", reply.request_id),))
        await context.abort(code, message)
        raise AssertionError("grpc's abort returned")  # it raises
