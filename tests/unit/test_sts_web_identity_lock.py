"""An unsigned AssumeRoleWithWebIdentity is authenticated by its token
before the store's write lock: a caller with a garbage token (or one that
makes the server fetch a JWKS again) never holds the lock that every write
of every account waits for."""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path

import pytest

from keycask.auth.sigv4 import HttpRequest
from service_harness import HOST, service


def _assume(token: str) -> HttpRequest:
    body = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": "arn:aws:iam::111122223333:role/app",
            "RoleSessionName": "s1",
            "WebIdentityToken": token,
        }
    ).encode()
    headers = ((b"host", HOST.encode()), (b"content-type", b"application/x-www-form-urlencoded"))
    return HttpRequest("POST", b"/", b"", headers, body)


async def test_a_refused_token_never_waits_for_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with svc.runtime.coordinator.exclusive():
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await held.wait()
        try:
            # Answered while the lock is held elsewhere: it never asked for it.
            reply = await asyncio.wait_for(
                svc.pipeline.handle(_assume("not.a.token"), "192.0.2.7"), timeout=5
            )
        finally:
            release.set()
            await holder
        assert reply.status == 400
        assert b"<Code>InvalidIdentityToken</Code>" in reply.body
        record = svc.record_of(reply)[-1]
        assert record["operation"] == "AssumeRoleWithWebIdentity"
        assert record["error_code"] == "InvalidIdentityToken"
        assert "not.a.token" not in str(record)
