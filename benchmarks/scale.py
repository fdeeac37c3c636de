"""How keycask scales with the number of keys in the store: start-up time,
resident memory, latency of the first request, and Encrypt throughput over
many distinct keys.

    python benchmarks/scale.py                   # 1, 10k, 100k keys
    python benchmarks/scale.py --keys 1 1000000 10000000 --data-root /work/scale-data

Without ``--data-root`` each size is seeded into a fresh temporary data dir.
With it, the data dir of N keys is ``DATA_ROOT/N/data``: seeded (by
``seed.py``) the first time, reused after (10,000,000 keys take about half an
hour to seed and 15 GB of disk).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
import uvloop
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets
from loadgen import run, sign
from seed import ID_LINE, ids_file, seed

CONTEXT = {"tenant": "acme", "purpose": "bench", "table": "orders"}


def encrypt_request(endpoint: targets.Endpoint, key_id: str) -> bytes:
    body = json.dumps(
        {
            "KeyId": key_id,
            "Plaintext": base64.b64encode(os.urandom(4096)).decode(),
            "EncryptionContext": CONTEXT,
        }
    ).encode()
    return sign(endpoint, "Encrypt", body)


def sample_ids(listing: Path, count: int, wanted: int) -> list[str]:
    """``wanted`` distinct ids drawn at random from a seeded id listing,
    without reading all of it (its lines have a fixed length)."""
    picks = sorted(random.Random(1).sample(range(count), min(count, wanted)))
    ids = []
    with listing.open("rb") as f:
        for i in picks:
            f.seek(i * ID_LINE)
            ids.append(f.read(ID_LINE).decode().strip())
    return ids


def prepare(count: int, data_root: Path | None) -> tuple[Path, float | None]:
    """The data dir holding ``count`` keys, and the seconds seeding took
    (None for a data dir seeded before)."""
    if data_root is None:
        data_dir = Path(tempfile.mkdtemp(prefix="keycask-scale-")) / "data"
    else:
        data_dir = data_root / str(count) / "data"
        if ids_file(data_dir, count).exists():
            return data_dir, None
        if data_dir.exists():
            raise SystemExit(f"{data_dir} exists without {ids_file(data_dir, count)}: remove it")
    # A first start creates the store and the dev profile; the keys go in after.
    first = targets.keycask(data_dir).start()
    first.stop()
    seeding = time.perf_counter()
    asyncio.run(seed(data_dir, count))
    return data_dir, time.perf_counter() - seeding


def one_size(count: int, args: argparse.Namespace) -> dict[str, float | None]:
    data_dir, seeded_in = prepare(count, args.data_root)
    picked = sample_ids(ids_file(data_dir, count), count, args.distinct)
    # Start-up on a shared machine is noisy: the median of a few starts (the
    # last one serves the load).
    starts = []
    for _ in range(args.starts - 1):
        probe = targets.keycask(data_dir).start()
        starts.append(probe.started_in)
        probe.stop()
    target = targets.keycask(data_dir).start()
    starts.append(target.started_in)
    try:
        rss_start = target.rss_kib() / 1024
        endpoint = target.endpoint()
        kms = boto3.client(
            "kms",
            endpoint_url=f"http://127.0.0.1:{target.port}",
            region_name="us-east-1",
            aws_access_key_id=endpoint.access_key,
            aws_secret_access_key=endpoint.secret_key,
            config=Config(retries={"max_attempts": 1}),
        )
        began = time.perf_counter()
        kms.encrypt(KeyId=random.choice(picked), Plaintext=b"first", EncryptionContext=CONTEXT)
        first_ms = (time.perf_counter() - began) * 1000
        pool = [encrypt_request(endpoint, k) for k in picked]
        results = [
            uvloop.run(run("127.0.0.1", target.port, pool, connections=64, duration=args.duration))
            for _ in range(args.runs)
        ]
        rate = statistics.median(r.rate for r in results)
        errors = sum(r.errors for r in results)
        rss_after = target.rss_kib() / 1024
    finally:
        target.stop()
    return {
        "keys": count,
        "seed_s": seeded_in,
        "start_s": statistics.median(starts),
        "first_ms": first_ms,
        "rate": rate,
        "errors": errors,
        "rss_start": rss_start,
        "rss_after": rss_after,
        "distinct": len(picked),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 10_000, 100_000])
    parser.add_argument("--distinct", type=int, default=5000, help="keys the load spreads over")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--starts", type=int, default=3, help="start-up is their median")
    parser.add_argument("--data-root", type=Path, help="keep (and reuse) the seeded data dirs here")
    args = parser.parse_args()
    print(
        "| keys in store | start-up s | RSS at start MiB | first Encrypt ms | "
        "Encrypt 4 KiB req/s (64 conns) | RSS after MiB | errors |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count in args.keys:
        r = one_size(count, args)
        print(
            f"| {r['keys']:,} | {r['start_s']:.2f} | {r['rss_start']:.0f} | {r['first_ms']:.1f} | "
            f"{r['rate']:,.0f} | {r['rss_after']:.0f} | {r['errors']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
