"""What authorization needs from the service: parsed key policies, the
caller as a policy subject, the grants on a key. Parsed once and cached, so
the hot path pays a dictionary lookup, not a JSON parse.

A policy that no longer parses (a stored document from before a stricter
parser, or damage) is replaced by one that denies everything: a malformed
policy never allows.

Grants are read through the key store, which caches them per key and drops
them when a commit changes one (or another process writes). Grant tokens
(``version | key id | grant id | secret``, base64url) name their grant; a
request's tokens are checked against the SHA-256 of each token secret kept
with the grant, and a token's grant counts even if this process has not seen
it yet. Grants are strongly consistent in keycask, so a token adds no
permission the grant does not already give at once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keycask.auth.credentials import Principal
from keycask.auth.sessions import SessionClaims
from keycask.crypto import random_bytes
from keycask.errors import InvalidGrantTokenException, MalformedPolicyDocumentException
from keycask.keys.ids import is_record_id, record_id
from keycask.keys.keystore import BoundedCache, Grant, KeyStore, Stored
from keycask.keys.model import Key
from keycask.policy.decision_cache import DecisionCache
from keycask.policy.document import Policy, PrincipalSpec, Statement, parse_policy
from keycask.policy.evaluate import GrantView, SessionFacts, Subject

_CACHE = 10_000
_RESOURCE_ALIASES = "kms:resourcealiases"
_DENY_ALL = Policy(
    version="2012-10-17",
    id="keycask-unreadable-policy",
    statements=(
        Statement(
            sid="UnreadablePolicyDeniesAll",
            effect="Deny",
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


def _deny_all_key_policy() -> Policy:
    statement = _DENY_ALL.statements[0]
    return Policy(
        version=_DENY_ALL.version,
        id=_DENY_ALL.id,
        statements=(
            Statement(
                sid=statement.sid,
                effect="Deny",
                principal=PrincipalSpec(any=True),
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


# -- grant constraints and tokens --

# Grant operations that take an encryption context (on a symmetric key): the
# only ones an encryption context constraint applies to. Per AWS's
# GrantConstraints reference, a constrained grant may also allow DescribeKey
# or RetireGrant, unconstrained; CreateGrant is limited to stricter grants
# instead (service/grants.py).
CONTEXT_OPERATIONS = frozenset(
    {
        "Encrypt",
        "Decrypt",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
    }
)


def fold_context(context: Mapping[str, str] | None) -> dict[str, str] | None:
    """The context with its keys lower-cased, as grant constraints compare
    them (AWS's GrantConstraints reference: keys without regard to case,
    values exactly). None if two keys differ only by case: such a context
    equals no constraint."""
    folded: dict[str, str] = {}
    for name, value in (context or {}).items():
        lower = name.lower()
        if lower in folded:
            return None
        folded[lower] = value
    return folded


def matches_subset(context: Mapping[str, str] | None, pairs: Mapping[str, str]) -> bool:
    """Every pair of ``pairs`` is in ``context`` (keys compared without case)."""
    values: dict[str, set[str]] = {}
    for name, value in (context or {}).items():
        values.setdefault(name.lower(), set()).add(value)
    return all(value in values.get(name.lower(), ()) for name, value in pairs.items())


def matches_equals(context: Mapping[str, str] | None, pairs: Mapping[str, str]) -> bool:
    """``context`` is ``pairs`` (keys compared without case)."""
    folded = fold_context(context)
    return folded is not None and folded == fold_context(pairs)


@dataclass(frozen=True, slots=True)
class StoredGrantView(GrantView):
    """A stored grant as evaluation sees it, with AWS's constraint rules:
    constraints apply only to operations that take an encryption context,
    and compare keys without case and values exactly."""

    def covers(self, operation: str, encryption_context: Mapping[str, str] | None) -> bool:
        if operation not in self.operations:
            return False
        if operation not in CONTEXT_OPERATIONS:
            return True
        if self.context_equals is not None and not matches_equals(
            encryption_context, self.context_equals
        ):
            return False
        return self.context_subset is None or matches_subset(
            encryption_context, self.context_subset
        )


def grant_view(grant: Grant) -> StoredGrantView:
    return StoredGrantView(
        grant.grant_id,
        grant.grantee,
        frozenset(grant.operations),
        grant.context_equals,
        grant.context_subset,
        grant.grantee_id,
    )


def _bind_spec(spec: PrincipalSpec | None, ids: Mapping[str, str]) -> PrincipalSpec | None:
    if spec is None:
        return None
    bound = {arn: ids[arn] for arn in spec.aws if arn in ids}
    return dataclasses.replace(spec, bound=bound) if bound else spec


def bind_policy(policy: Policy, ids: Mapping[str, str]) -> Policy:
    """``policy`` with each principal ARN tied to the unique id it named when
    the policy was put (evaluate.py's ``_listed`` compares them)."""
    return dataclasses.replace(
        policy,
        statements=tuple(
            dataclasses.replace(
                statement,
                principal=_bind_spec(statement.principal, ids),
                not_principal=_bind_spec(statement.not_principal, ids),
            )
            for statement in policy.statements
        ),
    )


def principal_arns(policy: Policy) -> tuple[str, ...]:
    """The user and role ARNs a policy's Principal and NotPrincipal name."""
    found: dict[str, None] = {}
    for statement in policy.statements:
        for spec in (statement.principal, statement.not_principal):
            if spec is not None:
                found.update((arn, None) for arn in spec.aws if not arn.endswith(":root"))
    return tuple(found)


def render_policy(text: str, gone: Mapping[str, str]) -> str:
    """The policy as GetKeyPolicy shows it: each principal ARN in ``gone``
    (deleted, or since re-created as another principal) replaced by the
    unique id it named, as AWS shows a deleted principal."""
    if not gone:
        return text
    doc = json.loads(text)
    statements = doc.get("Statement")
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict):
            continue
        for element in ("Principal", "NotPrincipal"):
            spec = statement.get(element)
            if not isinstance(spec, dict) or "AWS" not in spec:
                continue
            value = spec["AWS"]
            if isinstance(value, str):
                spec["AWS"] = gone.get(value, value)
            elif isinstance(value, list):
                spec["AWS"] = [gone.get(v, v) if isinstance(v, str) else v for v in value]
    return json.dumps(doc, indent=2)


_TOKEN_VERSION = 1
# A multi-Region key's grant token names the set by its mrk id, never the
# copy's internal record id: read back in the caller's region, it names the
# copy there (a token used in another region finds no grant).
_TOKEN_VERSION_MRK = 2
_TOKEN_SECRET = 32
_TOKEN_SIZE = 1 + 16 + 32 + _TOKEN_SECRET


def invalid_grant_token() -> InvalidGrantTokenException:
    """The one answer for every token that is not a valid grant token."""
    return InvalidGrantTokenException("The grant token is not valid.")


def new_grant_token(key: Key, grant_id: str) -> tuple[str, str]:
    """A fresh token for the grant, and the SHA-256 (hex) of its secret to keep."""
    secret = random_bytes(_TOKEN_SECRET)
    if key.mrk is None:
        named = bytes([_TOKEN_VERSION]) + key.key_id.bytes
    else:
        named = bytes([_TOKEN_VERSION_MRK]) + key.mrk
    raw = named + bytes.fromhex(grant_id) + secret
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return token, hashlib.sha256(secret).hexdigest()


@dataclass(frozen=True, slots=True)
class GrantToken:
    key_id: uuid.UUID
    grant_id: str
    secret: bytes

    def opens(self, grant: Grant) -> bool:
        """Whether this token was issued for ``grant`` (constant time)."""
        digest = hashlib.sha256(self.secret).hexdigest().encode()
        found = False
        for stored in grant.token_hashes:
            found |= hmac.compare_digest(digest, stored.encode())
        return found and grant.key_id == self.key_id and grant.grant_id == self.grant_id


def parse_grant_token(token: str, region: str) -> GrantToken:
    """The key and grant a token names for a caller in ``region``;
    InvalidGrantTokenException if it is not a keycask grant token."""
    try:
        raw = base64.b64decode(
            token.encode("ascii") + b"=" * (-len(token) % 4), altchars=b"-_", validate=True
        )
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise invalid_grant_token() from None
    if len(raw) != _TOKEN_SIZE or raw[0] not in (_TOKEN_VERSION, _TOKEN_VERSION_MRK):
        raise invalid_grant_token()
    if raw[0] == _TOKEN_VERSION_MRK:
        key_id = record_id(raw[1:17], region)
    else:
        key_id = uuid.UUID(bytes=raw[1:17])
        if is_record_id(key_id):
            raise invalid_grant_token()
    return GrantToken(key_id, raw[17:49].hex(), raw[49:])


class Authorizer:
    def __init__(self, keys: KeyStore | None = None) -> None:
        self._key_policies: BoundedCache[str, Policy] = BoundedCache(_CACHE)
        self._bound_policies: BoundedCache[tuple[str, tuple[tuple[str, str], ...]], Policy] = (
            BoundedCache(_CACHE)
        )
        self._subjects: BoundedCache[Principal, Subject] = BoundedCache(_CACHE)
        self._session_subjects: BoundedCache[tuple[Principal, SessionClaims], Subject] = (
            BoundedCache(_CACHE)
        )
        self._deny_all_key_policy = _deny_all_key_policy()
        self._keys = keys
        # Per key id: the key store's grant records (by identity) and their
        # views; a new tuple from the key store means the grants changed.
        self._grant_views: BoundedCache[
            uuid.UUID, tuple[tuple[Stored[Grant], ...], tuple[GrantView, ...]]
        ] = BoundedCache(_CACHE)
        # Whether a policy text names kms:ResourceAliases: asked per request,
        # and lower-casing every policy text each time cost ~1 us.
        self._mentions: BoundedCache[tuple[str, tuple[tuple[str, str], ...]], bool] = BoundedCache(
            _CACHE
        )
        self._decisions = DecisionCache()
        # ``decide(Request(...))`` of these parts, remembered while nothing it
        # reads changes (policy/decision_cache.py): the subject, key policy
        # and grants passed must come from this Authorizer, which hands out
        # new objects when what they read changes. The cache's own method,
        # bound once (it is only ever cleared, never replaced).
        self.decide_for = self._decisions.decide_for

    @property
    def decisions(self) -> DecisionCache:
        return self._decisions

    def key_policy(self, key: Key) -> Policy:
        if not key.policy_principals:
            return self.parse_key_policy(key.policy)
        cache_key = (key.policy, key.policy_principals)
        found = self._bound_policies.get(cache_key)
        if found is None:
            found = bind_policy(self.parse_key_policy(key.policy), dict(key.policy_principals))
            self._bound_policies.put(cache_key, found)
        return found

    def parse_key_policy(self, text: str) -> Policy:
        found = self._key_policies.get(text)
        if found is None:
            try:
                found = parse_policy(text, kind="key")
            except MalformedPolicyDocumentException:
                found = self._deny_all_key_policy
            self._key_policies.put(text, found)
        return found

    def subject(self, principal: Principal) -> Subject:
        found = self._subjects.get(principal)
        if found is None:
            policies: list[tuple[str, Policy]] = []
            for name, text in principal.policies:
                try:
                    policies.append((name, parse_policy(text, kind="identity")))
                except MalformedPolicyDocumentException:
                    policies.append((name, _DENY_ALL))
            found = Subject(
                principal.arn,
                principal.account,
                principal.admin,
                dict(principal.tags),
                tuple(policies),
                principal.unique_id,
            )
            self._subjects.put(principal, found)
        return found

    def session_subject(self, role: Principal, session: SessionClaims) -> Subject:
        """A role session as a policy subject: the role's subject (its ARN,
        unique id, identity policies) with the session's ARN, session policy
        and condition keys, and its tags over the role's. Remembered per
        (role, session), so the decision cache sees one object."""
        found = self._session_subjects.get((role, session))
        if found is None:
            base = self.subject(role)
            policy: Policy | None = None
            if session.policy is not None:
                try:
                    policy = parse_policy(session.policy, kind="identity")
                except MalformedPolicyDocumentException:
                    policy = _DENY_ALL  # checked at issuance; never broader than asked
            overridden = {key.lower() for key, _ in session.tags}
            tags = {k: v for k, v in base.tags.items() if k.lower() not in overridden}
            tags.update(session.tags)
            found = dataclasses.replace(
                base,
                tags=tags,
                session=SessionFacts(
                    arn=session.arn,
                    user_id=session.user_id,
                    issued=session.issued,
                    policy=policy,
                    federated_provider=session.federated_provider,
                    source_identity=session.source_identity,
                ),
            )
            self._session_subjects.put((role, session), found)
        return found

    def mentions_resource_aliases(self, key: Key, subject_policies: Sequence[str]) -> bool:
        """Whether any policy that decides for ``key`` uses kms:ResourceAliases:
        listing a key's aliases costs a storage scan, so only then."""
        texts = (key.policy, *subject_policies)
        return any(_RESOURCE_ALIASES in text.lower() for text in texts)

    def aliases_used(self, key: Key, subject_policies: tuple[tuple[str, str], ...]) -> bool:
        """``mentions_resource_aliases`` for the key's policy and the caller's
        (name, text) policies, remembered per pair: asked on every request,
        where lower-casing every policy text each time cost ~1 us and the
        lookup costs one dict probe (a policy text hashes once)."""
        pair = (key.policy, subject_policies)
        found = self._mentions.get(pair)
        if found is None:
            found = self.mentions_resource_aliases(key, [text for _, text in subject_policies])
            self._mentions.put(pair, found)
        return found

    async def resource_aliases_if_used(
        self, key: Key, subject_policies: Sequence[tuple[str, str]]
    ) -> tuple[str, ...] | None:
        """kms:ResourceAliases of ``key`` when a policy that decides for it
        (the key's, or one of ``subject_policies``: (name, text)) uses it;
        None otherwise. The server and the policy tools both ask here."""
        if not self.aliases_used(key, tuple(subject_policies)):
            return None
        return await self.resource_aliases(key)

    async def resource_aliases(self, key: Key) -> tuple[str, ...]:
        """The names of the aliases that point to ``key`` (kms:ResourceAliases)."""
        if self._keys is None:
            return ()
        names: list[str] = []
        after = ""
        while True:
            page = await self._keys.list_aliases(key.account, key.region, after, 1000)
            names.extend(a.name for a in page if a.target == key.key_id)
            if len(page) < 1000:
                return tuple(names)
            after = page[-1].name

    async def grants(self, key: Key, tokens: Sequence[str] = ()) -> Sequence[GrantView]:
        """The grants on ``key``, and those the request's grant tokens name.

        Every token must be a well-formed keycask grant token
        (InvalidGrantTokenException otherwise). A token for another key, or
        for a grant that no longer exists, adds nothing; a token that names an
        existing grant but was not issued for it is invalid.
        """
        keys = self._keys
        if keys is None:
            return ()
        records = await keys.grants(key.key_id)
        cached = self._grant_views.get(key.key_id)
        if cached is not None and cached[0] is records:
            views = cached[1]
        else:
            views = tuple(grant_view(stored.value) for stored in records)
            self._grant_views.put(key.key_id, (records, views))
        if not tokens:
            return views
        extra: list[GrantView] = []
        known = {stored.value.grant_id: stored.value for stored in records}
        for text in tokens:
            token = parse_grant_token(text, key.region)
            if token.key_id != key.key_id:
                continue
            grant = known.get(token.grant_id)
            if grant is None:
                # Made by another process since this one last read the key's
                # grants: the token makes it count at once.
                stored = await keys.grant(key.key_id, token.grant_id)
                if stored is None:
                    continue
                grant = stored.value
                known[grant.grant_id] = grant
                extra.append(grant_view(grant))
            if not token.opens(grant):
                raise invalid_grant_token()
        return (*views, *extra) if extra else views

    def clear(self) -> None:
        self._subjects.clear()
        self._session_subjects.clear()
        self._grant_views.clear()
        self._decisions.clear()
