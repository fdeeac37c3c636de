"""``keycask server | principals ... | audit ...``

Why one module of ~1,000 lines: it is the argparse tree of three command
groups and their thin handlers, which read best next to the parser that
declares their flags. It becomes the package ``keycask/cli/`` (one module per
command group, supervision out of argparse) in issue 14's reshaping; until
then nothing here is logic that another layer needs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from keycask import config
from keycask.app import (
    AUDIT_DIR,
    Runtime,
    build,
    ensure_dev_profile,
    open_store,
    open_store_to_read,
)
from keycask.audit import Anchor, AuditRecord, anchor, verify
from keycask.audit.chain import quarantine_tail, scan_segment
from keycask.auth.credentials import CredentialStore
from keycask.cli.client import CallError, local_record, post_json
from keycask.crypto import KeyMaterial
from keycask.errors import AuditUnavailable, KMSError, SealError, StorageIntegrityError
from keycask.http.server import HttpServer, Limits, tls_context
from keycask.cli.operator import add_operator_commands
from keycask.cli.policy import add_policy_commands
from keycask.seal import SEAL_FILE
from keycask.seal.dev import ROOT_KEY_FILE, WARNING, DevSeal
from keycask.service.sealing import SealKeeper, UnsealInput
from keycask.storage.postgres import StorageConfigError

log = logging.getLogger("keycask")


def _admin_record(operation: str, principal_arn: str, detail: str) -> AuditRecord:
    return local_record(operation, f"{detail} {principal_arn}")


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


def _tls(settings: config.Settings) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP; each process (every
    worker too) builds its own from the same files."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    _check_private(settings.tls_key, "TLS private key")
    return tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


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


async def _run_until_signalled(runtime: Runtime, sock: socket.socket) -> None:
    app = runtime.app
    server = HttpServer(
        app.handle,
        app.refuse_too_large,
        limits=Limits(max_body=app.max_body),
        tls=_tls(runtime.settings),
        on_refused=app.refused_at_edge,
        proxy_from=runtime.settings.proxy_from,
    )
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


def _production_banner(runtime: Runtime) -> None:
    settings = runtime.settings
    state = "SEALED" if runtime.keeper.sealed else "unsealed"
    print(
        f"keycask is serving the AWS KMS API at {settings.endpoint_url} "
        f"({state}, {runtime.keeper.kind} seal).",
        flush=True,
    )
    if runtime.keeper.sealed:
        print(
            "KMS calls answer KMSInvalidStateException until an operator unseals it:\n"
            f"  KEYCASK_ADDR={settings.endpoint_url} keycask operator unseal",
            flush=True,
        )
    if settings.insecure_plaintext:
        print(
            "WARNING: --insecure-plaintext: requests travel unencrypted to this "
            "process; only safe behind a TLS-terminating load balancer on a trusted network.",
            file=sys.stderr,
            flush=True,
        )


def _read_secret_file(path: str, what: str) -> str:
    try:
        if Path(path).stat().st_mode & 0o077:
            # Readable by others: the secret has leaked already; say so, never use it.
            raise config.ConfigError(
                f"the {what} file {path} is readable by others: chmod 600 it "
                "(and consider the secret exposed)"
            )
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise config.ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not text:
        raise config.ConfigError(f"the {what} file {path} is empty")
    return text


def _startup_unseal(args: argparse.Namespace) -> UnsealInput | None:
    """What a production server may open itself with: the PKCS#11 PIN (env
    KEYCASK_PKCS11_PIN or a file) and a passphrase from a file. Never argv."""
    pin = os.environ.get("KEYCASK_PKCS11_PIN") or None
    pin_file = args.pkcs11_pin_file or os.environ.get("KEYCASK_PKCS11_PIN_FILE")
    if pin is None and pin_file:
        pin = _read_secret_file(pin_file, "PIN")
    passphrase_file = args.passphrase_file or os.environ.get("KEYCASK_PASSPHRASE_FILE")
    passphrase = _read_secret_file(passphrase_file, "passphrase") if passphrase_file else None
    if pin is None and passphrase is None:
        return None
    return UnsealInput(pin=pin, passphrase=passphrase)


async def _serve_single(settings: config.Settings, unseal: UnsealInput | None = None) -> int:
    runtime = await build(settings, unseal=unseal)
    try:
        sock = _listen(settings)
        if settings.dev:
            config_file, credentials_file = await _prepare(runtime)
            _banner(settings, config_file, credentials_file)
        else:
            _production_banner(runtime)
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
            "--partition", settings.partition,
            "--worker-slot", str(slot), "--listen-fd", str(sock.fileno()),
            "--supervisor-pid", str(os.getpid()),
        ]  # fmt: skip
        if settings.node_id is not None:
            command += ["--node-id", f"{settings.node_id}-{slot}"]
        if settings.proxy_from:
            command += ["--proxy-protocol-from", ",".join(map(str, settings.proxy_from))]
        for flag, path in (
            ("--tls-cert", settings.tls_cert),
            ("--tls-key", settings.tls_key),
            ("--tls-client-ca", settings.tls_client_ca),
        ):
            if path is not None:
                command += [flag, str(path)]
        env = dict(os.environ)
        if settings.storage is not None:
            # In the environment, not argv: a DSN may hold a password.
            env["KEYCASK_STORAGE"] = settings.storage
        return subprocess.Popen(command, pass_fds=[sock.fileno()], env=env)

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
        insecure_plaintext=args.insecure_plaintext,
        storage=args.storage,
        node_id=args.node_id,
        proxy_protocol_from=args.proxy_protocol_from,
        dev=args.dev,
        listen=args.listen,
        data_dir=args.data_dir,
        account_id=args.account_id,
        region=args.region,
        partition=args.partition,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        pkcs11_modules=args.pkcs11_module or (),
        storage_insecure=args.storage_insecure,
    )
    _tls(settings)  # unreadable or mismatched files: refuse before anything starts
    import uvloop

    if not settings.dev:
        if args.workers > 1 or args.worker_slot is not None:
            # Each process would hold its own seal state: an unseal or a seal
            # would reach one of them. One process per node until they share it.
            raise config.ConfigError("a production server runs one process: drop --workers")
        return uvloop.run(_serve_single(settings, _startup_unseal(args)))

    if args.worker_slot is not None:
        return uvloop.run(
            _serve_worker(settings, args.worker_slot, args.listen_fd, args.supervisor_pid)
        )
    if args.workers > 1:
        return _supervise(settings, args)
    return uvloop.run(_serve_single(settings))


# -- principals: KeycaskAdmin calls to the running server --


# A call to the running server (or an --offline change) failed; the text is
# what to print: ``<Code>: <message>``.
_CommandError = CallError


def _server_call(
    args: argparse.Namespace, target: str, body: dict[str, object], *, timeout: float = 60.0
) -> dict[str, object]:
    """POST ``body`` to ``target`` on the running server, signed (SigV4) with
    the profile ``args.profile`` from the data dir's AWS files (the one a
    --dev server writes), unless the environment names its own files."""
    import urllib.error
    import urllib.request

    import botocore.exceptions
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    settings = config.load(dev=True, data_dir=args.data_dir)
    # "Found credentials in ..." on every command is noise, not news.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    session = botocore.session.Session()
    if "AWS_CONFIG_FILE" not in os.environ:
        session.set_config_variable("config_file", str(settings.data_dir / "config"))
    if "AWS_SHARED_CREDENTIALS_FILE" not in os.environ:
        session.set_config_variable("credentials_file", str(settings.data_dir / "credentials"))
    session.set_config_variable("profile", args.profile)
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        credentials = None
    if credentials is None:
        raise config.ConfigError(
            f"no credentials for profile {args.profile!r} (a --dev server writes the "
            "'keycask' profile into its data dir when it first starts)"
        )
    endpoint = (
        args.endpoint_url
        or session.get_scoped_config().get("endpoint_url")
        or settings.endpoint_url
    )
    region = session.get_config_variable("region") or settings.region
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=endpoint.rstrip("/") + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(credentials, "kms", region).add_auth(request)
    prepared = urllib.request.Request(  # noqa: S310 - the URL is the operator's own endpoint
        request.url, data=data, headers=dict(request.headers), method="POST"
    )
    return post_json(prepared, where=endpoint, timeout=timeout)


def _admin_call(
    args: argparse.Namespace, operation: str, body: dict[str, object]
) -> dict[str, object]:
    if getattr(args, "account", None):
        body = {**body, "Account": args.account}
    return _server_call(args, "KeycaskAdmin." + operation, body)


def _remote(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print a failed call as ``keycask: <Code>: <message>`` and exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _CommandError as error:
            print(f"keycask: {error}", file=sys.stderr)
            return 1

    return run


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _print_secret(created: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(created))
        return
    for name, value in created.items():
        print(f"{name + ':':<17}{value}")
    print("The secret is shown once; keycask cannot show it again.", file=sys.stderr)


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"tags are KEY=VALUE, got {text!r}")
    return key, value


async def _create_principal_offline(args: argparse.Namespace) -> dict[str, object]:
    """Straight into the data dir, as the local operator: for an account's
    first administrator. Audited to ``cli.jsonl`` before it is committed."""
    settings = config.load(dev=True, data_dir=args.data_dir, account_id=args.account)
    storage, barrier = await open_store(settings)
    try:
        audit = await anchor.open_keyed(barrier, settings.data_dir / AUDIT_DIR, "cli")
    except BaseException:
        await storage.close()
        raise
    try:
        store = CredentialStore(barrier)
        key, writes = await store.stage_create_principal(
            settings.account_id,
            args.name,
            admin=args.admin,
            kind="role" if args.role else "user",
            tags=dict(args.tag or ()),
        )
        record = _admin_record(
            "keycask:CreatePrincipal",
            key.principal.arn,
            f"principal and access key {key.access_key_id} created:",
        )
        audit.append_sync(record)
        try:
            await store.commit(writes)
        except Exception:
            audit.append_sync(
                dataclasses.replace(
                    record,
                    outcome="error",
                    error_code="KMSInternalException",
                    detail="commit failed",
                )
            )
            raise
        await anchor.save(barrier, audit.segment, audit.tip)
    finally:
        audit.close()
        await storage.close()
    return {
        "Arn": key.principal.arn,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret,
    }


def cmd_principals_create(args: argparse.Namespace) -> int:
    if args.offline:
        try:
            created = asyncio.run(_create_principal_offline(args))
        except KMSError as error:
            raise _CommandError(f"{error.code}: {error.message}") from None
    else:
        body: dict[str, object] = {"Name": args.name}
        if args.role:
            body["Role"] = True
        if args.admin:
            body["Admin"] = True
        if args.tag:
            body["Tags"] = dict(args.tag)
        try:
            created = _admin_call(args, "CreatePrincipal", body)
        except _CommandError as error:
            if str(error).startswith("cannot reach"):
                raise _CommandError(
                    f"{error} (without a running server, --offline writes to the data dir)"
                ) from None
            raise
    _print_secret(created, args.json)
    return 0


def cmd_principals_get(args: argparse.Namespace) -> int:
    _print_json(_admin_call(args, "GetPrincipal", {"Name": args.name}))
    return 0


def cmd_principals_list(args: argparse.Namespace) -> int:
    principals: list[object] = []
    body: dict[str, object] = {}
    while True:
        page = _admin_call(args, "ListPrincipals", body)
        found = page.get("Principals")
        assert isinstance(found, list)
        principals.extend(found)
        if not page.get("Truncated"):
            break
        body = {"Marker": page["NextMarker"]}
    if args.json:
        _print_json(principals)
        return 0
    for principal in principals:
        assert isinstance(principal, dict)
        print(f"{principal['Arn']}{'  (administrator)' if principal['Admin'] else ''}")
    return 0


def cmd_principals_delete(args: argparse.Namespace) -> int:
    _admin_call(args, "DeletePrincipal", {"Name": args.name})
    return 0


def cmd_principals_put_policy(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise config.ConfigError(f"cannot read the policy file: {error}") from None
    body = {"Name": args.name, "PolicyName": args.policy_name, "PolicyDocument": text}
    _admin_call(args, "PutPrincipalPolicy", body)
    return 0


def cmd_principals_get_policy(args: argparse.Namespace) -> int:
    body = {"Name": args.name, "PolicyName": args.policy_name}
    document = str(_admin_call(args, "GetPrincipalPolicy", body)["PolicyDocument"])
    print(document, end="" if document.endswith("\n") else "\n")
    return 0


def cmd_principals_delete_policy(args: argparse.Namespace) -> int:
    _admin_call(args, "DeletePrincipalPolicy", {"Name": args.name, "PolicyName": args.policy_name})
    return 0


def cmd_principals_tag(args: argparse.Namespace) -> int:
    _admin_call(args, "TagPrincipal", {"Name": args.name, "Tags": dict(args.tags)})
    return 0


def cmd_principals_untag(args: argparse.Namespace) -> int:
    _admin_call(args, "UntagPrincipal", {"Name": args.name, "TagKeys": args.keys})
    return 0


def cmd_access_keys_create(args: argparse.Namespace) -> int:
    _print_secret(_admin_call(args, "CreateAccessKey", {"Name": args.name}), args.json)
    return 0


def cmd_access_keys_list(args: argparse.Namespace) -> int:
    _print_json(_admin_call(args, "ListAccessKeys", {"Name": args.name})["AccessKeys"])
    return 0


def cmd_access_keys_activate(args: argparse.Namespace) -> int:
    _admin_call(args, "UpdateAccessKey", {"AccessKeyId": args.access_key_id, "Status": "Active"})
    return 0


def cmd_access_keys_deactivate(args: argparse.Namespace) -> int:
    body = {"AccessKeyId": args.access_key_id, "Status": "Inactive"}
    _admin_call(args, "UpdateAccessKey", body)
    return 0


def cmd_access_keys_delete(args: argparse.Namespace) -> int:
    _admin_call(args, "DeleteAccessKey", {"AccessKeyId": args.access_key_id})
    return 0


async def _load_anchors(
    settings: config.Settings, unseal: UnsealInput | None
) -> tuple[dict[str, Anchor], KeyMaterial | None] | None:
    """The anchors recorded in the store and its audit key (None if no writer
    made one yet); None for a sealed production store that nothing given
    here opens. Reads only: creates and writes nothing."""
    storage, barrier = await open_store_to_read(settings)
    try:
        if barrier.sealed:
            if unseal is None:
                return None
            keeper = SealKeeper(
                settings.data_dir, barrier, pkcs11_modules=frozenset(settings.pkcs11_modules)
            )
            await keeper.open_to_read(unseal)
        return await anchor.load(barrier), await anchor.load_key(barrier)
    finally:
        await storage.close()


def _verified_dir(directory: str) -> bool:
    """Whether ``directory`` is a production data dir (False: a --dev one)."""
    path = Path(directory)
    if (path / SEAL_FILE).exists():
        return True
    if (path / ROOT_KEY_FILE).exists():
        return False
    raise config.ConfigError(
        f"{path} is not a keycask data dir: it has neither {SEAL_FILE} (production) nor "
        f"{ROOT_KEY_FILE} (--dev); give the data dir with --data-dir"
    )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Every segment of every data dir given (a cluster's nodes each keep
    their own), against the anchors recorded in the (shared) store."""
    dirs = args.data_dir or [os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR]
    production = _verified_dir(dirs[0])
    settings = config.load(
        dev=not production,
        data_dir=dirs[0],
        storage=args.storage,
        pkcs11_modules=args.pkcs11_module or (),
    )
    loaded = asyncio.run(_load_anchors(settings, _startup_unseal(args) if production else None))
    anchors, key = (None, None) if loaded is None else loaded
    if loaded is None:
        print(
            "note: the store is sealed, so its anchors and the lines' MACs were not checked "
            "(give --pkcs11-pin-file or --passphrase-file, or the env variables, to check them)"
        )
    records = segments = beyond = unkeyed = 0
    tails: list[tuple[Path, int, int]] = []
    present: set[str] = set()
    for directory in dirs:
        audit_dir = Path(directory).resolve() / AUDIT_DIR
        names = {p.name.removesuffix(".jsonl") for p in audit_dir.glob("*.jsonl")}
        present |= names
        mine = None if anchors is None else {k: v for k, v in anchors.items() if k in names}
        result = verify(audit_dir, mine, key)
        if not result.ok:
            print(f"FAILED: {result.file} line {result.line}: {result.problem}")
            return 1
        records, segments = records + result.records, segments + result.segments
        beyond, unkeyed = beyond + result.beyond_anchors, unkeyed + result.unkeyed
        tails.extend(result.sealed_tails)
    missing = sorted(set(anchors or {}) - present)
    if missing:
        print(
            f"FAILED: segment {missing[0]} is anchored in the store but missing from "
            f"{', '.join(dirs)} (deleted, or give every node's data dir)"
        )
        return 1
    print(f"ok: {records} records in {segments} segments")
    for path, first, last in tails:
        print(
            f"warning: {path} lines {first}-{last} are past the last anchor without a MAC; "
            "they record only what a sealed server writes: written while the store was "
            "sealed, or forged (nobody can tell)"
        )
    if anchors is not None and beyond:
        print(f"{beyond} lines are past the anchors, authenticated by their MACs")
    if anchors is not None and key is None:
        print("note: the store has no audit key yet (no server of this version has run "
              "on it), so lines past the anchors are not authenticated")  # fmt: skip
    elif anchors is not None and unkeyed:
        print(f"{unkeyed} lines carry no MAC (older logs, or written while sealed); "
              "the anchors or a later keyed line vouch for them")  # fmt: skip
    return 0


async def _quarantine(settings: config.Settings, segment: str, unseal: UnsealInput | None) -> str:
    storage, barrier = await open_store(settings)
    try:
        if barrier.sealed:
            if unseal is None:
                raise SealError(
                    "the store is sealed: give --pkcs11-pin-file or --passphrase-file "
                    "(or the env variables) to open it"
                )
            await SealKeeper(
                settings.data_dir, barrier, pkcs11_modules=frozenset(settings.pkcs11_modules)
            ).unseal(unseal)
        directory = settings.data_dir / AUDIT_DIR
        path = directory / f"{segment}.jsonl"
        if not path.is_file():
            raise config.ConfigError(f"{path} does not exist")
        anchored = (await anchor.load(barrier)).get(segment)
        key = await anchor.audit_key(barrier)
        scan = scan_segment(path, anchored, key)
        if scan.failure is None:
            return f"{path}: every line is vouched for; nothing to quarantine"
        line, problem = scan.failure
        kept, keep = scan.vouched
        if anchored is not None and kept < anchored.seq:
            raise config.ConfigError(
                f"{path} line {line}: {problem}. That is at or before what the store "
                "recorded: the history itself was changed, and cutting it would not help"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            aside = quarantine_tail(path, keep, stamp)
        except OSError as exc:
            raise AuditUnavailable(f"could not quarantine {path}: {exc}") from exc
        last = kept + (len(aside.read_bytes().splitlines()) if aside else 0)
        detail = (
            f"lines {kept + 1}-{last} of {path.name} moved to {aside.name if aside else '-'} "
            f"(line {line}: {problem})"
        )
        audit = await anchor.open_keyed(barrier, directory, "cli")
        try:
            audit.append_sync(local_record("keycask:QuarantineAuditLines", detail))
            await anchor.save(barrier, audit.segment, audit.tip)
        finally:
            audit.close()
        return f"{detail}; a writer can chain on from line {kept} now (audited)"
    finally:
        await storage.close()


def cmd_audit_quarantine(args: argparse.Namespace) -> int:
    """Move the lines of a segment past what the store vouches for aside, so
    its writer can start again (it refuses to chain on from them)."""
    directory = args.data_dir or os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR
    production = _verified_dir(directory)
    settings = config.load(
        dev=not production,
        data_dir=directory,
        storage=args.storage,
        pkcs11_modules=args.pkcs11_module or (),
    )
    unseal = _startup_unseal(args) if production else None
    print(asyncio.run(_quarantine(settings, args.segment, unseal)))
    return 0


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
    seconds = parse_duration(args.duration)
    try:
        answer = _server_call(args, "KeycaskDev.AdvanceClock", {"Seconds": seconds}, timeout=300)
    except _CommandError as error:
        print(f"keycask: {error}", file=sys.stderr)
        return 1
    print(
        f"keycask time is now {answer['Now']} ({answer['OffsetSeconds']:g} s ahead); "
        f"{answer['JobsRun']} lifecycle job(s) ran"
    )
    return 0


def _principals_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--data-dir", help="the server's data directory (for its AWS profile)")
    remote.add_argument(
        "--profile", default="keycask", help="AWS profile to sign with (an administrator's)"
    )
    remote.add_argument("--endpoint-url", help="default: the profile's endpoint_url")
    in_account = argparse.ArgumentParser(add_help=False)
    in_account.add_argument("--account", help="account id (default: the caller's account)")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_text: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=help_text, parents=[remote, *parents])
        parser.set_defaults(func=_remote(func))
        return parser

    principals = sub.add_parser(
        "principals",
        help="manage principals, their policies, tags and access keys (on the running server)",
    ).add_subparsers(dest="action", required=True)

    create = command(
        principals, "create", cmd_principals_create, "create a principal with an access key"
    )
    create.add_argument("name")
    create.add_argument(
        "--account",
        help="account id (default: the caller's; with --offline KEYCASK_ACCOUNT_ID "
        "or 000000000000)",
    )
    create.add_argument("--role", action="store_true", help="a role (ARN .../role/NAME)")
    create.add_argument(
        "--tag", action="append", type=_tag, metavar="KEY=VALUE", help="a tag (repeatable)"
    )
    create.add_argument("--admin", action="store_true", help="may do everything in its account")
    create.add_argument(
        "--json", action="store_true", help="print Arn, AccessKeyId, SecretAccessKey as JSON"
    )
    create.add_argument(
        "--offline",
        action="store_true",
        help="write to the data dir directly instead of calling the server "
        "(for an account's first administrator)",
    )

    get = command(principals, "get", cmd_principals_get, "show a principal", in_account)
    get.add_argument("name")
    listing = command(principals, "list", cmd_principals_list, "list principals", in_account)
    listing.add_argument("--json", action="store_true")
    delete = command(
        principals,
        "delete",
        cmd_principals_delete,
        "delete a principal, its policies and all its access keys",
        in_account,
    )
    delete.add_argument("name")

    put_policy = command(
        principals, "put-policy", cmd_principals_put_policy, "attach an identity policy", in_account
    )
    put_policy.add_argument("name")
    put_policy.add_argument("--policy-name", required=True)
    put_policy.add_argument("--file", required=True, help="the policy document (- for stdin)")
    for name, func, help_text in (
        ("get-policy", cmd_principals_get_policy, "print an identity policy"),
        ("delete-policy", cmd_principals_delete_policy, "remove an identity policy"),
    ):
        policy = command(principals, name, func, help_text, in_account)
        policy.add_argument("name")
        policy.add_argument("--policy-name", required=True)

    tag = command(principals, "tag", cmd_principals_tag, "set tags on a principal", in_account)
    tag.add_argument("name")
    tag.add_argument("tags", nargs="+", type=_tag, metavar="KEY=VALUE")
    untag = command(
        principals, "untag", cmd_principals_untag, "remove tags from a principal", in_account
    )
    untag.add_argument("name")
    untag.add_argument("keys", nargs="+", metavar="KEY")

    access_keys = principals.add_parser(
        "access-keys", help="a principal's access keys"
    ).add_subparsers(dest="access_keys_action", required=True)
    new_key = command(
        access_keys, "create", cmd_access_keys_create, "a new access key for NAME", in_account
    )
    new_key.add_argument("name")
    new_key.add_argument(
        "--json", action="store_true", help="print AccessKeyId, SecretAccessKey as JSON"
    )
    keys = command(
        access_keys, "list", cmd_access_keys_list, "NAME's access keys (no secrets)", in_account
    )
    keys.add_argument("name")
    for name, func, help_text in (
        ("activate", cmd_access_keys_activate, "let an access key sign requests again"),
        ("deactivate", cmd_access_keys_deactivate, "stop an access key at once (reversible)"),
        ("delete", cmd_access_keys_delete, "delete an access key"),
    ):
        command(access_keys, name, func, help_text).add_argument("access_key_id")


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
        "--partition",
        choices=config.PARTITIONS,
        help="the AWS partition of every ARN keycask renders and accepts "
        f"(env KEYCASK_PARTITION, default {config.DEFAULT_PARTITION})",
    )
    server.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("KEYCASK_WORKERS", "1")),
        help="worker processes sharing the port and the store (env KEYCASK_WORKERS, default 1)",
    )
    server.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve HTTPS (TLS 1.2+) with this certificate chain (env KEYCASK_TLS_CERT)",
    )
    server.add_argument(
        "--tls-key", metavar="PEM", help="the certificate's private key (env KEYCASK_TLS_KEY)"
    )
    server.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="require client certificates issued by this CA: mutual TLS "
        "(env KEYCASK_TLS_CLIENT_CA)",
    )
    server.add_argument(
        "--storage",
        metavar="DSN",
        help="postgresql://user@host:5432/db to share one store between nodes "
        "(env KEYCASK_STORAGE; the password from PGPASSWORD or ~/.pgpass); default SQLite "
        "in the data dir",
    )
    server.add_argument(
        "--storage-insecure",
        action="store_true",
        help="allow a PostgreSQL store on another host without sslmode=require or verify-* "
        "(env KEYCASK_STORAGE_INSECURE=1; only on a network you trust)",
    )
    server.add_argument(
        "--node-id",
        help="this node's name in a cluster, written into every audit record "
        "(env KEYCASK_NODE_ID; default host:port when the store is PostgreSQL)",
    )
    server.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="serve plain HTTP on a non-loopback address (only behind a TLS-terminating "
        "load balancer)",
    )
    server.add_argument(
        "--pkcs11-pin-file",
        help="PKCS#11 seal: unseal at start with the PIN in this file "
        "(or env KEYCASK_PKCS11_PIN / KEYCASK_PKCS11_PIN_FILE)",
    )
    server.add_argument(
        "--pkcs11-module",
        action="append",
        metavar="LIB",
        help="a PKCS#11 library this server may load (repeatable; env KEYCASK_PKCS11_MODULE, "
        "or KEYCASK_PKCS11_MODULES colon-separated): a PKCS#11 seal's library must be one",
    )
    server.add_argument(
        "--passphrase-file",
        help="passphrase seal: unseal at start with the passphrase in this file "
        "(env KEYCASK_PASSPHRASE_FILE); without it an operator unseals",
    )
    server.add_argument(
        "--proxy-protocol-from",
        metavar="CIDR,...",
        help="load balancers (addresses or networks) whose connections start with a PROXY "
        "protocol v2 header naming the client: required from them, refused from anyone else "
        "(env KEYCASK_PROXY_PROTOCOL_FROM)",
    )
    server.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    server.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    server.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    server.set_defaults(func=cmd_server)

    _principals_parser(sub)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    check = audit.add_parser("verify", help="check the hash chain of every audit segment")
    check.add_argument(
        "--data-dir",
        action="append",
        help="a data dir (repeat for every node of a cluster; default ./.keycask)",
    )
    check.add_argument("--storage", metavar="DSN", help="the cluster's PostgreSQL store")
    check.add_argument("--pkcs11-pin-file", help="production: PIN to open the store's anchors")
    check.add_argument(
        "--passphrase-file", help="production: passphrase to open the store's anchors"
    )
    check.add_argument(
        "--pkcs11-module", action="append", metavar="LIB", help="a PKCS#11 library to allow"
    )
    check.set_defaults(func=cmd_audit_verify)
    quarantine = audit.add_parser(
        "quarantine",
        help="move a segment's lines that the store does not vouch for aside (into "
        "<segment>.jsonl.quarantined-<time>), so its writer can start again; audited",
    )
    quarantine.add_argument("segment", help="the segment's name, e.g. server")
    quarantine.add_argument("--data-dir", help="the data dir (default ./.keycask)")
    quarantine.add_argument("--storage", metavar="DSN", help="the cluster's PostgreSQL store")
    quarantine.add_argument("--pkcs11-pin-file", help="production: PIN to open the store")
    quarantine.add_argument("--passphrase-file", help="production: passphrase to open the store")
    quarantine.add_argument(
        "--pkcs11-module", action="append", metavar="LIB", help="a PKCS#11 library to allow"
    )
    quarantine.set_defaults(func=cmd_audit_quarantine)

    add_policy_commands(sub)
    add_operator_commands(sub)

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
    except (
        config.ConfigError,
        SealError,
        KMSError,
        AuditUnavailable,
        StorageIntegrityError,
        StorageConfigError,
    ) as exc:
        print(f"keycask: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
