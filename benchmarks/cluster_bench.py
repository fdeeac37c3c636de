"""What several keycask nodes on one PostgreSQL cost and give, in one run.

    python benchmarks/cluster_bench.py                 # medians of 3 runs of 5 s
    python benchmarks/cluster_bench.py --quick         # one 2-second run per cell

Three setups, measured with the same load generator and scenarios as the main
table (benchmarks/run.py), each run of each scenario taken in turn on every
setup so that the machine's drift hits them alike:

- ``1 node, SQLite``: the embedded default, as in the main table;
- ``1 node, PostgreSQL``: the same node with KEYCASK_STORAGE set;
- ``3 nodes, PostgreSQL``: three --dev nodes on one store, the load
  generator's connections spread round robin over their three endpoints.

Each PostgreSQL setup gets a fresh schema of its own (``search_path`` in the
URI's ``options``), created here and dropped at the end. The DSN comes from
``--dsn``, else KEYCASK_BENCH_PG_DSN or KEYCASK_TEST_PG_DSN, else
postgresql://postgres@127.0.0.1:5432/test.

Beside requests/s and latency, each cell gives the CPU time spent per answered
request by the keycask processes and by every PostgreSQL process of the
server (read from /proc), which says where the work goes even when the
throughput is capped by cores the load generator shares.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import uvloop
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench
import targets
from loadgen import Endpoint, Result, run_spread

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TICK = os.sysconf("SC_CLK_TCK")


# --- PostgreSQL schemas -------------------------------------------------------


def with_search_path(uri: str, schema: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["options"] = f"-csearch_path={schema}"
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@contextmanager
def schemas(dsn: str, count: int) -> Iterator[list[tuple[str, str]]]:
    """``count`` (schema, DSN) pairs, each a fresh schema, dropped afterwards."""
    names = [f"kc_bench_{secrets.token_hex(6)}" for _ in range(count)]
    made: list[str] = []
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
                made.append(name)
        yield [(name, with_search_path(dsn, name)) for name in names]
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for name in made:
                admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


# --- CPU accounting -----------------------------------------------------------


def _cpu_ticks(pids: Sequence[int] | None = None, comm: str | None = None) -> dict[int, int]:
    """utime + stime of the given processes, or of every process named ``comm``."""
    paths = (
        [Path(f"/proc/{p}/stat") for p in pids]
        if pids is not None
        else list(Path("/proc").glob("[0-9]*/stat"))
    )
    ticks = {}
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if comm is not None and name != comm:
            continue
        fields = text.rsplit(")", 1)[1].split()
        ticks[int(path.parent.name)] = int(fields[11]) + int(fields[12])
    return ticks


_STORE_STATS = """
SELECT coalesce(sum(idx_scan + seq_scan) FILTER (WHERE relname = 'keycask_kv'), 0),
       coalesce(sum(n_tup_upd) FILTER (WHERE relname = 'keycask_epoch'), 0)
FROM pg_stat_user_tables WHERE schemaname = %s
"""


def store_stats(dsn: str, schema: str | None) -> tuple[int, int]:
    """(scans of keycask_kv, commits) of one schema so far. PostgreSQL's
    statistics lag by up to a second, which a run of thousands of requests
    absorbs."""
    if schema is None:
        return 0, 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(_STORE_STATS, (schema,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _delta_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    return sum(t - before.get(p, 0) for p, t in after.items()) / TICK


# --- setups and scenarios -----------------------------------------------------


@dataclass
class Setup:
    name: str
    nodes: list[targets.Target]
    stop: Callable[[], None]
    schema: str | None = None  # its PostgreSQL schema, if any

    def endpoints(self) -> list[Endpoint]:
        return [n.endpoint() for n in self.nodes]

    def pids(self) -> list[int]:
        found = []
        for node in self.nodes:
            assert node.proc is not None
            found += [node.proc.pid, *targets._children(node.proc.pid)]
        return found

    def rss_kib(self) -> int:
        return sum(n.rss_kib() for n in self.nodes)


@dataclass(frozen=True)
class Prepared:
    base: bench.Prepared
    tag_arn: str


def prepare(endpoint: Endpoint) -> Prepared:
    base = bench.prepare(endpoint)
    tag_arn = bench._client(endpoint).create_key(Description="bench tags")["KeyMetadata"]["Arn"]
    return Prepared(base, tag_arn)


def tag_body(p: Prepared, i: int) -> tuple[str, bytes]:
    # One tag key, 16 values: every request is a real write (a new value) on
    # one key, and the key never reaches the 50-tag quota.
    return "TagResource", bench._body(
        {"KeyId": p.tag_arn, "Tags": [{"TagKey": "bench", "TagValue": f"v{i}"}]}
    )


def _main(name: str) -> Callable[[Prepared], list[tuple[str, bytes]]]:
    return lambda p: bench.SCENARIOS[name](p.base)


SCENARIOS: dict[str, Callable[[Prepared], list[tuple[str, bytes]]]] = {
    "Encrypt 4 KiB": _main("Encrypt 4 KiB"),
    "Decrypt 4 KiB": _main("Decrypt 4 KiB"),
    "GenerateDataKey": _main("GenerateDataKey"),
    "Mixed 70/20/10": _main("Mixed 70/20/10"),
    "TagResource": lambda p: [tag_body(p, i) for i in range(16)],
    "CreateKey": lambda p: [("CreateKey", bench._body({"Description": "bench"}))],
}


@dataclass
class Sample:
    result: Result
    server_cpu: float  # seconds, keycask processes
    pg_cpu: float  # seconds, every PostgreSQL process
    wall: float
    reads: int  # scans of keycask_kv (reads that missed the nodes' caches, and writes)
    commits: int


def measure(
    setup: Setup, pools: list[list[bytes]], connections: int, duration: float, dsn: str
) -> Sample:
    endpoints = setup.endpoints()
    destinations = [(e.host, e.port, pool) for e, pool in zip(endpoints, pools, strict=True)]
    pids = setup.pids()
    stats0 = store_stats(dsn, setup.schema)
    server0, pg0 = _cpu_ticks(pids), _cpu_ticks(comm="postgres")
    begin = time.perf_counter()
    result = uvloop.run(run_spread(destinations, connections=connections, duration=duration))
    wall = time.perf_counter() - begin
    server1, pg1 = _cpu_ticks(pids), _cpu_ticks(comm="postgres")
    if setup.schema is not None:
        time.sleep(1.1)  # busy backends report their statistics once a second
    stats1 = store_stats(dsn, setup.schema)
    return Sample(
        result,
        _delta_seconds(server0, server1),
        _delta_seconds(pg0, pg1),
        wall,
        stats1[0] - stats0[0],
        stats1[1] - stats0[1],
    )


@dataclass
class Row:
    scenario: str
    setup: str
    cell: bench.Cell
    server_us: float  # CPU per answered request, median over runs
    pg_us: float
    reads_per_1k: float  # keycask_kv scans per 1,000 answers (PostgreSQL only)
    commits_per_1k: float
    rss_kib: int


def summarise(scenario: str, setup: Setup, samples: list[Sample]) -> Row:
    def per_request(cpu: Callable[[Sample], float]) -> float:
        return statistics.median(
            cpu(s) / s.result.completed * 1e6 for s in samples if s.result.completed
        )

    return Row(
        scenario,
        setup.name,
        bench.median_cell([s.result for s in samples]),
        per_request(lambda s: s.server_cpu),
        per_request(lambda s: s.pg_cpu),
        # Summed over the runs: a count reported late by one run's backends
        # lands in the next run of the same setup.
        1000 * sum(s.reads for s in samples) / max(1, sum(s.result.completed for s in samples)),
        1000 * sum(s.commits for s in samples) / max(1, sum(s.result.completed for s in samples)),
        setup.rss_kib(),
    )


def start_setups(stores: list[tuple[str, str]]) -> list[Setup]:
    started: list[Setup] = []
    try:
        one = targets.keycask().start()
        started.append(Setup("1 node, SQLite", [one], one.stop))
        (schema1, dsn1), (schema3, dsn3) = stores
        pg = targets.keycask(storage=dsn1).start()
        started.append(Setup("1 node, PostgreSQL", [pg], pg.stop, schema1))
        cluster = targets.Cluster(dsn3, size=3).start()
        started.append(Setup("3 nodes, PostgreSQL", cluster.nodes, cluster.stop, schema3))
    except BaseException:
        for s in started:
            s.stop()
        raise
    return started


def table(setups: list[Setup], args: argparse.Namespace) -> list[Row]:
    prepared = {s.name: prepare(s.endpoints()[0]) for s in setups}
    rows: list[Row] = []
    for scenario, build in SCENARIOS.items():
        if args.scenarios and scenario not in args.scenarios:
            continue
        pools = {
            s.name: [bench.pool(e, build(prepared[s.name])) for e in s.endpoints()] for s in setups
        }
        samples: dict[str, list[Sample]] = {s.name: [] for s in setups}
        for _ in range(args.runs):
            for s in setups:
                samples[s.name].append(
                    measure(s, pools[s.name], args.connections, args.duration, args.dsn)
                )
        for s in setups:
            row = summarise(scenario, s, samples[s.name])
            rows.append(row)
            c = row.cell
            print(
                f"{scenario:16} {s.name:20} {c.rate:8.0f}/s p50 {c.p50:7.2f} ms "
                f"p99 {c.p99:7.2f} ms errors {c.errors} keycask {row.server_us:5.0f} us/req "
                f"PostgreSQL {row.pg_us:5.0f} us/req store reads/1k {row.reads_per_1k:.1f} "
                f"commits/1k {row.commits_per_1k:.1f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    by = {(r.scenario, r.setup): r.cell.rate for r in rows}
    print(f"\nMachine: {bench.machine()}")
    print(
        f"Command: python benchmarks/cluster_bench.py --connections {args.connections} "
        f"--duration {args.duration} --runs {args.runs}"
    )
    print(
        f"Medians of {args.runs} runs of {args.duration} s, {args.connections} connections "
        "(spread round robin over the nodes). CPU columns: CPU time per answered request, "
        "keycask processes and all PostgreSQL processes. Store columns: scans of keycask_kv "
        "(reads that missed the caches, and writes) and commits per 1,000 answers, from "
        "pg_stat_user_tables (approximate: backends report once a second).\n"
    )
    print(
        "| scenario | setup | requests/s | p50 ms | p99 ms | errors | keycask CPU us/req "
        "| PostgreSQL CPU us/req | store reads /1k | commits /1k | RSS MiB "
        "| vs 1 node SQLite | vs 1 node PG |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def pg_only(value: float) -> str:
        return "-" if r.setup.endswith("SQLite") else f"{value:,.1f}"

    for r in rows:
        lite = by.get((r.scenario, "1 node, SQLite"))
        pg = by.get((r.scenario, "1 node, PostgreSQL"))
        c = r.cell
        vs_lite = f"{c.rate / lite:.2f}x" if lite else "-"
        vs_pg = f"{c.rate / pg:.2f}x" if pg else "-"
        print(
            f"| {r.scenario} | {r.setup} | {c.rate:,.0f} | {c.p50:.2f} | {c.p99:.2f} | "
            f"{c.errors} | {r.server_us:.0f} | {r.pg_us:.0f} | {pg_only(r.reads_per_1k)} | "
            f"{pg_only(r.commits_per_1k)} | {r.rss_kib / 1024:.0f} | "
            f"{vs_lite} | {vs_pg} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("KEYCASK_BENCH_PG_DSN")
        or os.environ.get("KEYCASK_TEST_PG_DSN")
        or DEFAULT_DSN,
        help="a PostgreSQL URI; the benchmark creates and drops its own schemas in it",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", nargs="*", default=None, choices=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="one 2-second run per cell")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 2.0
    with schemas(args.dsn, 2) as dsns:
        setups = start_setups(dsns)
        try:
            rows = table(setups, args)
        finally:
            for s in setups:
                s.stop()
    print_table(rows, args)


if __name__ == "__main__":
    main()
