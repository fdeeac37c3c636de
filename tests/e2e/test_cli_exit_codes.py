"""The command line's one exit-status convention (``keycask --help`` says
it): 0 ok, 1 the operation failed, 2 usage error; each on a real command,
failures as one ``keycask: ...`` line and never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from production import keycask


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_help_documents_the_convention() -> None:
    done = keycask("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "exit status:" in text
    assert "0 ok" in text and "1 the operation failed" in text and "2 usage error" in text


def test_ok_is_0() -> None:
    example = Path(__file__).resolve().parents[2] / "docs/examples/tenant-data.key-policy.json"
    done = keycask(
        "policy", "lint", "--file", str(example), "--tag", "multi-tenant=true", check=False
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_failed_operation_is_1(tmp_path: Path) -> None:
    # The command is well formed; the server it must reach is not there.
    done = keycask(
        "operator", "status", "--addr", f"http://127.0.0.1:{_closed_port()}",
        "--data-dir", str(tmp_path),
        env={"KEYCASK_OPERATOR_TOKEN": "kco_" + "a" * 52},
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("keycask: cannot reach") and "Traceback" not in done.stderr


def test_a_usage_error_is_2(tmp_path: Path) -> None:
    # argparse's own refusal ...
    flag = keycask("operator", "init", "--seal", "no-such-seal", check=False)
    assert flag.returncode == 2 and "invalid choice" in flag.stderr, flag.stderr
    # ... and a data directory that cannot be used as given.
    (tmp_path / "empty").mkdir()
    directory = keycask("audit", "verify", "--data-dir", str(tmp_path / "empty"), check=False)
    assert directory.returncode == 2, directory.stdout + directory.stderr
    assert directory.stderr.startswith("keycask: ") and "not a keycask data dir" in directory.stderr
    assert "Traceback" not in directory.stderr
