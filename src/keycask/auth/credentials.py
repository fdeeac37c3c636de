"""Principals and their access keys, stored behind the barrier.

The secret access key must be readable to verify SigV4 (it is an HMAC key), so
it is stored encrypted by the barrier rather than hashed, and cached in memory
after first use. Paths:

    principal/<account>/<name>    the principal (JSON)
    accesskey/<access key id>     the access key, its secret and its owner (JSON)
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from keycask.barrier import Barrier
from keycask.errors import AlreadyExistsException, ValidationException

_ACCESS_KEY_PREFIX = "AKKC"  # keycask's own prefix: never mistaken for an AWS key
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# IAM's rules for user and role names.
_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")


@dataclass(frozen=True, slots=True)
class Principal:
    account: str
    name: str
    admin: bool
    kind: str = "user"  # "user" | "role", as in the ARN
    tags: tuple[tuple[str, str], ...] = ()
    # (policy name, policy document as stored) of each identity policy.
    policies: tuple[tuple[str, str], ...] = ()

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:{self.kind}/{self.name}"

    @classmethod
    def from_doc(cls, account: str, name: str, doc: dict[str, object]) -> Principal:
        tags = doc.get("tags") or {}
        policies = doc.get("policies") or {}
        assert isinstance(tags, dict) and isinstance(policies, dict)
        return cls(
            account,
            name,
            bool(doc["admin"]),
            str(doc.get("kind", "user")),
            tuple(sorted((str(k), str(v)) for k, v in tags.items())),
            tuple(sorted((str(k), str(v)) for k, v in policies.items())),
        )


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    principal: Principal
    active: bool
    secret: str

    def __repr__(self) -> str:
        return f"AccessKey({self.access_key_id!r}, {self.principal.arn!r}, secret=<redacted>)"


def new_access_key_id() -> str:
    return _ACCESS_KEY_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(16))


def new_secret() -> str:
    # 30 random bytes -> 40 base64 characters: the shape of an AWS secret key.
    return base64.b64encode(secrets.token_bytes(30)).decode()


class CredentialStore:
    def __init__(self, barrier: Barrier) -> None:
        self._barrier = barrier
        self._keys: dict[str, AccessKey] = {}

    def clear(self) -> None:
        """Forget cached access keys: another process changed the store."""
        self._keys.clear()

    def cached(self, access_key_id: str) -> AccessKey | None:
        """The access key if it is in memory already: the hot path's lookup."""
        return self._keys.get(access_key_id)

    async def lookup(self, access_key_id: str) -> AccessKey | None:
        cached = self._keys.get(access_key_id)
        if cached is not None:
            return cached
        if not access_key_id.startswith(_ACCESS_KEY_PREFIX) or len(access_key_id) != 20:
            return None
        found = await self._barrier.get(f"accesskey/{access_key_id}")
        if found is None:
            return None  # misses are not cached: they are attacker-chosen
        doc = orjson.loads(found.value)
        principal = await self.get_principal(doc["account"], doc["name"])
        if principal is None:
            return None  # the owner was deleted: the key is dead
        key = AccessKey(
            access_key_id=access_key_id,
            principal=principal,
            active=bool(doc["active"]),
            secret=doc["secret"],
        )
        self._keys[access_key_id] = key
        return key

    async def get_principal(self, account: str, name: str) -> Principal | None:
        found = await self._barrier.get(f"principal/{account}/{name}")
        if found is None:
            return None
        return Principal.from_doc(account, name, orjson.loads(found.value))

    async def create_principal(self, account: str, name: str, *, admin: bool) -> AccessKey:
        """Create a principal with one access key; the secret is returned once."""
        if not _NAME.match(name):
            raise ValidationException("principal names are 1-64 of A-Z a-z 0-9 + = , . @ _ -")
        if not _ACCOUNT.match(account):
            raise ValidationException("account ids are 12 digits")
        if await self.get_principal(account, name) is not None:
            raise AlreadyExistsException(f"principal {name} already exists in account {account}")
        principal = Principal(account, name, admin)
        key = AccessKey(new_access_key_id(), principal, True, new_secret())
        now = datetime.now(UTC).timestamp()
        b = self._barrier
        await b.commit(
            [
                b.put(
                    f"principal/{account}/{name}",
                    orjson.dumps({"admin": admin, "created": now}),
                    expect=0,
                ),
                b.put(
                    f"accesskey/{key.access_key_id}",
                    orjson.dumps(
                        {
                            "account": account,
                            "name": name,
                            "admin": admin,
                            "active": True,
                            "secret": key.secret,
                            "created": now,
                        }
                    ),
                    expect=0,
                ),
            ]
        )
        return key
