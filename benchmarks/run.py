"""keycask's benchmark: throughput and latency of KMS requests, beside the
ceiling of a bare handler on the same stack and moto_server, in one run.

    python benchmarks/run.py                      # the main table (make bench)
    python benchmarks/run.py --concurrency-curve  # throughput vs connections
    python benchmarks/run.py --quick              # one short run per cell

Ratios are what to compare: the machine is shared and noisy, so absolute
figures move between runs while ratios measured in one run hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import uvloop
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets
from loadgen import Endpoint, Result, run, sign

CONTEXT = {"tenant": "acme", "purpose": "bench", "table": "orders"}


@dataclass(frozen=True)
class Prepared:
    key_arn: str
    blob_4k: bytes
    sign_arn: str = ""  # ECC_NIST_P256 SIGN_VERIFY; empty where the server has none
    mac_arn: str = ""  # HMAC_256
    # A bearer token for the Vault Transit door; empty where the server has none.
    transit_token: str = ""
    endpoint: Endpoint | None = None


def _client(endpoint: Endpoint) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=f"http://{endpoint.host}:{endpoint.port}",
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        config=Config(retries={"max_attempts": 2}),
    )


def prepare(endpoint: Endpoint) -> Prepared:
    kms = _client(endpoint)
    arn = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
    blob = kms.encrypt(KeyId=arn, Plaintext=os.urandom(4096), EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    extra = {}
    for field, spec, usage in (
        ("sign_arn", "ECC_NIST_P256", "SIGN_VERIFY"),
        ("mac_arn", "HMAC_256", "GENERATE_VERIFY_MAC"),
    ):
        try:
            extra[field] = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["Arn"]
        except Exception:
            extra[field] = ""
    return Prepared(arn, blob, **extra, transit_token=_transit_token(endpoint, arn),
                    endpoint=endpoint)  # fmt: skip


def _transit_token(endpoint: Endpoint, key_arn: str) -> str:
    """On keycask: the key named alias/transit/bench and a bearer token for
    the profile's principal (KeycaskAdmin.CreateToken); "" elsewhere."""
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://{endpoint.host}:{endpoint.port}/"
    try:
        _client(endpoint).create_alias(AliasName="alias/transit/bench", TargetKeyId=key_arn)
        caller = boto3.client(
            "sts",
            endpoint_url=url,
            region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key,
            aws_secret_access_key=endpoint.secret_key,
        ).get_caller_identity()["Arn"]
        request = AWSRequest(
            method="POST",
            url=url,
            data=json.dumps({"Name": caller.rsplit("/", 1)[1], "Ttl": 7200}).encode(),
            headers={"Content-Type": "application/x-amz-json-1.1",
                     "X-Amz-Target": "KeycaskAdmin.CreateToken"},
        )  # fmt: skip
        SigV4Auth(Credentials(endpoint.access_key, endpoint.secret_key), "kms",
                  endpoint.region).add_auth(request)  # fmt: skip
        sent = urllib.request.Request(url, data=request.body, headers=dict(request.headers))
        with urllib.request.urlopen(sent, timeout=10) as reply:
            return str(json.loads(reply.read())["Token"])
    except Exception:
        return ""


def transit_encrypt(p: Prepared, size: int) -> tuple[str, bytes]:
    """A whole HTTP request to the Vault Transit door (not signed: a token)."""
    assert p.endpoint is not None
    body = _body({"plaintext": _b64(os.urandom(size))})
    head = (
        f"POST /v1/transit/encrypt/bench HTTP/1.1\r\nHost: {p.endpoint.host}:{p.endpoint.port}"
        f"\r\nX-Vault-Token: {p.transit_token}\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return RAW, head.encode() + body


# An "operation" whose body is already a whole HTTP request.
RAW = "raw HTTP"
# Scenarios only keycask serves (skipped for the other servers).
KEYCASK_ONLY = frozenset({"Transit Encrypt 4 KiB"})


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def encrypt_body(p: Prepared, size: int) -> tuple[str, bytes]:
    return "Encrypt", _body(
        {"KeyId": p.key_arn, "Plaintext": _b64(os.urandom(size)), "EncryptionContext": CONTEXT}
    )


def decrypt_body(p: Prepared) -> tuple[str, bytes]:
    return "Decrypt", _body({"CiphertextBlob": _b64(p.blob_4k), "EncryptionContext": CONTEXT})


def gdk_body(p: Prepared) -> tuple[str, bytes]:
    return "GenerateDataKey", _body(
        {"KeyId": p.key_arn, "KeySpec": "AES_256", "EncryptionContext": CONTEXT}
    )


def sign_body(p: Prepared) -> tuple[str, bytes]:
    return "Sign", _body(
        {"KeyId": p.sign_arn, "Message": _b64(os.urandom(256)), "SigningAlgorithm": "ECDSA_SHA_256"}
    )


def mac_body(p: Prepared) -> tuple[str, bytes]:
    return "GenerateMac", _body(
        {"KeyId": p.mac_arn, "Message": _b64(os.urandom(256)), "MacAlgorithm": "HMAC_SHA_256"}
    )


SCENARIOS: dict[str, Callable[[Prepared], list[tuple[str, bytes]]]] = {
    "Encrypt 32 B": lambda p: [encrypt_body(p, 32) for _ in range(16)],
    "Encrypt 4 KiB": lambda p: [encrypt_body(p, 4096) for _ in range(16)],
    "Decrypt 4 KiB": lambda p: [decrypt_body(p)],
    "GenerateDataKey": lambda p: [gdk_body(p)],
    "Mixed 70/20/10": lambda p: random.Random(7).sample(
        [decrypt_body(p)] * 70 + [gdk_body(p)] * 20 + [encrypt_body(p, 4096) for _ in range(10)],
        100,
    ),
    "Sign ECDSA P-256": lambda p: [sign_body(p) for _ in range(16)],
    "GenerateMac HMAC-256": lambda p: [mac_body(p) for _ in range(16)],
    # The Vault Transit door's Encrypt of the same key, beside "Encrypt 4 KiB"
    # (issue 18 asks at least 0.8x its throughput, in the same run).
    "Transit Encrypt 4 KiB": lambda p: [transit_encrypt(p, 4096) for _ in range(16)],
}


def pool(endpoint: Endpoint, requests: list[tuple[str, bytes]], size: int = 64) -> list[bytes]:
    def ready(operation: str, body: bytes) -> bytes:
        return body if operation == RAW else sign(endpoint, operation, body)

    return [ready(*requests[i % len(requests)]) for i in range(size)]


def measure(
    target: targets.Target, requests: list[bytes], connections: int, duration: float
) -> Result:
    return uvloop.run(
        run("127.0.0.1", target.port, requests, connections=connections, duration=duration)
    )


@dataclass
class Cell:
    rate: float
    p50: float
    p99: float
    p999: float
    errors: int


def median_cell(results: list[Result]) -> Cell:
    ordered = sorted(results, key=lambda r: r.rate)
    mid = ordered[len(ordered) // 2]
    return Cell(
        rate=statistics.median(r.rate for r in results),
        p50=mid.percentile(50),
        p99=mid.percentile(99),
        p999=mid.percentile(99.9),
        errors=sum(r.errors for r in results),
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main_table(args: argparse.Namespace) -> None:
    names = args.targets.split(",")
    factories = {
        "keycask": lambda: targets.keycask(workers=args.workers),
        "ceiling-starlette": lambda: targets.ceiling("starlette"),
        "ceiling-asgi": lambda: targets.ceiling("asgi"),
        "ceiling-keycask-http": lambda: targets.ceiling("keycask-http"),
        "moto_server": targets.moto,
    }
    started = {n: factories[n]().start() for n in names}
    try:
        kc = started.get("keycask")
        signer = kc.endpoint() if kc else targets.Target("x", []).endpoint()
        prepared = {
            n: prepare(t.endpoint()) for n, t in started.items() if not n.startswith("ceiling")
        }
        rows: list[tuple[str, str, Cell, int]] = []
        for scenario, build in SCENARIOS.items():
            if args.scenarios and scenario not in args.scenarios:
                continue
            for name, target in started.items():
                if scenario in KEYCASK_ONLY and name != "keycask":
                    continue
                endpoint = target.endpoint() if name in prepared else signer
                prep = prepared.get(name) or prepared.get("keycask") or Prepared("x", b"x" * 100)
                requests = pool(endpoint, build(prep))
                duration = args.duration if name != "moto_server" else min(args.duration, 5)
                results = [
                    measure(target, requests, args.connections, duration) for _ in range(args.runs)
                ]
                cell = median_cell(results)
                rows.append((scenario, name, cell, target.rss_kib()))
                print(
                    f"{scenario:16} {name:18} {cell.rate:9.0f}/s p50 {cell.p50:7.2f} ms "
                    f"p99 {cell.p99:7.2f} ms p99.9 {cell.p999:7.2f} ms errors {cell.errors}",
                    file=sys.stderr,
                    flush=True,
                )
        print_table(rows, args)
    finally:
        for t in started.values():
            t.stop()


def print_table(rows: list[tuple[str, str, Cell, int]], args: argparse.Namespace) -> None:
    by = {(s, n): c for s, n, c, _ in rows}
    print(f"\nMachine: {machine()}")
    print(
        f"Command: python benchmarks/run.py --connections {args.connections} "
        f"--duration {args.duration} --runs {args.runs}"
        + (f" --workers {args.workers}" if args.workers else "")
    )
    print(f"Medians of {args.runs} runs of {args.duration} s, {args.connections} connections.\n")
    print(
        "| scenario | server | requests/s | p50 ms | p99 ms | p99.9 ms | errors | RSS MiB "
        "| vs ceiling-starlette | vs moto |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scenario, name, cell, rss in rows:
        ceiling = by.get((scenario, "ceiling-starlette"))
        moto = by.get((scenario, "moto_server"))
        vs_c = f"{cell.rate / ceiling.rate:.2f}x" if ceiling and ceiling.rate else "-"
        vs_m = f"{cell.rate / moto.rate:.0f}x" if moto and moto.rate else "-"
        print(
            f"| {scenario} | {name} | {cell.rate:,.0f} | {cell.p50:.2f} | {cell.p99:.2f} | "
            f"{cell.p999:.2f} | {cell.errors} | {rss / 1024:.0f} | {vs_c} | {vs_m} |"
        )


def concurrency_curve(args: argparse.Namespace) -> None:
    kc = targets.keycask(workers=args.workers).start()
    ceiling = targets.ceiling("starlette").start()
    try:
        endpoint = kc.endpoint()
        prep = prepare(endpoint)
        requests = pool(endpoint, SCENARIOS["Encrypt 4 KiB"](prep))
        print(f"\nMachine: {machine()}")
        print("| connections | keycask req/s | p50 ms | p99 ms | ceiling-starlette req/s | ratio |")
        print("|---:|---:|---:|---:|---:|---:|")
        for conns in (1, 8, 64, 256):
            k = median_cell([measure(kc, requests, conns, args.duration) for _ in range(args.runs)])
            c = median_cell(
                [measure(ceiling, requests, conns, args.duration) for _ in range(args.runs)]
            )
            print(
                f"| {conns} | {k.rate:,.0f} | {k.p50:.2f} | {k.p99:.2f} | {c.rate:,.0f} | "
                f"{k.rate / c.rate:.2f}x |",
                flush=True,
            )
    finally:
        kc.stop()
        ceiling.stop()


def latency_at_half(args: argparse.Namespace) -> None:
    """Latency when the server is not saturated: open-loop load at half of the
    throughput it reached closed-loop."""
    kc = targets.keycask(workers=args.workers).start()
    try:
        endpoint = kc.endpoint()
        prep = prepare(endpoint)
        print(f"\nMachine: {machine()}")
        print(
            "| scenario | peak req/s | offered req/s | served req/s | p50 ms | p99 ms | p99.9 ms |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for scenario in ("Encrypt 4 KiB", "Decrypt 4 KiB", "GenerateDataKey"):
            requests = pool(endpoint, SCENARIOS[scenario](prep))
            peak = measure(kc, requests, 64, args.duration).rate
            half = peak / 2
            r = uvloop.run(
                run("127.0.0.1", kc.port, requests, connections=64, duration=args.duration * 2,
                    rate=half)
            )  # fmt: skip
            print(
                f"| {scenario} | {peak:,.0f} | {half:,.0f} | {r.rate:,.0f} "
                f"| {r.percentile(50):.2f} | {r.percentile(99):.2f} | {r.percentile(99.9):.2f} |",
                flush=True,
            )
    finally:
        kc.stop()


def door_ratio(args: argparse.Namespace) -> None:
    """The Vault door's Encrypt against the AWS door's, in pairs: each run
    measures one right after the other on the same server, so the machine's
    noise (shared, 2 cores) moves both alike, and the median of the pairs'
    ratios is what issue 18's bar (at least 0.8x) is checked against."""
    kc = targets.keycask(workers=args.workers).start()
    try:
        endpoint = kc.endpoint()
        prep = prepare(endpoint)
        aws = pool(endpoint, SCENARIOS["Encrypt 4 KiB"](prep))
        vault = pool(endpoint, SCENARIOS["Transit Encrypt 4 KiB"](prep))
        print(f"\nMachine: {machine()}")
        print(
            f"Command: python benchmarks/run.py --door-ratio --connections {args.connections} "
            f"--duration {args.duration} --runs {args.runs}"
        )
        print("| run | AWS Encrypt 4 KiB req/s | Transit Encrypt 4 KiB req/s | ratio |")
        print("|---:|---:|---:|---:|")
        ratios = []
        for n in range(args.runs):
            # Alternate which goes first, so neither always meets a warmer server.
            first, second = (aws, vault) if n % 2 == 0 else (vault, aws)
            a = measure(kc, first, args.connections, args.duration)
            b = measure(kc, second, args.connections, args.duration)
            a_rate, v_rate = (a.rate, b.rate) if n % 2 == 0 else (b.rate, a.rate)
            ratios.append(v_rate / a_rate)
            print(f"| {n + 1} | {a_rate:,.0f} | {v_rate:,.0f} | {ratios[-1]:.2f}x |", flush=True)
        ordered = sorted(ratios)
        print(
            f"\nMedian ratio of {args.runs} pairs: {ordered[len(ordered) // 2]:.2f}x "
            f"(lowest {ordered[0]:.2f}x, highest {ordered[-1]:.2f}x)"
        )
    finally:
        kc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--targets",
        default="keycask,ceiling-starlette,ceiling-asgi,ceiling-keycask-http,moto_server",
    )
    parser.add_argument("--scenarios", nargs="*", default=None)
    parser.add_argument("--quick", action="store_true", help="one 2-second run per cell")
    parser.add_argument("--concurrency-curve", action="store_true")
    parser.add_argument("--latency-at-half", action="store_true")
    parser.add_argument("--door-ratio", action="store_true", help="Transit vs AWS Encrypt, paired")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 2.0
    if args.door_ratio:
        door_ratio(args)
    elif args.latency_at_half:
        latency_at_half(args)
    elif args.concurrency_curve:
        concurrency_curve(args)
    else:
        main_table(args)


if __name__ == "__main__":
    main()
