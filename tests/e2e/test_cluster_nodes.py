"""The nodes of a PostgreSQL cluster record themselves in the store: each
node's KeycaskAdmin.ListNodes shows both, ready, and a clean stop; their
heartbeats move no cluster epoch (they are quiet: no cache drop anywhere)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from cluster import Cluster, pg_schema, poll


def _nodes(cluster: Cluster, at: int) -> dict[str, dict[str, Any]]:
    answer = cluster.call(cluster.nodes[at], "KeycaskAdmin.ListNodes", {})
    return {n["Name"]: n for n in answer["Nodes"]}


def _both(cluster: Cluster) -> dict[str, dict[str, Any]] | None:
    nodes = _nodes(cluster, 0)
    return nodes if len(nodes) == 2 else None


def _epoch(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT n FROM keycask_epoch").fetchone()
    assert row is not None
    return int(row[0])


def test_both_nodes_appear_and_their_heartbeats_are_quiet(tmp_path: Path) -> None:
    with pg_schema() as dsn:
        cluster = Cluster(tmp_path, dsn, size=2).start()
        try:
            a, b = cluster.nodes
            seen = poll("both nodes' entries", lambda: _both(cluster), 15, 0.3)
            assert {n["State"] for n in seen.values()} == {"ready"}
            assert {n["Address"] for n in seen.values()} == {a.endpoint, b.endpoint}
            assert len({n["NodeId"] for n in seen.values()}) == 2
            from_b = _nodes(cluster, 1)
            assert from_b.keys() == seen.keys()
            [this_a] = [n for n in seen.values() if n["This"]]
            [this_b] = [n for n in from_b.values() if n["This"]]
            assert (this_a["Address"], this_b["Address"]) == (a.endpoint, b.endpoint)

            # Quiet: a few heartbeats of both nodes later, the epoch has not moved.
            time.sleep(2)  # the start's own commits settle (keyring epoch advance)
            epoch = _epoch(dsn)
            beats = {name: n["LastHeartbeat"] for name, n in _nodes(cluster, 0).items()}
            poll(
                "a new heartbeat of both nodes",
                lambda: (
                    all(n["LastHeartbeat"] > beats[name] for name, n in _nodes(cluster, 0).items())
                    or None
                ),
                15,
                0.5,
            )
            assert _epoch(dsn) == epoch
            cluster.nodes[0].client().create_key()  # a cached change does move it
            assert _epoch(dsn) > epoch

            b.stop()  # SIGTERM: a clean stop
            states = {n["Address"]: n["State"] for n in _nodes(cluster, 0).values()}
            assert states == {a.endpoint: "ready", b.endpoint: "stopped"}
        finally:
            cluster.stop()
