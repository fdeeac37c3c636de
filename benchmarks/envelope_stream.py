"""Throughput and peak memory of ``keycask encrypt | keycask decrypt``.

Starts a --dev server of its own in a temp dir, then for each frame length
pipes N MiB (generated here, never written to disk) through the two real
CLI processes and reports, per process, MiB/s of its own CPU time (user +
system, from wait4: the two run concurrently, so CPU time is what each
costs) and its peak RSS, plus the pipeline's wall time. The output's
SHA-256 is checked against the input's.

    .venv/bin/python benchmarks/envelope_stream.py --mib 256 --frames 4096,65536,1048576
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from targets import keycask

MIB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    frame: int
    mib: int
    wall: float
    encrypt_cpu: float
    decrypt_cpu: float
    encrypt_rss_mib: float
    decrypt_rss_mib: float


def feed(pipe: IO[bytes], total: int, digest: hashlib._Hash) -> None:
    block = os.urandom(MIB)
    left = total
    try:
        while left:
            piece = block[: min(left, MIB)]
            digest.update(piece)
            pipe.write(piece)
            left -= len(piece)
            # Not the same bytes every MiB: a frame-aligned repeat would not
            # matter to AES, but a changing block keeps the check honest.
            block = block[1:] + block[:1]
    finally:
        pipe.close()


PEAK_RSS = Path(__file__).resolve().parent / "peak_rss.py"


def launched(report: Path, argv: list[str]) -> list[str]:
    """argv started through peak_rss.py, which sees the program's own peak,
    not this process's size handed down at fork."""
    return [sys.executable, str(PEAK_RSS), str(report), *argv]


def reap(proc: subprocess.Popen[bytes], report: Path) -> tuple[int, float, float]:
    """Exit status, CPU seconds and peak RSS (MiB) of a child, from wait4."""
    status = proc.wait()
    maxrss, cpu = report.read_text().split()
    return status, float(cpu), int(maxrss) / 1024


def stream(env: dict[str, str], data_dir: Path, key_arn: str, mib: int, frame: int) -> Run:
    base = [sys.executable, "-m", "keycask.cli"]
    common = ["--data-dir", str(data_dir), "--quiet"]
    encrypt = subprocess.Popen(
        launched(
            data_dir / "encrypt.rss",
            [*base, "encrypt", "--key-id", key_arn, "--frame-length", str(frame), *common],
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    decrypt = subprocess.Popen(
        launched(data_dir / "decrypt.rss", [*base, "decrypt", "--key-id", key_arn, *common]),
        stdin=encrypt.stdout,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert encrypt.stdout is not None and encrypt.stdin is not None and decrypt.stdout is not None
    encrypt.stdout.close()
    sent, got = hashlib.sha256(), hashlib.sha256()
    started = time.perf_counter()
    writer = threading.Thread(target=feed, args=(encrypt.stdin, mib * MIB, sent))
    writer.start()
    while chunk := decrypt.stdout.read(MIB):
        got.update(chunk)
    writer.join()
    enc_status, enc_cpu, enc_rss = reap(encrypt, data_dir / "encrypt.rss")
    dec_status, dec_cpu, dec_rss = reap(decrypt, data_dir / "decrypt.rss")
    wall = time.perf_counter() - started
    if enc_status or dec_status or sent.digest() != got.digest():
        raise SystemExit(f"frame {frame}: failed ({enc_status}, {dec_status}) or output differs")
    return Run(frame, mib, wall, enc_cpu, dec_cpu, enc_rss, dec_rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--frames", default="4096,65536,1048576")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        server = keycask(data_dir).start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
            env["AWS_CONFIG_FILE"] = str(data_dir / "config")
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(data_dir / "credentials")
            os.environ.update(env)
            import boto3

            kms = boto3.Session(profile_name="keycask").client("kms")
            key_arn = kms.create_key()["KeyMetadata"]["Arn"]
            print(
                f"{'frame':>9} {'MiB':>6} {'wall s':>7} {'pipe MiB/s':>10} "
                f"{'enc MiB/s':>9} {'dec MiB/s':>9} {'enc RSS':>8} {'dec RSS':>8}"
            )
            for frame in (int(f) for f in args.frames.split(",")):
                run = stream(env, data_dir, key_arn, args.mib, frame)
                print(
                    f"{run.frame:>9} {run.mib:>6} {run.wall:>7.1f} {run.mib / run.wall:>10.1f} "
                    f"{run.mib / run.encrypt_cpu:>9.1f} {run.mib / run.decrypt_cpu:>9.1f} "
                    f"{run.encrypt_rss_mib:>6.0f}Mi {run.decrypt_rss_mib:>6.0f}Mi",
                    flush=True,
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
