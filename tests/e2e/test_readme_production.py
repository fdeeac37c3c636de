"""The README's "Production" block, run as an operator runs it, and the AWS
CLI lines of docs/operations.md's "Clients" and its "Managing principals in
production".

The block goes line by line through one bash session (docwalk.Shell) with
only the places the page names replaced: the data dir ``/var/lib/keycask``
and init's ``/root/keycask-init`` by temporary directories, and the port
``9567`` by a free one (the server line gets it through KEYCASK_LISTEN, as
the default address it stands for). ``keycask server`` runs in the
background, as "in its own shell" says. Checked besides each command's
exit code: the server starts sealed and refuses KMS calls; the unseal
command it prints works as printed (given the token file it asks for); after
three shares it is unsealed; the administrator's profile reaches it over
TLS. Then operations.md's client lines run against the same server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from docwalk import Command, Shell, blocks, check, clean_env, commands, section

from conftest import REPO, free_port

DATA_DIR = "/var/lib/keycask"
INIT_DIR = "/root/keycask-init"
ADDRESS = "127.0.0.1:9567"


def _block(page: Path, heading: str, index: int = 0) -> str:
    return blocks(section(page.read_text(), heading))[index]


def _wait_ready(port: int, cert: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/healthz", timeout=1, context=context
            ):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"keycask did not start: {log.read_text()}")


def test_readme_production_block(tmp_path: Path) -> None:
    port = free_port()
    data, init, ops = tmp_path / "data", tmp_path / "init", tmp_path / "ops"
    ops.mkdir()

    def placed(text: str) -> str:
        text = text.replace(DATA_DIR, str(data)).replace(INIT_DIR, str(init))
        return text.replace(ADDRESS, f"127.0.0.1:{port}")

    shell = Shell(ops, clean_env(HOME=str(tmp_path / "user")), tmp_path / "shell")
    server: subprocess.Popen[bytes] | None = None
    log = tmp_path / "server.log"
    try:
        for command in commands(_block(REPO / "README.md", "## Production")):
            text = placed(command.text)
            if text.startswith("keycask server"):
                server = subprocess.Popen(
                    ["bash", "-c", text.split("  #")[0]],
                    cwd=ops, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                    env=clean_env(KEYCASK_LISTEN=f"127.0.0.1:{port}"), start_new_session=True,
                )  # fmt: skip
                _wait_ready(port, data / "tls" / "cert.pem", server, log)
                _sealed_and_the_hint_works(shell, log, port, data, init)
                continue
            result = shell.run(Command(text, command.comment))
            check(result)
            if "operator status --json" in text:
                status = json.loads(result.out)
                assert (status["sealed"], status["seal"]) == (False, "shamir")
            if "--profile keycask-admin kms create-key" in text:
                key = result.out.strip()
                assert re.fullmatch(r"[0-9a-f-]{36}", key), result.out
        assert server is not None, "the block never starts the server"

        # docs/operations.md, "Clients": the AWS CLI lines, same server.
        ops_page = REPO / "docs" / "operations.md"
        clients = _block(ops_page, "### Clients")
        assert "aws --profile keycask-admin kms list-keys" in clients
        for command in commands(clients):
            text = command.text.replace("https://kms.internal:9567", f"https://{ADDRESS}")
            text = placed(text).replace("/path/to/cert.pem", str(data / "tls" / "cert.pem"))
            result = shell.run(Command(text, command.comment))
            check(result)
            if "kms list-keys" in text:
                assert key in [k["KeyId"] for k in json.loads(result.out)["Keys"]]

        # docs/operations.md, "Managing principals in production": keycask's
        # own client commands with the same profile, server and CA.
        managing = _block(ops_page, "### Managing principals in production")
        for command in commands(managing):
            text = command.text.replace("https://kms.internal:9567", f"https://{ADDRESS}")
            text = placed(text).replace("/path/to/cert.pem", str(data / "tls" / "cert.pem"))
            result = shell.run(Command(text, command.comment))
            check(result)
            if "config show" in text:
                assert "keycask-admin  (env AWS_PROFILE)" in result.out, result.out
                # The README's block exported KEYCASK_CACERT, which comes first.
                ca_line = f"ca_file:        {data / 'tls' / 'cert.pem'}  (env KEYCASK_CACERT)"
                assert ca_line in result.out.splitlines(), result.out
            if "principals create alice" in text:
                assert json.loads(result.out)["Arn"].endswith(":user/alice")
            if "principals list" in text:
                assert "arn:aws:iam::000000000000:user/alice" in result.out.split()
    finally:
        shell.close()
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _sealed_and_the_hint_works(shell: Shell, log: Path, port: int, data: Path, init: Path) -> None:
    """What the sealed server says, and that its unseal command works as
    printed once given the token file it names as a placeholder."""
    creds = (init / "admin-credentials").read_text()
    akid = re.search(r"aws_access_key_id = (\S+)", creds)
    secret = re.search(r"aws_secret_access_key = (\S+)", creds)
    assert akid and secret
    kms = boto3.client(
        "kms", endpoint_url=f"https://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=akid.group(1), aws_secret_access_key=secret.group(1),
        verify=str(data / "tls" / "cert.pem"),
    )  # fmt: skip
    try:
        kms.list_keys()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "KMSInvalidStateException"
    else:
        raise AssertionError("a sealed server answered a KMS call")

    hints = re.findall(r"^  (KEYCASK_ADDR=.* keycask operator unseal)$", log.read_text(), re.M)
    assert len(hints) == 1, log.read_text()
    hint = hints[0]
    assert f"KEYCASK_ADDR=https://127.0.0.1:{port} " in hint
    assert f"KEYCASK_CACERT={data / 'tls' / 'cert.pem'} " in hint
    assert "KEYCASK_OPERATOR_TOKEN_FILE=/path/to/operator-token " in hint
    hint = hint.replace("/path/to/operator-token", str(init / "operator-token"))
    share = f"keycask operator decrypt-share --private-key op4.key {init}/share-4.enc"
    given = shell.run(Command(f"{share} | {hint} --json", ""))
    check(given)
    assert json.loads(given.out)["progress"] == 1
    # Drop it again, so that the README's three shares are what unseals.
    check(shell.run(Command(f"{hint} --reset --json", "")))
