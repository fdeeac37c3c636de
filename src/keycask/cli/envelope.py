"""``keycask encrypt`` and ``keycask decrypt``: files and streams as AWS
Encryption SDK messages under keycask keys, so ``aws-encryption-cli`` and
every ESDK read what keycask writes and keycask reads what they write.

The SDK (4.x) does the format; this module decides the policy around it:
a committing, signed suite; a cap on encrypted data keys and frame size so
a hostile message cannot make keycask call KMS without end or buffer
gigabytes; the header judged before any output exists; output that
appears whole (a file) or frame by frame as each is authenticated
(stdout); and every failure said in one line that names its cause, told
apart by how far decryption got (``esdk.CheckingMaterialsManager``) and
whether the input ran dry, not by the SDK's wording.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from keycask.cli import outfile
from keycask.cli.errors import CommandFailed, UsageError
from keycask.cli.kmsclient import Kms, add_kms_options, connect, explain
from keycask.cli.progress import NoProgress, Progress, progress_for

if TYPE_CHECKING:
    import aws_encryption_sdk

    from keycask.cli import esdk

# Measured with benchmarks/envelope_stream.py: 512 MiB through `keycask
# encrypt | keycask decrypt` on an idle 2-core machine, MiB/s over each
# process's own CPU time and over the pipeline's wall time:
#   frame     encrypt  decrypt  pipeline
#   4 KiB       122      107       83
#   16 KiB      189      183      115
#   64 KiB      199      217      125   (repeat: 204/204/123, 175/202/113)
#   256 KiB     229      234      111   (repeat: 210/215/101, 217/222/105)
#   1 MiB       223      196      100
# The SDK's cost is per frame (a Python call chain, a GCM context, a
# signature update), so its default 4 KiB spends most of its time outside
# AES. 64 KiB is the fastest pipeline in every run and within ~10 % of the
# cheapest per process (256 KiB), with a quarter of its memory per frame
# and plaintext released to stdout in smaller steps.
DEFAULT_FRAME = 64 * 1024
# The largest frame (or unframed body) decrypt buffers: the SDK reads a
# whole frame, then its plaintext, into memory, so a hostile header's 4 GiB
# frame would be a 4 GiB allocation. 16 MiB keeps RSS far under 200 MiB.
MAX_FRAME = 16 * 1024 * 1024
# Reads of about this size: several small frames per SDK call (fewer Python
# calls), yet never so many that the SDK's per-read buffer slicing, which is
# quadratic in frames per read, dominates.
_READ_SIZE = 64 * 1024
# A message names this many keys at most unless told otherwise: decrypting
# tries each in turn, one KMS call apiece, so a hostile message with
# thousands would mean thousands of calls (and audit records).
DEFAULT_MAX_KEYS = 10
_RESERVED_PREFIX = "aws-crypto-"

ENCRYPT_EPILOG = """\
The output is an AWS Encryption SDK message (suite
AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384: key-committing and signed) that
aws-encryption-cli and every ESDK decrypt. Each --key-id wraps the data key:
any one of them alone opens the message. An output file is written beside its
target and renamed into place when complete; it gets the mode a new file gets
(umask).

examples:
  keycask encrypt --key-id alias/backups --context app=billing -o db.dump.enc db.dump
  pg_dump billing | keycask encrypt --key-id alias/backups --key-id alias/dr > db.enc"""

DECRYPT_EPILOG = """\
The header is checked before anything is written: the message must be signed
(unless --allow-unsigned), use a key-committing suite, name at most
--max-encrypted-data-keys keys, and carry every --context pair given.

To a file (-o), the plaintext is written to a 0600 temporary file beside it and
renamed into place only once the whole message, signature included, has
verified: a failure leaves nothing. To stdout, each frame is released as soon
as it is authenticated, before the final signature is checked: a message cut
or altered after its first frames has already written those frames when
keycask exits 1, so the reader must treat the output as void unless keycask
exits 0.

Without --key-id, the keys the message names are used (discovery), as far as
your credentials allow; with --key-id KEY_ARN, only those keys.

examples:
  keycask decrypt --context app=billing -o db.dump db.dump.enc
  keycask decrypt --key-id arn:aws:kms:us-east-1:000000000000:key/... < db.enc | psql"""


def add_envelope_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    encrypt = sub.add_parser(
        "encrypt",
        help="encrypt a file or stream under keycask keys (AWS Encryption SDK format)",
        description="Encrypt IN (a file, or stdin) under one or more keycask keys.",
        epilog=ENCRYPT_EPILOG,
    )
    encrypt.add_argument(
        "--key-id",
        action="append",
        required=True,
        metavar="KEY",
        help="key ID, key ARN, alias name or alias ARN; repeat for several keys, any one of "
        "which opens the message (the first generates the data key)",
    )
    _add_common(encrypt)
    encrypt.add_argument(
        "--frame-length",
        type=int,
        default=DEFAULT_FRAME,
        metavar="BYTES",
        help=f"plaintext bytes per authenticated frame, 1 to {MAX_FRAME}",
    )
    encrypt.set_defaults(func=run_encrypt)

    decrypt = sub.add_parser(
        "decrypt",
        help="decrypt an AWS Encryption SDK message (keycask's or any ESDK's)",
        description="Decrypt IN (a file, or stdin), an AWS Encryption SDK message.",
        epilog=DECRYPT_EPILOG,
    )
    decrypt.add_argument(
        "--key-id",
        action="append",
        metavar="KEY_ARN",
        help="decrypt only with this key (its ARN, as messages name keys); repeatable. "
        "Without it, any key the message names that your credentials may use",
    )
    _add_common(decrypt)
    decrypt.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept a message whose algorithm suite has no signature (anyone allowed to "
        "decrypt its data key could have written it)",
    )
    decrypt.add_argument(
        "--max-encrypted-data-keys",
        type=int,
        default=DEFAULT_MAX_KEYS,
        metavar="N",
        help="refuse a message naming more keys than this (each is a KMS call)",
    )
    decrypt.set_defaults(func=run_decrypt)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="K=V",
        help="an encryption context pair; repeatable (decrypt: the message must carry it)",
    )
    parser.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("input", nargs="?", metavar="IN", help="input file (default: stdin)")
    add_kms_options(parser)


# -- arguments --


def parse_context(pairs: list[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--context {pair!r}: give KEY=VALUE")
        if key.startswith(_RESERVED_PREFIX):
            raise UsageError(f"--context {key}: keys starting {_RESERVED_PREFIX} are the SDK's")
        if context.get(key, value) != value:
            raise UsageError(f"--context {key} given twice with different values")
        context[key] = value
    return context


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


@contextmanager
def _opened_input(path: str | None) -> Iterator[tuple[BinaryIO, int | None]]:
    """The input stream and its size when known (a regular file)."""
    if outfile.is_stdio(path):
        stream = sys.stdin.buffer
        yield stream, _regular_size(stream)
        return
    assert path is not None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        yield handle, _regular_size(handle)


def _regular_size(stream: BinaryIO) -> int | None:
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _sdk(max_keys: int) -> aws_encryption_sdk.EncryptionSDKClient:
    import aws_encryption_sdk

    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
        max_encrypted_data_keys=max_keys,
    )


# -- encrypt --


def run_encrypt(args: argparse.Namespace) -> int:
    # The SDK (and boto3 under it) costs a fifth of a second to import:
    # only the two commands that use it pay for it.
    from aws_encryption_sdk.identifiers import Algorithm

    from keycask.cli import esdk

    if not 1 <= args.frame_length <= MAX_FRAME:
        raise UsageError(f"--frame-length must be 1 to {MAX_FRAME} bytes")
    context = parse_context(args.context)
    key_ids = _unique(args.key_id)
    outfile.refuse_existing(args.output, force=args.force)
    kms = connect(args)
    read_size = -(-_READ_SIZE // args.frame_length) * args.frame_length
    with outfile.interruptible() as interruption, _opened_input(args.input) as (stream, size):
        source = esdk.Source(stream)
        bar = progress_for(size, sys.stderr, quiet=args.quiet)
        try:
            encryptor = _sdk(len(key_ids)).stream(
                mode="e",
                source=source,
                key_provider=esdk.strict(kms, key_ids),
                encryption_context=context,
                algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
                frame_length=args.frame_length,
            )
            # The data key (the KMS calls) before any output exists.
            _ = encryptor.header
            with outfile.output(args.output, mode=outfile.default_mode(), force=args.force) as sink:
                _pump(
                    encryptor,
                    sink,
                    read_size=read_size,
                    source=source,
                    bar=bar,
                    interruption=interruption,
                )
        except (CommandFailed, UsageError):
            raise
        except Exception as error:
            _reraise_interrupt(error, interruption)
            raise CommandFailed(_encrypt_failure(error, kms)) from None
        finally:
            bar.close()
    return 0


def _encrypt_failure(error: Exception, kms: Kms) -> str:
    from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError

    if isinstance(error, OSError):
        return f"cannot encrypt: {error.strerror or error}"
    if isinstance(error, AWSEncryptionSDKClientError) or _from_botocore(error):
        return f"cannot encrypt: {explain(error, kms)}"
    return f"cannot encrypt: {type(error).__name__}: {error}"


# -- decrypt --


def run_decrypt(args: argparse.Namespace) -> int:
    from keycask.cli import esdk

    context = parse_context(args.context)
    key_ids = _unique(args.key_id or [])
    for key_id in key_ids:
        if not _is_key_arn(key_id):
            raise UsageError(
                f"decrypt --key-id {key_id}: give the key's ARN (arn:aws:kms:REGION:ACCOUNT:"
                "key/ID), the name a message records its keys by"
            )
    if args.max_encrypted_data_keys < 1:
        raise UsageError("--max-encrypted-data-keys must be at least 1")
    outfile.refuse_existing(args.output, force=args.force)
    kms = connect(args)
    try:
        provider = esdk.strict(kms, key_ids) if key_ids else esdk.discovery(kms)
    except Exception as error:
        # botocore checks each key ARN's region as the provider builds its
        # client for it: a region botocore refuses is what was given.
        raise UsageError(f"decrypt --key-id: {explain(error, kms)}") from None
    manager = esdk.CheckingMaterialsManager(
        provider, required=context, allow_unsigned=args.allow_unsigned
    )
    with outfile.interruptible() as interruption, _opened_input(args.input) as (stream, size):
        source = esdk.Source(stream)
        bar = progress_for(size, sys.stderr, quiet=args.quiet)
        try:
            decryptor = _sdk(args.max_encrypted_data_keys).stream(
                mode="d", source=source, materials_manager=manager, max_body_length=MAX_FRAME
            )
            # The header, its keys and its checks before any output exists.
            header = decryptor.header
            frame = header.frame_length or MAX_FRAME
            read_size = -(-_READ_SIZE // frame) * frame
            with outfile.output(args.output, mode=outfile.PRIVATE, force=args.force) as sink:
                _pump(
                    decryptor,
                    sink,
                    read_size=read_size,
                    source=source,
                    bar=bar,
                    interruption=interruption,
                )
                # The footer (signature) was read and verified with the last
                # frame; close() says so, and nothing may follow the message.
                decryptor.close()
                if source.read(1):
                    raise CommandFailed(
                        "the input goes on after the end of the message (trailing bytes)"
                    )
        except (CommandFailed, UsageError):
            raise
        except Exception as error:
            _reraise_interrupt(error, interruption)
            raise CommandFailed(_decrypt_failure(error, kms, manager, source)) from None
        finally:
            bar.close()
    return 0


def _is_key_arn(key_id: str) -> bool:
    parts = key_id.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[5].startswith("key/")


def _decrypt_failure(
    error: Exception, kms: Kms, manager: esdk.CheckingMaterialsManager, source: esdk.Source
) -> str:
    """One line for a failed decryption, from where it stopped: parsing the
    header, getting the data key, or authenticating what followed."""
    from aws_encryption_sdk.exceptions import (
        ActionNotAllowedError,
        AWSEncryptionSDKClientError,
        CustomMaximumValueExceeded,
        MaxEncryptedDataKeysExceeded,
    )

    from keycask.crypto.verdicts import AUTHENTICATION_FAILURES

    if isinstance(error, OSError):
        return f"cannot decrypt: {error.strerror or error}"
    if isinstance(error, MaxEncryptedDataKeysExceeded):
        return (
            "the message names more encrypted data keys than --max-encrypted-data-keys "
            "allows (each would be a KMS call)"
        )
    if isinstance(error, CustomMaximumValueExceeded):
        return f"the message's frames are larger than keycask buffers ({MAX_FRAME} bytes)"
    if isinstance(error, ActionNotAllowedError) and not manager.asked:
        return (
            "the message uses an algorithm suite without key commitment (ESDK before 2.0 or "
            "a legacy policy): keycask decrypts committing messages only"
        )
    if source.ran_dry and not manager.asked and source.consumed == 0:
        return "the input is empty: not an AWS Encryption SDK message"
    if _from_botocore(error):
        return f"cannot decrypt: {explain(error, kms)}"
    if source.ran_dry:
        return "the message is truncated: the input ended before the message did"
    if not manager.asked:
        if isinstance(error, AWSEncryptionSDKClientError):
            return "the input is not an AWS Encryption SDK message (its header does not parse)"
    elif not manager.opened:
        return _key_failure(error, kms, manager)
    elif isinstance(error, (AWSEncryptionSDKClientError, *AUTHENTICATION_FAILURES)):
        return "the message failed authentication: tampered or corrupted"
    return f"cannot decrypt: {type(error).__name__}: {error}"


def _key_failure(error: Exception, kms: Kms, manager: esdk.CheckingMaterialsManager) -> str:
    """No key opened the data key: the server's reasons, or (no call made)
    that none of the keys allowed is among those the message names."""
    if kms.failures:
        reasons = _unique([f"{code}: {message}".rstrip(": ") for code, message in kms.failures])
        return "no key could decrypt the message's data key: " + "; ".join(reasons)
    named = ", ".join(manager.key_arns) or "none"
    return (
        f"none of the --key-id given wrapped this message's data key (the message names: {named})"
    )


def _reraise_interrupt(error: BaseException, interruption: outfile.Interruption) -> None:
    """SIGTERM/SIGINT/SIGHUP raise ``Interrupted`` wherever the process stands; a
    library that wrapped it in an error of its own must not hide it."""
    for cause in _chain(error):
        if isinstance(cause, outfile.Interrupted):
            raise cause from None
    interruption.check()


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _from_botocore(error: BaseException) -> bool:
    """A failure botocore raised (unreachable, TLS, an error answer), however
    deep in the chain: ``explain`` says it best."""
    from botocore.exceptions import BotoCoreError, ClientError

    return any(isinstance(cause, BotoCoreError | ClientError) for cause in _chain(error))


# -- the copy loop --


def _pump(
    stream: Any,
    sink: BinaryIO,
    *,
    read_size: int,
    source: esdk.Source,
    bar: Progress | NoProgress,
    interruption: outfile.Interruption,
) -> None:
    """Copy ``stream`` (the SDK's) to ``sink`` a few frames at a time: memory
    stays at a few frames whatever the input's size."""
    while True:
        interruption.check()
        chunk = stream.read(read_size)
        if not chunk:
            return
        try:
            sink.write(chunk)
        except BrokenPipeError:
            _quiet_stdout()
            raise CommandFailed("the output was closed before the end (broken pipe)") from None
        bar.update(source.consumed)


def _quiet_stdout() -> None:
    """A reader that went away: later flushes of stdout (at exit) would fail
    again and print a traceback; point it at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
