"""The barrier: authenticated encryption over everything at rest."""

from keycask.barrier.barrier import Barrier, Versioned

__all__ = ["Barrier", "Versioned"]
