"""Principals and their access keys, stored behind the barrier.

Why one module of ~790 lines: a principal's document lists its access keys
and decides whether each counts, so the two are read, cached, staged and
forgotten together (one cache, one ``forget`` on commit); the value types
and name checks above the store are what its documents are made of.

The secret access key must be readable to verify SigV4 (it is an HMAC key), so
it is stored encrypted by the barrier rather than hashed, and cached in memory
after first use. Paths:

    principal/<account>/<name>    the principal (JSON): admin, kind, tags,
                                  identity policies, its access key ids
    accesskey/<access key id>     the access key, its secret and its owner (JSON);
                                  also an XKS proxy credential (``"purpose": "xks"``,
                                  an ``XKKC`` id of 26 characters): it signs for the
                                  XKS door only (``lookup_xks``), and ``lookup`` and
                                  the access-key admin calls never see it
    tomb/accesskey/<id>           empty; the access key was deleted (with its
                                  owner or alone)

An access key counts only if its owner's document lists it, and is active
only if the owner's document does not list it as inactive: the store is
untrusted, and an ``accesskey/`` row put back from an older copy (a deleted
or deactivated key) must not bring the key back. Both documents are sealed
by the barrier, so neither can be forged; putting back an older owner too
is a whole-store rollback's business (``storage/watermark.py``), and the
tombstone stops the plain replay of a deleted principal's rows.

Changes are *staged*: the ``stage_*`` methods check what they can and return
the writes, which the caller commits (after its audit record is durable) with
``commit``, which also drops what the writes changed from the cache.
``create_principal`` stages and commits at once, for callers with no audit
step of their own to put in between (the --dev bootstrap, tests).

The same trust rule holds for XKS credentials, which ``_load`` reads for
both lookups: the rule is written once.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson

from keycask import metrics
from keycask.barrier import Barrier
from keycask.config import partition
from keycask.errors import AlreadyExistsException, LimitExceededException, ValidationException
from keycask.ports import Write

_ACCESS_KEY_PREFIX = "AKKC"  # keycask's own prefix: never mistaken for an AWS key
# XKS proxy credentials (docs/xks.md): a prefix and a length of their own, so
# an id names one kind of key only; AWS KMS takes 20-30 of A-Z and 2-7 (the
# XKS specification) and a secret of 43-64 of A-Z a-z 0-9 + / =.
_XKS_KEY_PREFIX = "XKKC"
_XKS_KEY_LENGTH = 26
XKS = "xks"
# XKS credentials one principal may have at once: the old and the new
# while a custom key store's credential is rotated.
MAX_XKS_CREDENTIALS = 2
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# IAM's rules for user and role names.
_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_PRINCIPAL_PREFIX = "principal/"
_ACCESS_KEY_PATH = "accesskey/"
_TOMBSTONE_PATH = "tomb/accesskey/"
# Hits and misses of the access key cache (keycask_cache_*_total{cache="access_key"}).
_STATS = metrics.cache_stats("access_key")
KINDS = ("user", "role")
# AWS's unique-id prefixes (IAM "Unique identifiers"): AIDA users, AROA roles.
_UNIQUE_ID_PREFIXES = {"user": "AIDA", "role": "AROA"}
_UNIQUE_ID_LENGTH = 21
# A principal ARN keycask can resolve: its own users and roles (no paths).
_PRINCIPAL_ARN = re.compile(r"^arn:aws:iam::([0-9]{12}):(user|role)/([A-Za-z0-9+=,.@_-]{1,64})$")
# Principals remembered for role sessions (first in, first out).
_PRINCIPAL_CACHE = 10_000
# Access keys one principal may have at once (AWS IAM allows two).
MAX_ACCESS_KEYS = 10


# IAM's MaxSessionDuration: one hour by default, 1 to 12 hours.
DEFAULT_MAX_SESSION_DURATION = 3600
MAX_SESSION_DURATION_RANGE = (3600, 43200)


def check_max_session_duration(seconds: int) -> None:
    low, high = MAX_SESSION_DURATION_RANGE
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise ValidationException(
            f"MaxSessionDuration must be a whole number of seconds from {low} to {high}."
        )


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValidationException("principal names are 1-64 of A-Z a-z 0-9 + = , . @ _ -")


def check_account(account: str) -> None:
    if not _ACCOUNT.match(account):
        raise ValidationException("account ids are 12 digits")


def new_unique_id(kind: str) -> str:
    """A fresh unique id, shaped like AWS's (``AIDA`` + 17 base32 characters)."""
    prefix = _UNIQUE_ID_PREFIXES.get(kind, "AIDA")
    return prefix + "".join(secrets.choice(_BASE32) for _ in range(_UNIQUE_ID_LENGTH - 4))


def legacy_unique_id(arn: str, kind: str, created: float) -> str:
    """The unique id of a principal stored before principals had one:
    derived from its ARN and creation time, so it is stable across reads and
    processes, and differs from any principal created later with that name
    (which gets a random id)."""
    digest = base64.b32encode(hashlib.sha256(f"{arn}\n{created!r}".encode()).digest()).decode()
    return _UNIQUE_ID_PREFIXES.get(kind, "AIDA") + digest[: _UNIQUE_ID_LENGTH - 4]


def parse_principal_arn(arn: str) -> tuple[str, str, str] | None:
    """(account, kind, name) of a keycask user or role ARN, else None."""
    match = _PRINCIPAL_ARN.match(arn)
    return None if match is None else (match[1], match[2], match[3])


def is_access_key_id(value: str) -> bool:
    return (
        value.startswith(_ACCESS_KEY_PREFIX)
        and len(value) == 20
        and all(c in _BASE32 for c in value[4:])
    )


def is_xks_access_key_id(value: str) -> bool:
    return (
        value.startswith(_XKS_KEY_PREFIX)
        and len(value) == _XKS_KEY_LENGTH
        and all(c in _BASE32 for c in value[4:])
    )


@dataclass(frozen=True, slots=True)
class Principal:
    account: str
    name: str
    admin: bool
    kind: str = "user"  # "user" | "role", as in the ARN
    tags: tuple[tuple[str, str], ...] = ()
    # (policy name, policy document as stored) of each identity policy.
    policies: tuple[tuple[str, str], ...] = ()
    # AWS's unique id (AIDA... / AROA...): a principal deleted and created
    # again with the same name is another principal, with another id, and
    # policies and grants that named the first one do not apply to it.
    unique_id: str = ""
    # A role's trust policy (who may assume it through STS; "" for a user,
    # or a role that only signs with its own access keys) and the longest
    # session it grants, in seconds (IAM's MaxSessionDuration).
    trust_policy: str = ""
    max_session_duration: int = DEFAULT_MAX_SESSION_DURATION
    # (ARN, unique id) of each user or role the trust policy named that
    # existed when it was put: it keeps naming that principal only, as a key
    # policy does (a principal re-created under the name is another).
    trust_principals: tuple[tuple[str, str], ...] = ()

    @property
    def arn(self) -> str:
        return f"arn:{partition()}:iam::{self.account}:{self.kind}/{self.name}"

    @classmethod
    def from_doc(cls, account: str, name: str, doc: dict[str, object]) -> Principal:
        tags = doc.get("tags") or {}
        policies = doc.get("policies") or {}
        assert isinstance(tags, dict) and isinstance(policies, dict)
        kind = str(doc.get("kind", "user"))
        unique_id = doc.get("unique_id")
        if not isinstance(unique_id, str) or not unique_id:
            created = doc.get("created", 0.0)
            when = float(created) if isinstance(created, int | float) else 0.0
            unique_id = legacy_unique_id(f"arn:aws:iam::{account}:{kind}/{name}", kind, when)
        max_session = doc.get("max_session_duration", DEFAULT_MAX_SESSION_DURATION)
        return cls(
            account,
            name,
            bool(doc["admin"]),
            kind,
            tuple(sorted((str(k), str(v)) for k, v in tags.items())),
            tuple(sorted((str(k), str(v)) for k, v in policies.items())),
            unique_id,
            str(doc.get("trust_policy", "")),
            max_session if isinstance(max_session, int) else DEFAULT_MAX_SESSION_DURATION,
            _pairs(doc.get("trust_principals")),
        )


def _pairs(value: object) -> tuple[tuple[str, str], ...]:
    """A stored list of [ARN, unique id] pairs."""
    if not isinstance(value, list):
        return ()
    return tuple((str(pair[0]), str(pair[1])) for pair in value if isinstance(pair, list))


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    principal: Principal
    active: bool
    secret: str
    # "" for a key that signs AWS-style requests (every door but XKS); XKS
    # for an XKS proxy credential, which signs for the XKS door only.
    purpose: str = ""

    def __repr__(self) -> str:
        return f"AccessKey({self.access_key_id!r}, {self.principal.arn!r}, secret=<redacted>)"


@dataclass(frozen=True, slots=True)
class StoredPrincipal:
    """A principal as stored, with what a change to it must keep."""

    principal: Principal
    revision: int
    created: float
    access_key_ids: tuple[str, ...]
    # Of access_key_ids, those set Inactive: the owner decides, not the key's row.
    inactive_key_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredAccessKey:
    """An access key's record, for listing and changing it. The secret is
    kept only to write the record back; it is never shown."""

    access_key_id: str
    account: str
    name: str
    active: bool
    created: float
    revision: int
    secret: str = field(repr=False)
    admin: bool = False  # as the first format wrote it; the principal decides
    purpose: str = ""  # AccessKey.purpose


def new_access_key_id() -> str:
    return _ACCESS_KEY_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(16))


def new_secret() -> str:
    # 30 random bytes -> 40 base64 characters: the shape of an AWS secret key.
    return base64.b64encode(secrets.token_bytes(30)).decode()


def new_xks_access_key_id() -> str:
    return _XKS_KEY_PREFIX + "".join(
        secrets.choice(_BASE32) for _ in range(_XKS_KEY_LENGTH - len(_XKS_KEY_PREFIX))
    )


def new_xks_secret() -> str:
    # 32 random bytes -> 44 base64 characters (256 bits, as the XKS
    # specification asks; AWS KMS takes 43-64).
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _principal_path(account: str, name: str) -> str:
    return f"{_PRINCIPAL_PREFIX}{account}/{name}"


class CredentialStore:
    def __init__(self, barrier: Barrier) -> None:
        self._barrier = barrier
        self._keys: dict[str, AccessKey] = {}
        # XKS credentials, apart: a lookup for one door never finds the other's.
        self._xks_keys: dict[str, AccessKey] = {}
        # Principals as role sessions need them (checked on every request
        # with a session token): dropped with the access keys.
        self._principals: dict[tuple[str, str], Principal] = {}
        # Moves on every clear: a lookup that read the store before one must
        # not cache what it read (it may be the revoked state's predecessor).
        self._generation = 0
        # Told of every forget (its writes) and clear (None): what else is
        # cached from the same commits (bearer tokens, auth/tokens.py).
        self.listeners: list[Callable[[Sequence[Write] | None], None]] = []

    def clear(self) -> None:
        """Forget cached access keys: another process changed the store."""
        self._generation += 1
        self._keys.clear()
        self._xks_keys.clear()
        self._principals.clear()
        for listener in self.listeners:
            listener(None)

    def cached(self, access_key_id: str) -> AccessKey | None:
        """The access key if it is in memory already: the hot path's lookup."""
        key = self._keys.get(access_key_id)
        if key is not None:
            _STATS.hits += 1
        return key

    async def lookup(self, access_key_id: str) -> AccessKey | None:
        cached = self._keys.get(access_key_id)
        if cached is not None:
            _STATS.hits += 1
            return cached
        _STATS.misses += 1
        if not access_key_id.startswith(_ACCESS_KEY_PREFIX) or len(access_key_id) != 20:
            return None
        return await self._load(access_key_id, "", self._keys)

    def cached_xks(self, access_key_id: str) -> AccessKey | None:
        """``cached`` for the XKS door's credentials."""
        return self._xks_keys.get(access_key_id)

    async def lookup_xks(self, access_key_id: str) -> AccessKey | None:
        """An XKS proxy credential (never an access key of the other doors)."""
        cached = self._xks_keys.get(access_key_id)
        if cached is not None:
            return cached
        if not is_xks_access_key_id(access_key_id):
            return None
        return await self._load(access_key_id, XKS, self._xks_keys)

    async def _load(
        self, access_key_id: str, purpose: str, cache: dict[str, AccessKey]
    ) -> AccessKey | None:
        generation = self._generation
        if await self._barrier.get(_TOMBSTONE_PATH + access_key_id) is not None:
            return None  # deleted: a row put back from an older copy is dead
        found = await self._barrier.get(_ACCESS_KEY_PATH + access_key_id)
        if found is None:
            return None  # misses are not cached: they are attacker-chosen
        doc = orjson.loads(found.value)
        if doc.get("purpose", "") != purpose:
            return None  # a key of the other kind signs for its own door only
        account, name = str(doc["account"]), str(doc["name"])
        owner = await self._barrier.get(_principal_path(account, name))
        if owner is None:
            return None  # the owner was deleted: the key is dead
        owner_doc = orjson.loads(owner.value)
        listed = owner_doc.get("access_keys")
        if listed is not None and access_key_id not in listed:
            return None  # the owner does not have it (any more)
        inactive = access_key_id in (owner_doc.get("inactive_keys") or ())
        key = AccessKey(
            access_key_id=access_key_id,
            principal=Principal.from_doc(account, name, owner_doc),
            active=bool(doc["active"]) and not inactive,
            secret=doc["secret"],
            purpose=purpose,
        )
        if generation == self._generation:
            cache[access_key_id] = key
        return key

    async def get_principal(self, account: str, name: str) -> Principal | None:
        found = await self._barrier.get(_principal_path(account, name))
        if found is None:
            return None
        return Principal.from_doc(account, name, orjson.loads(found.value))

    async def current_principal(self, account: str, name: str) -> Principal | None:
        """``get_principal``, remembered until a commit changes it (here or,
        through ``clear``, in another process): a role session's request
        checks its role this way."""
        found = self._principals.get((account, name))
        if found is not None:
            return found
        generation = self._generation
        principal = await self.get_principal(account, name)
        if principal is not None and generation == self._generation:
            if len(self._principals) >= _PRINCIPAL_CACHE:
                del self._principals[next(iter(self._principals))]
            self._principals[(account, name)] = principal
        return principal

    async def unique_id(self, arn: str) -> str | None:
        """The unique id of the principal ``arn`` names now, or None if it
        names none keycask has (an account, a session, a deleted principal)."""
        parsed = parse_principal_arn(arn)
        if parsed is None:
            return None
        account, kind, name = parsed
        principal = await self.get_principal(account, name)
        if principal is None or principal.kind != kind:
            return None
        return principal.unique_id

    async def create_principal(
        self,
        account: str,
        name: str,
        *,
        admin: bool,
        kind: str = "user",
        tags: Mapping[str, str] | None = None,
    ) -> AccessKey:
        """Create a principal with one access key and commit it at once; the
        secret is returned once."""
        key, writes = await self.stage_create_principal(
            account, name, admin=admin, kind=kind, tags=tags
        )
        await self.commit(writes)
        return key

    # -- reading, for the admin API --

    async def stored_principal(self, account: str, name: str) -> StoredPrincipal | None:
        found = await self._barrier.get(_principal_path(account, name))
        if found is None:
            return None
        doc = orjson.loads(found.value)
        principal = Principal.from_doc(account, name, doc)
        ids = doc.get("access_keys")
        if ids is None:
            # Stored before principals listed their keys: find them. The
            # next change to the principal writes the list.
            ids = [key.access_key_id for key in await self._scan_access_keys(account, name)]
        return StoredPrincipal(
            principal,
            found.revision,
            float(doc.get("created", 0.0)),
            tuple(ids),
            tuple(doc.get("inactive_keys") or ()),
        )

    async def _scan_access_keys(self, account: str, name: str) -> list[StoredAccessKey]:
        found: list[StoredAccessKey] = []
        after = ""
        while True:
            rows = await self._barrier.list(_ACCESS_KEY_PATH, after, 1000)
            for path, entry in rows:
                key = _stored_access_key(path[len(_ACCESS_KEY_PATH) :], entry.value, entry.revision)
                if (key.account, key.name) == (account, name):
                    found.append(key)
            if len(rows) < 1000:
                return found
            after = rows[-1][0]

    async def access_key(self, access_key_id: str) -> StoredAccessKey | None:
        if not is_access_key_id(access_key_id):
            return None
        return await self._stored_key(access_key_id, "")

    async def xks_credential(self, access_key_id: str) -> StoredAccessKey | None:
        if not is_xks_access_key_id(access_key_id):
            return None
        return await self._stored_key(access_key_id, XKS)

    async def _stored_key(self, access_key_id: str, purpose: str) -> StoredAccessKey | None:
        found = await self._barrier.get(_ACCESS_KEY_PATH + access_key_id)
        if found is None:
            return None
        key = _stored_access_key(access_key_id, found.value, found.revision)
        return key if key.purpose == purpose else None

    async def xks_credentials(self, stored: StoredPrincipal) -> list[StoredAccessKey]:
        """The principal's XKS proxy credentials (its access keys are ``access_keys``)."""
        keys = []
        for access_key_id in stored.access_key_ids:
            key = await self.xks_credential(access_key_id)
            if key is not None:
                keys.append(replace(key, active=self.is_active(stored, key)))
        return keys

    async def access_keys(self, stored: StoredPrincipal) -> list[StoredAccessKey]:
        keys = []
        for access_key_id in stored.access_key_ids:
            key = await self.access_key(access_key_id)
            if key is not None:
                keys.append(replace(key, active=self.is_active(stored, key)))
        return keys

    @staticmethod
    def is_active(owner: StoredPrincipal, key: StoredAccessKey) -> bool:
        """Whether ``key`` works: its row and its owner both say so."""
        return key.active and key.access_key_id not in owner.inactive_key_ids

    async def list_principals(
        self, account: str, after: str = "", limit: int = 1000
    ) -> list[Principal]:
        """Principals of ``account`` by name, those after the name ``after``."""
        prefix = f"{_PRINCIPAL_PREFIX}{account}/"
        rows = await self._barrier.list(prefix, prefix + after if after else "", limit)
        return [
            Principal.from_doc(account, path[len(prefix) :], orjson.loads(entry.value))
            for path, entry in rows
        ]

    # -- staged changes --

    async def stage_create_principal(
        self,
        account: str,
        name: str,
        *,
        admin: bool,
        kind: str = "user",
        tags: Mapping[str, str] | None = None,
    ) -> tuple[AccessKey, list[Write]]:
        """A new principal with one access key. Checks that the name is free:
        call it where no other writer can take the name meanwhile."""
        check_name(name)
        check_account(account)
        if kind not in KINDS:
            raise ValidationException("a principal is a user or a role")
        if await self._barrier.get(_principal_path(account, name)) is not None:
            raise AlreadyExistsException(f"principal {name} already exists in account {account}")
        principal = Principal(
            account,
            name,
            admin,
            kind,
            tuple(sorted((tags or {}).items())),
            (),
            new_unique_id(kind),
        )
        key = AccessKey(new_access_key_id(), principal, True, new_secret())
        now = datetime.now(UTC).timestamp()
        stored = StoredPrincipal(principal, 0, now, (key.access_key_id,))
        writes = [self._put_principal(stored, expect=0), self._put_new_key(key, now)]
        return key, writes

    async def stage_create_role(
        self,
        account: str,
        name: str,
        *,
        trust_policy: str,
        trust_principals: tuple[tuple[str, str], ...] = (),
        max_session_duration: int = DEFAULT_MAX_SESSION_DURATION,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[Principal, list[Write]]:
        """A new role that is assumed through STS: it has a trust policy and
        no access key, so no long-lived secret exists for it at all."""
        check_name(name)
        check_account(account)
        check_max_session_duration(max_session_duration)
        if await self._barrier.get(_principal_path(account, name)) is not None:
            raise AlreadyExistsException(f"principal {name} already exists in account {account}")
        principal = Principal(
            account,
            name,
            False,
            "role",
            tuple(sorted((tags or {}).items())),
            (),
            new_unique_id("role"),
            trust_policy,
            max_session_duration,
            trust_principals,
        )
        stored = StoredPrincipal(principal, 0, datetime.now(UTC).timestamp(), ())
        return principal, [self._put_principal(stored, expect=0)]

    def stage_principal(
        self,
        stored: StoredPrincipal,
        *,
        tags: Iterable[tuple[str, str]] | None = None,
        policies: Iterable[tuple[str, str]] | None = None,
        trust_policy: str | None = None,
        trust_principals: tuple[tuple[str, str], ...] = (),
        max_session_duration: int | None = None,
    ) -> list[Write]:
        """The principal with new tags, identity policies (all of them), trust
        policy or maximum session duration."""
        principal = stored.principal
        if tags is not None:
            principal = replace(principal, tags=tuple(sorted(tags)))
        if policies is not None:
            principal = replace(principal, policies=tuple(sorted(policies)))
        if trust_policy is not None:
            principal = replace(
                principal, trust_policy=trust_policy, trust_principals=trust_principals
            )
        if max_session_duration is not None:
            check_max_session_duration(max_session_duration)
            principal = replace(principal, max_session_duration=max_session_duration)
        return [self._put_principal(replace(stored, principal=principal), expect=stored.revision)]

    def stage_access_key(self, stored: StoredPrincipal) -> tuple[AccessKey, list[Write]]:
        """One more access key for the principal; the secret is returned once."""
        if len(stored.access_key_ids) >= MAX_ACCESS_KEYS:
            raise LimitExceededException(
                f"{stored.principal.arn} has {len(stored.access_key_ids)} access keys; "
                f"the limit is {MAX_ACCESS_KEYS}. Delete one first."
            )
        key = AccessKey(new_access_key_id(), stored.principal, True, new_secret())
        owner = replace(stored, access_key_ids=(*stored.access_key_ids, key.access_key_id))
        now = datetime.now(UTC).timestamp()
        return key, [
            self._put_principal(owner, expect=stored.revision),
            self._put_new_key(key, now),
        ]

    async def stage_xks_credential(
        self, account: str, name: str
    ) -> tuple[AccessKey, StoredPrincipal | None, list[Write]]:
        """An XKS proxy credential for the principal ``name``, made (a user
        without access keys) if it does not exist; the secret is returned
        once, with the principal as it was (None: made here). At most
        ``MAX_XKS_CREDENTIALS`` at once, for rotation."""
        check_name(name)
        check_account(account)
        stored = await self.stored_principal(account, name)
        now = datetime.now(UTC).timestamp()
        if stored is None:
            principal = Principal(account, name, False, "user", (), (), new_unique_id("user"))
            before = None
            stored = StoredPrincipal(principal, 0, now, ())
        else:
            before = stored
            held = [i for i in stored.access_key_ids if is_xks_access_key_id(i)]
            if len(held) >= MAX_XKS_CREDENTIALS:
                raise LimitExceededException(
                    f"{stored.principal.arn} has {len(held)} XKS credentials; the limit is "
                    f"{MAX_XKS_CREDENTIALS} (the old and the new while rotating). Revoke one first."
                )
            if len(stored.access_key_ids) >= MAX_ACCESS_KEYS:
                raise LimitExceededException(
                    f"{stored.principal.arn} has {len(stored.access_key_ids)} access keys; "
                    f"the limit is {MAX_ACCESS_KEYS}. Delete one first."
                )
        key = AccessKey(new_xks_access_key_id(), stored.principal, True, new_xks_secret(), XKS)
        owner = replace(stored, access_key_ids=(*stored.access_key_ids, key.access_key_id))
        return (
            key,
            before,
            [
                self._put_principal(owner, expect=stored.revision),
                self._put_new_key(key, now),
            ],
        )

    def stage_access_key_status(
        self, owner: StoredPrincipal, key: StoredAccessKey, *, active: bool
    ) -> list[Write]:
        """The key's row and its owner's list of inactive keys, together."""
        doc = _access_key_doc(
            key.account,
            key.name,
            key.secret,
            active,
            key.created,
            admin=key.admin,
            purpose=key.purpose,
        )
        path = _ACCESS_KEY_PATH + key.access_key_id
        inactive = tuple(i for i in owner.inactive_key_ids if i != key.access_key_id)
        if not active:
            inactive = (*inactive, key.access_key_id)
        return [
            self._put_principal(replace(owner, inactive_key_ids=inactive), expect=owner.revision),
            self._barrier.put(path, doc, expect=key.revision),
        ]

    def stage_delete_access_key(self, owner: StoredPrincipal, key: StoredAccessKey) -> list[Write]:
        gone = key.access_key_id
        ids = tuple(i for i in owner.access_key_ids if i != gone)
        inactive = tuple(i for i in owner.inactive_key_ids if i != gone)
        owner = replace(owner, access_key_ids=ids, inactive_key_ids=inactive)
        return [
            self._put_principal(owner, expect=owner.revision),
            self._barrier.delete(_ACCESS_KEY_PATH + gone, expect=key.revision),
            self._tombstone(gone),
        ]

    def stage_delete_principal(self, stored: StoredPrincipal) -> list[Write]:
        """The principal, its identity policies and every access key it has."""
        p = stored.principal
        writes: list[Write] = [
            self._barrier.delete(_principal_path(p.account, p.name), expect=stored.revision)
        ]
        writes.extend(
            self._barrier.delete(_ACCESS_KEY_PATH + i, expect=None) for i in stored.access_key_ids
        )
        writes.extend(self._tombstone(i) for i in stored.access_key_ids)
        return writes

    def _tombstone(self, access_key_id: str) -> Write:
        # Unconditional: a key id is never reused, and a tombstone only says "dead".
        return self._barrier.put(_TOMBSTONE_PATH + access_key_id, b"", expect=None)

    async def commit(self, writes: Sequence[Write]) -> None:
        try:
            await self._barrier.commit(writes)
        finally:
            # Whatever happened, the next lookup must come from storage.
            self.forget(writes)

    def forget(self, writes: Sequence[Write]) -> None:
        """Drop cached access keys that ``writes`` changed: the key itself, or
        its owner (whose policies, tags or existence the cached key carries).
        A deactivated or deleted key stops working here at once; other
        processes drop their caches when the commit is announced."""
        self._generation += 1
        for listener in self.listeners:
            listener(writes)
        owners: set[tuple[str, str]] = set()
        for write in writes:
            path = write.path
            if path.startswith(_ACCESS_KEY_PATH):
                self._keys.pop(path[len(_ACCESS_KEY_PATH) :], None)
                self._xks_keys.pop(path[len(_ACCESS_KEY_PATH) :], None)
            elif path.startswith(_TOMBSTONE_PATH):
                self._keys.pop(path[len(_TOMBSTONE_PATH) :], None)
                self._xks_keys.pop(path[len(_TOMBSTONE_PATH) :], None)
            elif path.startswith(_PRINCIPAL_PREFIX):
                account, _, name = path[len(_PRINCIPAL_PREFIX) :].partition("/")
                owners.add((account, name))
        for owner in owners:
            self._principals.pop(owner, None)
        if owners:
            for cache in (self._keys, self._xks_keys):
                for access_key_id, key in list(cache.items()):
                    if (key.principal.account, key.principal.name) in owners:
                        del cache[access_key_id]

    def _put_principal(self, stored: StoredPrincipal, *, expect: int) -> Write:
        p = stored.principal
        doc = {
            "admin": p.admin,
            "kind": p.kind,
            "unique_id": p.unique_id,
            "created": stored.created,
            "tags": dict(p.tags),
            "policies": dict(p.policies),
            "access_keys": list(stored.access_key_ids),
            "inactive_keys": list(stored.inactive_key_ids),
        }
        if p.trust_policy:
            doc["trust_policy"] = p.trust_policy
            doc["max_session_duration"] = p.max_session_duration
            doc["trust_principals"] = [list(pair) for pair in p.trust_principals]
        return self._barrier.put(
            _principal_path(p.account, p.name), orjson.dumps(doc), expect=expect
        )

    def _put_new_key(self, key: AccessKey, now: float) -> Write:
        p = key.principal
        doc = _access_key_doc(
            p.account, p.name, key.secret, True, now, admin=p.admin, purpose=key.purpose
        )
        return self._barrier.put(_ACCESS_KEY_PATH + key.access_key_id, doc, expect=0)


def _access_key_doc(
    account: str,
    name: str,
    secret: str,
    active: bool,
    created: float,
    *,
    admin: bool = False,
    purpose: str = "",
) -> bytes:
    # "admin" is kept for readers of the first format; the principal decides.
    doc: dict[str, object] = {
        "account": account,
        "name": name,
        "admin": admin,
        "active": active,
        "secret": secret,
        "created": created,
    }
    if purpose:
        doc["purpose"] = purpose  # absent: an access key, as every earlier row
    return orjson.dumps(doc)


def _stored_access_key(access_key_id: str, value: bytes, revision: int) -> StoredAccessKey:
    doc = orjson.loads(value)
    return StoredAccessKey(
        access_key_id,
        str(doc["account"]),
        str(doc["name"]),
        bool(doc["active"]),
        float(doc.get("created", 0.0)),
        revision,
        str(doc["secret"]),
        bool(doc.get("admin", False)),
        str(doc.get("purpose", "")),
    )
