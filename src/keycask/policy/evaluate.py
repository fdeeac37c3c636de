"""Who may do what.

Until key policies, identity policies and grants are evaluated (the access
control issue), the rule is the smallest one that is safe: an administrator may
do everything in its own account, everybody else nothing. Default deny.
"""

from __future__ import annotations

from dataclasses import dataclass

from keycask.errors import AccessDeniedException


@dataclass(frozen=True, slots=True)
class Subject:
    arn: str
    account: str
    admin: bool


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    decided_by: str
    message: str = ""

    def enforce(self) -> None:
        if not self.allowed:
            raise AccessDeniedException(self.message)


_ADMIN = Decision(True, "admin principal")


def decide(subject: Subject, action: str, resource: str, resource_account: str | None) -> Decision:
    """``resource_account`` is the account owning the resource, or None for
    actions on ``*`` (CreateKey, ListKeys, GenerateRandom, ...)."""
    same_account = resource_account is None or resource_account == subject.account
    if subject.admin and same_account:
        return _ADMIN
    reason = (
        "no identity-based policy allows the " + action + " action"
        if same_account
        else "the key policy does not allow access from account " + subject.account
    )
    return Decision(
        False,
        "implicit deny",
        f"User: {subject.arn} is not authorized to perform: {action} on resource: "
        f"{resource} because {reason}",
    )
