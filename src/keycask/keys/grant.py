"""A grant on one key, as stored (``grant/<key id>/<grant id>``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant on one key, as stored. ``token_hashes`` are SHA-256 digests
    (hex) of the secret part of every grant token issued for it; the tokens
    themselves are never stored."""

    grant_id: str  # 64 hex characters
    key_id: uuid.UUID
    key_arn: str
    name: str | None
    grantee: str
    retiring: str | None
    operations: tuple[str, ...]
    context_equals: Mapping[str, str] | None
    context_subset: Mapping[str, str] | None
    issuing_account: str  # arn:aws:iam::<account>:root
    created: datetime
    token_hashes: tuple[str, ...]
    # Unique ids of the grantee and retiring principal when the grant was
    # made (None: an account, a session, or a grant from before ids).
    grantee_id: str | None = None
    retiring_id: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "key_id": str(self.key_id),
            "key_arn": self.key_arn,
            "name": self.name,
            "grantee": self.grantee,
            "retiring": self.retiring,
            "operations": list(self.operations),
            "context_equals": None if self.context_equals is None else dict(self.context_equals),
            "context_subset": None if self.context_subset is None else dict(self.context_subset),
            "issuing_account": self.issuing_account,
            "created": self.created.timestamp(),
            "token_hashes": list(self.token_hashes),
            "grantee_id": self.grantee_id,
            "retiring_id": self.retiring_id,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Grant:
        return cls(
            grant_id=str(doc["grant_id"]),
            key_id=uuid.UUID(doc["key_id"]),
            key_arn=str(doc["key_arn"]),
            name=doc.get("name"),
            grantee=str(doc["grantee"]),
            retiring=doc.get("retiring"),
            operations=tuple(doc["operations"]),
            context_equals=doc.get("context_equals"),
            context_subset=doc.get("context_subset"),
            issuing_account=str(doc["issuing_account"]),
            created=datetime.fromtimestamp(float(doc["created"]), UTC),
            token_hashes=tuple(doc.get("token_hashes", ())),
            grantee_id=doc.get("grantee_id"),
            retiring_id=doc.get("retiring_id"),
        )
