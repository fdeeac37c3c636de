"""CPU cost of keycask's own request path, without HTTP: Pipeline.handle for
signed requests of one operation (Encrypt 4 KiB unless told), 64 at a time (so
audit records group-commit), on uvloop. The bodies are run.py's: Decrypt a
4 KiB ciphertext, GenerateDataKey AES_256, Sign ECDSA P-256 and GenerateMac
HMAC-256 of 256 bytes.

    python benchmarks/pipeline_bench.py [--operation Decrypt] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import configparser
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keycask import config
from keycask.app import Runtime, build, ensure_dev_profile
from keycask.auth.sigv4 import HttpRequest
from keycask.service.pipeline import Pipeline
from loadgen import Endpoint, sign


def _parse(raw: bytes) -> HttpRequest:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    headers = tuple(
        (k.strip().lower(), v.strip()) for k, v in (line.split(b":", 1) for line in lines[1:])
    )
    return HttpRequest(method.decode(), target, b"", headers, body)


@dataclass
class Bench:
    """A built server without HTTP, a dev admin's endpoint, a key and a signed
    Encrypt 4 KiB body for it."""

    runtime: Runtime
    endpoint: Endpoint
    key_arn: str
    encrypt_body: bytes

    @property
    def pipeline(self) -> Pipeline:
        return self.runtime.app._pipeline  # a benchmark may look inside


async def setup() -> Bench:
    data = Path(tempfile.mkdtemp()) / "data"
    settings = config.load(dev=True, data_dir=str(data), listen="127.0.0.1:9999", env={})
    runtime = await build(settings)
    await ensure_dev_profile(runtime)
    parser = configparser.ConfigParser()
    parser.read(data / "credentials")
    profile = parser["keycask"]
    endpoint = Endpoint(
        "127.0.0.1", 9999, profile["aws_access_key_id"], profile["aws_secret_access_key"]
    )
    create = _parse(sign(endpoint, "CreateKey", b"{}"))
    reply = await runtime.app._pipeline.handle(create, "127.0.0.1")
    key_arn = json.loads(reply.body)["KeyMetadata"]["Arn"]
    body = json.dumps(
        {
            "KeyId": key_arn,
            "Plaintext": base64.b64encode(os.urandom(4096)).decode(),
            "EncryptionContext": {"tenant": "acme", "purpose": "bench", "table": "orders"},
        }
    ).encode()
    return Bench(runtime, endpoint, key_arn, body)


CONTEXT = {"tenant": "acme", "purpose": "bench", "table": "orders"}
OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey", "Sign", "GenerateMac")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _call(bench: Bench, operation: str, fields: dict[str, object]) -> dict[str, object]:
    request = _parse(sign(bench.endpoint, operation, json.dumps(fields).encode()))
    reply = await bench.pipeline.handle(request, "127.0.0.1")
    assert reply.status == 200, reply.body
    answer: dict[str, object] = json.loads(reply.body)
    return answer


async def body_for(bench: Bench, operation: str) -> bytes:
    """A body for ``operation`` as run.py sends it, with the keys it needs made."""
    if operation == "Encrypt":
        return bench.encrypt_body
    if operation == "Decrypt":
        blob = (await _call(bench, "Encrypt", json.loads(bench.encrypt_body)))["CiphertextBlob"]
        fields: dict[str, object] = {"CiphertextBlob": blob, "EncryptionContext": CONTEXT}
    elif operation == "GenerateDataKey":
        fields = {"KeyId": bench.key_arn, "KeySpec": "AES_256", "EncryptionContext": CONTEXT}
    else:
        spec, usage, member, algorithm = (
            ("ECC_NIST_P256", "SIGN_VERIFY", "SigningAlgorithm", "ECDSA_SHA_256")
            if operation == "Sign"
            else ("HMAC_256", "GENERATE_VERIFY_MAC", "MacAlgorithm", "HMAC_SHA_256")
        )
        made = await _call(bench, "CreateKey", {"KeySpec": spec, "KeyUsage": usage})
        arn = made["KeyMetadata"]["Arn"]  # type: ignore[index]
        fields = {"KeyId": arn, "Message": _b64(os.urandom(256)), member: algorithm}
    return json.dumps(fields).encode()


async def main(args: argparse.Namespace) -> None:
    bench = await setup()
    runtime, endpoint, pipeline = bench.runtime, bench.endpoint, bench.pipeline
    operation = args.operation
    body = await body_for(bench, operation)
    requests = [_parse(sign(endpoint, operation, body)) for _ in range(64)]
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
        f"{n} {operation} through Pipeline.handle: {n / wall:,.0f}/s wall, "
        f"CPU per request: event loop {loop_cpu / n * 1e6:.1f} us; process "
        f"{user / n * 1e6:.1f} us user + {system / n * 1e6:.1f} us system, "
        f"audit batches {runtime.audit.batches_written}"
    )
    await runtime.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--operation", choices=OPERATIONS, default="Encrypt")
    parser.add_argument("--profile", action="store_true")
    uvloop.run(main(parser.parse_args()))
