"""``keycask operator init | status | unseal | seal | rotate | rekey | rekey-verify |
rekey-cancel | rotate-token | backup | restore``

Why one module of ~1,000 lines: every ``keycask operator`` command shares
the same secret handling (owner-only files, prompts, never argv), the same
token and address resolution and the same output rules, and keeping them in
one place is how a command cannot quietly take a secret another way. What
differs by seal type (flags, prompts, environment variables) each seal type
declares (``seal/types.py``); nothing here names one.

``init`` and ``restore`` work on a data directory directly (the local
operator's access to it is already total); ``backup`` reads the data dir
directly and asks the server for the backup's MAC. The others are
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
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from keycask import config, privatefile
from keycask.app import ADMIN_NAME, AUDIT_DIR, STORE_FILE, connect_store
from keycask.audit import AuditLog, anchor
from keycask.auth import operator_token
from keycask.auth.credentials import CredentialStore
from keycask.barrier import Barrier
from keycask.cli.client import (
    CallError,
    add_connection_options,
    data_dir,
    local_record,
    opener,
    post_json,
    resolve_ca,
    resolve_endpoint,
)
from keycask.cli.renewtls import add_renew_tls
from keycask.crypto import (
    KeyMaterial,
    ShareBoxError,
    check_public_key,
    open_with_private_key,
    seal_to_public_key,
    self_signed_certificate,
)
from keycask.crypto.backup_mac import backup_tag
from keycask.ports import Storage
from keycask.seal import SEAL_FILE, Secret, registry, seal_type
from keycask.seal.dev import ROOT_KEY_FILE as DEV_ROOT_KEY_FILE
from keycask.seal.dev import DevSeal
from keycask.seal.shamir import ShareCollector
from keycask.seal.types import SealParams, SealType, SecretSource
from keycask.service.sealing import RESTORED_MARKER
from keycask.storage.backup import (
    Tagger,
    backup_seal_file,
    create_backup,
    restore_backup,
)

TARGET_PREFIX = "KeycaskOperator."
AUDIT_SEGMENT = "operator"


class OperatorError(CallError):
    """What to print: the server's ``<Code>: <message>``, or why the call failed."""


# -- talking to the server --


def _data_dir(args: argparse.Namespace) -> Path:
    return data_dir(args)


def _address(args: argparse.Namespace) -> tuple[str, str | None]:
    """The server's URL and the CA file to trust for it, if any."""
    endpoint = resolve_endpoint(args).value
    assert endpoint is not None
    return endpoint, resolve_ca(args, endpoint).value


def read_private(path: str | Path, what: str) -> str:
    """A secret from a file that only its owner may read: a file others can
    read has already leaked whatever it holds, so it is refused (and the
    operator replaces the secret), never used."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
    except OSError as error:
        raise OperatorError(f"cannot read the {what} file {file}: {error.strerror}") from None
    if mode & 0o077:
        raise OperatorError(
            f"the {what} file {file} is readable by others (mode {mode & 0o777:o}): "
            "refusing to use it; chmod 600 it (and consider the secret exposed)"
        )
    return file.read_text()


def _token(args: argparse.Namespace) -> str:
    # The file first: a token in the environment is visible to every process
    # of the same user (and in /proc to root), and lands in shell history.
    path = args.token_file or os.environ.get("KEYCASK_OPERATOR_TOKEN_FILE")
    token = read_private(path, "operator token").strip() if path else None
    if not token:
        token = os.environ.get("KEYCASK_OPERATOR_TOKEN")
    if not token:
        raise OperatorError(
            "no operator token: set KEYCASK_OPERATOR_TOKEN or give --token-file "
            "(operator init printed it once)"
        )
    return token


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
    return post_json(request, where=addr, timeout=120, opener=opener(addr, ca))


def _secret(prompt: str, file: str | None, env: str | None = None) -> str:
    """A secret from a file, the environment, a prompt, or one line of stdin."""
    if file:
        text = read_private(file, prompt.rstrip(": ").lower()).strip()
    elif env and os.environ.get(env):
        text = os.environ[env]
    elif sys.stdin.isatty():
        text = getpass.getpass(prompt)
    else:
        text = sys.stdin.readline().strip()
    if not text:
        raise OperatorError(f"no {prompt.rstrip(': ').lower()} given")
    return text


def _word(value: object) -> str:
    """A status value in words: booleans as true/false, as the JSON has them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status))
        return
    sealed = status.get("sealed")
    print(f"sealed:    {_word(sealed)}")
    print(f"seal:      {status.get('seal')}")
    if sealed and "shares" in status:  # a seal of shares: how many were given so far
        print(f"progress:  {status.get('progress')}/{status.get('threshold')} shares given")
    if "term" in status:
        print(f"term:      {status['term']}")
    if "rewrite_pending" in status:
        rewrite = status["rewrite_pending"]
        state = "true (older terms are being rewritten)" if rewrite else "false"
        print(f"rewrite_pending: {state}")
    for name in ("keys", "jobs"):
        if name in status:
            print(f"{name + ':':<10} {_word(status[name])}")
    if "runs_jobs" in status:
        whose = "this node runs" if status["runs_jobs"] else "another node runs"
        print(f"runs_jobs: {_word(status['runs_jobs'])} ({whose} the scheduled jobs)")
    collecting = status.get("rekey_authorisation")
    if isinstance(collecting, dict):
        print(
            f"rekey:     to {collecting.get('seal')}: {collecting.get('progress')}/"
            f"{collecting.get('threshold')} current shares given (operator rekey --one-share)"
        )
    rekey = status.get("rekey")
    if isinstance(rekey, dict):
        progress = (
            f", {rekey.get('progress')}/{rekey.get('threshold')} new shares given back"
            if "threshold" in rekey  # a rekey to a seal of shares
            else ""
        )
        print(
            f"rekey:     pending to {rekey.get('seal')}{progress} "
            "(operator rekey-verify, or operator rekey-cancel)"
        )
    if "reason" in status:  # it sealed itself
        print(f"reason:    {status['reason']}")


def cmd_status(args: argparse.Namespace) -> int:
    _print_status(call(args, "Status", {}), args.json)
    return 0


def _unseal_files() -> list[SecretSource]:
    """The file flags of ``operator unseal``, one per seal type that has one."""
    sources: dict[str, SecretSource] = {}
    for kind in registry.SEAL_TYPES.values():
        source = kind.unseal_secret
        if source.flag is not None:
            sources.setdefault(source.flag, source)
    return list(sources.values())


def _unseal_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """The Unseal body the command line names (a share, or a secret's file);
    None: ask the server which seal it has, then prompt."""
    if args.share:
        return {Secret.SHARES.field: args.share}
    for kind in registry.SEAL_TYPES.values():
        source = kind.unseal_secret
        path = getattr(args, source.dest, None) if source.dest else None
        if path:
            return {kind.secret.field: _secret(source.prompt, path)}
    return None


def cmd_unseal(args: argparse.Namespace) -> int:
    if args.reset:
        _print_status(call(args, "Unseal", {"Reset": True}), args.json)
        return 0
    body = _unseal_from_flags(args)
    if body is None:
        status = call(args, "Status", {})
        kind, pending = status.get("seal"), status.get("pending_seal")
        if pending is not None and pending != kind:
            flags = " or ".join(str(source.flag) for source in _unseal_files())
            raise OperatorError(
                f"a rekey from {kind} to {pending} was cut short, so either seal may open "
                f"the store: give a share as the argument, or {flags}"
            )
        found = registry.find(kind)
        if found is None:
            raise OperatorError(f"a {kind} seal takes no unseal input")
        source = found.unseal_secret
        body = {found.secret.field: _secret(source.prompt, None, source.env)}
    _print_status(call(args, "Unseal", body), args.json)
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    answer = call(args, "Seal", {})
    print(json.dumps(answer) if args.json else "sealed")
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
    current = registry.find(kind)
    if current is None:
        raise OperatorError(f"a {kind} seal cannot be rekeyed")
    source = current.current_secret
    path = getattr(args, source.dest, None) if source.dest else None
    if current.secret is Secret.SHARES and args.one_share:
        return {"Shares": [_secret("Your current share: ", None)], "Collect": True}
    if current.secret is Secret.SHARES:
        if path:
            lines = read_private(path, "current shares").split()
        else:
            threshold = int(status.get("threshold", 0))
            lines = [
                _secret(f"Current share {i + 1}/{threshold}: ", None) for i in range(threshold)
            ]
        return {"Shares": lines}
    return {current.secret.field: _secret(source.prompt, path, source.env)}


def cmd_rekey(args: argparse.Namespace) -> int:
    target = registry.get(args.seal)
    body: dict[str, Any] = {"Seal": args.seal, "Current": _current_proof(args)}
    body.update(_target_options(target, args))
    if target.secret is Secret.SHARES and args.share_keys:
        body["ShareKeys"] = _share_keys(args.share_keys, int(body["Shares"]))
    body.update(_target_secret(target, args))
    output = _OutputDir(Path(args.output_dir)) if args.output_dir else None
    answer = call(args, "Rekey", body)
    if answer.get("authorising"):
        if args.json:
            print(json.dumps(answer))
        else:
            print(
                f"current shares given: {answer.get('progress')}/{answer.get('threshold')}; "
                "the next operator runs the same command with their share"
            )
        return 0
    if output is not None and answer.get("shares"):
        answer["shares"] = output.shares(answer.pop("shares"), bool(answer.get("encrypted")))
    if answer.get("pending"):
        _print_pending(answer, args.json)
    else:
        _print_shares(answer, args.json, "rekeyed")
    return 0


def _print_pending(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer))
        return
    shares = answer.get("shares") or []
    if shares:
        if answer.get("encrypted"):
            print("\nNew shares, each sealed to its operator's key (in --share-keys order):")
        else:
            print("\nNew shares (shown once; give one to each operator, store none together):")
        for line in shares:
            print(f"  {line}")
        print(
            f"\nNothing has changed yet: the current seal stays until {answer.get('threshold')} "
            "of these shares are given back with `keycask operator rekey-verify` "
            "(`operator rekey-cancel` discards them)."
        )
    else:
        print(
            f"rekey to a {answer.get('seal')} seal started: nothing has changed yet; "
            "give the new passphrase again with `keycask operator rekey-verify` "
            "(`operator rekey-cancel` discards it)"
        )


def cmd_rekey_verify(args: argparse.Namespace) -> int:
    status = call(args, "Status", {})
    pending = status.get("rekey")
    if not isinstance(pending, dict):
        raise OperatorError("no rekey is pending: start one with `keycask operator rekey`")
    body: dict[str, Any]
    target = registry.find(pending.get("seal"))
    if target is not None and target.secret is not Secret.SHARES and target.new_secret:
        path = getattr(args, target.new_secret.dest or "", None)
        body = {target.secret.field: _secret(f"New {target.secret.noun}: ", path)}
    elif args.shares_file:
        body = {"Shares": read_private(args.shares_file, "new shares").split()}
    elif args.share:
        body = {"Share": args.share}
    else:
        body = {"Share": _secret("New share: ", None)}
    answer = call(args, "RekeyVerify", body)
    if args.json:
        print(json.dumps(answer))
    elif answer.get("pending"):
        print(
            f"rekey verification: {answer.get('progress')}/{answer.get('threshold')} "
            "new shares given back; the current seal still opens the store"
        )
    else:
        _print_shares(answer, False, "rekeyed")
    return 0


def cmd_rekey_cancel(args: argparse.Namespace) -> int:
    answer = call(args, "RekeyCancel", {})
    if args.json:
        print(json.dumps(answer))
    else:
        print("pending rekey cancelled: the current seal stays")
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


def _share_keys(files: str, count: int) -> list[str]:
    """The PEM public keys named (comma-separated), one per share."""
    paths = [name for name in files.split(",") if name]
    if len(paths) != count:
        raise OperatorError(f"--share-keys names {len(paths)} keys for {count} shares")
    keys = []
    for name in paths:
        try:
            keys.append(Path(name).read_text())
        except OSError as error:
            raise OperatorError(f"cannot read {name}: {error.strerror}") from None
    for name, pem in zip(paths, keys, strict=True):
        try:
            check_public_key(pem.encode())
        except ShareBoxError as error:
            raise OperatorError(f"{name}: {error}") from None
    return keys


class _OutputDir:
    """Secrets written by keycask itself, one owner-only file each (0600 in a
    0700 directory, never overwriting), instead of all on stdout where a
    redirect makes one world-readable file of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            if not path.is_dir():
                raise OperatorError(f"{path} exists and is not a directory")
            if path.stat().st_mode & 0o077:
                raise OperatorError(f"{path} is open to others: chmod 700 it first")
        else:
            path.mkdir(mode=0o700, parents=True)

    def write(self, name: str, text: str) -> str:
        target = self.path / name
        try:
            privatefile.write_new(target, text)
        except FileExistsError:
            raise OperatorError(f"{target} already exists: refusing to overwrite it") from None
        return str(target)

    def shares(self, lines: list[str], encrypted: bool) -> list[str]:
        """Writes one file per share; returns their paths."""
        suffix = "enc" if encrypted else "txt"
        for number in range(1, len(lines) + 1):
            if (self.path / f"share-{number}.{suffix}").exists():
                raise OperatorError(f"{self.path}/share-{number}.{suffix} already exists")
        return [
            self.write(f"share-{number}.{suffix}", line + "\n")
            for number, line in enumerate(lines, 1)
        ]


def cmd_decrypt_share(args: argparse.Namespace) -> int:
    """An operator opens the share sealed to their key; the share line goes
    to stdout, for a pipe into `operator unseal` or `operator rekey-verify`."""
    private = read_private(args.private_key, "private key").encode()
    password = (
        read_private(args.password_file, "private key password").rstrip("\n").encode()
        if args.password_file
        else None
    )
    sealed = sys.stdin.read() if args.file in (None, "-") else Path(args.file).read_text()
    try:
        share = open_with_private_key(private, sealed.strip(), password)
    except ShareBoxError as error:
        raise OperatorError(str(error)) from None
    print(share.decode("ascii", "replace"))
    return 0


def _target_options(target: SealType, args: argparse.Namespace) -> dict[str, Any]:
    """A new seal's parameters from its flags (``Rekey`` fields); one
    without a default must be given."""
    fields: dict[str, Any] = {}
    missing = []
    for option in target.options:
        value = getattr(args, option.dest, None)
        if value is None or value == "":
            missing.append(option.flag)
        else:
            fields[option.field] = value
    if missing:
        raise OperatorError(f"a {target.title} seal needs {', '.join(missing)}")
    return fields


def _target_secret(target: SealType, args: argparse.Namespace) -> dict[str, str]:
    """The secret a new seal is made with, if its type takes one: from its
    file, its environment variable, or the prompt (a new one typed twice)."""
    source = target.new_secret
    if source is None:
        return {}
    path = getattr(args, source.dest, None) if source.dest else None
    noun = target.secret.noun
    if path or not source.confirm or not sys.stdin.isatty():
        return {target.secret.field: _secret(source.prompt, path, source.env)}
    first = getpass.getpass(f"New {noun}: ")
    if first != getpass.getpass("Again: "):
        raise OperatorError(f"the {noun}s differ")
    if not first:
        raise OperatorError(f"the {noun} must not be empty")
    return {target.secret.field: first}


# -- init, backup, restore: on the data directory --


def _init_seal(args: argparse.Namespace, data_dir: Path) -> tuple[KeyMaterial, list[str]]:
    target = registry.get(args.seal)
    fields = {**_target_options(target, args), **_target_secret(target, args)}
    params = SealParams.from_fields(fields)
    # The seal type's own checks (a passphrase's length among them), as a
    # rekey to it runs them; the server's module list is not known here.
    target.validate(params, modules=None)
    return target.initialise(data_dir, params, root=None, filename=SEAL_FILE)


async def _initialise(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    account = args.account_id or os.environ.get("KEYCASK_ACCOUNT_ID") or config.DEFAULT_ACCOUNT
    config.load(dev=True, data_dir=str(data_dir), account_id=account)  # validates the account
    if data_dir.exists() and any(data_dir.iterdir()):
        raise OperatorError(f"{data_dir} is not empty; operator init needs a new data dir")
    settings = config.load(dev=False, data_dir=str(data_dir), storage=args.storage)
    storage: Storage | None = None
    if settings.storage is not None:
        # A shared store is checked before anything is written here.
        storage = await connect_store(settings)
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
        if storage is not None:
            await storage.close()
        raise
    if storage is None:
        storage = await connect_store(settings)
    audit = AuditLog.open(data_dir / AUDIT_DIR, AUDIT_SEGMENT)
    try:
        barrier = Barrier(storage)
        await barrier.initialise(root)
        await anchor.adopt(barrier, audit)
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
    token = operator_token.create(data_dir, account)
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
    if shares:
        result.update(
            shares=shares, threshold=_target_options(registry.get(args.seal), args)["Threshold"]
        )
    if args.tls_self_signed:
        cert, private = self_signed_certificate(
            args.tls_hostname or ["localhost"], args.tls_ip or ["127.0.0.1", "::1"]
        )
        tls_dir = data_dir / config.TLS_DIR
        tls_dir.mkdir(mode=0o700)
        privatefile.write_new(tls_dir / config.TLS_KEY_FILE, private)
        privatefile.write_new(tls_dir / config.TLS_CERT_FILE, cert)
        result["tls_cert"] = str(tls_dir / config.TLS_CERT_FILE)
    return result


def _init_outputs(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """``--share-keys`` seals each share to its operator's key;
    ``--output-dir`` moves every secret of ``result`` into owner-only files,
    leaving their paths in its place."""
    shares = result.get("shares") or []
    if args.share_keys and shares:
        keys = _share_keys(args.share_keys, len(shares))
        result["shares"] = [
            seal_to_public_key(pem.encode(), line.encode())
            for pem, line in zip(keys, shares, strict=True)
        ]
        result["encrypted"] = True
    if not args.output_dir:
        return
    output = _OutputDir(Path(args.output_dir))
    if result.get("shares"):
        result["shares"] = output.shares(result["shares"], bool(result.get("encrypted")))
    result["operator_token"] = output.write("operator-token", result["operator_token"] + "\n")
    admin = result["admin"]
    result["admin"] = {
        "account": admin["account"],
        "arn": admin["arn"],
        "access_key_id": admin["access_key_id"],
        "credentials_file": output.write(
            "admin-credentials",
            "[keycask-admin]\n"
            f"aws_access_key_id = {admin['access_key_id']}\n"
            f"aws_secret_access_key = {admin['secret_access_key']}\n",
        ),
    }
    result["output_dir"] = str(output.path)


def _check_new_file(path: Path) -> None:
    """Refused before anything is made: the file must be new, in a directory
    that exists."""
    if path.exists() or path.is_symlink():
        raise OperatorError(f"{path} already exists: refusing to overwrite it")
    if not path.parent.is_dir():
        raise OperatorError(f"{path.parent} is not a directory")


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    target = registry.get(args.seal)
    if args.share_keys and target.secret is Secret.SHARES:
        # Before anything is created.
        _share_keys(args.share_keys, int(_target_options(target, args)["Shares"]))
    if args.output_dir:
        _OutputDir(Path(args.output_dir))  # refused before the data dir is made
    if args.output:
        _check_new_file(Path(args.output))
    result = asyncio.run(_initialise(args, data_dir))
    _init_outputs(args, result)
    if args.output:
        privatefile.write_new(args.output, json.dumps(result, indent=2) + "\n")
        summary = {"seal": args.seal, "data_dir": str(data_dir), "output": args.output}
        if args.json:
            print(json.dumps(summary))
        else:
            print(
                f"keycask initialised in {data_dir} with a {args.seal} seal.\n"
                f"Every secret init hands out is in {args.output} (mode 0600, JSON): hand "
                "each out, then delete the file.\n"
                f"Next: keycask server --data-dir {data_dir}, then keycask operator unseal"
            )
        return 0
    if args.json:
        print(json.dumps(result))
        return 0
    admin = result["admin"]
    print(f"keycask initialised in {data_dir} with a {args.seal} seal.\n")
    written = "output_dir" in result
    if result.get("shares"):
        how = "sealed to the --share-keys, in order" if result.get("encrypted") else "shown once"
        where = "written to" if written else how + "; store each apart"
        print(
            f"Unseal shares ({result['threshold']} of {len(result['shares'])} open the "
            f"server; {where}):"
        )
        for line in result["shares"]:
            print(f"  {line}")
        print()
    if written:
        print(f"Operator token written to {result['operator_token']}")
        print(f"Administrator {admin['arn']}: credentials in {admin['credentials_file']}")
    else:
        print(f"Operator token (shown once): {result['operator_token']}")
        print(f"Administrator {admin['arn']}:")
        print(f"  aws_access_key_id = {admin['access_key_id']}")
        print(f"  aws_secret_access_key = {admin['secret_access_key']}")
    if "tls_cert" in result:
        print(f"\nSelf-signed TLS certificate: {result['tls_cert']}")
    print(f"\nNext: keycask server --data-dir {data_dir}, then keycask operator unseal")
    return 0


def _server_tagger(args: argparse.Namespace) -> Tagger:
    """The running server computes the MAC: it holds the root key, which
    nothing else on a production host should."""

    def tag(digest: bytes) -> bytes:
        answer = call(args, "BackupTag", {"Digest": digest.hex()})
        try:
            return bytes.fromhex(str(answer["Tag"]))
        except (KeyError, ValueError):
            raise OperatorError("the server's BackupTag answer holds no tag") from None

    return tag


def _root_tagger(root: KeyMaterial) -> Tagger:
    return lambda digest: backup_tag(root, digest)


def cmd_backup(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    if not (data_dir / STORE_FILE).exists():
        raise OperatorError(f"{data_dir} holds no keycask store")
    if (data_dir / SEAL_FILE).exists():
        tag = _server_tagger(args)
    elif (data_dir / DEV_ROOT_KEY_FILE).exists():
        tag = _root_tagger(DevSeal(data_dir).root_key())
    else:
        raise OperatorError(f"{data_dir} has neither a seal nor a dev root key")
    info = create_backup(data_dir, Path(args.file), tag)
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.file,
                    "files": len(info.files),
                    "store_bytes": info.db_bytes,
                    "notes": list(info.notes),
                }
            )
        )
        return 0
    print(f"backup written to {args.file}: {len(info.files)} files, store {info.db_bytes} bytes")
    for note in info.notes:
        print(f"note: {note}")
    return 0


def _backup_root(args: argparse.Namespace, seal: bytes | None) -> KeyMaterial:
    """The root key the backup was made under, from its (not yet
    authenticated) seal file and the secret the operator gives. A wrong
    secret, or a seal file not the backup's own, gives a root whose MAC does
    not verify: nothing is written then."""
    if seal is None:
        if not args.dev_root_key:
            raise OperatorError(
                "the backup has no seal file (a --dev data dir): give --dev-root-key with "
                "the dev-root.key kept apart from it"
            )
        raw = Path(args.dev_root_key).read_bytes()
        if len(raw) != 32:
            raise OperatorError(f"{args.dev_root_key} does not hold a 32-byte root key")
        return KeyMaterial(raw)
    with tempfile.TemporaryDirectory(prefix="keycask-restore-seal-") as scratch:
        directory = Path(scratch)
        privatefile.write_new(directory / SEAL_FILE, seal)
        kind = seal_type(directory)
        found = registry.get(str(kind))
        if found.secret is Secret.SHARES:
            _, threshold = found.share_file(directory, SEAL_FILE).config()
            if args.shares_file:
                lines = Path(args.shares_file).read_text().split()
            else:
                lines = [_secret(f"Share {i + 1}/{threshold}: ", None) for i in range(threshold)]
            collector = ShareCollector(threshold)
            for line in lines:
                root = collector.add(line)
                if root is not None:
                    return root
            raise OperatorError(f"the backup's {found.title} seal needs {threshold} shares")
        source = found.unseal_secret
        path = getattr(args, source.dest, None) if source.dest else None
        secret = _secret(source.prompt, path, source.env)
        modules = config.allowed_pkcs11_modules(args.pkcs11_module or (), os.environ)
        return found.open(directory, SEAL_FILE, secret, modules=modules)


def _hand_out_token(token: str, out: str | None, what: str) -> None:
    if out:
        privatefile.write_new(out, token + "\n")
        print(f"{what} written to {out} (mode 0600); nothing else keeps it")
    else:
        print(f"{what} (shown once): {token}")


def cmd_restore(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    file = Path(args.file)
    if args.token_out and Path(args.token_out).exists():
        raise OperatorError(f"{args.token_out} exists; refusing to overwrite it")
    seal = backup_seal_file(file)
    root = _backup_root(args, seal)
    info = restore_backup(file, data_dir, _root_tagger(root))
    marker = data_dir / RESTORED_MARKER
    privatefile.replace(marker, f"restored from {args.file}\n")
    print(f"restored {len(info.files)} files (backup of {info.created}) into {data_dir}")
    if seal is None:
        privatefile.write_new(data_dir / DEV_ROOT_KEY_FILE, root.reveal())
        return 0
    # The token of backup time may be long revoked (rotated, or known to
    # someone since): a restored node gets a token of its own.
    if args.account_id is not None and not (
        args.account_id.isdigit() and len(args.account_id) == 12
    ):
        raise OperatorError("--account-id takes a 12-digit AWS account id")
    token = operator_token.create(data_dir, args.account_id)
    _hand_out_token(token, args.token_out, "New operator token (the backup's is not restored)")
    return 0


def cmd_rotate_token(args: argparse.Namespace) -> int:
    if args.offline:
        # The local operator, with the server stopped (a running server keeps
        # the token it read at start): for a token that is lost.
        data_dir = _data_dir(args)
        if not (data_dir / SEAL_FILE).exists():
            raise OperatorError(f"{data_dir} is not a production data dir")
        token = operator_token.replace(data_dir)
        audit = AuditLog.open(data_dir / AUDIT_DIR, AUDIT_SEGMENT)
        try:
            audit.append_sync(
                local_record("KeycaskOperator.RotateToken", "operator token replaced offline")
            )
        finally:
            audit.close()
    else:
        token = str(call(args, "RotateToken", {})["Token"])
    if args.json:
        # The token itself only where no file was asked for, as in text.
        if args.out:
            privatefile.write_new(args.out, token + "\n")
        print(json.dumps({"token_file": args.out} if args.out else {"token": token}))
    else:
        _hand_out_token(token, args.out, "New operator token")
    print("The old token no longer works.", file=sys.stderr)
    return 0


def add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operator = sub.add_parser(
        "operator",
        help="production mode: init, unseal, seal, rotate, rekey, backup",
        description="A production server's life: init makes a data dir; the others call "
        "the running server with the operator token (--token-file, "
        "KEYCASK_OPERATOR_TOKEN_FILE or KEYCASK_OPERATOR_TOKEN) at --endpoint-url or "
        "KEYCASK_ADDR, trusting --ca-file, KEYCASK_CACERT or AWS_CA_BUNDLE. "
        "docs/operations.md walks through all of it.",
        epilog="examples:\n"
        "  keycask operator init --data-dir /var/lib/keycask --output-dir /root/keycask-init"
        " \\\n      --tls-self-signed\n"
        "  export KEYCASK_ADDR=https://127.0.0.1:9567 "
        "KEYCASK_CACERT=/var/lib/keycask/tls/cert.pem\n"
        "  export KEYCASK_OPERATOR_TOKEN_FILE=/root/keycask-init/operator-token\n"
        "  keycask operator unseal          # prompts for a share\n"
        "  keycask operator status",
    ).add_subparsers(dest="operator_command", required=True, metavar="COMMAND")

    def remote(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        add_connection_options(parser, signed=False)
        parser.add_argument(
            "--token-file",
            metavar="FILE",
            help="a file holding the operator token, readable by its owner only (or env "
            "KEYCASK_OPERATOR_TOKEN_FILE, the path of such a file; or env "
            "KEYCASK_OPERATOR_TOKEN, the token itself)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="allow plain HTTP to a non-loopback address (a trusted network only)",
        )
        return parser

    def seal_choice(parser: argparse.ArgumentParser, required: bool) -> None:
        """--seal and every seal type's parameters and new-secret file."""
        parser.add_argument(
            "--seal",
            choices=list(registry.SEAL_TYPES),
            required=required,
            default=None if required else registry.DEFAULT.name,
            help="the seal that keeps the root key (docs/operations.md compares them)",
        )
        for kind in registry.SEAL_TYPES.values():
            for option in kind.options:
                parser.add_argument(
                    option.flag,
                    type=int if option.integer else str,
                    default=option.default,
                    help=option.help,
                )
            if kind.new_secret is not None and kind.new_secret.flag is not None:
                parser.add_argument(kind.new_secret.flag, help=kind.new_secret.help)

    def secret_files(parser: argparse.ArgumentParser, sources: list[SecretSource | None]) -> None:
        """One file flag per distinct source (seal types may share one)."""
        seen: set[str] = set()
        for source in sources:
            if source is not None and source.flag is not None and source.flag not in seen:
                seen.add(source.flag)
                parser.add_argument(source.flag, help=source.help or None)

    def outputs(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--output-dir",
            help="write each secret to its own 0600 file here (never overwriting) "
            "instead of printing it",
        )
        parser.add_argument(
            "--share-keys",
            metavar="PEM,PEM,...",
            help="Shamir: seal share N to the Nth operator's public key "
            "(X25519 or RSA, PEM); open with `operator decrypt-share`",
        )

    init = operator.add_parser("init", help="initialise a production data directory")
    init.add_argument("--data-dir", help="a new, empty data directory")
    init.add_argument("--account-id", help="account of the first administrator")
    init.add_argument(
        "--storage", metavar="DSN", help="a PostgreSQL store for a cluster (env KEYCASK_STORAGE)"
    )
    init.add_argument(
        "--json",
        action="store_true",
        help="print JSON, every secret included (to keep it in a file use --output FILE: "
        "a shell redirect makes a file others can read)",
    )
    init.add_argument(
        "--output",
        metavar="FILE",
        help="write what --json prints (shares, operator token, admin access key) to this "
        "new file, mode 0600, instead of the terminal",
    )
    init.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="also make a self-signed certificate for a first start (data dir tls/)",
    )
    init.add_argument("--tls-hostname", action="append", help="DNS name for it (repeatable)")
    init.add_argument("--tls-ip", action="append", help="IP address for it (repeatable)")
    seal_choice(init, required=False)
    outputs(init)
    init.set_defaults(func=cmd_init)

    remote(operator.add_parser("status", help="sealed or not, seal, term")).set_defaults(
        func=cmd_status
    )
    unseal = remote(operator.add_parser("unseal", help="give one share, the passphrase or PIN"))
    unseal.add_argument("share", nargs="?", help="a share (prefer the prompt: leave this out)")
    secret_files(unseal, [kind.unseal_secret for kind in registry.SEAL_TYPES.values()])
    unseal.add_argument(
        "--reset", action="store_true", help="drop the shares given so far and start again"
    )
    unseal.set_defaults(func=cmd_unseal)
    remote(operator.add_parser("seal", help="drop every key from memory")).set_defaults(
        func=cmd_seal
    )
    remote(operator.add_parser("rotate", help="start a new barrier term")).set_defaults(
        func=cmd_rotate
    )
    rekey = remote(
        operator.add_parser(
            "rekey",
            help="move the root key to a new seal",
            description="Move the root key to a new seal. To a PKCS#11 seal: the server must "
            "have been started allowing the library (--pkcs11-module, or "
            "KEYCASK_PKCS11_MODULES=/path/lib.so[:...]); restart it that way first.",
        )
    )
    seal_choice(rekey, required=True)
    secret_files(rekey, [kind.current_secret for kind in registry.SEAL_TYPES.values()])
    rekey.add_argument(
        "--one-share",
        action="store_true",
        help="give only your own current share; each operator runs the same command, "
        "and the last one starts the rekey",
    )
    outputs(rekey)
    rekey.set_defaults(func=cmd_rekey)
    decrypt = operator.add_parser(
        "decrypt-share", help="open a share sealed to your key (prints the share line)"
    )
    decrypt.add_argument("file", nargs="?", help="the sealed share (default: stdin)")
    decrypt.add_argument("--private-key", required=True, help="your private key, PEM (0600)")
    decrypt.add_argument("--password-file", help="its password, if it has one")
    decrypt.set_defaults(func=cmd_decrypt_share)
    verify = remote(
        operator.add_parser(
            "rekey-verify", help="give a new share (or the new passphrase) back to finish a rekey"
        )
    )
    verify.add_argument("share", nargs="?", help="a new share (prefer the prompt: leave this out)")
    verify.add_argument("--shares-file", help="new shares, one per line")
    secret_files(
        verify,
        [
            kind.new_secret
            for kind in registry.SEAL_TYPES.values()
            if kind.secret is not Secret.SHARES and not kind.verified_by_server
        ],
    )
    verify.set_defaults(func=cmd_rekey_verify)
    remote(
        operator.add_parser("rekey-cancel", help="discard a pending rekey; the seal stays")
    ).set_defaults(func=cmd_rekey_cancel)

    rotate_token = remote(
        operator.add_parser("rotate-token", help="replace the operator token with a new one")
    )
    rotate_token.add_argument("--out", help="write the new token to this new file (mode 0600)")
    rotate_token.add_argument(
        "--offline",
        action="store_true",
        help="replace it in --data-dir directly (the server stopped; for a lost token)",
    )
    rotate_token.set_defaults(func=cmd_rotate_token)

    backup = remote(
        operator.add_parser(
            "backup",
            help="consistent snapshot of the store, online; the running server MACs it "
            "(needs the operator token)",
        )
    )
    backup.add_argument("file", help="the backup file to write (new)")
    backup.set_defaults(func=cmd_backup)
    restore = operator.add_parser(
        "restore",
        help="check a backup's MAC with the seal's secret, restore it into an empty data dir",
    )
    restore.add_argument("file", help="the backup file `operator backup` wrote")
    restore.add_argument("--data-dir", required=True, help="a new, empty data directory")
    restore.add_argument("--shares-file", help="Shamir: shares, one per line (else prompted)")
    secret_files(restore, [kind.unseal_secret for kind in registry.SEAL_TYPES.values()])
    restore.add_argument(
        "--pkcs11-module",
        action="append",
        metavar="LIB",
        help="PKCS#11 seal: the library allowed to load (or env KEYCASK_PKCS11_MODULE[S])",
    )
    restore.add_argument("--dev-root-key", help="a --dev backup: its dev-root.key file")
    restore.add_argument("--token-out", help="write the new operator token to this new file")
    restore.add_argument(
        "--account-id",
        help="the operator account (whose administrators may make operator calls); "
        "default: the server's KEYCASK_ACCOUNT_ID",
    )
    restore.set_defaults(func=cmd_restore)
    add_renew_tls(operator)


__all__ = ["add_operator_commands", "call"]
