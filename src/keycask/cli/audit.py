"""``keycask audit verify | quarantine``: check the audit log's hash chains
against the anchors the store recorded, and set aside a segment's lines the
store does not vouch for."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from keycask import config
from keycask.app import AUDIT_DIR
from keycask.audit import Anchor, anchor, verify
from keycask.audit.chain import quarantine_tail, scan_segment
from keycask.cli import localstore
from keycask.cli.client import local_record
from keycask.crypto import KeyMaterial
from keycask.errors import AuditUnavailable


async def _load_anchors(
    args: argparse.Namespace, settings: config.Settings
) -> tuple[dict[str, Anchor], KeyMaterial | None] | str:
    """The anchors recorded in the store and its audit key (None if no writer
    made one yet); for a sealed production store that nothing given here
    opens, why not. Reads only: creates and writes nothing."""
    try:
        storage, barrier = await localstore.open_to_read(args, settings)
    except localstore.NotOpened as why:
        return str(why)
    try:
        return await anchor.load(barrier), await anchor.load_key(barrier)
    finally:
        await storage.close()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Every segment of every data dir given (a cluster's nodes each keep
    their own), against the anchors recorded in the (shared) store."""
    dirs = args.data_dir or [os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR]
    settings = localstore.settings(args, data_dir=dirs[0])
    loaded = asyncio.run(_load_anchors(args, settings))
    unchecked = loaded if isinstance(loaded, str) else None
    anchors, key = (None, None) if isinstance(loaded, str) else loaded
    records = segments = beyond = unkeyed = 0
    tails: list[tuple[Path, int, int]] = []
    present: set[str] = set()
    for directory in dirs:
        audit_dir = Path(directory).resolve() / AUDIT_DIR
        names = {p.name.removesuffix(".jsonl") for p in audit_dir.glob("*.jsonl")}
        present |= names
        mine = None if anchors is None else {k: v for k, v in anchors.items() if k in names}
        result = verify(audit_dir, mine, key)
        if not result.ok:
            print(f"FAILED: {result.file} line {result.line}: {result.problem}")
            return 1
        records, segments = records + result.records, segments + result.segments
        beyond, unkeyed = beyond + result.beyond_anchors, unkeyed + result.unkeyed
        tails.extend(result.sealed_tails)
    missing = sorted(set(anchors or {}) - present)
    if missing:
        print(
            f"FAILED: segment {missing[0]} is anchored in the store but missing from "
            f"{', '.join(dirs)} (deleted, or give every node's data dir)"
        )
        return 1
    counted = f"{_count(records, 'record')} in {_count(segments, 'segment')}"
    if unchecked is not None:
        # The chains alone cannot show lines cut from a segment's end, or a
        # whole segment deleted: only the store's anchors can.
        print(
            f"NOT VERIFIED: the hash chains of {counted} hold, but the anchors and the lines' "
            f"MACs were not checked, so lines cut from the end or segments deleted would go "
            f"unseen. {unchecked}"
        )
    else:
        print(f"ok: {counted}")
    for path, first, last in tails:
        print(
            f"warning: {path} lines {first}-{last} are past the last anchor without a MAC; "
            "they record only what a sealed server writes: written while the store was "
            "sealed, or forged (nobody can tell)"
        )
    if anchors is not None and beyond:
        print(f"{beyond} lines are past the anchors, authenticated by their MACs")
    if anchors is not None and key is None:
        print("note: the store has no audit key yet (no server of this version has run "
              "on it), so lines past the anchors are not authenticated")  # fmt: skip
    elif anchors is not None and unkeyed:
        print(f"{unkeyed} lines carry no MAC (older logs, or written while sealed); "
              "the anchors or a later keyed line vouch for them")  # fmt: skip
    return 0 if unchecked is None else 1


async def _quarantine(args: argparse.Namespace, settings: config.Settings, segment: str) -> str:
    storage, barrier = await localstore.open_to_write(args, settings)
    try:
        directory = settings.data_dir / AUDIT_DIR
        path = directory / f"{segment}.jsonl"
        if not path.is_file():
            raise config.ConfigError(f"{path} does not exist")
        anchored = (await anchor.load(barrier)).get(segment)
        key = await anchor.audit_key(barrier)
        scan = scan_segment(path, anchored, key)
        if scan.failure is None:
            return f"{path}: every line is vouched for; nothing to quarantine"
        line, problem = scan.failure
        kept, keep = scan.vouched
        if anchored is not None and kept < anchored.seq:
            raise config.ConfigError(
                f"{path} line {line}: {problem}. That is at or before what the store "
                "recorded: the history itself was changed, and cutting it would not help"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            aside = quarantine_tail(path, keep, stamp)
        except OSError as exc:
            raise AuditUnavailable(f"could not quarantine {path}: {exc}") from exc
        last = kept + (len(aside.read_bytes().splitlines()) if aside else 0)
        detail = (
            f"lines {kept + 1}-{last} of {path.name} moved to {aside.name if aside else '-'} "
            f"(line {line}: {problem})"
        )
        audit = await anchor.open_keyed(barrier, directory, "cli")
        try:
            audit.append_sync(local_record("keycask:QuarantineAuditLines", detail))
            await anchor.save(barrier, audit.segment, audit.tip)
        finally:
            audit.close()
        return f"{detail}; a writer can chain on from line {kept} now (audited)"
    finally:
        await storage.close()


def cmd_audit_quarantine(args: argparse.Namespace) -> int:
    """Move the lines of a segment past what the store vouches for aside, so
    its writer can start again (it refuses to chain on from them)."""
    settings = localstore.settings(args)
    print(asyncio.run(_quarantine(args, settings, args.segment)))
    return 0


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    check = audit.add_parser(
        "verify",
        help="check the hash chain of every audit segment, and the anchors the store "
        "recorded (a sealed production store needs its seal's input for those)",
    )
    check.add_argument(
        "--data-dir",
        action="append",
        help="a data dir (repeat for every node of a cluster; default ./.keycask)",
    )
    localstore.add_store_flags(check, data_dir=False)
    check.set_defaults(func=cmd_audit_verify)
    quarantine = audit.add_parser(
        "quarantine",
        help="move a segment's lines that the store does not vouch for aside (into "
        "<segment>.jsonl.quarantined-<time>), so its writer can start again; audited",
    )
    quarantine.add_argument("segment", help="the segment's name, e.g. server")
    localstore.add_store_flags(quarantine)
    quarantine.set_defaults(func=cmd_audit_quarantine)
