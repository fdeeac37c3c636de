"""What a role session costs a KMS request, against a long-term access key.

    .venv/bin/python benchmarks/session_bench.py [--rounds 10] [-n 500]

Builds a --dev server without HTTP (pipeline_bench.setup), makes a role
whose trust policy names the dev administrator, assumes it through the STS
door (AssumeRole, as a client sends it), then times the same Encrypt 4 KiB signed
(a) with the administrator's access key and (b) with the session's
credentials and token: authentication alone (door match + authenticate,
where a session adds opening its token, cached after the first use, and
looking up its role) and whole pipeline passes (the audit log's fsync
included, so noisier). Also times AssumeRole itself, and a first
request with a token this process has not opened yet. Each figure is the
lowest of ``--rounds`` rounds' means (a preempted round says nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import uvloop
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keycask.auth.sigv4 import HttpRequest
from loadgen import Endpoint, sign
from pipeline_bench import Bench, _parse, setup

_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"


def _signed(endpoint: Endpoint, service: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 request signed as botocore signs it, for ``service``."""
    request = AWSRequest(
        method="POST", url=f"http://{endpoint.host}:{endpoint.port}/", data=body, headers=headers
    )
    credentials = Credentials(endpoint.access_key, endpoint.secret_key)
    SigV4Auth(credentials, service, endpoint.region).add_auth(request)
    lines = ["POST / HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _sts(endpoint: Endpoint, fields: dict[str, str]) -> bytes:
    body = urllib.parse.urlencode({"Version": "2011-06-15", **fields}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    return _signed(endpoint, "sts", form, body)


async def _admin(bench: Bench, operation: str, fields: Mapping[str, object]) -> None:
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"KeycaskAdmin.{operation}",
    }
    raw = _signed(bench.endpoint, "kms", headers, json.dumps(fields).encode())
    reply = await bench.pipeline.handle(_parse(raw), "127.0.0.1")
    assert reply.status == 200, reply.body


async def _timed(run: Callable[[], Awaitable[None]], rounds: int, n: int) -> float:
    """Lowest mean over ``rounds`` rounds of ``n`` runs, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await run()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


async def main(rounds: int, n: int) -> None:
    bench = await setup()
    pipeline = bench.pipeline
    admin_arn = "arn:aws:iam::000000000000:user/admin"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": admin_arn}}]}  # fmt: skip
    use = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt",
           "Resource": bench.key_arn}]}  # fmt: skip
    await _admin(bench, "CreatePrincipal",
                 {"Name": "bench", "Role": True, "TrustPolicy": json.dumps(trust)})  # fmt: skip
    policy = {"Name": "bench", "PolicyName": "use", "PolicyDocument": json.dumps(use)}
    await _admin(bench, "PutPrincipalPolicy", policy)
    assume_fields = {"Action": "AssumeRole", "RoleSessionName": "bench",
                     "RoleArn": "arn:aws:iam::000000000000:role/bench"}  # fmt: skip

    async def assume() -> ET.Element:
        reply = await pipeline.handle(_parse(_sts(bench.endpoint, assume_fields)), "127.0.0.1")
        assert reply.status == 200, reply.body
        return ET.fromstring(reply.body)

    found = (await assume()).find(f".//{_NS}Credentials")
    assert found is not None
    creds = {child.tag.removeprefix(_NS): child.text or "" for child in found}
    session = Endpoint("127.0.0.1", 9999, creds["AccessKeyId"], creds["SecretAccessKey"],
                       session_token=creds["SessionToken"])  # fmt: skip
    with_key = _parse(sign(bench.endpoint, "Encrypt", bench.encrypt_body))
    with_session = _parse(sign(session, "Encrypt", bench.encrypt_body))

    def passes(request: HttpRequest) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            reply = await pipeline.handle(request, "127.0.0.1")
            assert reply.status == 200, reply.body

        return run

    async def assume_once() -> None:
        await assume()

    def authenticates(request: HttpRequest) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            call = pipeline._new_call("127.0.0.1")
            door = pipeline.doors.match(call, request)
            await door.authenticate(call, request)

        return run

    # Alternating, so drift on a shared machine hits both alike.
    key_auth = session_auth = key_us = session_us = float("inf")
    for _ in range(rounds):
        key_auth = min(key_auth, await _timed(authenticates(with_key), 1, n))
        session_auth = min(session_auth, await _timed(authenticates(with_session), 1, n))
        key_us = min(key_us, await _timed(passes(with_key), 1, n))
        session_us = min(session_us, await _timed(passes(with_session), 1, n))
    assume_us = await _timed(assume_once, rounds, max(n // 10, 10))
    # A token this process has not opened: a fresh session per request.
    cold: list[HttpRequest] = []
    for _ in range(max(n // 10, 10)):
        element = (await assume()).find(f".//{_NS}Credentials")
        assert element is not None
        c = {child.tag.removeprefix(_NS): child.text or "" for child in element}
        fresh = Endpoint("127.0.0.1", 9999, c["AccessKeyId"], c["SecretAccessKey"],
                         session_token=c["SessionToken"])  # fmt: skip
        cold.append(_parse(sign(fresh, "Encrypt", bench.encrypt_body)))
    start = time.perf_counter()
    for request in cold:
        await passes(request)()
    cold_us = (time.perf_counter() - start) / len(cold) * 1e6
    print(f"authenticate, access key:           {key_auth:8.1f} us")
    print(
        f"authenticate, session (warm):       {session_auth:8.1f} us  "
        f"(+{session_auth - key_auth:.1f} us)"
    )
    print(f"Encrypt 4 KiB, access key:          {key_us:8.1f} us  (whole pass, audit included)")
    print(f"Encrypt 4 KiB, session (warm):      {session_us:8.1f} us  ({session_us / key_us:.2f}x)")
    print(f"Encrypt 4 KiB, session (first use): {cold_us:8.1f} us  (one pass each)")
    print(f"AssumeRole:                         {assume_us:8.1f} us")
    await bench.runtime.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("-n", type=int, default=500)
    args = parser.parse_args()
    uvloop.run(main(args.rounds, args.n))
