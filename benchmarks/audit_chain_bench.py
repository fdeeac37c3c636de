"""CPU cost of serialising audit lines, unkeyed (v1) and keyed (v2, one
HMAC-SHA256 per line), as the group-commit flusher does for a batch of 64.

    python benchmarks/audit_chain_bench.py [--rounds 150]

Prints the best per-line time of each over many interleaved rounds: the
machine's noise only ever adds time.
"""

from __future__ import annotations

import argparse
import timeit
from datetime import UTC, datetime

from keycask.audit.chain import GENESIS, _chain, _Tip, mac_prefix
from keycask.audit.record import AuditRecord
from keycask.audit.record import encode as _encode_body
from keycask.crypto import KeyMaterial

KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/2c4e6a3b-8d0f-4a8e-9c7b-1a2b3c4d5e6f"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()
    record = AuditRecord(
        time=datetime.now(UTC),
        request_id="2c4e6a3b-8d0f-4a8e-9c7b-1a2b3c4d5e6f",
        operation="Encrypt",
        principal="arn:aws:iam::000000000000:user/admin",
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        source_ip="127.0.0.1",
        key_arn=KEY_ARN,
        encryption_context={"purpose": "bench"},
        decision="allow",
        decided_by="key policy",
        outcome="success",
        error_code=None,
        region="us-east-1",
    )
    batch = [_encode_body(record)] * 64
    tip, prefix, key = _Tip(0, GENESIS, 0), mac_prefix("server"), KeyMaterial.generate()
    size = len(_chain(batch[:1], tip, key, prefix)[0])
    best = {"unkeyed": float("inf"), "keyed": float("inf")}
    for _ in range(args.rounds):
        for name, used in (("unkeyed", None), ("keyed", key)):
            seconds = timeit.timeit(lambda used=used: _chain(batch, tip, used, prefix), number=200)
            best[name] = min(best[name], seconds / 200 / len(batch) * 1e6)
    print(
        f"{size}-byte keyed lines, batches of {len(batch)}: unkeyed {best['unkeyed']:.2f} us/line, "
        f"keyed {best['keyed']:.2f} us/line (+{best['keyed'] - best['unkeyed']:.2f})"
    )


if __name__ == "__main__":
    main()
