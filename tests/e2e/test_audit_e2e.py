"""The audit log, end to end: one record per request, a chain that exposes
edits, and fail-closed behaviour when the log cannot be written."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import resource
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawKMS, b64, send

from keycask.audit.chain import chain_form

SECRET = b"audit must never see this plaintext"
CONTEXT = {"run": "audit-e2e"}


def _audit_file(server: Any) -> Path:
    return Path(server.data_dir) / "audit" / "server.jsonl"


def _records(server: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _audit_file(server).read_text().splitlines()]


def _request_id(response: dict[str, Any]) -> str:
    request_id = response["ResponseMetadata"].get("RequestId")
    assert request_id, response["ResponseMetadata"]
    return str(request_id)


def _client_error(call: Any, **kwargs: Any) -> tuple[str, str]:
    """Run a boto3 call that must fail; return (error code, request id)."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["Error"]["Code"], _request_id(response)


def _own_aliases(kms: Any) -> list[dict[str, Any]]:
    """The account's aliases but the predefined alias/aws/<service> ones
    (listed in every account, as AWS lists them)."""
    pages = kms.get_paginator("list_aliases").paginate()
    aliases = [a for page in pages for a in page["Aliases"]]
    return [a for a in aliases if not a["AliasName"].startswith("alias/aws/")]


def _principal(server: Any, name: str, *extra: str) -> dict[str, str]:
    created: dict[str, str] = json.loads(
        server.cli("principals", "create", name, "--json", *extra).stdout
    )
    return created


def _verify(server: Any) -> tuple[int, str]:
    result = server.cli("audit", "verify", check=False)
    return result.returncode, result.stdout + result.stderr


# -- (a) one record per request --


def test_every_request_leaves_exactly_one_record(fresh_server: Any) -> None:
    server = fresh_server
    admin_akid, admin_secret = server.credentials()
    admin = server.client()
    key = admin.create_key(Description="audit")["KeyMetadata"]
    key_id, key_arn = key["KeyId"], key["Arn"]
    blob = admin.encrypt(KeyId=key_id, Plaintext=SECRET, EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    # The --dev admin that writes the credentials file.
    admin_arn = f"arn:aws:iam::{key['AWSAccountId']}:user/admin"
    bob = _principal(server, "bob")
    bob_client = server.client((bob["AccessKeyId"], bob["SecretAccessKey"]))
    stranger = server.client(("AKKC" + "Z" * 16, "x" * 40))
    wrong_secret = server.client((admin_akid, admin_secret[::-1]))
    raw = RawKMS(server.endpoint, (admin_akid, admin_secret))
    before = len(_records(server))

    expected: dict[str, dict[str, Any]] = {}
    kinds: Counter[str] = Counter()

    def expect(request_id: str, kind: str, **fields: Any) -> None:
        assert request_id not in expected, "request ids must be unique"
        expected[request_id] = {"kind": kind, **fields}
        kinds[kind] += 1

    # What each kind of request must leave in its record.
    as_admin = {"principal": admin_arn, "access_key_id": admin_akid}
    allowed = {**as_admin, "decision": "allow", "outcome": "success", "error_code": None,
               "key_arn": key_arn}  # fmt: skip
    denied = {"principal": bob["Arn"], "access_key_id": bob["AccessKeyId"], "key_arn": key_arn,
              "decision": "deny", "outcome": "error",
              "error_code": "AccessDeniedException"}  # fmt: skip
    nobody = {"principal": None, "access_key_id": None, "decision": "none", "outcome": "error"}
    malformed = {**as_admin, "operation": "Encrypt", "decision": "none", "outcome": "error"}
    bad_json = b'{"KeyId": "' + key_id.encode() + b'", "Plaintext": '
    unknown_field = {"KeyId": key_id, "Plaintext": b64(SECRET), "PlaintextHint": "nope"}

    for i in range(1000):
        slot = i % 10
        if slot == 0:
            answer = admin.encrypt(KeyId=key_id, Plaintext=SECRET, EncryptionContext=CONTEXT)
            expect(_request_id(answer), "allowed", operation="Encrypt",
                   encryption_context=CONTEXT, **allowed)  # fmt: skip
        elif slot == 1:
            answer = admin.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
            assert answer["Plaintext"] == SECRET
            expect(_request_id(answer), "allowed", operation="Decrypt",
                   encryption_context=CONTEXT, **allowed)  # fmt: skip
        elif slot == 2:
            answer = admin.describe_key(KeyId=key_id)
            expect(_request_id(answer), "allowed", operation="DescribeKey", **allowed)
        elif slot == 3:
            code, rid = _client_error(bob_client.describe_key, KeyId=key_id)
            assert code == "AccessDeniedException"
            expect(rid, "denied", operation="DescribeKey", **denied)
        elif slot == 4:
            code, rid = _client_error(bob_client.encrypt, KeyId=key_id, Plaintext=SECRET)
            assert code == "AccessDeniedException"
            expect(rid, "denied", operation="Encrypt", **denied)
        elif slot == 5:
            code, rid = _client_error(stranger.describe_key, KeyId=key_id)
            assert code == "UnrecognizedClientException"
            expect(rid, "unauthenticated", error_code=code, operation="DescribeKey", **nobody)
        elif slot == 6:
            code, rid = _client_error(wrong_secret.encrypt, KeyId=key_id, Plaintext=SECRET)
            assert code == "InvalidSignatureException"
            expect(rid, "unauthenticated", error_code=code, operation="Encrypt", **nobody)
        elif slot == 7:
            request = raw.prepare("DescribeKey", {"KeyId": key_id})
            reply = send(server.endpoint, request.without_header("Authorization"))
            reply.assert_aws_error("MissingAuthenticationTokenException", 403)
            assert reply.request_id is not None
            expect(reply.request_id, "unauthenticated", error_code=reply.error_type,
                   operation="DescribeKey", **nobody)  # fmt: skip
        elif slot == 8:
            reply = raw.call("Encrypt", bad_json)
            reply.assert_aws_error("SerializationException", 400)
            assert reply.request_id is not None
            expect(reply.request_id, "malformed", error_code="SerializationException", **malformed)
        else:
            reply = raw.call("Encrypt", unknown_field)
            reply.assert_aws_error("ValidationException", 400)
            assert reply.request_id is not None
            expect(reply.request_id, "malformed", error_code="ValidationException", **malformed)

    assert sum(kinds.values()) == 1000
    assert kinds == {"allowed": 300, "denied": 200, "unauthenticated": 300, "malformed": 200}

    records = _records(server)
    assert len(records) == before + 1000, "one record per request, no more, no fewer"
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records[before:]:
        by_id.setdefault(record["request_id"], []).append(record)
    assert by_id.keys() == expected.keys()
    outcomes: Counter[str] = Counter()
    for request_id, want in expected.items():
        (record,) = by_id[request_id]
        for name, value in want.items():
            if name != "kind":
                assert record[name] == value, (name, want["kind"], record)
        assert record["source_ip"] == "127.0.0.1"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
        if record["principal"] is not None:
            assert record["region"] == "us-east-1"
        outcomes[record["decision"]] += 1
    assert outcomes == {"allow": 300, "deny": 200, "none": 500}

    text = _audit_file(server).read_text()
    for secret in (SECRET.decode(), b64(SECRET), admin_secret, bob["SecretAccessKey"]):
        assert secret not in text, "the audit log must never hold plaintext or secrets"

    code, output = _verify(server)
    assert code == 0, output
    assert "ok:" in output


# -- (b) the chain exposes edits --


def _failed_line(output: str) -> tuple[str, int]:
    match = re.search(r"FAILED: (\S+) line (\d+):", output)
    assert match, output
    return match.group(1), int(match.group(2))


def test_verify_names_the_edited_or_deleted_line(fresh_server: Any) -> None:
    server = fresh_server
    admin = server.client()
    key_id = admin.create_key()["KeyMetadata"]["KeyId"]
    stranger = server.client(("AKKC" + "Q" * 16, "y" * 40))
    for _ in range(4):
        admin.describe_key(KeyId=key_id)
        _client_error(stranger.describe_key, KeyId=key_id)
    server.stop()
    path = _audit_file(server)
    pristine = path.read_bytes()
    lines = pristine.splitlines(keepends=True)
    assert len(lines) >= 8
    k = 5  # 1-based, with lines on both sides
    assert b'"outcome":"error"' in lines[k - 1] or b'"outcome":"success"' in lines[k - 1]

    def verify_with(new_lines: list[bytes]) -> tuple[int, str]:
        path.write_bytes(b"".join(new_lines))
        try:
            return _verify(server)
        finally:
            path.write_bytes(pristine)

    code, output = _verify(server)
    assert code == 0, output

    def edited(line: bytes) -> list[bytes]:
        return [*lines[: k - 1], line, *lines[k:]]

    # A field edited, the line still well-formed: named at k itself, whose
    # MAC no longer matches (issue 13 #15: it was named at k + 1).
    line = lines[k - 1]
    flipped = (
        line.replace(b'"outcome":"error"', b'"outcome":"success"')
        if b'"outcome":"error"' in line
        else line.replace(b'"outcome":"success"', b'"outcome":"error"')
    )
    assert flipped != line
    code, output = verify_with(edited(flipped))
    assert code != 0
    assert _failed_line(output) == (str(path), k), output

    # The same edit with every later line re-chained (fresh prev hashes, as
    # anyone who can write the file can do): still named at k, not at the end.
    rechained = edited(flipped)
    for index in range(k, len(rechained)):
        obj = json.loads(rechained[index])
        obj["prev"] = hashlib.sha256(chain_form(rechained[index - 1].rstrip(b"\n"))).hexdigest()
        rechained[index] = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    code, output = verify_with(rechained)
    assert code != 0
    assert _failed_line(output) == (str(path), k), output

    # seq edited: caught at k itself.
    reseq = re.sub(rb'^\{"seq":\d+', b'{"seq":%d' % (k + 40), line)
    assert reseq != line
    code, output = verify_with(edited(reseq))
    assert code != 0
    assert _failed_line(output) == (str(path), k), output

    # Line no longer JSON: caught at k.
    code, output = verify_with(edited(line[:-3] + b"\n"))
    assert code != 0
    assert _failed_line(output) == (str(path), k), output

    # Line k deleted: caught at k (seq skips).
    code, output = verify_with([*lines[: k - 1], *lines[k:]])
    assert code != 0
    assert _failed_line(output) == (str(path), k), output

    # Back to the original: the failures above were the edits' doing.
    code, output = _verify(server)
    assert code == 0, output


# -- (c) fail closed --


def _internal_error(answer: Any) -> None:
    answer.assert_aws_error("KMSInternalException", 500)


def test_requests_fail_closed_when_the_audit_log_cannot_be_written(fresh_server: Any) -> None:
    """RLIMIT_FSIZE on the running server makes every write past the audit
    file's current size fail with EFBIG, for real.

    The limit applies to every file the process writes, SQLite's included. To
    make sure it is the audit log that fails these requests, the audit file is
    first grown (Encrypts whose ~4 KB encryption contexts are logged; a
    record carries at most 4 KiB of context) until it is far larger than the
    database, its WAL and its shared memory file: every SQLite write stays
    well under the limit. The limit leaves 100 bytes of room, less than any
    record, so the audit write is cut short part-way and the log has to cut
    the partial line back.
    """
    server = fresh_server
    admin_akid, admin_secret = server.credentials()
    admin = server.client()
    kept = admin.create_key(Description="before the limit")["KeyMetadata"]["KeyId"]
    big_context = {f"pad{i}": secrets.token_hex(950) for i in range(2)}
    for _ in range(130):
        admin.encrypt(KeyId=kept, Plaintext=b"grow the audit file", EncryptionContext=big_context)

    audit = _audit_file(server)
    size = audit.stat().st_size
    assert size > 480_000
    data = Path(server.data_dir)
    for name in ("keycask.db", "keycask.db-wal", "keycask.db-shm"):
        other = data / name
        if other.exists():
            assert other.stat().st_size < size // 4, f"{name} could reach the limit"
    limit = size + 100

    raw = RawKMS(server.endpoint, (admin_akid, admin_secret))
    strict = server.client(retries=0)  # botocore max_attempts counts retries
    alias = f"alias/never-{uuid.uuid4().hex[:8]}"
    pid = server.proc.pid
    original = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, original[1]))
    try:
        _internal_error(raw.call("CreateKey", {"Description": "must not exist"}))
        answer = raw.call("Encrypt", {"KeyId": kept, "Plaintext": b64(SECRET)})
        _internal_error(answer)
        assert "CiphertextBlob" not in answer.json()
        assert SECRET not in answer.body and b64(SECRET).encode() not in answer.body
        _internal_error(raw.call("CreateAlias", {"AliasName": alias, "TargetKeyId": kept}))
        for call, kwargs in (
            (strict.create_key, {"Description": "must not exist either"}),
            (strict.encrypt, {"KeyId": kept, "Plaintext": SECRET}),
            (strict.create_alias, {"AliasName": alias, "TargetKeyId": kept}),
        ):
            with pytest.raises(ClientError) as caught:
                call(**kwargs)
            response = caught.value.response
            assert response["Error"]["Code"] == "KMSInternalException"
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
            assert "CiphertextBlob" not in response
        # Every partial line was cut away again.
        assert audit.stat().st_size == size
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, original)

    assert server.proc.poll() is None, "the server must survive a failing audit log"
    keys = admin.list_keys()["Keys"]
    assert [k["KeyId"] for k in keys] == [kept], "no key may have been created"
    assert _own_aliases(admin) == [], "no alias may have been created"
    code, output = _verify(server)
    assert code == 0, output

    # Writable again: requests succeed, and are recorded.
    new_key = admin.create_key(Description="after the limit")["KeyMetadata"]["KeyId"]
    encrypted = admin.encrypt(KeyId=new_key, Plaintext=SECRET)
    assert admin.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])["Plaintext"] == SECRET
    created = admin.create_alias(AliasName=alias, TargetKeyId=new_key)
    assert [a["AliasName"] for a in _own_aliases(admin)] == [alias]
    recorded = {r["request_id"] for r in _records(server)}
    assert _request_id(encrypted) in recorded
    assert _request_id(created) in recorded
    code, output = _verify(server)
    assert code == 0, output
    assert base64.b64encode(SECRET).decode() not in audit.read_text()


def _readyz(server: Any) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.endpoint + "/readyz", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_readyz_says_unready_while_the_audit_log_cannot_be_written(fresh_server: Any) -> None:
    """A failed audit write (here EFBIG from RLIMIT_FSIZE; a full disk is the
    same) is cut away and the log stays open; /readyz must still say 503
    "audit log unwritable" so a load balancer stops sending requests that
    would all be refused, and 200 again once a write succeeds, without any
    KMS request having to come first (an unready node gets none)."""
    server = fresh_server
    admin = server.client()
    kept = admin.create_key(Description="before the limit")["KeyMetadata"]["KeyId"]
    admin.encrypt(KeyId=kept, Plaintext=b"a record before the limit")
    audit = _audit_file(server)
    size = audit.stat().st_size
    assert _readyz(server)[0] == 200
    akid, secret = server.credentials()
    raw = RawKMS(server.endpoint, (akid, secret))
    pid = server.proc.pid
    original = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size + 100, original[1]))
    try:
        _internal_error(raw.call("Encrypt", {"KeyId": kept, "Plaintext": b64(SECRET)}))
        for _ in range(3):
            assert _readyz(server) == (503, '{"status":"audit log unwritable"}')
        assert audit.stat().st_size == size
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, original)
    assert _readyz(server) == (200, '{"status":"ok"}')
    assert _readyz(server) == (200, '{"status":"ok"}')
    probes = [r for r in _records(server) if r["operation"] == "ReadinessCheck"]
    assert len(probes) == 1, "one record for the recovery, none per probe"
    assert probes[0]["outcome"] == "success"
    code, output = _verify(server)
    assert code == 0, output


# -- (d) requests the HTTP layer refuses --


def _raw_exchange(server: Any, data: bytes) -> bytes:
    host, port = server.endpoint.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_requests_refused_by_the_http_layer_are_audited_and_a_flood_is_coalesced(
    fresh_server: Any,
) -> None:
    """A request smuggling attempt (or any 400/408/431) leaves one record,
    written before the answer: operation HttpRefused, the client's address,
    the status and a fixed reason, no principal, nothing of the request.
    A flood cannot turn each refusal into a durable write: past a burst the
    refusals are counted and the count recorded once a second, so every
    refusal is accounted for, individually or in a count."""
    server = fresh_server
    smuggle = (
        b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"POST / HTTP/1.1\r\nHost: kms\r\nX-Secret: " + SECRET + b"\r\n\r\n"
    )
    answer = _raw_exchange(server, smuggle)
    assert answer.startswith(b"HTTP/1.1 400 ")
    # Written before the answer: it is there the moment the client has it.
    refused = [r for r in _records(server) if r["operation"] == "HttpRefused"]
    assert len(refused) == 1
    record = refused[0]
    assert record["source_ip"] == "127.0.0.1"
    assert record["principal"] is None
    assert record["outcome"] == "error"
    assert record["error_code"] == "BadRequest"
    # httptools refuses two framings itself, before our own check would.
    assert record["detail"] == "HTTP 400: malformed request"
    assert SECRET.decode() not in _audit_file(server).read_text()

    flood = 300
    for _ in range(flood):
        assert _raw_exchange(server, b"\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    counted = re.compile(r"^(\d+) more requests refused by the HTTP layer, over the record rate$")

    def accounted() -> tuple[int, int]:
        records = [r for r in _records(server) if r["operation"] == "HttpRefused"][1:]
        one_by_one = sum(1 for r in records if r["detail"] == "HTTP 400: malformed request")
        in_counts = sum(int(m[1]) for r in records if (m := counted.match(r["detail"] or "")))
        return one_by_one, in_counts

    for _ in range(100):  # the count is recorded within a second of the flood
        one_by_one, in_counts = accounted()
        if one_by_one + in_counts == flood:
            break
        time.sleep(0.1)
    assert one_by_one + in_counts == flood
    assert one_by_one < flood, "a flood must not cost one durable write per refusal"
    code, output = _verify(server)
    assert code == 0, output


# -- (e) forged tails and segments (issue 13 #9), startup errors, verify reads only --


def _forge_after_tip(path: Path) -> bytes:
    """Append a well-chained but unkeyed line after the tip: all an attacker
    who can write the file but holds no root key can make."""
    lines = path.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    forged = {k: v for k, v in last.items() if k != "mac"}
    forged.update(
        seq=last["seq"] + 1,
        request_id=str(uuid.uuid4()),
        operation="ScheduleKeyDeletion",
        prev=hashlib.sha256(chain_form(lines[-1].rstrip(b"\n"))).hexdigest(),
    )
    line = json.dumps(forged, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines) + line)
    return line


def _start_fails(server: Any) -> subprocess.CompletedProcess[str]:
    """Start the server in the foreground; it must exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "keycask.cli", "server", "--dev", "--data-dir",
         str(server.data_dir), "--listen", f"127.0.0.1:{server.port}"],
        capture_output=True, text=True, env=server.env(), timeout=60,
    )  # fmt: skip


def test_a_forged_tail_fails_verify_and_the_server_will_not_chain_on(fresh_server: Any) -> None:
    server = fresh_server
    admin = server.client()
    admin.create_key(Description="real")
    server.stop()  # anchors the tip
    path = _audit_file(server)
    pristine = path.read_bytes()
    lines_before = len(pristine.splitlines())
    _forge_after_tip(path)

    code, output = _verify(server)
    assert code == 1, output
    assert _failed_line(output) == (str(path), lines_before + 1), output
    assert "no valid MAC" in output

    # Before the fix the server chained on from the forged line and anchored it.
    refused = _start_fails(server)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr, refused.stderr
    error = [line for line in refused.stderr.splitlines() if "will not chain on" in line]
    assert len(error) == 1 and error[0].startswith("keycask: "), refused.stderr
    assert f"line {lines_before + 1}" in error[0], refused.stderr
    assert "will not chain on" in error[0]
    assert len(path.read_bytes().splitlines()) == lines_before + 1, "nothing was chained on"
    code, output = _verify(server)
    assert code == 1, output

    # The way out: the forged line moves aside as evidence (audited), and the
    # server chains on from the last line the store vouches for.
    moved = server.cli("audit", "quarantine", "server")
    assert f"lines {lines_before + 1}-{lines_before + 1} of server.jsonl moved to" in moved.stdout
    (aside,) = path.parent.glob("server.jsonl.quarantined-*")
    assert b"ScheduleKeyDeletion" in aside.read_bytes()
    assert path.read_bytes() == pristine
    server.start()
    admin.create_key(Description="after")
    server.stop()
    code, output = _verify(server)
    assert code == 0 and output.startswith("ok: "), output
    cli_records = [
        json.loads(line) for line in (path.parent / "cli.jsonl").read_text().splitlines()
    ]
    assert cli_records[-1]["operation"] == "keycask:QuarantineAuditLines"


def test_a_fabricated_segment_fails_verify(fresh_server: Any) -> None:
    server = fresh_server
    server.client().create_key()
    server.stop()
    real = _audit_file(server)
    for name, content in (
        ("server-7.jsonl", real.read_bytes()),  # real lines, real MACs, another name
        ("server-8.jsonl", b""),  # filled below with a fresh well-formed chain
    ):
        fake = real.with_name(name)
        if content:
            fake.write_bytes(content)
        else:
            first = json.loads(real.read_bytes().splitlines()[0])
            first.pop("mac")
            fake.write_bytes(json.dumps(first, separators=(",", ":")).encode() + b"\n")
        code, output = _verify(server)
        assert code == 1, output
        assert _failed_line(output) == (str(fake), 1), output
        fake.unlink()
    code, output = _verify(server)
    assert code == 0, output


def test_an_unwritable_audit_segment_stops_the_start_with_one_line(fresh_server: Any) -> None:
    server = fresh_server
    server.stop()
    path = _audit_file(server)
    path.rename(path.with_suffix(".bak"))
    path.mkdir()  # cannot be opened for writing, even by root
    failed = _start_fails(server)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr, failed.stderr
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .startswith(f"keycask: audit segment {path} could not be opened")
    ), failed.stderr
    assert [line for line in failed.stderr.splitlines() if line.startswith("keycask:")] == [
        failed.stderr.strip().splitlines()[-1]
    ]


def _verify_dir(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    return subprocess.run(
        [sys.executable, "-m", "keycask.cli", "audit", "verify", "--data-dir", str(directory),
         *extra],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def _tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_verify_of_a_dir_that_is_not_a_data_dir_creates_nothing(tmp_path: Path) -> None:
    # Issue 26 #11: it fell back to the dev seal, wrote dev-root.key and
    # initialised an empty store.
    bare = tmp_path / "bare"
    (bare / "audit").mkdir(parents=True)
    (bare / "audit" / "server.jsonl").write_bytes(b"")
    before = _tree(bare)
    done = _verify_dir(bare)
    assert done.returncode == 2, done
    assert "is not a keycask data dir" in done.stderr and "Traceback" not in done.stderr
    assert _tree(bare) == before
    missing = tmp_path / "missing"
    done = _verify_dir(missing)
    assert done.returncode == 2 and not missing.exists(), done


def test_verify_of_a_dev_dir_writes_nothing_to_its_store(fresh_server: Any) -> None:
    server = fresh_server
    server.client().create_key()
    server.stop()
    data = Path(server.data_dir)
    store = data / "keycask.db"
    import sqlite3  # the test reads the store directly

    def keyring() -> tuple[bytes, int]:
        with sqlite3.connect(store) as conn:
            row = conn.execute(
                "SELECT value, revision FROM kv WHERE path='core/keyring'"
            ).fetchone()
        return bytes(row[0]), int(row[1])

    before = keyring()
    names = _tree(data)
    done = _verify_dir(data)
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done
    assert keyring() == before, "verify must not reserve barrier capacity (a write)"
    assert _tree(data) == names


def test_verify_against_an_empty_postgresql_schema_creates_no_tables(fresh_server: Any) -> None:
    # Issue 26 #11: verify initialised an empty PostgreSQL store.
    from cluster import pg_schema
    from psycopg import connect

    server = fresh_server
    server.stop()
    with pg_schema() as dsn:
        done = _verify_dir(Path(server.data_dir), "--storage", dsn)
        assert done.returncode == 2, done
        assert "holds no keycask store" in done.stderr and "Traceback" not in done.stderr
        with connect(dsn) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchone()
        assert schema is not None and schema[0].startswith("kc_cluster_"), schema
        assert tables == (0,), (schema, tables)
