"""``keycask config show`` says what every client command will connect with
(server, CA, profile, credentials source, region, operator token source) and
where each came from, never a secret; ``keycask completion bash`` completes
in a real bash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Server


def _show(cwd: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    done = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "config", "show", "--json", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, "HOME": str(cwd), **env},
        timeout=60,
        check=True,
    )
    text = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "config", "show", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, "HOME": str(cwd), **env},
        timeout=60,
        check=True,
    ).stdout
    shown: dict[str, Any] = json.loads(done.stdout)
    shown["text"] = text
    return shown


def test_a_dev_data_dir(fresh_server: Server, tmp_path: Path) -> None:
    akid, secret = fresh_server.credentials()
    shown = _show(tmp_path, "--data-dir", str(fresh_server.data_dir), env={})
    assert shown["endpoint"] == {"value": fresh_server.endpoint, "source": "profile endpoint_url"}
    assert shown["profile"] == {"value": "keycask", "source": "the data dir's dev profile"}
    assert shown["credentials"]["source"] == "shared-credentials-file"
    assert shown["credentials"]["value"] == "*" * 16 + akid[-4:]
    assert shown["ca_file"] == {"value": None, "source": "the system's CAs"}
    assert shown["region"]["value"] == "us-east-1"
    assert shown["operator_token"] == {"value": None, "source": "none"}
    assert secret not in json.dumps(shown) and akid not in json.dumps(shown)
    assert f"endpoint:       {fresh_server.endpoint}  (profile endpoint_url)" in shown["text"]
    # What it shows is what a call uses: the same resolution lists principals.
    listed = fresh_server.cli("principals", "list")
    assert "arn:aws:iam::000000000000:user/admin  (administrator)" in listed.stdout


def test_production_settings_from_the_environment(tmp_path: Path) -> None:
    token = "kco_" + "t" * 52
    secret = "s" * 40
    env = {
        "KEYCASK_ADDR": "https://kms.internal:9567",
        "AWS_CA_BUNDLE": "/etc/keycask/ca.pem",
        "AWS_ACCESS_KEY_ID": "AKKCEXAMPLEEXAMPLE12",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "KEYCASK_OPERATOR_TOKEN": token,
    }
    shown = _show(tmp_path, env=env)
    assert shown["endpoint"] == {"value": "https://kms.internal:9567", "source": "env KEYCASK_ADDR"}
    assert shown["ca_file"] == {"value": "/etc/keycask/ca.pem", "source": "env AWS_CA_BUNDLE"}
    assert shown["credentials"] == {"value": "****************LE12", "source": "env"}
    assert shown["profile"]["value"] is None
    assert shown["region"] == {"value": "eu-west-1", "source": "env AWS_DEFAULT_REGION"}
    assert shown["operator_token"] == {"value": "(set)", "source": "env KEYCASK_OPERATOR_TOKEN"}
    assert token not in json.dumps(shown) and secret not in json.dumps(shown)

    # A profile in ~/.aws, named by AWS_PROFILE; flags win over everything.
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[ops]\naws_access_key_id = AKKCPROFILEPROFIRO34\naws_secret_access_key = " + secret
    )
    (aws / "config").write_text(
        "[profile ops]\nregion = us-west-2\nendpoint_url = https://ops.internal:9567\n"
        "ca_bundle = /etc/keycask/ops.pem\n"
    )
    shown = _show(tmp_path, env={"AWS_PROFILE": "ops"})
    assert shown["profile"] == {"value": "ops", "source": "env AWS_PROFILE"}
    assert shown["endpoint"] == {
        "value": "https://ops.internal:9567",
        "source": "profile endpoint_url",
    }
    assert shown["ca_file"] == {"value": "/etc/keycask/ops.pem", "source": "profile ca_bundle"}
    assert shown["credentials"] == {
        "value": "****************RO34",
        "source": "shared-credentials-file",
    }
    assert shown["region"] == {"value": "us-west-2", "source": "profile"}
    flags = ["--endpoint-url", "https://other:1", "--ca-file", "/x.pem", "--profile", "ops"]
    shown = _show(tmp_path, *flags, env={"KEYCASK_ADDR": "https://ignored:2"})
    assert shown["endpoint"] == {"value": "https://other:1", "source": "--endpoint-url"}
    assert shown["ca_file"] == {"value": "/x.pem", "source": "--ca-file"}
    assert shown["profile"] == {"value": "ops", "source": "--profile"}


def test_bash_completion_completes_the_tree(tmp_path: Path) -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    script = tmp_path / "keycask.bash"
    script.write_text(generated)

    def complete(*words: str) -> list[str]:
        quoted = " ".join(f"'{w}'" for w in words)
        done = subprocess.run(
            ["bash", "-c", f'source {script}; COMP_WORDS=(keycask {quoted}); '
             f'COMP_CWORD={len(words)}; _keycask; printf "%s\\n" "${{COMPREPLY[@]}}"'],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.split()

    assert complete("oper") == ["operator"]
    assert complete("principals", "access-keys", "") == [
        "create", "list", "activate", "deactivate", "delete", "-h", "--help",
    ]  # fmt: skip
    # An option's value is skipped over, not taken for a command.
    assert complete("operator", "init", "--data-dir", "/srv/k", "--sh") == [
        "--shares",
        "--share-keys",
    ]
    assert "unseal" in complete("operator", "")
