"""Policy wildcard matching on hostile input (issue 13, finding 3): the time
per match of the patterns an attacker would write, as the value doubles.
Linear matching shows a ratio near 2 per doubling; the old backtracking
matcher showed the same ratio but at ~6 s for the first row.

    python benchmarks/glob_bench.py
"""

from __future__ import annotations

import time

from keycask.policy.glob import compile_glob, pattern_tokens

PATTERNS = {
    "*a{2998}b (tail)": "*" + "a" * 2998 + "b",
    "*a{2998}b* (middle, literal)": "*" + "a" * 2998 + "b*",
    "*(a?){30}b* (middle, short with ?)": "*" + "a?" * 30 + "b*",
    "*(a?){1499}b* (middle, long with ?)": "*" + "a?" * 1499 + "b*",
    "*a*a*...*b (1,000 segments)": "*a" * 1000 + "*b",
}


def main() -> None:
    for name, pattern in PATTERNS.items():
        glob = compile_glob(pattern_tokens(pattern))
        previous = None
        cells = []
        for size in (30_000, 60_000, 120_000):
            value = "a" * size
            rounds = 5
            start = time.perf_counter()
            for _ in range(rounds):
                assert not glob.match(value)
            per_match = (time.perf_counter() - start) / rounds
            ratio = "" if previous is None else f" (x{per_match / previous:.1f})"
            cells.append(f"{size:>7,}: {per_match * 1e3:8.3f} ms{ratio}")
            previous = per_match
        print(f"{name:<38} " + "  ".join(cells))


if __name__ == "__main__":
    main()
