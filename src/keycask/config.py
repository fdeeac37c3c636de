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
    insecure_plaintext: bool = False,
    storage: str | None = None,
    node_id: str | None = None,
    proxy_protocol_from: str | None = None,
    partition: str | None = None,
    env: Mapping[str, str] | None = None,
    pkcs11_modules: Sequence[str] = (),
    storage_insecure: bool = False,
    console: bool | None = None,
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
        insecure_plaintext=insecure,
        storage=_storage(storage, on_argv=True) or _storage(env.get("KEYCASK_STORAGE") or None),
        storage_insecure=storage_insecure or env.get("KEYCASK_STORAGE_INSECURE") == "1",
        node_id=_node_id(node_id or env.get("KEYCASK_NODE_ID") or None),
        pkcs11_modules=allowed_pkcs11_modules(pkcs11_modules, env),
        gcp_projects=_gcp_projects(gcp_projects, env),
        proxy_from=_networks(proxy_protocol_from or env.get("KEYCASK_PROXY_PROTOCOL_FROM") or None),
        lock_timeout=_seconds("KEYCASK_LOCK_TIMEOUT", env, DEFAULT_LOCK_TIMEOUT),
        console=serve_console,
    )


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
