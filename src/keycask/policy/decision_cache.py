"""Decisions remembered: ``decide`` answered from memory when nothing it reads
has changed.

``decide`` (evaluate.py) is a pure function of its ``Request``: the subject
(ARN, account, unique id, tags, identity policies, admin flag), the action,
the resource and its account, the key policy, the grants, the encryption
context and, only when a statement with conditions is reached, the request's
condition keys. A remembered decision is given back only when every one of
those is the same as when it was decided:

* the subject and the key policy by identity: both are frozen, and the
  Authorizer hands out a new object whenever the principal (its policies,
  tags, access) or the key's policy text changes, so the same object means
  the same document;
* the grants by identity or, failing that, by value (a request with grant
  tokens builds a new tuple each time);
* the resource's account by value, and the encryption context by value
  when a grant has a constraint (a grant reads the context only through its
  constraints: ``GrantView.covers``);
* when any statement of the key policy or of the identity policies has a
  Condition, the value of every condition key a condition reads (its key,
  and the key of each ``${...}`` variable in its values), from the request's
  condition keys built once, as ``decide`` would build them. A policy that
  reads the clock (aws:CurrentTime, aws:EpochTime, as a condition key or a
  policy variable; or merely names them in a value) is never remembered: its
  answer may change with no change of anything else.

So a remembered decision is right exactly as long as the inputs the
uncached path reads are current: the key store, the credential store and the
Authorizer's own caches, which every commit (this process's, another
worker's, another node's) already invalidates for that path. The memory is
also dropped with the Authorizer's caches (``clear``), and bounded.

Measured (Encrypt 4 KiB through Pipeline.handle, the default key policy and
an administrator, /work/notes/cg.sh): 923,628 instructions per request
before, 818,514 with decisions remembered (and the kms:ResourceAliases check
remembered in authz.py); Call.authorize alone ~20-30 us -> ~3 us on the
same loaded machine. A remembered decision costs a dict lookup and a few
identity checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from keycask.policy.conditions import ContextValue, RequestContext
from keycask.policy.evaluate import (
    WORK_LIMIT_DECIDER,
    Decision,
    GrantView,
    Request,
    Subject,
    decide,
)
from keycask.policy.model import Policy, Variable
from keycask.policy.values import parse_template

# At most this many remembered decisions (first in, first out): a caller
# cycling through actions, aliases or encryption contexts grows nothing.
MAX_ENTRIES = 4096
# An encryption context or condition key values larger than this, in
# characters, are not remembered: 4096 entries of them would hold too much.
MAX_FACT_CHARS = 2048

_CLOCK_KEYS = frozenset({"aws:currenttime", "aws:epochtime"})


@dataclass(frozen=True, slots=True)
class _Entry:
    subject: Subject
    key_policy: Policy | None
    grants: Sequence[GrantView]
    resource_account: str | None
    # Whether a grant reads the encryption context, and the context if so.
    context_read: bool
    encryption_context: Mapping[str, str] | None
    # The condition keys the policies read (lower-cased) and their values in
    # the request (None: absent); None when no statement has a Condition.
    read: tuple[str, ...] | None
    facts: tuple[ContextValue | None, ...]
    decision: Decision


def _policies(request: Request) -> list[Policy]:
    policies = [policy for _, policy in request.subject.identity_policies()]
    if request.subject.session is not None and request.subject.session.policy is not None:
        policies.append(request.subject.session.policy)
    if request.key_policy is not None:
        policies.append(request.key_policy)
    return policies


def _read_keys(policies: list[Policy]) -> frozenset[str] | None:
    """The condition keys the policies' conditions read: each condition's
    key, and the key of each ``${...}`` variable in its values (parsed as
    conditions.py parses them; a value it cannot parse it drops, reading
    nothing). None when no statement has a Condition."""
    keys: set[str] = set()
    conditional = False
    for policy in policies:
        for statement in policy.statements:
            for condition in statement.conditions:
                conditional = True
                keys.add(condition.key.lower())
                for value in condition.values:
                    try:
                        parts = parse_template(value, variables=condition.variables)
                    except ValueError:
                        continue
                    keys.update(p.key.lower() for p in parts if isinstance(p, Variable))
    return frozenset(keys) if conditional else None


def _names_clock(policies: list[Policy]) -> bool:
    """Whether a condition names the clock's keys anywhere in its values (a
    substring test, on top of ``_read_keys``: over-cautious, never under)."""
    for policy in policies:
        for statement in policy.statements:
            for condition in statement.conditions:
                for value in condition.values:
                    lowered = value.lower()
                    if "aws:currenttime" in lowered or "aws:epochtime" in lowered:
                        return True
    return False


def _reads_context(grants: Sequence[GrantView]) -> bool:
    return any(g.context_equals is not None or g.context_subset is not None for g in grants)


def _size(values: Mapping[str, str] | None, facts: tuple[ContextValue | None, ...]) -> int:
    total = sum(len(name) + len(value) for name, value in (values or {}).items())
    for value in facts:
        if isinstance(value, str):
            total += len(value)
        elif value is not None:
            total += sum(map(len, value))
    return total


class DecisionCache:
    """``decide``, remembering its answers (see the module's docstring)."""

    __slots__ = ("_entries", "hits", "misses")

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str, str], _Entry] = {}
        # Counted for tests and benchmarks: whether an answer came from memory.
        self.hits = 0
        self.misses = 0

    def decide(self, request: Request) -> Decision:
        return self.decide_for(
            request.subject,
            request.action,
            request.resource,
            request.resource_account,
            request.context,
            key_policy=request.key_policy,
            grants=request.grants,
            encryption_context=request.encryption_context,
        )

    def decide_for(
        self,
        subject: Subject,
        action: str,
        resource: str,
        resource_account: str | None,
        build: Callable[[], RequestContext],
        *,
        key_policy: Policy | None = None,
        grants: Sequence[GrantView] = (),
        encryption_context: Mapping[str, str] | None = None,
    ) -> Decision:
        """``decide(Request(...))`` of these parts; the Request is built only
        when the answer is not remembered (building it costs ~1 us)."""
        # A role session's slot is its own (its session policy and tags
        # decide too); the subject's identity is still checked below.
        slot = (subject.caller_arn, subject.unique_id, action, resource)
        entry = self._entries.get(slot)
        context: RequestContext | None = None
        if (
            entry is not None
            and entry.subject is subject
            and entry.key_policy is key_policy
            and (entry.grants is grants or entry.grants == grants)
            and entry.resource_account == resource_account
            and (not entry.context_read or entry.encryption_context == encryption_context)
        ):
            if entry.read is None:
                self.hits += 1
                return entry.decision
            context = build()
            if context.facts(entry.read) == entry.facts:
                self.hits += 1
                return entry.decision
        self.misses += 1
        request = Request(
            subject,
            action,
            resource,
            resource_account,
            build,
            key_policy=key_policy,
            grants=grants,
            encryption_context=encryption_context,
        )
        return self._decide(request, slot, context)

    def _decide(
        self,
        request: Request,
        slot: tuple[str, str, str, str],
        context: RequestContext | None,
    ) -> Decision:
        policies = _policies(request)
        keys = _read_keys(policies)
        if keys is not None and (keys & _CLOCK_KEYS or _names_clock(policies)):
            return decide(request)
        read: tuple[str, ...] | None = None
        facts: tuple[ContextValue | None, ...] = ()
        if keys is not None:
            built = context if context is not None else request.context()
            # decide builds the context at most once per request; it gets
            # this one, with none of its matching work spent yet.
            request = Request(
                request.subject,
                request.action,
                request.resource,
                request.resource_account,
                lambda: built,
                key_policy=request.key_policy,
                grants=request.grants,
                encryption_context=request.encryption_context,
            )
            read = tuple(sorted(keys))
            facts = built.facts(read)
        decision = decide(request)
        if decision.decided_by == WORK_LIMIT_DECIDER:
            return decision  # never remembered, though it is a deny
        context_read = _reads_context(request.grants)
        encryption_context = request.encryption_context if context_read else None
        if _size(encryption_context, facts) > MAX_FACT_CHARS:
            return decision
        entries = self._entries
        if slot not in entries and len(entries) >= MAX_ENTRIES:
            del entries[next(iter(entries))]
        entries[slot] = _Entry(
            request.subject,
            request.key_policy,
            request.grants,
            request.resource_account,
            context_read,
            None if encryption_context is None else dict(encryption_context),
            read,
            facts,
            decision,
        )
        return decision

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
