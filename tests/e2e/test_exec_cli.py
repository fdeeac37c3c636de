"""``keycask exec`` end to end: the real CLI runs a real child program (a
Python script) against a real server. The child reports hashes of what it
received, never the values, so a test's own output holds no secret.

What is checked is what a supervisor and an attacker care about: the exit
status, stdin/stdout and SIGTERM/SIGINT reach the child (it is the same
process: ``execvpe``), the child is never started when any secret fails,
and no value appears in argv, the server's data dir and log, or /tmp.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from secretscli import KEYCASK, cli_env, keycask, new_key, ok, one_line_error, set_secret

from conftest import Server

CHILD = """\
import hashlib, json, os, signal, sys, time
mode, marker = sys.argv[1], sys.argv[2]
if mode == "hashes":
    names = sys.argv[3:]
    env = os.environb
    seen = {n: hashlib.sha256(env[n.encode()]).hexdigest() for n in names if n.encode() in env}
    print(json.dumps(seen))
elif mode == "exit":
    open(marker, "w").write("started")
    sys.exit(int(sys.argv[3]))
elif mode == "upper":
    sys.stdout.write(sys.stdin.read().upper())
elif mode == "trap":
    def caught(signum, frame):
        open(marker + ".caught", "w").write(signal.Signals(signum).name)
        sys.exit(42)
    signal.signal(signal.SIGTERM, caught)
    signal.signal(signal.SIGINT, caught)
    open(marker, "w").write(str(os.getpid()))
    time.sleep(60)
    sys.exit(3)
elif mode == "wait":
    open(marker, "w").write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(marker + ".done") and time.monotonic() < deadline:
        time.sleep(0.05)
"""


@pytest.fixture
def child(tmp_path: Path) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script)]


def _sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _values() -> dict[str, bytes]:
    return {
        "API_TOKEN": secrets.token_urlsafe(24).encode(),
        "DB_PASSWORD": secrets.token_hex(16).encode(),
    }


def _secrets_file(server: Server, path: Path, values: dict[str, bytes], *extra: str) -> str:
    key = new_key(server)
    for i, (name, value) in enumerate(values.items()):
        set_secret(server, path, name, value, *(["--key-id", key, *extra] if i == 0 else []))
    return key


def _wait_for(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.slow
def test_environment_prefix_only_and_references(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    values = _values()
    path = tmp_path / "app.env"
    _secrets_file(server, path, values)
    other = tmp_path / "other.json"
    extra = {"REPORT_KEY": secrets.token_hex(8).encode()}
    _secrets_file(server, other, extra)
    marker = str(tmp_path / "m")

    def hashes(*args: str, names: list[str]) -> dict[str, str]:
        done = ok(keycask(server, "exec", *args, "--", *child, "hashes", marker, *names))
        return dict(json.loads(done.stdout))

    everything = ["API_TOKEN", "DB_PASSWORD", "APP_API_TOKEN", "APP_DB_PASSWORD", "RK"]
    assert hashes("--secrets", str(path), names=everything) == {
        n: _sha(v) for n, v in values.items()
    }
    assert hashes("--secrets", str(path), "--prefix", "APP_", names=everything) == {
        f"APP_{n}": _sha(v) for n, v in values.items()
    }
    assert hashes("--secrets", str(path), "--only", "DB_PASSWORD", names=everything) == {
        "DB_PASSWORD": _sha(values["DB_PASSWORD"])
    }
    assert hashes(
        "--secrets",
        str(path),
        "--only",
        "API_TOKEN",
        "--env",
        f"RK=keycask:{other}#REPORT_KEY",
        names=everything,
    ) == {"API_TOKEN": _sha(values["API_TOKEN"]), "RK": _sha(extra["REPORT_KEY"])}
    # The inherited environment is kept beside the secrets.
    env = {**cli_env(server), "INHERITED": "yes"}
    done = ok(
        keycask(
            server, "exec", "--secrets", str(other), "--", "sh", "-c", 'echo "$INHERITED"', env=env
        )
    )
    assert done.stdout == b"yes\n"


@pytest.mark.slow
def test_conflicts_and_missing_names_are_refused(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    one, two = tmp_path / "one.env", tmp_path / "two.env"
    _secrets_file(server, one, {"SHARED": b"a", "ONE": b"1"})
    _secrets_file(server, two, {"SHARED": b"b"})
    marker = tmp_path / "started"
    run = [*child, "exit", str(marker), "0"]
    err = one_line_error(
        keycask(server, "exec", "--secrets", str(one), "--secrets", str(two), "--", *run), 2
    )
    assert f"SHARED comes from both {one} and {two}" in err
    err = one_line_error(
        keycask(server, "exec", "--secrets", str(one), "--env", f"ONE=keycask:{two}#SHARED",
                "--", *run), 2,
    )  # fmt: skip
    assert "ONE comes from both" in err
    err = one_line_error(
        keycask(server, "exec", "--secrets", str(one), "--only", "NOPE", "--", *run), 2
    )
    assert "--only NOPE: not in" in err
    err = one_line_error(keycask(server, "exec", "--env", f"X=keycask:{one}#NOPE", "--", *run), 2)
    assert f"no secret NOPE in {one}" in err
    err = one_line_error(keycask(server, "exec", "--env", "PASSWORD=hunter2-kc", "--", *run), 2)
    assert "NAME=keycask:FILE#SECRET" in err and "hunter2" not in err
    one_line_error(keycask(server, "exec", "--secrets", str(one)), 2)
    one_line_error(keycask(server, "exec", "--", *run), 2)
    # Both files, the name they share left out with --only: fine.
    ok(keycask(
        server, "exec", "--secrets", str(one), "--secrets", str(two), "--only", "ONE", "--", *run
    ))  # fmt: skip
    assert marker.exists()


@pytest.mark.slow
def test_code_loading_names_need_the_command_lines_consent(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    """Whoever can add a line to the file (and encrypt under its key) must
    not run code in the program by setting LD_PRELOAD, PATH, PYTHONPATH..."""
    path = tmp_path / "hostile.env"
    _secrets_file(server, path, {"LD_PRELOAD": b"/tmp/evil.so", "PYTHONPATH": b"/tmp/evil"})
    marker = tmp_path / "started"
    run = [*child, "exit", str(marker), "0"]
    err = one_line_error(keycask(server, "exec", "--secrets", str(path), "--", *run), 2)
    assert "LD_PRELOAD" in err and "--only" in err
    assert not marker.exists()
    done = keycask(server, "exec", "--secrets", str(path), "--prefix", "APP_", "--", *run)
    ok(done)
    assert marker.exists()


def test_exit_status_and_stdio_pass_through(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    path = tmp_path / "s.env"
    _secrets_file(server, path, {"A": b"a"})
    marker = tmp_path / "m"
    done = keycask(server, "exec", "--secrets", str(path), "--", *child, "exit", str(marker), "7")
    assert done.returncode == 7 and done.stderr == b""
    done = keycask(
        server, "exec", "--secrets", str(path), "--", *child, "upper", str(marker),
        stdin=b"through the pipe\n",
    )  # fmt: skip
    assert ok(done).stdout == b"THROUGH THE PIPE\n"


def test_the_child_starts_with_default_signal_dispositions(server: Server, tmp_path: Path) -> None:
    """keycask is a Python process, which ignores SIGPIPE and SIGXFSZ for
    itself; an ignored signal survives execve, so the program would inherit
    it (`yes | head` would see EPIPE instead of ending). Nothing ignored or
    blocked reaches the program that keycask's own parent did not give it."""
    path = tmp_path / "s.env"
    _secrets_file(server, path, {"A": b"a"})
    status = ok(
        keycask(server, "exec", "--secrets", str(path), "--", "cat", "/proc/self/status")
    ).stdout.decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    mine = dict(
        line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines()
        if ":\t" in line
    )  # fmt: skip
    # subprocess restores SIGPIPE and SIGXFSZ to their defaults for keycask
    # (restore_signals) and leaves whatever else this process ignores: a CI
    # harness was seen to hand down signal 32 ignored. The program must get
    # exactly that, with the two Python-made exceptions removed.
    python_made = 1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)
    given = int(mine["SigIgn"], 16) & ~python_made
    assert int(fields["SigIgn"], 16) & python_made == 0, fields["SigIgn"]
    assert int(fields["SigIgn"], 16) == given, (fields["SigIgn"], mine["SigIgn"])
    assert int(fields["SigBlk"], 16) == int(mine["SigBlk"], 16)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_child(
    server: Server, tmp_path: Path, child: list[str], sig: signal.Signals
) -> None:
    path = tmp_path / "s.env"
    _secrets_file(server, path, {"A": b"a"})
    marker = tmp_path / "ready"
    proc = subprocess.Popen(
        [*KEYCASK, "exec", "--secrets", str(path), "--", *child, "trap", str(marker)],
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The child is keycask's own process, replaced: same pid.
        assert int(_wait_for(marker)) == proc.pid
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 42, err
    assert (tmp_path / "ready.caught").read_text() == sig.name


@pytest.mark.slow
def test_the_child_is_never_started_when_a_secret_fails(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    values = _values()
    path = tmp_path / "s.json"
    key = _secrets_file(server, path, values, "--context", "app=exec")
    good = tmp_path / "good.env"
    _secrets_file(server, good, {"GOOD": b"g"})
    marker = tmp_path / "started"
    run = ["--", *child, "exit", str(marker), "0"]

    doc = json.loads(path.read_text())
    blobs = doc["secrets"]
    blobs["API_TOKEN"], blobs["DB_PASSWORD"] = blobs["DB_PASSWORD"], blobs["API_TOKEN"]
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(doc))
    done = keycask(server, "exec", "--secrets", str(good), "--secrets", str(swapped), *run)
    err = one_line_error(done, 1)
    assert f"cannot decrypt API_TOKEN in {swapped}" in err and "InvalidCiphertext" in err
    assert all(v.decode() not in err for v in values.values())
    assert not marker.exists()

    unreachable = cli_env(server, KEYCASK_ADDR="http://127.0.0.1:9")
    err = one_line_error(keycask(server, "exec", "--secrets", str(path), *run, env=unreachable), 1)
    assert "cannot reach" in err and not marker.exists()

    server.client().disable_key(KeyId=key)
    err = one_line_error(keycask(server, "exec", "--secrets", str(path), *run), 1)
    assert "DisabledException" in err and "cannot decrypt API_TOKEN" in err
    assert not marker.exists()


@pytest.mark.slow
def test_a_pinned_key_refuses_a_file_pointed_at_another_key(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    """The attacker's commit: a file whose header and values are under the
    attacker's key, whose policy lets the app decrypt. Pinned (as a
    supervisor sets KEYCASK_SECRETS_KEY_ID), the app is never started."""
    path, hostile = tmp_path / "app.env", tmp_path / "hostile.env"
    key = _secrets_file(server, path, {"API_TOKEN": b"real"})
    attacker = _secrets_file(server, hostile, {"API_TOKEN": b"attacker-chosen"})
    marker = tmp_path / "started"
    run = ["--", *child, "hashes", str(marker), "API_TOKEN"]
    pinned = cli_env(server, KEYCASK_SECRETS_KEY_ID=key)
    done = ok(keycask(server, "exec", "--secrets", str(path), *run, env=pinned))
    assert json.loads(done.stdout) == {"API_TOKEN": _sha(b"real")}
    ways: list[tuple[list[str], dict[str, str]]] = [
        ([], pinned),
        (["--key-id", key], cli_env(server)),
    ]
    for pin, env in ways:
        done = keycask(server, "exec", *pin, "--secrets", str(hostile), *run, env=env)
        err = one_line_error(done, 1)
        assert "cannot decrypt API_TOKEN" in err and "IncorrectKeyException" in err
        assert done.stdout == b""
    # The header alone swapped: the values open under the pin, the header
    # naming another key is refused, naming both.
    text = path.read_text().replace(f"# key-id: {key}", f"# key-id: {attacker}")
    path.write_text(text)
    done = keycask(server, "exec", "--secrets", str(path), *run, env=pinned)
    err = one_line_error(done, 2)
    assert f"names the key {attacker}, not the pinned key {key}" in err and done.stdout == b""


def test_a_value_replacing_an_inherited_variable_is_warned_of(
    server: Server, tmp_path: Path, child: list[str]
) -> None:
    path = tmp_path / "s.env"
    _secrets_file(server, path, {"API_TOKEN": b"from-the-file", "OTHER": b"o"})
    env = cli_env(server, API_TOKEN="inherited-value")
    done = keycask(
        server, "exec", "--secrets", str(path), "--", *child, "hashes", "m", "API_TOKEN", env=env
    )
    assert ok(done).stdout.strip() == json.dumps({"API_TOKEN": _sha(b"from-the-file")}).encode()
    assert (
        done.stderr
        == (
            f"keycask: warning: {path} sets API_TOKEN, replacing the one keycask inherited\n"
        ).encode()
    )


def test_command_not_found_or_not_executable(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "s.env"
    _secrets_file(server, path, {"A": b"a"})
    done = keycask(server, "exec", "--secrets", str(path), "--", "no-such-command-kc")
    assert done.returncode == 127
    assert done.stderr == b"keycask: no-such-command-kc: command not found\n"
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    done = keycask(server, "exec", "--secrets", str(path), "--", str(plain))
    assert done.returncode == 126
    assert done.stderr.startswith(f"keycask: {plain}: cannot run it".encode())


def _files_holding(root: Path, needles: list[bytes], since: float) -> list[str]:
    found = []
    for directory, _, names in os.walk(root, onerror=lambda _: None):
        for name in names:
            file = Path(directory) / name
            try:
                info = file.lstat()
                if not file.is_file() or file.is_symlink() or info.st_mtime < since:
                    continue
                if info.st_size > 256 * 1024 * 1024:
                    continue
                data = file.read_bytes()
            except OSError:
                continue
            found.extend(f"{file}" for needle in needles if needle in data)
    return found


@pytest.mark.slow
def test_no_secret_value_in_argv_logs_audit_or_temp_files(
    fresh_server: Server, tmp_path: Path, child: list[str]
) -> None:
    server = fresh_server
    started = time.time() - 1
    values = {f"LEAK_{i}": f"kc-leak-{secrets.token_hex(16)}".encode() for i in range(3)}
    path = tmp_path / "s.env"
    _secrets_file(server, path, values, "--context", "app=leak")
    marker = tmp_path / "pid"
    proc = subprocess.Popen(
        [*KEYCASK, "exec", "--secrets", str(path), "--", *child, "wait", str(marker)],
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        pid = int(_wait_for(marker))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        (tmp_path / "pid.done").write_text("")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    for name, value in values.items():
        assert value not in cmdline
        # The search can find what is there: the child's environment has them.
        assert f"{name}=".encode() + value in environ.split(b"\0")
        assert value not in out and value not in err
    needles = [*values.values(), *(base64.b64encode(v) for v in values.values())]
    needles += [v.hex().encode() for v in values.values()]
    assert server.log_path is not None
    leaks = _files_holding(server.data_dir, needles, 0)
    leaks += _files_holding(server.log_path.parent, needles, 0)
    leaks += _files_holding(Path("/tmp"), needles, started)
    assert leaks == []
    # The audit log recorded the decryptions, by name.
    audit = (server.data_dir / "audit" / "server.jsonl").read_text()
    assert all(f'"keycask:secret":"{name}"' in audit for name in values)
