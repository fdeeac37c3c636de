"""GET /metrics on a real server, read as Prometheus reads it
(prometheus_client's parser): the counters of a boto3 session move, a
denied call, a bad signature and a sealed server each move their own
series, --metrics-listen serves a port of its own, and two worker
processes answer one view."""

from __future__ import annotations

import json
import signal
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from production import Production
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Server, dev_call, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str, context: ssl.SSLContext | None = None) -> Samples:
    with urllib.request.urlopen(base + "/metrics", timeout=10, context=context) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, operation: str, outcome: str = "success", code: str = "") -> float:
    return value(
        samples,
        "keycask_requests_total",
        door="kms",
        operation=operation,
        outcome=outcome,
        error_code=code,
    )


def _error(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def test_a_boto3_session_moves_its_counters(server: Server) -> None:
    kms = server.client()
    before = scrape(server.endpoint)
    key = kms.create_key(Description="metrics")["KeyMetadata"]["KeyId"]
    for _ in range(3):
        blob = kms.encrypt(KeyId=key, Plaintext=b"counted")["CiphertextBlob"]
    kms.decrypt(CiphertextBlob=blob)
    kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert _error(kms.describe_key, KeyId=str(uuid.uuid4())) == "NotFoundException"

    name = f"nobody-{uuid.uuid4().hex[:8]}"
    made = json.loads(server.cli("principals", "create", name, "--json").stdout)
    nobody = server.client((made["AccessKeyId"], made["SecretAccessKey"]))
    assert _error(nobody.encrypt, KeyId=key, Plaintext=b"x") == "AccessDeniedException"
    forged = server.client((made["AccessKeyId"], "not" + made["SecretAccessKey"][3:]))
    assert _error(forged.encrypt, KeyId=key, Plaintext=b"x") == "InvalidSignatureException"
    after = scrape(server.endpoint)

    assert requests(after, "Encrypt") - requests(before, "Encrypt") == 3
    assert requests(after, "CreateKey") - requests(before, "CreateKey") == 1
    assert requests(after, "Decrypt") - requests(before, "Decrypt") == 1
    assert requests(after, "GenerateDataKey") - requests(before, "GenerateDataKey") == 1
    not_found = ("DescribeKey", "error", "NotFoundException")
    assert requests(after, *not_found) - requests(before, *not_found) == 1
    # Durations are by door and operation, whatever the outcome: 3 + denied + forged.
    duration = "keycask_request_duration_seconds_count"
    encrypts = value(after, duration, door="kms", operation="Encrypt")
    assert encrypts - value(before, duration, door="kms", operation="Encrypt") == 5

    denied = value(after, "keycask_authz_denied_total", operation="Encrypt")
    assert denied - value(before, "keycask_authz_denied_total", operation="Encrypt") == 1
    bad = value(after, "keycask_auth_failures_total", reason="bad_signature")
    assert bad - value(before, "keycask_auth_failures_total", reason="bad_signature") == 1

    assert (
        value(after, "keycask_audit_records_total")
        >= value(before, "keycask_audit_records_total") + 9
    )
    assert value(after, "keycask_audit_fsync_seconds_count") > 0
    assert value(after, "keycask_audit_batch_size_count") > 0
    assert value(after, "keycask_cache_hits_total", cache="key") > 0
    assert value(after, "keycask_cache_hits_total", cache="access_key") > 0
    assert value(after, "keycask_keys", state="Enabled", key_spec="SYMMETRIC_DEFAULT") >= 1
    assert value(after, "keycask_sealed") == 0
    assert value(after, "keycask_seal_info", type="dev") == 1
    assert value(after, "keycask_build_info", version="0.1.0") == 1
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_open_fds") > 0
    # Bounded labels: nothing names a key or a principal.
    text = json.dumps([sorted(labels) for _, labels in after])
    assert key not in text and name not in text


def test_a_sealed_server_says_so(fresh_server: Server) -> None:
    assert value(scrape(fresh_server.endpoint), "keycask_sealed") == 0
    dev_call(fresh_server.endpoint, fresh_server.credentials(), {}, target="KeycaskOperator.Seal")
    sealed = scrape(fresh_server.endpoint)
    assert value(sealed, "keycask_sealed") == 1
    # Nothing behind the barrier is read while sealed: no key counts.
    assert not any(name == "keycask_keys" for name, _ in sealed)
    # A KMS call is refused, and counted, while sealed.
    kms = fresh_server.client()
    assert _error(kms.list_keys) == "KMSInvalidStateException"
    after = scrape(fresh_server.endpoint)
    refused = ("ListKeys", "error", "KMSInvalidStateException")
    assert requests(after, *refused) - requests(sealed, *refused) == 1


@pytest.fixture
def metrics_port_server(tmp_path: Path) -> Iterator[tuple[Server, int]]:
    port = free_port()
    srv = Server(tmp_path / "data", args=("--metrics-listen", f"127.0.0.1:{port}")).start()
    yield srv, port
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


def test_metrics_listen_serves_metrics_and_nothing_else(
    metrics_port_server: tuple[Server, int],
) -> None:
    srv, port = metrics_port_server
    srv.client().list_keys()
    samples = scrape(f"http://127.0.0.1:{port}")
    assert requests(samples, "ListKeys") >= 1
    for path, data in (("/", b"{}"), ("/healthz", None)):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", data=data, timeout=5)
        assert caught.value.code == 404


def test_workers_answer_one_view(workers: Server) -> None:
    key = workers.client().create_key()["KeyMetadata"]["KeyId"]
    base = requests(scrape(workers.endpoint), "Encrypt")
    # A client per call: a new connection each, spread over both workers.
    for _ in range(12):
        workers.client().encrypt(KeyId=key, Plaintext=b"w")
    metrics_dir = workers.data_dir / "run" / "metrics"
    pids = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, pids
    # Whichever worker answers the scrape, it sums both: a worker copies its
    # counts into its file at every scrape it answers and once a second.
    deadline = time.monotonic() + 5
    while requests(scrape(workers.endpoint), "Encrypt") - base < 12:
        assert time.monotonic() < deadline, "the workers' counts never added up"
        time.sleep(0.2)
    for _ in range(6):
        samples = scrape(workers.endpoint)
        assert requests(samples, "Encrypt") - base == 12
        assert requests(samples, "CreateKey") == 1
        assert value(samples, "process_resident_memory_bytes") > 0


def test_scheduled_jobs_are_counted(fresh_server: Server) -> None:
    kms = fresh_server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    doomed = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    before = scrape(fresh_server.endpoint)
    assert value(before, "keycask_keys", state="PendingDeletion", key_spec="SYMMETRIC_DEFAULT") == 1
    assert fresh_server.advance_clock(91 * 86400)["JobsRun"] == 2
    after = scrape(fresh_server.endpoint)
    for job in ("rotation", "deletion"):
        moved = value(after, "keycask_jobs_total", job=job, outcome="success")
        assert moved - value(before, "keycask_jobs_total", job=job, outcome="success") == 1
    assert value(after, "keycask_keys", state="Enabled", key_spec="SYMMETRIC_DEFAULT") == 1
    assert value(after, "keycask_keys", state="PendingDeletion", key_spec="SYMMETRIC_DEFAULT") == 0


def test_a_production_server_sealed_then_unsealed(tmp_path: Path) -> None:
    port = free_port()
    prod = Production(tmp_path / "data")
    prod.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    prod.start("--metrics-listen", f"127.0.0.1:{port}")
    try:
        tls = ssl.create_default_context(cafile=str(prod.cert)) if prod.tls else None
        for base, context in ((prod.endpoint, tls), (f"http://127.0.0.1:{port}", None)):
            sealed = scrape(base, context)
            assert value(sealed, "keycask_sealed") == 1
            assert value(sealed, "keycask_seal_info", type="shamir") == 1
        for share in prod.shares[:2]:
            prod.unseal(share)
        prod.client().create_key()
        unsealed = scrape(f"http://127.0.0.1:{port}")
        assert value(unsealed, "keycask_sealed") == 0
        assert value(unsealed, "keycask_keys", state="Enabled", key_spec="SYMMETRIC_DEFAULT") == 1
        operator = ("KeycaskOperator.Unseal", "success", "")
        assert (
            value(
                unsealed,
                "keycask_requests_total",
                door="operator",
                operation=operator[0],
                outcome=operator[1],
                error_code=operator[2],
            )
            == 2
        )
    finally:
        prod.stop()
