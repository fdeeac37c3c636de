"""What a handler knows about the call it serves, and what it gives back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from keycask.auth.credentials import Principal
from keycask.auth.identity_providers import WebIdentity
from keycask.auth.sessions import SessionClaims
from keycask.keys.model import Key
from keycask.policy.conditions import ContextInput, RequestContext
from keycask.policy.evaluate import Decision, Request, Subject, cross_account_refusal, decide
from keycask.policy.request_context import RESOURCE_ALIASES, Transport, request_context
from keycask.ports import Write
from keycask.service.core.authz import Authorizer
from keycask.service.core.managed import ManagedKeys

_VARIANT: Final = "89ab"


def new_request_id() -> str:
    """A random (version 4) UUID, as AWS's x-amzn-RequestId is: nothing in it
    tells how many requests this server has answered or which process
    answered. 16 bytes of os.urandom formatted by hand cost ~1.7 us against
    ~5.5 us for str(uuid.uuid4()) on the same loaded machine (uuid4 builds an
    int and a UUID object first); the id is random in its 122 free bits either way."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    access_key_id: str
    region: str  # from the SigV4 scope: keys live in the region the caller names
    subject: Subject
    # A role session's claims (an ASIA access key): ``principal`` is then
    # the role, as it is now in the store.
    session: SessionClaims | None = None

    @property
    def arn(self) -> str:
        """Who called, as the audit record names it: a session's
        assumed-role ARN, else the principal's ARN."""
        return self.principal.arn if self.session is None else self.session.arn

    @property
    def user_id(self) -> str:
        """GetCallerIdentity's UserId (aws:userid): the principal's unique
        id, or ``<role id>:<session name>`` for a role session."""
        return self.principal.unique_id if self.session is None else self.session.user_id


@dataclass(slots=True)
class Call:
    """One request on its way through the service. Mutable on purpose: the
    handler fills in what the audit record needs as it learns it."""

    request_id: str
    time: datetime
    source_ip: str | None
    operation: str | None = None
    # The front door the request came in by (service/doors/), as audited.
    door: str | None = None
    caller: Caller | None = None
    # Who called when it is not a principal (the operator token).
    principal_name: str | None = None
    # A verified web identity (AssumeRoleWithWebIdentity's caller, which does
    # not sign): set by the door's authentication, read by the handler.
    web_identity: WebIdentity | None = None
    key_arn: str | None = None
    encryption_context: Mapping[str, str] | None = None
    decision: str = "none"
    decided_by: str | None = None
    detail: str | None = None
    # Keys this call used for a cryptographic operation; recorded for
    # GetKeyLastUsage once the call has succeeded.
    used_keys: tuple[uuid.UUID, ...] = ()
    authz: Authorizer | None = None
    secure_transport: bool = False
    # Condition keys of this operation's own parameters (algorithms, windows,
    # the alias the key was named by, ...), filled in by the handler before it
    # authorizes; only present when the request carries them.
    conditions: dict[str, ContextInput] = field(default_factory=dict)
    # The request's GrantTokens (set by the pipeline from the typed request):
    # checked, and their grants counted, whenever a key's grants are.
    grant_tokens: tuple[str, ...] = ()
    # Makes the AWS managed key of an alias/aws/<service> alias on first use.
    managed: ManagedKeys | None = None
    # The error the call was answered with (the metrics and the request log).
    error_code: str | None = None
    # What an action's ``prepare`` made before the write lock was taken (an
    # RSA key's material), taken by its handler once it runs under the lock.
    prepared: object = field(default=None, repr=False)
    # The reserved encryption context prefix this call's own operation binds
    # (``crypto.RESERVED_CONTEXT_PREFIXES``: the XKS proxy's "xks:").
    context_prefix: str | None = None

    @property
    def account(self) -> str:
        assert self.caller is not None
        return self.caller.principal.account

    @property
    def region(self) -> str:
        assert self.caller is not None
        return self.caller.region

    async def authorize(
        self,
        action: str,
        key: Key | None = None,
        *,
        resource: str = "*",
        context: Mapping[str, ContextInput] | None = None,
    ) -> None:
        """The one place a decision is enforced; the audit record names it.

        With ``key``, its key policy and grants decide together with the
        caller's identity policies; without, the action is on ``resource``
        (``*`` or an alias) and only identity policies count. ``context``
        adds the operation's own condition keys (algorithms, windows, ...).
        """
        assert self.caller is not None and self.authz is not None
        authz = self.authz
        subject = self.caller.subject
        if key is not None:
            # AWS allows only cryptographic and grant operations across
            # accounts: refused before the key's grants are read.
            refused = cross_account_refusal(subject, action, key.arn, key.account)
            if refused is not None:
                self.decision = "deny"
                self.decided_by = refused.decided_by
                refused.enforce()

        def build() -> RequestContext:
            return self._request_context(key, context)

        self.conditions.pop(RESOURCE_ALIASES, None)
        # Asked without a coroutine first: on most requests no policy names
        # kms:ResourceAliases and listing the key's aliases is skipped.
        policies = self.caller.principal.policies
        if self.caller.session is not None and self.caller.session.policy is not None:
            policies = (*policies, ("session policy", self.caller.session.policy))
        if key is not None and authz.aliases_used(key, policies):
            self.conditions[RESOURCE_ALIASES] = await authz.resource_aliases(key)
        # Through the Authorizer's decision cache (policy/decision_cache.py):
        # the same answer as decide(Request(...)), remembered only while the
        # policies, grants and condition keys it read are unchanged.
        decision: Decision
        if key is None:
            decision = authz.decide_for(subject, action, resource, None, build)
        else:
            decision = authz.decide_for(
                subject,
                action,
                key.arn,
                key.account,
                build,
                key_policy=authz.key_policy(key),
                grants=await authz.grants(key, self.grant_tokens),
                encryption_context=self.encryption_context,
            )
        self.decision = "allow" if decision.allowed else "deny"
        # A call that authorizes twice (ReEncrypt: source, then destination)
        # names both deciders in its audit record.
        self.decided_by = (
            decision.decided_by
            if self.decided_by is None
            else f"{self.decided_by}; {decision.decided_by}"
        )
        decision.enforce()

    async def would_allow(
        self, action: str, key: Key, *, context: Mapping[str, ContextInput] | None = None
    ) -> bool:
        """Whether the caller would be allowed ``action`` on ``key`` (as it is
        given, e.g. with a new policy), without recording or enforcing: the
        policy lockout safety check."""
        assert self.caller is not None and self.authz is not None
        request = Request(
            self.caller.subject,
            action,
            key.arn,
            key.account,
            lambda: self._request_context(key, context),
            key_policy=self.authz.key_policy(key),
            grants=await self.authz.grants(key, self.grant_tokens),
            encryption_context=self.encryption_context,
        )
        return decide(request).allowed

    def would_allow_on(self, action: str, resource: str = "*") -> bool:
        """Whether the caller would be allowed ``action`` on no key (on
        ``resource``: identity policies alone), without recording or enforcing."""
        assert self.caller is not None
        subject = self.caller.subject
        request = Request(
            subject, action, resource, None, lambda: self._request_context(None, None)
        )
        return decide(request).allowed

    def _request_context(
        self, key: Key | None, extra: Mapping[str, ContextInput] | None
    ) -> RequestContext:
        """The request's condition keys (policy/request_context.py): the
        handler's ``conditions``, then ``extra``, over what the caller, the
        key and the connection say."""
        assert self.caller is not None
        return request_context(
            self.caller.subject,
            region=self.caller.region,
            key=key,
            encryption_context=self.encryption_context,
            parameters={**self.conditions, **extra} if extra else self.conditions,
            transport=Transport(self.time, self.source_ip, self.secure_transport),
        )


# Not frozen, though nothing changes one once made: a frozen dataclass sets
# each field through object.__setattr__, 0.51 us per Outcome against 0.14 us
# (thread_time), and every request makes one.
@dataclass(slots=True)
class Outcome:
    """A handler's answer and the writes that make it true. The pipeline
    commits the writes only after the audit record is durable."""

    result: object | None = None
    # A shared empty tuple, not a factory: one call fewer per answer.
    writes: Sequence[Write] = ()
    # A change outside the store (the dev clock), made where writes are
    # committed: after the audit record is durable, under the write lock.
    effect: Callable[[], Awaitable[None]] | None = None
    # Work the answer waits for once the change is made, outside the write
    # lock (the dev clock runs the jobs that came due); its value is the answer.
    then: Callable[[], Awaitable[object]] | None = None
