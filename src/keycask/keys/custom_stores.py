"""Custom key stores (CreateCustomKeyStore ...): the record of one store,
kept behind the barrier like every value.

A store has a type (``AWS_CLOUDHSM``: a PKCS#11 token keycask is configured
with; ``EXTERNAL_KEY_STORE``: an XKS proxy keycask will call), the fields
of its type, and the connection state an operator last asked for: what
ConnectCustomKeyStore and DisconnectCustomKeyStore set (CONNECTED or FAILED
with an error code; DISCONNECTED). Whether a CONNECTED store's token is
there *now* is asked of the token, never stored.

Secrets in a record (the AWS_CLOUDHSM key store password, an XKS proxy's
secret access key) are barrier ciphertext at rest like the rest of it, and
never leave keycask in an answer, an error, a log line or an audit record.

Paths (``keys/paths.py`` names them):
    cks/<account>/<region>/<store id>        the store (JSON)
    cksidx/<store id>/<key id>               empty; a key of the store
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STORE_ID_PREFIX = "cks-"
STORE_ID = re.compile(r"cks-[0-9a-f]{17}")
CONNECTED = "CONNECTED"
DISCONNECTED = "DISCONNECTED"
FAILED = "FAILED"
CONNECTING = "CONNECTING"


def new_store_id() -> str:
    """``cks-`` and 17 hex digits, as AWS's custom key store ids look."""
    return STORE_ID_PREFIX + secrets.token_hex(9)[:17]


@dataclass(frozen=True, slots=True)
class CustomKeyStore:
    store_id: str
    account: str
    region: str
    name: str
    store_type: str
    created: datetime
    state: str = DISCONNECTED
    error_code: str | None = None
    # AWS_CLOUDHSM
    cluster_id: str | None = None
    trust_anchor: str | None = None
    password: str | None = field(default=None, repr=False)
    # EXTERNAL_KEY_STORE
    xks_uri_endpoint: str | None = None
    xks_uri_path: str | None = None
    xks_connectivity: str | None = None
    xks_vpc_service_name: str | None = None
    xks_vpc_service_owner: str | None = None
    xks_access_key_id: str | None = field(default=None, repr=False)
    xks_secret: str | None = field(default=None, repr=False)

    def replace(self, **changes: Any) -> CustomKeyStore:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["created"] = self.created.timestamp()
        return {k: v for k, v in doc.items() if v is not None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CustomKeyStore:
        values = dict(doc)
        values["created"] = datetime.fromtimestamp(float(doc["created"]), UTC)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
