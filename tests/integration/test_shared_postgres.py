"""The PostgreSQL the tests use: the machine's when ``KEYCASK_TEST_PG_DSN``
names it (CI), else the test run's private server (``tests/pgserver.py``),
so that no PostgreSQL test is ever skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg

from pgserver import DSN_ENV, RUN_ENV, shared_dsn


def test_the_tests_get_the_given_database_or_the_runs_own() -> None:
    dsn = shared_dsn()
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    data_directory = Path(str(row[0]))
    given = os.environ.get(DSN_ENV)
    if given:
        assert dsn == given
        return
    # No DSN given: the server is this run's, in the temp dir its record names,
    # and every later call (any xdist worker) gets the same one.
    record = json.loads((Path(os.environ[RUN_ENV]) / "server.json").read_text())
    assert record["dsn"] == dsn
    assert data_directory == Path(record["base"]) / "data"
    assert shared_dsn() == dsn
