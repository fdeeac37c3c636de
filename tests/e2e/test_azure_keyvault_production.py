"""The Azure Key Vault door on a sealed production server (HTTPS with the
certificate `operator init --tls-self-signed` made): 503 ServiceUnavailable
in Key Vault's body for every call, audited, and answers again once
unsealed."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from production import Production

from keycask.errors import Sealed


def _call(server: Production, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.endpoint + path,
        data=data,
        method=method,
        headers={"Authorization": "Bearer kct.x", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(server.cert))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.slow
def test_a_sealed_server_answers_service_unavailable_then_serves(tmp_path: Path) -> None:
    server = Production(tmp_path / "prod")
    server.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    server.start()
    try:
        path = "/keys/k/create?api-version=7.5"
        status, body = _call(server, "POST", path, {"kty": "EC"})
        assert (status, body["error"]["code"]) == (503, "ServiceUnavailable")
        server.unseal_with(server.shares[:2])
        # Unsealed, the unknown token is refused as Key Vault refuses one.
        status, body = _call(server, "POST", path, {"kty": "EC"})
        assert (status, body["error"]["code"]) == (401, "Unauthorized")
        audit = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in audit if '"AzureKeyVault.CreateKey"' in line]
        assert [(r["door"], r["error_code"]) for r in records] == [
            ("azure-keyvault", Sealed.code),
            ("azure-keyvault", "AccessDeniedException"),
        ]
    finally:
        if server.proc is not None:
            server.stop()
