"""A production server says in its log when it is unsealed and when it is
sealed, one line each time, and never the secret that opened it; and a new
passphrase too short to withstand an offline guess is refused at init."""

from __future__ import annotations

from pathlib import Path

from production import Production, keycask, secret_file

PASSPHRASE = "correct horse battery staple log"


def test_unseal_and_seal_are_logged_once_each_without_the_secret(tmp_path: Path) -> None:
    prod = Production(tmp_path / "data", tls=False)
    passphrase = secret_file(tmp_path / "passphrase", PASSPHRASE)
    prod.initialise("--seal", "passphrase", "--passphrase-file", str(passphrase))
    prod.start()
    try:
        assert prod.status()["sealed"] is True
        assert "unsealed" not in prod.log()

        prod.operator("unseal", "--json", "--passphrase-file", str(passphrase))
        assert prod.status()["sealed"] is False
        assert prod.log().count("unsealed with the passphrase seal") == 1, prod.log()

        prod.operator("seal", "--json")
        assert prod.status()["sealed"] is True
        assert prod.log().count("sealed by an operator") == 1, prod.log()

        prod.operator("unseal", "--json", "--passphrase-file", str(passphrase))
        log = prod.log()
        assert log.count("unsealed with the passphrase seal") == 2, log
        # In order: unsealed, sealed, unsealed.
        lines = [line for line in log.splitlines() if "sealed" in line and "keycask:" in line]
        assert [("operator" in line) for line in lines] == [False, True, False], lines
        assert "correct horse" not in log and "Traceback" not in log, log
    finally:
        prod.stop()
    assert "correct horse" not in prod.log()


def test_a_one_character_passphrase_is_refused_at_init(tmp_path: Path) -> None:
    weak = secret_file(tmp_path / "weak", "Z")
    data_dir = tmp_path / "data"
    refused = keycask(
        "operator", "init", "--data-dir", str(data_dir), "--json",
        "--seal", "passphrase", "--passphrase-file", str(weak),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0, refused.stdout
    assert "has 1 character; it needs at least 16" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (data_dir / "seal.json").exists()
    help_text = keycask("operator", "init", "--help").stdout
    assert "at least 16" in " ".join(help_text.split()), help_text
