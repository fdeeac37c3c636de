"""What a handler knows about the call it serves, and what it gives back."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from keycask.auth.credentials import Principal
from keycask.policy.evaluate import Decision, Subject, decide
from keycask.ports import Write


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    access_key_id: str
    region: str  # from the SigV4 scope: keys live in the region the caller names
    subject: Subject = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self.principal
        object.__setattr__(self, "subject", Subject(p.arn, p.account, p.admin))


@dataclass(slots=True)
class Call:
    """One request on its way through the service. Mutable on purpose: the
    handler fills in what the audit record needs as it learns it."""

    request_id: str
    time: datetime
    source_ip: str | None
    operation: str | None = None
    caller: Caller | None = None
    key_arn: str | None = None
    encryption_context: Mapping[str, str] | None = None
    decision: str = "none"
    decided_by: str | None = None
    detail: str | None = None
    # Keys this call used for a cryptographic operation; recorded for
    # GetKeyLastUsage once the call has succeeded.
    used_keys: tuple[uuid.UUID, ...] = ()

    @property
    def account(self) -> str:
        assert self.caller is not None
        return self.caller.principal.account

    @property
    def region(self) -> str:
        assert self.caller is not None
        return self.caller.region

    def authorize(self, action: str, resource: str, resource_account: str | None) -> None:
        """The one place a decision is enforced; the audit record names it."""
        assert self.caller is not None
        decision: Decision = decide(self.caller.subject, action, resource, resource_account)
        self.decision = "allow" if decision.allowed else "deny"
        self.decided_by = decision.decided_by
        decision.enforce()


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler's answer and the writes that make it true. The pipeline
    commits the writes only after the audit record is durable."""

    result: object | None = None
    writes: Sequence[Write] = field(default_factory=tuple)
