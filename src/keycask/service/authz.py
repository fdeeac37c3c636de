"""What authorization needs from the service: parsed key policies, the
caller as a policy subject, the grants on a key. Parsed once and cached, so
the hot path pays a dictionary lookup, not a JSON parse.

A policy that no longer parses (a stored document from before a stricter
parser, or damage) is replaced by one that denies everything: a malformed
policy never allows.
"""

from __future__ import annotations

from collections.abc import Sequence

from keycask.auth.credentials import Principal
from keycask.errors import MalformedPolicyDocumentException
from keycask.keys.keystore import BoundedCache
from keycask.keys.model import Key
from keycask.policy.document import Policy, PrincipalSpec, Statement, parse_policy
from keycask.policy.evaluate import GrantView, Subject

_CACHE = 10_000
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


class Authorizer:
    def __init__(self) -> None:
        self._key_policies: BoundedCache[str, Policy] = BoundedCache(_CACHE)
        self._subjects: BoundedCache[Principal, Subject] = BoundedCache(_CACHE)
        self._deny_all_key_policy = _deny_all_key_policy()

    def key_policy(self, key: Key) -> Policy:
        return self.parse_key_policy(key.policy)

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
            )
            self._subjects.put(principal, found)
        return found

    async def grants(self, key: Key) -> Sequence[GrantView]:
        """The grants on ``key`` (none until grants are stored)."""
        return ()

    def clear(self) -> None:
        self._subjects.clear()
