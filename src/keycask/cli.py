"""``keycask server | principals ... | audit ...``"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from keycask import config
from keycask.app import AUDIT_DIR, Runtime, build, ensure_dev_profile, open_store
from keycask.audit import Anchor, AuditLog, AuditRecord, anchor, verify
from keycask.auth.credentials import CredentialStore
from keycask.errors import KMSError, SealError
from keycask.http.server import HttpServer, Limits
from keycask.seal.dev import WARNING, DevSeal

log = logging.getLogger("keycask")


def _admin_record(operation: str, principal_arn: str, detail: str) -> AuditRecord:
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        operation=operation,
        principal="local operator",
        access_key_id=None,
        source_ip=None,
        key_arn=None,
        encryption_context=None,
        decision="allow",
        decided_by="local access to the data directory",
        outcome="success",
        error_code=None,
        detail=f"{detail} {principal_arn}",
    )


def _banner(settings: config.Settings, config_file: Path, credentials_file: Path) -> None:
    print(WARNING.format(path=DevSeal(settings.data_dir).path), file=sys.stderr, flush=True)
    print(
        "keycask is serving the AWS KMS API at "
        f"{settings.endpoint_url} (account {settings.account_id}, region {settings.region}).\n"
        "To use it from the AWS CLI or any AWS SDK, run:\n\n"
        f"  export AWS_CONFIG_FILE={config_file}\n"
        f"  export AWS_SHARED_CREDENTIALS_FILE={credentials_file}\n\n"
        "then: aws --profile keycask kms list-keys\n",
        flush=True,
    )


async def _prepare(runtime: Runtime) -> tuple[Path, Path]:
    """First start: the dev administrator and its AWS profile (audited)."""
    config_file, credentials_file, created = await ensure_dev_profile(runtime)
    if created:
        await runtime.audit.append(
            _admin_record(
                "keycask:CreatePrincipal", config_file.name, "dev admin profile written to"
            )
        )
    return config_file, credentials_file


async def _run_until_signalled(runtime: Runtime, sock: socket.socket) -> None:
    app = runtime.app
    server = HttpServer(app.handle, app.refuse_too_large, limits=Limits(max_body=app.max_body))
    await server.start(runtime.settings.host, runtime.settings.port, sock=sock)
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
    await server.shutdown(grace=10.0)


def _listen(settings: config.Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve_single(settings: config.Settings) -> int:
    runtime = await build(settings)
    try:
        config_file, credentials_file = await _prepare(runtime)
        sock = _listen(settings)
        _banner(settings, config_file, credentials_file)
        await _run_until_signalled(runtime, sock)
    finally:
        await runtime.close()
    return 0


async def _serve_worker(settings: config.Settings, slot: int, fd: int, parent: int) -> int:
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
        await _run_until_signalled(runtime, socket.socket(fileno=fd))
    finally:
        await runtime.close()
    return 0


async def _prepare_only(settings: config.Settings) -> tuple[Path, Path]:
    runtime = await build(settings, worker=0, scheduler=False)
    try:
        return await _prepare(runtime)
    finally:
        await runtime.close()


def _supervise(settings: config.Settings, args: argparse.Namespace) -> int:
    """Several worker processes share one listening socket and one store;
    this process only starts them, restarts one that dies, and stops them."""
    config_file, credentials_file = asyncio.run(_prepare_only(settings))
    sock = _listen(settings)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "keycask.cli", "server", "--dev",
            "--data-dir", str(settings.data_dir),
            "--listen", f"{settings.host}:{settings.port}",
            "--account-id", settings.account_id, "--region", settings.region,
            "--worker-slot", str(slot), "--listen-fd", str(sock.fileno()),
            "--supervisor-pid", str(os.getpid()),
        ]  # fmt: skip
        return subprocess.Popen(command, pass_fds=[sock.fileno()])

    workers = {slot: spawn(slot) for slot in range(args.workers)}
    _banner(settings, config_file, credentials_file)
    while not stopping:
        for slot, proc in list(workers.items()):
            if proc.poll() is not None and not stopping:
                log.error("worker %d exited with %s; restarting it", slot, proc.returncode)
                workers[slot] = spawn(slot)
        time.sleep(0.2)
    for proc in workers.values():
        proc.send_signal(signal.SIGTERM)
    code = 0
    for proc in workers.values():
        try:
            code = max(code, proc.wait(timeout=30))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = 1
    sock.close()
    return code


def cmd_server(args: argparse.Namespace) -> int:
    settings = config.load(
        dev=args.dev,
        listen=args.listen,
        data_dir=args.data_dir,
        account_id=args.account_id,
        region=args.region,
    )
    import uvloop

    if args.worker_slot is not None:
        return uvloop.run(
            _serve_worker(settings, args.worker_slot, args.listen_fd, args.supervisor_pid)
        )
    if args.workers > 1:
        return _supervise(settings, args)
    return uvloop.run(_serve_single(settings))


async def _create_principal(args: argparse.Namespace) -> int:
    settings = config.load(dev=True, data_dir=args.data_dir, account_id=args.account)
    storage, barrier = await open_store(settings)
    audit = AuditLog.open(settings.data_dir / AUDIT_DIR, "cli")
    try:
        store = CredentialStore(barrier)
        key = await store.create_principal(settings.account_id, args.name, admin=args.admin)
        audit.append_sync(_admin_record("keycask:CreatePrincipal", key.principal.arn, "created"))
        await anchor.save(barrier, audit.segment, audit.tip)
    finally:
        audit.close()
        await storage.close()
    if args.json:
        print(
            json.dumps(
                {
                    "Arn": key.principal.arn,
                    "AccessKeyId": key.access_key_id,
                    "SecretAccessKey": key.secret,
                }
            )
        )
    else:
        print(f"Arn:             {key.principal.arn}")
        print(f"AccessKeyId:     {key.access_key_id}")
        print(f"SecretAccessKey: {key.secret}")
        print("The secret is shown once; keycask cannot show it again.", file=sys.stderr)
    return 0


def cmd_principals_create(args: argparse.Namespace) -> int:
    return asyncio.run(_create_principal(args))


async def _load_anchors(settings: config.Settings) -> dict[str, Anchor]:
    storage, barrier = await open_store(settings)
    try:
        return await anchor.load(barrier)
    finally:
        await storage.close()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    settings = config.load(dev=True, data_dir=args.data_dir)
    anchors = asyncio.run(_load_anchors(settings))
    result = verify(settings.data_dir / AUDIT_DIR, anchors)
    if result.ok:
        print(f"ok: {result.records} records in {result.segments} segments")
        return 0
    print(f"FAILED: {result.file} line {result.line}: {result.problem}")
    return 1


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str) -> float:
    """``91d``, ``12h``, ``1d12h30m``, ``90s`` or plain seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise config.ConfigError(
            f"duration must look like 91d, 12h, 1d12h30m or 3600, got {text!r}"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def cmd_dev_advance_clock(args: argparse.Namespace) -> int:
    """Ask a running --dev server to move its lifecycle clock forward. The
    request is signed with the dev profile keycask wrote, like any client's."""
    import urllib.error
    import urllib.request

    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    seconds = parse_duration(args.duration)
    settings = config.load(dev=True, data_dir=args.data_dir)
    session = botocore.session.Session()
    # The profile the --dev server wrote into its data dir, unless the
    # caller's environment names its own files.
    if "AWS_CONFIG_FILE" not in os.environ:
        session.set_config_variable("config_file", str(settings.data_dir / "config"))
    if "AWS_SHARED_CREDENTIALS_FILE" not in os.environ:
        session.set_config_variable("credentials_file", str(settings.data_dir / "credentials"))
    session.set_config_variable("profile", args.profile)
    credentials = session.get_credentials()
    if credentials is None:
        raise config.ConfigError(
            f"no credentials for profile {args.profile!r}; start the server first"
        )
    endpoint = (
        args.endpoint_url
        or session.get_scoped_config().get("endpoint_url")
        or settings.endpoint_url
    )
    region = session.get_config_variable("region") or settings.region
    body = json.dumps({"Seconds": seconds}).encode()
    request = AWSRequest(
        method="POST",
        url=endpoint.rstrip("/") + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "KeycaskDev.AdvanceClock",
        },
    )
    SigV4Auth(credentials, "kms", region).add_auth(request)
    prepared = urllib.request.Request(  # noqa: S310 - the URL is the operator's own endpoint
        request.url, data=body, headers=dict(request.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(prepared, timeout=300) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}")
        print(
            f"keycask: {detail.get('__type', error.code)}: {detail.get('message', '')}",
            file=sys.stderr,
        )
        return 1
    except OSError as error:
        print(f"keycask: cannot reach {endpoint}: {error}", file=sys.stderr)
        return 1
    print(
        f"keycask time is now {answer['Now']} ({answer['OffsetSeconds']:g} s ahead); "
        f"{answer['JobsRun']} lifecycle job(s) ran"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keycask", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="serve the AWS KMS API")
    server.add_argument(
        "--dev", action="store_true", help="development mode: dev seal, local profile"
    )
    server.add_argument(
        "--listen", help=f"HOST:PORT (env KEYCASK_LISTEN, default {config.DEFAULT_LISTEN})"
    )
    server.add_argument(
        "--data-dir", help="data directory (env KEYCASK_DATA_DIR, default ./.keycask)"
    )
    server.add_argument("--account-id", help="account of the dev admin (env KEYCASK_ACCOUNT_ID)")
    server.add_argument("--region", help="region written to the dev profile (env KEYCASK_REGION)")
    server.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("KEYCASK_WORKERS", "1")),
        help="worker processes sharing the port and the store (env KEYCASK_WORKERS, default 1)",
    )
    server.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    server.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    server.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    server.set_defaults(func=cmd_server)

    principals = sub.add_parser("principals", help="manage principals").add_subparsers(
        dest="action", required=True
    )
    create = principals.add_parser("create", help="create a principal with an access key")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may do everything in its account")
    create.add_argument("--account", help="account id (default KEYCASK_ACCOUNT_ID or 000000000000)")
    create.add_argument(
        "--json", action="store_true", help="print Arn, AccessKeyId, SecretAccessKey as JSON"
    )
    create.add_argument("--data-dir")
    create.set_defaults(func=cmd_principals_create)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    check = audit.add_parser("verify", help="check the hash chain of every audit segment")
    check.add_argument("--data-dir")
    check.set_defaults(func=cmd_audit_verify)

    dev = sub.add_parser("dev", help="--dev conveniences").add_subparsers(
        dest="action", required=True
    )
    advance = dev.add_parser(
        "advance-clock",
        help="move a running --dev server's lifecycle clock forward (rotation, deletion)",
    )
    advance.add_argument("duration", help="how far: 91d, 12h, 1d12h30m, or seconds")
    advance.add_argument("--data-dir", help="the server's data directory (for its dev profile)")
    advance.add_argument("--profile", default="keycask", help="AWS profile to sign with")
    advance.add_argument("--endpoint-url", help="default: the profile's endpoint_url")
    advance.set_defaults(func=cmd_dev_advance_clock)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (config.ConfigError, SealError, KMSError) as exc:
        print(f"keycask: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
