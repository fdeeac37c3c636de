"""The README's "Rotation and deletion" commands, run as written.

Each line of the README's code block runs in bash from the repository root,
with only the two exported files the server prints, ``KEYCASK_DATA_DIR``
pointing at the test server and ``$KEY`` set; after the lines that promise
something, the test checks that it happened.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import Server

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _section_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## Rotation and deletion", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the README section has no sh code block"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def _run(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_readme_rotation_and_deletion_commands(fresh_server: Server) -> None:
    server = fresh_server
    kms: Any = server.client()
    key = kms.create_key(Description="readme lifecycle")["KeyMetadata"]["KeyId"]
    before = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    env.update(
        AWS_CONFIG_FILE=str(server.data_dir / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
        KEYCASK_DATA_DIR=str(server.data_dir),
        KEY=key,
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    commands = _section_commands()
    assert any("advance-clock 91d" in c for c in commands)
    for line in commands:
        proc = _run(line, env)
        assert proc.returncode == 0, f"{line!r} failed: {proc.stderr}"
        if "advance-clock 91d" in line:
            rotations = kms.list_key_rotations(KeyId=key)["Rotations"]
            assert [r["RotationType"] for r in rotations] == ["ON_DEMAND", "AUTOMATIC"]
            assert kms.decrypt(CiphertextBlob=before)["Plaintext"] == b"kept"
        if "cancel-key-deletion" in line:
            assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    # The last command destroyed the key and all its material.
    try:
        kms.describe_key(KeyId=key)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NotFoundException"
    else:
        raise AssertionError("the key still exists after its deletion window")
    db = server.data_dir / "keycask.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        left = [p for (p,) in conn.execute("SELECT path FROM kv") if key in p]
    assert left == [f"gone/{key}"]  # only the tombstone of a deleted key
