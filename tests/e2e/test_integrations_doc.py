"""docs/integrations.md, run as a reader runs it.

Every ```sh block of the page, in order, goes line by line through one bash
session (docwalk.Shell) in a fresh directory holding ``.venv`` (this
virtualenv, with the interop venvs ``make interop`` built under it); its
``make run`` line starts the dev server as the Makefile does, on a free port.
Each ```python block whose first line names a file (``# kms_app.py``) is
written to that file, verbatim, when the walk reaches it, so the page's code
is the code that runs. Each command must do what its comment says
(docwalk.check); the outputs the page promises ("quarterly report", the
endpoint boto3 used) and what the audit log must then hold (which principal
and which key policy statement allowed the least-privileged app) are
checked here. The OpenBao and Kubernetes recipes are hcl/yaml blocks, not
run: the page says so.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from docwalk import VENV, Command, MakeRun, Result, Shell, check, clean_env, commands
from interop_paths import require_interop

from conftest import REPO, free_port

DOC = REPO / "docs" / "integrations.md"
PLAINTEXT = "quarterly report"
APP = "arn:aws:iam::000000000000:user/esdk-app"


def _snippets() -> list[tuple[str, str]]:
    """(language, text) of every sh and python block, in page order."""
    found = re.findall(r"^```(sh|python)\n(.*?)^```", DOC.read_text(), re.S | re.M)
    return [(language, text) for language, text in found]


def _audit(data_dir: Path) -> list[dict[str, Any]]:
    lines = (data_dir / "audit" / "server.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _secrets(credentials: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(credentials)
    return {name: parser[name]["aws_secret_access_key"] for name in parser.sections()}


def test_every_python_block_names_its_file() -> None:
    """A block the walk could not place would silently go untested."""
    for language, text in _snippets():
        if language == "python":
            assert re.fullmatch(r"# \w+\.py", text.splitlines()[0]), text.splitlines()[0]


@pytest.mark.slow
def test_integrations_walkthrough(tmp_path: Path) -> None:
    require_interop()
    if shutil.which("jq") is None:
        pytest.fail("the page's least-privilege block uses jq: install it (apt-get install jq)")
    home = tmp_path / "repo"
    home.mkdir()
    (home / ".venv").symlink_to(VENV)
    shell = Shell(home, clean_env(HOME=str(tmp_path / "user")), tmp_path / "shell")
    server: MakeRun | None = None
    seen: list[Result] = []
    try:
        for language, text in _snippets():
            if language == "python":
                (home / text.splitlines()[0][2:]).write_text(text)
                continue
            for command in commands(text):
                if command.text.startswith("make run"):
                    server = MakeRun(home, free_port(), command.text)
                    continue
                result = shell.run(command)
                check(result)
                if command.comment == PLAINTEXT:
                    assert result.out.strip() == PLAINTEXT, result.describe()
                if command.comment == "Enabled":
                    assert result.out.strip() == "Enabled", result.describe()
                seen.append(result)
        assert server is not None
        endpoint = f"http://127.0.0.1:{server.port}"
        assert shell.value("ENDPOINT") == endpoint

        def ran(*pieces: str) -> Result:
            found = [r for r in seen if all(p in r.command.text for p in pieces)]
            assert len(found) == 1, (pieces, [r.command.text for r in found])
            return found[0]

        # Every promised plaintext was checked, through each integration.
        promised = [r for r in seen if r.command.comment == PLAINTEXT]
        assert len(promised) == 6, [r.command.text for r in promised]

        # boto3 used the endpoint from AWS_ENDPOINT_URL_KMS, not a default.
        assert ran("python kms_app.py").out == f"{endpoint} from boto3\n"

        # The encryption CLI files are ESDK messages, not the plaintext.
        for name in ("report.esdk", "report.two", "report.kr", "report.app"):
            body = (home / name).read_bytes()
            assert body[:1] == b"\x02" and PLAINTEXT.encode() not in body, name
        assert not (home / "report.wrong").exists()
        assert not (home / "report.two.out").exists()
        assert not (home / "report.payroll").exists()

        # keycask's policy tools agree with what the server did.
        assert ran("--context app=reports").out.startswith(f"ALLOW: {APP} kms:Decrypt")
        assert ran("--context app=payroll").out.startswith(f"DENY: {APP} kms:Decrypt")
        assert ran("policy lint --file").out.startswith("0 finding(s)"), ran("lint").out

        # The CLI reports the SDK's error, not KMS's reason (the page says so);
        # the audit log below names the denial.
        refused = ran("--output report.payroll")
        assert "unable to generate data key" in refused.err, refused.describe()

        # The secret keys are in the credentials files (0600) and nowhere else
        # the page's commands wrote: not their outputs, not the other files,
        # not keycask's log or audit records.
        assert shell.value("created") == ""  # the page unsets it
        secrets = _secrets(server.data_dir / "credentials")
        assert set(secrets) == {"keycask", "esdk-app"}
        private = [server.data_dir / "credentials", home / "app-aws" / "credentials"]
        for path in private:
            assert path.stat().st_mode & 0o077 == 0, path
        assert _secrets(home / "app-aws" / "credentials") == {"default": secrets["keycask"]}
        written = [p for p in home.rglob("*") if p.is_file() and ".venv" not in p.parts]
        written += [p for p in (tmp_path / "shell").iterdir()]
        written += [server.log_path, *(server.data_dir / "audit").iterdir()]
        leaks = [
            (path, profile)
            for path in written
            if path not in private
            for profile, secret in secrets.items()
            if secret.encode() in path.read_bytes()
        ]
        assert leaks == []
        # The least-privileged app was allowed by its own statement only.
        records = _audit(server.data_dir)
        key = shell.value("KEY")
        by_app = [r for r in records if r["principal"] == APP and r["key_arn"] == key]
        allowed = {(r["operation"], r["decision"]) for r in by_app if r["decision"] == "allow"}
        assert allowed == {("GenerateDataKey", "allow"), ("Decrypt", "allow")}, by_app
        for record in by_app:
            if record["decision"] == "allow":
                assert "EsdkAppReports" in record["decided_by"], record
        denied = {r["operation"] for r in by_app if r["decision"] != "allow"}
        assert denied == {"GenerateDataKey", "DescribeKey"}, by_app
    finally:
        shell.close()
        if server is not None:
            server.stop()


def test_walk_refuses_a_command_that_breaks_its_promise(tmp_path: Path) -> None:
    """The walk's check can fail: a command whose comment promises an exit code
    it does not give is caught (here the page's own ``test -e`` line run where
    the file does exist)."""
    (tmp_path / "report.wrong").write_text("x")
    shell = Shell(tmp_path, clean_env(), tmp_path / "shell")
    try:
        line = next(
            c
            for language, text in _snippets()
            if language == "sh"
            for c in commands(text)
            if c.text.startswith("test -e report.wrong")
        )
        result = shell.run(Command(line.text, line.comment))
        with pytest.raises(AssertionError):
            check(result)
    finally:
        shell.close()
