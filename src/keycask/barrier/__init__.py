"""The barrier: authenticated encryption over everything at rest."""

from keycask.barrier.barrier import REKEYED_ELSEWHERE, Barrier, Versioned

__all__ = ["REKEYED_ELSEWHERE", "Barrier", "Versioned"]
