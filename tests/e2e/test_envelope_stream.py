"""2 GiB through ``keycask encrypt | keycask decrypt`` in constant memory.

The data is made in this process and fed through a pipe, the plaintext that
comes out is hashed as it arrives: nothing of the 2 GiB touches the disk.
Each keycask process's peak RSS comes from wait4 (ru_maxrss), which sees
the child's whole life, not a sample of it. Linux carries a process's
maxrss across execve, and a forked child starts with its parent's: forked
from this pytest worker (300 MiB after a few hundred tests, seen in CI) every
child would "peak" at the worker's size. So each keycask is started by a
small launcher (benchmarks/peak_rss.py, ~10 MiB) that reports its child's
ru_maxrss.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest
from envelope_helpers import KEYCASK

if TYPE_CHECKING:
    from conftest import Server

MIB = 1024 * 1024
TOTAL = 2048 * MIB
RSS_LIMIT_MIB = 200


def _feed(pipe: IO[bytes], digest: Any) -> None:
    block = bytearray(os.urandom(MIB))
    try:
        for n in range(TOTAL // MIB):
            # A different MiB each time (a counter in its first bytes).
            block[:8] = n.to_bytes(8, "big")
            digest.update(block)
            pipe.write(block)
    finally:
        pipe.close()


PEAK_RSS = Path(__file__).resolve().parents[2] / "benchmarks" / "peak_rss.py"


def _launched(report: Path, argv: list[str]) -> list[str]:
    return [sys.executable, str(PEAK_RSS), str(report), *argv]


def _reap(proc: subprocess.Popen[bytes], report: Path) -> tuple[int, float]:
    status = proc.wait()
    return status, int(report.read_text().split()[0]) / 1024  # KiB on Linux


@pytest.mark.slow
def test_two_gib_stream_in_bounded_memory(server: Server, kms: Any, tmp_path: Path) -> None:
    key = kms.create_key(Description="stream")["KeyMetadata"]["Arn"]
    tail = ["--quiet", "--data-dir", str(server.data_dir)]
    encrypt = subprocess.Popen(
        _launched(tmp_path / "encrypt.rss", [*KEYCASK, "encrypt", "--key-id", key, *tail]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=server.env(),
    )
    decrypt = subprocess.Popen(
        _launched(tmp_path / "decrypt.rss", [*KEYCASK, "decrypt", "--key-id", key, *tail]),
        stdin=encrypt.stdout,
        stdout=subprocess.PIPE,
        env=server.env(),
    )
    assert encrypt.stdin and encrypt.stdout and decrypt.stdout
    encrypt.stdout.close()  # decrypt holds it now
    sent, got = hashlib.sha256(), hashlib.sha256()
    started = time.monotonic()
    writer = threading.Thread(target=_feed, args=(encrypt.stdin, sent))
    writer.start()
    received = 0
    while chunk := decrypt.stdout.read(MIB):
        got.update(chunk)
        received += len(chunk)
    writer.join()
    encrypt_status, encrypt_rss = _reap(encrypt, tmp_path / "encrypt.rss")
    decrypt_status, decrypt_rss = _reap(decrypt, tmp_path / "decrypt.rss")
    elapsed = time.monotonic() - started
    print(
        f"2 GiB in {elapsed:.1f} s ({TOTAL / MIB / elapsed:.1f} MiB/s); peak RSS "
        f"encrypt {encrypt_rss:.0f} MiB, decrypt {decrypt_rss:.0f} MiB"
    )
    assert (encrypt_status, decrypt_status) == (0, 0)
    assert received == TOTAL
    assert got.hexdigest() == sent.hexdigest()
    assert encrypt_rss < RSS_LIMIT_MIB, encrypt_rss
    assert decrypt_rss < RSS_LIMIT_MIB, decrypt_rss
