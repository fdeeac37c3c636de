"""Running a document's shell blocks as written: the ```sh blocks of a
Markdown page, split into the commands a reader would paste one at a time,
run in order in ONE bash session (variables, ``cd`` and ``export`` carry over
from one command to the next, as in a terminal), each with its own exit code
and output.

The doc says what a command should do in its trailing comment, and the
walker holds it to that: a comment naming an error (``# DisabledException``)
means the command must fail with that error; ``exit code N`` means that exit
code; anything else means it must succeed. What a command promises beyond
that (an output, a state), the test checks itself.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parents[2]

VENV = Path(sys.prefix)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_ERROR = re.compile(r"\b(\w+(?:Exception|Error))\b")
_EXIT = re.compile(r"exit code (\d+)")


@dataclass(frozen=True)
class Command:
    text: str  # as in the doc: continuation lines and heredoc included
    comment: str  # its last trailing comment (a heredoc's body aside), "" if none

    @property
    def expected_error(self) -> str | None:
        found = _ERROR.search(self.comment)
        return found.group(1) if found else None

    @property
    def expected_exit(self) -> int | None:
        found = _EXIT.search(self.comment)
        return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Result:
    command: Command
    code: int
    out: str
    err: str

    def describe(self) -> str:
        return f"{self.command.text!r} exited {self.code}\nstdout: {self.out}\nstderr: {self.err}"


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next ``## ``."""
    marker = f"\n{heading}\n"
    assert marker in markdown, f"no section {heading!r}"
    return markdown.split(marker, 1)[1].split("\n## ", 1)[0]


def blocks(markdown: str, language: str = "sh") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.S | re.M)


def _comment(line: str) -> str:
    # Only a comment set off by two spaces counts: a '#' inside a command
    # (a URL fragment, a quoted string) is never preceded by two spaces here.
    return line.split("  #", 1)[1].strip() if "  #" in line else ""


def _complete(text: str) -> bool:
    check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return check.returncode == 0


def commands(block: str) -> list[Command]:
    """The block's commands: a line, with its continuation lines (``\\``), the
    body of a heredoc, or the rest of a compound command (``for ... done``)."""
    found: list[Command] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text, said = [line], [_comment(line)]
        heredoc = _HEREDOC.search(line)
        if heredoc:
            while i < len(lines):
                text.append(lines[i])
                i += 1
                if lines[i - 1] == heredoc.group(2):
                    break
        while text[-1].rstrip().endswith("\\") or not _complete("\n".join(text)):
            assert i < len(lines), f"the block ends inside a command: {text}"
            text.append(lines[i])
            said.append(_comment(lines[i]))
            i += 1
        found.append(Command("\n".join(text), next((c for c in reversed(said) if c), "")))
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The reader's environment: nothing of keycask's or AWS's from the test
    run, the virtualenv's commands (keycask, aws) on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"
    env.update(extra)
    return env


class Shell:
    """One bash process fed the commands one at a time, like a terminal.

    Each command is sourced from a file (so heredocs and quotes arrive
    intact) with stdin from /dev/null (so nothing reads the commands that
    follow); its output and exit code land in files the test reads. pipefail
    is on, so a failure anywhere in a pipeline counts."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path) -> None:
        self.cwd = cwd
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            text=True,
        )
        self._send("set -o pipefail")

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self, command: Command, timeout: float = 180) -> Result:
        self.count += 1
        n, d = self.count, self.scratch
        (d / f"cmd-{n}.sh").write_text(command.text + "\n")
        self._send(
            f". {d}/cmd-{n}.sh > {d}/out-{n} 2> {d}/err-{n} < /dev/null; "
            f"echo $? > {d}/rc-{n}.tmp; mv {d}/rc-{n}.tmp {d}/rc-{n}"
        )
        rc = d / f"rc-{n}"
        deadline = time.monotonic() + timeout
        while not rc.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"the shell exited during {command.text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{command.text!r} did not finish in {timeout} s")
            time.sleep(0.02)
        return Result(
            command,
            int(rc.read_text()),
            (d / f"out-{n}").read_text(),
            (d / f"err-{n}").read_text(),
        )

    def value(self, name: str) -> str:
        """A shell variable's value, as the reader would echo it."""
        return self.run(Command(f'printf %s "${{{name}}}"', "")).out

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def check(result: Result) -> None:
    """Holds the command to what its comment says (see the module's doc)."""
    command = result.command
    if command.expected_exit is not None:
        assert result.code == command.expected_exit, result.describe()
    elif command.expected_error is not None:
        assert result.code != 0, f"expected {command.expected_error}: {result.describe()}"
        assert command.expected_error in result.err, result.describe()
    else:
        assert result.code == 0, result.describe()


class MakeRun:
    """What ``make run`` runs, as the Makefile runs it (checked, so that a
    change to the recipe is noticed): ``.venv/bin/keycask server --dev`` in
    ``cwd`` (with ``--tls-self-signed`` for ``TLS=1``, before ``make`` or after
    ``run``), with the Makefile's defaults, the variables the doc's line sets,
    and a free port."""

    RECIPE = (
        "\nrun: $(STAMP)\n"
        "\t$(BIN)/keycask server --dev$(if $(filter 1,$(TLS)), --tls-self-signed)\n"
    )

    def __init__(self, cwd: Path, port: int, line: str = "make run") -> None:
        makefile = (REPO / "Makefile").read_text()
        assert self.RECIPE in makefile
        assert "export KEYCASK_DATA_DIR ?= ./.keycask\n" in makefile
        words = line.split("  #", maxsplit=1)[0].split()
        at = words.index("make")
        assert words[at + 1] == "run", line
        assignments = words[:at] + words[at + 2 :]
        assert all("=" in a for a in assignments), line
        self.cwd, self.port = cwd, port
        self.env = clean_env(KEYCASK_LISTEN=f"127.0.0.1:{port}", KEYCASK_DATA_DIR="./.keycask")
        self.env.update(a.split("=", 1) for a in assignments)
        self.tls = self.env.pop("TLS", "") == "1"
        self.log_path = cwd.parent / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def data_dir(self) -> Path:
        return self.cwd / self.env["KEYCASK_DATA_DIR"]

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [".venv/bin/keycask", "server", "--dev", *(["--tls-self-signed"] if self.tls else [])],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                context = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1, context=context):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"keycask did not start: {self.log()}")

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        """With TLS=1: the certificate clients trust as their CA."""
        return str(self.data_dir / "tls" / "cert.pem")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text()

    def kms(self, creds: tuple[str, str] | None = None, profile: str = "keycask") -> Any:
        """boto3 as the test's own eyes: the profile's key from the data dir's
        credentials file, or the given one."""
        if creds is None:
            parser = configparser.ConfigParser()
            parser.read(self.data_dir / "credentials")
            creds = (parser[profile]["aws_access_key_id"], parser[profile]["aws_secret_access_key"])
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds[0],
            aws_secret_access_key=creds[1],
            verify=self.ca_file if self.tls else None,
        )
