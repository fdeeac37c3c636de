"""--log-format json: every line the server writes to stderr is one JSON
object with the event's fields; in either format no line holds a secret the
session used (plaintexts, data keys, secret access keys), in any encoding a
log could carry it in."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import signal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from tests.conftest import DevCallError, Server, dev_call

REQUEST_FIELDS = {"request_id", "door", "operation", "outcome", "error_code", "duration_seconds"}


def _forms(secret: bytes) -> list[str]:
    """How a secret could appear in a text log."""
    forms = [
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        secret.hex(),
    ]
    with contextlib.suppress(UnicodeDecodeError):
        forms.append(secret.decode())
    forms.append(repr(secret)[2:-1])
    # Long enough to be the secret and nothing else.
    return [form for form in forms if len(form) >= 16]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_log_holds_events_and_no_secret(tmp_path: Path, log_format: str) -> None:
    stderr = tmp_path / "stderr.log"
    server = Server(tmp_path / "data", args=("--log-format", log_format), stderr_path=stderr)
    server.start()
    used: list[bytes] = []
    try:
        admin = server.credentials()
        used.append(admin[1].encode())
        kms = server.client()
        key = kms.create_key(Description="json logs")["KeyMetadata"]["KeyId"]
        plaintext = b"plaintext-" + secrets.token_hex(16).encode()
        used.append(plaintext)
        context = {"purpose": "log-test"}
        blob = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext=context)
        opened = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext=context)
        assert opened["Plaintext"] == plaintext
        data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")["Plaintext"]
        used.append(data_key)
        raw = secrets.token_bytes(32)
        used.append(raw)
        kms.encrypt(KeyId=key, Plaintext=raw)

        made = dev_call(
            server.endpoint, admin, {"Name": "app"}, target="KeycaskAdmin.CreatePrincipal"
        )
        second = dev_call(
            server.endpoint, admin, {"Name": "app"}, target="KeycaskAdmin.CreateAccessKey"
        )
        for created in (made, second):
            if "SecretAccessKey" in created:
                used.append(created["SecretAccessKey"].encode())
        app = server.client((second["AccessKeyId"], second["SecretAccessKey"]))
        with pytest.raises(ClientError) as denied:
            app.encrypt(KeyId=key, Plaintext=plaintext)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        forged = server.client((second["AccessKeyId"], "x" + second["SecretAccessKey"][1:]))
        with pytest.raises(ClientError) as bad:
            forged.encrypt(KeyId=key, Plaintext=plaintext)
        assert bad.value.response["Error"]["Code"] == "InvalidSignatureException"
        with pytest.raises(DevCallError):
            dev_call(server.endpoint, admin, {"Nope": 1}, target="KeycaskAdmin.CreatePrincipal")
    finally:
        server.stop(signal.SIGTERM)

    text = stderr.read_text()
    for secret in used:
        for form in _forms(secret):
            assert form not in text, f"a secret is in the log ({form[:6]}...)"
    if log_format == "text":
        assert "WARNING: keycask is running with the DEV seal" in text
        return

    events = [json.loads(line) for line in text.splitlines()]
    for event in events:
        assert {"time", "level", "event", "message"} <= set(event), event
    answered = [e for e in events if e["event"] == "request"]
    for event in answered:
        assert set(event) >= REQUEST_FIELDS, event
    outcomes = {(e["operation"], e["outcome"], e["error_code"]) for e in answered}
    assert ("Encrypt", "success", None) in outcomes
    assert ("Decrypt", "success", None) in outcomes
    assert ("GenerateDataKey", "success", None) in outcomes
    assert ("KeycaskAdmin.CreatePrincipal", "success", None) in outcomes
    assert ("Encrypt", "error", "AccessDeniedException") in outcomes
    assert ("Encrypt", "error", "InvalidSignatureException") in outcomes
    assert any(e["event"] == "dev_mode" and e["level"] == "warning" for e in events)
