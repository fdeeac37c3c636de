"""What the production command line tells an operator (issue 24, items 8, 9
and 11): the help and docs that name ``KEYCASK_PKCS11_MODULES`` for a rekey
to PKCS#11, the hint of a server started on a PostgreSQL data dir without
its store, and ``audit verify``'s counts in good English."""

from __future__ import annotations

import re
from pathlib import Path

from cluster import pg_schema
from production import free_port, keycask, secret_file

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_help_of_a_rekey_to_pkcs11_names_the_modules_variable() -> None:
    rekey = keycask("operator", "rekey", "--help").stdout
    server = " ".join(keycask("server", "--help").stdout.split())
    assert "KEYCASK_PKCS11_MODULES" in rekey, rekey
    assert "KEYCASK_PKCS11_MODULES" in server and "operator rekey --seal pkcs11" in server, server


def test_operations_section_5_sets_the_modules_before_the_pkcs11_rekey() -> None:
    text = (DOCS / "operations.md").read_text()
    section = text[text.index("## 5. Rekey") : text.index("## 6.")]
    rekey = section.index("keycask operator rekey --seal pkcs11")
    assert re.search(r"KEYCASK_PKCS11_MODULES=\S+ keycask server", section[:rekey]), section


def test_a_server_on_a_postgresql_data_dir_without_its_store_says_pass_storage(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    passphrase = secret_file(tmp_path / "pass", "correct horse battery staple")
    with pg_schema() as dsn:
        keycask(
            "operator", "init", "--data-dir", str(data), "--storage", dsn,
            "--seal", "passphrase", "--passphrase-file", str(passphrase),
        )  # fmt: skip
        done = keycask(
            "server", "--data-dir", str(data), "--listen", f"127.0.0.1:{free_port()}",
            check=False, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done
    assert "--storage" in done.stderr and "KEYCASK_STORAGE" in done.stderr, done.stderr
    assert "operator init" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_audit_verify_counts_one_record_in_one_segment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    passphrase = secret_file(tmp_path / "pass", "correct horse battery staple")
    keycask(
        "operator", "init", "--data-dir", str(data),
        "--seal", "passphrase", "--passphrase-file", str(passphrase),
    )  # fmt: skip
    done = keycask("audit", "verify", "--data-dir", str(data), "--passphrase-file", str(passphrase))
    assert "ok: 1 record in 1 segment\n" in done.stdout, done.stdout
