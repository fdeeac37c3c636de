"""The KMS endpoint on keycask's HTTP server: ``POST /`` (every front door:
the KMS API and keycask's own by ``X-Amz-Target``, STS by its form body), ``GET /healthz``
(alive: 200 once serving, its body saying ``ok`` or ``sealed``), ``GET
/readyz`` (200 only when a load balancer may send KMS calls here: unsealed,
the store answering, the audit log writable; else 503 saying which),
``GET /metrics`` (``metrics.py``) and, when enabled, the web console's
static files under ``GET /console/`` (``console.py``).

Everything about HTTP framing, limits and timeouts is ``connection.py``'s; every
request that reaches here (or is refused for size) goes to the pipeline, which
audits it.
"""

from __future__ import annotations

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import RequestEntityTooLargeException, UnknownOperationException
from keycask.http.console import Console
from keycask.http.messages import Handler, Request, Response
from keycask.service.doors import azure_keyvault
from keycask.service.pipeline import Pipeline, Reply

MAX_BODY = 1024 * 1024
_JSON = (b"content-type", b"application/x-amz-json-1.1")
_VAULT_JSON = (b"content-type", b"application/json")
_HEALTHY = Response(200, b'{"status":"ok"}', (_JSON,))
_STARTING = Response(503, b'{"status":"starting"}', (_JSON,))
_SEALED = Response(503, b'{"status":"sealed"}', (_JSON,))
_ALIVE_SEALED = Response(200, b'{"status":"sealed"}', (_JSON,))


def _response(reply: Reply) -> Response:
    # The content type is the answering door's (STS answers XML).
    headers = (
        (b"content-type", reply.content_type),
        (b"x-amzn-requestid", reply.request_id.encode()),
    )
    return Response(reply.status, reply.body, headers + reply.headers if reply.headers else headers)


# The Azure Key Vault door's paths, as the door claims them.
_AZURE_PATHS = tuple(prefix.decode() for prefix in azure_keyvault.PATH_PREFIXES)


def _azure_path(path: str) -> bool:
    return path.startswith(_AZURE_PATHS) and (
        path in _AZURE_PATHS or path.startswith(tuple(p + "/" for p in _AZURE_PATHS))
    )


class KMSApp:
    def __init__(
        self, pipeline: Pipeline, *, max_body: int = MAX_BODY, console: Console | None = None
    ) -> None:
        self._pipeline = pipeline
        self.max_body = max_body
        self.ready = False
        self._console = console
        # GET /metrics (http/metrics.py's MetricsRoute.handle), when served.
        self.metrics: Handler | None = None

    async def handle(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path == "/" and method == "POST":
            http = HttpRequest(
                method, request.raw_path, request.query_string, request.headers, request.body
            )
            reply = await self._pipeline.handle(
                http, request.client, secure_transport=request.secure
            )
            return _response(reply)
        if path.startswith("/v1/"):
            # Vault's REST paths (service/doors/vault_transit.py), every method.
            http = HttpRequest(
                method, request.raw_path, request.query_string, request.headers, request.body
            )
            reply = await self._pipeline.handle(
                http, request.client, secure_transport=request.secure
            )
            if reply.status == 200 and not reply.body:
                return Response(204, b"", ((b"x-request-id", reply.request_id.encode()),))
            return _response(reply)
        if b"/kms/xks/" in request.raw_path:
            # The XKS proxy API (service/doors/xks.py), under any prefix: a
            # wrong one is answered in the XKS wire, every method too. Its
            # mutual TLS reads the client certificate's subject.
            http = HttpRequest(
                method,
                request.raw_path,
                request.query_string,
                request.headers,
                request.body,
                request.client_subject,
            )
            reply = await self._pipeline.handle(
                http, request.client, secure_transport=request.secure
            )
            return _response(reply)
        if _azure_path(path):
            # Azure Key Vault's keys data plane, every method; the door
            # refuses it unless it came over TLS.
            http = HttpRequest(
                method, request.raw_path, request.query_string, request.headers, request.body
            )
            reply = await self._pipeline.handle(
                http, request.client, secure_transport=request.secure
            )
            if reply.status == 200 and not reply.body:
                return Response(204, b"", ((b"x-ms-request-id", reply.request_id.encode()),))
            return _response(reply)
        if path == "/healthz" and method in ("GET", "HEAD"):
            if not self.ready:
                return _STARTING
            return _ALIVE_SEALED if self._pipeline.sealed else _HEALTHY
        if path == "/readyz" and method in ("GET", "HEAD"):
            if not self.ready:
                return _STARTING
            reason = await self._pipeline.not_ready()
            if reason is None:
                return _HEALTHY
            if reason == "sealed":
                return _SEALED
            return Response(503, orjson.dumps({"status": reason}), (_JSON,))
        if self._console is not None and Console.serves(path):
            return self._console.handle(request)  # static files: nothing to audit
        if path == "/metrics" and method in ("GET", "HEAD") and self.metrics is not None:
            return await self.metrics(request)
        error = UnknownOperationException(
            f"keycask serves the KMS API at POST /, not {method} {path[:64]}"
        )
        return _response(await self._pipeline.refuse(error, request.client))

    async def refused_at_edge(self, client: str | None, status: int, reason: str) -> None:
        await self._pipeline.refused_at_edge(client, status, reason)

    async def refuse_too_large(self, request: Request) -> Response:
        error = RequestEntityTooLargeException(f"Request body exceeds {self.max_body} bytes.")
        reply = await self._pipeline.refuse(error, request.client)
        if request.path.startswith("/v1/projects/"):
            # Audited as above; answered as Google's front end answers it.
            message = f"Request payload size exceeds the limit: {self.max_body} bytes."
            body = orjson.dumps(
                {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
            )
            return Response(400, body, (_VAULT_JSON, (b"x-request-id", reply.request_id.encode())))
        if request.path.startswith("/v1/"):
            # Audited as above; answered in Vault's wire, as Vault does.
            body = orjson.dumps({"errors": [f"request body exceeds {self.max_body} bytes"]})
            return Response(413, body, (_VAULT_JSON, (b"x-request-id", reply.request_id.encode())))
        if _azure_path(request.path):
            # Audited as above; answered in Key Vault's wire.
            body = orjson.dumps(
                {"error": {"code": "RequestEntityTooLarge", "message": error.message}}
            )
            return Response(
                413, body, (_VAULT_JSON, (b"x-ms-request-id", reply.request_id.encode()))
            )
        if b"/kms/xks/" in request.raw_path:
            body = orjson.dumps({"errorName": "ValidationException", "errorMessage": error.message})
            request_id = (b"x-amzn-requestid", reply.request_id.encode())
            return Response(413, body, (_VAULT_JSON, request_id))
        return _response(reply)
