"""State survives restarts: a graceful one (SIGTERM) and a crash (SIGKILL)
right after acknowledged writes. What a client was told happened, happened:
keys, aliases, tags, states and every ciphertext, and the audit chain goes on
from where it stopped.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import Server

MESSAGES = 50


@dataclass(frozen=True)
class Sealed:
    """Something a client was given back: a blob, and what it must open to."""

    key_arn: str
    blob: bytes
    context: dict[str, str]
    plaintext: bytes


def _check_all_decrypt(kms: Any, sealed: list[Sealed]) -> None:
    for item in sealed:
        out = kms.decrypt(CiphertextBlob=item.blob, EncryptionContext=item.context)
        assert out["Plaintext"] == item.plaintext
        assert out["KeyId"] == item.key_arn


def _snapshot(kms: Any, key_ids: list[str]) -> dict[str, Any]:
    """Everything the API says about the keys, for comparison across restarts."""
    aliases = kms.list_aliases(Limit=100)
    assert not aliases.get("Truncated")
    return {
        "describe": {k: kms.describe_key(KeyId=k)["KeyMetadata"] for k in key_ids},
        "tags": {
            k: sorted((t["TagKey"], t["TagValue"]) for t in kms.list_resource_tags(KeyId=k)["Tags"])
            for k in key_ids
        },
        "aliases": sorted(
            (a["AliasName"], a["AliasArn"], a.get("TargetKeyId"), a.get("CreationDate"))
            for a in aliases["Aliases"]
            # The predefined alias/aws/<service> aliases are listed in every
            # account; only the test's own count here.
            if not a["AliasName"].startswith("alias/aws/")
        ),
        "keys": sorted(k["KeyArn"] for k in kms.list_keys(Limit=1000)["Keys"]),
    }


def _audit_lines(server: Server) -> list[bytes]:
    return (server.data_dir / "audit" / "server.jsonl").read_bytes().splitlines()


def _check_audit(server: Server, before: list[bytes]) -> list[bytes]:
    """``keycask audit verify`` passes; the server's segment kept every line
    it had and numbers on from there."""
    proc = server.cli("audit", "verify")
    assert proc.stdout.startswith("ok: "), proc.stdout
    lines = _audit_lines(server)
    assert lines[: len(before)] == before
    assert len(lines) > len(before)
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == list(range(1, len(lines) + 1))
    return lines


def test_state_survives_sigterm_then_sigkill(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()

    # -- keys with tags and aliases, messages and data keys --
    keys: list[str] = []
    for n in range(3):
        meta = kms.create_key(
            Description=f"restart key {n}",
            Tags=[
                {"TagKey": "team", "TagValue": f"team-{n}"},
                {"TagKey": "cost-center", "TagValue": str(1000 + n)},
            ],
        )["KeyMetadata"]
        keys.append(meta["Arn"])
        kms.create_alias(AliasName=f"alias/restart-{n}", TargetKeyId=meta["KeyId"])
    kms.create_alias(AliasName="alias/restart-second-name", TargetKeyId=keys[0])
    disabled = kms.create_key(Description="disabled before restart")["KeyMetadata"]["Arn"]
    kms.disable_key(KeyId=disabled)
    kms.tag_resource(KeyId=keys[1], Tags=[{"TagKey": "team", "TagValue": "retagged"}])

    sealed: list[Sealed] = []
    for i in range(MESSAGES):
        n = i % 3
        ref = keys[n] if i % 2 else f"alias/restart-{n}"
        context = {"message": str(i), "tenant": f"tenant-{i % 7}"}
        plaintext = os.urandom(1 + (i * 97) % 3000)
        out = kms.encrypt(KeyId=ref, Plaintext=plaintext, EncryptionContext=context)
        assert out["KeyId"] == keys[n]
        sealed.append(Sealed(keys[n], out["CiphertextBlob"], context, plaintext))
    for i, spec in enumerate(("AES_256", "AES_128", "AES_256")):
        context = {"data-key": str(i)}
        out = kms.generate_data_key(KeyId=keys[i], KeySpec=spec, EncryptionContext=context)
        sealed.append(Sealed(keys[i], out["CiphertextBlob"], context, out["Plaintext"]))

    all_keys = [*keys, disabled]
    before = _snapshot(kms, all_keys)
    assert len(before["aliases"]) == 4
    assert before["tags"][keys[1]] == [("cost-center", "1001"), ("team", "retagged")]
    assert before["describe"][disabled]["KeyState"] == "Disabled"
    audit_before = _audit_lines(server)

    # -- graceful restart --
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    kms = server.client()

    _check_all_decrypt(kms, sealed)
    assert _snapshot(kms, all_keys) == before
    with pytest.raises(ClientError) as err:
        kms.encrypt(KeyId=disabled, Plaintext=b"x")
    assert err.value.response["Error"]["Code"] == "DisabledException"
    audit_after_term = _check_audit(server, audit_before)

    # -- acknowledged writes, then a crash with no chance to flush anything --
    new = kms.create_key(
        Description="created just before the crash",
        Tags=[{"TagKey": "born", "TagValue": "pre-crash"}],
    )["KeyMetadata"]
    kms.create_alias(AliasName="alias/pre-crash", TargetKeyId=new["KeyId"])
    kms.tag_resource(KeyId=keys[2], Tags=[{"TagKey": "last-write", "TagValue": "yes"}])
    context = {"written": "just before kill -9"}
    out = kms.encrypt(KeyId="alias/pre-crash", Plaintext=b"acknowledged", EncryptionContext=context)
    sealed.append(Sealed(new["Arn"], out["CiphertextBlob"], context, b"acknowledged"))
    all_keys.append(new["Arn"])
    before_kill = _snapshot(kms, all_keys)
    audit_before_kill = _audit_lines(server)

    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    server.start()
    kms = server.client()

    after_kill = _snapshot(kms, all_keys)
    assert after_kill == before_kill
    assert after_kill["describe"][new["Arn"]]["Description"] == "created just before the crash"
    assert after_kill["tags"][new["Arn"]] == [("born", "pre-crash")]
    assert ("last-write", "yes") in after_kill["tags"][keys[2]]
    assert ("alias/pre-crash", new["KeyId"]) in {(a[0], a[2]) for a in after_kill["aliases"]}
    assert new["Arn"] in after_kill["keys"]
    _check_all_decrypt(kms, sealed)
    # The pre-crash alias still routes new work to its key.
    assert kms.encrypt(KeyId="alias/pre-crash", Plaintext=b"after")["KeyId"] == new["Arn"]
    _check_audit(server, audit_before_kill)
    assert len(audit_before_kill) > len(audit_after_term)


def test_audit_verify_catches_a_cut_tail_through_the_stored_anchor(fresh_server: Server) -> None:
    kms = fresh_server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(5):
        kms.describe_key(KeyId=key)
    fresh_server.stop()  # a clean stop records the final anchor
    assert fresh_server.cli("audit", "verify").stdout.startswith("ok:")
    segment = fresh_server.data_dir / "audit" / "server.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-1]))
    result = fresh_server.cli("audit", "verify", check=False)
    assert result.returncode == 1
    assert f"line {len(lines)}" in result.stdout
    assert "removed from the end" in result.stdout
