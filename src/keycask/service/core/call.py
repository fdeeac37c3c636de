"""What a handler knows about the call it serves, and what it gives back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from keycask.auth.credentials import Principal
from keycask.errors import AccessDeniedException
from keycask.keys.model import Key
from keycask.policy.conditions import ContextInput, RequestContext
from keycask.policy.evaluate import Decision, Request, Subject, decide
from keycask.ports import Write
from keycask.service.core.authz import Authorizer
from keycask.service.core.managed import ManagedKeys

# Actions AWS allows on a key of another account (the model's "Cross-account
# use: Yes"); everything else manages a key and stays within its account.
CROSS_ACCOUNT = frozenset(
    "kms:" + name
    for name in (
        "CreateGrant", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encrypt",
        "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GetKeyRotationStatus",
        "GetPublicKey", "ListGrants", "ReEncryptFrom", "ReEncryptTo", "RetireGrant",
        "RevokeGrant", "Sign", "Verify", "VerifyMac",
    )
)  # fmt: skip


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
        if key is not None and key.account != subject.account and action not in CROSS_ACCOUNT:
            # AWS allows only cryptographic and grant operations across accounts.
            self.decision = "deny"
            self.decided_by = "cross-account use is not allowed for " + action
            raise AccessDeniedException(
                f"User: {subject.arn} is not authorized to perform: {action} on resource: "
                f"{key.arn} because {action} cannot be used across accounts"
            )

        def build() -> RequestContext:
            return RequestContext.of(self._condition_keys(key, context))

        self.conditions.pop("kms:ResourceAliases", None)
        if key is not None and authz.mentions_resource_aliases(
            key, [text for _, text in self.caller.principal.policies]
        ):
            self.conditions["kms:ResourceAliases"] = await authz.resource_aliases(key)
        if key is None:
            request = Request(subject, action, resource, None, build)
        else:
            request = Request(
                subject,
                action,
                key.arn,
                key.account,
                build,
                key_policy=authz.key_policy(key),
                grants=await authz.grants(key, self.grant_tokens),
                encryption_context=self.encryption_context,
            )
        decision: Decision = decide(request)
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
            lambda: RequestContext.of(self._condition_keys(key, context)),
            key_policy=self.authz.key_policy(key),
            grants=await self.authz.grants(key, self.grant_tokens),
            encryption_context=self.encryption_context,
        )
        return decide(request).allowed

    def _condition_keys(
        self, key: Key | None, extra: Mapping[str, ContextInput] | None
    ) -> dict[str, ContextInput]:
        """The request's condition keys; a key that does not apply to the
        request is absent (so ...IfExists and Null behave as in AWS)."""
        assert self.caller is not None
        principal = self.caller.principal
        values: dict[str, ContextInput] = {
            "aws:CurrentTime": self.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": str(int(self.time.timestamp())),
            "aws:SecureTransport": self.secure_transport,
            "aws:PrincipalArn": principal.arn,
            "aws:PrincipalAccount": principal.account,
            "aws:PrincipalType": "User" if principal.kind == "user" else "AssumedRole",
            "aws:username": principal.name,
            "aws:userid": principal.unique_id,
            "aws:RequestedRegion": self.caller.region,
            "kms:CallerAccount": principal.account,
            # keycask has no AWS services calling on a principal's behalf.
            "aws:PrincipalIsAWSService": False,
            "aws:ViaAWSService": False,
        }
        if self.source_ip:
            values["aws:SourceIp"] = self.source_ip
        for name, value in principal.tags:
            values["aws:PrincipalTag/" + name] = value
        if key is not None:
            values["kms:KeySpec"] = key.key_spec.value
            values["kms:CustomerMasterKeySpec"] = key.key_spec.value
            values["kms:KeyUsage"] = key.key_usage.value
            values["kms:CustomerMasterKeyUsage"] = key.key_usage.value
            values["kms:KeyOrigin"] = key.origin.value
            values["kms:MultiRegion"] = False
            values["aws:ResourceAccount"] = key.account
            for tag in key.tags:
                values["aws:ResourceTag/" + tag.tag_key] = tag.tag_value
        if self.encryption_context:
            for name, value in self.encryption_context.items():
                values["kms:EncryptionContext:" + name] = value
            values["kms:EncryptionContextKeys"] = tuple(self.encryption_context)
        values.update(self.conditions)
        if extra:
            values.update(extra)
        return values


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler's answer and the writes that make it true. The pipeline
    commits the writes only after the audit record is durable."""

    result: object | None = None
    writes: Sequence[Write] = field(default_factory=tuple)
    # A change outside the store (the dev clock), made where writes are
    # committed: after the audit record is durable, under the write lock.
    effect: Callable[[], Awaitable[None]] | None = None
    # Work the answer waits for once the change is made, outside the write
    # lock (the dev clock runs the jobs that came due); its value is the answer.
    then: Callable[[], Awaitable[object]] | None = None
