"""Where ``make interop`` puts the clients that run as separate programs, and
the one rule about them: missing means the test FAILS (never skips), with
the command that builds them."""

from __future__ import annotations

from pathlib import Path

import pytest
from docwalk import VENV

ESDK_CLI = VENV / "interop" / "esdk-cli" / "bin" / "aws-encryption-cli"
MPL_PYTHON = VENV / "interop" / "mpl" / "bin" / "python"
MPL_KEYRING = Path(__file__).resolve().parent / "interop" / "mpl_keyring.py"


def require_interop() -> None:
    for what, path in (("aws-encryption-cli", ESDK_CLI), ("the MPL venv's python", MPL_PYTHON)):
        if not path.exists():
            pytest.fail(f"{what} is missing ({path}): run `make interop`")
