"""``keycask secrets`` end to end: the real CLI against a real server, both
file layouts, and what a hostile edit of a committed secrets file can try
(swapped values, a value moved between files, another key named, plaintext
pasted in)."""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from secretscli import (
    KEYCASK,
    audit_records,
    cli_env,
    get_secret,
    keycask,
    new_key,
    ok,
    one_line_error,
    set_secret,
)

from conftest import Server

LAYOUTS = ["app.json", ".env.prod"]


def _swap_values(path: Path, first: str, second: str) -> None:
    text = path.read_text()
    if path.suffix == ".json":
        doc = json.loads(text)
        values = doc["secrets"]
        values[first], values[second] = values[second], values[first]
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return
    lines = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    text = text.replace(f"{first}={lines[first]}", "@@FIRST@@")
    text = text.replace(f"{second}={lines[second]}", f"{second}={lines[first]}")
    path.write_text(text.replace("@@FIRST@@", f"{first}={lines[second]}"))


@pytest.mark.slow
@pytest.mark.parametrize("filename", LAYOUTS)
def test_set_get_list_rm(server: Server, tmp_path: Path, filename: str) -> None:
    key = new_key(server)
    alias = f"alias/secrets-{secrets.token_hex(4)}"
    server.client().create_alias(AliasName=alias, TargetKeyId=key)
    path = tmp_path / filename
    token = secrets.token_urlsafe(24).encode()
    said = set_secret(
        server, path, "API_TOKEN", token + b"\n", "--key-id", alias, "--context", "app=billing"
    )
    assert said.strip() == f"added API_TOKEN in {path}"
    # Exactly one trailing newline goes, \n or \r\n; bytes that are not UTF-8 stay as they are.
    binary = b"\xff\xfe\x01 two  spaces \t"
    set_secret(server, path, "BINARY", binary + b"\r\n")
    set_secret(server, path, "ALPHA", b"kept\n\n")
    assert get_secret(server, path, "API_TOKEN") == token
    assert get_secret(server, path, "BINARY") == binary
    assert get_secret(server, path, "ALPHA") == b"kept\n"

    text = path.read_text()
    assert token.decode() not in text
    # The key's ARN is stored, not the alias that named it.
    assert key in text and alias not in text
    names = ok(keycask(server, "secrets", "list", str(path))).stdout.decode().split()
    assert names == ["ALPHA", "API_TOKEN", "BINARY"]
    listing = json.loads(ok(keycask(server, "secrets", "list", str(path), "--json")).stdout)
    assert listing == {"key_id": key, "context": {"app": "billing"}, "names": names}
    if filename.endswith(".json"):
        doc = json.loads(text)
        assert doc["keycask_secrets"] == 1 and doc["key_id"] == key
        assert doc["context"] == {"app": "billing"} and list(doc["secrets"]) == names
    else:
        lines = text.splitlines()
        assert lines[:3] == [
            "# keycask-secrets: 1",
            f"# key-id: {key}",
            '# context: {"app":"billing"}',
        ]
        assert [line.split("=")[0] for line in lines[3:]] == names

    # Replacing keeps the file's mode (a file made 0640 by its owner stays 0640).
    path.chmod(0o640)
    said = set_secret(server, path, "API_TOKEN", b"second value")
    assert said.strip() == f"replaced API_TOKEN in {path}"
    assert get_secret(server, path, "API_TOKEN") == b"second value"
    assert path.stat().st_mode & 0o777 == 0o640

    ok(keycask(server, "secrets", "rm", str(path), "BINARY"))
    assert ok(keycask(server, "secrets", "list", str(path))).stdout.split() == [
        b"ALPHA",
        b"API_TOKEN",
    ]
    err = one_line_error(keycask(server, "secrets", "get", str(path), "BINARY"), 1)
    assert "no secret BINARY" in err
    one_line_error(keycask(server, "secrets", "rm", str(path), "BINARY"), 1)
    # Nothing but the file itself is left in the directory (no temp file).
    assert sorted(p.name for p in tmp_path.iterdir()) == [filename]


@pytest.mark.slow
def test_new_file_rules(server: Server, tmp_path: Path) -> None:
    key, other = new_key(server), new_key(server)
    path = tmp_path / "s.env"
    err = one_line_error(keycask(server, "secrets", "set", str(path), "A", stdin=b"v"), 2)
    assert "give --key-id" in err and not path.exists()
    # A new file without --context is bound to nothing but its key and names: said.
    loose = tmp_path / "loose.env"
    said = set_secret(server, loose, "A", b"v", "--key-id", key).splitlines()
    assert said[0] == f"added A in {loose}" and len(said) == 2
    assert said[1].startswith(f"note: {loose} has no --context")
    said = set_secret(server, path, "A", b"v", "--key-id", key, "--context", "app=x")
    assert said == f"added A in {path}\n"
    before = path.read_bytes()
    # A file keeps its key and its context: rotate moves them.
    err = one_line_error(
        keycask(server, "secrets", "set", str(path), "B", "--key-id", other, stdin=b"v"), 2
    )
    assert "secrets rotate --key-id" in err
    err = one_line_error(
        keycask(server, "secrets", "set", str(path), "B", "--context", "app=y", stdin=b"v"), 2
    )
    assert "secrets rotate --context" in err
    assert path.read_bytes() == before
    # The same key named by its ARN, and the same context, are fine.
    set_secret(server, path, "B", b"v", "--key-id", key, "--context", "app=x")
    # Through a symlink the file it points to is rewritten; the link stays.
    link = tmp_path / "linked.env"
    link.symlink_to(path)
    set_secret(server, link, "C", b"v")
    assert link.is_symlink() and "\nC=kc1:" in path.read_text()
    # Names become variable names; keycask: context keys are keycask's own.
    for bad in ["1A", "A-B", "A B", "X" * 129, ""]:
        done = keycask(server, "secrets", "set", str(path), bad, stdin=b"v")
        assert done.returncode == 2 and b"Traceback" not in done.stderr
    done = keycask(
        server, "secrets", "set", str(tmp_path / "n.env"), "A", "--key-id", key,
        "--context", "keycask:secret=B", stdin=b"v",
    )  # fmt: skip
    assert done.returncode == 2 and b"keycask's own" in done.stderr
    err = one_line_error(keycask(server, "secrets", "list", str(tmp_path / "s.yaml")), 2)
    assert ".json for JSON" in err


@pytest.mark.slow
def test_value_limits(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    path = tmp_path / "s.json"
    set_secret(server, path, "MAX", b"m" * 4096, "--key-id", key)
    assert get_secret(server, path, "MAX") == b"m" * 4096
    before = path.read_bytes()
    err = one_line_error(keycask(server, "secrets", "set", str(path), "BIG", stdin=b"b" * 4097), 2)
    assert "4096 bytes" in err and "keycask encrypt" in err
    err = one_line_error(
        keycask(server, "secrets", "set", str(path), "BIG", stdin=b"b" * 100_000), 2
    )
    assert "4096 bytes" in err
    err = one_line_error(keycask(server, "secrets", "set", str(path), "NUL", stdin=b"a\0b"), 2)
    assert "NUL" in err
    for empty in [b"", b"\n", b"\r\n"]:
        err = one_line_error(keycask(server, "secrets", "set", str(path), "E", stdin=empty), 2)
        assert "empty" in err
    assert path.read_bytes() == before


def _read_until(fd: int, seen: bytearray, done: Callable[[bytes], bool]) -> None:
    deadline = time.monotonic() + 30
    while not done(bytes(seen)):
        left = deadline - time.monotonic()
        assert left > 0, f"the terminal showed only {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is closed
                chunk = b""
            if not chunk:
                return
            seen.extend(chunk)


def _set_on_a_terminal(
    server: Server, path: Path, name: str, answers: list[bytes | None]
) -> tuple[int, bytes]:
    """``secrets set`` with a pty as stdin and stderr (where the prompt
    goes), typing each of ``answers`` after a prompt (None: SIGINT, as
    Ctrl-C would send); its status and what the terminal showed."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [*KEYCASK, "secrets", "set", str(path), name],
            stdin=slave,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=cli_env(server),
            start_new_session=True,  # no controlling terminal: getpass uses stdin
        )
        os.close(slave)
        seen = bytearray()
        prompt = f"value for {name}".encode()
        for count, answer in enumerate(answers, start=1):
            _read_until(master, seen, lambda shown, n=count: shown.count(prompt) >= n)
            if answer is None:
                proc.send_signal(signal.SIGINT)
                break
            # getpass turns echo off before it prints the prompt: typing now is safe.
            os.write(master, answer + b"\n")
        code = proc.wait(timeout=60)
        _read_until(master, seen, lambda _: False)
        return code, bytes(seen)
    finally:
        os.close(master)


@pytest.mark.slow
def test_value_from_a_terminal_prompt_without_echo(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    path = tmp_path / "s.env"
    set_secret(server, path, "FIRST", b"x", "--key-id", key)
    typed = secrets.token_hex(12).encode()
    code, screen = _set_on_a_terminal(server, path, "TYPED", [typed, typed])
    assert code == 0, screen
    assert typed not in screen  # no echo
    assert screen.count(b"value for TYPED") == 2
    assert get_secret(server, path, "TYPED") == typed
    before = path.read_bytes()
    code, screen = _set_on_a_terminal(server, path, "OTHER", [b"one", b"two"])
    assert code == 2 and b"the two entries differ" in screen
    assert path.read_bytes() == before
    code, screen = _set_on_a_terminal(server, path, "OTHER", [b"one", None])
    assert code == 128 + signal.SIGINT and b"keycask: interrupted by SIGINT" in screen
    assert b"Traceback" not in screen
    assert path.read_bytes() == before


@pytest.mark.slow
def test_swapped_values_are_refused(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    for filename in LAYOUTS:
        path = tmp_path / filename
        user, password = secrets.token_hex(8).encode(), secrets.token_hex(8).encode()
        set_secret(server, path, "DB_USER", user, "--key-id", key)
        set_secret(server, path, "DB_PASSWORD", password)
        _swap_values(path, "DB_USER", "DB_PASSWORD")
        for name in ["DB_USER", "DB_PASSWORD"]:
            done = keycask(server, "secrets", "get", str(path), name)
            err = one_line_error(done, 1)
            assert f"cannot decrypt {name} in {path}" in err
            assert "InvalidCiphertextException" in err
            assert user.decode() not in err and password.decode() not in err
            assert done.stdout == b""


@pytest.mark.slow
def test_a_value_moved_to_another_file_or_key_is_refused(server: Server, tmp_path: Path) -> None:
    key, other_key = new_key(server), new_key(server)
    billing, shipping = tmp_path / "billing.env", tmp_path / "shipping.env"
    set_secret(
        server, billing, "API_TOKEN", b"billing-token", "--key-id", key, "--context", "app=billing"
    )
    set_secret(
        server,
        shipping,
        "API_TOKEN",
        b"shipping-token",
        "--key-id",
        key,
        "--context",
        "app=shipping",
    )
    stolen = billing.read_text().splitlines()[3]
    lines = shipping.read_text().splitlines()
    shipping.write_text("\n".join([*lines[:3], stolen]) + "\n")
    err = one_line_error(keycask(server, "secrets", "get", str(shipping), "API_TOKEN"), 1)
    assert "InvalidCiphertextException" in err
    # Whoever also edits the context line to match opens it: the context is
    # no secret; what guards a value is the key's policy and the review of
    # the file's changes (docs/secrets-file.md says so).
    shipping.write_text(shipping.read_text().replace('"app":"shipping"', '"app":"billing"'))
    assert get_secret(server, shipping, "API_TOKEN") == b"billing-token"
    # Naming another key in the header: Decrypt is pinned to that key and refuses.
    text = billing.read_text()
    billing.write_text(text.replace(f"# key-id: {key}", f"# key-id: {other_key}"))
    err = one_line_error(keycask(server, "secrets", "get", str(billing), "API_TOKEN"), 1)
    assert "IncorrectKeyException" in err


def _header_to(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert f"# key-id: {old}" in text
    path.write_text(text.replace(f"# key-id: {old}", f"# key-id: {new}"))


@pytest.mark.slow
def test_a_pin_refuses_a_file_pointed_at_another_key(server: Server, tmp_path: Path) -> None:
    """Whoever can edit the file (a commit) can name their own key in its
    header and encrypt values under it. The pin, given outside the file,
    is the key the values must be under; every refusal names both keys."""
    key, attacker = new_key(server), new_key(server)
    alias = f"alias/app-{secrets.token_hex(4)}"
    server.client().create_alias(AliasName=alias, TargetKeyId=key)
    path = tmp_path / "app.env"
    set_secret(server, path, "API_TOKEN", b"real-token", "--key-id", key)
    # The pin as an alias: compared on the ARN the server answered with.
    done = ok(keycask(server, "secrets", "get", str(path), "API_TOKEN", "--key-id", alias))
    assert done.stdout == b"real-token"
    pinned_env = cli_env(server, KEYCASK_SECRETS_KEY_ID=alias)
    ok(keycask(server, "secrets", "set", str(path), "B", stdin=b"b", env=pinned_env))

    # 1. The header swapped, the values left: the pinned Decrypt opens the
    # value, and the header naming another key is refused.
    _header_to(path, key, attacker)
    before = path.read_bytes()
    for pin in (["--key-id", alias], ["--key-id", key]):
        done = keycask(server, "secrets", "get", str(path), "API_TOKEN", *pin)
        err = one_line_error(done, 2)
        assert f"names the key {attacker}, not the pinned key {key}" in err and done.stdout == b""
    done = keycask(server, "secrets", "get", str(path), "API_TOKEN", env=pinned_env)
    assert "not the pinned key" in one_line_error(done, 2)
    # Unpinned, `set` first opens one value under the header's key: refused.
    done = keycask(server, "secrets", "set", str(path), "NEW", stdin=b"new")
    assert "cannot decrypt API_TOKEN" in one_line_error(done, 1)
    assert "IncorrectKeyException" in done.stderr.decode()
    done = keycask(server, "secrets", "set", str(path), "NEW", "--key-id", alias, stdin=b"new")
    assert f"names the key {attacker}, not the pinned key {key} ({alias})" in one_line_error(
        done, 2
    )
    assert path.read_bytes() == before

    # 2. The attacker's own file: header and values under the attacker's key.
    path.unlink()
    set_secret(server, path, "API_TOKEN", b"attacker-token", "--key-id", attacker)
    done = keycask(server, "secrets", "get", str(path), "API_TOKEN", "--key-id", key)
    assert "IncorrectKeyException" in one_line_error(done, 1) and done.stdout == b""
    done = keycask(server, "secrets", "set", str(path), "NEW", stdin=b"n", env=pinned_env)
    assert f"names the key {attacker}, not the pinned key {key}" in one_line_error(done, 2)
    assert "NEW" not in path.read_text()
    # Without a pin the header is trusted, as the docs say: pin in production.
    assert get_secret(server, path, "API_TOKEN") == b"attacker-token"


@pytest.mark.slow
def test_rotate(server: Server, tmp_path: Path) -> None:
    kms = server.client()
    old_key, new_key_arn = new_key(server), new_key(server)
    for filename in LAYOUTS:
        path = tmp_path / filename
        values = {f"S{i}": secrets.token_bytes(16).replace(b"\0", b"x") for i in range(3)}
        for i, (name, value) in enumerate(values.items()):
            set_secret(server, path, name, value, *(["--key-id", old_key] if i == 0 else []))
        first = path.read_bytes()
        said = ok(keycask(server, "secrets", "rotate", str(path))).stderr.decode()
        assert "re-encrypted 3 secret(s)" in said
        second = path.read_bytes()
        assert second != first and old_key in second.decode()
        assert all(get_secret(server, path, n) == v for n, v in values.items())
        said = ok(
            keycask(server, "secrets", "rotate", str(path), "--key-id", new_key_arn)
        ).stderr.decode()
        assert f"now under {new_key_arn}" in said
        text = path.read_text()
        assert new_key_arn in text and old_key not in text
    kms.disable_key(KeyId=old_key)
    for filename in LAYOUTS:
        assert ok(keycask(server, "secrets", "list", str(tmp_path / filename)))
        for name in ["S0", "S1", "S2"]:
            assert get_secret(server, tmp_path / filename, name)
    records = audit_records(server, new_key_arn)
    reencrypts = [r for r in records if r["operation"] == "ReEncrypt"]
    assert {r["encryption_context"]["keycask:secret"] for r in reencrypts} == {"S0", "S1", "S2"}


@pytest.mark.slow
def test_rotate_context_and_all_or_nothing(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    path = tmp_path / "s.json"
    set_secret(server, path, "A", b"a", "--key-id", key, "--context", "app=one")
    set_secret(server, path, "B", b"b")
    set_secret(server, path, "C", b"c")
    ok(
        keycask(
            server, "secrets", "rotate", str(path), "--context", "app=two", "--context", "env=prod"
        )
    )
    assert json.loads(path.read_text())["context"] == {"app": "two", "env": "prod"}
    assert get_secret(server, path, "C") == b"c"
    _swap_values(path, "A", "B")
    before = path.read_bytes()
    err = one_line_error(keycask(server, "secrets", "rotate", str(path)), 1)
    assert "cannot re-encrypt A" in err and "InvalidCiphertextException" in err
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_hand_edited_malformed_files(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    path = tmp_path / "s.env"
    set_secret(server, path, "A", b"a", "--key-id", key)
    pasted = secrets.token_hex(10)
    path.write_text(path.read_text() + f"PASSWORD={pasted}\n")
    before = path.read_bytes()
    for args in (
        ["secrets", "get", str(path), "A"],
        ["secrets", "list", str(path)],
        ["secrets", "rm", str(path), "A"],
        ["secrets", "rotate", str(path)],
        ["exec", "--secrets", str(path), "--", "true"],
    ):
        err = one_line_error(keycask(server, *args), 2)
        assert "line 5" in err and "PASSWORD" in err and str(path) in err
        assert pasted not in err
    err = one_line_error(keycask(server, "secrets", "set", str(path), "B", stdin=b"b"), 2)
    assert "line 5" in err
    assert path.read_bytes() == before
    broken = tmp_path / "s.json"
    broken.write_text('{"keycask_secrets": 1, "key_id": "k", "context": {}, "secrets": {')
    err = one_line_error(keycask(server, "secrets", "list", str(broken)), 2)
    assert re.search(r"not valid JSON \(line 1, column \d+\)", err)


@pytest.mark.slow
def test_kms_refusals_give_the_aws_reason(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    path = tmp_path / "s.env"
    set_secret(server, path, "A", b"a", "--key-id", key)
    made = json.loads(
        server.cli("principals", "create", f"nobody-{secrets.token_hex(3)}", "--json").stdout
    )
    nobody = cli_env(
        server, AWS_ACCESS_KEY_ID=made["AccessKeyId"], AWS_SECRET_ACCESS_KEY=made["SecretAccessKey"]
    )
    err = one_line_error(keycask(server, "secrets", "get", str(path), "A", env=nobody), 1)
    assert "cannot decrypt A" in err and "AccessDeniedException" in err
    err = one_line_error(
        keycask(server, "secrets", "set", str(path), "B", stdin=b"b", env=nobody), 1
    )
    assert "AccessDeniedException" in err
    server.client().disable_key(KeyId=key)
    err = one_line_error(keycask(server, "secrets", "get", str(path), "A"), 1)
    assert "DisabledException" in err
    err = one_line_error(keycask(server, "secrets", "set", str(path), "B", stdin=b"b"), 1)
    assert "DisabledException" in err
    unreachable = cli_env(server, KEYCASK_ADDR="http://127.0.0.1:9")
    err = one_line_error(keycask(server, "secrets", "get", str(path), "A", env=unreachable), 1)
    assert "cannot reach http://127.0.0.1:9" in err


def test_audit_records_name_the_secret(server: Server, tmp_path: Path) -> None:
    key = new_key(server)
    path = tmp_path / "s.json"
    set_secret(server, path, "API_TOKEN", b"t", "--key-id", key, "--context", "app=audit")
    get_secret(server, path, "API_TOKEN")
    records = audit_records(server, key)
    expected = {"app": "audit", "keycask:secret": "API_TOKEN"}
    for operation in ["Encrypt", "Decrypt"]:
        [record] = [r for r in records if r["operation"] == operation]
        assert record["encryption_context"] == expected
        assert record["outcome"] == "success"
