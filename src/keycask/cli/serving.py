"""Running the server's processes: the listening socket, one process serving
until it is signalled, and several worker processes under a supervisor that
restarts one that dies. No argparse here: ``cli/server.py`` turns the command
line into ``Settings`` and calls these."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.multiprocess import mark_process_dead

from keycask import config, metrics
from keycask.app import RUN_DIR, Runtime, build
from keycask.http.server import HttpServer, Limits, tls_context

if TYPE_CHECKING:
    from keycask.http.gcp_grpc import GcpGrpcServer

log = logging.getLogger("keycask")


def tls(settings: config.Settings) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP; each process (every
    worker too) builds its own from the same files."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    _check_private(settings.tls_key, "TLS private key")
    return tls_context(
        settings.tls_cert,
        settings.tls_key,
        settings.tls_client_ca,
        optional_client_ca=settings.xks_client_ca,
    )


def _check_private(path: Path, what: str) -> None:
    """Refuse a key file that others may read, as seal files are refused:
    whoever reads it can impersonate this server to every client."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # tls_context says it does not exist
    except OSError as exc:
        raise config.ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise config.ConfigError(
            f"the {what} file {path} is readable by others (mode {mode & 0o777:03o}):"
            f" make it readable by its owner only (chmod 600 {path}) and start again"
        )


def listen(settings: config.Settings) -> socket.socket:
    return bind(settings.host, settings.port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def metrics_address(value: str) -> tuple[str, int]:
    """``--metrics-listen HOST:PORT`` (``[v6]:PORT`` for IPv6)."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise config.ConfigError(f"--metrics-listen takes HOST:PORT, not {value!r}")
    return host, int(port)


async def _metrics_listener(runtime: Runtime, sock: socket.socket) -> HttpServer:
    """``--metrics-listen``: GET /metrics to whoever reaches it, nothing else
    (plain HTTP: the exposition holds no secret; keep it on a network of
    the monitoring systems)."""

    async def not_recorded(client: str | None, status: int, reason: str) -> None:
        return None

    route = runtime.metrics
    server = HttpServer(route.open_handler, route.refuse_too_large, on_refused=not_recorded)
    host, port = sock.getsockname()[:2]
    await server.start(host, port, sock=sock)
    return server


async def grpc_listener(runtime: Runtime) -> GcpGrpcServer | None:
    """``--gcp-grpc-listen``: the Cloud KMS door over gRPC, in this event loop,
    with the HTTP listener's certificate when it has one, its messages bounded
    by the HTTP port's body limit. Listening, not yet answering."""
    settings = runtime.settings
    if settings.gcp_grpc_listen is None:
        return None
    from keycask.http.gcp_grpc import GcpGrpcServer

    tls_files = client_ca = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls_files = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
        if settings.tls_client_ca is not None:
            client_ca = settings.tls_client_ca.read_bytes()
    server = GcpGrpcServer(
        runtime.pipeline, max_message=runtime.app.max_body, tls=tls_files, client_ca=client_ca
    )
    host, port = settings.gcp_grpc_listen
    try:
        server.bind(host, port)
    except (OSError, RuntimeError) as error:
        log.debug("gRPC bind failed: %s", error)
        raise config.ConfigError(
            f"cannot serve gRPC on {host}:{port} (--gcp-grpc-listen): the port is in use, "
            "or the address is not this host's"
        ) from None
    return server


async def run_until_signalled(
    runtime: Runtime,
    sock: socket.socket,
    metrics_sock: socket.socket | None = None,
    *,
    log_requests: bool = False,
    grpc_server: GcpGrpcServer | None = None,
) -> None:
    """Serve ``runtime`` on ``sock`` (and its metrics on ``metrics_sock``, the
    Cloud KMS door over gRPC on ``grpc_server``: ``grpc_listener``'s) until
    SIGTERM or SIGINT, then drain. ``log_requests``: one log event per
    answered request (``--log-format json``)."""
    app = runtime.app
    runtime.pipeline.log_requests = log_requests
    metrics_server = (
        await _metrics_listener(runtime, metrics_sock) if metrics_sock is not None else None
    )
    server = HttpServer(
        app.handle,
        app.refuse_too_large,
        limits=Limits(max_body=app.max_body),
        tls=tls(runtime.settings),
        on_refused=app.refused_at_edge,
        proxy_from=runtime.settings.proxy_from,
    )
    await server.start(runtime.settings.host, runtime.settings.port, sock=sock)
    if grpc_server is not None:
        await grpc_server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything built so far lives as long as the process: keep the cyclic
    # collector from walking it on every full collection.
    gc.freeze()
    # The audit and SQLite threads wake from fsync needing the GIL back; by
    # default the busy event loop keeps it up to 5 ms, and every request
    # waiting on that batch waits too. A 0.5 ms interval bounds that wait.
    sys.setswitchinterval(0.0005)
    app.ready = True
    await stop.wait()
    app.ready = False
    if metrics_server is not None:
        await metrics_server.shutdown(grace=1.0)
    if grpc_server is not None:
        await grpc_server.stop(grace=10.0)
    await server.shutdown(grace=10.0)


async def serve_worker(
    settings: config.Settings,
    slot: int,
    fd: int,
    parent: int,
    *,
    metrics_fd: int | None = None,
    log_requests: bool = False,
) -> int:
    """One worker process: serves on the supervisor's socket ``fd`` (and
    its metrics listener's ``metrics_fd``)."""
    runtime = await build(settings, worker=slot)
    loop = asyncio.get_running_loop()

    def orphaned() -> None:
        # The supervisor died without stopping us (kill -9): stop too, rather
        # than serve on unsupervised. Polling works everywhere; prctl does not.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            loop.call_later(0.5, orphaned)

    loop.call_later(0.5, orphaned)
    try:
        await run_until_signalled(
            runtime,
            socket.socket(fileno=fd),
            socket.socket(fileno=metrics_fd) if metrics_fd is not None else None,
            log_requests=log_requests,
        )
    finally:
        await runtime.close()
    return 0


# The command that starts worker ``slot`` on the listening socket ``fd``
# (and the metrics listener's, or None).
WorkerCommand = Callable[[int, int, int | None], list[str]]


def _metrics_dir(settings: config.Settings) -> Path:
    """The workers' shared metrics files (keycask/metrics.py), emptied at
    every start: the counts of a previous run are not this one's."""
    directory = settings.data_dir / RUN_DIR / "metrics"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in directory.glob("*.db"):
        old.unlink()
    return directory


def supervise(
    settings: config.Settings,
    workers: int,
    command: WorkerCommand,
    started: Callable[[], None],
    metrics_listen: str | None = None,
) -> int:
    """Several worker processes share one listening socket and one store;
    this process only starts them, restarts one that dies, and stops them.
    ``started`` runs once the workers were started. The workers keep their
    metrics in files of one directory, which every scrape sums."""
    sock = listen(settings)
    metrics_sock = bind(*metrics_address(metrics_listen)) if metrics_listen else None
    fds = [sock.fileno()] + ([metrics_sock.fileno()] if metrics_sock is not None else [])
    metrics_dir = _metrics_dir(settings)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if settings.storage is not None:
            # In the environment, not argv: a DSN may hold a password.
            env["KEYCASK_STORAGE"] = settings.storage
        env[metrics.MULTIPROC_ENV] = str(metrics_dir)
        argv = command(slot, sock.fileno(), metrics_sock.fileno() if metrics_sock else None)
        return subprocess.Popen(argv, pass_fds=fds, env=env)

    running = {slot: spawn(slot) for slot in range(workers)}
    started()
    while not stopping:
        for slot, proc in list(running.items()):
            if proc.poll() is not None and not stopping:
                log.error("worker %d exited with %s; restarting it", slot, proc.returncode)
                # Its live gauges (memory, fds) leave the sums; its counts stay.
                mark_process_dead(proc.pid, str(metrics_dir))  # type: ignore[no-untyped-call]
                running[slot] = spawn(slot)
        time.sleep(0.2)
    for proc in running.values():
        proc.send_signal(signal.SIGTERM)
    code = 0
    for proc in running.values():
        try:
            code = max(code, proc.wait(timeout=30))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = 1
    sock.close()
    if metrics_sock is not None:
        metrics_sock.close()
    return code
