"""The README's development walkthrough, run as a reader runs it.

Every ```sh block (and the Python example) of the dev sections, in document
order, goes line by line through ONE bash session (docwalk.Shell), so each
section runs after the previous ones, with their variables and files, as
in a terminal. The shell starts in a fresh directory that holds only
``.venv`` (this virtualenv); ``make run`` is replaced by what the Makefile
runs (``.venv/bin/keycask server --dev``, data in ``./.keycask``) on a free
port, and ``make test`` is left out (it is this suite). Every command must
do what its comment says (docwalk.check); the promises the README makes in
words or comments are then checked with boto3 and the store.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from docwalk import (
    VENV,
    Command,
    MakeRun,
    Result,
    Shell,
    check,
    clean_env,
    commands,
    section,
)

from conftest import REPO, free_port

README = REPO / "README.md"
DEV_SECTIONS = (
    "## Quickstart",
    "## Rotation and deletion",
    "## Signing a JWT, verified with openssl",
    "## Principals, policies and audit",
    "## Secrets and files for an app",
)
# Sections with a ```sh block that this test does not run, and why.
ELSEWHERE = {"## Production": "test_readme_production.py runs it on a production server"}


def _snippets() -> list[tuple[str, str, str]]:
    """(section, language, text) of every sh and python block, in order."""
    text = README.read_text()
    found = []
    for heading in DEV_SECTIONS:
        body = section(text, heading)
        for language, block in re.findall(r"^```(sh|python)\n(.*?)^```", body, re.S | re.M):
            found.append((heading, language, block))
    return found


def test_every_readme_sh_section_is_walked() -> None:
    """A new section with commands is noticed: walked here, or named in ELSEWHERE."""
    text = README.read_text()
    headings = re.findall(r"^## .*$", text, re.M)
    with_sh = {h for h in headings if "```sh\n" in section(text, h)}
    assert with_sh == set(DEV_SECTIONS) | set(ELSEWHERE)


@dataclass
class Walk:
    home: Path
    port: int = field(default_factory=free_port)
    server: MakeRun | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / ".keycask"

    def make_run(self, line: str) -> None:
        self.server = MakeRun(self.home, self.port, line)
        assert self.server.data_dir == self.data_dir

    def log(self) -> str:
        assert self.server is not None
        return self.server.log()

    def kms(self, creds: tuple[str, str] | None = None) -> Any:
        assert self.server is not None
        return self.server.kms(creds)


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    home = tmp_path / "readme"
    home.mkdir()
    (home / ".venv").symlink_to(VENV)
    walk = Walk(home)
    yield walk
    if walk.server is not None:
        walk.server.stop()


def _gone(kms: Any, key: str) -> bool:
    try:
        kms.describe_key(KeyId=key)
    except ClientError as error:
        return bool(error.response["Error"]["Code"] == "NotFoundException")
    return False


def _promises(walk: Walk, shell: Shell) -> list[tuple[str, Callable[[Result], None]]]:
    """(a piece of a README command, what must hold once it ran)."""
    state: dict[str, Any] = {}

    def exports(result: Result) -> None:
        # The two lines the server prints are the ones the README shows.
        printed = re.findall(r"^  (export AWS_\w+=\S+)$", walk.log(), re.M)
        value = shell.value("AWS_SHARED_CREDENTIALS_FILE")
        assert printed == [
            f"export AWS_CONFIG_FILE={walk.data_dir / 'config'}",
            f"export AWS_SHARED_CREDENTIALS_FILE={value}",
        ], walk.log()

    def decrypted(result: Result) -> None:
        assert result.out == "hello, keycask"

    def data_key(result: Result) -> None:
        answer = json.loads(result.out)
        assert len(base64.b64decode(answer["Plaintext"])) == 32

    def listed(result: Result) -> None:
        ids = [k["KeyId"] for k in json.loads(result.out)["Keys"]]
        assert shell.value("KEY") in ids

    def rotations(result: Result) -> None:
        kinds = [r["RotationType"] for r in json.loads(result.out)["Rotations"]]
        assert kinds == ["ON_DEMAND", "AUTOMATIC"]

    def disabled(result: Result) -> None:
        key = shell.value("RKEY")
        assert walk.kms().describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"

    def destroyed(result: Result) -> None:
        key = shell.value("RKEY")
        assert _gone(walk.kms(), key)
        db = walk.data_dir / "keycask.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            left = [p for (p,) in conn.execute("SELECT path FROM kv") if key in p]
        assert left == [f"gone/{key}"]  # only the tombstone of a deleted key

    def verified(result: Result) -> None:
        assert result.out.strip() == "Verified OK"
        # And it can fail: one changed byte of the signed input is refused.
        signed = walk.home / "jwt-input"
        signed.write_bytes(signed.read_bytes()[:-1] + b"X")
        again = shell.run(Command(result.command.text.split("  #")[0], ""))
        assert again.code != 0 and "Verification failure" in again.out + again.err

    def alice(result: Result) -> None:
        created = json.loads(result.out)
        assert created["Arn"] == "arn:aws:iam::000000000000:user/alice"
        state["alice"] = (created["AccessKeyId"], created["SecretAccessKey"])

    def role(result: Result) -> None:
        assert json.loads(result.out)["Arn"] == "arn:aws:iam::000000000000:role/app"

    def alice_decrypts(result: Result) -> None:
        # What the README says alice's policy allows, she can do, and no more.
        admin, key = walk.kms(), shell.value("TENANT_KEY")
        own = admin.encrypt(KeyId=key, Plaintext=b"a", EncryptionContext={"tenant": "a"})
        other = admin.encrypt(KeyId=key, Plaintext=b"b", EncryptionContext={"tenant": "b"})
        as_alice = walk.kms(state["alice"])
        blob = own["CiphertextBlob"]
        assert (
            as_alice.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"})["Plaintext"]
            == b"a"
        )
        with pytest.raises(ClientError, match="AccessDeniedException"):
            as_alice.decrypt(CiphertextBlob=other["CiphertextBlob"],
                             EncryptionContext={"tenant": "b"})  # fmt: skip

    def access_keys(result: Result) -> None:
        assert [line.split()[0] for line in result.out.splitlines()] == [state["alice"][0]]

    def allow(result: Result) -> None:
        assert result.out.startswith("ALLOW: arn:aws:iam::000000000000:user/alice kms:Decrypt")

    def deny(result: Result) -> None:
        assert result.out.startswith("DENY: arn:aws:iam::000000000000:user/alice kms:Decrypt")

    def who_can(result: Result) -> None:
        assert "arn:aws:iam::000000000000:user/alice: if kms:EncryptionContext:tenant" in (
            result.out
        )
        assert '(= "a")' in result.out

    def lint(result: Result) -> None:
        assert "0 finding(s) in 4 key policies and 1 identity policies" in result.out

    def audit(result: Result) -> None:
        assert result.out.startswith("ok: ")

    def committed_file(result: Result) -> None:
        # What goes into git: the names, never a value.
        assert "correct horse" not in result.out and "tok-8f14e45f" not in result.out
        names = [line.split("=", 1)[0] for line in result.out.splitlines() if "=kc1:" in line]
        assert names == ["API_TOKEN", "DB_PASSWORD"], result.out

    def app_started(result: Result) -> None:
        assert result.out == "the app starts with a 28-character password\n"
        # ... as the role's session: the audit log names it, not a stored key.
        records = [json.loads(line) for line in
                   (walk.data_dir / "audit" / "server.jsonl").read_text().splitlines()]  # fmt: skip
        decrypts = [r for r in records if r.get("operation") == "Decrypt"][-2:]
        assert [r["access_key_id"][:4] for r in decrypts] == ["ASIA", "ASIA"]
        assert all("assumed-role/billing/" in r["principal"] for r in decrypts)

    def billing_role(result: Result) -> None:
        assert result.out.startswith("arn:aws:sts::000000000000:assumed-role/billing/")

    def billing_created(result: Result) -> None:
        assert "AccessKeyId" not in result.out and "Secret" not in result.out

    def restored(result: Result) -> None:
        # A decrypted file is its owner's alone, whatever the umask.
        assert (walk.home / "site-restored.tar").stat().st_mode & 0o777 == 0o600

    return [
        ("export AWS_SHARED_CREDENTIALS_FILE", exports),
        ("kms decrypt --ciphertext-blob fileb://msg.enc", decrypted),
        ("kms generate-data-key --key-id", data_key),
        ("kms list-keys", listed),
        ("kms list-key-rotations", rotations),
        ("kms decrypt --ciphertext-blob fileb://old.enc", decrypted),
        ("kms cancel-key-deletion", disabled),
        ('kms describe-key --key-id "$RKEY"', destroyed),
        ("openssl dgst -sha256 -verify", verified),
        ("principals create alice", alice),
        ("principals create app --role", role),
        ("principals put-policy alice", alice_decrypts),
        ("principals access-keys list alice", access_keys),
        ("--context tenant=a", allow),
        ("--context tenant=b", deny),
        ("policy who-can", who_can),
        ("policy lint", lint),
        ("audit verify", audit),
        ("cat app.env", committed_file),
        ("principals create billing --role", billing_created),
        ("--profile billing sts get-caller-identity", billing_role),
        ("keycask exec --secrets app.env", app_started),
        ("cmp site.tar site-restored.tar", restored),
    ]


def test_readme_dev_walkthrough(walk: Walk, tmp_path: Path) -> None:
    # The reader has a git identity of their own; the test's HOME has none.
    git = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
           for what, value in (("NAME", "Reader"), ("EMAIL", "reader@example.com"))}  # fmt: skip
    shell = Shell(walk.home, clean_env(HOME=str(tmp_path / "user"), **git), tmp_path / "shell")
    promises = _promises(walk, shell)
    fired: list[str] = []
    ran = 0
    try:
        for number, (_, language, text) in enumerate(_snippets()):
            if language == "python":
                script = walk.home.parent / f"snippet-{number}.py"
                script.write_text(text)
                check(shell.run(Command(f"{VENV / 'bin' / 'python'} {script}", "")))
                ran += 1
                continue
            for command in commands(text):
                if command.text.startswith("make test"):
                    continue  # the suite this test is part of
                if command.text.startswith("make run"):
                    walk.make_run(command.text)
                    continue
                result = shell.run(command)
                check(result)
                ran += 1
                for piece, promise in promises:
                    if piece in command.text:
                        promise(result)
                        fired.append(piece)
    finally:
        shell.close()
    assert sorted(fired) == sorted(piece for piece, _ in promises)
    assert ran > 40
