"""Raw, signed KMS requests for end-to-end tests.

boto3 validates parameters before it sends anything, so it cannot send a
malformed body, an unsigned header or a stale signature. This module signs a
request exactly as botocore does (``SigV4Auth``), lets the test spoil it
afterwards, and sends it over ``http.client`` so nothing rewrites it on the way.

Tests import it as ``from rawclient import ...``: pytest's default import mode
puts this directory (which has no ``__init__.py``) on ``sys.path``, and each
test module also inserts it explicitly so the import does not depend on that.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

JSON_11 = "application/x-amz-json-1.1"
TARGET_PREFIX = "TrentService."
# Stable strings that mean the answer leaked internals instead of an AWS error.
LEAK_MARKERS = ("Traceback", "<html", "<HTML", "<!DOCTYPE", 'File "', "Internal Server Error")


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-amzn-requestid")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_type(self) -> str | None:
        """``__type`` of an error body, or None if the body is not an error object."""
        try:
            doc = self.json()
        except ValueError:
            return None
        if isinstance(doc, dict) and isinstance(doc.get("__type"), str):
            return str(doc["__type"]).rsplit("#", 1)[-1]
        return None

    @property
    def message(self) -> str:
        doc = self.json()
        return str(doc.get("message") or doc.get("Message") or "")

    def assert_aws_error(
        self, code: str, status: int | None = None, *, message: bool = True
    ) -> dict[str, Any]:
        """Assert this is a JSON AWS error ``code`` with a message (with an empty
        one if not ``message``: AWS gives some errors none), and return the body."""
        text = self.body.decode("utf-8", "replace")
        for marker in LEAK_MARKERS:
            assert marker not in text, f"answer leaks internals ({marker!r}): {text[:500]}"
        assert self.headers.get("content-type", "").startswith("application/x-amz-json"), (
            self.headers
        )
        doc = self.json()
        assert isinstance(doc, dict), text[:500]
        assert self.error_type == code, f"expected {code}, got HTTP {self.status}: {text[:500]}"
        assert isinstance(doc.get("message"), str), text[:500]
        if message:
            assert doc["message"].strip(), f"empty message: {text[:500]}"
        else:
            assert doc["message"] == "", f"AWS answers {code} with no message: {text[:500]}"
        if status is not None:
            assert self.status == status, f"expected HTTP {status}, got {self.status}: {text[:500]}"
        assert self.request_id, "every answer carries x-amzn-RequestId"
        return doc


@dataclass(frozen=True)
class PreparedRequest:
    """A signed request, as a list of headers that the test may still spoil."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def with_header(self, name: str, value: str) -> PreparedRequest:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return PreparedRequest(self.method, self.path, [*kept, (name, value)], self.body)

    def without_header(self, name: str) -> PreparedRequest:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return PreparedRequest(self.method, self.path, kept, self.body)

    def with_body(self, body: bytes) -> PreparedRequest:
        return PreparedRequest(self.method, self.path, list(self.headers), body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class _Signer(SigV4Auth):
    """botocore's SigV4 signer with two test knobs: the signing time, and
    headers that are sent but left out of the signature."""

    def __init__(
        self,
        credentials: Credentials,
        region: str,
        when: datetime | None,
        unsigned: Sequence[str],
    ) -> None:
        super().__init__(credentials, "kms", region)
        self._when = when
        self._unsigned = {name.lower() for name in unsigned}

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        for name in self._unsigned:
            del headers[name]
        return headers

    def add_auth(self, request: AWSRequest) -> None:
        if self._when is None:
            super().add_auth(request)
            return
        # SigV4Auth.add_auth, except that the timestamp is ours: it reads the
        # clock itself and offers no other way to sign for another moment.
        request.context["timestamp"] = self._when.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def sign(
    endpoint: str,
    access_key: tuple[str, str],
    *,
    target: str | None,
    body: bytes,
    region: str = "us-east-1",
    content_type: str | None = JSON_11,
    method: str = "POST",
    path: str = "/",
    when: datetime | None = None,
    unsigned: Sequence[str] = (),
    extra_headers: Mapping[str, str] | None = None,
) -> PreparedRequest:
    """Sign a request as botocore would. ``target`` is the full X-Amz-Target value."""
    headers: dict[str, str] = {}
    if target is not None:
        headers["X-Amz-Target"] = target
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(extra_headers or {})
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
    _Signer(Credentials(*access_key), region, when, unsigned).add_auth(request)
    host = urlsplit(endpoint).netloc
    sent = [("Host", host), *((str(k), str(v)) for k, v in request.headers.items())]
    return PreparedRequest(method, path, sent, body)


def send(
    endpoint: str,
    request: PreparedRequest,
    *,
    chunked: bool = False,
    content_length: int | None = None,
    timeout: float = 30,
) -> RawResponse:
    """Send ``request`` as is. ``chunked`` streams the body with chunked
    transfer encoding; ``content_length`` sends that Content-Length whatever
    the body's real size."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for chunk in _chunks(request.body, 64 * 1024):
                try:
                    conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server answered early and closed: read its answer
            else:
                conn.send(b"0\r\n\r\n")
        else:
            length = len(request.body) if content_length is None else content_length
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            # The server may answer early and close: then read its answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.send(request.body)
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return RawResponse(response.status, headers, body)
    finally:
        conn.close()


def _chunks(data: bytes, size: int) -> Iterable[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class RawKMS:
    """A KMS caller that sends whatever body it is given, correctly signed."""

    def __init__(
        self, endpoint: str, access_key: tuple[str, str], region: str = "us-east-1"
    ) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self.region = region

    def prepare(
        self,
        operation: str,
        body: bytes | Mapping[str, Any] | list[Any] | None = None,
        **options: Any,
    ) -> PreparedRequest:
        """``operation`` is the bare name ("Encrypt") or, with ``raw_target=True``,
        the whole X-Amz-Target header."""
        raw_target = options.pop("raw_target", False)
        target = operation if raw_target else TARGET_PREFIX + operation
        if body is None:
            data = b"{}"
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        options.setdefault("region", self.region)
        return sign(self.endpoint, self.access_key, target=target, body=data, **options)

    def call(
        self,
        operation: str,
        body: bytes | Mapping[str, Any] | list[Any] | None = None,
        **options: Any,
    ) -> RawResponse:
        return self.send(self.prepare(operation, body, **options))

    def send(self, request: PreparedRequest, **options: Any) -> RawResponse:
        return send(self.endpoint, request, **options)
