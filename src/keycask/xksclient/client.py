"""The XKS proxy client: one signed POST per call, its answer checked.

See the package's docstring for what it is; docs/xks.md ("keycask as the
client") for how it is configured and what each failure becomes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# AWS KMS gives an XKS proxy 250 ms to answer each request, connection and
# TLS handshake included (the XKS Proxy API specification, "Latency"; docs/
# xks.md repeats it): keycask's default, as AWS's. KEYCASK_XKS_PROXY_TIMEOUT_MS
# changes it (a proxy across a slow link, a loaded test machine).
DEFAULT_TIMEOUT = 0.25
SERVICE = "kms-xks-proxy"
MAX_CONCURRENT = 8
MAX_QUEUED = 64
# The specification's answers are small (a 4 KiB plaintext's ciphertext, a
# health document): anything beyond this is not a proxy's answer.
MAX_RESPONSE = 256 * 1024
# Its bounds: IV 12 or 16 bytes, tag 16, ciphertextMetadata at most 20.
IV_SIZES = (12, 16)
TAG_SIZE = 16
MAX_METADATA = 20


class XksProxyError(Exception):
    """A call that did not get a usable answer; ``code`` is AWS's
    ConnectionErrorCode for it."""

    code = "XKS_PROXY_INVALID_RESPONSE"


class NotReachable(XksProxyError):
    code = "XKS_PROXY_NOT_REACHABLE"


class TimedOut(XksProxyError):
    code = "XKS_PROXY_TIMED_OUT"


class InvalidResponse(XksProxyError):
    code = "XKS_PROXY_INVALID_RESPONSE"


class InvalidTls(XksProxyError):
    code = "XKS_PROXY_INVALID_TLS_CONFIGURATION"


class InvalidConfiguration(XksProxyError):
    code = "XKS_PROXY_INVALID_CONFIGURATION"


class BadCredentials(XksProxyError):
    code = "INVALID_CREDENTIALS"


class AccessDenied(XksProxyError):
    code = "XKS_PROXY_ACCESS_DENIED"


class XksProxyBusy(XksProxyError):
    """Too many calls wait for proxies in this process (nothing was sent)."""

    code = "XKS_PROXY_TIMED_OUT"


class ProxyRefused(XksProxyError):
    """The proxy answered with one of the specification's errors for a key
    (KeyNotFoundException, InvalidStateException, InvalidCiphertextException,
    InvalidKeyUsageException, ...): ``error_name`` says which."""

    code = "XKS_PROXY_INVALID_RESPONSE"

    def __init__(self, status: int, error_name: str) -> None:
        super().__init__(f"the XKS proxy answered {status} {error_name}")
        self.status = status
        self.error_name = error_name


@dataclass(frozen=True, slots=True)
class Proxy:
    """Where a store's proxy is and how to sign for it."""

    endpoint: str  # XksProxyUriEndpoint: https://NAME
    path: str  # XksProxyUriPath: [/prefix]/kms/xks/v1
    access_key_id: str = field(repr=False)
    secret: str = field(repr=False)
    region: str = "us-east-1"  # the signature's; AWS KMS signs with its own


@dataclass(frozen=True, slots=True)
class Sealed:
    """The external key's AES-GCM output, as the specification names it."""

    ciphertext: bytes
    iv: bytes
    tag: bytes
    metadata: bytes = b""


def parse_connect_to(text: str) -> dict[str, str]:
    """``NAME=URL[,NAME=URL...]`` (KEYCASK_XKS_PROXY_CONNECT_TO): requests for
    ``https://NAME`` go to URL instead, as curl's ``--connect-to``: an
    ``https://HOST:PORT`` (the certificate is still verified for NAME) or,
    to a loopback address only, ``http://HOST:PORT``."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        parts = urlsplit(url)
        if not sep or not name or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"KEYCASK_XKS_PROXY_CONNECT_TO: {item!r} is not NAME=URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(
                f"KEYCASK_XKS_PROXY_CONNECT_TO: {item!r}: plain HTTP only to a loopback address"
            )
        mapping[name.lower()] = url
    return mapping


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(doc: Mapping[str, Any], name: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise InvalidResponse(f"the XKS proxy's answer has no {name}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResponse(f"the XKS proxy's {name} is not base64") from None


class XksClient:
    """Calls XKS proxies; one per process (Deps.xks)."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        connect_to: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self._connect_to = dict(connect_to or {})
        self._ca_file = ca_file
        self._tls: ssl.SSLContext | None = None  # made on first use (loading CAs costs)
        self._pool = ThreadPoolExecutor(MAX_CONCURRENT, thread_name_prefix="keycask-xks")
        self._waiting = 0

    # -- the four calls --

    async def health(self, proxy: Proxy, metadata: Mapping[str, str]) -> dict[str, Any]:
        doc = await self._call(proxy, "/health", {"requestMetadata": dict(metadata)})
        fleet = doc.get("ekmFleetDetails")
        if not isinstance(doc.get("xksProxyFleetSize"), int) or not isinstance(fleet, list):
            raise InvalidResponse("the XKS proxy's health answer is not the specification's")
        statuses = [e.get("healthStatus") for e in fleet if isinstance(e, dict)]
        if not statuses or any(s not in ("ACTIVE", "DEGRADED", "UNAVAILABLE") for s in statuses):
            raise InvalidResponse("the XKS proxy's health answer names no external key manager")
        if all(s == "UNAVAILABLE" for s in statuses):
            # AWS: XksProxyUriUnreachableException "is also thrown when ...
            # all external key manager instances are unavailable".
            raise NotReachable("every external key manager of the XKS proxy is UNAVAILABLE")
        return doc

    async def key_metadata(
        self, proxy: Proxy, key_id: str, metadata: Mapping[str, str]
    ) -> tuple[str, tuple[str, ...], str]:
        """(keySpec, keyUsage, keyStatus) of the external key."""
        doc = await self._call(
            proxy, f"/keys/{quote(key_id, safe='')}/metadata", {"requestMetadata": dict(metadata)}
        )
        spec, usage, status = doc.get("keySpec"), doc.get("keyUsage"), doc.get("keyStatus")
        if (
            not isinstance(spec, str)
            or not isinstance(status, str)
            or not isinstance(usage, list)
            or not all(isinstance(u, str) for u in usage)
        ):
            raise InvalidResponse("the XKS proxy's key metadata is not the specification's")
        return spec, tuple(usage), status

    async def encrypt(
        self,
        proxy: Proxy,
        key_id: str,
        metadata: Mapping[str, str],
        plaintext: bytes,
        aad: bytes,
    ) -> Sealed:
        doc = await self._call(
            proxy,
            f"/keys/{quote(key_id, safe='')}/encrypt",
            {
                "requestMetadata": dict(metadata),
                "plaintext": _b64(plaintext),
                "encryptionAlgorithm": "AES_GCM",
                "additionalAuthenticatedData": _b64(aad),
            },
        )
        sealed = Sealed(
            ciphertext=_unb64(doc, "ciphertext"),
            iv=_unb64(doc, "initializationVector"),
            tag=_unb64(doc, "authenticationTag"),
            metadata=_unb64(doc, "ciphertextMetadata") if "ciphertextMetadata" in doc else b"",
        )
        if (
            len(sealed.ciphertext) != len(plaintext)
            or len(sealed.iv) not in IV_SIZES
            or len(sealed.tag) != TAG_SIZE
            or len(sealed.metadata) > MAX_METADATA
        ):
            raise InvalidResponse("the XKS proxy's ciphertext is not AES-GCM's shape")
        return sealed

    async def decrypt(
        self,
        proxy: Proxy,
        key_id: str,
        metadata: Mapping[str, str],
        sealed: Sealed,
        aad: bytes,
    ) -> bytes:
        body = {
            "requestMetadata": dict(metadata),
            "encryptionAlgorithm": "AES_GCM",
            "ciphertext": _b64(sealed.ciphertext),
            "initializationVector": _b64(sealed.iv),
            "authenticationTag": _b64(sealed.tag),
            "additionalAuthenticatedData": _b64(aad),
        }
        if sealed.metadata:
            body["ciphertextMetadata"] = _b64(sealed.metadata)
        doc = await self._call(proxy, f"/keys/{quote(key_id, safe='')}/decrypt", body)
        plaintext = _unb64(doc, "plaintext")
        if len(plaintext) != len(sealed.ciphertext):
            raise InvalidResponse("the XKS proxy's plaintext is not the ciphertext's length")
        return plaintext

    # -- transport --

    async def _call(self, proxy: Proxy, suffix: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._waiting >= MAX_CONCURRENT + MAX_QUEUED:
            raise XksProxyBusy("too many calls wait for XKS proxies")
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self._pool, self._post, proxy, suffix, body)
            try:
                # The socket's own timeout bounds each read; this bounds the
                # whole call (a proxy dribbling its answer a byte at a time).
                status, raw = await asyncio.wait_for(work, self.timeout * 2)
            except TimeoutError:
                raise TimedOut("the XKS proxy did not answer in time") from None
        finally:
            self._waiting -= 1
        return _answer(status, raw)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context(cafile=self._ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._tls = context
        return self._tls

    def _post(self, proxy: Proxy, suffix: str, body: dict[str, Any]) -> tuple[int, bytes]:
        name = urlsplit(proxy.endpoint).hostname or ""
        data = json.dumps(body).encode()
        url = f"https://{name}{proxy.path}{suffix}"
        request = AWSRequest(
            method="POST",
            url=url,
            data=data,
            headers={"Host": name, "Content-Type": "application/json"},
        )
        credentials = Credentials(proxy.access_key_id, proxy.secret)
        SigV4Auth(credentials, SERVICE, proxy.region).add_auth(request)
        target = urlsplit(self._connect_to.get(name.lower(), f"https://{name}:443"))
        host = target.hostname or name
        port = target.port or (443 if target.scheme == "https" else 80)
        connection: http.client.HTTPConnection
        if target.scheme == "http":
            if not _loopback(host):
                raise InvalidConfiguration("plain HTTP to an XKS proxy is for loopback only")
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        else:
            connection = _VerifiedHTTPS(name, host, port, self.timeout, self._context())
        # The socket's timeout bounds each read, not a proxy that dribbles its
        # answer: past twice the timeout the watchdog shuts the socket, so
        # this pool's thread is free again (the caller stopped waiting then).
        aborted = threading.Event()
        watchdog = threading.Timer(self.timeout * 2, _abort, (connection, aborted))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request(
                "POST", proxy.path + suffix, body=data, headers=dict(request.headers.items())
            )
            response = connection.getresponse()
            raw = response.read(MAX_RESPONSE + 1)
            if len(raw) > MAX_RESPONSE:
                raise InvalidResponse("the XKS proxy's answer is too large")
            return response.status, raw
        except TimeoutError:
            raise TimedOut("the XKS proxy did not answer in time") from None
        except ssl.SSLError as error:
            if aborted.is_set():
                raise TimedOut("the XKS proxy did not answer in time") from None
            reason = error.reason or type(error).__name__
            raise InvalidTls(f"TLS with the XKS proxy failed: {reason}") from None
        except http.client.HTTPException:
            if aborted.is_set():
                raise TimedOut("the XKS proxy did not answer in time") from None
            raise InvalidResponse("the XKS proxy's answer is not HTTP") from None
        except OSError as error:
            if aborted.is_set():
                raise TimedOut("the XKS proxy did not answer in time") from None
            reason = error.strerror or type(error).__name__
            raise NotReachable(f"the XKS proxy cannot be reached: {reason}") from None
        finally:
            watchdog.cancel()
            connection.close()


def _abort(connection: http.client.HTTPConnection, aborted: threading.Event) -> None:
    aborted.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _VerifiedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``host:port``, its certificate verified for ``name`` (the
    XksProxyUriEndpoint's), whatever address it was reached at."""

    def __init__(
        self, name: str, host: str, port: int, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._name = name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._name)  # type: ignore[attr-defined]


def _answer(status: int, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise InvalidResponse(f"the XKS proxy answered {status} with no JSON object")
    if status == 200:
        return doc
    name = doc.get("errorName")
    if not isinstance(name, str):
        raise InvalidResponse(f"the XKS proxy answered {status} with no errorName")
    if status == 401 or name == "AuthenticationFailedException":
        raise BadCredentials("the XKS proxy refused the store's credential")
    if name == "AccessDeniedException":
        raise AccessDenied("the XKS proxy denied the request")
    if name == "InvalidUriPathException":
        raise InvalidConfiguration("the XKS proxy has no such XksProxyUriPath")
    # Only its letters: the name travels into keycask's own error messages.
    raise ProxyRefused(status, "".join(c for c in name[:64] if c.isascii() and c.isalnum()))
