"""``keycask operator init | status | unseal | seal | rotate | rekey | backup | restore``

``init``, ``backup`` and ``restore`` work on a data directory directly (the
local operator's access to it is already total). The others are
``KeycaskOperator`` calls to the server at ``KEYCASK_ADDR`` (default: the
local listen address, over HTTPS when the data dir has the certificate that
``init --tls-self-signed`` made), authenticated with the operator token from
``KEYCASK_OPERATOR_TOKEN`` or ``--token-file``.

Secrets never come from argv, where every user on the host can read them:
passphrases and PINs come from a prompt, a file or the environment. Shares
may be typed at the prompt (recommended) or, as the one exception, given as
the argument, since a share alone opens nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from keycask import config
from keycask.app import ADMIN_NAME, AUDIT_DIR, STORE_FILE
from keycask.audit import AuditLog, anchor
from keycask.auth import operator_token
from keycask.auth.credentials import CredentialStore
from keycask.barrier import Barrier
from keycask.cli_support import CallError, local_record, post_json
from keycask.crypto import KeyMaterial, self_signed_certificate
from keycask.ports import Storage
from keycask.seal import SEAL_FILE, PassphraseSeal
from keycask.seal.pkcs11 import Pkcs11Seal
from keycask.seal.shamir import ShamirSeal
from keycask.service.sealing import RESTORED_MARKER
from keycask.storage.backup import BackupError, create_backup, restore_backup
from keycask.storage.postgres import PostgresStorage
from keycask.storage.sqlite import SQLiteStorage

TARGET_PREFIX = "KeycaskOperator."
AUDIT_SEGMENT = "operator"


class OperatorError(CallError):
    """What to print: the server's ``<Code>: <message>``, or why the call failed."""


# -- talking to the server --


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(
        args.data_dir or os.environ.get("KEYCASK_DATA_DIR") or config.DEFAULT_DATA_DIR
    ).resolve()


def _address(args: argparse.Namespace) -> tuple[str, str | None]:
    """The server's URL and the CA file to trust for it, if any."""
    ca = args.ca_file or os.environ.get("KEYCASK_CACERT") or None
    addr = args.addr or os.environ.get("KEYCASK_ADDR")
    local_cert = _data_dir(args) / config.TLS_DIR / config.TLS_CERT_FILE
    if addr is None:
        host, port = config.parse_listen(os.environ.get("KEYCASK_LISTEN") or config.DEFAULT_LISTEN)
        scheme = "https" if local_cert.exists() else "http"
        addr = f"{scheme}://{host}:{port}"
    if ca is None and addr.startswith("https://") and local_cert.exists():
        ca = str(local_cert)
    return addr.rstrip("/"), ca


def _token(args: argparse.Namespace) -> str:
    token = os.environ.get("KEYCASK_OPERATOR_TOKEN")
    path = args.token_file or os.environ.get("KEYCASK_OPERATOR_TOKEN_FILE")
    if not token and path:
        token = Path(path).read_text().strip()
    if not token:
        raise OperatorError(
            "no operator token: set KEYCASK_OPERATOR_TOKEN or give --token-file "
            "(operator init printed it once)"
        )
    return token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token (and shares) to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _plaintext_ok(addr: str, args: argparse.Namespace) -> bool:
    host = urllib.parse.urlsplit(addr).hostname or ""
    if host == "localhost" or getattr(args, "insecure", False):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def call(args: argparse.Namespace, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    addr, ca = _address(args)
    if not addr.startswith("https://") and not _plaintext_ok(addr, args):
        raise OperatorError(
            f"refusing to send the operator token in plain HTTP to {addr}: use https://, "
            "or --insecure if the network is trusted"
        )
    request = urllib.request.Request(  # noqa: S310 - the operator's own server
        addr + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": TARGET_PREFIX + operation,
            "Authorization": "Bearer " + _token(args),
        },
    )
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if addr.startswith("https://"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca)))
    opener = urllib.request.build_opener(*handlers)
    return post_json(request, where=addr, timeout=120, opener=opener)


def _secret(prompt: str, file: str | None, env: str | None = None) -> str:
    """A secret from a file, the environment, a prompt, or one line of stdin."""
    if file:
        text = Path(file).read_text().strip()
    elif env and os.environ.get(env):
        text = os.environ[env]
    elif sys.stdin.isatty():
        text = getpass.getpass(prompt)
    else:
        text = sys.stdin.readline().strip()
    if not text:
        raise OperatorError(f"no {prompt.rstrip(': ').lower()} given")
    return text


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status))
        return
    print(f"sealed:    {str(status.get('sealed')).lower()}")
    print(f"seal:      {status.get('seal')}")
    if status.get("seal") == "shamir":
        print(f"progress:  {status.get('progress')}/{status.get('threshold')}")
    for name in ("term", "rewrite_pending", "keys", "jobs"):
        if name in status:
            print(f"{name + ':':<10} {status[name]}")


def cmd_status(args: argparse.Namespace) -> int:
    _print_status(call(args, "Status", {}), args.json)
    return 0


def cmd_unseal(args: argparse.Namespace) -> int:
    if args.share:
        body = {"Share": args.share}
    elif args.passphrase_file:
        body = {"Passphrase": _secret("Passphrase: ", args.passphrase_file)}
    elif args.pin_file:
        body = {"Pin": _secret("PIN: ", args.pin_file)}
    else:
        status = call(args, "Status", {})
        kind, pending = status.get("seal"), status.get("pending_seal")
        if pending is not None and pending != kind:
            raise OperatorError(
                f"a rekey from {kind} to {pending} was cut short, so either seal may open "
                "the store: give a share as the argument, or --pin-file or --passphrase-file"
            )
        if kind == "shamir":
            body = {"Share": _secret("Share: ", None)}
        elif kind == "passphrase":
            body = {"Passphrase": _secret("Passphrase: ", None, "KEYCASK_PASSPHRASE")}
        elif kind == "pkcs11":
            body = {"Pin": _secret("PIN: ", None, "KEYCASK_PKCS11_PIN")}
        else:
            raise OperatorError(f"a {kind} seal takes no unseal input")
    _print_status(call(args, "Unseal", body), args.json)
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    call(args, "Seal", {})
    print("sealed")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    answer = call(args, "Rotate", {})
    if args.json:
        print(json.dumps(answer))
    else:
        print(
            f"barrier rotated to term {answer['term']}; "
            "older values are rewritten in the background"
        )
    return 0


def _current_proof(args: argparse.Namespace) -> dict[str, Any]:
    """The current seal's secret, which a rekey must show: shares (a file with
    one per line, or the prompt), the passphrase or the PIN."""
    status = call(args, "Status", {})
    kind = status.get("seal")
    if kind == "shamir":
        if args.current_shares_file:
            lines = Path(args.current_shares_file).read_text().split()
        else:
            threshold = int(status.get("threshold", 0))
            lines = [
                _secret(f"Current share {i + 1}/{threshold}: ", None) for i in range(threshold)
            ]
        return {"Shares": lines}
    if kind == "passphrase":
        return {"Passphrase": _secret("Current passphrase: ", args.current_passphrase_file)}
    if kind == "pkcs11":
        return {"Pin": _secret("Current PIN: ", args.current_pin_file, "KEYCASK_PKCS11_PIN")}
    raise OperatorError(f"a {kind} seal cannot be rekeyed")


def cmd_rekey(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"Seal": args.seal, "Current": _current_proof(args)}
    if args.seal == "shamir":
        body.update(Shares=args.shares, Threshold=args.threshold)
    elif args.seal == "passphrase":
        body["Passphrase"] = _new_passphrase(args.passphrase_file)
    elif args.seal == "pkcs11":
        body.update(_pkcs11_fields(args))
    answer = call(args, "Rekey", body)
    _print_shares(answer, args.json, "rekeyed")
    return 0


def _print_shares(answer: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(answer))
        return
    if answer.get("settled", True):
        print(f"{what}: the root key is now under a {answer['seal']} seal")
    else:
        print(f"WARNING: {answer.get('note')}", file=sys.stderr)
    shares = answer.get("shares") or []
    if shares:
        print("\nShares (shown once; give one to each operator, store none together):")
        for line in shares:
            print(f"  {line}")


def _new_passphrase(file: str | None) -> str:
    if file:
        return _secret("Passphrase: ", file)
    if not sys.stdin.isatty():
        return _secret("Passphrase: ", None)
    first = getpass.getpass("New passphrase: ")
    if first != getpass.getpass("Again: "):
        raise OperatorError("the passphrases differ")
    if not first:
        raise OperatorError("the passphrase must not be empty")
    return first


def _pkcs11_fields(args: argparse.Namespace) -> dict[str, str]:
    missing = [
        flag
        for flag, value in (
            ("--pkcs11-module", args.pkcs11_module),
            ("--pkcs11-token-label", args.pkcs11_token_label),
            ("--pkcs11-key-label", args.pkcs11_key_label),
        )
        if not value
    ]
    if missing:
        raise OperatorError(f"a PKCS#11 seal needs {', '.join(missing)}")
    return {
        "Module": args.pkcs11_module,
        "TokenLabel": args.pkcs11_token_label,
        "KeyLabel": args.pkcs11_key_label,
        "Pin": _secret("PIN: ", args.pkcs11_pin_file, "KEYCASK_PKCS11_PIN"),
    }


# -- init, backup, restore: on the data directory --


def _init_seal(args: argparse.Namespace, data_dir: Path) -> tuple[KeyMaterial, list[str]]:
    if args.seal == "shamir":
        return ShamirSeal.init(data_dir, shares=args.shares, threshold=args.threshold)
    if args.seal == "passphrase":
        return PassphraseSeal.init(data_dir, _new_passphrase(args.passphrase_file)), []
    fields = _pkcs11_fields(args)
    root = Pkcs11Seal.init(
        data_dir,
        module=fields["Module"],
        token_label=fields["TokenLabel"],
        key_label=fields["KeyLabel"],
        pin=fields["Pin"],
    )
    return root, []


async def _initialise(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    account = args.account_id or os.environ.get("KEYCASK_ACCOUNT_ID") or config.DEFAULT_ACCOUNT
    config.load(dev=True, data_dir=str(data_dir), account_id=account)  # validates the account
    if data_dir.exists() and any(data_dir.iterdir()):
        raise OperatorError(f"{data_dir} is not empty; operator init needs a new data dir")
    settings = config.load(dev=False, data_dir=str(data_dir), storage=args.storage)
    storage: Storage
    if settings.storage is not None:
        storage = await PostgresStorage.open(settings.storage)
        if await Barrier(storage).initialised():
            await storage.close()
            raise OperatorError(
                "that PostgreSQL store is already initialised: copy seal.json and "
                "operator.json from the first node's data dir instead"
            )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    try:
        root, shares = _init_seal(args, data_dir)
    except BaseException:
        if settings.storage is not None:
            await storage.close()
        raise
    if settings.storage is None:
        storage = SQLiteStorage(data_dir / STORE_FILE)
    audit = AuditLog.open(data_dir / AUDIT_DIR, AUDIT_SEGMENT)
    try:
        barrier = Barrier(storage)
        await barrier.initialise(root)
        credentials = CredentialStore(barrier)
        key, writes = await credentials.stage_create_principal(
            account, ADMIN_NAME, admin=True, kind="user", tags={}
        )
        audit.append_sync(
            local_record(
                "KeycaskOperator.Init",
                f"initialised with a {args.seal} seal; administrator {key.principal.arn} "
                f"and access key {key.access_key_id} created",
            )
        )
        await credentials.commit(writes)
        await anchor.save(barrier, audit.segment, audit.tip)
    finally:
        audit.close()
        await storage.close()
    token = operator_token.create(data_dir)
    result: dict[str, Any] = {
        "seal": args.seal,
        "data_dir": str(data_dir),
        "operator_token": token,
        "admin": {
            "account": account,
            "arn": key.principal.arn,
            "access_key_id": key.access_key_id,
            "secret_access_key": key.secret,
        },
    }
    if args.seal == "shamir":
        result.update(shares=shares, threshold=args.threshold)
    if args.tls_self_signed:
        cert, private = self_signed_certificate(
            args.tls_hostname or ["localhost"], args.tls_ip or ["127.0.0.1", "::1"]
        )
        tls_dir = data_dir / config.TLS_DIR
        tls_dir.mkdir(mode=0o700)
        _write_private(tls_dir / config.TLS_KEY_FILE, private)
        _write_private(tls_dir / config.TLS_CERT_FILE, cert)
        result["tls_cert"] = str(tls_dir / config.TLS_CERT_FILE)
    return result


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    result = asyncio.run(_initialise(args, data_dir))
    if args.json:
        print(json.dumps(result))
        return 0
    admin = result["admin"]
    print(f"keycask initialised in {data_dir} with a {args.seal} seal.\n")
    if result.get("shares"):
        print(
            f"Unseal shares ({result['threshold']} of {len(result['shares'])} open the "
            "server; shown once, store each apart):"
        )
        for line in result["shares"]:
            print(f"  {line}")
        print()
    print(f"Operator token (shown once): {result['operator_token']}")
    print(f"Administrator {admin['arn']}:")
    print(f"  aws_access_key_id = {admin['access_key_id']}")
    print(f"  aws_secret_access_key = {admin['secret_access_key']}")
    if "tls_cert" in result:
        print(f"\nSelf-signed TLS certificate: {result['tls_cert']}")
    print(f"\nNext: keycask server --data-dir {data_dir}, then keycask operator unseal")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    if not (data_dir / STORE_FILE).exists():
        raise OperatorError(f"{data_dir} holds no keycask store")
    info = create_backup(data_dir, Path(args.file))
    print(f"backup written to {args.file}: {len(info.files)} files, store {info.db_bytes} bytes")
    for note in info.notes:
        print(f"note: {note}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    info = restore_backup(Path(args.file), data_dir)
    marker = data_dir / RESTORED_MARKER
    marker.write_text(f"restored from {args.file}\n")
    marker.chmod(0o600)
    print(f"restored {len(info.files)} files (backup of {info.created}) into {data_dir}")
    if not (data_dir / SEAL_FILE).exists():
        print("note: the backup holds no seal file; only the original dev key opens it")
    return 0


def _guard(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = command(args)
        except (CallError, BackupError, OSError) as error:
            print(f"keycask: {error}", file=sys.stderr)
            return 1
        return code

    return run


def add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operator = sub.add_parser(
        "operator", help="production mode: init, unseal, seal, rotate, rekey, backup"
    ).add_subparsers(dest="operator_command", required=True)

    def remote(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--addr", help="server URL (env KEYCASK_ADDR)")
        parser.add_argument("--ca-file", help="CA bundle for an HTTPS server (env KEYCASK_CACERT)")
        parser.add_argument("--token-file", help="operator token file (env KEYCASK_OPERATOR_TOKEN)")
        parser.add_argument("--data-dir", help="the server's data dir, for its TLS certificate")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="allow plain HTTP to a non-loopback address (a trusted network only)",
        )
        return parser

    def pkcs11(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--pkcs11-module", help="path of the PKCS#11 library")
        parser.add_argument("--pkcs11-token-label", help="label of the token")
        parser.add_argument("--pkcs11-key-label", help="label for the wrapping key to create")
        parser.add_argument(
            "--pkcs11-pin-file", help="file holding the PIN (or env KEYCASK_PKCS11_PIN)"
        )

    def seal_choice(parser: argparse.ArgumentParser, required: bool) -> None:
        parser.add_argument(
            "--seal",
            choices=["shamir", "passphrase", "pkcs11"],
            required=required,
            default=None if required else "shamir",
        )
        parser.add_argument("--shares", type=int, default=5, help="Shamir: shares to make")
        parser.add_argument("--threshold", type=int, default=3, help="Shamir: shares needed")
        parser.add_argument("--passphrase-file", help="passphrase seal: read it from this file")
        pkcs11(parser)

    init = operator.add_parser("init", help="initialise a production data directory")
    init.add_argument("--data-dir", help="a new, empty data directory")
    init.add_argument("--account-id", help="account of the first administrator")
    init.add_argument(
        "--storage", metavar="DSN", help="a PostgreSQL store for a cluster (env KEYCASK_STORAGE)"
    )
    init.add_argument("--json", action="store_true", help="print JSON")
    init.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="also make a self-signed certificate for a first start (data dir tls/)",
    )
    init.add_argument("--tls-hostname", action="append", help="DNS name for it (repeatable)")
    init.add_argument("--tls-ip", action="append", help="IP address for it (repeatable)")
    seal_choice(init, required=False)
    init.set_defaults(func=_guard(cmd_init))

    remote(operator.add_parser("status", help="sealed or not, seal, term")).set_defaults(
        func=_guard(cmd_status)
    )
    unseal = remote(operator.add_parser("unseal", help="give one share, the passphrase or PIN"))
    unseal.add_argument("share", nargs="?", help="a share (prefer the prompt: leave this out)")
    unseal.add_argument("--passphrase-file")
    unseal.add_argument("--pin-file")
    unseal.set_defaults(func=_guard(cmd_unseal))
    remote(operator.add_parser("seal", help="drop every key from memory")).set_defaults(
        func=_guard(cmd_seal)
    )
    remote(operator.add_parser("rotate", help="start a new barrier term")).set_defaults(
        func=_guard(cmd_rotate)
    )
    rekey = remote(operator.add_parser("rekey", help="move the root key to a new seal"))
    seal_choice(rekey, required=True)
    rekey.add_argument(
        "--current-shares-file", help="current Shamir shares, one per line (else prompted)"
    )
    rekey.add_argument("--current-passphrase-file", help="the current passphrase")
    rekey.add_argument(
        "--current-pin-file", help="the current PKCS#11 PIN (or env KEYCASK_PKCS11_PIN)"
    )
    rekey.set_defaults(func=_guard(cmd_rekey))

    backup = operator.add_parser("backup", help="consistent snapshot of the store, online")
    backup.add_argument("file")
    backup.add_argument("--data-dir")
    backup.set_defaults(func=_guard(cmd_backup))
    restore = operator.add_parser("restore", help="restore a backup into an empty data dir")
    restore.add_argument("file")
    restore.add_argument("--data-dir", required=True)
    restore.set_defaults(func=_guard(cmd_restore))


__all__ = ["add_operator_commands", "call"]
