"""Fetching an identity provider's JWK Set from its URL (``jwks_uri``).

The server fetches on an administrator's registration and, later, when a
token names a key the copy it has lacks. Either way the URL was given by an
administrator, but the fetch is the server's, so it is held short: https
only (plain http to a loopback address only where the caller allows it, for
--dev and tests), no redirects (a redirect could turn a vetted URL into an
internal one), 5 s for the whole answer, 64 KiB at most, status 200 only.
Certificates are checked against the system's trust store, as every https
client of the host.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any, NoReturn

from keycask.crypto.jwt import MAX_JWKS_BYTES

FETCH_TIMEOUT_SECONDS = 5.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class JwksUnavailable(Exception):
    """The JWKS could not be fetched; the message says why, without the body."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise JwksUnavailable("the JWKS URL answered with a redirect; give the final URL")


def check_jwks_url(url: str, *, loopback_http: bool) -> None:
    """ValueError unless ``url`` is one keycask fetches: https://host[:port]/...,
    or http:// to a loopback host when ``loopback_http``."""
    if len(url) > 2048 or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError("a JWKS URL is at most 2048 characters, without spaces or controls")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("the JWKS URL is not a URL") from None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError("a JWKS URL names a host, and no user or password")
    if parts.fragment:
        raise ValueError("a JWKS URL has no #fragment")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and loopback_http and parts.hostname in LOOPBACK_HOSTS:
        return
    raise ValueError(
        "a JWKS URL must be https://"
        + (" (or http:// to 127.0.0.1, localhost or [::1])" if loopback_http else "")
    )


def _read(response: IO[bytes]) -> bytes:
    body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"the JWKS URL answered more than {MAX_JWKS_BYTES} bytes")
    return body


def _fetch(url: str) -> bytes:
    opener = urllib.request.build_opener(
        _NoRedirects(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    if not url.startswith(("https://", "http://")):
        raise JwksUnavailable("a JWKS URL is https://")  # check_jwks_url said so already
    # The scheme is http(s), checked above and by check_jwks_url.
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            if response.status != 200:
                raise JwksUnavailable(f"the JWKS URL answered HTTP {response.status}")
            return _read(response)
    except urllib.error.HTTPError as error:
        raise JwksUnavailable(f"the JWKS URL answered HTTP {error.code}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, JwksUnavailable):
            raise reason from None
        shown = reason.__class__.__name__ if isinstance(reason, BaseException) else str(reason)
        raise JwksUnavailable(f"the JWKS URL could not be reached ({shown[:120]})") from None
    except TimeoutError:
        raise JwksUnavailable(
            f"the JWKS URL did not answer within {FETCH_TIMEOUT_SECONDS:g} s"
        ) from None
    except (OSError, ValueError) as error:
        raise JwksUnavailable(
            f"the JWKS URL could not be read ({error.__class__.__name__})"
        ) from None


async def fetch_jwks(url: str) -> bytes:
    """The body ``url`` answers, fetched off the event loop; JwksUnavailable
    if it cannot be had. The caller has checked ``url`` (check_jwks_url)."""
    return await asyncio.to_thread(_fetch, url)
