"""The service layer in-process, without sockets: the app built by
``keycask.app.build`` as the server builds it, and requests signed by
botocore's own SigV4 signer handed straight to the pipeline.

``FaultyStore`` is the real SQLite store with one switch: a chosen commit
raises, as a disk or a database that fails mid-request would. Nothing of
keycask's own is replaced; ``build`` opens a ``FaultyStore`` where it would
open an ``SQLiteStorage``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from keycask import app as app_module
from keycask.app import Runtime, build
from keycask.auth.sigv4 import HttpRequest
from keycask.config import Settings
from keycask.ports import Write
from keycask.service.pipeline import Pipeline, Reply
from keycask.storage.sqlite import SQLiteStorage

ACCOUNT = "111122223333"
REGION = "eu-west-1"
HOST = "127.0.0.1:9999"


class FaultyStore(SQLiteStorage):
    """A real SQLite store whose next commit matching ``fail_when`` raises
    (once) without writing anything."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.fail_when: Callable[[Sequence[Write]], bool] | None = None
        self.commits = 0
        self.failed = 0

    async def commit(self, writes: Sequence[Write]) -> None:
        if self.fail_when is not None and self.fail_when(writes):
            self.fail_when = None
            self.failed += 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        await super().commit(writes)
        self.commits += 1


@dataclass
class Service:
    """A built server, and a signed caller of its pipeline."""

    runtime: Runtime
    # (access key id, secret) or, for a role session, (id, secret, session token)
    access_key: tuple[str, ...]
    store: FaultyStore
    audit_path: Path
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def pipeline(self) -> Pipeline:
        return self.runtime.pipeline

    def signed(self, target: str, body: dict[str, Any] | bytes) -> HttpRequest:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = AWSRequest(
            method="POST",
            url=f"http://{HOST}/",
            data=data,
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
        )
        SigV4Auth(Credentials(*self.access_key), "kms", REGION).add_auth(request)
        headers = [(b"host", HOST.encode())]
        headers += [
            (name.lower().encode(), value.encode() if isinstance(value, str) else value)
            for name, value in request.headers.items()
            if name.lower() != "host"
        ]
        return HttpRequest("POST", b"/", b"", tuple(headers), data)

    async def send(self, target: str, body: dict[str, Any] | bytes) -> Reply:
        return await self.pipeline.handle(self.signed(target, body), "192.0.2.7")

    async def kms(self, operation: str, **body: Any) -> tuple[int, dict[str, Any]]:
        reply = await self.send("TrentService." + operation, body)
        return reply.status, json.loads(reply.body)

    def audit_records(self) -> list[dict[str, Any]]:
        # Whole lines only: a background job's record may be half written
        # when the file is read (the writer appends from its own thread).
        lines = self.audit_path.read_text().split("\n")[:-1]
        return [json.loads(line) for line in lines if line]

    def record_of(self, reply: Reply) -> list[dict[str, Any]]:
        return [r for r in self.audit_records() if r["request_id"] == reply.request_id]


@asynccontextmanager
async def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    """A --dev server built by ``keycask.app.build`` on a ``FaultyStore``,
    with an administrator to sign as; closed afterwards."""
    opened: list[FaultyStore] = []

    def faulty(path: Path) -> FaultyStore:
        store = FaultyStore(path)
        opened.append(store)
        return store

    monkeypatch.setattr(app_module, "SQLiteStorage", faulty)
    settings = Settings(
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        port=9999,
        dev=True,
        account_id=ACCOUNT,
        region=REGION,
    )
    runtime = await build(settings, scheduler=False)
    try:
        key = await runtime.credentials.create_principal(ACCOUNT, "admin", admin=True)
        yield Service(runtime, (key.access_key_id, key.secret), opened[0], runtime.audit.path)
    finally:
        await runtime.close()


@contextmanager
def failing_fsync(path: Path, errno_: int = 5) -> Iterator[list[int]]:
    """The next fsync of the file at ``path`` fails with ``errno_`` (EIO), as a
    failing disk answers; every other fsync goes through. Yields the list of
    failures so far."""
    real = os.fsync
    failures: list[int] = []

    def fsync(fd: int) -> None:
        if not failures and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            failures.append(fd)
            raise OSError(errno_, os.strerror(errno_))
        real(fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        yield failures
