"""``keycask server``: serve the AWS KMS API (``--dev``, or a production data
dir that ``keycask operator init`` made). The processes themselves are run by
``cli/serving.py``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from keycask import config
from keycask.app import LOCAL_OPERATOR_SLOT, Runtime, build, ensure_dev_profile
from keycask.cli import devtls, logformat, serving
from keycask.cli.client import local_record
from keycask.cli.secrets import add_startup_flags, startup_unseal
from keycask.hsm import registry as hsm_registry
from keycask.seal.dev import WARNING, DevSeal
from keycask.service.sealing import UnsealInput

log = logging.getLogger("keycask")


def _warn(name: str, text: str) -> None:
    """A start-up warning: the text as it always was, or one JSON event
    (``--log-format json``: stderr holds JSON lines only)."""
    if logformat.configured() == "json":
        logformat.event(log, logging.WARNING, name, text)
    else:
        print(text, file=sys.stderr, flush=True)


def _banner(settings: config.Settings, config_file: Path, credentials_file: Path) -> None:
    _warn("dev_mode", WARNING.format(path=DevSeal(settings.data_dir).path))
    print(
        "keycask is serving the AWS KMS API at "
        f"{settings.endpoint_url} (account {settings.account_id}, region {settings.region}).\n"
        "To use it from the AWS CLI or any AWS SDK, run:\n\n"
        f"  export AWS_CONFIG_FILE={config_file}\n"
        f"  export AWS_SHARED_CREDENTIALS_FILE={credentials_file}\n\n"
        "then: aws --profile keycask kms list-keys\n",
        flush=True,
    )
    if settings.tls_self_signed:
        # The profile names it as ca_bundle; other clients are given it.
        print(
            f"HTTPS with a self-signed certificate: clients trust {settings.tls_cert} as "
            "their CA (AWS_CA_BUNDLE or --ca-bundle, boto3 verify=, "
            "Azure SDK connection_verify=, KEYCASK_CACERT)\n",
            flush=True,
        )
    _console_banner(settings)


def _console_banner(settings: config.Settings) -> None:
    if settings.console:
        print(f"web console: {settings.endpoint_url}/console/", flush=True)


async def _prepare(runtime: Runtime) -> tuple[Path, Path]:
    """First start: the dev administrator and its AWS profile (audited)."""
    config_file, credentials_file, created = await ensure_dev_profile(runtime)
    if created:
        await runtime.audit.append(
            local_record(
                "keycask:CreatePrincipal", f"dev admin profile written to {config_file.name}"
            )
        )
    return config_file, credentials_file


def _production_banner(runtime: Runtime) -> None:
    settings = runtime.settings
    state = "SEALED" if runtime.keeper.sealed else "unsealed"
    print(
        f"keycask is serving the AWS KMS API at {settings.endpoint_url} "
        f"({state}, {runtime.keeper.kind} seal).",
        flush=True,
    )
    _console_banner(settings)
    if runtime.keeper.sealed:
        # A command that works as printed: the address, the CA and the token
        # (which only the operators hold). The certificate `init
        # --tls-self-signed` made is its own CA; one a CA issued is trusted
        # through that CA's file, which only the operators know.
        own = settings.data_dir / config.TLS_DIR / config.TLS_CERT_FILE
        ca = (
            f" KEYCASK_CACERT={settings.tls_cert}"
            if settings.tls_cert is not None and settings.tls_cert == own.resolve()
            else ""
        )
        print(
            "KMS calls answer KMSInvalidStateException until operators unseal it with the "
            "seal's input (shares, passphrase or PIN) and the operator token from "
            "`keycask operator init`:\n"
            f"  KEYCASK_ADDR={settings.endpoint_url}{ca} "
            "KEYCASK_OPERATOR_TOKEN_FILE=/path/to/operator-token keycask operator unseal",
            flush=True,
        )
    if settings.insecure_plaintext:
        _warn(
            "insecure_plaintext",
            "WARNING: --insecure-plaintext: requests travel unencrypted to this "
            "process; only safe behind a TLS-terminating load balancer on a trusted network.",
        )


async def _serve_single(
    settings: config.Settings,
    unseal: UnsealInput | None = None,
    *,
    metrics_listen: str | None = None,
) -> int:
    runtime = await build(settings, unseal=unseal)
    try:
        sock = serving.listen(settings)
        metrics_sock = (
            serving.bind(*serving.metrics_address(metrics_listen)) if metrics_listen else None
        )
        if settings.dev:
            config_file, credentials_file = await _prepare(runtime)
            _banner(settings, config_file, credentials_file)
        else:
            _production_banner(runtime)
        await serving.run_until_signalled(
            runtime, sock, metrics_sock, log_requests=logformat.configured() == "json"
        )
    finally:
        await runtime.close()
    return 0


async def _prepare_only(settings: config.Settings) -> tuple[Path, Path]:
    runtime = await build(settings, worker=0, scheduler=False)
    try:
        return await _prepare(runtime)
    finally:
        await runtime.close()


def _worker_command(settings: config.Settings) -> serving.WorkerCommand:
    """How the supervisor starts worker ``slot`` on its listening socket."""

    def command(slot: int, fd: int, metrics_fd: int | None) -> list[str]:
        argv = [
            sys.executable, "-m", "keycask.cli", "server", "--dev",
            "--data-dir", str(settings.data_dir),
            "--listen", f"{settings.host}:{settings.port}",
            "--account-id", settings.account_id, "--region", settings.region,
            "--partition", settings.partition,
            "--worker-slot", str(slot), "--listen-fd", str(fd),
            "--supervisor-pid", str(os.getpid()),
            "--log-format", logformat.configured(),
        ]  # fmt: skip
        if metrics_fd is not None:
            argv += ["--metrics-listen-fd", str(metrics_fd)]
        if settings.node_id is not None:
            argv += ["--node-id", f"{settings.node_id}-{slot}"]
        argv.append("--console" if settings.console else "--no-console")
        for spec in settings.hsm:
            argv += ["--hsm", spec]
        for pin_file in settings.hsm_pin_files:
            argv += ["--hsm-pin-file", pin_file]
        if settings.xks_path_prefix:
            argv += ["--xks-path-prefix", settings.xks_path_prefix]
        if settings.xks_client_subject is not None:
            argv += ["--xks-client-subject", settings.xks_client_subject]
        for project, account in settings.gcp_projects:
            argv += ["--gcp-project", f"{project}={account}"]
        if settings.proxy_from:
            argv += ["--proxy-protocol-from", ",".join(map(str, settings.proxy_from))]
        for flag, path in (
            ("--tls-cert", settings.tls_cert),
            ("--tls-key", settings.tls_key),
            ("--tls-client-ca", settings.tls_client_ca),
            ("--xks-client-ca", settings.xks_client_ca),
        ):
            if path is not None:
                argv += [flag, str(path)]
        return argv

    return command


def _supervise(settings: config.Settings, workers: int, metrics_listen: str | None) -> int:
    config_file, credentials_file = asyncio.run(_prepare_only(settings))
    return serving.supervise(
        settings,
        workers,
        _worker_command(settings),
        lambda: _banner(settings, config_file, credentials_file),
        metrics_listen,
    )


def cmd_server(args: argparse.Namespace) -> int:
    logformat.configure(args.log_format)
    if args.metrics_listen:
        serving.metrics_address(args.metrics_listen)  # a typo: refused before anything starts
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
        tls_self_signed=args.tls_self_signed,
        pkcs11_modules=args.pkcs11_module or (),
        storage_insecure=args.storage_insecure,
        console=args.console,
        hsm=args.hsm or (),
        hsm_pin_files=args.hsm_pin_file or (),
        xks_path_prefix=args.xks_path_prefix,
        xks_client_ca=args.xks_client_ca,
        xks_client_subject=args.xks_client_subject,
        gcp_projects=args.gcp_project or (),
    )
    try:
        # Bad flags or an unreadable PIN file: refused before anything starts.
        hsm_registry.parse(settings.hsm, settings.hsm_pin_files, os.environ)
    except hsm_registry.HsmConfigError as error:
        raise config.ConfigError(str(error)) from None
    if settings.tls_self_signed and args.worker_slot is None:
        print(devtls.ensure(settings), flush=True)
    serving.tls(settings)  # unreadable or mismatched files: refuse before anything starts
    import uvloop

    if not settings.dev:
        if args.workers > 1 or args.worker_slot is not None:
            # Each process would hold its own seal state: an unseal or a seal
            # would reach one of them. One process per node until they share it.
            raise config.ConfigError("a production server runs one process: drop --workers")
        return uvloop.run(
            _serve_single(settings, startup_unseal(args), metrics_listen=args.metrics_listen)
        )

    if args.worker_slot is not None:
        return uvloop.run(
            serving.serve_worker(
                settings,
                args.worker_slot,
                args.listen_fd,
                args.supervisor_pid,
                metrics_fd=args.metrics_listen_fd,
                log_requests=logformat.configured() == "json",
            )
        )
    if args.workers > 1:
        if args.workers > LOCAL_OPERATOR_SLOT:
            # The last slot is a local operator's command's (app.local_coordinator).
            raise config.ConfigError(f"--workers takes at most {LOCAL_OPERATOR_SLOT}")
        return _supervise(settings, args.workers, args.metrics_listen)
    return uvloop.run(_serve_single(settings, metrics_listen=args.metrics_listen))


def add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--tls-self-signed",
        action="store_true",
        help="with --dev: serve HTTPS with a self-signed certificate for localhost, "
        "127.0.0.1 and ::1 (and the --listen host) in the data dir's tls/, made on the "
        "first start and kept across restarts; clients trust tls/cert.pem as their CA. "
        "Not with --tls-cert, and not without --dev: a production server serves the "
        "certificate `operator init --tls-self-signed` made without this flag",
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
        "--console",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the web console at /console/ (default: on with --dev on loopback or "
        "TLS, else off; refused over plain HTTP off loopback)",
    )
    server.add_argument(
        "--xks-path-prefix",
        metavar="PREFIX",
        help="serve the XKS proxy API (docs/xks.md) at PREFIX/kms/xks/v1 (e.g. /keystore-1; "
        "env KEYCASK_XKS_PATH_PREFIX; default none: /kms/xks/v1); requests under another "
        "prefix are answered InvalidUriPathException",
    )
    server.add_argument(
        "--xks-client-ca",
        metavar="PEM",
        help="mutual TLS for the XKS proxy API: its requests must come with a client "
        "certificate issued by this CA (for AWS KMS: the Amazon Trust Services roots); other "
        "doors do not ask for one (env KEYCASK_XKS_CLIENT_CA; needs --tls-cert)",
    )
    server.add_argument(
        "--xks-client-subject",
        metavar="CN",
        help="with --xks-client-ca: the client certificate's subject common name must be this "
        "(for AWS KMS: cks.kms.<region>.amazonaws.com; env KEYCASK_XKS_CLIENT_SUBJECT)",
    )
    add_startup_flags(server)
    server.add_argument(
        "--pkcs11-module",
        action="append",
        metavar="LIB",
        help="a PKCS#11 library this server may load (repeatable; env KEYCASK_PKCS11_MODULE, "
        "or KEYCASK_PKCS11_MODULES colon-separated): a PKCS#11 seal's library must be one, "
        "and so must the library of an `operator rekey --seal pkcs11` to this server",
    )
    server.add_argument(
        "--hsm",
        action="append",
        metavar="NAME[@ACCOUNT]=MODULE_PATH:TOKEN_LABEL",
        help="a PKCS#11 token for HSM-backed keys (custom key stores of type AWS_CLOUDHSM; "
        "repeatable): NAME is the CloudHsmClusterId that names it, cluster- and 11-16 "
        "letters or digits 2-7; it serves ACCOUNT only (default: the operator's account; "
        "see docs/hsm.md)",
    )
    server.add_argument(
        "--hsm-pin-file",
        action="append",
        metavar="[NAME=]FILE",
        help="the PIN of the --hsm token in FILE (NAME=FILE for each when there are several; "
        "or env KEYCASK_HSM_PIN for a single token)",
    )
    server.add_argument(
        "--proxy-protocol-from",
        metavar="CIDR,...",
        help="load balancers (addresses or networks) whose connections start with a PROXY "
        "protocol v2 header naming the client: required from them, refused from anyone else "
        "(env KEYCASK_PROXY_PROTOCOL_FROM)",
    )
    server.add_argument(
        "--log-format",
        choices=logformat.FORMATS,
        default=os.environ.get("KEYCASK_LOG_FORMAT", "text"),
        help="the log on stderr: text lines, or one JSON object per event (env KEYCASK_LOG_FORMAT)",
    )
    server.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get("KEYCASK_METRICS_LISTEN"),
        help="also serve GET /metrics, without authentication, on this separate address "
        "(plain HTTP; env KEYCASK_METRICS_LISTEN). On the API port /metrics answers "
        "loopback peers, and elsewhere a principal allowed keycask:GetMetrics",
    )
    server.add_argument(
        "--gcp-project",
        action="append",
        metavar="PROJECT=ACCOUNT",
        help="the Google Cloud KMS door: the keycask account a project id names (repeat "
        "per project; env KEYCASK_GCP_PROJECTS, comma-separated). Without it every "
        "project is the caller's own account (docs/gcp-kms.md)",
    )
    server.add_argument("--metrics-listen-fd", type=int, help=argparse.SUPPRESS)
    server.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    server.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    server.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    server.set_defaults(func=cmd_server)
