"""Run a program and write its peak RSS in KiB (wait4's ru_maxrss) to a file.

    python benchmarks/peak_rss.py REPORT PROGRAM [ARG...]

stdin, stdout, stderr and the exit status pass through. Why a launcher:
Linux carries a process's maxrss across execve, and a forked child starts
with its parent's, so a program started straight from a benchmark or a
pytest worker "peaks" at least at that parent's size: 300 MiB for a CI
worker, where keycask itself used 61. Started from here, the floor is this
script's ~10 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    report, argv = sys.argv[1], sys.argv[2:]
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    with open(report, "w") as out:
        out.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
