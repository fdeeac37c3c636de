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
from keycask.app import AUDIT_DIR, open_store, open_store_to_read
from keycask.audit import Anchor, anchor, verify
from keycask.audit.chain import quarantine_tail, scan_segment
from keycask.cli.client import local_record
from keycask.cli.secrets import add_startup_flags, startup_unseal
from keycask.crypto import KeyMaterial
from keycask.errors import AuditUnavailable, SealError
from keycask.seal import SEAL_FILE
from keycask.seal.dev import ROOT_KEY_FILE
from keycask.service.sealing import SealKeeper, UnsealInput


async def _load_anchors(
    settings: config.Settings, unseal: UnsealInput | None
) -> tuple[dict[str, Anchor], KeyMaterial | None] | None:
    """The anchors recorded in the store and its audit key (None if no writer
    made one yet); None for a sealed production store that nothing given
    here opens. Reads only: creates and writes nothing."""
    storage, barrier = await open_store_to_read(settings)
    try:
        if barrier.sealed:
            if unseal is None:
                return None
            keeper = SealKeeper(
                settings.data_dir, barrier, pkcs11_modules=frozenset(settings.pkcs11_modules)
            )
            await keeper.open_to_read(unseal)
        return await anchor.load(barrier), await anchor.load_key(barrier)
    finally:
        await storage.close()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _verified_dir(directory: str) -> bool:
    """Whether ``directory`` is a production data dir (False: a --dev one)."""
    path = Path(directory)
    if (path / SEAL_FILE).exists():
        return True
    if (path / ROOT_KEY_FILE).exists():
        return False
    raise config.ConfigError(
        f"{path} is not a keycask data dir: it has neither {SEAL_FILE} (production) nor "
        f"{ROOT_KEY_FILE} (--dev); give the data dir with --data-dir"
    )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Every segment of every data dir given (a cluster's nodes each keep
    their own), against the anchors recorded in the (shared) store."""
    dirs = args.data_dir or [os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR]
    production = _verified_dir(dirs[0])
    settings = config.load(
        dev=not production,
        data_dir=dirs[0],
        storage=args.storage,
        pkcs11_modules=args.pkcs11_module or (),
    )
    loaded = asyncio.run(_load_anchors(settings, startup_unseal(args) if production else None))
    anchors, key = (None, None) if loaded is None else loaded
    if loaded is None:
        print(
            "note: the store is sealed, so its anchors and the lines' MACs were not checked "
            "(give --pkcs11-pin-file or --passphrase-file, or the env variables, to check them)"
        )
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
    print(f"ok: {_count(records, 'record')} in {_count(segments, 'segment')}")
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
    return 0


async def _quarantine(settings: config.Settings, segment: str, unseal: UnsealInput | None) -> str:
    storage, barrier = await open_store(settings)
    try:
        if barrier.sealed:
            if unseal is None:
                raise SealError(
                    "the store is sealed: give --pkcs11-pin-file or --passphrase-file "
                    "(or the env variables) to open it"
                )
            await SealKeeper(
                settings.data_dir, barrier, pkcs11_modules=frozenset(settings.pkcs11_modules)
            ).unseal(unseal)
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
    directory = args.data_dir or os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR
    production = _verified_dir(directory)
    settings = config.load(
        dev=not production,
        data_dir=directory,
        storage=args.storage,
        pkcs11_modules=args.pkcs11_module or (),
    )
    unseal = startup_unseal(args) if production else None
    print(asyncio.run(_quarantine(settings, args.segment, unseal)))
    return 0


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    check = audit.add_parser("verify", help="check the hash chain of every audit segment")
    check.add_argument(
        "--data-dir",
        action="append",
        help="a data dir (repeat for every node of a cluster; default ./.keycask)",
    )
    check.add_argument("--storage", metavar="DSN", help="the cluster's PostgreSQL store")
    add_startup_flags(check)
    check.add_argument(
        "--pkcs11-module", action="append", metavar="LIB", help="a PKCS#11 library to allow"
    )
    check.set_defaults(func=cmd_audit_verify)
    quarantine = audit.add_parser(
        "quarantine",
        help="move a segment's lines that the store does not vouch for aside (into "
        "<segment>.jsonl.quarantined-<time>), so its writer can start again; audited",
    )
    quarantine.add_argument("segment", help="the segment's name, e.g. server")
    quarantine.add_argument("--data-dir", help="the data dir (default ./.keycask)")
    quarantine.add_argument("--storage", metavar="DSN", help="the cluster's PostgreSQL store")
    add_startup_flags(quarantine)
    quarantine.add_argument(
        "--pkcs11-module", action="append", metavar="LIB", help="a PKCS#11 library to allow"
    )
    quarantine.set_defaults(func=cmd_audit_quarantine)
