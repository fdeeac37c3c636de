"""Key deletion end to end: ScheduleKeyDeletion, CancelKeyDeletion, the end of
the waiting period, and GetKeyLastUsage, through boto3 against a real --dev
server whose lifecycle clock the tests move.

A key pending deletion refuses every cryptographic use and can be saved
(it comes back Disabled); when its window ends the scheduler destroys it, and
that is checked where it matters, in the store file itself: no row of the
key's metadata, material, listing entry, alias, schedule or usage is left.
Afterwards the key answers as one that never existed, and its ciphertexts get
AWS's AccessDenied answer for a ciphertext whose key is gone.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

if TYPE_CHECKING:
    from conftest import Server

DAY = 86400.0
ACCOUNT = "000000000000"
REGION = "us-east-1"
CONTEXT = {"purpose": "deletion-e2e"}
GONE_MESSAGE = (
    "The ciphertext refers to a customer master key that does not exist, "
    "does not exist in this region, or you are not allowed to access."
)


# -- helpers --


def _error(call: Callable[[], Any]) -> dict[str, Any]:
    """The error answer of ``call``, which must fail."""
    with pytest.raises(ClientError) as caught:
        call()
    return dict(caught.value.response)


def _code(call: Callable[[], Any]) -> str:
    return str(_error(call)["Error"]["Code"])


def _assert_refused(call: Callable[[], Any], code: str, key_arn: str | None = None) -> None:
    response = _error(call)
    assert response["Error"]["Code"] == code, response["Error"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if key_arn is not None:
        assert key_arn in response["Error"]["Message"], response["Error"]


def _db_rows(server: Server, sql: str, args: tuple[Any, ...]) -> list[str]:
    """Paths in the store file, read by a separate read-only connection.

    The server writes in WAL mode; a reader opened after the write committed
    sees it (the WAL is read too), so nothing needs checkpointing first.
    """
    uri = f"file:{server.data_dir / 'keycask.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return sorted(str(row[0]) for row in conn.execute(sql, args))
    finally:
        conn.close()


def _stored_paths(server: Server, key_id: str, alias_paths: list[str]) -> list[str]:
    """Every stored path that names ``key_id``, plus the given alias paths
    (an alias's path names the alias, not its key)."""
    named = _db_rows(server, "SELECT path FROM kv WHERE instr(path, ?) > 0", (key_id,))
    marks = ",".join("?" * len(alias_paths))
    aliases = _db_rows(server, f"SELECT path FROM kv WHERE path IN ({marks})", tuple(alias_paths))
    return sorted(set(named) | set(aliases))


def _alias_path(name: str) -> str:
    return f"alias/{ACCOUNT}/{REGION}/{name}"


def _wait_for_row(server: Server, path: str, timeout: float = 5.0) -> None:
    """Usage is written in the background about once a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _db_rows(server, "SELECT path FROM kv WHERE path = ?", (path,)):
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written within {timeout} s")


def _audit_records(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _delete_records(server: Server, key_arn: str) -> list[dict[str, Any]]:
    return [
        r
        for r in _audit_records(server)
        if r["operation"] == "DeleteKey" and r["key_arn"] == key_arn
    ]


def _assert_audit_verifies(server: Server) -> None:
    proc = server.cli("audit", "verify", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok: "), proc.stdout


class LifecycleClock:
    """The server's lifecycle time as the test knows it: wall time plus the
    offset the server reported after the last advance (0 on a fresh server)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> int:
        answer = self._server.advance_clock(seconds)
        self.offset = float(answer["OffsetSeconds"])
        return int(answer["JobsRun"])


def _assert_about(when: datetime, lower: datetime, upper: datetime) -> None:
    """``when`` lies in [lower, upper], give or take the second the server
    rounds to and a little scheduling slack."""
    slack = timedelta(seconds=2)
    assert lower - slack <= when <= upper + slack, (when, lower, upper)


def _encrypt(kms: Any, key_ref: str, plaintext: bytes) -> bytes:
    blob: bytes = kms.encrypt(KeyId=key_ref, Plaintext=plaintext, EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    return blob


def _assert_decrypts(kms: Any, blob: bytes, plaintext: bytes, key_arn: str) -> None:
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
    assert out["Plaintext"] == plaintext
    assert out["KeyId"] == key_arn


def _crypto_refusals(
    kms: Any, key_id: str, blob: bytes, other_id: str, other_blob: bytes
) -> dict[str, Callable[[], Any]]:
    """Every cryptographic use of ``key_id``, as a valid request."""
    return {
        "Encrypt": lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x"),
        "Decrypt": lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT),
        "Decrypt with KeyId": lambda: kms.decrypt(
            CiphertextBlob=blob, EncryptionContext=CONTEXT, KeyId=key_id
        ),
        "ReEncrypt from it": lambda: kms.re_encrypt(
            CiphertextBlob=blob, SourceEncryptionContext=CONTEXT, DestinationKeyId=other_id
        ),
        "ReEncrypt to it": lambda: kms.re_encrypt(
            CiphertextBlob=other_blob, SourceEncryptionContext=CONTEXT, DestinationKeyId=key_id
        ),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
        "GenerateDataKeyWithoutPlaintext": lambda: kms.generate_data_key_without_plaintext(
            KeyId=key_id, NumberOfBytes=32
        ),
    }


# -- 1. the whole story: schedule, refuse, cancel, schedule again, destroy --


def test_schedule_cancel_then_delete_at_end_of_window(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)

    meta = kms.create_key(Description="doomed")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    bystander = kms.create_key(Description="bystander")["KeyMetadata"]
    other_id, other_arn = bystander["KeyId"], bystander["Arn"]
    alias = f"alias/doomed-{uuid.uuid4().hex[:8]}"
    other_alias = f"alias/bystander-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.create_alias(AliasName=other_alias, TargetKeyId=other_id)

    plaintexts = [b"made before deletion was scheduled", b"second message"]
    blobs = [_encrypt(kms, key_id, plaintexts[0]), _encrypt(kms, alias, plaintexts[1])]
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=CONTEXT)
    sealed = [
        *zip(blobs, plaintexts, strict=True),
        (data_key["CiphertextBlob"], data_key["Plaintext"]),
    ]
    other_plain = b"the bystander's message"
    other_blob = _encrypt(kms, other_id, other_plain)

    # -- ScheduleKeyDeletion, 7 days --
    before = clock.now()
    scheduled = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    after = clock.now()
    assert scheduled["KeyId"] == arn
    assert scheduled["KeyState"] == "PendingDeletion"
    assert scheduled["PendingWindowInDays"] == 7
    deletion_date = scheduled["DeletionDate"]
    _assert_about(deletion_date, before + timedelta(days=7), after + timedelta(days=7))

    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion"
    assert described["Enabled"] is False
    assert described["DeletionDate"] == deletion_date

    refusals = _crypto_refusals(kms, key_id, blobs[0], other_id, other_blob)
    for what, call in refusals.items():
        response = _error(call)
        assert response["Error"]["Code"] == "KMSInvalidStateException", (what, response)
        assert arn in response["Error"]["Message"], (what, response)
    # By alias too: the alias still resolves, to a key that refuses.
    _assert_refused(lambda: kms.encrypt(KeyId=alias, Plaintext=b"x"), "KMSInvalidStateException")

    # -- CancelKeyDeletion: back, but Disabled --
    assert kms.cancel_key_deletion(KeyId=key_id)["KeyId"] == arn
    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["KeyState"] == "Disabled"
    assert "DeletionDate" not in described
    _assert_refused(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x"), "DisabledException", arn)
    _assert_refused(
        lambda: kms.decrypt(CiphertextBlob=blobs[0], EncryptionContext=CONTEXT),
        "DisabledException",
        arn,
    )
    # Nothing is scheduled any more: moving past the old date deletes nothing.
    assert not _db_rows(server, "SELECT path FROM kv WHERE path LIKE 'sched/%'", ())

    # -- EnableKey: usable again, and nothing it sealed was lost --
    kms.enable_key(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    for blob, plaintext in sealed:
        _assert_decrypts(kms, blob, plaintext, arn)
    late_plain = b"sealed after the cancellation"
    late_blob = _encrypt(kms, key_id, late_plain)
    sealed.append((late_blob, late_plain))
    _assert_decrypts(kms, late_blob, late_plain, arn)

    # -- schedule again; the storage it holds, before the window ends --
    scheduled = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    deletion_date = scheduled["DeletionDate"]
    usage_path = f"usage/{key_id}"
    _wait_for_row(server, usage_path)
    alias_paths = [_alias_path(alias)]
    expected_paths = {
        f"key/{key_id}",
        f"mat/{key_id}/{1:010d}",
        f"idx/key/{ACCOUNT}/{REGION}/{key_id}",
        _alias_path(alias),
        usage_path,
    }
    stored_before = set(_stored_paths(server, key_id, alias_paths))
    [sched_path] = [p for p in stored_before if p.startswith("sched/")]
    # The entry is the deletion date rounded up to the second (the answer
    # carries milliseconds, the store more).
    when, job, sched_key = sched_path.split("/")[1:]
    assert (job, sched_key) == ("delete", key_id)
    assert 0 <= int(when) - deletion_date.timestamp() < 1.001
    assert stored_before - {sched_path} == expected_paths, stored_before ^ expected_paths
    other_before = set(_stored_paths(server, other_id, [_alias_path(other_alias)]))
    assert f"key/{other_id}" in other_before

    # -- six days: still there --
    assert clock.advance(6 * DAY) == 0
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert set(_stored_paths(server, key_id, alias_paths)) == expected_paths | {sched_path}

    # -- two more: gone --
    assert clock.advance(2 * DAY) >= 1
    # Only a tombstone is left: it tells a deleted key's ciphertexts (AWS's
    # "does not exist" answer) from garbage naming a random key id.
    assert _stored_paths(server, key_id, alias_paths) == [f"gone/{key_id}"]
    assert _db_rows(server, "SELECT path FROM kv WHERE path LIKE 'sched/%'", ()) == []
    # The bystander's rows are all still there.
    assert set(_stored_paths(server, other_id, [_alias_path(other_alias)])) == other_before

    # Its ciphertexts: AWS's answer for a ciphertext whose key is gone.
    for blob, _ in sealed:
        response = _error(lambda b=blob: kms.decrypt(CiphertextBlob=b, EncryptionContext=CONTEXT))
        assert response["Error"]["Code"] == "AccessDeniedException", response["Error"]
        assert response["Error"]["Message"] == GONE_MESSAGE
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    response = _error(
        lambda: kms.re_encrypt(
            CiphertextBlob=blobs[0], SourceEncryptionContext=CONTEXT, DestinationKeyId=other_id
        )
    )
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == GONE_MESSAGE

    # The key id and ARN answer as a key that does not exist.
    for ref in (key_id, arn):
        for call in (
            lambda r=ref: kms.describe_key(KeyId=r),
            lambda r=ref: kms.encrypt(KeyId=r, Plaintext=b"x"),
            lambda r=ref: kms.schedule_key_deletion(KeyId=r, PendingWindowInDays=7),
            lambda r=ref: kms.cancel_key_deletion(KeyId=r),
            lambda r=ref: kms.get_key_last_usage(KeyId=r),
            lambda r=ref: kms.enable_key(KeyId=r),
        ):
            assert _code(call) == "NotFoundException"
    assert _code(lambda: kms.describe_key(KeyId=alias)) == "NotFoundException"
    # The alias is gone (and its name is free again); the key is not listed.
    pages = kms.get_paginator("list_aliases").paginate()
    names = {a["AliasName"] for page in pages for a in page["Aliases"]}
    assert alias not in names
    assert other_alias in names
    listed = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    assert key_id not in listed
    assert other_id in listed

    # The bystander is untouched.
    other_meta = kms.describe_key(KeyId=other_alias)["KeyMetadata"]
    assert other_meta["KeyState"] == "Enabled"
    assert other_meta["Arn"] == other_arn
    _assert_decrypts(kms, other_blob, other_plain, other_arn)
    _assert_decrypts(kms, _encrypt(kms, other_alias, b"after"), b"after", other_arn)

    # Exactly one audited deletion, by keycask itself.
    (record,) = _delete_records(server, arn)
    assert record["principal"] == "keycask"
    assert record["outcome"] == "success"
    _assert_audit_verifies(server)


# -- 2. the window's bounds and the wrong states --


def test_pending_window_bounds_and_wrong_states(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)
    key_id = kms.create_key(Description="bounds")["KeyMetadata"]["KeyId"]

    for days in (6, 31, 1, 365):
        response = _error(
            lambda d=days: kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=d)
        )
        assert response["Error"]["Code"] == "ValidationException", (days, response["Error"])
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Refused requests changed nothing.
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"

    for days in (7, 30):
        bounded = kms.create_key(Description=f"{days} days")["KeyMetadata"]["KeyId"]
        before = clock.now()
        out = kms.schedule_key_deletion(KeyId=bounded, PendingWindowInDays=days)
        assert out["PendingWindowInDays"] == days
        _assert_about(
            out["DeletionDate"], before + timedelta(days=days), clock.now() + timedelta(days=days)
        )

    # Omitted: 30 days.
    before = clock.now()
    out = kms.schedule_key_deletion(KeyId=key_id)
    assert out["PendingWindowInDays"] == 30
    assert out["KeyState"] == "PendingDeletion"
    _assert_about(
        out["DeletionDate"], before + timedelta(days=30), clock.now() + timedelta(days=30)
    )
    deletion_date = out["DeletionDate"]

    # Already pending: refused, and the date does not move.
    arn = out["KeyId"]
    _assert_refused(
        lambda: kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7),
        "KMSInvalidStateException",
        arn,
    )
    _assert_refused(lambda: kms.schedule_key_deletion(KeyId=key_id), "KMSInvalidStateException")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["DeletionDate"] == deletion_date

    # CancelKeyDeletion on keys that are not pending deletion.
    enabled = kms.create_key(Description="enabled")["KeyMetadata"]
    _assert_refused(
        lambda: kms.cancel_key_deletion(KeyId=enabled["KeyId"]),
        "KMSInvalidStateException",
        enabled["Arn"],
    )
    assert kms.describe_key(KeyId=enabled["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    disabled = kms.create_key(Description="disabled")["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])
    _assert_refused(
        lambda: kms.cancel_key_deletion(KeyId=disabled["KeyId"]), "KMSInvalidStateException"
    )
    # A disabled key can be scheduled (and then cancelled: Disabled again).
    kms.schedule_key_deletion(KeyId=disabled["KeyId"], PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=disabled["KeyId"])
    assert kms.describe_key(KeyId=disabled["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


# -- 3. restarts --


def test_deletion_survives_a_restart(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)
    meta = kms.create_key(Description="restart")["KeyMetadata"]
    blob = _encrypt(kms, meta["KeyId"], b"restart")
    kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)

    server.restart()
    kms = server.client()
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert clock.advance(8 * DAY) >= 1
    assert _code(lambda: kms.describe_key(KeyId=meta["KeyId"])) == "NotFoundException"
    response = _error(lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT))
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == GONE_MESSAGE
    assert len(_delete_records(server, meta["Arn"])) == 1
    _assert_audit_verifies(server)


def test_deletion_due_after_a_crash_runs_exactly_once(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)
    meta = kms.create_key(Description="crash")["KeyMetadata"]
    keeper = kms.create_key(Description="keeper")["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
    assert clock.advance(6 * DAY) == 0

    server.stop(signal.SIGKILL)
    server.start()
    kms = server.client()
    # The clock kept its offset across the crash: the date is still a day ahead.
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert clock.advance(2 * DAY) >= 1
    assert _code(lambda: kms.describe_key(KeyId=meta["KeyId"])) == "NotFoundException"
    # Let the background loop tick a few times: it must find nothing left to do.
    time.sleep(2.5)
    assert clock.advance(1) == 0
    assert len(_delete_records(server, meta["Arn"])) == 1
    assert kms.describe_key(KeyId=keeper["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    assert _audit_records(server)  # the segment is readable JSON lines
    _assert_audit_verifies(server)


def _import_material(kms: Any, key_id: str, material: bytes) -> None:
    """GetParametersForImport, wrap ``material`` with RSAES-OAEP-SHA-256 to
    the public key it gives, ImportKeyMaterial."""
    params = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    kms.import_key_material(
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=public.encrypt(material, oaep),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    )


def test_deleting_an_imported_key_removes_material_and_import_tokens(
    fresh_server: Server,
) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)
    meta = kms.create_key(Origin="EXTERNAL", Description="imported")["KeyMetadata"]
    key_id = meta["KeyId"]
    _import_material(kms, key_id, uuid.uuid4().bytes * 2)
    # A second set of parameters, never used: its token is stored too.
    kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    blob = _encrypt(kms, key_id, b"imported")
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    stored = _stored_paths(server, key_id, [])
    assert f"key/{key_id}" in stored
    assert f"mat/{key_id}/{1:010d}" in stored
    assert len([p for p in stored if p.startswith(f"import/{key_id}/")]) == 2, stored

    assert clock.advance(7 * DAY + 60) >= 1
    assert _stored_paths(server, key_id, []) == [f"gone/{key_id}"]
    response = _error(lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT))
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == GONE_MESSAGE


# -- 4. no rotation while pending deletion --


def _rotations(kms: Any, key_id: str) -> list[dict[str, Any]]:
    return list(kms.list_key_rotations(KeyId=key_id)["Rotations"])


def test_pending_deletion_key_does_not_rotate(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)
    meta = kms.create_key(Description="rotating")["KeyMetadata"]
    key_id = meta["KeyId"]
    material = meta["CurrentKeyMaterialId"]
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is True
    next_rotation = status["NextRotationDate"]

    # 80 days on, schedule deletion for 30: the rotation date falls inside the window.
    assert clock.advance(80 * DAY) == 0
    assert _rotations(kms, key_id) == []
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=30)
    assert not _db_rows(server, "SELECT path FROM kv WHERE path LIKE ?", ("sched/%/rotate/%",))
    assert clock.advance(15 * DAY) == 0
    assert clock.now() > next_rotation
    assert _rotations(kms, key_id) == []
    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion"
    assert described["CurrentKeyMaterialId"] == material
    # AWS: "While a KMS key is pending deletion, its key rotation status is
    # false and AWS KMS does not rotate the key material."
    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is False, status
    assert "NextRotationDate" not in status

    # Saved: Disabled, and a disabled key does not rotate either; the
    # rotation setting itself comes back (AWS: "the original key rotation
    # status is restored").
    kms.cancel_key_deletion(KeyId=key_id)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    assert clock.advance(1 * DAY) == 0
    assert _rotations(kms, key_id) == []
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == material


# -- 5. GetKeyLastUsage --


def _last_usage(kms: Any, key_id: str) -> dict[str, Any]:
    return dict(kms.get_key_last_usage(KeyId=key_id).get("KeyLastUsage") or {})


def _assert_used_by(kms: Any, key_id: str, operation: str, request_id: str) -> dict[str, Any]:
    usage = _last_usage(kms, key_id)
    assert usage.get("Operation") == operation, usage
    assert usage.get("KmsRequestId") == request_id, usage
    assert usage.get("CloudTrailEventId"), usage
    return usage


def test_get_key_last_usage(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clock = LifecycleClock(server)
    meta = kms.create_key(Description="usage")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]

    fresh = kms.get_key_last_usage(KeyId=key_id)
    assert fresh["KeyId"] == arn
    assert fresh["KeyCreationDate"] == meta["CreationDate"]
    assert fresh["TrackingStartDate"] == fresh["KeyCreationDate"]
    assert not fresh.get("KeyLastUsage"), fresh.get("KeyLastUsage")

    # Encrypt, then Decrypt: the Decrypt is the last use.
    encrypted = kms.encrypt(KeyId=key_id, Plaintext=b"usage")
    _assert_used_by(kms, key_id, "Encrypt", encrypted["ResponseMetadata"]["RequestId"])
    before = clock.now()
    decrypted = kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])
    after = clock.now()
    decrypt_id = decrypted["ResponseMetadata"]["RequestId"]
    assert decrypt_id
    usage = _assert_used_by(kms, key_id, "Decrypt", decrypt_id)
    _assert_about(usage["Timestamp"], before, after)

    # Management calls and refused uses are not uses.
    kms.describe_key(KeyId=key_id)
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v"}])
    kms.disable_key(KeyId=key_id)
    _assert_refused(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x"), "DisabledException")
    _assert_used_by(kms, key_id, "Decrypt", decrypt_id)
    kms.enable_key(KeyId=key_id)

    # Written in the background about once a second: once it is in the
    # store, even a crash keeps it.
    _wait_for_row(server, f"usage/{key_id}")
    server.stop(signal.SIGKILL)
    server.start()
    kms = server.client()
    assert _assert_used_by(kms, key_id, "Decrypt", decrypt_id)["Timestamp"] == usage["Timestamp"]

    # A graceful stop writes what the last second used.
    second = kms.create_key(Description="usage, flushed at stop")["KeyMetadata"]["KeyId"]
    sealed = kms.encrypt(KeyId=second, Plaintext=b"flushed")
    server.restart()
    kms = server.client()
    _assert_used_by(kms, second, "Encrypt", sealed["ResponseMetadata"]["RequestId"])

    # ReEncrypt uses both keys.
    moved = kms.re_encrypt(CiphertextBlob=sealed["CiphertextBlob"], DestinationKeyId=key_id)
    reencrypt_id = moved["ResponseMetadata"]["RequestId"]
    _assert_used_by(kms, second, "ReEncrypt", reencrypt_id)
    _assert_used_by(kms, key_id, "ReEncrypt", reencrypt_id)

    # Every data-key operation counts too.
    out = kms.generate_data_key_without_plaintext(KeyId=second, KeySpec="AES_256")
    _assert_used_by(
        kms, second, "GenerateDataKeyWithoutPlaintext", out["ResponseMetadata"]["RequestId"]
    )
