"""What the operator and dev commands print, as an operator reads it:
``operator status`` in words (true/false, no share progress once unsealed),
``dev advance-clock`` as a readable duration and whole seconds, and
``operator init --output FILE`` keeping every secret in one owner-only file
instead of the terminal (or a world-readable redirect)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

from production import Production, keycask

from conftest import Server
from keycask.cli.dev import format_duration, parse_duration


def test_init_output_writes_every_secret_to_a_new_0600_file(tmp_path: Path) -> None:
    prod = Production(tmp_path / "data", tls=False)
    out = tmp_path / "init.json"
    done = keycask(
        "operator", "init", "--data-dir", str(prod.data_dir), "--seal", "shamir",
        "--shares", "3", "--threshold", "2", "--output", str(out),
    )  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    result = json.loads(out.read_text())
    assert len(result["shares"]) == 3 and result["threshold"] == 2
    secrets = [*result["shares"], result["operator_token"]]
    secrets.append(result["admin"]["secret_access_key"])
    assert not any(secret in done.stdout + done.stderr for secret in secrets)
    assert str(out) in done.stdout and "0600" in done.stdout
    # The file is what --json prints: the server opens with its shares.
    prod.init = result
    prod.start()
    try:
        prod.unseal_with(prod.shares[:2])
        assert prod.client().list_keys()["Keys"] == []
    finally:
        prod.stop()

    # An existing file is refused before anything is made.
    again = keycask(
        "operator", "init", "--data-dir", str(tmp_path / "other"), "--output", str(out),
        check=False,
    )  # fmt: skip
    assert again.returncode == 1, again.stderr
    assert "already exists" in again.stderr
    assert not (tmp_path / "other").exists()
    # --json with --output prints where, not what.
    summary = keycask(
        "operator", "init", "--data-dir", str(tmp_path / "third"), "--shares", "3",
        "--threshold", "2", "--output", str(tmp_path / "third.json"), "--json",
    )  # fmt: skip
    assert json.loads(summary.stdout) == {
        "seal": "shamir",
        "data_dir": str((tmp_path / "third").resolve()),
        "output": str(tmp_path / "third.json"),
    }


def test_init_help_suggests_output(tmp_path: Path) -> None:
    text = " ".join(keycask("operator", "init", "--help").stdout.split())
    assert "--output FILE" in text and "0600" in text


def _status_lines(prod: Production) -> dict[str, str]:
    text = prod.operator("status").stdout
    assert "True" not in text and "False" not in text, text
    lines = dict(line.split(":", 1) for line in text.splitlines())
    return {name: value.strip() for name, value in lines.items()}


def test_operator_status_in_words(tmp_path: Path) -> None:
    prod = Production(tmp_path / "data")
    prod.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    prod.start()
    try:
        sealed = _status_lines(prod)
        assert sealed["sealed"] == "true"
        assert sealed["progress"] == "0/2 shares given"
        prod.unseal(prod.shares[0])
        assert _status_lines(prod)["progress"] == "1/2 shares given"
        prod.unseal(prod.shares[1])
        unsealed = _status_lines(prod)
        assert unsealed["sealed"] == "false"
        assert "progress" not in unsealed
        assert unsealed["rewrite_pending"] == "false"
        assert unsealed["term"] == "1" and unsealed["keys"] == "0"
        assert unsealed["jobs"] == "ok"
        # A single node runs the scheduled jobs itself (from its first tick on).
        deadline = time.monotonic() + 20
        while _status_lines(prod)["runs_jobs"] != "true (this node runs the scheduled jobs)":
            assert time.monotonic() < deadline, _status_lines(prod)
            time.sleep(0.2)
        assert prod.status()["runs_jobs"] is True
    finally:
        prod.stop()


def test_advance_clock_prints_a_readable_duration(fresh_server: Server) -> None:
    done = fresh_server.cli("dev", "advance-clock", "182d")
    assert "182d (15724800 s) ahead of the wall clock" in done.stdout, done.stdout
    assert "e+" not in done.stdout
    answer: dict[str, Any] = json.loads(
        fresh_server.cli("dev", "advance-clock", "1h30m", "--json").stdout
    )
    assert answer["OffsetSeconds"] == 182 * 86400 + 5400
    assert {"Now", "OffsetSeconds", "JobsRun"} <= set(answer)
    help_text = " ".join(fresh_server.cli("dev", "advance-clock", "--help").stdout.split())
    assert "survives restarts" in help_text and "cannot be undone" in help_text


def test_durations_round_trip() -> None:
    for text, seconds in (
        ("182d", 15724800),
        ("1d12h30m", 131400),
        ("45s", 45),
        ("1h1s", 3601),
        ("0s", 0),
    ):
        assert format_duration(seconds) == text
        assert parse_duration(text) == seconds
    assert format_duration(59.6) == "1m"
