"""The keyed audit log on a production store (passphrase seal): lines written
while sealed carry no MAC, and a server adopts them at its next unsealed start
with a record saying so; a forged tail stops the start; `audit verify` reads
the store with the passphrase and writes nothing."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from production import Production, keycask, secret_file

from keycask.audit.chain import chain_form


def _keyring_row(data_dir: Path) -> tuple[bytes, int]:
    with sqlite3.connect(data_dir / "keycask.db") as conn:
        row = conn.execute("SELECT value, revision FROM kv WHERE path='core/keyring'").fetchone()
    return bytes(row[0]), int(row[1])


@pytest.mark.slow
def test_sealed_lines_are_adopted_and_forged_ones_refused(tmp_path: Path) -> None:
    import hashlib

    prod = Production(tmp_path / "prod", tls=False)
    passphrase = secret_file(tmp_path / "passphrase", "correct horse battery staple audit")
    prod.initialise("--seal", "passphrase", "--passphrase-file", str(passphrase))
    segment = prod.data_dir / "audit" / "server.jsonl"

    def verify() -> tuple[int, str]:
        done = keycask(
            "audit", "verify", "--data-dir", str(prod.data_dir),
            "--passphrase-file", str(passphrase), check=False,
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    prod.start("--passphrase-file", str(passphrase))  # unsealed at start: keyed lines
    kms = prod.client()
    kms.create_key(Description="keyed")
    prod.stop()
    records = [json.loads(line) for line in segment.read_text().splitlines()]
    assert records and all("mac" in r for r in records)
    before = _keyring_row(prod.data_dir)
    code, output = verify()
    assert code == 0 and output.startswith("ok: "), output
    assert _keyring_row(prod.data_dir) == before, "verify writes nothing, not even a reservation"

    prod.start()  # sealed: refusals are recorded without a MAC, nothing is anchored
    with pytest.raises(ClientError) as caught:
        kms.list_keys()
    assert caught.value.response["Error"]["Code"] == "KMSInvalidStateException"
    prod.stop()
    sealed = json.loads(segment.read_text().splitlines()[-1])
    assert "mac" not in sealed and sealed["principal"] is None
    code, output = verify()
    assert code == 0, output
    assert "warning: " in output and "written while the store was sealed, or forged" in output

    prod.start("--passphrase-file", str(passphrase))  # adopts them, and says so
    kms.list_keys()
    prod.stop()
    records = [json.loads(line) for line in segment.read_text().splitlines()]
    flags = [r for r in records if r["operation"] == "keycask:AdoptAuditSegment"]
    assert len(flags) == 1 and "mac" in flags[0]
    code, output = verify()
    assert code == 0 and "warning" not in output, output

    # A forged tail that claims more than a sealed server writes: no start.
    lines = segment.read_bytes().splitlines(keepends=True)
    forged = {k: v for k, v in json.loads(lines[-1]).items() if k != "mac"}
    forged.update(
        seq=forged["seq"] + 1,
        operation="DisableKey",
        principal=records[-1]["principal"],
        outcome="success",
        prev=hashlib.sha256(chain_form(lines[-1].rstrip(b"\n"))).hexdigest(),
    )
    segment.write_bytes(b"".join(lines) + json.dumps(forged).encode() + b"\n")
    code, output = verify()
    assert code == 1 and "forged" in output, output
    prod.start("--passphrase-file", str(passphrase), expect_exit=True)
    assert prod.proc is not None and prod.proc.wait(timeout=30) != 0
    errors = [line for line in prod.log().splitlines() if line.startswith("keycask: ")]
    assert len(errors) == 1 and "will not chain on" in errors[0], prod.log()
    assert "Traceback" not in prod.log()
    prod.proc = None

    # Started sealed, it cannot check yet; once unsealed it does, and then
    # refuses every request rather than key and anchor the forgery.
    prod.start()
    unsealed = prod.operator("unseal", "--json", "--passphrase-file", str(passphrase), check=False)
    # The check runs inside the unseal, before any request is served on the
    # forged tip: the Unseal itself cannot be recorded, so it answers an error.
    assert unsealed.returncode != 0 and "KMSInternalException" in unsealed.stderr, unsealed
    with pytest.raises(ClientError) as caught:
        kms.list_keys()
    assert caught.value.response["Error"]["Code"] == "KMSInternalException"
    assert prod.health("/readyz")[0] == 503
    prod.stop()
    code, output = verify()
    assert code == 1 and "forged" in output, output

    # The way out: quarantine, then the server starts and serves again.
    moved = keycask(
        "audit", "quarantine", "server", "--data-dir", str(prod.data_dir),
        "--passphrase-file", str(passphrase),
    )  # fmt: skip
    assert "moved to server.jsonl.quarantined-" in moved.stdout, moved
    prod.start("--passphrase-file", str(passphrase))
    kms.list_keys()
    prod.stop()
    code, output = verify()
    assert code == 0, output
    kms.close()
