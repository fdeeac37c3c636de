"""Typed requests of the operator calls (handlers in ``handlers/operator.py``).

The operator door builds them once it has checked every value (types,
lengths, ranges, which inputs go together), so the handlers take them as they
are. The seal inputs themselves are the seal keeper's own types
(``service/sealing.py``); these only say which call carries which.
"""

from __future__ import annotations

from dataclasses import dataclass

from keycask.service.sealing import NewSeal, SealProof, UnsealInput, VerifyInput


@dataclass(frozen=True, slots=True)
class NoInput:
    """Calls that take nothing (Status, Seal, Rotate, RotateToken, RekeyCancel)."""


@dataclass(frozen=True, slots=True)
class UnsealRequest:
    """Exactly one of the input's share, passphrase or PIN; ``given`` None
    drops the shares given so far instead."""

    given: UnsealInput | None


@dataclass(frozen=True, slots=True)
class BackupTagRequest:
    digest: bytes  # the SHA-256 of a backup file


@dataclass(frozen=True, slots=True)
class RekeyRequest:
    new: NewSeal
    proof: SealProof


@dataclass(frozen=True, slots=True)
class RekeyVerifyRequest:
    """The new shares, or the new passphrase (exactly one of them)."""

    given: VerifyInput
