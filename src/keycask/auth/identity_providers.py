"""OpenID Connect identity providers, stored behind the barrier, and the
verification of their web identity tokens (AssumeRoleWithWebIdentity).

A provider is AWS IAM's OIDC provider with its signing keys given instead
of certificate thumbprints: the issuer URL (``https://host/path``, matched
exactly against a token's ``iss``), the audiences (client ids) a token may
be for, and the JWK Set its tokens are signed with, given as text or
fetched from a URL at registration and kept. Paths:

    idp/<account>/<host/path>   the provider (JSON): url, audiences, the JWKS
                                text, the JWKS URL or null, created

The name (``host/path``) needs no escaping in a path: the URL rules below
leave only letters, digits and ``. - _ ~ / %``. It is also what trust
policy condition keys start with (``<name>:sub``, ``<name>:aud``), so a
port (whose colon would end the key's prefix) is refused, as are a query
and a fragment.

Changes are staged as in ``credentials.py``: the ``stage_*`` methods return
writes that the caller commits after its audit record is durable.

Verification reads the provider from the store on each call, so a deleted
provider stops being trusted at once on every node. Its JWKS is the stored
copy until a token names a key the copy lacks; then, for a provider with a
JWKS URL, the URL is fetched again, at most once a minute per provider (an
unauthenticated caller chooses the tokens, and must not make the server
fetch at will). The fresher copy is kept in memory, for this process; the
stored one is what a restart starts from.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from keycask.auth.credentials import check_account
from keycask.auth.jwks_fetch import (
    JwksAddressRefused,
    JwksUnavailable,
    check_jwks_url,
    fetch_jwks,
)
from keycask.barrier import Barrier
from keycask.config import partition
from keycask.crypto import jwt
from keycask.errors import (
    AlreadyExistsException,
    ExpiredTokenException,
    IDPCommunicationErrorException,
    InvalidIdentityTokenException,
    LimitExceededException,
    ValidationException,
)
from keycask.keys.cache import BoundedCache
from keycask.ports import Write

PREFIX = "idp/"
# IAM's limits: a URL of at most 255 characters, at most 100 client ids of
# at most 255 characters each, 100 OIDC providers per account.
MAX_URL = 255
MAX_AUDIENCES = 100
MAX_AUDIENCE = 255
MAX_PROVIDERS = 100
REFRESH_INTERVAL_SECONDS = 60.0
# How old a JWKS copy fetched from a URL may grow before a token makes the
# server fetch it again, known key or not: an IdP that drops a key (a leaked
# one, or a routine rotation's old one) has it distrusted here within this.
# An hour keeps the fetches few (one per provider and process per hour) and
# is well inside the hours-to-days that IdPs keep publishing a retired key.
MAX_COPY_AGE_SECONDS = 3600.0
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_NAME = re.compile(rf"(?:{_HOST})(?:/[A-Za-z0-9._~%/-]*)?")
_AUDIENCE = re.compile(r"[\x21-\x7e]{1,255}")
_ISSUER_SCHEME = "https://"


def check_url(url: str) -> str:
    """The provider's name (``host/path``) of an issuer URL, once it is one
    keycask registers; ValidationException otherwise."""
    if len(url) > MAX_URL:
        raise ValidationException(f"Url must be at most {MAX_URL} characters.")
    if not url.startswith(_ISSUER_SCHEME):
        raise ValidationException("Url must begin with https:// (it is the tokens' iss).")
    name = url[len(_ISSUER_SCHEME) :]
    if not _NAME.fullmatch(name):
        raise ValidationException(
            "Url must be https://host or https://host/path: a host name (no port, no user), "
            "a path of letters, digits and . _ ~ % / -, no query or fragment."
        )
    return name


def check_audiences(audiences: Sequence[str]) -> tuple[str, ...]:
    if not audiences:
        raise ValidationException("Audiences must name at least one client id.")
    if len(audiences) > MAX_AUDIENCES:
        raise ValidationException(f"Audiences has at most {MAX_AUDIENCES} client ids.")
    for audience in audiences:
        if not _AUDIENCE.fullmatch(audience):
            raise ValidationException(
                f"A client id is 1-{MAX_AUDIENCE} printable characters without spaces."
            )
    # Kept in the caller's order, without repeats.
    return tuple(dict.fromkeys(audiences))


def parse_arn(arn: str) -> tuple[str, str] | None:
    """(account, name) of an OIDC provider ARN of keycask's partition, else None."""
    prefix = f"arn:{partition()}:iam::"
    if not arn.startswith(prefix):
        return None
    account, sep, rest = arn[len(prefix) :].partition(":oidc-provider/")
    if not sep or not re.fullmatch(r"[0-9]{12}", account) or not _NAME.fullmatch(rest):
        return None
    return account, rest


def provider_arn(account: str, name: str) -> str:
    return f"arn:{partition()}:iam::{account}:oidc-provider/{name}"


def _path(account: str, name: str) -> str:
    return f"{PREFIX}{account}/{name}"


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    account: str
    url: str  # the issuer: https://host/path
    audiences: tuple[str, ...]  # client ids
    jwks: str = field(repr=False)  # the JWK Set as stored (JSON text)
    jwks_url: str | None  # where it was fetched from; None if given as text
    created: float

    @property
    def name(self) -> str:
        """host/path: what an ARN ends with and condition keys start with."""
        return self.url[len(_ISSUER_SCHEME) :]

    @property
    def arn(self) -> str:
        return provider_arn(self.account, self.name)

    @classmethod
    def from_doc(cls, account: str, doc: Mapping[str, Any]) -> IdentityProvider:
        jwks_url = doc.get("jwks_url")
        return cls(
            account,
            str(doc["url"]),
            tuple(str(a) for a in doc["audiences"]),
            str(doc["jwks"]),
            None if jwks_url is None else str(jwks_url),
            float(doc["created"]),
        )

    def to_doc(self) -> bytes:
        return orjson.dumps(
            {
                "url": self.url,
                "audiences": list(self.audiences),
                "jwks": self.jwks,
                "jwks_url": self.jwks_url,
                "created": self.created,
            }
        )


@dataclass(frozen=True, slots=True)
class StoredIdentityProvider:
    provider: IdentityProvider
    revision: int


@dataclass(frozen=True, slots=True)
class WebIdentity:
    """A web identity token that verified: who the provider says it is for."""

    provider: IdentityProvider
    subject: str  # sub
    audience: str  # the registered client id the token is for
    claims: Mapping[str, Any] = field(repr=False)  # every claim, read-only
    issued_at: float | None  # iat, if the token has one
    expires_at: float  # exp


def _claims_view(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(claims))


class IdentityProviders:
    def __init__(self, barrier: Barrier, *, loopback_http: bool = False) -> None:
        """``loopback_http``: JWKS URLs may be http:// to a loopback host
        (--dev and tests; a production server fetches over https only)."""
        self._barrier = barrier
        self._loopback_http = loopback_http
        # Parsed JWK sets by their text: parsing loads every key (RSA keys
        # cost tens of microseconds each), and a provider's text never
        # changes (it is deleted and registered again instead).
        self._parsed: BoundedCache[str, jwt.Jwks] = BoundedCache(256)
        # Per provider (path, created): when its JWKS URL was last fetched
        # for an unknown key, and the JWKS the last good fetch answered
        # (None: none has yet).
        self._fetched: BoundedCache[tuple[str, float], tuple[float, str | None]] = BoundedCache(
            1024
        )

    # -- reading --

    async def stored(self, account: str, name: str) -> StoredIdentityProvider | None:
        found = await self._barrier.get(_path(account, name))
        if found is None:
            return None
        provider = IdentityProvider.from_doc(account, orjson.loads(found.value))
        return StoredIdentityProvider(provider, found.revision)

    async def get(self, account: str, name: str) -> IdentityProvider | None:
        stored = await self.stored(account, name)
        return None if stored is None else stored.provider

    async def list_providers(
        self, account: str, after: str = "", limit: int = MAX_PROVIDERS
    ) -> list[IdentityProvider]:
        """Providers of ``account`` by name, those after the name ``after``."""
        prefix = f"{PREFIX}{account}/"
        rows = await self._barrier.list(prefix, prefix + after if after else "", limit)
        return [IdentityProvider.from_doc(account, orjson.loads(entry.value)) for _, entry in rows]

    # -- staged changes --

    async def stage_create(
        self,
        account: str,
        url: str,
        audiences: Sequence[str],
        *,
        jwks: str | None = None,
        jwks_url: str | None = None,
        now: float | None = None,
    ) -> tuple[IdentityProvider, list[Write]]:
        """A new provider; with ``jwks_url`` its JWKS is fetched now (and
        IDPCommunicationErrorException if it cannot be; ValidationException
        if its host resolves to an address not fetched from). Checks that the
        name is free: call it where no other writer can take it meanwhile."""
        check_account(account)
        name = check_url(url)
        audiences = check_audiences(audiences)
        if (jwks is None) == (jwks_url is None):
            raise ValidationException("Give the JWKS either as Jwks (JSON text) or as JwksUrl.")
        if jwks_url is not None:
            try:
                check_jwks_url(jwks_url, loopback_http=self._loopback_http)
            except ValueError as error:
                raise ValidationException(f"JwksUrl: {error}.") from None
        if await self._barrier.get(_path(account, name)) is not None:
            raise AlreadyExistsException(
                f"An identity provider for {url} already exists in account {account}."
            )
        if len(await self._barrier.list(f"{PREFIX}{account}/", "", MAX_PROVIDERS)) >= (
            MAX_PROVIDERS
        ):
            raise LimitExceededException(
                f"Account {account} has {MAX_PROVIDERS} identity providers, the limit."
            )
        if jwks_url is not None:
            try:
                body = await fetch_jwks(jwks_url, loopback=self._loopback_http)
            except JwksAddressRefused:
                raise ValidationException(
                    "JwksUrl: the host must resolve to publicly routable addresses only."
                ) from None
            except JwksUnavailable:
                # One message whatever failed (jwks_fetch logs which step).
                raise IDPCommunicationErrorException("The JWKS URL could not be fetched.") from None
            try:
                jwks = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationException("The JWKS URL answered something not UTF-8.") from None
        assert jwks is not None
        try:
            self._parsed.put(jwks, jwt.parse_jwks(jwks))
        except jwt.MalformedJwks as error:
            raise ValidationException(f"Jwks: {error}.") from None
        created = time.time() if now is None else now
        provider = IdentityProvider(account, url, audiences, jwks, jwks_url, created)
        return provider, [self._barrier.put(_path(account, name), provider.to_doc(), expect=0)]

    def stage_delete(self, stored: StoredIdentityProvider) -> list[Write]:
        p = stored.provider
        return [self._barrier.delete(_path(p.account, p.name), expect=stored.revision)]

    # -- verification --

    def _jwks(self, text: str) -> jwt.Jwks:
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = jwt.parse_jwks(text)
            self._parsed.put(text, parsed)
        return parsed

    async def _refreshed(self, provider: IdentityProvider, now: float) -> jwt.Jwks | None:
        """The provider's JWKS fetched again; None if it has no URL or was
        fetched less than a minute ago (what that fetch answered is the
        copy in use already). IDPCommunicationErrorException if the fetch
        fails."""
        if provider.jwks_url is None:
            return None
        key = (_path(provider.account, provider.name), provider.created)
        last = self._fetched.get(key)
        if last is not None and now - last[0] < REFRESH_INTERVAL_SECONDS:
            return None
        # Recorded before the fetch: concurrent tokens wait for nothing and
        # fetch nothing more until the interval has passed.
        self._fetched.put(key, (now, None if last is None else last[1]))
        try:
            # An address refused now (the host's DNS changed since
            # registration) is a failed fetch like any other.
            body = await fetch_jwks(provider.jwks_url, loopback=self._loopback_http)
            text = body.decode("utf-8")
            jwks = self._jwks(text)
        except (JwksUnavailable, UnicodeDecodeError, jwt.MalformedJwks) as error:
            reason = str(error) if isinstance(error, JwksUnavailable) else "no valid JWKS"
            raise IDPCommunicationErrorException(
                f"Couldn't retrieve verification key from your identity provider: {reason}."
            ) from None
        self._fetched.put(key, (now, text))
        return jwks

    async def _renew_if_old(self, provider: IdentityProvider, now: float) -> None:
        """Fetch a URL provider's JWKS again once the copy in use (stored at
        registration, or fetched since) is older than MAX_COPY_AGE_SECONDS,
        so keys the IdP withdrew stop verifying. If the IdP cannot be
        reached, the copy in use stays: an IdP outage does not stop
        workloads whose tokens verify against it."""
        if provider.jwks_url is None:
            return
        last = self._fetched.get((_path(provider.account, provider.name), provider.created))
        since = last[0] if last is not None else provider.created
        if now - since < MAX_COPY_AGE_SECONDS:
            return
        with contextlib.suppress(IDPCommunicationErrorException):
            await self._refreshed(provider, now)

    def _current_jwks(self, provider: IdentityProvider) -> jwt.Jwks:
        """The fresher of the stored and last fetched copies."""
        last = self._fetched.get((_path(provider.account, provider.name), provider.created))
        text = last[1] if last is not None and last[1] is not None else provider.jwks
        try:
            return self._jwks(text)
        except jwt.MalformedJwks:
            # Stored under older rules than this version's: nothing verifies.
            raise InvalidIdentityTokenException(
                "The identity provider's JWKS is not valid any more; register it again."
            ) from None

    async def verify(self, token: str, *, account: str, now: float) -> WebIdentity:
        """The identity ``token`` proves to ``account``'s provider of its issuer.

        InvalidIdentityTokenException: malformed, not an allowed algorithm,
        not signed by the provider's keys, no provider for its ``iss``, no
        ``sub`` or ``aud``, an ``aud`` none of the provider's audiences, not
        valid yet (``nbf``/``iat``): as STS answers each.
        ExpiredTokenException: past ``exp``. IDPCommunicationErrorException:
        the token names a key the provider's JWKS lacks and its URL could
        not be fetched again.
        """
        try:
            parsed = jwt.parse(token)
        except jwt.MalformedToken as error:
            raise InvalidIdentityTokenException(f"The token is malformed: {error}.") from None
        issuer = parsed.claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise InvalidIdentityTokenException("Missing a required claim: iss")
        provider = None
        if issuer.startswith(_ISSUER_SCHEME) and len(issuer) <= MAX_URL:
            name = issuer[len(_ISSUER_SCHEME) :]
            if _NAME.fullmatch(name):
                provider = await self.get(account, name)
        if provider is None or provider.url != issuer:
            raise InvalidIdentityTokenException(
                f"No OpenIDConnect provider found in your account for {issuer[:MAX_URL]}"
            )
        await self._check_signature(provider, parsed, now)
        try:
            issued, expires = jwt.check_times(parsed.claims, now=now)
        except jwt.Expired:
            raise ExpiredTokenException("Token expired: current date/time is past exp.") from None
        except jwt.NotYetValid as error:
            raise InvalidIdentityTokenException(f"{str(error).capitalize()}.") from None
        except jwt.MalformedToken as error:
            raise InvalidIdentityTokenException(f"The token is malformed: {error}.") from None
        subject = parsed.claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidIdentityTokenException("Missing a required claim: sub")
        audience = self._audience(provider, parsed.claims)
        return WebIdentity(
            provider, subject, audience, _claims_view(parsed.claims), issued, expires
        )

    async def _check_signature(
        self, provider: IdentityProvider, parsed: jwt.UnverifiedToken, now: float
    ) -> None:
        await self._renew_if_old(provider, now)
        try:
            jwt.verify_signature(parsed, self._current_jwks(provider))
            return
        except jwt.BadSignature:
            raise InvalidIdentityTokenException("The token's signature is not valid.") from None
        except jwt.NoSigningKey as error:
            missing = error
        # An unknown key: the provider may have rotated its keys since the copy.
        fresher = await self._refreshed(provider, now)
        if fresher is None:
            raise InvalidIdentityTokenException(
                f"The token cannot be verified: {missing}."
            ) from None
        try:
            jwt.verify_signature(parsed, fresher)
        except jwt.BadSignature:
            raise InvalidIdentityTokenException("The token's signature is not valid.") from None
        except jwt.NoSigningKey as error:
            raise InvalidIdentityTokenException(f"The token cannot be verified: {error}.") from None

    @staticmethod
    def _audience(provider: IdentityProvider, claims: Mapping[str, Any]) -> str:
        aud = claims.get("aud")
        if isinstance(aud, str):
            given: list[str] = [aud]
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            given = aud
        else:
            raise InvalidIdentityTokenException("Missing a required claim: aud")
        for audience in given:
            if audience in provider.audiences:
                return audience
        # STS's own answer for a foreign audience (InvalidIdentityToken,
        # "Incorrect token audience"), which SDK users search for.
        raise InvalidIdentityTokenException("Incorrect token audience")
