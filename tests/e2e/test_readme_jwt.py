"""The README's "Signing a JWT" commands, run as written: the AWS CLI signs
through keycask and openssl verifies with the public key alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Server

REPO = Path(__file__).resolve().parents[2]


def _block() -> str:
    section = (REPO / "README.md").read_text().split("## Signing a JWT", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_readme_jwt_commands(server: Server, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    env.update(
        AWS_CONFIG_FILE=str(server.data_dir / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    script = "set -euo pipefail\n" + _block()
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("Verified OK"), proc.stdout
    # And it can fail: one changed byte of the signed input is refused.
    signed = tmp_path / "jwt-input"
    signed.write_bytes(signed.read_bytes()[:-1] + b"X")
    check = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "jwt-sig.der",
         "jwt-input"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode != 0
    assert "Verification failure" in check.stdout + check.stderr
