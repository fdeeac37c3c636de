"""The clock-moving endpoint exists in --dev only.

These tests build the server in-process from Settings (the production one
initialised with a passphrase seal and unsealed at start), serve it on
127.0.0.1 with keycask's own HTTP server, and call it signed exactly as a
client would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import DevCallError, dev_call, free_port
from keycask.app import STORE_FILE, Runtime, build
from keycask.barrier import Barrier
from keycask.config import Settings
from keycask.http.server import HttpServer, Limits
from keycask.seal import PassphraseSeal
from keycask.service.sealing import UnsealInput
from keycask.storage.sqlite import SQLiteStorage

PASSPHRASE = "correct horse battery staple"


async def _initialise(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    root = PassphraseSeal.init(data_dir, PASSPHRASE, n=2**14)
    storage = SQLiteStorage(data_dir / STORE_FILE)
    await Barrier(storage).initialise(root)
    await storage.close()


async def _serve(tmp_path: Path, *, dev: bool) -> tuple[Runtime, HttpServer, str, tuple[str, str]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        port=free_port(),
        dev=dev,
        account_id="000000000000",
        region="us-east-1",
    )
    if not dev:
        await _initialise(settings.data_dir)
    runtime = await build(settings, unseal=None if dev else UnsealInput(passphrase=PASSPHRASE))
    key = await runtime.credentials.create_principal("000000000000", "admin", admin=True)
    app = runtime.app
    server = HttpServer(app.handle, app.refuse_too_large, limits=Limits(max_body=app.max_body))
    await server.start(settings.host, settings.port)
    app.ready = True
    return runtime, server, f"http://127.0.0.1:{settings.port}", (key.access_key_id, key.secret)


async def _call(endpoint: str, creds: tuple[str, str], seconds: float) -> dict[str, object]:
    return await asyncio.to_thread(dev_call, endpoint, creds, {"Seconds": seconds})


@pytest.mark.parametrize("dev", [True, False])
async def test_advance_clock_exists_only_in_dev(tmp_path: Path, dev: bool) -> None:
    runtime, server, endpoint, creds = await _serve(tmp_path, dev=dev)
    try:
        if dev:
            answer = await _call(endpoint, creds, 86400)
            assert answer["OffsetSeconds"] == 86400
            assert (tmp_path / "data" / "dev-clock").exists()
        else:
            with pytest.raises(DevCallError) as refused:
                await _call(endpoint, creds, 86400)
            assert refused.value.code == "UnknownOperationException"
            assert refused.value.status == 400
            assert not (tmp_path / "data" / "dev-clock").exists()
    finally:
        await server.shutdown(grace=1.0)
        await runtime.close()
    # Allowed or refused, the call is in the audit log.
    records = [
        json.loads(line)
        for path in sorted((tmp_path / "data" / "audit").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    calls = [r for r in records if r["operation"] == "KeycaskDev.AdvanceClock"]
    if dev:
        assert len(calls) == 1
        assert calls[0]["outcome"] == "success"
        assert calls[0]["decision"] == "allow"
    else:
        assert calls == []
        refusals = [r for r in records if r["error_code"] == "UnknownOperationException"]
        assert len(refusals) == 1
