"""What a front door is, and the registry the pipeline finds doors in.

A front door is one wire protocol that reaches the core: the AWS KMS JSON
API, keycask's own admin, operator and dev APIs, and later others. It knows
its wire (how a request names its operation, who is calling, how bodies and
errors are written) and nothing else; the pipeline (``pipeline.py``) runs
the same envelope around every door: match, authenticate, decode, authorize
and handle, audit, commit, answer. Adding a door is one module implementing
``Door`` and one ``Doors.add`` in ``app.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import KMSError
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome


@dataclass(frozen=True, slots=True)
class Action:
    """One operation a door serves, bound (once, at start) to what its
    handler needs: the pipeline calls ``run(call, request)`` and nothing else."""

    name: str  # the operation as audited: "Encrypt", "KeycaskAdmin.CreatePrincipal"
    run: Callable[[Call, Any], Awaitable[Outcome]]
    # Writes: run one at a time under the store's write lock, so its
    # read-modify-write sees a consistent state.
    mutates: bool = False
    # The typed request the door decodes the body into (None: the door's own shape).
    request: type | None = None
    # Audited before it runs, with this detail: a change that outlives the
    # call (sealing, a rotation, a rekey) is on record even if the answer is lost.
    announce: str | None = None
    # Run even when that first record cannot be written, since it only takes
    # capability away (an attacker who breaks the audit log must not be able
    # to prevent it); then answered KMSInternalException with this message.
    unrecorded: str | None = None
    # Answered even when the final record cannot be written: it was recorded
    # before it ran, and its answer holds the only copy of what it made.
    answer_unrecorded: bool = False
    # A mutating action's slow work that needs no consistent view of the
    # store (generating an RSA key takes up to seconds), run before the write
    # lock is taken so that no other write waits for it; it leaves what it
    # made on the call (``Call.prepared``) for ``run``.
    prepare: Callable[[Call, Any], Awaitable[None]] | None = None


class Door(Protocol):
    """One wire protocol. Every method may raise a ``KMSError``, which the
    pipeline audits and answers with ``encode_error``."""

    @property
    def name(self) -> str:
        """Named in the audit record of every request the door answered."""
        ...

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The ``X-Amz-Target`` prefixes (``"TrentService."``) it claims."""
        ...

    @property
    def media_types(self) -> tuple[bytes, ...]:
        """The content types (lower-case, without parameters) of requests
        with no ``X-Amz-Target`` that it claims: the Query protocol's form
        (``application/x-www-form-urlencoded``) names its operation in the body."""
        ...

    @property
    def content_type(self) -> bytes:
        """The ``Content-Type`` of its answers."""
        ...

    @property
    def serves_sealed(self) -> bool:
        """Whether it is served while the server is sealed (else: Sealed)."""
        ...

    def operation(self, target: str) -> str | None:
        """The operation ``target`` names, as audited; None if unknown here."""
        ...

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        """Who is calling: sets ``call.caller`` (or ``call.principal_name``)."""
        ...

    def action(self, call: Call, request: HttpRequest) -> Action:
        """The operation the request asks for (call.operation None: unknown)."""
        ...

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        """The request body as the action's typed request."""
        ...

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        """A success answer's body (``request_id``: for a wire that repeats
        it in the body, as the Query protocol's XML does)."""
        ...

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        """An error answer's body."""
        ...

    def error_status(self, error: KMSError) -> int:
        """An error answer's HTTP status: the door's wire decides (STS answers
        403 for what KMS answers 400)."""
        ...

    def unavailable(self, operation: str | None) -> KMSError:
        """The retryable error for a store that did not answer in time."""
        ...

    async def commit(self, writes: Sequence[Write]) -> None:
        """Commit an outcome's writes (after its audit record is durable)."""
        ...

    def committed(self) -> None:
        """After a commit, even a failed one: drop what it made stale."""
        ...


class Doors:
    """The registry: doors by the ``X-Amz-Target`` prefix they claim, doors
    by the content type of the requests with no ``X-Amz-Target`` they claim,
    and the door that answers a request no door claims
    (UnknownOperationException, in its own wire)."""

    def __init__(self, fallback: Door) -> None:
        self.fallback = fallback
        self._by_prefix: dict[str, Door] = {}
        # Targets already matched, by the header's exact bytes: one dict
        # lookup instead of decode, strip, find and the door's own lookup
        # (0.49 -> ~0.25 us per request, thread_time). Only a target a door
        # knows, written exactly (no blanks around it), is kept: at most one
        # entry per operation of every door.
        self._by_target: dict[bytes, tuple[Door, str]] = {}
        self._by_media_type: dict[bytes, Door] = {}
        # Doors claimed by path (``path_prefixes``: Vault's /v1/): a REST
        # wire names its operation by method and path, not by a header.
        self._by_path: list[tuple[bytes, Door]] = []
        # Doors claimed by a marker anywhere in the path (``path_markers``:
        # the XKS door's /kms/xks/, under a prefix the operator chooses):
        # after the prefixes, so a path a prefix claims stays its door's.
        self._by_marker: list[tuple[bytes, Door]] = []
        self.add(fallback)

    def add(self, door: Door) -> None:
        for prefix in door.prefixes:
            if prefix in self._by_prefix:
                raise ValueError(f"two doors claim {prefix!r}")
            self._by_prefix[prefix] = door
        for media_type in door.media_types:
            if media_type in self._by_media_type:
                raise ValueError(f"two doors claim {media_type!r}")
            self._by_media_type[media_type] = door
        for path_prefix in getattr(door, "path_prefixes", ()):
            if any(path_prefix == known for known, _ in self._by_path):
                raise ValueError(f"two doors claim {path_prefix!r}")
            self._by_path.append((path_prefix, door))
            # The longest claim first: a door claiming /v1/projects/ is
            # matched before one claiming all of /v1/.
            self._by_path.sort(key=lambda claim: len(claim[0]), reverse=True)
        for marker in getattr(door, "path_markers", ()):
            if any(marker == known for known, _ in self._by_marker):
                raise ValueError(f"two doors claim {marker!r}")
            self._by_marker.append((marker, door))

    def by_path(self, raw_path: bytes) -> Door | None:
        """The door a path's prefix claims (``path_prefixes``), if any."""
        for path_prefix, path_door in self._by_path:
            if raw_path.startswith(path_prefix):
                return path_door
        return None

    def match(self, call: Call, request: HttpRequest) -> Door:
        """The door of ``request``; names its operation on ``call`` (None:
        unknown, answered by the fallback door after authentication)."""
        if request.raw_path != b"/" and self._by_path:
            for path_prefix, path_door in self._by_path:
                if request.raw_path.startswith(path_prefix):
                    target = f"{request.method} {request.raw_path.decode('latin-1')}"
                    query = request.query_string.decode("latin-1")
                    call.operation = path_door.operation(f"{target}?{query}")
                    return path_door
        if request.raw_path != b"/" and self._by_marker:
            for marker, marked_door in self._by_marker:
                if marker in request.raw_path:
                    target = f"{request.method} {request.raw_path.decode('latin-1')}"
                    query = request.query_string.decode("latin-1")
                    call.operation = marked_door.operation(f"{target}?{query}")
                    return marked_door
        raw = header(request, b"x-amz-target")
        if raw is None and self._by_media_type:
            # No target at all: a door may claim the request by its content
            # type (the door names the operation itself, from the body). A
            # request with a target, whatever its content type, is matched
            # by the target as before.
            content_type = header(request, b"content-type") or b""
            media_type = content_type.split(b";", 1)[0].strip().lower()
            door = self._by_media_type.get(media_type)
            if door is not None:
                return door
        known = self._by_target.get(raw) if raw is not None else None
        if known is not None:
            call.operation = known[1]
            return known[0]
        target = (raw or b"").decode("latin-1").strip()
        door = self._by_prefix.get(target[: target.find(".") + 1])
        if door is not None:
            name = door.operation(target)
            if name is not None:
                call.operation = name
                if raw == target.encode("latin-1") and len(self._by_target) < _MAX_TARGETS:
                    self._by_target[raw] = (door, name)
                return door
        return self.fallback


# More than every operation of every door: the cache above never fills.
_MAX_TARGETS = 1024


def header(request: HttpRequest, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return value
    return None
