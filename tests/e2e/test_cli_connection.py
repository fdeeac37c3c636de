"""Every keycask command that calls a running server takes the connection
options AWS CLI users expect, and reaches a production server whose TLS
certificate a private CA issued (the self-signed one `operator init
--tls-self-signed` made): `--endpoint-url`/`KEYCASK_ADDR`,
`--ca-file`/`KEYCASK_CACERT`/`AWS_CA_BUNDLE`/a profile's `ca_bundle`,
`--profile`/`AWS_PROFILE`, and credentials from the standard AWS chain.

Each command runs as an operator runs it: a subprocess in a directory of its
own, with a HOME of its own, no keycask data dir in sight and nothing in the
environment but what the case sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from production import Production, unsealed_shamir


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    with unsealed_shamir(tmp_path_factory.mktemp("prod") / "data") as server:
        yield server


def _run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    return subprocess.run(
        [sys.executable, "-m", "keycask.cli", *args],
        capture_output=True,
        text=True,
        cwd=home,
        env={**clean, "HOME": str(home), **(env or {})},
        timeout=120,
        check=False,
    )


def _admin_credentials(prod: Production, path: Path, profile: str = "keycask-admin") -> Path:
    admin = prod.init["admin"]
    path.write_text(
        f"[{profile}]\naws_access_key_id = {admin['access_key_id']}\n"
        f"aws_secret_access_key = {admin['secret_access_key']}\n"
    )
    path.chmod(0o600)
    return path


def _listed(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [p["Arn"] for p in json.loads(done.stdout)]


def test_flags_ca_file_and_profile(prod: Production, tmp_path: Path) -> None:
    creds = _admin_credentials(prod, tmp_path / "admin-credentials")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    flags = ["--endpoint-url", prod.endpoint, "--ca-file", str(prod.cert)]
    flags += ["--profile", "keycask-admin"]
    made = _run(tmp_path / "h", "principals", "create", "flagged", "--json", *flags, env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["Arn"].endswith(":user/flagged")
    listed = _run(tmp_path / "h", "principals", "list", "--json", *flags, env=env)
    assert "arn:aws:iam::000000000000:user/flagged" in _listed(listed)
    # --addr is the same option (the operator commands' older name).
    addr = ["--addr", prod.endpoint, "--ca-file", str(prod.cert), "--profile", "keycask-admin"]
    assert _run(tmp_path / "h", "principals", "list", *addr, env=env).returncode == 0


def test_the_system_cas_do_not_trust_it_and_the_error_says_what_to_give(
    prod: Production, tmp_path: Path
) -> None:
    creds = _admin_credentials(prod, tmp_path / "admin-credentials")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "KEYCASK_ADDR": prod.endpoint}
    done = _run(tmp_path / "h", "principals", "list", "--profile", "keycask-admin", env=env)
    assert done.returncode == 1, done.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert "--ca-file" in done.stderr and "AWS_CA_BUNDLE" in done.stderr
    assert "Traceback" not in done.stderr


def test_environment_aws_ca_bundle_and_aws_profile(prod: Production, tmp_path: Path) -> None:
    creds = _admin_credentials(prod, tmp_path / "admin-credentials")
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(creds),
        "AWS_PROFILE": "keycask-admin",
        "AWS_CA_BUNDLE": str(prod.cert),
        "KEYCASK_ADDR": prod.endpoint,
    }
    made = _run(tmp_path / "h", "principals", "create", "by-env", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert "arn:aws:iam::000000000000:user/by-env" in _listed(
        _run(tmp_path / "h", "principals", "list", "--json", env=env)
    )
    # KEYCASK_CACERT works the same way.
    env.pop("AWS_CA_BUNDLE")
    env["KEYCASK_CACERT"] = str(prod.cert)
    assert _run(tmp_path / "h", "principals", "list", env=env).returncode == 0


def test_a_profile_with_endpoint_url_ca_bundle_and_region(prod: Production, tmp_path: Path) -> None:
    """The profile README's Production section makes for the AWS CLI works for
    keycask as it is: nothing else on the command line or in the environment."""
    home = tmp_path / "h"
    aws = home / ".aws"
    aws.mkdir(parents=True)
    _admin_credentials(prod, aws / "credentials")
    (aws / "config").write_text(
        "[profile keycask-admin]\nregion = us-east-1\n"
        f"endpoint_url = {prod.endpoint}\nca_bundle = {prod.cert}\n"
    )
    env = {"AWS_PROFILE": "keycask-admin"}
    made = _run(home, "principals", "create", "by-profile", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert "arn:aws:iam::000000000000:user/by-profile" in _listed(
        _run(home, "principals", "list", "--json", env=env)
    )
    # --profile names it as well.
    assert _run(home, "principals", "list", "--profile", "keycask-admin").returncode == 0


def test_credentials_in_the_environment(prod: Production, tmp_path: Path) -> None:
    admin = prod.init["admin"]
    env = {
        "AWS_ACCESS_KEY_ID": admin["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": admin["secret_access_key"],
        "KEYCASK_ADDR": prod.endpoint,
        "KEYCASK_CACERT": str(prod.cert),
    }
    made = _run(tmp_path / "h", "principals", "create", "by-keys", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert "arn:aws:iam::000000000000:user/by-keys" in _listed(
        _run(tmp_path / "h", "principals", "list", "--json", env=env)
    )
    # Wrong keys are the server's refusal, not a local guess.
    env["AWS_SECRET_ACCESS_KEY"] = "x" * 40
    refused = _run(tmp_path / "h", "principals", "list", env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("keycask: InvalidSignatureException: "), refused.stderr


def test_no_credentials_is_a_usage_error_naming_the_ways(tmp_path: Path) -> None:
    done = _run(tmp_path / "h", "principals", "list", env={"KEYCASK_ADDR": "http://127.0.0.1:1"})
    assert done.returncode == 2, done.stderr
    assert "no AWS credentials" in done.stderr and "AWS_PROFILE" in done.stderr


def test_operator_commands_take_the_same_ca_options(prod: Production, tmp_path: Path) -> None:
    token = {"KEYCASK_OPERATOR_TOKEN": prod.token}
    for env in (
        {"AWS_CA_BUNDLE": str(prod.cert), "KEYCASK_ADDR": prod.endpoint},
        {"KEYCASK_CACERT": str(prod.cert), "KEYCASK_ADDR": prod.endpoint},
    ):
        done = _run(tmp_path / "h", "operator", "status", "--json", env={**env, **token})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sealed"] is False
    flags = ["--endpoint-url", prod.endpoint, "--ca-file", str(prod.cert)]
    done = _run(tmp_path / "h", "operator", "status", "--json", *flags, env=token)
    assert done.returncode == 0, done.stderr


def test_a_profile_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    for args, env, source in (
        (["--profile", "nope"], {}, "--profile"),
        ([], {"AWS_PROFILE": "nope"}, "env AWS_PROFILE"),
    ):
        for command in (["principals", "list"], ["config", "show"]):
            done = _run(tmp_path / "h", *command, *args, env=env)
            assert done.returncode == 2, done.stderr
            assert f"the AWS profile 'nope' ({source}) is in neither" in done.stderr
            assert "Traceback" not in done.stderr
