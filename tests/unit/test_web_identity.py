"""Web identity tokens checked against registered identity providers
(auth/identity_providers.py over crypto/jwt.py), on a real barrier over
SQLite, with real RSA, EC and Ed25519 keys made by ``cryptography`` and
tokens signed by hand (tests/oidc_tokens.py): what AssumeRoleWithWebIdentity
will accept, and every way a token is refused."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keycask.auth.identity_providers import (
    MAX_COPY_AGE_SECONDS,
    IdentityProvider,
    IdentityProviders,
    parse_arn,
)
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.crypto import jwt as kjwt
from keycask.errors import (
    AlreadyExistsException,
    ExpiredTokenException,
    IDPCommunicationErrorException,
    InvalidIdentityTokenException,
    KMSError,
    ValidationException,
)
from keycask.storage.sqlite import SQLiteStorage
from oidc_tokens import (
    AUDIENCE,
    ISSUER,
    Signer,
    b64url,
    claims,
    hs256,
    jwks,
    jwks_server,
    segment,
    unsigned,
)

ACCOUNT = "111122223333"
OTHER = "444455556666"
NOW = time.time()
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA"]  # fmt: skip


@pytest.fixture
async def barrier(tmp_path: Path) -> AsyncIterator[Barrier]:
    storage = SQLiteStorage(tmp_path / "idp.db")
    yield await Barrier.open(storage, KeyMaterial.generate())
    await storage.close()


@pytest.fixture
def rsa_key() -> Signer:
    return Signer("RS256")


async def _register(
    barrier: Barrier,
    jwks_text: str | None = None,
    *,
    jwks_url: str | None = None,
    url: str = ISSUER,
    audiences: tuple[str, ...] = (AUDIENCE, "other-client"),
    account: str = ACCOUNT,
    loopback_http: bool = True,
) -> tuple[IdentityProviders, IdentityProvider]:
    store = IdentityProviders(barrier, loopback_http=loopback_http)
    provider, writes = await store.stage_create(
        account, url, audiences, jwks=jwks_text, jwks_url=jwks_url, now=NOW
    )
    await barrier.commit(writes)
    return store, provider


async def _refused(store: IdentityProviders, token: str, error: type[KMSError]) -> str:
    with pytest.raises(error) as caught:
        await store.verify(token, account=ACCOUNT, now=NOW)
    assert type(caught.value) is error
    return caught.value.message


@pytest.mark.parametrize("alg", ALGORITHMS)
async def test_every_allowed_algorithm_verifies(barrier: Barrier, alg: str) -> None:
    signer = Signer(alg)
    store, provider = await _register(barrier, jwks(signer))
    token = signer.token(claims(NOW, aud=["unrelated", AUDIENCE], team="infra"))
    identity = await store.verify(token, account=ACCOUNT, now=NOW)
    assert identity.provider == provider
    assert identity.subject == "repo:acme/app:ref:refs/heads/main"
    assert identity.audience == AUDIENCE
    assert identity.claims["team"] == "infra"
    assert (identity.issued_at, identity.expires_at) == (int(NOW), int(NOW) + 300)
    with pytest.raises(TypeError):
        identity.claims["team"] = "other"  # type: ignore[index]
    # The same claims signed by another key of the same type are refused.
    forged = Signer(alg).token(claims(NOW))
    assert "signature" in await _refused(store, forged, InvalidIdentityTokenException)


async def test_the_provider_is_stored_behind_the_barrier(barrier: Barrier, rsa_key: Signer) -> None:
    store, provider = await _register(barrier, jwks(rsa_key))
    assert provider.name == "idp.example.com/realms/ci"
    assert provider.arn == f"arn:aws:iam::{ACCOUNT}:oidc-provider/idp.example.com/realms/ci"
    assert parse_arn(provider.arn) == (ACCOUNT, provider.name)
    assert await store.get(ACCOUNT, provider.name) == provider
    assert await store.get(OTHER, provider.name) is None
    assert [p.arn for p in await store.list_providers(ACCOUNT)] == [provider.arn]
    raw = await barrier.storage.get(f"idp/{ACCOUNT}/{provider.name}")
    assert raw is not None and b"realms" not in raw.value  # sealed, not plain JSON
    with pytest.raises(AlreadyExistsException):
        await store.stage_create(ACCOUNT, ISSUER, [AUDIENCE], jwks=jwks(rsa_key))
    # Deleted: its tokens are refused at once.
    stored = await store.stored(ACCOUNT, provider.name)
    assert stored is not None
    await barrier.commit(store.stage_delete(stored))
    token = rsa_key.token(claims(NOW))
    await _refused(store, token, InvalidIdentityTokenException)


async def test_unregistered_issuers_are_refused(barrier: Barrier, rsa_key: Signer) -> None:
    store, _ = await _register(barrier, jwks(rsa_key))
    for iss in (
        "https://idp.example.com/realms/other",
        "https://idp.example.com/realms/ci/",
        "http://idp.example.com/realms/ci",
        "idp.example.com/realms/ci",
        "https://IDP.example.com/realms/ci",
        "https://evil.example/" + "x" * 400,
    ):
        message = await _refused(
            store, rsa_key.token(claims(NOW, iss=iss)), InvalidIdentityTokenException
        )
        assert "No OpenIDConnect provider found" in message
        assert len(message) < 400
    for bad in (None, 7, ["https://idp.example.com/realms/ci"], ""):
        token = rsa_key.token(claims(NOW, iss=bad) if bad is not None else claims(NOW, iss=None))
        assert "iss" in await _refused(store, token, InvalidIdentityTokenException)
    # A provider is its account's: another account's tokens find none.
    with pytest.raises(InvalidIdentityTokenException):
        await store.verify(rsa_key.token(claims(NOW)), account=OTHER, now=NOW)


async def test_audiences(barrier: Barrier, rsa_key: Signer) -> None:
    store, _ = await _register(barrier, jwks(rsa_key))
    assert "audience" in await _refused(
        store, rsa_key.token(claims(NOW, aud="someone-else")), InvalidIdentityTokenException
    )
    await _refused(store, rsa_key.token(claims(NOW, aud=["a", "b"])), InvalidIdentityTokenException)
    for missing in ([], 5, [AUDIENCE, 5]):
        token = rsa_key.token(claims(NOW, aud=missing))
        assert "aud" in await _refused(store, token, InvalidIdentityTokenException)
    assert "aud" in await _refused(
        store, rsa_key.token(claims(NOW, aud=None)), InvalidIdentityTokenException
    )
    other = await store.verify(
        rsa_key.token(claims(NOW, aud="other-client")), account=ACCOUNT, now=NOW
    )
    assert other.audience == "other-client"


async def test_times(barrier: Barrier, rsa_key: Signer) -> None:
    store, _ = await _register(barrier, jwks(rsa_key))
    leeway = kjwt.LEEWAY_SECONDS
    # Within the leeway either side: accepted.
    for changes in (
        {"exp": NOW - leeway + 1},
        {"nbf": NOW + leeway - 1},
        {"iat": NOW + leeway - 1, "nbf": None},
        {"iat": None, "nbf": None},
    ):
        await store.verify(rsa_key.token(claims(NOW, **changes)), account=ACCOUNT, now=NOW)
    await _refused(store, rsa_key.token(claims(NOW, exp=NOW - leeway)), ExpiredTokenException)
    await _refused(store, rsa_key.token(claims(NOW - 3600)), ExpiredTokenException)
    assert "nbf" in await _refused(
        store, rsa_key.token(claims(NOW, nbf=NOW + leeway + 1)), InvalidIdentityTokenException
    )
    assert "iat" in await _refused(
        store,
        rsa_key.token(claims(NOW, iat=NOW + leeway + 1, nbf=None)),
        InvalidIdentityTokenException,
    )
    for bad in ({"exp": None}, {"exp": "soon"}, {"exp": True}, {"nbf": "x"}, {"iat": -1}):
        await _refused(store, rsa_key.token(claims(NOW, **bad)), InvalidIdentityTokenException)
    # A token that is expired *and* forged is refused as forged.
    forged = Signer("RS256").token(claims(NOW - 3600))
    await _refused(store, forged, InvalidIdentityTokenException)


async def test_subject_is_required(barrier: Barrier, rsa_key: Signer) -> None:
    store, _ = await _register(barrier, jwks(rsa_key))
    for sub in (None, "", 42):
        token = rsa_key.token(claims(NOW, sub=sub) if sub is not None else claims(NOW, sub=None))
        assert "sub" in await _refused(store, token, InvalidIdentityTokenException)


async def test_unsigned_and_hmac_tokens_are_refused(barrier: Barrier, rsa_key: Signer) -> None:
    store, _ = await _register(barrier, jwks(rsa_key))
    good = rsa_key.token(claims(NOW))
    for token in (
        unsigned(claims(NOW)),
        unsigned(claims(NOW), signature=good.rsplit(".", 1)[1]),
        f"{segment({'alg': 'None'})}.{segment(claims(NOW))}.",
        f"{segment({'alg': 'NONE', 'kid': 'key-1'})}.{segment(claims(NOW))}.c2ln",
    ):
        await _refused(store, token, InvalidIdentityTokenException)
    # Key confusion: HS256 keyed with the public key in every form a
    # verifier might take it from. Refused for its algorithm, not its MAC.
    jwk = rsa_key.jwk()
    for secret in (rsa_key.public_pem(), json.dumps(jwk).encode(), jwk["n"].encode()):
        for kid in ("key-1", None):
            message = await _refused(
                store, hs256(claims(NOW), secret, kid), InvalidIdentityTokenException
            )
            assert "HS256" in message
    for alg in ("HS384", "HS512", "ES256K", "RS1", "rs256", ""):
        token = rsa_key.token(claims(NOW), header={"alg": alg})
        await _refused(store, token, InvalidIdentityTokenException)


async def test_a_key_signs_only_for_its_own_algorithm(barrier: Barrier) -> None:
    rsa_key, ec_key = Signer("RS256", kid="shared"), Signer("ES256", kid="ec")
    store, _ = await _register(barrier, jwks(rsa_key, ec_key))
    # The RSA key signs PS256 too (same key type), but an ES384 header on
    # the P-256 key, or an EC header naming the RSA key's kid, finds no key.
    ps = Signer("PS256", kid="shared", private=rsa_key.private)
    await store.verify(ps.token(claims(NOW)), account=ACCOUNT, now=NOW)
    wrong_curve = Signer("ES384", kid="ec")
    await _refused(store, wrong_curve.token(claims(NOW)), InvalidIdentityTokenException)
    confused = Signer("ES256", kid="shared", private=ec_key.private)
    await _refused(store, confused.token(claims(NOW)), InvalidIdentityTokenException)


async def test_a_jwk_alg_pins_the_algorithm(barrier: Barrier) -> None:
    key = Signer("RS256")
    store, _ = await _register(barrier, json.dumps({"keys": [key.jwk(alg="RS256")]}))
    ps = Signer("PS256", private=key.private)
    await _refused(store, ps.token(claims(NOW)), InvalidIdentityTokenException)
    await store.verify(key.token(claims(NOW)), account=ACCOUNT, now=NOW)


async def test_key_selection_by_kid(barrier: Barrier) -> None:
    first, second = Signer("RS256", kid="a"), Signer("RS256", kid="b")
    store, _ = await _register(barrier, jwks(first, second))
    await store.verify(second.token(claims(NOW)), account=ACCOUNT, now=NOW)
    # Without a kid, two keys of the type: neither is tried.
    no_kid = Signer("RS256", kid=None, private=first.private)
    assert "fits" in await _refused(store, no_kid.token(claims(NOW)), InvalidIdentityTokenException)
    # A kid that is not in the JWKS (and no URL to fetch a fresher one).
    unknown = Signer("RS256", kid="c", private=first.private)
    assert "kid" in await _refused(store, unknown.token(claims(NOW)), InvalidIdentityTokenException)
    # Without a kid, the only key of the type is used.
    lone = Signer("ES256", kid=None)
    store2, _ = await _register(barrier, jwks(lone, first), url="https://lone.example")
    await store2.verify(
        lone.token(claims(NOW, iss="https://lone.example")), account=ACCOUNT, now=NOW
    )


async def test_malformed_tokens(barrier: Barrier, rsa_key: Signer) -> None:
    store, _ = await _register(barrier, jwks(rsa_key))
    good = rsa_key.token(claims(NOW))
    head, body, sig = good.split(".")
    # Signed by the registered key, so only the rule under test refuses them.
    good_header = b'{"alg": "RS256", "kid": "key-1"}'
    payload = json.dumps(claims(NOW)).encode()
    dup_iss = payload.replace(b"{", b'{"iss": "https://evil.example", ', 1)
    nan = payload.replace(b"{", b'{"extra": NaN, ', 1)
    dup_alg = b'{"alg": "none", "alg": "RS256", "kid": "key-1"}'
    assert json.loads(dup_iss)["iss"] == ISSUER  # a lax reader takes the last one
    await store.verify(rsa_key.raw(good_header, payload), account=ACCOUNT, now=NOW)
    for token in (
        "",
        "abc",
        f"{head}.{body}",
        f"{head}.{body}.{sig}.{sig}",
        f"{head}=.{body}.{sig}",
        f"{head}.{body}.{sig}=",
        f"{head}.{body}.{sig}\n",
        f"{head}.{body}.",
        f"{head}.{b64url(b'[1, 2]')}.{sig}",
        f"{head}.{b64url(b'not json')}.{sig}",
        rsa_key.raw(good_header, dup_iss),
        rsa_key.raw(good_header, nan),
        rsa_key.raw(dup_alg, payload),
        rsa_key.raw(good_header, b"[1, 2]"),
        rsa_key.token(claims(NOW), header={"crit": ["exp"], "exp": 1}),
        rsa_key.token(claims(NOW), header={"kid": 5}),
        rsa_key.token(claims(NOW, padding="x" * kjwt.MAX_TOKEN_CHARS)),
        "é" * 10,
    ):
        await _refused(store, token, InvalidIdentityTokenException)
    # Keys the token names for itself are never used.
    attacker = Signer("RS256", kid="key-1")
    embedded = attacker.token(claims(NOW), header={"jwk": attacker.jwk(), "jku": "https://x"})
    await _refused(store, embedded, InvalidIdentityTokenException)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://idp.example.com", "https://"),
        ("https://idp.example.com:8443/x", "no port"),
        ("https://user@idp.example.com", "no port"),
        ("https://idp.example.com/x?y=1", "no query"),
        ("https://idp.example.com/x#y", "no query"),
        ("https://idp.example.com/x\n", "no query"),
        ("https://", "no query"),
        ("https://" + "a" * 250, "255"),
    ],
)
async def test_issuer_urls_refused(barrier: Barrier, url: str, fragment: str) -> None:
    with pytest.raises(ValidationException) as caught:
        await _register(barrier, jwks(Signer("ES256")), url=url)
    assert fragment in caught.value.message


async def test_audiences_and_jwks_refused(barrier: Barrier, rsa_key: Signer) -> None:
    bad_audiences: list[tuple[str, ...]] = [(), ("has space",), ("x" * 256,), ("ok",) * 101]
    for audiences in bad_audiences:
        with pytest.raises(ValidationException):
            await _register(barrier, jwks(rsa_key), audiences=audiences)
    private_rsa = rsa_key.jwk()
    private_rsa["d"] = "AQAB"
    ed = Signer("EdDSA")
    for text, why in (
        ("{}", "keys"),
        ('{"keys": [1]}', "keys"),
        ("[]", "object"),
        ('{"keys": []}', "no public signing key"),
        (json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "private or secret"),
        (json.dumps({"keys": [private_rsa]}), "private"),
        (jwks(extra=[ed.jwk(use="enc")]), "no public signing key"),
        (jwks(Signer("RS256", rsa_bits=1024)), "2048"),
        (json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}), "loaded"),
        (json.dumps({"keys": [rsa_key.jwk(kid=7)]}), "kid"),
        ("x" * (kjwt.MAX_JWKS_BYTES + 1), "larger"),
    ):
        with pytest.raises(ValidationException) as caught:
            await _register(barrier, text)
        assert why in caught.value.message, (text[:80], caught.value.message)
        assert "AQAB" not in caught.value.message and "c2VjcmV0" not in caught.value.message
    with pytest.raises(ValidationException):
        await _register(barrier, jwks(rsa_key), jwks_url="https://idp.example.com/jwks")
    with pytest.raises(ValidationException):
        await _register(barrier)


async def test_jwks_url_fetched_at_registration_and_on_rotation(barrier: Barrier) -> None:
    old, new = Signer("RS256", kid="old"), Signer("ES256", kid="new")
    with jwks_server(jwks(old)) as idp:
        store, provider = await _register(barrier, jwks_url=idp.url)
        assert (provider.jwks_url, idp.fetches) == (idp.url, 1)
        assert json.loads(provider.jwks)["keys"][0]["kid"] == "old"
        await store.verify(old.token(claims(NOW)), account=ACCOUNT, now=NOW)
        assert idp.fetches == 1  # the stored copy verifies without a fetch
        # The IdP rotates: a token of the new key makes one fetch, and then verifies.
        idp.body = jwks(new)
        await store.verify(new.token(claims(NOW)), account=ACCOUNT, now=NOW)
        assert idp.fetches == 2
        await store.verify(new.token(claims(NOW)), account=ACCOUNT, now=NOW + 1)
        assert idp.fetches == 2
        # Unknown kids fetch at most once a minute per provider.
        stranger = Signer("RS256", kid="stranger")
        for later in (2, 30, 61):
            await _refused_at(store, stranger.token(claims(NOW)), NOW + later)
        assert idp.fetches == 3
        await _refused_at(store, stranger.token(claims(NOW + 200)), NOW + 122)
        assert idp.fetches == 4
        # The copy fetched last is the one in use: the old key was dropped.
        await _refused_at(store, old.token(claims(NOW + 200)), NOW + 122)
        # Another store (a restart, another node) starts from the stored copy.
        fresh = IdentityProviders(barrier, loopback_http=True)
        await fresh.verify(old.token(claims(NOW)), account=ACCOUNT, now=NOW)
        idp.close()
        # The IdP unreachable when a fetch is needed: a communication error.
        with pytest.raises(IDPCommunicationErrorException) as caught:
            await fresh.verify(new.token(claims(NOW)), account=ACCOUNT, now=NOW)
        assert "Couldn't retrieve verification key" in caught.value.message
        # Within the minute after that failure: no fetch, an invalid token.
        await _refused_at(fresh, new.token(claims(NOW)), NOW + 10, store_account=ACCOUNT)
        # A known key still verifies without the IdP.
        await fresh.verify(old.token(claims(NOW)), account=ACCOUNT, now=NOW + 20)


async def _refused_at(
    store: IdentityProviders, token: str, now: float, store_account: str = ACCOUNT
) -> None:
    with pytest.raises(InvalidIdentityTokenException):
        await store.verify(token, account=store_account, now=now)


async def test_jwks_url_problems(barrier: Barrier, caplog: pytest.LogCaptureFixture) -> None:
    """Every failed fetch is one message to the caller (which step failed
    would map the operator's network); the server log says which."""
    caplog.set_level("WARNING", logger="keycask")
    generic = "The JWKS URL could not be fetched."
    signer = Signer("EdDSA")
    with jwks_server(jwks(signer)) as idp:
        # Plain http only to a loopback host, and only where allowed (--dev).
        with pytest.raises(ValidationException) as caught:
            await _register(barrier, jwks_url=idp.url, loopback_http=False)
        assert "https://" in caught.value.message
        for url in ("http://idp.example.com/jwks", "file:///etc/passwd", "ftp://x/y", "jwks"):
            with pytest.raises(ValidationException):
                await _register(barrier, jwks_url=url)
        idp.status = 404
        with pytest.raises(IDPCommunicationErrorException) as failed:
            await _register(barrier, jwks_url=idp.url)
        assert failed.value.message == generic
        assert "HTTP 404" in caplog.text and idp.url.split("/jwks")[0] in caplog.text
        # A redirect is not followed, even to the same server.
        idp.status, idp.location = 302, idp.url + "?moved"
        with pytest.raises(IDPCommunicationErrorException) as redirected:
            await _register(barrier, jwks_url=idp.url)
        assert redirected.value.message == generic and idp.fetches == 2
        assert "HTTP 302" in caplog.text
        idp.location = None
        idp.status, idp.body = 200, "not a jwks"
        with pytest.raises(ValidationException):
            await _register(barrier, jwks_url=idp.url)
        idp.body = "x" * (kjwt.MAX_JWKS_BYTES + 10)
        with pytest.raises(IDPCommunicationErrorException) as large:
            await _register(barrier, jwks_url=idp.url)
        assert large.value.message == generic and "more than 65536 bytes" in caplog.text
        closed = idp.url
    with pytest.raises(IDPCommunicationErrorException) as unreachable:
        await _register(barrier, jwks_url=closed)
    assert unreachable.value.message == generic
    assert "ConnectionRefusedError" in caplog.text
    store = IdentityProviders(barrier)
    assert await store.list_providers(ACCOUNT) == []  # nothing was registered


async def test_a_stored_jwks_that_no_longer_parses_verifies_nothing(
    barrier: Barrier, rsa_key: Signer
) -> None:
    store, provider = await _register(barrier, jwks(rsa_key))
    # As a provider stored under laxer rules would be: a 1024-bit RSA key.
    weak = Signer("RS256", kid="key-1", rsa_bits=1024)
    old = IdentityProvider(ACCOUNT, ISSUER, (AUDIENCE,), jwks(weak), None, NOW)
    stored = await store.stored(ACCOUNT, provider.name)
    assert stored is not None
    path = f"idp/{ACCOUNT}/{provider.name}"
    await barrier.commit([barrier.put(path, old.to_doc(), expect=stored.revision)])
    message = await _refused(
        IdentityProviders(barrier), weak.token(claims(NOW)), InvalidIdentityTokenException
    )
    assert "register it again" in message


async def test_a_key_the_idp_withdrew_stops_verifying_within_the_copy_age(
    barrier: Barrier,
) -> None:
    """No unknown kid needed: once the copy in use is older than an hour, a
    token makes the server fetch the JWKS again, and a withdrawn key goes."""
    leaked, kept = Signer("RS256", kid="leaked"), Signer("ES256", kid="kept")
    with jwks_server(jwks(leaked, kept)) as idp:
        store, _ = await _register(barrier, jwks_url=idp.url)
        idp.body = jwks(kept)  # the IdP withdraws the leaked key
        age = MAX_COPY_AGE_SECONDS
        await store.verify(leaked.token(claims(NOW + 60)), account=ACCOUNT, now=NOW + 60)
        assert idp.fetches == 1  # within the hour: the stored copy, no fetch
        await _refused_at(store, leaked.token(claims(NOW + age)), NOW + age)
        assert idp.fetches == 2
        await store.verify(kept.token(claims(NOW + age)), account=ACCOUNT, now=NOW + age)
        # A restarted process starts from the stored copy, and renews it too.
        fresh = IdentityProviders(barrier, loopback_http=True)
        await _refused_at(fresh, leaked.token(claims(NOW + age)), NOW + age)
        # The IdP unreachable at renewal: the copy in use stays in use.
        later = IdentityProviders(barrier, loopback_http=True)
        idp.close()
        await later.verify(leaked.token(claims(NOW + age)), account=ACCOUNT, now=NOW + age)
