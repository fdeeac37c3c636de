"""Typed results of the operator calls; the operator door encodes them (its
JSON members, their order and which are left out are the door's)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OperatorStatus:
    """The seal keeper's status (its own record, kept as it gives it), and,
    once unsealed, the count of keys and how the scheduled jobs fare."""

    seal: dict[str, object]
    keys: int | None = None
    jobs: str | None = None
    runs_jobs: bool | None = None


@dataclass(frozen=True, slots=True)
class NowSealed:
    pass


@dataclass(frozen=True, slots=True)
class Rotated:
    term: int


@dataclass(frozen=True, slots=True)
class BackupTagged:
    tag: bytes


@dataclass(frozen=True, slots=True)
class TokenRotated:
    token: str = field(repr=False)  # the new operator credential, shown this once


@dataclass(frozen=True, slots=True)
class RekeyAuthorising:
    """Current shares are being collected; nothing written yet."""

    seal: str
    progress: int
    threshold: object  # the current seal's, as its status gives it


@dataclass(frozen=True, slots=True)
class RekeyStarted:
    """The new seal is written aside and waits for verification; ``shares``
    are its share lines (empty unless it is a Shamir seal), shown this once."""

    seal: str
    threshold: int
    shares: list[str] = field(default_factory=list, repr=False)
    encrypted: bool = False  # each share sealed to its operator's public key


@dataclass(frozen=True, slots=True)
class RekeyVerifying:
    seal: str
    progress: int
    threshold: object  # the pending seal's, as the status gives it


@dataclass(frozen=True, slots=True)
class RekeyDone:
    seal: str
    settled: bool
    note: str | None = None


@dataclass(frozen=True, slots=True)
class RekeyCancelled:
    pass
