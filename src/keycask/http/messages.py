"""What keycask's HTTP server hands a handler and takes back from it.

``Request`` and ``Response`` are the only types an application (``http/kms.py``,
the benchmarks' bare handler) needs from the server; they carry request bodies
and answers that may be plaintext, so neither prints its body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields

__all__ = ["Handler", "Refuse", "Refused", "Request", "Response", "new_request"]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = field(repr=False)  # may be plaintext: never printed
    client: str | None = None
    # Arrived over TLS (the policy condition key aws:SecureTransport).
    secure: bool = False
    # The verified client certificate's subject common name ("" if it has
    # none); None: no client certificate (http/connection.py, peer_subject).
    client_subject: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = field(repr=False)  # may be plaintext: never printed
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]
Refuse = Callable[[Request], Awaitable[Response]]
# Told of every request the HTTP layer itself refuses (400, 408, 431): the
# client's address, the status and a short fixed reason. Awaited before the
# answer is sent, so an app can record it first.
Refused = Callable[[str | None, int, str], Awaitable[None]]


def _request_maker() -> Callable[
    [
        str,
        str,
        bytes,
        bytes,
        tuple[tuple[bytes, bytes], ...],
        bytes,
        str | None,
        bool,
        str | None,
    ],
    Request,
]:
    # The generated __init__ of a frozen dataclass sets each field through
    # object.__setattr__ (0.9 us here); the slot descriptors do the same job in
    # half the time. Same fields, same order, no __post_init__ to skip.
    new = object.__new__
    slots = Request.__dict__
    (
        set_method,
        set_path,
        set_raw,
        set_query,
        set_headers,
        set_body,
        set_client,
        set_secure,
        set_subject,
    ) = (slots[f.name].__set__ for f in fields(Request))

    def make(  # noqa: PLR0917 - mirrors Request positionally, like its __init__
        method: str,
        path: str,
        raw_path: bytes,
        query_string: bytes,
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
        client: str | None,
        secure: bool,
        client_subject: str | None,
    ) -> Request:
        request: Request = new(Request)
        set_method(request, method)
        set_path(request, path)
        set_raw(request, raw_path)
        set_query(request, query_string)
        set_headers(request, headers)
        set_body(request, body)
        set_client(request, client)
        set_secure(request, secure)
        set_subject(request, client_subject)
        return request

    return make


new_request = _request_maker()
