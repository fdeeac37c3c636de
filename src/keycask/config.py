"""Settings from CLI flags and KEYCASK_* environment variables (flags win)."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:9567"
DEFAULT_DATA_DIR = ".keycask"
DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"
DEFAULT_PARTITION = "aws"
# AWS's partitions (botocore's endpoints). A keycask serves exactly one: the
# partition every ARN it renders names, and the only one whose ARNs resolve.
PARTITIONS = (
    "aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc",
)  # fmt: skip
# Where `keycask operator init --tls-self-signed` writes a first certificate;
# a production server uses it when no --tls-cert is given.
TLS_DIR = "tls"
TLS_CERT_FILE = "cert.pem"
TLS_KEY_FILE = "key.pem"

# A write that cannot get the cluster's write lock in this long fails (retryable).
DEFAULT_LOCK_TIMEOUT = 10.0

_ACCOUNT = re.compile(r"^[0-9]{12}$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_NODE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ConfigError(Exception):
    """Unsafe or invalid configuration: keycask refuses to start."""


# One slot, set once at start (see set_partition).
_partition = [DEFAULT_PARTITION]


def partition() -> str:
    """The partition of every ARN this process renders and resolves
    (``arn:<partition>:kms:...``, ``arn:<partition>:iam::...``)."""
    return _partition[0]


def set_partition(name: str) -> None:
    """Fix the process's partition; ``load`` calls it. Process-wide on
    purpose: every ARN keycask renders, down to the key model and the policy
    parser, must name the same one."""
    if name not in PARTITIONS:
        raise ConfigError(f"partition must be one of {', '.join(PARTITIONS)}, got {name!r}")
    _partition[0] = name


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    host: str
    port: int
    dev: bool
    account_id: str
    region: str
    partition: str = DEFAULT_PARTITION
    # TLS: a PEM certificate chain and its private key; with client_ca,
    # clients must present a certificate that CA issued (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # --dev --tls-self-signed: tls_cert and tls_key are the data dir's
    # tls/cert.pem and tls/key.pem, which the server makes (cli/devtls.py).
    tls_self_signed: bool = False
    insecure_plaintext: bool = False
    # A PostgreSQL DSN: the store several nodes share. None: SQLite in data_dir.
    storage: str | None = None
    # This node's name in a cluster: written into every audit record.
    node_id: str | None = None
    # Allow a PostgreSQL store on another host without TLS (--storage-insecure).
    storage_insecure: bool = False
    # PKCS#11 libraries this server may load: for its seal, or a rekey's target.
    pkcs11_modules: tuple[str, ...] = ()
    # Load balancers whose connections start with a PROXY protocol v2 header
    # naming the real client (--proxy-protocol-from).
    proxy_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Seconds a write waits for the cluster's write lock (KEYCASK_LOCK_TIMEOUT).
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    # Serve the web console at /console/ (http/console.py): --dev's default,
    # --console in production; never over plain HTTP off loopback.
    console: bool = False
    # PKCS#11 tokens for HSM-backed keys (--hsm NAME=MODULE_PATH:TOKEN_LABEL)
    # and their PIN files (--hsm-pin-file [NAME=]FILE), as given: keycask.hsm
    # reads them (app.build), and a supervisor passes them on to its workers.
    hsm: tuple[str, ...] = ()
    hsm_pin_files: tuple[str, ...] = ()
    # The XKS proxy API's path prefix (--xks-path-prefix): its URI path is
    # <prefix>/kms/xks/v1 (service/doors/xks.py). "": none.
    xks_path_prefix: str = ""
    # The XKS door's mutual TLS (--xks-client-ca, --xks-client-subject): XKS
    # requests must come with a client certificate this CA issued (and, if
    # given, with this subject common name); the other doors do not ask.
    xks_client_ca: Path | None = None
    xks_client_subject: str | None = None
    # keycask as the client of XKS proxies (EXTERNAL_KEY_STORE keys), from
    # the environment only: KEYCASK_XKS_PROXY_TIMEOUT_MS (per call; AWS's
    # 250 by default), KEYCASK_XKS_PROXY_CA_FILE (trust these CAs instead of
    # the system's), KEYCASK_XKS_PROXY_CONNECT_TO (NAME=URL,...: see
    # xksclient.parse_connect_to).
    xks_proxy_timeout: float = 0.25
    xks_proxy_ca_file: str | None = None
    xks_proxy_connect_to: str = ""
    # Google Cloud KMS projects and the keycask accounts they name
    # (--gcp-project PROJECT=ACCOUNT); none: every project is the caller's account.
    gcp_projects: tuple[tuple[str, str], ...] = ()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}"


_GCP_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")


def _gcp_projects(given: Sequence[str], env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``PROJECT=ACCOUNT`` pairs, from --gcp-project or KEYCASK_GCP_PROJECTS
    (comma-separated)."""
    entries = list(given) or [e for e in env.get("KEYCASK_GCP_PROJECTS", "").split(",") if e]
    pairs: dict[str, str] = {}
    for entry in entries:
        project, sep, account = entry.strip().partition("=")
        if not sep or not _GCP_PROJECT.fullmatch(project) or not _ACCOUNT.match(account):
            raise ConfigError(
                f"--gcp-project takes PROJECT=ACCOUNT (a Cloud KMS project id, a 12-digit "
                f"account), got {entry!r}"
            )
        if project in pairs and pairs[project] != account:
            raise ConfigError(f"--gcp-project names project {project} twice")
        pairs[project] = account
    return tuple(sorted(pairs.items()))


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen address must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def load(
    *,
    dev: bool,
    listen: str | None = None,
    data_dir: str | None = None,
    account_id: str | None = None,
    region: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_client_ca: str | None = None,
    tls_self_signed: bool = False,
    insecure_plaintext: bool = False,
    storage: str | None = None,
    node_id: str | None = None,
    proxy_protocol_from: str | None = None,
    partition: str | None = None,
    env: Mapping[str, str] | None = None,
    pkcs11_modules: Sequence[str] = (),
    storage_insecure: bool = False,
    console: bool | None = None,
    hsm: Sequence[str] = (),
    hsm_pin_files: Sequence[str] = (),
    xks_path_prefix: str | None = None,
    xks_client_ca: str | None = None,
    xks_client_subject: str | None = None,
    gcp_projects: Sequence[str] = (),
) -> Settings:
    env = os.environ if env is None else env
    host, port = parse_listen(listen or env.get("KEYCASK_LISTEN") or DEFAULT_LISTEN)
    account = account_id or env.get("KEYCASK_ACCOUNT_ID") or DEFAULT_ACCOUNT
    if not _ACCOUNT.match(account):
        raise ConfigError(f"account id must be 12 digits, got {account!r}")
    reg = region or env.get("KEYCASK_REGION") or DEFAULT_REGION
    if not _REGION.match(reg):
        raise ConfigError(f"region must match [a-z0-9-]+, got {reg!r}")
    part = partition or env.get("KEYCASK_PARTITION") or DEFAULT_PARTITION
    set_partition(part)
    path = Path(data_dir or env.get("KEYCASK_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
    cert = tls_cert or env.get("KEYCASK_TLS_CERT") or None
    key = tls_key or env.get("KEYCASK_TLS_KEY") or None
    client_ca = tls_client_ca or env.get("KEYCASK_TLS_CLIENT_CA") or None
    if (cert is None) != (key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if tls_self_signed:
        if not dev:
            raise ConfigError(
                "--tls-self-signed is for --dev: a production server serves the certificate "
                "`keycask operator init --tls-self-signed` made (tls/ in its data dir) "
                "without being asked, or the one --tls-cert and --tls-key name"
            )
        if cert is not None:
            raise ConfigError(
                "--tls-self-signed and --tls-cert/--tls-key (or KEYCASK_TLS_CERT) cannot be "
                "used together: choose the data dir's self-signed certificate or your own"
            )
        cert, key = str(path / TLS_DIR / TLS_CERT_FILE), str(path / TLS_DIR / TLS_KEY_FILE)
    xks_ca = xks_client_ca or env.get("KEYCASK_XKS_CLIENT_CA") or None
    xks_subject = xks_client_subject or env.get("KEYCASK_XKS_CLIENT_SUBJECT") or None
    if xks_ca is not None and cert is None:
        raise ConfigError(
            "--xks-client-ca needs --tls-cert and --tls-key: the client certificate is "
            "checked in keycask's own TLS handshake"
        )
    if xks_subject is not None and xks_ca is None:
        raise ConfigError("--xks-client-subject needs --xks-client-ca")
    if xks_ca is not None and xks_subject is None:
        # The CA AWS KMS's client certificates chain to is a public one: any
        # holder of a certificate from it would pass. The subject is what
        # names AWS KMS's own (docs/xks.md).
        raise ConfigError(
            "--xks-client-ca needs --xks-client-subject: the CA is a public one, so the "
            "subject common name is what names your XKS client"
        )
    if xks_ca is not None and client_ca is not None:
        # One TLS context has one trust store: each CA's certificates would
        # pass the other's check (an XKS client's at every door).
        raise ConfigError(
            "--xks-client-ca and --tls-client-ca cannot be used together: serve the XKS "
            "door from its own keycask server, or terminate one of them in front"
        )
    if client_ca is not None and cert is None:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    insecure = insecure_plaintext or env.get("KEYCASK_INSECURE_PLAINTEXT") == "1"
    if not dev and cert is None and not insecure:
        default_cert = path / TLS_DIR / TLS_CERT_FILE
        default_key = path / TLS_DIR / TLS_KEY_FILE
        if default_cert.exists() and default_key.exists():
            cert, key = str(default_cert), str(default_key)
    if not dev and cert is None and not insecure and not _loopback(host):
        raise ConfigError(
            f"refusing to serve plaintext HTTP on {host}: SigV4 protects requests from "
            "tampering but not from being read, and plaintexts and data keys travel in "
            "them. Give --tls-cert and --tls-key, or, if a load balancer in front "
            "terminates TLS, say so with --insecure-plaintext."
        )
    serve_console = _console(console, dev=dev, plain=cert is None, host=host)
    return Settings(
        data_dir=path,
        host=host,
        port=port,
        dev=dev,
        account_id=account,
        region=reg,
        partition=part,
        tls_cert=None if cert is None else Path(cert).resolve(),
        tls_key=None if key is None else Path(key).resolve(),
        tls_client_ca=None if client_ca is None else Path(client_ca).resolve(),
        tls_self_signed=tls_self_signed,
        insecure_plaintext=insecure,
        storage=_storage(storage, on_argv=True) or _storage(env.get("KEYCASK_STORAGE") or None),
        storage_insecure=storage_insecure or env.get("KEYCASK_STORAGE_INSECURE") == "1",
        node_id=_node_id(node_id or env.get("KEYCASK_NODE_ID") or None),
        pkcs11_modules=allowed_pkcs11_modules(pkcs11_modules, env),
        gcp_projects=_gcp_projects(gcp_projects, env),
        proxy_from=_networks(proxy_protocol_from or env.get("KEYCASK_PROXY_PROTOCOL_FROM") or None),
        lock_timeout=_seconds("KEYCASK_LOCK_TIMEOUT", env, DEFAULT_LOCK_TIMEOUT),
        console=serve_console,
        hsm=tuple(hsm),
        hsm_pin_files=tuple(hsm_pin_files),
        xks_path_prefix=check_xks_path_prefix(
            xks_path_prefix or env.get("KEYCASK_XKS_PATH_PREFIX") or ""
        ),
        xks_client_ca=None if xks_ca is None else Path(xks_ca).resolve(),
        xks_client_subject=xks_subject,
        xks_proxy_timeout=_milliseconds("KEYCASK_XKS_PROXY_TIMEOUT_MS", env, 250) / 1000,
        xks_proxy_ca_file=env.get("KEYCASK_XKS_PROXY_CA_FILE") or None,
        xks_proxy_connect_to=env.get("KEYCASK_XKS_PROXY_CONNECT_TO") or "",
    )


# The XKS specification's XksProxyUriPath: at most 128 of a-z A-Z 0-9 / - _,
# ending in /kms/xks/v1.
_XKS_PREFIX = re.compile(r"(?:/[A-Za-z0-9_-]+)*")
XKS_API_PATH = "/kms/xks/v1"
_XKS_URI_PATH_MAX = 128


def check_xks_path_prefix(prefix: str) -> str:
    """``prefix`` without its trailing slash; ConfigError if AWS KMS could not
    be given ``<prefix>/kms/xks/v1`` as an XksProxyUriPath."""
    prefix = prefix.rstrip("/")
    if prefix == "/v1" or prefix.startswith("/v1/"):
        # The Vault door claims /v1/ first: the XKS API would be unreachable.
        raise ConfigError("--xks-path-prefix cannot begin with /v1: those paths are Vault's")
    if not _XKS_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"--xks-path-prefix must be /-separated segments of A-Z a-z 0-9 - _, got {prefix!r}"
        )
    if len(prefix + XKS_API_PATH) > _XKS_URI_PATH_MAX:
        raise ConfigError(
            f"--xks-path-prefix: the XKS URI path {prefix}{XKS_API_PATH} is over "
            f"{_XKS_URI_PATH_MAX} characters"
        )
    return prefix


def _console(asked: bool | None, *, dev: bool, plain: bool, host: str) -> bool:
    """Whether to serve the web console: ``--console``/``--no-console``, else
    on in --dev only. A browser that signs in sends the access key's secret
    to nobody, but everything it shows (and the session itself) would cross
    the network in clear: plain HTTP off loopback is refused when asked for,
    and --dev's default stays off there (even with --insecure-plaintext: the
    browser's WebCrypto works only on https or loopback anyway)."""
    if asked is None:
        return dev and not (plain and not _loopback(host))
    if asked and plain and not _loopback(host):
        raise ConfigError(
            f"refusing to serve the web console over plain HTTP on {host}: sign-in and "
            "every key and policy it shows would travel in clear. Give --tls-cert and "
            "--tls-key, listen on loopback, or drop --console."
        )
    return asked


def _networks(value: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if value is None:
        return ()
    networks = []
    for item in value.split(","):
        try:
            networks.append(ipaddress.ip_network(item.strip()))
        except ValueError:
            raise ConfigError(
                f"--proxy-protocol-from takes addresses or networks (CIDR), comma-separated; "
                f"{item.strip()!r} is not one (a network's host bits must be zero)"
            ) from None
    return tuple(networks)


def allowed_pkcs11_modules(given: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The PKCS#11 libraries this process may load: ``--pkcs11-module``
    flags, ``KEYCASK_PKCS11_MODULE`` and the colon-separated
    ``KEYCASK_PKCS11_MODULES``. Never the seal file's path alone."""
    listed = [*given, env.get("KEYCASK_PKCS11_MODULE", "")]
    listed += env.get("KEYCASK_PKCS11_MODULES", "").split(":")
    return tuple(dict.fromkeys(m for m in listed if m))


def _milliseconds(name: str, env: Mapping[str, str], default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 60_000:
        raise ConfigError(f"{name} must be a number of milliseconds in (0, 60000], got {text!r}")
    return int(text)


def _seconds(name: str, env: Mapping[str, str], default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigError(f"{name} must be a number of seconds in (0, 3600], got {text!r}")
    return value


def _node_id(value: str | None) -> str | None:
    if value is not None and not _NODE_ID.match(value):
        raise ConfigError(f"node id must match [A-Za-z0-9._:-]{{1,64}}, got {value!r}")
    return value


def _storage(dsn: str | None, *, on_argv: bool = False) -> str | None:
    if dsn is None or dsn == "sqlite":
        return None
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "--storage takes a PostgreSQL URI (postgresql://user@host:5432/db, the "
            "password from PGPASSWORD or ~/.pgpass, not the command line) or 'sqlite'"
        )
    if on_argv and _has_password(dsn):
        # The DSN itself is never repeated: it holds the password.
        raise ConfigError(
            "--storage holds a password, which any user of this host can read in the "
            "process list: give it in PGPASSWORD or ~/.pgpass (or the whole DSN in "
            "KEYCASK_STORAGE)"
        )
    return dsn


def _has_password(uri: str) -> bool:
    """Whether a postgresql:// URI carries a password (user:password@ or
    ?password=); no parser of psycopg here, and a malformed URI is the
    driver's to refuse."""
    try:
        parts = urllib.parse.urlsplit(uri)
        query = urllib.parse.parse_qs(parts.query)
    except ValueError:
        return True  # cannot tell: refuse rather than risk it
    userinfo, at, _ = parts.netloc.rpartition("@")
    return bool(at and ":" in userinfo) or "password" in query


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere
