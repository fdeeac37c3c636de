"""Typed results of the multi-Region lifecycle (ReplicateKey, and
ScheduleKeyDeletion on a primary that still has replicas); field names are
the snake_case of the model's output members. Kept apart from results.py,
whose key-metadata builder they reuse."""

from __future__ import annotations

from dataclasses import dataclass

from keycask.keys.model import Tag
from keycask.service.core.results import KeyMetadata


@dataclass(frozen=True, slots=True)
class ReplicateKeyResult:
    replica_key_metadata: KeyMetadata
    replica_policy: str
    replica_tags: list[Tag]


@dataclass(frozen=True, slots=True)
class PendingReplicaDeletionResult:
    """ScheduleKeyDeletion's answer for a primary with replicas: no
    DeletionDate, which is not known until its last replica is deleted."""

    key_id: str
    key_state: str
    pending_window_in_days: int
