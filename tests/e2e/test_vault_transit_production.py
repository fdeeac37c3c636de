"""The Vault Transit door on a sealed production server: Vault's 503 and
``Vault is sealed`` for every transit call and sys/health, sys/seal-status
saying so, and answers again once unsealed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from production import Production

from keycask.errors import Sealed

SEALED_CODE = Sealed.code


def _call(server: Production, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.endpoint + path, data=data, method=method, headers={"X-Vault-Token": "kct.x"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.slow
def test_a_sealed_server_answers_503_then_serves_once_unsealed(tmp_path: Path) -> None:
    server = Production(tmp_path / "prod", tls=False)
    server.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    server.start()
    try:
        status, seal = _call(server, "GET", "/v1/sys/seal-status")
        assert status == 200 and seal["sealed"] is True
        assert _call(server, "GET", "/v1/sys/health") == (503, {"errors": ["Vault is sealed"]})
        encrypt = _call(server, "POST", "/v1/transit/encrypt/k", {"plaintext": "eA=="})
        assert encrypt == (503, {"errors": ["Vault is sealed"]})
        server.unseal_with(server.shares[:2])
        status, health = _call(server, "GET", "/v1/sys/health")
        assert status == 200 and health["sealed"] is False
        # Unsealed, the unknown token is refused as Vault refuses it.
        encrypt = _call(server, "POST", "/v1/transit/encrypt/k", {"plaintext": "eA=="})
        assert encrypt == (403, {"errors": ["permission denied"]})
        audit = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in audit if '"VaultTransit.Encrypt"' in line]
        assert [(r["door"], r["error_code"]) for r in records] == [
            ("vault-transit", SEALED_CODE),
            ("vault-transit", "AccessDeniedException"),
        ]
    finally:
        if server.proc is not None:
            server.stop()
