"""``keycask server | principals ... | audit ...``"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from keycask import config
from keycask.app import AUDIT_DIR, Runtime, build, ensure_dev_profile, open_store
from keycask.audit import AuditLog, AuditRecord, verify
from keycask.auth.credentials import CredentialStore
from keycask.errors import KMSError, SealError
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


async def _serve(settings: config.Settings) -> int:
    import uvicorn

    runtime: Runtime = await build(settings)
    try:
        print(WARNING.format(path=DevSeal(settings.data_dir).path), file=sys.stderr, flush=True)
        config_file, credentials_file, created = await ensure_dev_profile(runtime)
        if created:
            await runtime.audit.append(
                _admin_record(
                    "keycask:CreatePrincipal", config_file.name, "dev admin profile written to"
                )
            )
        print(
            "keycask is serving the AWS KMS API at "
            f"{settings.endpoint_url} (account {settings.account_id}, region {settings.region}).\n"
            "To use it from the AWS CLI or any AWS SDK, run:\n\n"
            f"  export AWS_CONFIG_FILE={config_file}\n"
            f"  export AWS_SHARED_CREDENTIALS_FILE={credentials_file}\n\n"
            "then: aws --profile keycask kms list-keys\n",
            flush=True,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                runtime.app,
                host=settings.host,
                port=settings.port,
                loop="uvloop",
                http="httptools",
                lifespan="on",
                access_log=False,
                log_level="warning",
                timeout_keep_alive=30,
                timeout_graceful_shutdown=10,
            )
        )
        # Everything built so far lives as long as the process: keep the
        # cyclic collector from walking it on every full collection.
        gc.freeze()
        await server.serve()
    finally:
        await runtime.close()
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    settings = config.load(
        dev=args.dev,
        listen=args.listen,
        data_dir=args.data_dir,
        account_id=args.account_id,
        region=args.region,
    )
    import uvloop

    # SIGTERM must run the graceful shutdown path, as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return uvloop.run(_serve(settings))
    except KeyboardInterrupt:
        return 0


async def _create_principal(args: argparse.Namespace) -> int:
    settings = config.load(dev=True, data_dir=args.data_dir, account_id=args.account)
    storage, barrier = await open_store(settings)
    audit = AuditLog.open(settings.data_dir / AUDIT_DIR, "cli")
    try:
        store = CredentialStore(barrier)
        key = await store.create_principal(settings.account_id, args.name, admin=args.admin)
        audit.append_sync(_admin_record("keycask:CreatePrincipal", key.principal.arn, "created"))
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


def cmd_audit_verify(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or config.DEFAULT_DATA_DIR)
    result = verify(data_dir / AUDIT_DIR)
    if result.ok:
        print(f"ok: {result.records} records in {result.segments} segments")
        return 0
    print(f"FAILED: {result.file} line {result.line}: {result.problem}")
    return 1


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
