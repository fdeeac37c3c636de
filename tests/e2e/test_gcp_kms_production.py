"""The Google Cloud KMS door on a sealed production server: 503
UNAVAILABLE (google.rpc.Status) for every call, audited, and answers again
once unsealed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from production import Production

from keycask.errors import Sealed

PATH = "/v1/projects/keycask-test/locations/global/keyRings/r/cryptoKeys/k:encrypt"


def _call(server: Production, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.endpoint + path,
        data=data,
        method=method,
        headers={"Authorization": "Bearer kct.x", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.slow
def test_a_sealed_server_answers_unavailable_then_serves_once_unsealed(tmp_path: Path) -> None:
    server = Production(tmp_path / "prod", tls=False)
    server.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    server.start()
    try:
        status, body = _call(server, "POST", PATH, {"plaintext": "eA=="})
        assert status == 503
        assert body["error"]["code"] == 503 and body["error"]["status"] == "UNAVAILABLE"
        server.unseal_with(server.shares[:2])
        # Unsealed, the unknown token is refused as Google refuses one.
        status, body = _call(server, "POST", PATH, {"plaintext": "eA=="})
        assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED")
        audit = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in audit if '"GcpKms.Encrypt"' in line]
        assert [(r["door"], r["error_code"]) for r in records] == [
            ("gcp-kms", Sealed.code),
            ("gcp-kms", "AccessDeniedException"),
        ]
    finally:
        if server.proc is not None:
            server.stop()
