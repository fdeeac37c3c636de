"""Session tokens: the temporary credentials of an assumed role, carried by
the token itself.

A session is not stored anywhere. Its claims (who, which role, until when,
the session policy and tags, the secret access key) travel sealed inside
the session token the caller sends as ``x-amz-security-token``; any node
whose barrier opens the store opens any node's token. What is stored are
the *token keys*, behind the barrier at ``sts/token-keys``: a JSON list of
``{"id", "created", "key"}``. A new key is made when the newest is older
than a day (``ROTATE_AFTER``); a key no longer used for issuance is kept
``KEEP_AFTER_USE`` past its successor's creation, far beyond the longest
session (12 h), so every token still alive opens.

Token bytes (v1), base64 (standard alphabet, padded: every character is
allowed in an HTTP header value)::

    0x01 | key id (8) | salt (16) | nonce (12) | AES-256-GCM(claims JSON) | tag (16)

The AES key is derived per token from the token key and the salt, exactly
as a ciphertext blob's message key is (keys/wire.py, crypto/message.py), so
a token key never meets AES-GCM's random-nonce bound; the version byte and
key id are the AAD. The claims are not compressed: they hold the secret
next to caller-chosen tags and policy, and a compressed length would leak
how well a guess of the secret matched them.

Every token that does not open (malformed, cut, any bit flipped, unknown
key, claims that do not parse) is ``UnrecognizedClientException``, the one
answer AWS gives for an invalid security token; a genuine token past its
expiry is ``ExpiredTokenException``.

Issuance stages its writes: ``issue`` returns the new key list to commit
(after the audit record, like every write) when it had to make a key, and
uses the new key for this token only after that commit is seen (it re-reads
the store the next time), so a failed commit never leaves tokens sealed
under a key no other node can load.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from keycask.auth.credentials import new_secret
from keycask.barrier import Barrier
from keycask.config import partition
from keycask.crypto import (
    MESSAGE_OVERHEAD,
    AuthenticationFailed,
    KeyMaterial,
    open_message,
    random_bytes,
    seal_message,
)
from keycask.errors import (
    ExpiredTokenException,
    PackedPolicyTooLargeException,
    UnrecognizedClientException,
)
from keycask.ports import Write

TOKEN_KEYS_PATH: Final = "sts/token-keys"  # noqa: S105 (a store path)
ACCESS_KEY_PREFIX: Final = "ASIA"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
TOKEN_VERSION: Final = 0x01
KEY_ID_SIZE: Final = 8
_HEADER_SIZE = 1 + KEY_ID_SIZE
# A new token key when the newest is older than this.
ROTATE_AFTER: Final = 24 * 3600.0
# A key stops issuing when its successor is made; it is kept this long
# after that (the longest session is 12 h: every token it sealed opens).
KEEP_AFTER_USE: Final = 48 * 3600.0
# The longest token, in base64 characters: well inside the HTTP server's
# 64 KiB of headers, with room for the rest of a request's headers.
MAX_TOKEN_CHARS: Final = 8192
_MAX_RAW = MAX_TOKEN_CHARS // 4 * 3
# Opened tokens remembered (first in, first out): only genuine tokens are
# ever cached, so a caller sending garbage fills nothing; and only tokens of
# at most _CACHED_TOKEN_CHARS (a session with no large policy or many tags
# is ~500), so the cache holds at most ~8 MiB.
_OPENED_CACHE = 4096
_CACHED_TOKEN_CHARS = 2048

_INVALID = "The security token included in the request is invalid."
_EXPIRED = "The security token included in the request is expired"


def invalid_token() -> UnrecognizedClientException:
    """The one answer for any token that is not a valid session token."""
    return UnrecognizedClientException(_INVALID)


def is_session_access_key_id(value: str) -> bool:
    return (
        value.startswith(ACCESS_KEY_PREFIX)
        and len(value) == 20
        and all(c in _BASE32 for c in value[4:])
    )


def new_session_access_key_id() -> str:
    return ACCESS_KEY_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(16))


@dataclass(frozen=True, slots=True)
class NewSession:
    """What the issuer decides about a session: everything but its
    credentials and issue time, which ``SessionTokens.issue`` adds."""

    account: str
    role_name: str
    role_id: str  # the role's unique id (AROA...) now: a re-created role is another
    session_name: str
    expires: int  # epoch seconds
    policy: str | None = None  # the session policy document, as sent
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None
    federated_provider: str | None = None  # the IdP's ARN (web identity)
    source_arn: str | None = None  # who assumed the role (a user, role or session ARN)


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """One session, as its token carries it."""

    access_key_id: str
    secret: str = field(repr=False)
    account: str
    role_name: str
    role_id: str
    session_name: str
    issued: int  # epoch seconds
    expires: int  # epoch seconds
    policy: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None
    federated_provider: str | None = None
    source_arn: str | None = None

    @property
    def role_arn(self) -> str:
        return f"arn:{partition()}:iam::{self.account}:role/{self.role_name}"

    @property
    def arn(self) -> str:
        """The assumed-role session ARN: what the audit record and
        GetCallerIdentity name, and what a policy may name exactly."""
        role = f"{self.role_name}/{self.session_name}"
        return f"arn:{partition()}:sts::{self.account}:assumed-role/{role}"

    @property
    def user_id(self) -> str:
        """aws:userid of a role session: ``<role id>:<session name>``."""
        return f"{self.role_id}:{self.session_name}"


# -- the claims' JSON --

_FIELDS: Final = (
    ("a", "access_key_id"),
    ("s", "secret"),
    ("acct", "account"),
    ("role", "role_name"),
    ("rid", "role_id"),
    ("name", "session_name"),
    ("iat", "issued"),
    ("exp", "expires"),
    ("pol", "policy"),
    ("tags", "tags"),
    ("ttk", "transitive_tag_keys"),
    ("sid", "source_identity"),
    ("idp", "federated_provider"),
    ("src", "source_arn"),
)


def encode_claims(claims: SessionClaims) -> bytes:
    doc: dict[str, Any] = {}
    for short, name in _FIELDS:
        value = getattr(claims, name)
        if name == "tags":
            value = [[k, v] for k, v in value]
        elif name == "transitive_tag_keys":
            value = list(value)
        doc[short] = value
    return orjson.dumps(doc)


def _text(value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError("not text")
    return value


def _epoch(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value


def decode_claims(data: bytes) -> SessionClaims:
    """Inverse of ``encode_claims``; ValueError for anything else."""
    doc = orjson.loads(data)
    if not isinstance(doc, dict) or set(doc) != {short for short, _ in _FIELDS}:
        raise ValueError("not session claims")
    tags_in = doc["tags"]
    keys_in = doc["ttk"]
    if not isinstance(tags_in, list) or not isinstance(keys_in, list):
        raise ValueError("not session claims")
    tags: list[tuple[str, str]] = []
    for pair in tags_in:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError("not a tag")
        tags.append((str(_text(pair[0])), str(_text(pair[1]))))
    return SessionClaims(
        access_key_id=str(_text(doc["a"])),
        secret=str(_text(doc["s"])),
        account=str(_text(doc["acct"])),
        role_name=str(_text(doc["role"])),
        role_id=str(_text(doc["rid"])),
        session_name=str(_text(doc["name"])),
        issued=_epoch(doc["iat"]),
        expires=_epoch(doc["exp"]),
        policy=_text(doc["pol"], optional=True),
        tags=tuple(tags),
        transitive_tag_keys=tuple(str(_text(k)) for k in keys_in),
        source_identity=_text(doc["sid"], optional=True),
        federated_provider=_text(doc["idp"], optional=True),
        source_arn=_text(doc["src"], optional=True),
    )


# -- token keys --


@dataclass(frozen=True, slots=True)
class TokenKey:
    key_id: bytes  # KEY_ID_SIZE bytes
    created: float  # epoch seconds
    material: KeyMaterial = field(repr=False)


@dataclass(frozen=True, slots=True)
class _KeyRing:
    keys: tuple[TokenKey, ...]  # oldest first
    revision: int  # of sts/token-keys; 0: not stored yet

    def find(self, key_id: bytes) -> TokenKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None


def _encode_keys(keys: Sequence[TokenKey]) -> bytes:
    return orjson.dumps(
        [
            {
                "id": key.key_id.hex(),
                "created": key.created,
                "key": base64.b64encode(key.material.reveal()).decode(),
            }
            for key in keys
        ]
    )


def _decode_keys(value: bytes) -> tuple[TokenKey, ...]:
    # Behind the barrier: authentic, so a shape other than ours is a bug,
    # and raising (an internal error) is right.
    return tuple(
        TokenKey(
            bytes.fromhex(entry["id"]),
            float(entry["created"]),
            KeyMaterial(base64.b64decode(entry["key"])),
        )
        for entry in orjson.loads(value)
    )


def _kept(keys: Sequence[TokenKey], now: float) -> list[TokenKey]:
    """``keys`` without those whose successor was made more than
    ``KEEP_AFTER_USE`` ago: they seal nothing that is still alive."""
    kept: list[TokenKey] = []
    for index, key in enumerate(keys):
        successor = keys[index + 1] if index + 1 < len(keys) else None
        if successor is None or now - successor.created <= KEEP_AFTER_USE:
            kept.append(key)
    return kept


@dataclass(frozen=True, slots=True)
class Issued:
    """What ``SessionTokens.issue`` gives: the session (with its fresh
    access key id and secret), its token, and the writes to stage."""

    claims: SessionClaims
    token: str = field(repr=False)
    writes: tuple[Write, ...] = ()


class SessionTokens:
    """Issues and opens session tokens under the token keys of the store."""

    def __init__(self, barrier: Barrier) -> None:
        self._barrier = barrier
        self._ring: _KeyRing | None = None
        self._opened: dict[str, SessionClaims] = {}

    async def _load(self) -> _KeyRing:
        found = await self._barrier.get(TOKEN_KEYS_PATH)
        ring = _KeyRing((), 0)
        if found is not None:
            ring = _KeyRing(_decode_keys(found.value), found.revision)
        self._ring = ring
        return ring

    async def issue(self, session: NewSession, now: datetime) -> Issued:
        """A new session: fresh credentials, issued ``now``, sealed in a
        token. ``writes`` is non-empty when a token key had to be made: the
        handler stages them and the pipeline commits them after the audit
        record. PackedPolicyTooLargeException when the session's policy and
        tags make the token longer than ``MAX_TOKEN_CHARS``."""
        at = now.timestamp()
        if session.expires <= at:
            raise ValueError("a session must expire after it is issued")
        ring = self._ring
        if ring is None or not ring.keys or at - ring.keys[-1].created > ROTATE_AFTER:
            ring = await self._load()  # another node may have made one already
        writes: tuple[Write, ...] = ()
        if ring.keys and at - ring.keys[-1].created <= ROTATE_AFTER:
            key = ring.keys[-1]
        else:
            key = TokenKey(random_bytes(KEY_ID_SIZE), at, KeyMaterial.generate())
            keys = [*_kept(ring.keys, at), key]
            writes = (self._barrier.put(TOKEN_KEYS_PATH, _encode_keys(keys), expect=ring.revision),)
            # Read again next time: the new key counts once it is committed.
            self._ring = None
        claims = SessionClaims(
            access_key_id=new_session_access_key_id(),
            secret=new_secret(),
            account=session.account,
            role_name=session.role_name,
            role_id=session.role_id,
            session_name=session.session_name,
            issued=int(at),
            expires=session.expires,
            policy=session.policy,
            tags=session.tags,
            transitive_tag_keys=session.transitive_tag_keys,
            source_identity=session.source_identity,
            federated_provider=session.federated_provider,
            source_arn=session.source_arn,
        )
        plaintext = encode_claims(claims)
        if len(plaintext) + _HEADER_SIZE + MESSAGE_OVERHEAD > _MAX_RAW:
            raise PackedPolicyTooLargeException(
                "Packed size of the session policy and session tags is too large: "
                f"at most {MAX_TOKEN_CHARS} characters of session token"
            )
        header = bytes([TOKEN_VERSION]) + key.key_id
        raw = header + seal_message(key.material, plaintext, header=header, context=b"")
        return Issued(claims, base64.b64encode(raw).decode("ascii"), writes)

    async def open(self, token: str, now: datetime) -> SessionClaims:
        """The session ``token`` carries. UnrecognizedClientException for
        anything that is not a valid token, ExpiredTokenException for a
        valid one past its expiry."""
        claims = self._opened.get(token)
        if claims is None:
            claims = await self._open(token)
            if len(token) <= _CACHED_TOKEN_CHARS:
                if len(self._opened) >= _OPENED_CACHE:
                    del self._opened[next(iter(self._opened))]
                self._opened[token] = claims
        if now.timestamp() >= claims.expires:
            raise ExpiredTokenException(_EXPIRED)
        return claims

    async def _open(self, token: str) -> SessionClaims:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise invalid_token()
        try:
            raw = base64.b64decode(token.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise invalid_token() from None
        if len(raw) < _HEADER_SIZE + MESSAGE_OVERHEAD or raw[0] != TOKEN_VERSION:
            raise invalid_token()
        key_id = raw[1:_HEADER_SIZE]
        ring = self._ring
        key = ring.find(key_id) if ring is not None else None
        if key is None:
            # Made by another node (or after this one last read): read again.
            # A miss costs one read, as an unknown access key id does.
            key = (await self._load()).find(key_id)
            if key is None:
                raise invalid_token()
        try:
            plaintext = open_message(
                key.material, raw[_HEADER_SIZE:], header=raw[:_HEADER_SIZE], context=b""
            )
        except AuthenticationFailed:
            raise invalid_token() from None
        try:
            claims = decode_claims(plaintext)
        except (ValueError, TypeError):
            raise invalid_token() from None
        if not is_session_access_key_id(claims.access_key_id):
            raise invalid_token()
        return claims

    def forget(self) -> None:
        """Drop the token keys and opened tokens (on seal)."""
        self._ring = None
        self._opened.clear()
