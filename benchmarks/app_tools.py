"""Wall time of the application tools' commands, start-up included.

``keycask exec`` runs at every start of an application, so its cost is the
CLI's start-up plus one Decrypt per secret. Starts a --dev server of its own
in a temp dir, makes a key and a secrets file of N secrets, then runs each
command R times and reports the lowest and the median wall time. Compare two
trees in one sitting with PYTHONPATH (the machines are noisy):

    .venv/bin/python benchmarks/app_tools.py --secrets 1,20 --runs 15
    PYTHONPATH=/work/before/src .venv/bin/python benchmarks/app_tools.py ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import keycask


def _keycask(
    data: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "keycask.cli", *args],
        input=stdin,
        capture_output=True,
        check=True,
        env={**_env(), "KEYCASK_DATA_DIR": str(data)},
    )


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}


def _timed(data: Path, args: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _keycask(data, *args)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", default="1,20", help="secrets-file sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        server = keycask(data).start()
        try:
            import boto3

            os.environ["AWS_CONFIG_FILE"] = str(data / "config")
            os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(data / "credentials")
            kms = boto3.Session(profile_name="keycask").client("kms")
            key = kms.create_key()["KeyMetadata"]["Arn"]
            print(f"{'command':<44} {'lowest':>8} {'median':>8}")
            lowest, median = _timed(data, ["--version"], args.runs)
            print(f"{'keycask --version':<44} {lowest:8.3f} {median:8.3f}")
            for count in (int(n) for n in args.secrets.split(",")):
                path = Path(tmp) / f"s{count}.env"
                for n in range(count):
                    _keycask(
                        data,
                        "secrets",
                        "set",
                        str(path),
                        f"S{n}",
                        "--key-id",
                        key,
                        stdin=f"value-{n}".encode(),
                    )
                for label, command in (
                    (
                        f"keycask exec ({count} secrets) -- true",
                        ["exec", "--secrets", str(path), "--", "true"],
                    ),
                    (f"keycask secrets get ({count} in file)", ["secrets", "get", str(path), "S0"]),
                ):
                    lowest, median = _timed(data, command, args.runs)
                    print(f"{label:<44} {lowest:8.3f} {median:8.3f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
