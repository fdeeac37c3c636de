"""Composition root: storage -> barrier -> key store -> service (core, front
doors, pipeline, background maintenance) -> the HTTP app.

Why one module of ~600 lines: it is the one place that knows every layer and
the order they are built and started in; each front door or store added is a
few lines here, and split across files that order would be read in pieces.
"""

from __future__ import annotations

import configparser
import io
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from keycask import __version__, metrics, privatefile
from keycask.audit import AuditLog
from keycask.audit.anchor import Anchoring
from keycask.auth.credentials import AccessKey, CredentialStore
from keycask.auth.identity_providers import IdentityProviders
from keycask.auth.operator_token import OperatorToken
from keycask.auth.sessions import SessionTokens
from keycask.auth.tokens import TokenStore
from keycask.barrier import Barrier
from keycask.config import XKS_API_PATH, ConfigError, Settings
from keycask.hsm import registry as hsm_registry
from keycask.http.awsjson import Codec, encode_error
from keycask.http.awsquery import QueryCodec
from keycask.http.console import Console
from keycask.http.kms import KMSApp
from keycask.http.metrics import KeyCounts, MetricsRoute
from keycask.keys.keystore import KeyStore
from keycask.ports import Clock, Coordinator, Storage, SystemClock
from keycask.seal import SEAL_FILE
from keycask.seal.dev import ROOT_KEY_FILE, DevSeal
from keycask.seal.pkcs11 import sealing_token
from keycask.service.background.maintenance import Maintenance
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import new_request_id
from keycask.service.core.deps import Deps
from keycask.service.core.handlers.inspection import Inspector
from keycask.service.core.handlers.operator import Operator
from keycask.service.core.handlers.sts import Sts
from keycask.service.core.managed import ManagedKeys
from keycask.service.core.nodes import NodeRecord, NodeRegistry, node_id
from keycask.service.core.usage import UsageTracker
from keycask.service.door import Doors
from keycask.service.doors.admin import AdminDoor
from keycask.service.doors.azure_keyvault import AzureKeyVaultDoor
from keycask.service.doors.dev import DevDoor
from keycask.service.doors.gcp_kms import GcpKmsDoor
from keycask.service.doors.kms import KmsDoor
from keycask.service.doors.metrics import MetricsDoor
from keycask.service.doors.operator import OperatorDoor
from keycask.service.doors.signed import SignedCallers
from keycask.service.doors.sts import StsDoor
from keycask.service.doors.vault_transit import VaultTransitDoor
from keycask.service.doors.xks import XksDoor
from keycask.service.freshness import Freshness
from keycask.service.pipeline import Pipeline
from keycask.service.sealing import SealKeeper, UnsealInput
from keycask.storage.devclock import MovableClock as DevClock
from keycask.storage.local import MAX_WORKERS, SharedFile
from keycask.storage.pgcoord import PostgresCoordinator
from keycask.storage.postgres import PostgresStorage, StorageSchemaError
from keycask.storage.sqlite import SQLiteStorage
from keycask.storage.watermark import Watermark
from keycask.xksclient import XksClient, parse_connect_to

STORE_FILE = "keycask.db"
AUDIT_DIR = "audit"
RUN_DIR = "run"
PROFILE = "keycask"
ADMIN_NAME = "admin"
# The worker slot a local operator's command writes under; the server's
# worker processes take the slots below it.
LOCAL_OPERATOR_SLOT = MAX_WORKERS - 1

log = logging.getLogger(__name__)


class WireCodec:
    """The AWS JSON doors' view of the AWS JSON codec."""

    def __init__(self, codec: Codec) -> None:
        self._codec = codec
        self.decode = codec.decode
        self.encode = codec.encode
        self.parse = codec.parse
        self.decode_parsed = codec.decode_parsed
        self.flat_decoder = codec.flat_decoder
        self.flat_encoder = codec.flat_encoder

    def operation_names(self) -> frozenset[str]:
        return self._codec.operation_names()

    def encode_error(self, code: str, message: str) -> bytes:
        return encode_error(code, message)


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    barrier: Barrier
    credentials: CredentialStore
    audit: AuditLog
    coordinator: Coordinator
    app: KMSApp
    anchoring: Anchoring
    pipeline: Pipeline
    keeper: SealKeeper
    maintenance: Maintenance
    metrics: MetricsRoute

    async def close(self) -> None:
        await self.maintenance.stop()
        try:
            # A clean stop moves the store's epoch past this node's last
            # commits now, not at a tick that will not come: a copy of the
            # store taken before them is then refused as a rollback.
            await self.barrier.tick()
        except Exception as exc:
            log.warning("could not record the store's epoch at stop (%s)", exc)
        await self.audit.aclose()
        try:
            await self.anchoring.stop()
        finally:
            await _close_store(self.coordinator, self.storage)


async def _close_store(coordinator: Coordinator, storage: Storage) -> None:
    try:
        await release_coordinator(coordinator)
    finally:
        await storage.close()


def local_coordinator(settings: Settings, storage: Storage) -> Coordinator:
    """The coordinator a local operator's command writes under, beside any
    server running on the store: PostgreSQL's write lock (and its commit
    notices), or the data dir's writer flock with a worker slot of its own,
    which every server process on it watches."""
    if isinstance(storage, PostgresStorage):
        return PostgresCoordinator(storage, lock_timeout=settings.lock_timeout)
    return SharedFile(settings.data_dir / RUN_DIR, LOCAL_OPERATOR_SLOT)


async def release_coordinator(coordinator: Coordinator) -> None:
    if isinstance(coordinator, PostgresCoordinator):
        await coordinator.aclose()
    else:
        coordinator.close()


async def connect_store(settings: Settings) -> Storage:
    """The store ``settings`` name, as it is: the PostgreSQL store of a DSN,
    else the SQLite file in the data dir (created when absent). Neither
    opened nor initialised: ``open_store`` and ``operator init`` do that."""
    if settings.storage is not None:
        return await PostgresStorage.open(
            settings.storage, insecure_transport=settings.storage_insecure
        )
    return SQLiteStorage(settings.data_dir / STORE_FILE)


def _no_store(data_dir: Path) -> str:
    """Why a data dir without a SQLite store cannot be opened, and what to do."""
    if (data_dir / SEAL_FILE).exists():
        # `operator init --storage` writes the seal but no keycask.db: the
        # store is in PostgreSQL, and running init again would be refused.
        return (
            f"{data_dir} was initialised with a PostgreSQL store (it has a seal but no "
            f"{STORE_FILE}): pass --storage postgresql://... or set KEYCASK_STORAGE"
        )
    return (
        f"{data_dir} holds no keycask store: run "
        f"`keycask operator init --data-dir {data_dir}` first"
    )


async def open_store(settings: Settings) -> tuple[Storage, Barrier]:
    """The store and its barrier: unsealed with the dev seal in --dev, sealed
    otherwise (an operator, or the PKCS#11 token, opens it)."""
    if (
        not settings.dev
        and settings.storage is None
        and not (settings.data_dir / STORE_FILE).exists()
    ):
        raise ConfigError(_no_store(settings.data_dir))
    if settings.dev and (settings.data_dir / SEAL_FILE).exists():
        # The dev seal would write a root key file beside a production store
        # (and then fail to open it): refuse before touching anything.
        raise ConfigError(
            f"{settings.data_dir} is a production data dir (it has a seal): use it without --dev"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The data dir is keycask's own: nobody else needs to list it.
    settings.data_dir.chmod(0o700)
    storage = await connect_store(settings)
    try:
        watermark = Watermark(settings.data_dir)
        if settings.dev:
            root = DevSeal(settings.data_dir).root_key()
            barrier = await Barrier.open(storage, root, watermark=watermark)
        else:
            barrier = Barrier(storage, watermark=watermark)
            if not await barrier.initialised():
                raise ConfigError(f"the store in {settings.data_dir} was never initialised")
    except BaseException:
        await storage.close()
        raise
    return storage, barrier


async def open_store_to_read(settings: Settings) -> tuple[Storage, Barrier]:
    """An existing store, opened to read and nothing else: no data dir, file,
    table, keyring or dev root key is created, and nothing is reserved. In
    --dev it is unsealed with the data dir's existing dev root key; else it
    is returned sealed."""
    data_dir = settings.data_dir
    if settings.storage is None and not (data_dir / STORE_FILE).is_file():
        raise ConfigError(_no_store(data_dir))
    if settings.dev and not (data_dir / ROOT_KEY_FILE).is_file():
        raise ConfigError(f"{data_dir} has no dev root key ({ROOT_KEY_FILE})")
    storage: Storage
    if settings.storage is not None:
        try:
            storage = await PostgresStorage.open(settings.storage, create=False)
        except StorageSchemaError as exc:
            raise ConfigError(str(exc)) from None
    else:
        storage = SQLiteStorage(data_dir / STORE_FILE)
    try:
        barrier = Barrier(storage)
        if not await barrier.initialised():
            raise ConfigError(f"the store of {data_dir} was never initialised")
        if settings.dev:
            await barrier.unseal_to_read(DevSeal(data_dir).root_key())
    except BaseException:
        await storage.close()
        raise
    return storage, barrier


async def count_keys(storage: Storage) -> int:
    count, after = 0, ""
    while True:
        rows = await storage.list("key/", after, 1000)
        count += len(rows)
        if len(rows) < 1000:
            return count
        after = rows[-1][0]


def _doors(
    settings: Settings,
    *,
    deps: Deps,
    storage: Storage,
    barrier: Barrier,
    keeper: SealKeeper,
    token: OperatorToken,
    dev_clock: DevClock | None,
    maintenance: Maintenance,
    audit_dir: Path,
    nodes: NodeRegistry,
    scrape: Callable[[], Awaitable[bytes]],
) -> tuple[Doors, MetricsDoor]:
    """The front doors this server answers at ``POST /``: the AWS KMS JSON
    API (which also answers targets no door knows), the admin and operator
    APIs, STS, and in --dev the dev API; and the door of a signed scrape of
    ``GET /metrics``, which the HTTP route picks (no target names it)."""
    assert deps.credentials is not None
    codec = WireCodec(Codec.load())
    signed = SignedCallers(deps.credentials, deps.authz, deps.sessions)
    # Sealing drops every derived signing key and caller with the rest.
    barrier.on_seal.append(signed.forget)
    # The account `operator init` made; in --dev (and for an operator.json
    # from before it was recorded) the configured account.
    operator_account = token.account if token.account and not settings.dev else settings.account_id
    doors = Doors(KmsDoor(deps, codec, signed))
    idps = IdentityProviders(barrier, loopback_http=settings.dev)  # http JWKS URLs: --dev
    inspector = Inspector(
        deps.credentials, audit_dir, barrier, deps.keys, deps.authz, nodes, operator_account
    )
    doors.add(
        AdminDoor(
            deps.credentials,
            deps.authz,
            codec,
            signed,
            idps,
            tokens=deps.tokens,
            inspector=inspector,
            xks_uri_path=settings.xks_path_prefix + XKS_API_PATH,
        )
    )
    if deps.tokens is not None:
        doors.add(
            VaultTransitDoor(
                deps,
                deps.tokens,
                deps.authz,
                region=settings.region,
                sealed=lambda: barrier.sealed,
            )
        )
        doors.add(
            GcpKmsDoor(
                deps,
                deps.tokens,
                deps.authz,
                region=settings.region,
                projects=dict(settings.gcp_projects),
            )
        )
        doors.add(AzureKeyVaultDoor(deps, deps.tokens, deps.authz, region=settings.region))
    xks = XksDoor(
        deps,
        deps.credentials,
        deps.authz,
        region=settings.region,
        path_prefix=settings.xks_path_prefix,
        node=settings.node_id or "keycask",
        client_certificate=settings.xks_client_ca is not None,
        client_subject=settings.xks_client_subject,
    )
    barrier.on_seal.append(xks.forget)
    doors.add(xks)
    assert deps.sessions is not None
    sts = Sts(deps.credentials, deps.sessions, idps)
    doors.add(StsDoor(QueryCodec.load(), signed, deps.keys.commit, sts))
    operator = Operator(
        keeper,
        rotate=maintenance.rotate_barrier,
        count_keys=lambda: count_keys(storage),
        backup_tag=barrier.backup_tag,
        rotate_token=token.rotate,
        jobs=maintenance.jobs_status,
        runs_jobs=maintenance.runs_jobs,
    )
    doors.add(
        OperatorDoor(
            operator,
            token=token,
            sealed=lambda: barrier.sealed,
            signed=signed,
            account=operator_account,
            codec=codec,
        )
    )
    if dev_clock is not None:
        doors.add(
            DevDoor(
                dev_clock,
                account=operator_account,
                run_due=maintenance.run_due,
                signed=signed,
                codec=codec,
            )
        )
    return doors, MetricsDoor(signed, codec, scrape, operator_account=operator_account)


async def build(
    settings: Settings,
    clock: Clock | None = None,
    *,
    worker: int | None = None,
    scheduler: bool = True,
    unseal: UnsealInput | None = None,
) -> Runtime:
    """The whole server. ``worker`` is this process's slot when several
    worker processes share the data dir; each writes its own audit segment.
    ``scheduler`` runs the lifecycle loop (and usage flushing) here; every
    worker runs one, since a due job runs once whoever gets to it first.
    ``unseal`` is what a production server opens itself with at start (the
    PKCS#11 PIN, or a passphrase from a file); failing that, it stops."""
    clock = clock or SystemClock()
    tokens = _hsm_tokens(settings)  # refused before anything is opened
    storage, barrier = await open_store(settings)
    try:
        keeper = SealKeeper(
            settings.data_dir,
            barrier,
            dev=settings.dev,
            pkcs11_modules=frozenset(settings.pkcs11_modules),
        )
        if unseal is not None and barrier.sealed:
            await keeper.unseal(unseal)
    except BaseException:
        await storage.close()
        raise
    coordinator: Coordinator
    if isinstance(storage, PostgresStorage):
        # One node of a cluster (each worker process counts as a node).
        # Last-use records, audit anchors and nodes' heartbeats are written
        # every few seconds by every node and cached by none: their commits
        # need not empty peers' caches.
        postgres = PostgresCoordinator(
            storage,
            uncached=frozenset({"usage", "audit", "node"}),
            lock_timeout=settings.lock_timeout,
        )
        await postgres.start()
        coordinator = postgres
    elif worker is None:
        # Slot 0 of the data dir's shared file, as a lone worker: a local
        # operator's command (`policy reset`, `principals create --offline`)
        # writing to the store meanwhile takes the same writer lock, and its
        # commit makes this process drop its caches.
        coordinator = SharedFile(settings.data_dir / RUN_DIR, 0)
    else:
        coordinator = SharedFile(settings.data_dir / RUN_DIR, worker)
    segment = "server" if worker is None else f"server-{worker}"
    node = settings.node_id
    if node is None and settings.storage is not None:
        # In a cluster every record says which node wrote it.
        node = f"{socket.gethostname()}:{settings.port}"
    if node is not None:
        # Segment names are also the audit anchors' names in the shared
        # store: nodes must not overwrite each other's.
        segment = f"{segment}-{node.replace(':', '_')}"
    try:
        audit = AuditLog.open(settings.data_dir / AUDIT_DIR, segment, node=node)
    except BaseException:
        await _close_store(coordinator, storage)
        raise
    anchoring = Anchoring(barrier, audit)
    keeper.after_unseal = anchoring.after_unseal
    try:
        # Unsealed already (dev, or a seal that opened at start): check the
        # segment's tip and key the log before the first line; a segment
        # that was tampered with stops the start here.
        await anchoring.flush()
    except BaseException:
        audit.close()
        await _close_store(coordinator, storage)
        raise
    credentials = CredentialStore(barrier)
    keys = KeyStore(barrier)
    dev_clock = DevClock(settings.data_dir) if settings.dev else None
    lifecycle: Clock = dev_clock if dev_clock is not None else clock
    token = OperatorToken(settings.data_dir)
    deps = Deps(
        keys=keys,
        clock=lifecycle,
        usage=UsageTracker(keys),
        authz=Authorizer(keys),
        credentials=credentials,
        sessions=SessionTokens(barrier),
        tokens=TokenStore(barrier, credentials),
        hsm=tokens,
        xks=_xks_client(settings),
    )
    # A token configured without an account serves the operator's (as the
    # node-wide metrics do: _doors).
    tokens.serve_by_default(
        token.account if token.account and not settings.dev else settings.account_id
    )
    freshness = Freshness(deps, credentials, coordinator, barrier, dev_clock=dev_clock)
    if isinstance(coordinator, PostgresCoordinator):
        # A commit elsewhere (a rekey above all) is followed when it is seen.
        coordinator.on_stale.append(freshness.noticed)
    nodes = NodeRegistry(
        barrier,
        NodeRecord(
            node_id(settings.data_dir),
            _node_name(node, worker) or f"{socket.gethostname()}:{settings.port}",
            advertised_address(settings),
            __version__,
            started=time.time(),
            heartbeat=0.0,
            state="ready",
        ),
        # One entry per node: of a node's worker processes, the first writes it.
        writes=worker in (None, 0),
    )
    maintenance = Maintenance(
        deps,
        audit,
        coordinator,
        barrier,
        freshness,
        wall_clock=clock,
        nodes=nodes,
    )
    key_counts = KeyCounts(storage, keys, lambda: barrier.sealed)

    async def scrape() -> bytes:
        await key_counts.refresh()
        return metrics.exposition()

    doors, metrics_door = _doors(
        settings,
        deps=deps,
        storage=storage,
        barrier=barrier,
        keeper=keeper,
        token=token,
        dev_clock=dev_clock,
        maintenance=maintenance,
        audit_dir=audit.path.parent,
        nodes=nodes,
        scrape=scrape,
    )
    pipeline = Pipeline(
        doors,
        deps,
        audit,
        clock,
        coordinator=coordinator,
        barrier=barrier,
        freshness=freshness,
        managed=ManagedKeys(
            keys,
            lifecycle,
            audit,
            coordinator,
            wall_clock=clock,
            refresh=freshness.refresh,
            request_id=new_request_id,
        ),
    )
    barrier.on_seal.append(freshness.forget)
    _read_for_metrics(keeper, barrier, coordinator, key_counts, deps.authz)
    app = KMSApp(pipeline, console=Console(settings.region) if settings.console else None)
    route = MetricsRoute(pipeline, metrics_door, scrape)
    app.metrics = route.handle
    anchoring.start()
    if scheduler:
        maintenance.start()
    return Runtime(
        settings,
        storage,
        barrier,
        credentials,
        audit,
        coordinator,
        app,
        anchoring,
        pipeline,
        keeper,
        maintenance,
        route,
    )


def _xks_client(settings: Settings) -> XksClient:
    """The XKS proxy client (EXTERNAL_KEY_STORE keys), as the environment sets it."""
    try:
        connect_to = parse_connect_to(settings.xks_proxy_connect_to)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return XksClient(
        timeout=settings.xks_proxy_timeout,
        ca_file=settings.xks_proxy_ca_file,
        connect_to=connect_to,
    )


def _hsm_tokens(settings: Settings) -> hsm_registry.Tokens:
    """The --hsm tokens. One that holds the PKCS#11 seal's key is refused:
    PKCS#11 logins are the process's, so while HSM-backed keys kept a
    session logged in to it, the seal's own login (an unseal after a seal,
    a rekey) would be refused; and the root key's token should not be the
    one every KMS call uses."""
    configs = hsm_registry.parse(settings.hsm, settings.hsm_pin_files, os.environ)
    sealing = sealing_token(settings.data_dir)
    for config in configs:
        if sealing == (os.path.realpath(config.module), config.token_label):
            raise ConfigError(
                f"--hsm {config.name} names the token {config.token_label!r}, which holds "
                "the PKCS#11 seal's key: give HSM-backed keys a token of their own"
            )
    return hsm_registry.Tokens(configs)


def _node_name(node: str | None, worker: int | None) -> str | None:
    """The node's name in the list of nodes: the supervisor names each
    worker ``<node id>-<slot>`` (for its audit records); the node is the id."""
    if node is not None and worker is not None:
        return node.removesuffix(f"-{worker}")
    return node


def advertised_address(settings: Settings) -> str:
    """The address other nodes and operators reach this node at: the
    listen address, or this host's name when it listens on every address."""
    if settings.host in ("0.0.0.0", "::", ""):  # noqa: S104
        scheme = "https" if settings.tls else "http"
        return f"{scheme}://{socket.gethostname()}:{settings.port}"
    return settings.endpoint_url


def _read_for_metrics(
    keeper: SealKeeper,
    barrier: Barrier,
    coordinator: Coordinator,
    key_counts: KeyCounts,
    authz: Authorizer,
) -> None:
    """What a scrape reads from this server as it is (keycask/metrics.py's
    READINGS): the last server built in a process is the one it shows."""
    readings = metrics.READINGS
    readings.sealed = lambda: barrier.sealed
    readings.seal_type = lambda: keeper.kind
    readings.version = __version__
    readings.keys = key_counts.current
    readings.notify_lag = coordinator.lag if isinstance(coordinator, PostgresCoordinator) else None
    decisions = authz.decisions
    metrics.watch_cache("decision", lambda: (decisions.hits, decisions.misses))


# -- --dev conveniences --


def _existing_access_key_id(path: Path) -> str | None:
    if not path.exists():
        return None
    parser = configparser.ConfigParser()
    parser.read(path)
    return parser.get(PROFILE, "aws_access_key_id", fallback=None)


async def ensure_dev_profile(runtime: Runtime) -> tuple[Path, Path, bool]:
    """First --dev start: an admin principal and an AWS profile that reaches
    this server. Later starts keep them. Returns (config, credentials, created)."""
    settings = runtime.settings
    credentials_file = settings.data_dir / "credentials"
    config_file = settings.data_dir / "config"
    created = False
    akid = _existing_access_key_id(credentials_file)
    key = await runtime.credentials.lookup(akid) if akid else None
    if key is None:
        key = await _create_admin(runtime)
        _set_section(
            credentials_file,
            PROFILE,
            {"aws_access_key_id": key.access_key_id, "aws_secret_access_key": key.secret},
        )
        created = True
    # Only keycask's own profile is rewritten (the address may have changed):
    # profiles the docs have people add beside it (least-privilege.md's roles)
    # survive every restart.
    profile = {"region": settings.region, "endpoint_url": settings.endpoint_url}
    if settings.tls_self_signed and settings.tls_cert is not None:
        # The server's own certificate is its CA (cli/devtls.py).
        profile["ca_bundle"] = str(settings.tls_cert)
    _set_section(config_file, f"profile {PROFILE}", profile)
    return config_file, credentials_file, created


def _set_section(path: Path, section: str, values: dict[str, str]) -> None:
    """``path``'s INI ``section`` set to exactly ``values``, every other section
    kept; written owner-only and atomically (it may hold secrets)."""
    parser = configparser.ConfigParser(interpolation=None)
    if path.is_file():
        try:
            parser.read_string(path.read_text())
        except configparser.Error:
            # An unreadable file is replaced rather than kept: the server's
            # own profile must work.
            parser = configparser.ConfigParser(interpolation=None)
    if parser.has_section(section):
        parser.remove_section(section)
    parser.add_section(section)
    for name, value in values.items():
        parser.set(section, name, value)
    out = io.StringIO()
    parser.write(out)
    privatefile.replace(path, out.getvalue())


async def _create_admin(runtime: Runtime) -> AccessKey:
    account = runtime.settings.account_id
    name = ADMIN_NAME
    n = 1
    while await runtime.credentials.get_principal(account, name) is not None:
        n += 1
        name = f"{ADMIN_NAME}{n}"
    return await runtime.credentials.create_principal(account, name, admin=True)
