"""Where keycask's own time goes in one Encrypt 4 KiB, step by step, in a hot
loop without HTTP (the "before/after" table of docs/performance.md).

    python benchmarks/steps.py

A benchmark may look inside: it calls the pipeline's steps (door, action, handler) in order.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import sign
from pipeline_bench import _parse, setup

N = 5000


async def main() -> None:
    bench = await setup()
    runtime, p = bench.runtime, bench.pipeline
    request = _parse(sign(bench.endpoint, "Encrypt", bench.encrypt_body))
    spent: dict[str, float] = {}

    def took(name: str, since: float) -> None:
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - since

    for _ in range(N):
        t = time.perf_counter()
        call = p._new_call("127.0.0.1")
        took("request setup", t)
        t = time.perf_counter()
        door = p.doors.match(call, request)
        call.door = door.name
        took("routing", t)
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
        door.encode(action, outcome.result)
        took("encode", t)
        t = time.perf_counter()
        p._record(call, None)  # encoded straight to bytes
        took("audit record + encoding", t)
    for name, seconds in spent.items():
        print(f"{name:24} {seconds / N * 1e6:6.1f} us")
    print(f"{'sum':24} {sum(spent.values()) / N * 1e6:6.1f} us")
    await runtime.close()


if __name__ == "__main__":
    uvloop.run(main())
