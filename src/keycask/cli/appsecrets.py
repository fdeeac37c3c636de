"""``keycask secrets set|get|list|rm|rotate``: an application's secrets in
a file that can be committed, each value a KMS ciphertext bound to its name
(docs/secrets-file.md).

A value is read from stdin or a no-echo prompt, never from argv, where every
user of the host can read it. Every write replaces the file whole (a
temporary file renamed over it, ``cli/outfile.py``), keeping its mode; a
rotation re-encrypts every value first and writes only when all succeeded.
Two writers racing on one file may lose one update (the last rename wins):
the file is meant for one person's edits, reviewed through version control.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable

from keycask.cli import outfile
from keycask.cli.errors import CommandFailed, UsageError, printable
from keycask.cli.kmsclient import add_kms_options, connect
from keycask.cli.secretfile import (
    NAME_RULE,
    RESERVED_CONTEXT_PREFIX,
    Layout,
    SecretFile,
    SecretFileError,
    bound_context,
    check_context,
    check_name,
    layout_for,
    serialize,
)
from keycask.cli.secretvalues import (
    MAX_VALUE,
    PIN_VARIABLE,
    decrypt,
    encrypt,
    file_mode,
    pinned_key,
    read_file,
    reencrypt,
    refuse_other_key,
)

EXAMPLES = """\
examples:
  keycask secrets set secrets.env API_TOKEN --key-id alias/billing --context app=billing
  printf %s "$TOKEN" | keycask secrets set secrets.env API_TOKEN
  keycask secrets get secrets.env API_TOKEN
  keycask secrets list secrets.env
  keycask secrets rm secrets.env OLD_TOKEN
  keycask secrets rotate secrets.env --key-id alias/billing-2027
  keycask exec --secrets secrets.env -- ./app"""


def context_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected K=V")
    if key.startswith(RESERVED_CONTEXT_PREFIX):
        raise argparse.ArgumentTypeError(
            f"context keys starting with {RESERVED_CONTEXT_PREFIX!r} are keycask's own"
        )
    return key, value


def _name(text: str) -> str:
    try:
        return check_name(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _context(pairs: list[tuple[str, str]] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    context: dict[str, str] = {}
    for key, value in pairs:
        if key in context and context[key] != value:
            raise UsageError(f"--context {key} is given twice with different values")
        context[key] = value
    try:
        return check_context(context)
    except SecretFileError as error:
        raise UsageError(f"--context: {error}") from None


def _write(path: str, secret_file: SecretFile, layout: Layout) -> None:
    # Through a symlink (a shared file linked into each app's tree), the file
    # it points to is rewritten, not the link replaced by a copy.
    target = os.path.realpath(path)
    mode = file_mode(target)
    data = serialize(secret_file, layout)
    with (
        outfile.interruptible(),
        outfile.output(
            target, mode=outfile.default_mode() if mode is None else mode, force=True
        ) as stream,
    ):
        stream.write(data)


# -- reading a value --


def _strip_newline(data: bytes) -> bytes:
    """One trailing newline (``\\n`` or ``\\r\\n``) goes: what echo(1) and
    here-strings add. Use ``printf %s`` to keep a value's own."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def read_value(name: str) -> bytes:
    """The value for ``name``: stdin when it is not a terminal, else a
    prompt without echo, asked twice."""
    if sys.stdin is None:
        raise UsageError("no stdin to read the value from")
    if sys.stdin.isatty():
        try:
            first = getpass.getpass(f"value for {name}: ")
            again = getpass.getpass(f"value for {name} (again): ")
        except EOFError:
            raise UsageError("no value given") from None
        if first != again:
            raise UsageError("the two entries differ; nothing was changed")
        value = first.encode("utf-8", "surrogateescape")
    else:
        # Two bytes more than the limit, for a newline to strip, and one to
        # tell that there is more.
        value = _strip_newline(sys.stdin.buffer.read(MAX_VALUE + 3))
    return check_value(value)


def check_value(value: bytes) -> bytes:
    if not value:
        # An empty variable is indistinguishable from an unset one for many
        # programs, and most often a pipe that produced nothing.
        raise UsageError("the value is empty; use `keycask secrets rm` to remove a secret")
    if b"\0" in value:
        raise UsageError("the value holds a NUL byte, which no environment variable can carry")
    if len(value) > MAX_VALUE:
        raise UsageError(
            f"the value is over {MAX_VALUE} bytes, the most KMS encrypts directly: "
            "encrypt bigger data with `keycask encrypt` and keep the secret file's value "
            "for its key or password"
        )
    return value


# -- commands --


def _interruptible(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Ctrl-C at the prompt or SIGTERM during a call: one line, exit 130 or 143, the
    file untouched (``outfile.interruptible``)."""

    def run(args: argparse.Namespace) -> int:
        with outfile.interruptible():
            return command(args)

    return run


def cmd_set(args: argparse.Namespace) -> int:
    path: str = args.file
    layout = layout_for(path)
    existing = None if file_mode(path) is None else read_file(path)[0]
    wanted_context = _context(args.context)
    pin = pinned_key(args.key_id)
    if existing is None and pin is None:
        raise UsageError(f"{path} is a new secrets file: give --key-id (and any --context)")
    if existing is not None and wanted_context is not None and wanted_context != existing.context:
        raise UsageError(
            f"{path} has the context {json.dumps(existing.context, sort_keys=True)}: "
            "use `keycask secrets rotate --context` to change it"
        )
    context = existing.context if existing is not None else (wanted_context or {})
    kms = connect(args)
    client = kms.client()
    if existing is not None and pin is None and existing.secrets:
        # Unpinned, the header's key is all there is to trust, and whoever
        # edited the file could have swapped it for their own: one value
        # opened under it (KeyId = the header's key) shows the values were
        # made under it. The plaintext is dropped unread.
        first = min(existing.secrets)
        decrypt(kms, client, existing, path, first)
    value = read_value(args.name)
    key_id = pin or (existing.key_id if existing is not None else "")
    blob, arn = encrypt(kms, client, key_id, bound_context(context, args.name), value)
    # An alias or key id names the file's key or not: the Encrypt answer's
    # ARN says which, without DescribeKey rights an app's principal may lack.
    if existing is not None and pin is not None:
        refuse_other_key(path, existing, arn, pin)
    base = existing if existing is not None else SecretFile(arn, context)
    replaced = args.name in base.secrets
    _write(path, base.with_secret(args.name, blob), layout)
    print(f"{'replaced' if replaced else 'added'} {args.name} in {path}", file=sys.stderr)
    if existing is None and not context:
        print(
            f"note: {path} has no --context: a value is bound to its key and its name "
            "only, so one copied from another file under the same key and name opens "
            "here (docs/secrets-file.md)",
            file=sys.stderr,
        )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    secret_file, _ = read_file(args.file)
    if args.name not in secret_file.secrets:
        raise CommandFailed(f"no secret {args.name} in {args.file}")
    kms = connect(args)
    pin = pinned_key(args.key_id)
    value = decrypt(kms, kms.client(), secret_file, args.file, args.name, pin=pin)
    out = sys.stdout.buffer
    out.write(value)
    if sys.stdout.isatty():
        out.write(b"\n")
    out.flush()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    secret_file, _ = read_file(args.file)
    names = sorted(secret_file.secrets)
    if args.json:
        listing = {"key_id": secret_file.key_id, "context": secret_file.context, "names": names}
        print(json.dumps(listing, indent=2))
    else:
        for name in names:
            print(name)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    secret_file, layout = read_file(args.file)
    if args.name not in secret_file.secrets:
        raise CommandFailed(f"no secret {args.name} in {args.file}")
    _write(args.file, secret_file.without(args.name), layout)
    print(f"removed {args.name} from {args.file}", file=sys.stderr)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    path: str = args.file
    secret_file, layout = read_file(path)
    context = _context(args.context)
    new_context = secret_file.context if context is None else context
    kms = connect(args)
    client = kms.client()
    key_id = args.key_id or secret_file.key_id
    blobs: dict[str, bytes] = {}
    arns: set[str] = set()
    # All or nothing: the file is rewritten only once every value moved.
    for name in sorted(secret_file.secrets):
        blobs[name], arn = reencrypt(
            kms, client, secret_file, path, name, key_id=key_id, context=new_context
        )
        arns.add(arn)
    if len(arns) > 1:
        raise CommandFailed(f"{key_id} resolved to more than one key during the rotation")
    if not arns and key_id != secret_file.key_id:
        # No value to re-encrypt, so no answer naming the new key's ARN.
        raise UsageError(
            f"{path} holds no secret to move: remove it and `keycask secrets set` a "
            "first secret with --key-id to start it under another key"
        )
    new_key = arns.pop() if arns else secret_file.key_id
    _write(path, SecretFile(new_key, new_context, blobs), layout)
    moved = "" if new_key == secret_file.key_id else f", now under {new_key}"
    print(printable(f"re-encrypted {len(blobs)} secret(s) in {path}{moved}"), file=sys.stderr)
    return 0


def add_appsecrets_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "secrets",
        help="an app's secrets in a file you can commit (set, get, list, rm, rotate)",
        description="An application's secrets in a file that can be committed to git: "
        "names in the clear, each value encrypted by keycask under the file's key and an "
        "encryption context binding it to its name and to the file's context. The layout "
        "follows the file name: .json, or dotenv (.env, NAME.env, .env.NAME). "
        "`keycask exec` runs a program with them. Format: docs/secrets-file.md.",
        epilog=EXAMPLES,
    )
    commands = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        made = commands.add_parser(name, help=help_, description=description, epilog=EXAMPLES)
        made.add_argument("file", metavar="FILE", help="the secrets file (.json or .env)")
        return made

    set_ = command(
        "set",
        "add or replace a secret (value from stdin or a prompt)",
        "Add or replace the secret NAME. The value is read from stdin when stdin is not a "
        "terminal (one trailing newline, \\n or \\r\\n, is removed: use `printf %%s` to "
        "keep one), else from a prompt without echo, asked twice; never from the command "
        f"line. At most {MAX_VALUE} bytes (bigger data: `keycask encrypt`), not empty, no "
        "NUL byte. A new file needs --key-id, and takes its --context once, at creation.",
    )
    set_.add_argument("name", metavar="NAME", type=_name, help=f"the secret's name ({NAME_RULE})")
    set_.add_argument(
        "--key-id",
        metavar="KEY",
        help=f"the key (id, ARN or alias): a new file's, else the key the file must be under, "
        f"refused otherwise (a pin; env {PIN_VARIABLE}). Unpinned, one existing value is "
        "decrypted first, to check the file's header",
    )
    set_.add_argument(
        "--context",
        action="append",
        type=context_pair,
        metavar="K=V",
        help="a new file's encryption context pair (repeatable)",
    )
    set_.set_defaults(func=_interruptible(cmd_set))

    get = command(
        "get",
        "print a secret's value",
        "Print the value of NAME to stdout as it is (a newline added only on a terminal).",
    )
    get.add_argument("name", metavar="NAME", type=_name, help="the secret to print")
    get.add_argument(
        "--key-id",
        metavar="KEY",
        help=f"the key the value must be under (a pin; env {PIN_VARIABLE}): a file naming "
        "another key is refused",
    )
    get.set_defaults(func=_interruptible(cmd_get))

    list_ = command(
        "list", "list the names (no value is decrypted)", "Print the secrets' names, sorted."
    )
    list_.add_argument(
        "--json", action="store_true", help="print the key, the context and the names as JSON"
    )
    list_.set_defaults(func=cmd_list)

    rm = command("rm", "remove a secret", "Remove NAME from the file (no call to keycask).")
    rm.add_argument("name", metavar="NAME", type=_name, help="the secret to remove")
    rm.set_defaults(func=cmd_rm)

    rotate = command(
        "rotate",
        "re-encrypt every value (current key material, or another key)",
        "Re-encrypt every value with ReEncrypt (the plaintexts stay inside keycask): under "
        "the key's current material, or under --key-id and/or with a new --context. The "
        "file is rewritten only when every value was re-encrypted.",
    )
    rotate.add_argument("--key-id", metavar="KEY", help="move the file to this key")
    rotate.add_argument(
        "--context",
        action="append",
        type=context_pair,
        metavar="K=V",
        help="replace the file's encryption context with these pairs (repeatable)",
    )
    rotate.set_defaults(func=_interruptible(cmd_rotate))

    # list and rm make no call to keycask.
    for parser in (set_, get, rotate):
        add_kms_options(parser)
