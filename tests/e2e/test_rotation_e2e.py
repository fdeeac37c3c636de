"""Key rotation, end to end: automatic rotation driven by keycask's lifecycle
clock (moved with the --dev clock endpoint), on-demand rotation under load,
restarts and missed due dates, several worker processes, and the dev clock
endpoint itself.

Every test that moves the clock has a server of its own (``fresh_server`` or
its own ``Server``): the session-shared server's clock never moves.

Waiting for the background scheduler (a loop that runs every second in each
server process) is done by polling with a deadline. Where a test must show
that something does *not* happen, it uses a canary: a second key whose
rotation is overdue while it is disabled. Enabling it and waiting for its
rotation proves that a scheduler run started after that point and finished,
and that run would have acted on the key under test too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import DAY, DevCallError, Server, dev_call

T = TypeVar("T")

MATERIAL_ID = re.compile(r"[0-9a-f]{64}")
# Dates travel as epoch seconds with millisecond precision.
MS = timedelta(milliseconds=1)
POOL = 8  # clients for parallel encrypts and decrypts


# -- helpers ------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """A blob a client was given, and what it must decrypt to."""

    blob: bytes
    context: dict[str, str] | None  # None: sent without EncryptionContext
    plaintext: bytes

    def ctx(self, name: str = "EncryptionContext") -> dict[str, Any]:
        return {} if self.context is None else {name: self.context}


def blob_version(blob: bytes, key_id: str) -> int:
    """The key version a v1 ciphertext blob names (bytes 17..21, big-endian)."""
    assert blob[0] == 0x01, blob[:1]
    assert blob[1:17] == uuid.UUID(key_id).bytes
    (version,) = struct.unpack(">I", blob[17:21])
    return int(version)


def error_code(call: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def dev_error(server: Server, body: dict[str, Any], creds: tuple[str, str] | None = None) -> str:
    with pytest.raises(DevCallError) as caught:
        dev_call(server.endpoint, creds or server.credentials(), body)
    return str(caught.value.code)


def now_of(answer: dict[str, Any]) -> datetime:
    """The lifecycle time an advance of the dev clock answered with."""
    return datetime.fromisoformat(answer["Now"])


def rotations(kms: Any, key_id: str, **extra: Any) -> list[dict[str, Any]]:
    """Every ListKeyRotations entry, following NextMarker."""
    found: list[dict[str, Any]] = []
    marker: dict[str, str] = {}
    while True:
        page = kms.list_key_rotations(KeyId=key_id, **marker, **extra)
        found.extend(page["Rotations"])
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return found
        marker = {"Marker": page["NextMarker"]}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``probe`` until it answers something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def overdue_canary(kms: Any) -> str:
    """A key whose 90-day rotation will be overdue after the next advance of
    the clock, disabled so that it waits. See ``scheduler_ran``."""
    key = kms.create_key(Description="scheduler canary")["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    kms.disable_key(KeyId=key)
    return str(key)


def scheduler_ran(kms: Any, canary: str) -> None:
    """Enable an overdue canary and wait until the background scheduler has
    rotated it: a scheduler run that started after this call has finished."""
    assert rotations(kms, canary) == []
    kms.enable_key(KeyId=canary)
    wait_for("the scheduler to rotate the canary", lambda: rotations(kms, canary))
    assert len(rotations(kms, canary)) == 1


def in_parallel(
    clients: Sequence[Any], items: Sequence[T], work: Callable[[Any, T], Any]
) -> list[Any]:
    """``work(client, item)`` for every item, spread over ``clients`` (one
    thread each); results in the order of ``items``."""
    n = len(clients)

    def run(slot: int) -> list[Any]:
        return [work(clients[slot], item) for item in items[slot::n]]

    with ThreadPoolExecutor(n) as pool:
        chunks = list(pool.map(run, range(n)))
    out: list[Any] = [None] * len(items)
    for slot, chunk in enumerate(chunks):
        for j, result in enumerate(chunk):
            out[slot + j * n] = result
    return out


def check_decrypts(clients: Sequence[Any], key_arn: str, sealed: Sequence[Sealed]) -> None:
    def decrypt(client: Any, item: Sealed) -> None:
        out = client.decrypt(CiphertextBlob=item.blob, **item.ctx())
        assert out["Plaintext"] == item.plaintext
        assert out["KeyId"] == key_arn

    in_parallel(clients, sealed, decrypt)


def seal_batch(
    clients: Sequence[Any], key_id: str, tag: str, count: int
) -> tuple[list[Sealed], set[int]]:
    """``count`` ciphertexts under ``key_id``: Encrypt and GenerateDataKey,
    with no, small, repeated and non-ASCII encryption contexts and plaintexts
    of many sizes. Returns them and the versions their blobs name."""

    def make(client: Any, i: int) -> tuple[Sealed, int]:
        context: dict[str, str] | None
        if i % 10 == 0:
            context = None
        elif i % 10 == 1:
            context = {"shared": "context"}
        elif i % 10 == 2:
            context = {"ünïcødé": f"välue-{tag}-{i}", "a": ""}
        else:
            context = {"batch": tag, "item": str(i), "tenant": f"tenant-{i % 7}"}
        kwargs: dict[str, Any] = {} if context is None else {"EncryptionContext": context}
        if i % 5 == 4:
            spec: dict[str, Any] = (
                {"KeySpec": "AES_256"} if i % 2 else {"NumberOfBytes": 1 + (i * 13) % 1024}
            )
            out = client.generate_data_key(KeyId=key_id, **spec, **kwargs)
            plaintext = out["Plaintext"]
        else:
            plaintext = os.urandom(1 + (i * 97 + len(tag) * 31) % 4096)
            out = client.encrypt(KeyId=key_id, Plaintext=plaintext, **kwargs)
        blob = out["CiphertextBlob"]
        return Sealed(blob, context, plaintext), blob_version(blob, key_id)

    made = in_parallel(clients, list(range(count)), make)
    return [s for s, _ in made], {v for _, v in made}


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", workers=2).start()
    yield srv
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


def audit_records(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records.extend(json.loads(line) for line in segment.read_text().splitlines())
    return records


# -- 1. the headline: 90-day rotation, and ten years of it --------------------

YEARS_OF_ADVANCES = 41  # 41 x 91 days = 10.2 years
PER_VERSION = 100


def test_automatic_rotation_every_90_days_for_ten_years(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    clients = [server.client() for _ in range(POOL)]
    meta = kms.create_key(Description="rotates every 90 days")["KeyMetadata"]
    key, arn = meta["KeyId"], meta["Arn"]
    original = meta["CurrentKeyMaterialId"]
    assert MATERIAL_ID.fullmatch(original)
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 90

    batch, versions = seal_batch(clients, key, "v-initial", PER_VERSION)
    assert len(versions) == 1
    (first_version,) = versions
    sealed = list(batch)
    assert rotations(kms, key) == []

    # -- the headline: 91 days later, one automatic rotation --
    before = meta["CreationDate"]
    answer = server.advance_clock(91 * DAY)
    now = now_of(answer)
    assert answer["JobsRun"] == 1
    listed = rotations(kms, key)
    assert len(listed) == 1
    (entry,) = listed
    assert entry["KeyId"] == arn
    assert entry["RotationType"] == "AUTOMATIC"
    assert entry["KeyMaterialState"] == "CURRENT"
    assert MATERIAL_ID.fullmatch(entry["KeyMaterialId"])
    assert entry["KeyMaterialId"] != original
    assert before + timedelta(days=91) - MS <= entry["RotationDate"] <= now + MS
    assert (
        kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
        == (entry["KeyMaterialId"])
    )
    batch, versions = seal_batch(clients, key, "v-1", PER_VERSION)
    assert len(versions) == 1
    (version,) = versions
    assert version > first_version
    check_decrypts(clients, arn, sealed)  # the old ones still decrypt
    sealed += batch
    material_ids = [entry["KeyMaterialId"]]
    version_history = [first_version, version]
    old = {first_version: sealed[:PER_VERSION]}

    # -- and on for ten years, a rotation every 91 days --
    for n in range(2, YEARS_OF_ADVANCES + 1):
        before = now
        answer = server.advance_clock(91 * DAY)
        now = now_of(answer)
        assert answer["JobsRun"] == 1, (n, answer)
        listed = rotations(kms, key)
        assert len(listed) == n
        newest = listed[-1]
        assert newest["RotationType"] == "AUTOMATIC"
        assert newest["KeyMaterialState"] == "CURRENT"
        assert listed[-2]["KeyMaterialState"] == "NON_CURRENT"
        assert MATERIAL_ID.fullmatch(newest["KeyMaterialId"])
        assert newest["KeyMaterialId"] not in {original, *material_ids}
        assert before + timedelta(days=91) - MS <= newest["RotationDate"] <= now + MS
        material_ids.append(newest["KeyMaterialId"])

        batch, versions = seal_batch(clients, key, f"v-{n}", PER_VERSION)
        assert len(versions) == 1, versions
        (version,) = versions
        assert version > version_history[-1]
        version_history.append(version)
        old[version] = batch
        # A sample of the previous version's ciphertexts, right after it stopped being current.
        check_decrypts(clients[:1], arn, sealed[-5:])
        sealed += batch

    assert len(version_history) == YEARS_OF_ADVANCES + 1
    assert len(sealed) == PER_VERSION * (YEARS_OF_ADVANCES + 1)
    assert now - meta["CreationDate"] >= timedelta(days=3650)

    # Every ciphertext of every version still decrypts to its plaintext.
    check_decrypts(clients, arn, sealed)

    # ReEncrypt of old ciphertexts names the current version and keeps the plaintext.
    current = version_history[-1]
    for item in (sealed[0], sealed[PER_VERSION * 20 + 3], sealed[-PER_VERSION - 1]):
        out = kms.re_encrypt(
            CiphertextBlob=item.blob,
            DestinationKeyId=key,
            **item.ctx("SourceEncryptionContext"),
            **item.ctx("DestinationEncryptionContext"),
        )
        assert out["SourceKeyId"] == arn
        assert out["KeyId"] == arn
        assert blob_version(out["CiphertextBlob"], key) == current
        again = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], **item.ctx())
        assert again["Plaintext"] == item.plaintext

    # Every rotation is listed once, in order, across pages of seven.
    pages = []
    marker: dict[str, str] = {}
    while True:
        page = kms.list_key_rotations(KeyId=key, Limit=7, **marker)
        assert len(page["Rotations"]) <= 7
        pages.append(page["Rotations"])
        if not page["Truncated"]:
            break
        assert len(page["Rotations"]) == 7
        marker = {"Marker": page["NextMarker"]}
    assert len(pages) == -(-YEARS_OF_ADVANCES // 7)
    listed = [entry for page in pages for entry in page]
    assert [e["KeyMaterialId"] for e in listed] == material_ids
    assert {e["RotationType"] for e in listed} == {"AUTOMATIC"}
    assert [e["KeyMaterialState"] for e in listed] == ["NON_CURRENT"] * (YEARS_OF_ADVANCES - 1) + [
        "CURRENT"
    ]
    dates = [e["RotationDate"] for e in listed]
    assert all(a + timedelta(days=90) < b for a, b in pairwise(dates))
    # With the first material too, when asked for all of it.
    everything = rotations(kms, key, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    assert [e["KeyMaterialId"] for e in everything] == [original, *material_ids]


# -- 2. GetKeyRotationStatus, EnableKeyRotation, DisableKeyRotation -----------


def _unvalidated_client(server: Server) -> Any:
    """boto3 refuses an out-of-range RotationPeriodInDays before sending it;
    this client lets the server judge."""
    akid, secret = server.credentials()
    return boto3.client(
        "kms",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


def test_rotation_status_periods_and_disabling(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()

    # Off by default.
    meta = kms.create_key()["KeyMetadata"]
    key = meta["KeyId"]
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is False
    assert status["KeyId"] == meta["Arn"]
    assert "NextRotationDate" not in status
    assert "RotationPeriodInDays" not in status

    # The default period is 365 days, counted on keycask's lifecycle clock.
    kms.enable_key_rotation(KeyId=key)
    status = kms.get_key_rotation_status(KeyId=key)
    after = now_of(server.advance_clock(1))  # lifecycle time, one second past the enable
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    year = timedelta(days=365)
    assert meta["CreationDate"] + year - MS <= status["NextRotationDate"]
    assert status["NextRotationDate"] <= after - timedelta(seconds=1) + year + MS

    # Periods outside 90..2560 days are refused, and change nothing.
    raw = _unvalidated_client(server)
    for days in (89, 2561, 0, -1):
        code = error_code(raw.enable_key_rotation, KeyId=key, RotationPeriodInDays=days)
        assert code == "ValidationException", days
    unchanged = kms.get_key_rotation_status(KeyId=key)
    assert unchanged["RotationPeriodInDays"] == 365
    assert unchanged["NextRotationDate"] == status["NextRotationDate"]
    # The bounds themselves are accepted.
    bounds = kms.create_key()["KeyMetadata"]["KeyId"]
    for days in (90, 2560):
        kms.enable_key_rotation(KeyId=bounds, RotationPeriodInDays=days)
        assert kms.get_key_rotation_status(KeyId=bounds)["RotationPeriodInDays"] == days

    # Disabled rotation: no date, and no rotation when the old date passes.
    off = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=off, RotationPeriodInDays=90)
    assert kms.get_key_rotation_status(KeyId=off)["KeyRotationEnabled"] is True
    kms.disable_key_rotation(KeyId=off)
    status = kms.get_key_rotation_status(KeyId=off)
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    assert "RotationPeriodInDays" not in status
    answer = server.advance_clock(400 * DAY)
    assert rotations(kms, off) == []
    assert rotations(kms, off, IncludeKeyMaterial="ALL_KEY_MATERIAL")[0]["KeyMaterialState"] == (
        "CURRENT"
    )
    # The same advance did rotate the 365-day key, once (the 2560-day one is not due).
    assert answer["JobsRun"] == 1
    assert [e["RotationType"] for e in rotations(kms, key)] == ["AUTOMATIC"]
    assert rotations(kms, bounds) == []

    # Rotation settings change only on an enabled key.
    disabled = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=disabled)
    assert error_code(kms.enable_key_rotation, KeyId=disabled) == "DisabledException"
    code = error_code(kms.enable_key_rotation, KeyId=disabled, RotationPeriodInDays=90)
    assert code == "DisabledException"
    assert kms.get_key_rotation_status(KeyId=disabled)["KeyRotationEnabled"] is False


# -- 3. a disabled key waits, and catches up once -----------------------------


def test_disabled_key_does_not_rotate_and_catches_up_once_when_enabled(
    fresh_server: Server,
) -> None:
    server = fresh_server
    kms = server.client()
    meta = kms.create_key(Description="disabled past its rotation date")["KeyMetadata"]
    key, arn = meta["KeyId"], meta["Arn"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    blob = kms.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
    assert blob_version(blob, key) == 1
    kms.disable_key(KeyId=key)
    canaries = [overdue_canary(kms) for _ in range(2)]

    # More than two periods pass while the key is disabled.
    answer = server.advance_clock(200 * DAY)
    assert answer["JobsRun"] == 0
    assert rotations(kms, key) == []
    scheduler_ran(kms, canaries[0])  # the background scheduler ran after that, too
    assert rotations(kms, key) == []
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x") == "DisabledException"

    # Enabled again: the next scheduler run rotates it, once.
    kms.enable_key(KeyId=key)
    listed = wait_for("the overdue rotation", lambda: rotations(kms, key))
    assert len(listed) == 1
    assert listed[0]["RotationType"] == "AUTOMATIC"
    assert listed[0]["RotationDate"] >= now_of(answer) - MS  # after the missed dates, not at them
    scheduler_ran(kms, canaries[1])  # and later runs leave it alone
    listed = rotations(kms, key)
    assert len(listed) == 1, listed
    status = kms.get_key_rotation_status(KeyId=key)
    rotated = listed[0]["RotationDate"]
    assert rotated < status["NextRotationDate"] <= rotated + timedelta(days=90) + MS

    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
    out = kms.encrypt(KeyId=key, Plaintext=b"after")
    assert out["KeyId"] == arn
    assert blob_version(out["CiphertextBlob"], key) == 2


# -- 4. on-demand rotation under concurrent load -------------------------------

LOAD_THREADS = 8
ON_DEMAND = 10


def test_rotate_on_demand_under_concurrent_encrypt_load(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    meta = kms.create_key(Description="rotated under load")["KeyMetadata"]
    key, arn = meta["KeyId"], meta["Arn"]
    kms.enable_key_rotation(KeyId=key)
    schedule = kms.get_key_rotation_status(KeyId=key)

    clients = [server.client() for _ in range(LOAD_THREADS)]
    sealed: list[list[tuple[Sealed, int]]] = [[] for _ in range(LOAD_THREADS)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def load(slot: int) -> None:
        client, n = clients[slot], 0
        try:
            while not stop.is_set():
                context = {"thread": str(slot), "n": str(n)}
                plaintext = f"thread {slot} message {n}".encode() * (1 + n % 5)
                out = client.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext=context)
                assert out["KeyId"] == arn
                blob = out["CiphertextBlob"]
                sealed[slot].append((Sealed(blob, context, plaintext), blob_version(blob, key)))
                n += 1
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    def counts() -> list[int]:
        return [len(s) for s in sealed]

    def every_thread_encrypted_twice_since(mark: list[int]) -> bool:
        # A thread's second encrypt after the mark started after the mark.
        if errors:
            raise AssertionError(f"an encrypt failed: {errors[0]!r}")
        return all(now >= then + 2 for now, then in zip(counts(), mark, strict=True))

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    answers = []
    try:
        wait_for("load", lambda: every_thread_encrypted_twice_since([0] * LOAD_THREADS), 30)
        for _ in range(ON_DEMAND):
            answers.append(kms.rotate_key_on_demand(KeyId=key))
            mark = counts()
            wait_for("encrypts after it", partial(every_thread_encrypted_twice_since, mark), 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert all(a["KeyId"] == arn for a in answers)

    # Each client saw the versions in order, and every rotation was used at once.
    seen: set[int] = set()
    for mine in sealed:
        versions = [v for _, v in mine]
        assert versions == sorted(versions)
        seen.update(versions)
    assert seen == set(range(1, ON_DEMAND + 2))

    everything = [s for mine in sealed for s, _ in mine]
    check_decrypts(clients, arn, everything)

    listed = rotations(kms, key)
    assert [e["RotationType"] for e in listed] == ["ON_DEMAND"] * ON_DEMAND
    assert len({e["KeyMaterialId"] for e in listed}) == ON_DEMAND
    assert [e["KeyMaterialState"] for e in listed][-1] == "CURRENT"
    # On-demand rotations leave the automatic schedule alone.
    after = kms.get_key_rotation_status(KeyId=key)
    assert after["KeyRotationEnabled"] is True
    assert after["RotationPeriodInDays"] == schedule["RotationPeriodInDays"] == 365
    assert after["NextRotationDate"] == schedule["NextRotationDate"]


# -- 5. the on-demand limit ----------------------------------------------------


def test_on_demand_rotation_limit(kms: Any) -> None:
    meta = kms.create_key(Description="25 on-demand rotations")["KeyMetadata"]
    key, arn = meta["KeyId"], meta["Arn"]
    sealed: list[tuple[Sealed, int]] = []

    def seal(n: int) -> None:
        context = {"rotation": str(n)}
        plaintext = f"made after {n} rotations".encode()
        out = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext=context)
        sealed.append((Sealed(out["CiphertextBlob"], context, plaintext), n))

    seal(0)
    for n in range(1, 26):
        assert kms.rotate_key_on_demand(KeyId=key)["KeyId"] == arn
        seal(n)
    current = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "LimitExceededException"
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "LimitExceededException"

    assert kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"] == current
    versions = [blob_version(s.blob, key) for s, _ in sealed]
    assert versions == sorted(set(versions)) and len(versions) == 26
    for item, _ in sealed:
        out = kms.decrypt(CiphertextBlob=item.blob, EncryptionContext=item.context)
        assert out["Plaintext"] == item.plaintext
    listed = rotations(kms, key)
    assert [e["RotationType"] for e in listed] == ["ON_DEMAND"] * 25
    assert listed[-1]["KeyMaterialId"] == current
    # The key still works, on its last version.
    out = kms.encrypt(KeyId=key, Plaintext=b"still here")
    assert blob_version(out["CiphertextBlob"], key) == versions[-1]


# -- 6. restarts and missed due dates -------------------------------------------


def test_restart_in_the_middle_of_a_rotation_period(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    meta = kms.create_key()["KeyMetadata"]
    key = meta["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]

    assert server.advance_clock(45 * DAY)["JobsRun"] == 0
    assert rotations(kms, key) == []
    status = kms.get_key_rotation_status(KeyId=key)
    server.restart()
    kms = server.client()
    again = kms.get_key_rotation_status(KeyId=key)
    for field in ("KeyRotationEnabled", "RotationPeriodInDays", "NextRotationDate"):
        assert again[field] == status[field], field  # the restart kept the schedule
    assert rotations(kms, key) == []

    answer = server.advance_clock(46 * DAY)
    assert answer["OffsetSeconds"] == 91 * DAY  # the clock kept its offset over the restart
    assert answer["JobsRun"] == 1
    listed = rotations(kms, key)
    assert [e["RotationType"] for e in listed] == ["AUTOMATIC"]
    assert status["NextRotationDate"] <= listed[0]["RotationDate"] <= now_of(answer) + MS
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    new = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert blob_version(new, key) == 2


def test_missed_due_date_after_a_crash_rotates_once(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]

    assert server.advance_clock(89 * DAY)["JobsRun"] == 0
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    server.start()
    kms = server.client()

    # Four periods and more pass: one rotation, not four.
    answer = server.advance_clock(400 * DAY)
    assert answer["JobsRun"] == 1
    listed = rotations(kms, key)
    assert [e["RotationType"] for e in listed] == ["AUTOMATIC"]
    rotated = listed[0]["RotationDate"]
    assert rotated <= now_of(answer) + MS
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["NextRotationDate"] > now_of(answer)

    # The next date is a period after that rotation.
    answer = server.advance_clock(89 * DAY)
    assert answer["JobsRun"] == 0
    assert len(rotations(kms, key)) == 1
    answer = server.advance_clock(2 * DAY)
    assert answer["JobsRun"] == 1
    listed = rotations(kms, key)
    assert [e["RotationType"] for e in listed] == ["AUTOMATIC", "AUTOMATIC"]
    assert listed[1]["RotationDate"] - rotated >= timedelta(days=90)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


# -- 7. several worker processes ------------------------------------------------

WORKER_KEYS = 20


def _use_both_workers(server: Server, use: Callable[[Any], object]) -> None:
    """New connections, each used once, until both workers have answered one
    (which worker accepts a connection is the kernel's choice)."""
    audit = server.data_dir / "audit"

    def sizes() -> list[int]:
        paths = [audit / f"server-{slot}.jsonl" for slot in (0, 1)]
        return [p.stat().st_size if p.exists() else 0 for p in paths]

    before = sizes()
    for _ in range(300):
        use(server.client())
        if all(now > then for now, then in zip(sizes(), before, strict=True)):
            return
    raise AssertionError("the kernel never gave a connection to both workers")


def _rotate_keys_once_with_two_workers(server: Server, keys: list[str]) -> None:
    """Let both workers' schedulers tick several times, then check that every
    key rotated exactly once."""
    kms = server.client()
    wait_for(
        "every key to rotate",
        lambda: all(rotations(kms, k) for k in keys),
        timeout=20,
    )
    end = time.monotonic() + 3  # a few ticks of each worker's scheduler
    while time.monotonic() < end:
        for k in keys:
            assert len(rotations(kms, k)) <= 1, k
        time.sleep(0.2)
    for k in keys:
        assert [e["RotationType"] for e in rotations(kms, k)] == ["AUTOMATIC"], k


def _rotate_key_records(server: Server) -> list[dict[str, Any]]:
    return [r for r in audit_records(server) if r["operation"] == "RotateKey"]


def test_two_workers_rotate_each_key_once(two_workers: Server) -> None:
    server = two_workers
    kms = server.client()
    keys, arns = [], []
    for n in range(WORKER_KEYS):
        meta = kms.create_key(Description=f"worker key {n}")["KeyMetadata"]
        kms.enable_key_rotation(KeyId=meta["KeyId"], RotationPeriodInDays=90)
        keys.append(meta["KeyId"])
        arns.append(meta["Arn"])

    answer = server.advance_clock(91 * DAY)
    assert 0 <= answer["JobsRun"] <= WORKER_KEYS
    # Both workers serve after the advance, so both know the new time.
    _use_both_workers(server, lambda c: c.list_key_rotations(KeyId=keys[0]))
    _rotate_keys_once_with_two_workers(server, keys)

    verified = server.cli("audit", "verify")
    assert verified.stdout.startswith("ok:"), verified.stdout
    records = _rotate_key_records(server)
    assert len(records) == WORKER_KEYS
    assert Counter(r["key_arn"] for r in records) == Counter(arns)
    assert {r["principal"] for r in records} == {"keycask"}
    assert {r["outcome"] for r in records} == {"success"}


def test_keys_coming_due_between_ticks_rotate_once_with_two_workers(
    two_workers: Server,
) -> None:
    """The due dates pass while nobody asks: the background schedulers of both
    workers (not the advance of the clock) find the keys, at the same moments."""
    server = two_workers
    kms = server.client()
    keys, arns = [], []
    for n in range(WORKER_KEYS):
        meta = kms.create_key(Description=f"worker key {n}")["KeyMetadata"]
        kms.enable_key_rotation(KeyId=meta["KeyId"], RotationPeriodInDays=90)
        keys.append(meta["KeyId"])
        arns.append(meta["Arn"])
    first_due = kms.get_key_rotation_status(KeyId=keys[0])["NextRotationDate"]

    # Just short of due: the keys come due a few seconds from now.
    answer = server.advance_clock(90 * DAY - 5)
    assert answer["JobsRun"] == 0
    assert now_of(answer) < first_due
    _use_both_workers(server, lambda c: c.list_key_rotations(KeyId=keys[0]))
    _rotate_keys_once_with_two_workers(server, keys)

    records = _rotate_key_records(server)
    assert len(records) == WORKER_KEYS
    assert Counter(r["key_arn"] for r in records) == Counter(arns)
    verified = server.cli("audit", "verify")
    assert verified.stdout.startswith("ok:"), verified.stdout


# -- 8. the dev clock endpoint ---------------------------------------------------

CENTURY = 100 * 366 * 86400


def test_dev_clock_refuses_bad_input_and_non_admins(fresh_server: Server) -> None:
    server = fresh_server
    for body in (
        {"Seconds": 0},
        {"Seconds": -1},
        {"Seconds": -0.5},
        {"Seconds": "86400"},
        {"Seconds": True},
        {"Seconds": None},
        {"Seconds": CENTURY + 1},
        {},
        {"Seconds": 1, "Extra": 1},
    ):
        assert dev_error(server, body) == "ValidationException", body

    user = json.loads(server.cli("principals", "create", "clock-user", "--json").stdout)
    creds = (user["AccessKeyId"], user["SecretAccessKey"])
    assert dev_error(server, {"Seconds": 60}, creds) == "AccessDeniedException"
    # Its credentials are good: KMS calls are refused by policy too, not unrecognized.
    assert error_code(server.client(creds).list_keys) == "AccessDeniedException"

    # Nothing above moved the clock: the CLI's day is the first.
    done = server.cli("dev", "advance-clock", "1d")
    match = re.fullmatch(
        r"keycask time is now (\S+), 1d \((\d+) s\) ahead of the wall clock; "
        r"(\d+) lifecycle job\(s\) ran\n",
        done.stdout,
    )
    assert match, done.stdout
    printed = datetime.fromisoformat(match[1])
    assert int(match[2]) == DAY
    after = now_of(server.advance_clock(1))
    assert printed + timedelta(seconds=1) <= after <= printed + timedelta(seconds=61)
    # Up to the century, and not beyond it.
    assert dev_error(server, {"Seconds": CENTURY - DAY}) == "ValidationException"
    assert server.advance_clock(CENTURY - DAY - 1)["OffsetSeconds"] == CENTURY

    bogus = server.cli("dev", "advance-clock", "bogus", check=False)
    assert bogus.returncode != 0
    assert "duration" in bogus.stderr
