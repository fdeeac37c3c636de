"""keycask as the client of an XKS proxy (an EXTERNAL_KEY_STORE's keys).

The four calls of the XKS Proxy API specification v1 (GetHealthStatus,
GetKeyMetadata, Encrypt, Decrypt), signed with SigV4 (service
``kms-xks-proxy``) by botocore's signer with the store's credential, over
HTTPS with the certificate verified against the system's trust store (or
``KEYCASK_XKS_PROXY_CA_FILE``), or over plain HTTP to a loopback address
only. Every failure is an ``XksProxyError`` whose ``code`` is the
ConnectionErrorCode AWS documents for it; the service layer maps those to
the KMS API's errors.

Blocking ``http.client`` on a pool of its own (at most ``MAX_CONCURRENT``
calls in flight per process, ``MAX_QUEUED`` more waiting, beyond that
``XksProxyBusy`` at once): the event loop never waits on a proxy.
"""

from __future__ import annotations

from keycask.xksclient.client import (
    DEFAULT_TIMEOUT,
    AccessDenied,
    BadCredentials,
    InvalidConfiguration,
    InvalidResponse,
    InvalidTls,
    NotReachable,
    Proxy,
    ProxyRefused,
    Sealed,
    TimedOut,
    XksClient,
    XksProxyBusy,
    XksProxyError,
    parse_connect_to,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "AccessDenied",
    "BadCredentials",
    "InvalidConfiguration",
    "InvalidResponse",
    "InvalidTls",
    "NotReachable",
    "Proxy",
    "ProxyRefused",
    "Sealed",
    "TimedOut",
    "XksClient",
    "XksProxyBusy",
    "XksProxyError",
    "parse_connect_to",
]
