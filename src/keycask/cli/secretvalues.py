"""What ``secrets`` and ``exec`` share: reading a secrets file from disk and
the three KMS calls on its values, each bound to the file's key and to the
value's name (``SecretFile.context_for``).

Decrypt and ReEncrypt pass the file's key as ``KeyId``/``SourceKeyId``: the
server then refuses a ciphertext made under any other key, so a value cannot
be opened under a key the file does not name. A failure names the file and
the secret with the server's reason, never a value.

The file's header names its key, and whoever can edit the file can name
their own. A pin (``--key-id`` or ``KEYCASK_SECRETS_KEY_ID``) is the key the
caller expects, given outside the file: Decrypt then passes the pin as
``KeyId`` (the server refuses a value made under any other key), and a
header naming another key is refused, compared on the ARN the server
answered with, not on how the pin was spelled (an alias, a key id).
"""

from __future__ import annotations

import os
from typing import Any

from keycask.cli.errors import CommandFailed, UsageError
from keycask.cli.kmsclient import Kms, KmsCallFailed, explain
from keycask.cli.secretfile import (
    MAX_FILE_BYTES,
    Layout,
    SecretFile,
    SecretFileError,
    bound_context,
    layout_for,
    parse,
)

# The KMS Encrypt limit on a plaintext.
MAX_VALUE = 4096
# The pin's environment variable: `keycask exec` is usually started by a
# supervisor (a systemd unit, a Kubernetes pod), whose environment is
# configured apart from the application's repository.
PIN_VARIABLE = "KEYCASK_SECRETS_KEY_ID"


def pinned_key(given: str | None) -> str | None:
    """The pin: ``--key-id`` when given, else ``KEYCASK_SECRETS_KEY_ID``
    when set and not empty, else None (the header's key is trusted)."""
    return given or os.environ.get(PIN_VARIABLE) or None


def refuse_other_key(path: str, secret_file: SecretFile, arn: str, pin: str) -> None:
    """``UsageError`` naming both keys when the file's header names a key
    other than ``arn``, the pin ``pin`` as the server resolved it."""
    if arn == secret_file.key_id:
        return
    pinned = arn if pin == arn else f"{arn} ({pin})"
    raise UsageError(
        f"{path} names the key {secret_file.key_id}, not the pinned key {pinned} "
        f"(--key-id or {PIN_VARIABLE}): refused; `keycask secrets rotate --key-id` moves "
        "a file to another key"
    )


def read_file(path: str) -> tuple[SecretFile, Layout]:
    """The secrets file at ``path``, parsed; ``SecretFileError`` (exit 2)
    naming the path when it is not one."""
    layout = layout_for(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such secrets file") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory") from None
    except OSError as error:
        raise CommandFailed(f"cannot read {path}: {error.strerror}") from None
    try:
        return parse(data, layout), layout
    except SecretFileError as error:
        raise SecretFileError(f"{path}: {error}") from None


def file_mode(path: str) -> int | None:
    """An existing file's permission bits, kept across a rewrite."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


def _failed(what: str, error: Exception, kms: Kms) -> KmsCallFailed:
    return KmsCallFailed(f"{what}: {explain(error, kms)}")


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def encrypt(
    kms: Kms, client: Any, key_id: str, context: dict[str, str], value: bytes
) -> tuple[bytes, str]:
    """``value`` encrypted under ``key_id`` with the context given, and the
    ARN of the key that did it."""
    try:
        answer = client.encrypt(KeyId=key_id, Plaintext=value, EncryptionContext=context)
    except _boto_errors() as error:
        raise _failed("cannot encrypt", error, kms) from None
    return bytes(answer["CiphertextBlob"]), str(answer["KeyId"])


def decrypt(
    kms: Kms,
    client: Any,
    secret_file: SecretFile,
    path: str,
    name: str,
    *,
    pin: str | None = None,
) -> bytes:
    """``name``'s value, opened under the pin when one is given (and the
    header then checked against it), else under the header's key."""
    try:
        answer = client.decrypt(
            CiphertextBlob=secret_file.secrets[name],
            KeyId=pin or secret_file.key_id,
            EncryptionContext=secret_file.context_for(name),
        )
    except _boto_errors() as error:
        raise _failed(f"cannot decrypt {name} in {path}", error, kms) from None
    if pin is not None:
        refuse_other_key(path, secret_file, str(answer["KeyId"]), pin)
    return bytes(answer["Plaintext"])


def reencrypt(
    kms: Kms,
    client: Any,
    secret_file: SecretFile,
    path: str,
    name: str,
    *,
    key_id: str,
    context: dict[str, str],
) -> tuple[bytes, str]:
    """``name``'s value re-encrypted under ``key_id`` and the file context
    ``context``, inside keycask (the plaintext never reaches this process)."""
    try:
        answer = client.re_encrypt(
            CiphertextBlob=secret_file.secrets[name],
            SourceKeyId=secret_file.key_id,
            SourceEncryptionContext=secret_file.context_for(name),
            DestinationKeyId=key_id,
            DestinationEncryptionContext=bound_context(context, name),
        )
    except _boto_errors() as error:
        raise _failed(f"cannot re-encrypt {name} in {path}", error, kms) from None
    return bytes(answer["CiphertextBlob"]), str(answer["KeyId"])
