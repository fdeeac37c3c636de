"""``keycask operator renew-tls`` replaces the one-year certificate that
``operator init --tls-self-signed`` made: after a restart the server serves
the new one, clients trusting the new cert.pem reach it, and the old
cert.pem no longer vouches for it."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from production import Production, keycask


def test_renew_the_self_signed_certificate(tmp_path: Path) -> None:
    prod = Production(tmp_path / "data")
    prod.initialise("--seal", "shamir", "--shares", "3", "--threshold", "2")
    old = prod.cert.read_bytes()
    old_copy = tmp_path / "old-cert.pem"
    old_copy.write_bytes(old)
    prod.start()
    try:
        prod.unseal_with(prod.shares[:2])
        done = keycask(
            "operator", "renew-tls", "--data-dir", str(prod.data_dir), "--tls-ip", "127.0.0.1",
            "--days", "30",
        )  # fmt: skip
        assert "Restart the server" in done.stdout and "cert.pem" in done.stdout
        new = prod.cert.read_bytes()
        assert new != old
        assert stat.S_IMODE((prod.data_dir / "tls" / "key.pem").stat().st_mode) == 0o600
        certificate = x509.load_pem_x509_certificate(new)
        left = certificate.not_valid_after_utc - datetime.now(UTC)
        assert timedelta(days=29) < left <= timedelta(days=30)
        # The running server still serves the old one until it restarts.
        status = prod.operator("status", "--json", env={"KEYCASK_CACERT": str(old_copy)})
        assert '"sealed": false' in status.stdout
    finally:
        prod.stop()
    prod.start()
    try:
        prod.unseal_with(prod.shares[:2])  # trusts the data dir's (new) cert.pem
        stale = prod.operator("status", check=False, env={"KEYCASK_CACERT": str(old_copy)})
        assert stale.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in stale.stderr
    finally:
        prod.stop()


def test_renew_refuses_a_data_dir_without_one(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    done = keycask("operator", "renew-tls", "--data-dir", str(tmp_path / "data"), check=False)
    assert done.returncode == 2 and "has no self-signed certificate" in done.stderr
