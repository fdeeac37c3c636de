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
* the resource's account and the encryption context by value;
* when any statement of the key policy or of the identity policies has a
  Condition, every condition key of the request (built once, as ``decide``
  would build it) by value, except the clock's two keys. A policy that reads
  the clock (aws:CurrentTime, aws:EpochTime, as a condition key or a policy
  variable) is never remembered: its answer may change with no change of
  anything else.

So a remembered decision is right exactly as long as the inputs the
uncached path reads are current: the key store, the credential store and the
Authorizer's own caches, which every commit (this process's, another
worker's, another node's) already invalidates for that path. The memory is
also dropped with the Authorizer's caches (``clear``), and bounded.

Measured (Encrypt 4 KiB through Pipeline.handle, the default key policy and
an administrator, /work/notes/cg.sh): 923,628 instructions per request
before, 826,669 with decisions remembered; ``decide`` was ~21% of the
handler's CPU under cProfile, a remembered decision costs a dict lookup and
a few identity checks.
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
from keycask.policy.model import Policy

# At most this many remembered decisions (first in, first out): a caller
# cycling through actions, aliases or encryption contexts grows nothing.
MAX_ENTRIES = 4096
# An encryption context (or parameters) larger than this, in characters, is
# not remembered: 4096 entries of it would hold too much memory.
MAX_FACT_CHARS = 2048

_CLOCK_KEYS = frozenset({"aws:currenttime", "aws:epochtime"})


@dataclass(frozen=True, slots=True)
class _Entry:
    subject: Subject
    key_policy: Policy | None
    grants: Sequence[GrantView]
    resource_account: str | None
    encryption_context: Mapping[str, str] | None
    # The request's condition keys, but the clock's, when a statement has a
    # Condition; None when none has one (decide never reads them then).
    facts: dict[str, ContextValue] | None
    decision: Decision


def _policies(request: Request) -> list[Policy]:
    policies = [policy for _, policy in request.subject.identity_policies()]
    if request.key_policy is not None:
        policies.append(request.key_policy)
    return policies


def _conditional(policies: list[Policy]) -> bool:
    return any(statement.conditions for p in policies for statement in p.statements)


def _reads_clock(policies: list[Policy]) -> bool:
    """Whether a condition reads the clock, as its key or in a ``${...}``
    variable of its values (a substring test: over-cautious, never under)."""
    for policy in policies:
        for statement in policy.statements:
            for condition in statement.conditions:
                if condition.key in _CLOCK_KEYS:
                    return True
                for value in condition.values:
                    lowered = value.lower()
                    if "aws:currenttime" in lowered or "aws:epochtime" in lowered:
                        return True
    return False


def _size(values: Mapping[str, ContextValue] | None) -> int:
    total = 0
    for name, value in (values or {}).items():
        total += len(name) + (len(value) if isinstance(value, str) else sum(map(len, value)))
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
        slot = (subject.arn, subject.unique_id, action, resource)
        entry = self._entries.get(slot)
        context: RequestContext | None = None
        if (
            entry is not None
            and entry.subject is subject
            and entry.key_policy is key_policy
            and (entry.grants is grants or entry.grants == grants)
            and entry.resource_account == resource_account
            and entry.encryption_context == encryption_context
        ):
            if entry.facts is None:
                self.hits += 1
                return entry.decision
            context = build()
            if context.facts(_CLOCK_KEYS) == entry.facts:
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
        conditional = _conditional(policies)
        if conditional and _reads_clock(policies):
            return decide(request)
        facts: dict[str, ContextValue] | None = None
        if conditional:
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
            facts = built.facts(_CLOCK_KEYS)
        decision = decide(request)
        if decision.decided_by == WORK_LIMIT_DECIDER:
            return decision  # never remembered, though it is a deny
        encryption_context = request.encryption_context
        if _size(encryption_context) + _size(facts) > MAX_FACT_CHARS:
            return decision
        entries = self._entries
        if slot not in entries and len(entries) >= MAX_ENTRIES:
            del entries[next(iter(entries))]
        entries[slot] = _Entry(
            request.subject,
            request.key_policy,
            request.grants,
            request.resource_account,
            None if encryption_context is None else dict(encryption_context),
            facts,
            decision,
        )
        return decision

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
