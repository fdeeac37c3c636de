"""Bearer tokens: one mechanism for every door whose clients send a bearer
token instead of signing (Vault's ``X-Vault-Token``, later Google's and
Azure's ``Authorization: Bearer``). A token stands for one principal, as an
access key does, and resolves to the same ``Principal``.

A token is ``kct.`` and 32 random bytes in unpadded base64url: 256 bits, so
nobody guesses one, and it is shown once, when it is made. Only its SHA-256
is stored, behind the barrier, at a path named by that hash:

    token/<sha256 hex>        JSON: account, name and unique id of the
                              principal, created, expires
    tomb/token/<sha256 hex>   empty; the token was revoked

Why a plain SHA-256 and not a password hash (scrypt, argon2): those exist to
slow down guessing of low-entropy secrets. A token has 256 bits of entropy;
inverting SHA-256 on it is as hard as guessing the token, so a slow hash
would add nothing but cost on every request. Keyed by its hash, a token is
found with one ``get`` (O(1)), and the stored hash is compared with the
computed one in constant time (the standard library's digest compare); the
dictionary and store lookups by hash leak at most how much of a SHA-256
output an attacker's guess shares with a real one, which says nothing about
the token.

A token counts only while: its row exists and no tombstone names it (a row
put back from an older copy of the untrusted store stays dead), it has not
expired, and its principal exists with the unique id it had when the token
was made (deleting the principal, or re-creating one of the same name,
revokes its tokens, as it does a role's sessions). A token's public id, for
listing and revoking it, is the first 16 hex digits of its hash: it names
the token without letting anyone use it.

Resolved tokens are cached in memory (hash -> record) until a commit
touches their path (``forget``, here or through the credential store's
``forget`` and ``clear``, which another process's commit triggers): a
revocation holds at once in this process and at the next request in others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from keycask.auth.credentials import CredentialStore, Principal
from keycask.barrier import Barrier
from keycask.errors import ValidationException
from keycask.ports import Write

TOKEN_PREFIX = "kct."  # noqa: S105 (a prefix, not a secret)
_TOKEN_BYTES = 32
# 32 bytes in unpadded base64url.
_TOKEN_CHARS = 43
_PATH = "token/"
_TOMB = "tomb/token/"
TOKEN_ID_LENGTH = 16
DEFAULT_TTL = 3600
# Vault's own default max_lease_ttl: 32 days.
MAX_TTL = 32 * 24 * 3600
MIN_TTL = 60
# Tokens one principal may have at once.
MAX_TOKENS = 100
_CACHE = 10_000


def new_token() -> str:
    raw = secrets.token_bytes(_TOKEN_BYTES)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_token(token: str) -> bool:
    return len(token) == len(TOKEN_PREFIX) + _TOKEN_CHARS and token.startswith(TOKEN_PREFIX)


def check_ttl(seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValidationException("Ttl must be a whole number of seconds.")
    if not MIN_TTL <= seconds <= MAX_TTL:
        raise ValidationException(
            f"Ttl must be from {MIN_TTL} seconds to {MAX_TTL} seconds ({MAX_TTL // 86400} days)."
        )


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as stored: never the token itself."""

    hash: str
    account: str
    name: str
    unique_id: str
    created: float
    expires: float
    revision: int = 0

    @property
    def token_id(self) -> str:
        return self.hash[:TOKEN_ID_LENGTH]

    def expired(self, now: datetime) -> bool:
        return now.timestamp() >= self.expires


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a token stands for, now."""

    principal: Principal
    record: TokenRecord


def _doc(record: TokenRecord) -> bytes:
    return orjson.dumps(
        {
            "hash": record.hash,
            "account": record.account,
            "name": record.name,
            "unique_id": record.unique_id,
            "created": record.created,
            "expires": record.expires,
        }
    )


def _record(digest: str, value: bytes, revision: int) -> TokenRecord:
    doc = orjson.loads(value)
    return TokenRecord(
        str(doc["hash"]),
        str(doc["account"]),
        str(doc["name"]),
        str(doc["unique_id"]),
        float(doc["created"]),
        float(doc["expires"]),
        revision,
    )


class TokenStore:
    def __init__(self, barrier: Barrier, credentials: CredentialStore) -> None:
        self._barrier = barrier
        self.credentials = credentials
        self._cache: dict[str, TokenRecord] = {}
        self._generation = 0
        credentials.listeners.append(self._credentials_changed)

    # -- cache --

    def _credentials_changed(self, writes: Sequence[Write] | None) -> None:
        if writes is None:
            self.clear()
        else:
            self.forget(writes)

    def clear(self) -> None:
        self._generation += 1
        self._cache.clear()

    def forget(self, writes: Sequence[Write]) -> None:
        """Drop the tokens ``writes`` touched (made, revoked)."""
        self._generation += 1
        for write in writes:
            path = write.path
            if path.startswith(_PATH):
                self._cache.pop(path[len(_PATH) :], None)
            elif path.startswith(_TOMB):
                self._cache.pop(path[len(_TOMB) :], None)

    # -- resolving --

    async def resolve(self, token: str, now: datetime) -> Resolved | None:
        """The live principal ``token`` stands for, or None (unknown, revoked,
        expired, or its principal gone or re-created)."""
        if not looks_like_token(token):
            return None
        digest = token_hash(token)
        record = self._cache.get(digest)
        if record is None:
            record = await self._load(digest)
            if record is None:
                return None  # misses are not cached: they are attacker-chosen
        if not hmac.compare_digest(record.hash, digest) or record.expired(now):
            return None
        principal = await self.credentials.current_principal(record.account, record.name)
        if principal is None or principal.unique_id != record.unique_id:
            return None
        return Resolved(principal, record)

    async def _load(self, digest: str) -> TokenRecord | None:
        generation = self._generation
        if await self._barrier.get(_TOMB + digest) is not None:
            return None
        found = await self._barrier.get(_PATH + digest)
        if found is None:
            return None
        record = _record(digest, found.value, found.revision)
        if generation == self._generation:
            if len(self._cache) >= _CACHE:
                del self._cache[next(iter(self._cache))]
            self._cache[digest] = record
        return record

    # -- admin --

    async def tokens_of(self, account: str, name: str, unique_id: str) -> list[TokenRecord]:
        """The principal's tokens (expired ones included, until revoked)."""
        found: list[TokenRecord] = []
        after = ""
        while True:
            rows = await self._barrier.list(_PATH, after, 1000)
            for path, entry in rows:
                record = _record(path[len(_PATH) :], entry.value, entry.revision)
                if (record.account, record.name, record.unique_id) == (account, name, unique_id):
                    found.append(record)
            if len(rows) < 1000:
                return sorted(found, key=lambda r: r.created)
            after = rows[-1][0]

    async def by_id(self, token_id: str) -> TokenRecord | None:
        """The token whose public id is ``token_id``."""
        if len(token_id) != TOKEN_ID_LENGTH or any(c not in "0123456789abcdef" for c in token_id):
            return None
        rows = await self._barrier.list(_PATH + token_id, "", 2)
        if len(rows) != 1:
            return None
        path, entry = rows[0]
        return _record(path[len(_PATH) :], entry.value, entry.revision)

    async def by_token(self, token: str) -> TokenRecord | None:
        if not looks_like_token(token):
            return None
        digest = token_hash(token)
        found = await self._barrier.get(_PATH + digest)
        return None if found is None else _record(digest, found.value, found.revision)

    def stage_create(
        self, principal: Principal, ttl: int, now: datetime, existing: int
    ) -> tuple[str, TokenRecord, list[Write]]:
        """A new token for ``principal``; the token is returned once."""
        check_ttl(ttl)
        if existing >= MAX_TOKENS:
            raise ValidationException(
                f"{principal.arn} has {existing} tokens; the limit is {MAX_TOKENS}. "
                "Revoke one first."
            )
        token = new_token()
        digest = token_hash(token)
        created = now.timestamp()
        expires = (now + timedelta(seconds=ttl)).timestamp()
        record = TokenRecord(
            digest, principal.account, principal.name, principal.unique_id, created, expires
        )
        return token, record, [self._barrier.put(_PATH + digest, _doc(record), expect=0)]

    def stage_forget_expired(self, record: TokenRecord) -> Write:
        """An expired token's row, removed with no tombstone: a copy of it put
        back (an old backup) is expired still, since its expiry is in it, so
        nothing needs to remember it, and a caller making short-lived tokens
        over and over leaves nothing behind."""
        return self._barrier.delete(_PATH + record.hash, expect=record.revision)

    def stage_revoke(self, record: TokenRecord) -> list[Write]:
        return [
            self._barrier.delete(_PATH + record.hash, expect=record.revision),
            # Unconditional: a hash is never reused, and a tombstone only says "dead".
            self._barrier.put(_TOMB + record.hash, b"", expect=None),
        ]

    async def commit(self, writes: Sequence[Write]) -> None:
        await self.credentials.commit(writes)
