"""The safe way to hand out a production store's secrets, end to end with
the real CLI: init writes each secret to its own 0600 file and seals each
share to one operator's public key; each operator opens only their own
share; the token comes from an owner-only file (one others can read is
refused); a rekey hands the new shares back sealed the same way, so whoever
runs it cannot read them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from production import Production, keycask

pytestmark = pytest.mark.slow


def _operator_keys(base: Path, count: int) -> tuple[list[Path], list[Path]]:
    """Key pairs made with OpenSSL: X25519 and RSA, alternately."""
    privates, publics = [], []
    for n in range(1, count + 1):
        private, public = base / f"op{n}.key", base / f"op{n}.pem"
        algorithm = (
            ["-algorithm", "X25519"]
            if n % 2
            else ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        )
        subprocess.run(["openssl", "genpkey", *algorithm, "-out", str(private)], check=True)
        private.chmod(0o600)
        subprocess.run(
            ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
        )
        privates.append(private)
        publics.append(public)
    return privates, publics


def _decrypt(prod: Production, private: Path, sealed: Path) -> str:
    done = prod.operator("decrypt-share", "--private-key", str(private), str(sealed))
    return done.stdout.strip()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Production, list[Path], list[Path], Path]]:
    keys = tmp_path / "keys"
    keys.mkdir()
    privates, publics = _operator_keys(keys, 3)
    prod = Production(tmp_path / "data")
    out = tmp_path / "secrets"
    init = prod.initialise(
        "--seal", "shamir", "--shares", "3", "--threshold", "2",
        "--share-keys", ",".join(map(str, publics)), "--output-dir", str(out),
    )  # fmt: skip
    yield prod, privates, publics, out
    if prod.proc is not None:
        prod.stop()
    assert init


def test_init_writes_private_files_and_sealed_shares(
    setup: tuple[Production, list[Path], list[Path], Path], tmp_path: Path
) -> None:
    prod, privates, publics, out = setup
    init = prod.init
    # No secret on stdout: paths only.
    assert init["encrypted"] is True and init["output_dir"] == str(out)
    assert init["shares"] == [str(out / f"share-{n}.enc") for n in (1, 2, 3)]
    assert "secret_access_key" not in init["admin"]
    assert (out.stat().st_mode & 0o777) == 0o700
    for path in out.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o600, path
    token = (out / "operator-token").read_text().strip()
    assert token.startswith("kco_")
    assert "aws_secret_access_key = " in (out / "admin-credentials").read_text()

    # Each operator opens their own share only.
    shares = [_decrypt(prod, privates[n], out / f"share-{n + 1}.enc") for n in range(3)]
    assert all(s.startswith("kcs1-2-") for s in shares)
    wrong = prod.operator(
        "decrypt-share", "--private-key", str(privates[0]), str(out / "share-2.enc"), check=False
    )
    assert wrong.returncode != 0 and "kcs1" not in wrong.stdout

    # The token from its file; a copy others can read is refused.
    prod.init["operator_token"] = token
    prod.start()
    token_env = {"KEYCASK_OPERATOR_TOKEN": ""}
    by_file = ["--token-file", str(out / "operator-token")]
    open_copy = tmp_path / "token-copy"
    open_copy.write_text(token + "\n")
    open_copy.chmod(0o644)
    refused = prod.operator("status", "--token-file", str(open_copy), check=False, env=token_env)
    assert refused.returncode != 0 and "readable by others" in refused.stderr
    # The share straight from decrypt-share into unseal, never on a command line.
    for n in (0, 2):
        prod.operator("unseal", *by_file, stdin=shares[n] + "\n", env=token_env)
    assert (
        json.loads(prod.operator("status", "--json", *by_file, env=token_env).stdout)["sealed"]
        is False
    )

    # A second init into the same output dir never overwrites a secret.
    again = keycask(
        "operator", "init", "--data-dir", str(tmp_path / "data2"), "--seal", "shamir",
        "--shares", "3", "--threshold", "2", "--output-dir", str(out), check=False,
    )  # fmt: skip
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert (out / "operator-token").read_text().strip() == token

    # Rekey: each operator gives only their own current share (no one types
    # a threshold of them), the new shares come back sealed to the operators'
    # keys, and each operator gives their own new share back to verify it.
    rekey_out = tmp_path / "rekey"
    rekey_args = [
        "rekey", "--json", *by_file, "--seal", "shamir", "--shares", "3", "--threshold", "2",
        "--share-keys", ",".join(map(str, publics)), "--output-dir", str(rekey_out),
        "--one-share",
    ]  # fmt: skip
    first = json.loads(prod.operator(*rekey_args, stdin=shares[1] + "\n", env=token_env).stdout)
    assert first == {"seal": "shamir", "authorising": True, "progress": 1, "threshold": 2}
    assert "rekey" not in prod.status()
    started = json.loads(prod.operator(*rekey_args, stdin=shares[2] + "\n", env=token_env).stdout)
    assert started["encrypted"] is True and started["pending"] is True
    assert started["shares"] == [str(rekey_out / f"share-{n}.enc") for n in (1, 2, 3)]
    new = [_decrypt(prod, privates[n], rekey_out / f"share-{n + 1}.enc") for n in range(3)]
    assert not set(new) & set(shares)
    prod.operator("rekey-verify", *by_file, stdin=new[1] + "\n", env=token_env)
    done = prod.operator("rekey-verify", "--json", *by_file, stdin=new[2] + "\n", env=token_env)
    assert json.loads(done.stdout) == {"seal": "shamir", "settled": True}

    # An open current-shares file is refused too.
    current = tmp_path / "current"
    current.write_text("\n".join(new[:2]) + "\n")
    current.chmod(0o640)
    leaked = prod.operator(
        "rekey", *by_file, "--seal", "shamir", "--current-shares-file", str(current),
        check=False, env=token_env,
    )  # fmt: skip
    assert leaked.returncode != 0 and "readable by others" in leaked.stderr
