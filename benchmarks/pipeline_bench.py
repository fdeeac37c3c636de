"""CPU cost of keycask's own request path, without HTTP: Pipeline.handle for
signed Encrypt requests, 64 at a time (so audit records group-commit), on uvloop.

    python benchmarks/pipeline_bench.py [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keycask import config
from keycask.app import build, ensure_dev_profile
from keycask.auth.sigv4 import HttpRequest
from loadgen import Endpoint, sign


def _parse(raw: bytes) -> HttpRequest:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    headers = tuple(
        (k.strip().lower(), v.strip()) for k, v in (line.split(b":", 1) for line in lines[1:])
    )
    return HttpRequest(method.decode(), target, b"", headers, body)


async def main(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp()) / "data"
    settings = config.load(dev=True, data_dir=str(data), listen="127.0.0.1:9999", env={})
    runtime = await build(settings)
    await ensure_dev_profile(runtime)
    akid, secret = None, None
    for line in (data / "credentials").read_text().splitlines():
        if "aws_access_key_id" in line:
            akid = line.split("=")[1].strip()
        if "aws_secret_access_key" in line:
            secret = line.split("=")[1].strip()
    assert akid and secret
    endpoint = Endpoint("127.0.0.1", 9999, akid, secret)
    pipeline = runtime.app._pipeline
    create = _parse(sign(endpoint, "CreateKey", b"{}"))
    reply = await pipeline.handle(create, "127.0.0.1")
    key_arn = json.loads(reply.body)["KeyMetadata"]["Arn"]
    body = json.dumps(
        {
            "KeyId": key_arn,
            "Plaintext": base64.b64encode(os.urandom(4096)).decode(),
            "EncryptionContext": {"tenant": "acme", "purpose": "bench", "table": "orders"},
        }
    ).encode()
    requests = [_parse(sign(endpoint, "Encrypt", body)) for _ in range(64)]
    batches = args.requests // 64

    async def once() -> None:
        replies = await asyncio.gather(*(pipeline.handle(r, "127.0.0.1") for r in requests))
        assert all(r.status == 200 for r in replies), replies[0].body

    await once()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    thread0 = time.thread_time()
    for _ in range(batches):
        await once()
    ru1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    loop_cpu = time.thread_time() - thread0
    user, system = ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime
    if profiler:
        profiler.disable()
        profiler.dump_stats("/tmp/pipeline.prof")
    n = batches * 64
    print(
        f"{n} Encrypt 4 KiB through Pipeline.handle: {n / wall:,.0f}/s wall, "
        f"CPU per request: event loop {loop_cpu / n * 1e6:.1f} us; process "
        f"{user / n * 1e6:.1f} us user + {system / n * 1e6:.1f} us system, "
        f"audit batches {runtime.audit.batches_written}"
    )
    await runtime.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    uvloop.run(main(parser.parse_args()))
