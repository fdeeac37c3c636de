"""Read-only admin operations the web console needs and the CLI has offline:
``LintPolicy`` (``keycask policy lint`` on a document not yet saved),
``WhoCan`` (``keycask policy who-can`` for a key of the caller's account and
an action, over that account's principals), ``ListAuditRecords`` (this
node's recent audit records, filtered, and on request the chain's
verification as ``keycask audit verify`` does it) and ``ListNodes`` (the
nodes of the cluster as they record themselves, ``core/nodes.py``).

Like every admin operation they are signed, authorized and audited
(``KeycaskAdmin.<Op>``, action ``keycask:<Op>`` on the caller's account,
``arn:aws:iam::<account>:root``, decided by identity policies;
administrators are allowed by their allow-all policy). Neither changes
anything. ``ListAuditRecords`` shows only records of the caller's own
account: those whose principal or key is in it (a node's log holds every
account's requests, and refusals of callers nobody authenticated belong to
no account, so it never shows them). ``ListNodes`` answers the same to every
account allowed it: names, addresses, versions and heartbeats, no secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from keycask.audit import anchor
from keycask.audit.chain import SEGMENT_SUFFIX, verify
from keycask.auth.credentials import CredentialStore, Principal
from keycask.barrier import Barrier
from keycask.errors import (
    AccessDeniedException,
    MalformedPolicyDocumentException,
    ValidationException,
)
from keycask.keys.keystore import KeyStore
from keycask.keys.model import iam_root_arn
from keycask.policy.document import parse_policy
from keycask.policy.lint import (
    RULES,
    LintFinding,
    lint_identity_policy,
    lint_key_policy,
    lint_trust_policy,
)
from keycask.policy.statements import normalize_action
from keycask.policy.who_can import Finding, who_can
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call, Outcome
from keycask.service.core.nodes import NodeRegistry, NodeView
from keycask.service.core.resolve import find_key, parse_reference

# How much of the log's end one ListAuditRecords call reads, over all of
# this node's segments (the most recently written first): the recent records.
# The bound is the request's cost, whatever the number and size of the
# segments; older records are the offline `keycask audit` commands' to read.
TAIL_BYTES = 4 * 1024 * 1024
# A whole-log verification reads every byte once: one at a time per process,
# and its result answered again for this long after it began.
VERIFY_INTERVAL_SECONDS = 10.0
MAX_RECORDS = 500
DEFAULT_RECORDS = 50
PolicyKind = Literal["key", "identity", "trust"]
POLICY_KINDS: dict[str, PolicyKind] = {"key": "key", "identity": "identity", "trust": "trust"}


@dataclass(frozen=True, slots=True)
class LintPolicyRequest:
    policy_document: str
    kind: PolicyKind = "key"
    account: str | None = None
    key_tags: tuple[tuple[str, str], ...] = ()
    admin: bool = False  # identity: the principal holding it is an administrator
    name: str = "policy"  # identity: the policy's name; trust: the role's ARN


@dataclass(frozen=True, slots=True)
class LintPolicyResult:
    findings: tuple[LintFinding, ...]


@dataclass(frozen=True, slots=True)
class ListAuditRecordsRequest:
    limit: int = DEFAULT_RECORDS
    key: str | None = None  # a key id or ARN: records whose key ARN contains it
    principal: str | None = None  # records whose principal ARN contains it
    operation: str | None = None  # the operation, exactly (e.g. CreateKey)
    outcome: str | None = None  # success | error
    verify: bool = False
    # The previous page's NextMarker: records older than the last one it showed.
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class ChainStatus:
    ok: bool
    records: int
    segments: int
    anchored: bool  # checked against the store's anchors and audit key
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ListAuditRecordsResult:
    records: tuple[Mapping[str, object], ...]
    chain: ChainStatus | None
    next_marker: str | None = None
    # The read budget ran out before the start of the log: older records
    # exist that this call did not look at (the offline commands read them).
    window_exhausted: bool = False


@dataclass(frozen=True, slots=True)
class WhoCanRequest:
    key_id: str
    action: str


@dataclass(frozen=True, slots=True)
class WhoCanResult:
    key_arn: str
    action: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class Inspector:
    """What the operations read: the credential store (the account's
    principals, for lint and who-can), the keys and the authorizer (a key's
    policy and grants, principals' subjects), this node's audit directory,
    the barrier its anchors and audit key are read through, and the nodes'
    registry."""

    credentials: CredentialStore
    directory: Path
    barrier: Barrier
    keys: KeyStore
    authz: Authorizer
    nodes: NodeRegistry
    # The nodes serve every account: only this account's principals list them.
    operator_account: str = ""


Handler = Callable[[Inspector, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class InspectionOperation:
    name: str
    request: type
    handler: Handler
    mutates: bool


async def _allow(call: Call, operation: str, account: str | None) -> str:
    account = account or call.account
    if account != call.account:
        raise ValidationException("Account must be the caller's own account.")
    await call.authorize("keycask:" + operation, resource=iam_root_arn(account))
    return account


# -- LintPolicy --


class _Existing(Collection[str]):
    """The principals that exist, for the lockout rule, as far as the caller
    may know: those of its own account by name; any other account's ARN
    counts as existing (whether it does is that account's business)."""

    def __init__(self, account: str, arns: set[str]) -> None:
        self._account = account
        self._arns = arns

    def __contains__(self, arn: object) -> bool:
        return _account_of(arn) != self._account or arn in self._arns

    def __iter__(self) -> Iterator[str]:
        return iter(self._arns)

    def __len__(self) -> int:
        return len(self._arns)


async def lint_policy(inspector: Inspector, call: Call, req: LintPolicyRequest) -> Outcome:
    account = await _allow(call, "LintPolicy", req.account)
    try:
        policy = parse_policy(req.policy_document, kind=req.kind)
    except MalformedPolicyDocumentException as exc:
        # As ``keycask policy lint`` reports it: a finding, not a failure.
        rule = "malformed-policy"
        findings = [LintFinding(RULES[rule][0], "(policy)", rule, str(exc))]
        call.detail = f"{req.kind} policy: malformed"
        return Outcome(LintPolicyResult(tuple(findings)))
    if req.kind == "key":
        principals = await inspector.credentials.list_principals(account, "", 1000)
        admins = {p.arn for p in principals if p.admin}
        findings = lint_key_policy(
            policy,
            key_tags=dict(req.key_tags),
            admins=admins,
            key_account=account,
            existing_principals=_Existing(account, {p.arn for p in principals}),
        )
    elif req.kind == "identity":
        findings = lint_identity_policy(req.name, policy, principal_is_admin=req.admin)
    else:
        findings = lint_trust_policy(req.name, policy)
    call.detail = f"{req.kind} policy: {len(findings)} finding(s)"
    return Outcome(LintPolicyResult(tuple(findings)))


# -- WhoCan --


async def who_can_act(inspector: Inspector, call: Call, req: WhoCanRequest) -> Outcome:
    account = await _allow(call, "WhoCan", None)
    try:
        action = normalize_action(req.action)
    except ValueError as exc:
        raise ValidationException(str(exc)) from None
    target = parse_reference(req.key_id, account=account, region=call.region, allow_alias=True)
    if target.account != account:
        # Another account's principals and grants are not the caller's to list.
        raise ValidationException("WhoCan answers for keys of the caller's own account.")
    stored, _ = await find_key(inspector.keys, req.key_id, account=account, region=call.region)
    key = stored.value
    call.key_arn = key.arn
    principals: list[Principal] = []
    after = ""
    while True:
        page = await inspector.credentials.list_principals(account, after, 1000)
        principals.extend(page)
        if len(page) < 1000:
            break
        after = page[-1].name
    authz = inspector.authz
    findings = who_can(
        action,
        key,
        authz.key_policy(key),
        [authz.subject(p) for p in principals],
        await authz.grants(key),
    )
    call.detail = f"{action}: {len(findings)} way(s)"
    return Outcome(WhoCanResult(key.arn, action, tuple(findings)))


# -- ListAuditRecords --


def _account_of(arn: object) -> str | None:
    if not isinstance(arn, str):
        return None
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[0] == "arn" else None


def _tail_lines(path: Path, budget: int) -> list[bytes]:
    """The whole lines among the last ``budget`` bytes of ``path``."""
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        # One byte before the tail: a line that starts right at it is whole.
        start = max(0, size - budget - 1)
        stream.seek(start)
        data = stream.read(size - start)
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # cut (or empty, when the byte before was a newline)
    return [line for line in lines if line]


def _matches(record: Mapping[str, object], account: str, req: ListAuditRecordsRequest) -> bool:
    principal, key = record.get("principal"), record.get("key_arn")
    if account not in (_account_of(principal), _account_of(key)):
        return False
    if req.key is not None and not (isinstance(key, str) and req.key in key):
        return False
    if req.principal is not None and not (
        isinstance(principal, str) and req.principal in principal
    ):
        return False
    if req.operation is not None and record.get("operation") != req.operation:
        return False
    return req.outcome is None or record.get("outcome") == req.outcome


def _order(record: Mapping[str, object]) -> tuple[str, str, int]:
    """Newest first: by time, then segment and sequence number, so records of
    the same instant have one order and a marker splits them exactly."""
    seq = record.get("seq")
    return (str(record.get("time", "")), str(record.get("segment", "")),
            seq if isinstance(seq, int) else 0)  # fmt: skip


def _marker(record: Mapping[str, object]) -> str:
    when, segment, seq = _order(record)
    return f"{when}|{segment}|{seq}"


def _parse_marker(marker: str) -> tuple[str, str, int]:
    parts = marker.split("|")
    seq = parts[-1]
    if (
        len(parts) != 3
        or not (seq.isascii() and seq.isdigit() and len(seq) <= 20)
        or (len(marker) > 256)
    ):
        raise ValidationException("Marker is not a NextMarker this operation returned.")
    return parts[0], parts[1], int(parts[2])


def _segments(directory: Path) -> list[Path]:
    """This node's segments, the most recently written first."""
    found = []
    for path in directory.glob(f"*{SEGMENT_SUFFIX}"):
        try:
            found.append((path.stat().st_mtime_ns, path.name, path))
        except OSError:
            continue  # removed meanwhile
    return [path for _, _, path in sorted(found, reverse=True)]


def _recent(
    directory: Path, account: str, req: ListAuditRecordsRequest
) -> tuple[list[dict[str, object]], str | None, bool]:
    before = None if req.marker is None else _parse_marker(req.marker)
    found: list[dict[str, object]] = []
    budget = TAIL_BYTES
    exhausted = False
    for segment in _segments(directory):
        if budget <= 0:
            exhausted = True
            break
        lines = _tail_lines(segment, budget)
        read = sum(len(line) + 1 for line in lines)
        if read >= budget or segment.stat().st_size > budget:
            exhausted = True  # this segment was cut: older records not read
        budget -= read
        for line in lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line: verify reports it
            if isinstance(record, dict) and _matches(record, account, req):
                record.pop("prev", None)
                record.pop("mac", None)
                record["segment"] = segment.name.removesuffix(SEGMENT_SUFFIX)
                if before is None or _order(record) < before:
                    found.append(record)
    found.sort(key=_order, reverse=True)
    page = found[: req.limit]
    more = len(found) > req.limit
    return page, _marker(page[-1]) if more else None, exhausted


async def _chain(audit: Inspector) -> ChainStatus:
    try:
        anchors = await anchor.load(audit.barrier)
        key = await anchor.load_key(audit.barrier)
    except Exception:  # sealed, or the store not answering: the chain alone
        anchors, key = None, None
    names = {p.name.removesuffix(SEGMENT_SUFFIX) for p in audit.directory.glob("*.jsonl")}
    mine = None if anchors is None else {k: v for k, v in anchors.items() if k in names}
    result = await asyncio.to_thread(verify, audit.directory, mine, key)
    problem = None
    if not result.ok:
        where = "" if result.file is None else f"{result.file.name} line {result.line}: "
        problem = where + (result.problem or "")
    return ChainStatus(result.ok, result.records, result.segments, anchors is not None, problem)


class _VerifyGate:
    """One whole-log verification at a time per process, and its result
    answered again for VERIFY_INTERVAL_SECONDS after it began: a loop of
    Verify requests (one caller's, or several accounts') costs one reading of
    the log per interval, not one per request, and a request that comes
    while one runs waits for that one. The result is the node's chain, the
    same whoever asks."""

    def __init__(self) -> None:
        self._running: asyncio.Future[ChainStatus] | None = None
        self._last: tuple[float, ChainStatus] | None = None

    async def status(self, audit: Inspector) -> ChainStatus:
        if self._last is not None and time.monotonic() - self._last[0] < VERIFY_INTERVAL_SECONDS:
            return self._last[1]
        if self._running is None:
            began = time.monotonic()
            running = asyncio.ensure_future(_chain(audit))
            self._running = running

            def done(task: asyncio.Future[ChainStatus]) -> None:
                self._running = None
                if not task.cancelled() and task.exception() is None:
                    self._last = (began, task.result())

            running.add_done_callback(done)
        # Shielded: a caller that goes away does not cancel the others' answer.
        return await asyncio.shield(self._running)


_VERIFY = _VerifyGate()


async def list_audit_records(audit: Inspector, call: Call, req: ListAuditRecordsRequest) -> Outcome:
    account = await _allow(call, "ListAuditRecords", None)
    records, marker, exhausted = await asyncio.to_thread(_recent, audit.directory, account, req)
    chain = await _VERIFY.status(audit) if req.verify else None
    call.detail = f"{len(records)} record(s)" + (", chain verified" if req.verify else "")
    return Outcome(ListAuditRecordsResult(tuple(records), chain, marker, exhausted))


# -- ListNodes --


@dataclass(frozen=True, slots=True)
class ListNodesRequest:
    pass


@dataclass(frozen=True, slots=True)
class ListNodesResult:
    nodes: tuple[NodeView, ...]


async def list_nodes(inspector: Inspector, call: Call, req: ListNodesRequest) -> Outcome:
    assert call.caller is not None
    if call.caller.principal.account != inspector.operator_account:
        raise AccessDeniedException(
            f"User: {call.caller.arn} is not authorized to perform: keycask:ListNodes: "
            "the nodes are listed to principals of the operator account only"
        )
    await _allow(call, "ListNodes", None)
    nodes = await inspector.nodes.nodes()
    ready = sum(1 for n in nodes if n.state == "ready")
    call.detail = f"{len(nodes)} node(s), {ready} ready"
    return Outcome(ListNodesResult(tuple(nodes)))


OPERATIONS: Mapping[str, InspectionOperation] = {
    op.name: op
    for op in (
        InspectionOperation("LintPolicy", LintPolicyRequest, lint_policy, False),
        InspectionOperation("WhoCan", WhoCanRequest, who_can_act, False),
        InspectionOperation("ListAuditRecords", ListAuditRecordsRequest, list_audit_records, False),
        InspectionOperation("ListNodes", ListNodesRequest, list_nodes, False),
    )
}


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_RECORDS:
        raise ValidationException(f"Limit must be between 1 and {MAX_RECORDS}.")
    return limit


def check_outcome(outcome: str | None) -> str | None:
    if outcome not in (None, "success", "error"):
        raise ValidationException("Outcome must be success or error.")
    return outcome


def check_kind(kind: str) -> PolicyKind:
    if kind not in POLICY_KINDS:
        raise ValidationException(f"Kind must be one of {', '.join(POLICY_KINDS)}.")
    return POLICY_KINDS[kind]


def findings_doc(findings: Sequence[LintFinding]) -> list[dict[str, str]]:
    return [
        {"Severity": f.severity, "Statement": f.statement, "Rule": f.rule, "Message": f.message}
        for f in findings
    ]
