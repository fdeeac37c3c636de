"""Where keycask's own time goes in one Encrypt 4 KiB (or another operation
of pipeline_bench.py's), step by step, in a hot loop without HTTP (the
"before/after" table of docs/performance.md).

    python benchmarks/steps.py [--operation Decrypt] [--general]

A benchmark may look inside: it calls the pipeline's steps (freshness, door,
action, handler, usage) in the order ``Pipeline.handle`` does, so the KMS
door's flat path (``KmsDoor.flat``) is timed as the server runs it
(``--general`` switches it off, to time the codec's general decoder and
encoder instead). Only the await of the audit log's group commit is left out
(audit_chain_bench.py).

Each step's time is the lowest of ROUNDS rounds' means: on a machine shared
with other work, a round that was preempted says nothing about the code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keycask.auth.sigv4 import HttpRequest
from keycask.service.pipeline import Pipeline, Reply
from loadgen import sign
from pipeline_bench import OPERATIONS, _parse, body_for, setup

ROUNDS, N = 10, 500


async def main(operation: str, general: bool) -> None:
    bench = await setup()
    runtime, p = bench.runtime, bench.pipeline
    request = _parse(sign(bench.endpoint, operation, await body_for(bench, operation)))
    spent: dict[str, float] = {}
    best: dict[str, float] = {}

    def took(name: str, since: float) -> None:
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - since

    for _ in range(ROUNDS):
        spent.clear()
        await steps(p, request, took, general)
        for name, seconds in spent.items():
            best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        print(f"{name:24} {seconds / N * 1e6:6.1f} us")
    print(f"{'sum':24} {sum(best.values()) / N * 1e6:6.1f} us")
    await runtime.close()


async def steps(
    p: Pipeline, request: HttpRequest, took: Callable[[str, float], None], general: bool = False
) -> None:
    for _ in range(N):
        t = time.perf_counter()
        call = p._new_call("127.0.0.1")
        p._refresh()
        if p._barrier.reloading:
            await p._current(2.0)
        took("request setup", t)
        t = time.perf_counter()
        door = p.doors.match(call, request)
        call.door = door.name
        took("routing", t)
        if general:
            door.flat = False  # KmsDoor's switch, as test_flat_path.py uses it
        t = time.perf_counter()
        await door.authenticate(call, request)
        took("authenticate", t)
        t = time.perf_counter()
        action = door.action(call, request)
        typed = door.decode(call, action, request)
        took("decode + typed request", t)
        t = time.perf_counter()
        outcome = await action.run(call, typed)
        took("handler", t)
        t = time.perf_counter()
        body = door.encode(action, outcome.result, call.request_id)
        took("encode", t)
        t = time.perf_counter()
        p._record(call, None)  # encoded straight to bytes
        took("audit record + encoding", t)
        t = time.perf_counter()
        p._note_usage(action, call)
        Reply(200, body, call.request_id)
        took("usage + reply", t)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--operation", choices=OPERATIONS, default="Encrypt")
    parser.add_argument(
        "--general", action="store_true", help="time the general path, not the flat one"
    )
    args = parser.parse_args()
    uvloop.run(main(args.operation, args.general))
