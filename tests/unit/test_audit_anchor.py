"""Anchors catch what the hash chain alone cannot: a cut or rewritten tail."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from keycask.audit import Anchor, AuditLog, AuditRecord, VerifyResult, anchor, verify
from keycask.audit.anchor import AuditForged
from keycask.audit.chain import chain_form, mac_prefix
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import AuditUnavailable
from keycask.storage.sqlite import SQLiteStorage


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=f"req-{n}",
        operation="Encrypt",
        principal=None,
        access_key_id=None,
        source_ip=None,
        key_arn=None,
        encryption_context=None,
        decision="none",
        decided_by=None,
        outcome="success",
        error_code=None,
    )


def _write_sealed(directory: Path, count: int) -> None:
    """What a sealed server writes: unkeyed refusals of unauthenticated calls."""
    log = AuditLog.open(directory, "server")
    for n in range(count):
        log.append_sync(
            dataclasses.replace(_record(n), outcome="error", error_code="KMSInvalidStateException")
        )
    log.close()


def _write(directory: Path, count: int) -> Anchor:
    log = AuditLog.open(directory, "server")
    for n in range(count):
        log.append_sync(_record(n))
    tip = log.tip
    log.close()
    return tip


def test_tip_is_the_hash_of_the_last_line(tmp_path: Path) -> None:
    tip = _write(tmp_path, 5)
    last = (tmp_path / "server.jsonl").read_bytes().splitlines()[-1]
    assert tip == Anchor(5, hashlib.sha256(last).hexdigest())
    assert verify(tmp_path, {"server": tip}).ok


def test_lines_cut_from_the_end_are_caught(tmp_path: Path) -> None:
    tip = _write(tmp_path, 5)
    path = tmp_path / "server.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))
    assert verify(tmp_path).ok, "the chain alone cannot see a cut tail"
    result = verify(tmp_path, {"server": tip})
    assert not result.ok
    assert result.line == 4 and "removed from the end" in (result.problem or "")


def test_a_rewritten_last_line_is_caught(tmp_path: Path) -> None:
    tip = _write(tmp_path, 3)
    path = tmp_path / "server.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    forged = orjson.loads(lines[-1])
    forged["outcome"] = "error"
    lines[-1] = orjson.dumps(forged) + b"\n"
    path.write_bytes(b"".join(lines))
    assert verify(tmp_path).ok, "a valid-looking last line passes the chain"
    result = verify(tmp_path, {"server": tip})
    assert not result.ok and result.line == 3
    assert "differs from the one the store recorded" in (result.problem or "")


def test_a_deleted_segment_is_caught(tmp_path: Path) -> None:
    tip = _write(tmp_path, 2)
    (tmp_path / "server.jsonl").unlink()
    result = verify(tmp_path, {"server": tip})
    assert not result.ok and "missing" in (result.problem or "")


def test_lines_written_after_the_anchor_are_fine(tmp_path: Path) -> None:
    tip = _write(tmp_path, 2)
    _write(tmp_path, 3)
    assert verify(tmp_path, {"server": tip}).ok


# -- keyed lines (v2): a MAC per line under the store's audit key --


def _keyed(directory: Path, count: int, key: KeyMaterial, segment: str = "server") -> Anchor:
    log = AuditLog.open(directory, segment)
    log.set_key(key)
    for n in range(count):
        log.append_sync(_record(n))
    tip = log.tip
    log.close()
    return tip


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rechain(lines: list[bytes], start: int) -> None:
    """What an attacker without the key can do: fix every prev from line
    ``start`` (1-based) on, keeping the old MACs or dropping them."""
    for index in range(start, len(lines)):
        obj = orjson.loads(lines[index])
        obj["prev"] = hashlib.sha256(chain_form(lines[index - 1].rstrip(b"\n"))).hexdigest()
        lines[index] = orjson.dumps(obj) + b"\n"


def _forged_tail(lines: list[bytes], count: int, segment_key: KeyMaterial | None) -> list[bytes]:
    """Correctly chained lines appended after the tip: unkeyed, or keyed
    under a key that is not the store's."""
    out = list(lines)
    for n in range(count):
        seq = len(out) + 1
        prev = hashlib.sha256(chain_form(out[-1].rstrip(b"\n"))).hexdigest()
        body = orjson.dumps(_record(100 + n).fields())[1:-1]
        line = b'{"seq":%d,%b,"prev":"%b"}' % (seq, body, prev.encode())
        if segment_key is not None:
            digest = hashlib.sha256(line).digest()
            mac = segment_key.hmac_sha256(mac_prefix("server") + digest).hex().encode()
            line = line[:-1] + b',"mac":"%b"}' % mac
        out.append(line + b"\n")
    return out


def test_keyed_lines_carry_a_mac_and_verify(tmp_path: Path) -> None:
    key = KeyMaterial.generate()
    tip = _keyed(tmp_path, 4, key)
    lines = _lines(tmp_path / "server.jsonl")
    assert all(orjson.loads(line)["mac"] for line in lines)
    result = verify(tmp_path, {"server": tip}, key)
    assert result.ok and result.records == 4 and result.unkeyed == 0


@pytest.mark.parametrize("forger_key", [None, KeyMaterial.generate()], ids=["unkeyed", "wrong-key"])
def test_lines_forged_after_the_anchored_tip_fail(
    tmp_path: Path, forger_key: KeyMaterial | None
) -> None:
    # Issue 13 #9: such lines verified as ok.
    key = KeyMaterial.generate()
    tip = _keyed(tmp_path, 3, key)
    path = tmp_path / "server.jsonl"
    path.write_bytes(b"".join(_forged_tail(_lines(path), 2, forger_key)))
    assert verify(tmp_path).ok, "the chain alone cannot tell"
    result = verify(tmp_path, {"server": tip}, key)
    assert not result.ok and result.line == 4 and result.records == 3
    assert ("no valid MAC" if forger_key is None else "MAC does not match") in (
        result.problem or ""
    )


def test_lines_past_the_anchor_with_valid_macs_are_the_crash_window(tmp_path: Path) -> None:
    key = KeyMaterial.generate()
    tip = _keyed(tmp_path, 2, key)
    _keyed(tmp_path, 3, key)  # written after the last anchor, then a crash
    result = verify(tmp_path, {"server": tip}, key)
    assert result.ok and result.records == 5 and result.beyond_anchors == 3


def test_unkeyed_lines_past_the_anchor_are_vouched_for_by_a_later_keyed_line(
    tmp_path: Path,
) -> None:
    key = KeyMaterial.generate()
    tip = _keyed(tmp_path, 2, key)
    _write_sealed(tmp_path, 2)  # while sealed: no key
    _keyed(tmp_path, 1, key)  # unsealed again: the MAC covers prev, so everything before
    result = verify(tmp_path, {"server": tip}, key)
    assert result.ok and result.beyond_anchors == 3 and result.unkeyed == 2
    assert result.sealed_tails == ()
    _write_sealed(tmp_path, 2)  # sealed again, nothing keyed after it
    result = verify(tmp_path, {"server": tip}, key)
    assert result.ok and result.sealed_tails == ((tmp_path / "server.jsonl", 6, 7),)
    _write(tmp_path, 1)  # a line no sealed server writes (an answered call)
    result = verify(tmp_path, {"server": tip}, key)
    assert not result.ok and result.line == 8 and "forged" in (result.problem or "")


@pytest.mark.parametrize("how", ["copied", "fresh"])
def test_a_fabricated_segment_fails(tmp_path: Path, how: str) -> None:
    # Issue 13 #9: an extra segment the store never anchored verified as ok.
    key = KeyMaterial.generate()
    tip = _keyed(tmp_path, 3, key)
    fake = tmp_path / "server-7.jsonl"
    if how == "copied":  # real lines with real MACs, under another segment's name
        fake.write_bytes((tmp_path / "server.jsonl").read_bytes())
    else:
        forger = AuditLog.open(tmp_path, "server-7")  # a well-formed chain, no key
        forger.append_sync(_record(7))
        forger.close()
    assert verify(tmp_path).ok, "the chain alone cannot tell"
    result = verify(tmp_path, {"server": tip}, key)
    assert not result.ok and result.file == fake and result.line == 1


def test_an_edit_of_keyed_line_k_is_named_at_k(tmp_path: Path) -> None:
    # Issue 13 #15: named k + 1 for an edit, the last line for a re-chained rewrite.
    key = KeyMaterial.generate()
    tip = _keyed(tmp_path, 8, key)
    path = tmp_path / "server.jsonl"
    pristine = _lines(path)
    edited = list(pristine)
    edited[4] = edited[4].replace(b'"outcome":"success"', b'"outcome":"error"')
    path.write_bytes(b"".join(edited))
    result = verify(tmp_path, {"server": tip}, key)
    assert (result.line, result.records) == (5, 4), result
    _rechain(edited, 5)  # every later prev fixed up: still line 5
    path.write_bytes(b"".join(edited))
    result = verify(tmp_path, {"server": tip}, key)
    assert (result.line, result.records) == (5, 4), result
    assert "MAC does not match" in (result.problem or "")
    # Only line 6's prev edited: line 5 is authentic, so line 6 is named.
    edited = list(pristine)
    obj = orjson.loads(edited[5])
    obj["prev"] = "f" * 64
    edited[5] = orjson.dumps(obj) + b"\n"
    path.write_bytes(b"".join(edited))
    assert verify(tmp_path, {"server": tip}, key).line == 6


def test_keyed_lines_fail_when_the_store_lost_its_key(tmp_path: Path) -> None:
    tip = _keyed(tmp_path, 2, KeyMaterial.generate())
    result = verify(tmp_path, {"server": tip}, None)
    assert not result.ok and "no audit key" in (result.problem or "")
    assert verify(tmp_path).ok, "a sealed verify checks the chain only"


# -- adoption: a writer checks its segment's tip before chaining on --


def _store(tmp_path: Path) -> tuple[SQLiteStorage, Barrier]:
    async def open_() -> tuple[SQLiteStorage, Barrier]:
        storage = SQLiteStorage(tmp_path / "keycask.db")
        return storage, await Barrier.open(storage, KeyMaterial(b"r" * 32))

    return asyncio.run(open_())


def _serve(directory: Path, barrier: Barrier, count: int) -> AuditLog:
    """One server lifetime: adopt, append, anchor, close."""

    async def run() -> AuditLog:
        audit = AuditLog.open(directory, "server")
        anchoring = anchor.Anchoring(barrier, audit)
        try:
            await anchoring.flush()
            for n in range(count):
                await audit.append(_record(n))
            await anchoring.flush()
        finally:
            await audit.aclose()
        return audit

    return asyncio.run(run())


def _verify_store(directory: Path, barrier: Barrier) -> VerifyResult:
    async def read() -> tuple[dict[str, Anchor], KeyMaterial | None]:
        return await anchor.load(barrier), await anchor.load_key(barrier)

    anchors, key = asyncio.run(read())
    return verify(directory, anchors, key)


@pytest.mark.parametrize("forger_key", [None, KeyMaterial.generate()], ids=["unkeyed", "wrong-key"])
def test_a_writer_refuses_to_chain_on_from_a_forged_tip(
    tmp_path: Path, forger_key: KeyMaterial | None
) -> None:
    # Issue 13 #9: after a restart the server chained on from the forged line
    # and anchored it, making it verify.
    directory = tmp_path / "audit"
    storage, barrier = _store(tmp_path)
    _serve(directory, barrier, 3)
    assert _verify_store(directory, barrier).ok
    path = directory / "server.jsonl"
    path.write_bytes(b"".join(_forged_tail(_lines(path), 1, forger_key)))

    async def restart() -> tuple[str, str, Anchor]:
        audit = AuditLog.open(directory, "server")
        with pytest.raises(AuditForged) as caught:
            await anchor.Anchoring(barrier, audit).flush()
        with pytest.raises(AuditUnavailable) as refused:
            await audit.append(_record(9))
        audit.close()
        return str(caught.value), str(refused.value), (await anchor.load(barrier))["server"]

    message, refusal, anchored = asyncio.run(restart())
    assert "line 4" in message and "will not chain on" in message and message == refusal
    assert anchored.seq == 3, "the forged line must never be anchored"
    assert len(_lines(path)) == 4
    assert not _verify_store(directory, barrier).ok
    asyncio.run(storage.close())


def test_a_cut_or_rewritten_segment_is_refused_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    storage, barrier = _store(tmp_path)
    _serve(directory, barrier, 3)
    path = directory / "server.jsonl"
    path.write_bytes(b"".join(_lines(path)[:2]))
    with pytest.raises(AuditForged):
        _serve(directory, barrier, 1)
    asyncio.run(storage.close())


def test_a_crash_window_tail_is_adopted_and_anchored(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    storage, barrier = _store(tmp_path)
    _serve(directory, barrier, 2)

    async def crash() -> None:  # keyed lines, never anchored
        audit = AuditLog.open(directory, "server")
        await anchor.adopt(barrier, audit)
        for n in range(3):
            await audit.append(_record(n))
        await audit.aclose()

    asyncio.run(crash())
    result = _verify_store(directory, barrier)
    assert result.ok and result.beyond_anchors == 3
    _serve(directory, barrier, 1)
    result = _verify_store(directory, barrier)
    assert result.ok and result.records == 6 and result.beyond_anchors == 0
    asyncio.run(storage.close())


def test_an_unkeyed_tail_is_adopted_with_a_record_saying_so(tmp_path: Path) -> None:
    # A server stopped while sealed leaves lines nobody can authenticate;
    # refusing them would stop every sealed restart, so they are flagged.
    directory = tmp_path / "audit"
    storage, barrier = _store(tmp_path)
    _serve(directory, barrier, 2)
    _write_sealed(directory, 2)  # sealed: unkeyed, unanchored
    assert _verify_store(directory, barrier).sealed_tails
    _serve(directory, barrier, 1)
    records = [orjson.loads(line) for line in _lines(directory / "server.jsonl")]
    flag = records[4]
    assert flag["operation"] == "keycask:AdoptAuditSegment" and "mac" in flag
    assert "lines 3-4 of server.jsonl" in flag["detail"]
    result = _verify_store(directory, barrier)
    assert result.ok and result.sealed_tails == ()
    asyncio.run(storage.close())


def test_the_audit_key_is_made_once_and_kept_behind_the_barrier(tmp_path: Path) -> None:
    storage, barrier = _store(tmp_path)

    async def keys() -> tuple[KeyMaterial | None, KeyMaterial, KeyMaterial]:
        before = await anchor.load_key(barrier)
        return before, await anchor.audit_key(barrier), await anchor.audit_key(barrier)

    before, first, second = asyncio.run(keys())
    assert before is None and first.matches(second)
    stored = storage.get_sync(anchor.KEY_PATH)
    assert stored is not None and first.reveal() not in stored.value
    asyncio.run(storage.close())


def test_the_first_start_with_keyed_lines_adopts_an_older_keycask_s_tail(tmp_path: Path) -> None:
    # An older keycask crashed within a second of its last anchor: its last
    # lines are unkeyed answered calls past the anchor. With no audit key in
    # the store yet, nothing can judge them: adopted, and a record says so.
    directory = tmp_path / "audit"
    storage, barrier = _store(tmp_path)
    tip = _write(directory, 2)
    asyncio.run(anchor.save(barrier, "server", Anchor(tip.seq, tip.digest)))  # no size: old
    _write(directory, 2)
    _serve(directory, barrier, 1)
    records = [orjson.loads(line) for line in _lines(directory / "server.jsonl")]
    assert records[4]["operation"] == "keycask:AdoptAuditSegment" and "mac" in records[4]
    assert "lines 3-4 of server.jsonl" in records[4]["detail"]
    result = _verify_store(directory, barrier)
    assert result.ok and result.records == 6
    asyncio.run(storage.close())
