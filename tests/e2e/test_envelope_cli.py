"""``keycask encrypt`` / ``keycask decrypt`` as a user runs them: the real
CLI against a real server, with what a careless or hostile caller would
feed them (cut, altered, foreign, unsigned and key-stuffed messages, the
wrong context, a disabled key, a principal without rights, a dead server,
SIGTERM), and what must never be left behind (a partial file, a temp file,
plaintext in the audit log)."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_encryption_sdk
import pytest
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.identifiers import Algorithm
from envelope_helpers import (
    KEYCASK,
    audit_records,
    calls,
    failed,
    keycask,
    leftovers,
    sdk_session,
)

from conftest import free_port

if TYPE_CHECKING:
    from conftest import Server

MIB = 1024 * 1024


def _key(kms: Any) -> str:
    return str(kms.create_key(Description="envelope")["KeyMetadata"]["Arn"])


def _plaintext(size: int = 300_000) -> bytes:
    # A marker that would be found in any log or file it leaked into.
    marker = f"PLAINTEXT-{uuid.uuid4().hex}".encode()
    return (marker + os.urandom(size))[:size]


def _encrypt(server: Server, key: str, data: bytes, *extra: str) -> bytes:
    proc = keycask(server, "encrypt", "--key-id", key, *extra, stdin=data)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _sdk_message(
    server: Server,
    keys: list[str],
    data: bytes,
    algorithm: Algorithm,
    frame_length: int = 4096,
    **kwargs: Any,
) -> bytes:
    """A message written in-process with the Python SDK, not through keycask."""
    policy = (
        CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
        if algorithm.is_committing()
        else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=policy)
    provider = StrictAwsKmsMasterKeyProvider(key_ids=keys, botocore_session=sdk_session(server))
    message, _ = client.encrypt(
        source=data, key_provider=provider, algorithm=algorithm, frame_length=frame_length, **kwargs
    )
    return bytes(message)


# -- round trips --


def test_round_trip_through_stdin_and_stdout(server: Server, kms: Any) -> None:
    key = _key(kms)
    data = _plaintext()
    message = _encrypt(server, key, data, "--context", "app=billing")
    assert data[:40] not in message
    proc = keycask(server, "decrypt", "--context", "app=billing", stdin=message)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data and proc.stderr == b""
    # "-" is stdin and stdout too; an empty input is a valid (empty) plaintext.
    empty = keycask(server, "encrypt", "--key-id", key, "-o", "-", "-", stdin=b"")
    assert keycask(server, "decrypt", "-", stdin=empty.stdout).stdout == b""


def test_round_trip_through_files_and_their_modes(server: Server, kms: Any, tmp_path: Path) -> None:
    key = _key(kms)
    data = _plaintext(1_000_000)
    (tmp_path / "in").write_bytes(data)
    proc = keycask(
        server, "encrypt", "--key-id", key, "-o", str(tmp_path / "in.enc"), str(tmp_path / "in")
    )
    assert proc.returncode == 0 and proc.stdout == b"", proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "in.enc").stat().st_mode & 0o777 == 0o666 & ~umask
    proc = keycask(server, "decrypt", "-o", str(tmp_path / "out"), str(tmp_path / "in.enc"))
    assert proc.returncode == 0 and proc.stdout == b"", proc.stderr
    assert (tmp_path / "out").read_bytes() == data
    # Plaintext is the owner's alone, whatever the umask.
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path, {"in", "in.enc", "out"}) == set()


@pytest.mark.slow
def test_each_of_several_keys_alone_opens_the_message(
    server: Server, kms: Any, tmp_path: Path
) -> None:
    keys = [_key(kms) for _ in range(3)]
    data = _plaintext()
    message = _encrypt(server, keys[0], data, "--key-id", keys[1], "--key-id", keys[2])
    # The first key generated the data key, the others wrapped it.
    assert calls(server, keys[0], "GenerateDataKey") == 1
    assert [calls(server, k, "Encrypt") for k in keys[1:]] == [1, 1]
    for n, key in enumerate(keys):
        # A principal whose only right is Decrypt under this one key.
        name = f"only-{uuid.uuid4().hex[:8]}"
        made = json.loads(server.cli("principals", "create", name, "--json").stdout)
        policy = tmp_path / f"{name}.json"
        policy.write_text(
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key}],
                }
            )
        )
        server.cli("principals", "put-policy", name, "--policy-name", "one", "--file", str(policy))
        env = {
            **server.env(),
            "AWS_ACCESS_KEY_ID": made["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"],
            "AWS_ENDPOINT_URL_KMS": server.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        # Discovery: the keys it may not use are refused, its own opens.
        proc = keycask(server, "decrypt", stdin=message, env=env)
        assert proc.returncode == 0 and proc.stdout == data, (n, proc.stderr)
        # Strict, naming its key: only that key is tried.
        proc = keycask(server, "decrypt", "--key-id", key, stdin=message, env=env)
        assert proc.returncode == 0 and proc.stdout == data, (n, proc.stderr)
        # Strict, naming another key of the message: that key's refusal, said.
        other = keys[(n + 1) % 3]
        err = failed(keycask(server, "decrypt", "--key-id", other, stdin=message, env=env))
        assert "AccessDeniedException" in err


def test_disabling_all_but_one_key_still_opens(server: Server, kms: Any) -> None:
    keys = [_key(kms) for _ in range(2)]
    data = _plaintext()
    message = _encrypt(server, keys[0], data, "--key-id", keys[1])
    kms.disable_key(KeyId=keys[0])
    proc = keycask(server, "decrypt", stdin=message)
    assert proc.returncode == 0 and proc.stdout == data, proc.stderr
    kms.enable_key(KeyId=keys[0])
    kms.disable_key(KeyId=keys[1])
    assert keycask(server, "decrypt", stdin=message).stdout == data


# -- what decrypt checks in the header --


@pytest.mark.slow
def test_context_pairs_must_all_be_in_the_message(server: Server, kms: Any) -> None:
    key = _key(kms)
    message = _encrypt(server, key, b"x", "--context", "app=billing", "--context", "env=prod")
    before = calls(server, key, "Decrypt")
    ok = keycask(
        server, "decrypt", "--context", "env=prod", "--context", "app=billing", stdin=message
    )
    assert ok.returncode == 0 and ok.stdout == b"x"
    err = failed(keycask(server, "decrypt", "--context", "team=a", stdin=message))
    assert "has no 'team'" in err
    err = failed(keycask(server, "decrypt", "--context", "env=dev", stdin=message))
    assert "env='prod', not env='dev'" in err
    # Refused from the header: no key was asked for.
    assert calls(server, key, "Decrypt") == before + 1
    err = failed(keycask(server, "decrypt", "--context", "novalue", stdin=message), 2)
    assert "KEY=VALUE" in err
    err = failed(keycask(server, "encrypt", "--key-id", key, "--context", "aws-crypto-x=1"), 2)
    assert "aws-crypto-" in err


def test_unsigned_suite_is_refused_unless_allowed(server: Server, kms: Any) -> None:
    key = _key(kms)
    data = _plaintext(10_000)
    message = _sdk_message(server, [key], data, Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY)
    err = failed(keycask(server, "decrypt", stdin=message))
    assert "unsigned" in err and "--allow-unsigned" in err
    proc = keycask(server, "decrypt", "--allow-unsigned", stdin=message)
    assert proc.returncode == 0 and proc.stdout == data, proc.stderr


def test_non_committing_suite_is_refused(server: Server, kms: Any) -> None:
    key = _key(kms)
    message = _sdk_message(
        server, [key], b"legacy", Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384
    )
    assert "key commitment" in failed(keycask(server, "decrypt", stdin=message))


def test_a_message_naming_too_many_keys_is_refused_before_any_call(
    server: Server, kms: Any
) -> None:
    keys = [_key(kms) for _ in range(4)]
    # A hostile writer names many keys: each would cost the reader a KMS call.
    message = _sdk_message(
        server, keys, b"stuffed", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    )
    err = failed(keycask(server, "decrypt", "--max-encrypted-data-keys", "3", stdin=message))
    assert "more encrypted data keys than --max-encrypted-data-keys" in err
    assert all(calls(server, k, "Decrypt") == 0 for k in keys)
    proc = keycask(server, "decrypt", "--max-encrypted-data-keys", "4", stdin=message)
    assert proc.returncode == 0 and proc.stdout == b"stuffed"


def test_frames_larger_than_keycask_buffers_are_refused(server: Server, kms: Any) -> None:
    key = _key(kms)
    signed = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    # A header announcing 32 MiB frames: decrypting would buffer each whole.
    big = _sdk_message(server, [key], b"small", signed, frame_length=32 * MIB)
    assert "frames are larger" in failed(keycask(server, "decrypt", stdin=big))
    assert calls(server, key, "Decrypt") == 0
    # An unframed message (frame length 0) within the cap is read whole.
    data = os.urandom(100_000)
    unframed = _sdk_message(server, [key], data, signed, frame_length=0)
    proc = keycask(server, "decrypt", stdin=unframed)
    assert proc.returncode == 0 and proc.stdout == data, proc.stderr


def test_strict_decrypt_takes_arns_and_names_the_messages_keys(server: Server, kms: Any) -> None:
    key, other = _key(kms), _key(kms)
    message = _encrypt(server, key, b"x")
    err = failed(keycask(server, "decrypt", "--key-id", "alias/x", stdin=message), 2)
    assert "ARN" in err
    err = failed(keycask(server, "decrypt", "--key-id", other, stdin=message))
    assert "none of the --key-id" in err and key in err


def test_a_hostile_messages_key_names_reach_the_terminal_escaped(server: Server, kms: Any) -> None:
    """A message's header names its keys in bytes its writer chose; the
    refusals quote them (and the server may echo them): an escape sequence
    or a newline there must arrive as text, not clear the screen or forge a
    line."""
    key, other = _key(kms), _key(kms)
    message = _encrypt(server, key, b"x")
    key_id = key.rsplit("/", 1)[1]
    forged = b"\x1b[2J\nkeycask: ok "
    hostile = message.replace(key_id.encode(), forged + key_id[len(forged) :].encode())
    assert len(hostile) == len(message) and hostile != message
    for args in (["--key-id", other], []):
        proc = keycask(server, "decrypt", *args, stdin=hostile)
        err = failed(proc)
        assert b"\x1b" not in proc.stderr and "\\x1b[2J\\x0akeycask: ok" in err, err


# -- bad input: one line, exit 1, nothing left behind --


def _refused_to_file(server: Server, tmp_path: Path, message: bytes) -> str:
    (tmp_path / "msg").write_bytes(message)
    proc = keycask(server, "decrypt", "-o", str(tmp_path / "out"), str(tmp_path / "msg"))
    assert leftovers(tmp_path, {"msg"}) == set()
    return failed(proc)


def test_not_a_message(server: Server, tmp_path: Path) -> None:
    for junk in (b"hello, this is plain text\n", os.urandom(4096), b"\x02" + os.urandom(600)):
        assert "not an AWS Encryption SDK message" in _refused_to_file(server, tmp_path, junk)
    assert "empty" in _refused_to_file(server, tmp_path, b"")


@pytest.mark.slow
def test_truncated_message_leaves_no_file(server: Server, kms: Any, tmp_path: Path) -> None:
    message = _encrypt(server, _key(kms), _plaintext(300_000))
    for cut in (20, 300, 100_000, len(message) - 50, len(message) - 1):
        err = _refused_to_file(server, tmp_path, message[:cut])
        assert "truncated" in err, (cut, err)


@pytest.mark.slow
def test_tampered_message_leaves_no_file(server: Server, kms: Any, tmp_path: Path) -> None:
    message = _encrypt(server, _key(kms), _plaintext(300_000))
    # The message id (key commitment), the header's tag, a frame, the last
    # frame's tag, the signature.
    for where in (10, 600, 150_000, len(message) - 120, len(message) - 20):
        altered = bytearray(message)
        altered[where] ^= 0x01
        err = _refused_to_file(server, tmp_path, bytes(altered))
        assert "failed authentication: tampered or corrupted" in err, (where, err)


def test_stdout_gets_authenticated_frames_and_the_status_says_the_rest(
    server: Server, kms: Any
) -> None:
    """The documented stdout caveat: frames are released as each verifies, so
    a message whose signature was altered has written its plaintext when
    keycask exits 1; a frame altered stops the output before that frame."""
    data = os.urandom(300_000)
    message = _encrypt(server, _key(kms), data, "--frame-length", "4096")
    bad_signature = bytearray(message)
    bad_signature[-20] ^= 0x01
    proc = keycask(server, "decrypt", stdin=bytes(bad_signature))
    assert "failed authentication" in failed(proc)
    assert data.startswith(proc.stdout) and len(proc.stdout) > 0
    bad_frame = bytearray(message)
    bad_frame[len(message) // 2] ^= 0x01
    proc = keycask(server, "decrypt", stdin=bytes(bad_frame))
    assert "failed authentication" in failed(proc)
    # Only whole frames before the altered one, never a byte of it.
    assert data.startswith(proc.stdout) and len(proc.stdout) < len(data) // 2
    assert len(proc.stdout) % 4096 == 0


def test_trailing_bytes_are_refused(server: Server, kms: Any, tmp_path: Path) -> None:
    message = _encrypt(server, _key(kms), b"x")
    assert "trailing" in _refused_to_file(server, tmp_path, message + b"more")


def test_existing_output_is_kept_without_force(server: Server, kms: Any, tmp_path: Path) -> None:
    key = _key(kms)
    out = tmp_path / "out"
    out.write_bytes(b"precious")
    err = failed(keycask(server, "encrypt", "--key-id", key, "-o", str(out), stdin=b"x"), 2)
    assert "exists" in err and "--force" in err
    message = _encrypt(server, key, b"new")
    assert "--force" in failed(keycask(server, "decrypt", "-o", str(out), stdin=message), 2)
    assert out.read_bytes() == b"precious"
    proc = keycask(server, "decrypt", "--force", "-o", str(out), stdin=message)
    assert proc.returncode == 0 and out.read_bytes() == b"new"
    assert out.stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_disabled_key_and_access_denied_give_the_servers_reason(server: Server, kms: Any) -> None:
    key = _key(kms)
    message = _encrypt(server, key, b"x")
    kms.disable_key(KeyId=key)
    assert "DisabledException" in failed(keycask(server, "encrypt", "--key-id", key, stdin=b"x"))
    assert "DisabledException" in failed(keycask(server, "decrypt", stdin=message))
    kms.enable_key(KeyId=key)
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    made = json.loads(server.cli("principals", "create", name, "--json").stdout)
    env = {
        **server.env(),
        "AWS_ACCESS_KEY_ID": made["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"],
        "AWS_ENDPOINT_URL_KMS": server.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    err = failed(keycask(server, "encrypt", "--key-id", key, stdin=b"x", env=env))
    assert "AccessDeniedException" in err
    assert "AccessDeniedException" in failed(keycask(server, "decrypt", stdin=message, env=env))


def test_unreachable_server_is_one_line(server: Server, kms: Any, tmp_path: Path) -> None:
    key = _key(kms)
    message = _encrypt(server, key, b"x")
    dead = f"http://127.0.0.1:{free_port()}"
    err = failed(keycask(server, "encrypt", "--key-id", key, "--endpoint-url", dead, stdin=b"x"))
    assert f"cannot reach {dead}" in err
    (tmp_path / "msg").write_bytes(message)
    proc = keycask(
        server, "decrypt", "--endpoint-url", dead, "-o", str(tmp_path / "o"), str(tmp_path / "msg")
    )
    assert f"cannot reach {dead}" in failed(proc)
    assert leftovers(tmp_path, {"msg"}) == set()


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_sigterm_mid_stream_leaves_nothing(
    server: Server, kms: Any, tmp_path: Path, command: str
) -> None:
    key = _key(kms)
    head = os.urandom(MIB)
    if command == "decrypt":
        # A long message, of which only the first part is sent before SIGTERM.
        head = _encrypt(server, key, os.urandom(4 * MIB))[: 2 * MIB]
    args = ["--key-id", key] if command == "encrypt" else []
    proc = subprocess.Popen(
        [*KEYCASK, command, *args, "-o", str(tmp_path / "out"), "--data-dir", str(server.data_dir)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server.env(),
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(head)
        proc.stdin.flush()
        # Mid-stream: its temp file holds part of the output, the input is
        # still open and the process waits for more.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.stat().st_size for p in tmp_path.iterdir()):
            time.sleep(0.05)
        assert leftovers(tmp_path, set()), "no temp file appeared"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert proc.stderr.read().decode() == "keycask: interrupted by SIGTERM\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
    assert leftovers(tmp_path, set()) == set()


def test_every_call_is_audited_and_no_plaintext_is(server: Server, kms: Any) -> None:
    keys = [_key(kms), _key(kms)]
    data = _plaintext(50_000)
    message = _encrypt(server, keys[0], data, "--key-id", keys[1], "--context", "case=audit")
    assert keycask(server, "decrypt", "--key-id", keys[1], stdin=message).stdout == data
    records = [r for r in audit_records(server) if r["key_arn"] in keys]
    seen = {(r["key_arn"], r["operation"], r["outcome"]) for r in records}
    assert seen == {
        *((key, "CreateKey", "success") for key in keys),
        (keys[0], "GenerateDataKey", "success"),
        (keys[1], "Encrypt", "success"),
        (keys[1], "Decrypt", "success"),
    }
    used = [r for r in records if r["operation"] != "CreateKey"]
    assert all(r["encryption_context"]["case"] == "audit" for r in used)
    marker = data[:42]
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path


# -- the progress bar --


def _with_pty_stderr(server: Server, args: list[str], stdin: Any) -> tuple[int, bytes]:
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*KEYCASK, *args, "--data-dir", str(server.data_dir)],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=server.env(),
    )
    os.close(slave)
    seen = io.BytesIO()
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen.write(chunk)
    os.close(master)
    return proc.wait(timeout=60), seen.getvalue()


def test_progress_bar_on_a_terminal_only(server: Server, kms: Any, tmp_path: Path) -> None:
    key = _key(kms)
    source = tmp_path / "big"
    source.write_bytes(os.urandom(8 * MIB))
    with source.open("rb") as stdin:
        status, shown = _with_pty_stderr(server, ["encrypt", "--key-id", key, str(source)], stdin)
    assert status == 0
    text = shown.decode()
    assert "100%" in text and "8.0 MiB / 8.0 MiB" in text and "/s" in text
    assert text.endswith("\r\n") and "done" in text
    # Not with --quiet, not when the size is unknown (a pipe), not off a terminal.
    with source.open("rb") as stdin:
        status, shown = _with_pty_stderr(
            server, ["encrypt", "--key-id", key, "--quiet", str(source)], stdin
        )
    assert (status, shown) == (0, b"")
    status, shown = _with_pty_stderr(server, ["encrypt", "--key-id", key], subprocess.DEVNULL)
    assert (status, shown) == (0, b"")
    proc = keycask(server, "encrypt", "--key-id", key, str(source))
    assert proc.returncode == 0 and proc.stderr == b""


def test_usage_errors(server: Server, kms: Any, tmp_path: Path) -> None:
    key = _key(kms)
    # botocore refuses the region as the provider is built: one line, exit 2.
    err = failed(keycask(server, "decrypt", "--key-id", "arn:aws:kms:bad region!:1:key/x"), 2)
    assert "decrypt --key-id" in err and "region" in err
    assert "--frame-length" in failed(
        keycask(server, "encrypt", "--key-id", key, "--frame-length", "0", stdin=b"x"), 2
    )
    assert "cannot read" in failed(
        keycask(server, "encrypt", "--key-id", key, str(tmp_path / "missing")), 2
    )
