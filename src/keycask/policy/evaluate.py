"""Who may do what: AWS KMS's evaluation of key policies, identity policies
and grants, as a pure function of a request.

The order is AWS's (KMS Developer Guide, "Determining access"):

1. An explicit Deny in the key policy or the caller's identity policies wins.
2. The key policy is the root of access. A statement that names the caller
   (its ARN, or ``*``) allows directly. A statement that names the caller's
   *account* (``arn:aws:iam::<account>:root``) allows nothing by itself: it
   lets the account's identity policies decide, and then one of them must
   allow.
3. A grant for the caller that covers the operation (and whose constraints
   the encryption context meets) allows.
4. Anything else is denied.

Actions on no key (CreateKey, ListKeys, ...) have no key policy: only the
caller's identity policies count, in its own account.

keycask's administrators carry an implicit identity policy that allows every
action on every resource, like AWS's AdministratorAccess: they still need a
key policy that lets their account's identity policies decide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from keycask.config import partition
from keycask.errors import AccessDeniedException
from keycask.policy.conditions import EvaluationLimitExceeded, RequestContext, conditions_match
from keycask.policy.glob import action_matches, pattern_tokens, wildcard_match
from keycask.policy.model import Policy, PrincipalSpec, Statement

ADMIN_POLICY_NAME = "keycask administrator"
# decided_by of an evaluation stopped by the matching work limit (a deny).
WORK_LIMIT_DECIDER = "condition matching exceeded its work limit"

# Actions AWS allows on a key of another account (the model's "Cross-account
# use: Yes"); everything else manages a key and stays within its account,
# whatever the policies say.
CROSS_ACCOUNT = frozenset(
    "kms:" + name
    for name in (
        "CreateGrant", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encrypt",
        "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GetKeyRotationStatus",
        "GetPublicKey", "ListGrants", "ReEncryptFrom", "ReEncryptTo", "RetireGrant",
        "RevokeGrant", "Sign", "Verify", "VerifyMac", "Encapsulate", "Decapsulate",
    )
) | {
    # A role's trust policy may name principals of other accounts: assuming
    # a role is the way across accounts (both sides agree, as for a key).
    "sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession",
}  # fmt: skip
_ALLOW_ALL = Policy(
    version="2012-10-17",
    id=None,
    statements=(
        Statement(
            sid="AdministratorAccess",
            effect="Allow",
            principal=None,
            not_principal=None,
            actions=("*",),
            not_actions=None,
            resources=("*",),
            not_resources=None,
            conditions=(),
            index=0,
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What a role session adds to its role as a subject.

    Its permissions are the intersection AWS defines for session policies
    (IAM User Guide, "Session policies"): an explicit Deny in the session
    policy denies; an Allow from the role's identity policies, from a key
    policy statement naming the role (or its account), or from a grant to
    the role counts only where the session policy allows too. A key policy
    statement or a grant naming the session's own ARN exactly is not limited
    by it.
    """

    arn: str  # arn:aws:sts::<account>:assumed-role/<role>/<session>
    user_id: str  # aws:userid: <role id>:<session name>
    issued: int  # aws:TokenIssueTime, epoch seconds
    policy: Policy | None = None  # the parsed session policy
    federated_provider: str | None = None
    source_identity: str | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """The authenticated caller."""

    arn: str
    account: str
    admin: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    # (name, document) of each identity policy attached to the caller.
    policies: tuple[tuple[str, Policy], ...] = ()
    # The principal's unique id (AIDA.../AROA...): a key policy or grant that
    # recorded another id for this ARN named an earlier principal of that name.
    unique_id: str = ""
    # A role session (an ASIA access key): ``arn`` stays the role's, since
    # key policies and grants name roles; the rest is the session's.
    session: SessionFacts | None = None
    # A web identity (AssumeRoleWithWebIdentity's caller): ``arn`` is its
    # identity provider's ARN, matched only by a Federated principal naming
    # it, never by "*" or an AWS principal (it is no principal of keycask's).
    federated: bool = False

    @property
    def caller_arn(self) -> str:
        """Who is calling, as answers and records name it: the session's
        assumed-role ARN, else the principal's."""
        return self.session.arn if self.session is not None else self.arn

    @property
    def root(self) -> str:
        return f"arn:{partition()}:iam::{self.account}:root"

    def identity_policies(self) -> tuple[tuple[str, Policy], ...]:
        if self.admin:
            return ((ADMIN_POLICY_NAME, _ALLOW_ALL), *self.policies)
        return self.policies


@dataclass(frozen=True, slots=True)
class GrantView:
    """What evaluation needs of a grant."""

    grant_id: str
    grantee: str
    operations: frozenset[str]  # "Decrypt", "Encrypt", ...
    context_equals: Mapping[str, str] | None = None
    context_subset: Mapping[str, str] | None = None
    # The grantee's unique id when the grant was made (None: an account, or
    # a grant from before ids were recorded).
    grantee_id: str | None = None

    def names(self, subject: Subject) -> bool:
        """Whether the grant's grantee is ``subject`` itself."""
        return self.grantee == subject.arn and self.grantee_id in (None, subject.unique_id)

    def covers(self, operation: str, encryption_context: Mapping[str, str] | None) -> bool:
        if operation not in self.operations:
            return False
        context = dict(encryption_context or {})
        if self.context_equals is not None and context != dict(self.context_equals):
            return False
        if self.context_subset is not None:
            return all(context.get(k) == v for k, v in self.context_subset.items())
        return True


@dataclass(frozen=True, slots=True)
class Request:
    subject: Subject
    action: str  # "kms:Decrypt"
    resource: str  # the key ARN, or "*"
    resource_account: str | None  # the key's account; None for actions on no key
    # The condition keys of the request, built only if a statement has conditions.
    context: Callable[[], RequestContext]
    key_policy: Policy | None = None
    grants: Sequence[GrantView] = ()
    encryption_context: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    decided_by: str
    message: str = ""

    def enforce(self) -> None:
        if not self.allowed:
            raise AccessDeniedException(self.message)


def _name(statement: Statement) -> str:
    return statement.sid if statement.sid else f"#{statement.index + 1}"


def _matches_any(patterns: tuple[str, ...], value: str) -> bool:
    return any(wildcard_match(pattern_tokens(p), value) for p in patterns)


def _action_in(statement: Statement, action: str) -> bool:
    if statement.actions is not None:
        return any(action_matches(p, action) for p in statement.actions)
    assert statement.not_actions is not None
    return not any(action_matches(p, action) for p in statement.not_actions)


def _resource_in(statement: Statement, resource: str, *, key_policy: bool) -> bool:
    # In a key policy "*" means "this key"; any other value must match it.
    if statement.resources is not None:
        return ("*" in statement.resources and key_policy) or _matches_any(
            statement.resources, resource
        )
    assert statement.not_resources is not None
    return not _matches_any(statement.not_resources, resource)


def _listed(spec: PrincipalSpec, subject: Subject, *, deny: bool = False) -> str | None:
    """How ``spec`` names the subject: "session" (a role session's own ARN,
    exactly), "direct", "account", or None. An ARN the policy recorded with
    another unique id named an earlier principal of that name (deleted
    since): it does not name this one."""
    if subject.federated:
        # Allowed only by a Federated principal naming its provider; but a
        # Deny to everyone ("*") is a guardrail that binds web identities too.
        named = subject.arn in spec.federated or (deny and (spec.any or "*" in spec.aws))
        return "direct" if named else None
    if subject.session is not None and subject.session.arn in spec.aws:
        return "session"
    if spec.any or "*" in spec.aws:
        return "direct"
    if subject.arn in spec.aws:
        bound = spec.bound.get(subject.arn) if spec.bound else None
        if bound is None or bound == subject.unique_id:
            return "direct"
    if subject.unique_id and subject.unique_id in spec.aws:
        return "direct"
    if subject.root in spec.aws:
        return "account"
    return None


# For the policy tools (who-can, simulate), which must read principals as
# evaluation does.
listed = _listed


def _principal_scope(statement: Statement, subject: Subject) -> str | None:
    if statement.principal is not None:
        return _listed(statement.principal, subject, deny=statement.effect == "Deny")
    if statement.not_principal is not None:
        # Everyone but those listed; listing the account excludes all of it.
        return None if _listed(statement.not_principal, subject) else "direct"
    return "direct"  # identity policies: the statement is the caller's own


class _Context:
    """The request's condition keys, built on first use."""

    __slots__ = ("_build", "_value")

    def __init__(self, build: Callable[[], RequestContext]) -> None:
        self._build = build
        self._value: RequestContext | None = None

    def get(self) -> RequestContext:
        if self._value is None:
            self._value = self._build()
        return self._value


def _applies(
    statement: Statement, request: Request, context: _Context, *, key_policy: bool
) -> str | None:
    if not _action_in(statement, request.action):
        return None
    if not _resource_in(statement, request.resource, key_policy=key_policy):
        return None
    scope = _principal_scope(statement, request.subject) if key_policy else "direct"
    if scope is None:
        return None
    if statement.conditions and not conditions_match(
        statement.conditions, context.get(), deny=statement.effect == "Deny"
    ):
        return None
    return scope


def cross_account_refusal(
    subject: Subject, action: str, resource: str, resource_account: str | None
) -> Decision | None:
    """The refusal of an action that may not cross accounts, on a key of
    another account; None when the policies decide."""
    if resource_account in (None, subject.account) or action in CROSS_ACCOUNT:
        return None
    return Decision(
        False,
        "cross-account use is not allowed for " + action,
        f"User: {subject.caller_arn} is not authorized to perform: {action} on resource: "
        f"{resource} because {action} cannot be used across accounts",
    )


def decide(request: Request) -> Decision:
    refused = cross_account_refusal(
        request.subject, request.action, request.resource, request.resource_account
    )
    if refused is not None:
        return refused
    try:
        return _decide(request)
    except EvaluationLimitExceeded:
        # An evaluation that did not finish never allows: an explicit Deny
        # further on might have applied.
        return _deny(request, WORK_LIMIT_DECIDER)


def _decide(request: Request) -> Decision:
    subject = request.subject
    identity = subject.identity_policies()
    same_account = request.resource_account in (None, subject.account)
    key_policy = request.key_policy
    context = _Context(request.context)
    session_policy = subject.session.policy if subject.session is not None else None

    # 1. Explicit deny, anywhere.
    if key_policy is not None:
        for statement in key_policy.statements:
            if statement.effect == "Deny" and _applies(
                statement, request, context, key_policy=True
            ):
                return _deny(request, f"explicit deny in key policy statement {_name(statement)}")
    for name, policy in identity:
        for statement in policy.statements:
            if statement.effect == "Deny" and _applies(
                statement, request, context, key_policy=False
            ):
                return _deny(
                    request,
                    f"explicit deny in identity policy {name} statement {_name(statement)}",
                )
    if session_policy is not None:
        for statement in session_policy.statements:
            if statement.effect == "Deny" and _applies(
                statement, request, context, key_policy=False
            ):
                return _deny(
                    request, f"explicit deny in session policy statement {_name(statement)}"
                )

    def session_limit(found: str | None) -> str | None:
        """``found`` (an allow) as a session keeps it: only where its
        session policy allows too."""
        if found is None or session_policy is None:
            return found
        for statement in session_policy.statements:
            if statement.effect == "Allow" and _applies(
                statement, request, context, key_policy=False
            ):
                return f"{found} and session policy statement {_name(statement)}"
        return None

    def identity_allow() -> str | None:
        for name, policy in identity:
            for statement in policy.statements:
                if statement.effect == "Allow" and _applies(
                    statement, request, context, key_policy=False
                ):
                    return session_limit(f"identity policy {name} statement {_name(statement)}")
        return None

    # Actions on no key: the caller's identity policies, in its own account.
    if key_policy is None:
        found = identity_allow() if same_account else None
        if found is not None:
            return Decision(True, found)
        return _deny(request, "implicit deny")

    # 2. The key policy, directly or by delegating to the caller's account.
    delegating: Statement | None = None
    for statement in key_policy.statements:
        if statement.effect != "Allow":
            continue
        scope = _applies(statement, request, context, key_policy=True)
        if scope == "session" and same_account:
            # Naming the session itself: the session policy does not limit it.
            return Decision(True, f"key policy statement {_name(statement)}")
        if scope in ("direct", "session"):
            if same_account:
                found = session_limit(f"key policy statement {_name(statement)}")
                if found is not None:
                    return Decision(True, found)
                continue
            # Across accounts both sides must agree: the key's account (its
            # policy names the caller) and the caller's (its identity policy).
            found = identity_allow()
            if found is not None:
                return Decision(True, f"key policy statement {_name(statement)} ({found})")
        if scope == "account" and delegating is None:
            delegating = statement
    if delegating is not None:
        found = identity_allow()
        if found is not None:
            return Decision(True, f"{found} (key policy statement {_name(delegating)})")

    # 3. Grants.
    operation = request.action.split(":", 1)[-1]
    for grant in request.grants:
        if not grant.covers(operation, request.encryption_context):
            continue
        if subject.session is not None and grant.grantee == subject.session.arn:
            # A grant to the session's own assumed-role ARN (CreateGrant
            # takes one, as AWS's does) is for that session, as a key policy
            # statement naming it is: not limited by the session policy.
            return Decision(True, f"grant {grant.grant_id} (to the session)")
        if grant.names(subject):
            # A grant to the role counts for its sessions as the role's own
            # permissions do: within the session policy.
            found = session_limit(f"grant {grant.grant_id}")
            if found is not None:
                return Decision(True, found)
            continue
        # A grant to an account lets that account's identity policies decide,
        # as a key policy statement naming the account root does.
        if grant.grantee == subject.root:
            found = identity_allow()
            if found is not None:
                return Decision(True, f"grant {grant.grant_id} ({found})")
    return _deny(request, "implicit deny")


def _deny(request: Request, decided_by: str) -> Decision:
    """AWS's wording: "User: <arn> is not authorized to perform: <action> on
    resource: <arn> because ..." or "... with an explicit deny in a ..."."""
    subject = request.subject
    if decided_by.startswith("explicit deny in key policy"):
        reason = "with an explicit deny in a resource-based policy"
    elif decided_by.startswith("explicit deny in session policy"):
        reason = "with an explicit deny in a session policy"
    elif decided_by.startswith("explicit deny"):
        reason = "with an explicit deny in an identity-based policy"
    elif request.resource_account not in (None, subject.account):
        reason = "because the key policy does not allow access from account " + subject.account
    elif request.key_policy is None:
        reason = f"because no identity-based policy allows the {request.action} action"
    else:
        reason = (
            f"because no key policy, identity-based policy or grant allows the "
            f"{request.action} action"
        )
    return Decision(
        False,
        decided_by,
        f"User: {subject.caller_arn} is not authorized to perform: {request.action} on resource: "
        f"{request.resource} {reason}",
    )
