"""The secrets file: names in the clear, each value a KMS ciphertext, in a
JSON or a dotenv layout chosen by the file's extension (docs/secrets-file.md).

Pure parse and serialize, bytes to model and back, so that everything a
hostile or hand-edited file can do is decided here and fuzzed by the property
tests: any bytes either parse to a ``SecretFile`` or raise
``SecretFileError`` (exit 2), never another exception. Written files are
canonical and diff-friendly: one line per secret, names sorted, the key and
the context on lines of their own, so a review sees a changed key as a
changed line.

The parser is strict rather than forgiving: unknown fields, duplicate names,
comments other than the header and values that are not ``kc1:`` base64 are
refused, since whatever is not refused would be silently dropped by the next
write. Error texts never quote a value or an unparseable line: a plaintext
pasted into the file by mistake must not reach a terminal or a CI log.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

from keycask.cli.errors import UsageError

FORMAT_VERSION = 1
VALUE_PREFIX = "kc1:"
# The encryption-context key binding a value to its name; every context key
# under ``keycask:`` is keycask's own.
NAME_CONTEXT_KEY = "keycask:secret"
RESERVED_CONTEXT_PREFIX = "keycask:"
NAME_RULE = "[A-Za-z_][A-Za-z0-9_]*, at most 128 characters"
MAX_NAME = 128
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Bounds a hostile file cannot exceed: a KMS ciphertext of a 4096-byte
# plaintext is well under 8 KiB; a key ARN, alias or id under 2 KiB.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_CIPHERTEXT = 16 * 1024
MAX_KEY_ID = 2048
MAX_CONTEXT_TEXT = 8192

_DOTENV_VERSION = "# keycask-secrets: "
_DOTENV_KEY = "# key-id: "
_DOTENV_CONTEXT = "# context: "
_JSON_FIELDS = ("keycask_secrets", "key_id", "context", "secrets")


class SecretFileError(UsageError):
    """The bytes are not a secrets file; the text says where and why (never
    quoting a value)."""


class Layout(Enum):
    JSON = "json"
    DOTENV = "dotenv"


def layout_for(path: str) -> Layout:
    """``.json`` is JSON; ``.env``, ``*.env`` and ``.env*`` are dotenv."""
    name = PurePath(path).name.lower()
    if name.endswith(".json"):
        return Layout.JSON
    if name.endswith(".env") or name.startswith(".env"):
        return Layout.DOTENV
    raise UsageError(
        f"{path}: the layout is chosen by the file name: .json for JSON; .env, "
        "NAME.env or .env.NAME for dotenv"
    )


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not valid_name(name):
        raise UsageError(f"a secret's name must match {NAME_RULE} (it becomes a variable name)")
    return name


def check_context(context: Mapping[str, str]) -> dict[str, str]:
    """The file-level context: text keys and values KMS can carry, no key
    of keycask's own."""
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SecretFileError("the context must map text to text")
        if not key:
            raise SecretFileError("a context key is empty")
        if key.startswith(RESERVED_CONTEXT_PREFIX):
            raise SecretFileError(
                f"context keys starting with {RESERVED_CONTEXT_PREFIX!r} are keycask's own"
            )
        if not (_encodable(key) and _encodable(value)):
            raise SecretFileError("a context key or value is not valid Unicode text")
    if len(_compact(dict(context))) > MAX_CONTEXT_TEXT:
        raise SecretFileError(f"the context is over {MAX_CONTEXT_TEXT} characters")
    return dict(context)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class SecretFile:
    """A file's key (the ARN Encrypt answered), its context, and each
    name's ciphertext blob."""

    key_id: str
    context: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        check_context(self.context)
        for name, blob in self.secrets.items():
            if not valid_name(name):
                raise SecretFileError(f"a secret's name does not match {NAME_RULE}")
            if not blob or len(blob) > MAX_CIPHERTEXT:
                raise SecretFileError(f"the value of {name} is not a KMS ciphertext")

    def context_for(self, name: str) -> dict[str, str]:
        return bound_context(self.context, name)

    def with_secret(self, name: str, blob: bytes) -> SecretFile:
        return SecretFile(self.key_id, dict(self.context), {**self.secrets, name: blob})

    def without(self, name: str) -> SecretFile:
        left = {n: b for n, b in self.secrets.items() if n != name}
        return SecretFile(self.key_id, dict(self.context), left)


def bound_context(context: Mapping[str, str], name: str) -> dict[str, str]:
    """The encryption context of ``name``'s value: the file's context and
    the name, so a value opens only under its own name in its own file."""
    return {**context, NAME_CONTEXT_KEY: name}


def _check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not key_id:
        raise SecretFileError("the key id is missing or not text")
    if len(key_id) > MAX_KEY_ID or not key_id.isprintable() or key_id != key_id.strip():
        raise SecretFileError("the key id is not a key ARN, id or alias")
    return key_id


def _compact(context: dict[str, str]) -> str:
    return json.dumps(context, separators=(",", ":"), sort_keys=True)


def encode_value(blob: bytes) -> str:
    return VALUE_PREFIX + base64.b64encode(blob).decode("ascii")


def decode_value(text: object, name: str) -> bytes:
    wrong = SecretFileError(f"the value of {name} is not a keycask ciphertext ({VALUE_PREFIX}...)")
    if not isinstance(text, str) or not text.startswith(VALUE_PREFIX):
        raise wrong
    body = text[len(VALUE_PREFIX) :]
    try:
        blob = base64.b64decode(body.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise wrong from None
    # One spelling per blob: what is written is what was read.
    if not blob or base64.b64encode(blob).decode("ascii") != body or len(blob) > MAX_CIPHERTEXT:
        raise wrong
    return blob


# -- serialize --


def serialize(secret_file: SecretFile, layout: Layout) -> bytes:
    names = sorted(secret_file.secrets)
    if layout is Layout.JSON:
        document = {
            "keycask_secrets": FORMAT_VERSION,
            "key_id": secret_file.key_id,
            "context": dict(sorted(secret_file.context.items())),
            "secrets": {n: encode_value(secret_file.secrets[n]) for n in names},
        }
        return (json.dumps(document, indent=2) + "\n").encode("ascii")
    lines = [
        f"{_DOTENV_VERSION}{FORMAT_VERSION}",
        f"{_DOTENV_KEY}{secret_file.key_id}",
        f"{_DOTENV_CONTEXT}{_compact(secret_file.context)}",
        *(f"{n}={encode_value(secret_file.secrets[n])}" for n in names),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


# -- parse --


def parse(data: bytes, layout: Layout) -> SecretFile:
    """The file ``data`` holds; ``SecretFileError`` for anything else."""
    if len(data) > MAX_FILE_BYTES:
        raise SecretFileError(f"over {MAX_FILE_BYTES} bytes: not a secrets file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError("not UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors add
    if layout is Layout.JSON:
        return _parse_json(text)
    return _parse_dotenv(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            # Last-wins would let a reviewer read one value and a program use another.
            shown = key if valid_name(key) or key in _JSON_FIELDS else "a key"
            raise SecretFileError(f"{shown} appears twice in one JSON object")
        seen[key] = value
    return seen


def _refuse_constant(_: str) -> Any:
    raise SecretFileError("NaN and Infinity are not JSON")


def _parse_json(text: str) -> SecretFile:
    try:
        document = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant
        )
    except SecretFileError:
        raise
    except (ValueError, RecursionError) as error:
        where = (
            f" (line {error.lineno}, column {error.colno})"
            if isinstance(error, json.JSONDecodeError)
            else ""
        )
        raise SecretFileError(f"not valid JSON{where}") from None
    if not isinstance(document, dict):
        raise SecretFileError("not a JSON object")
    unknown = sorted(set(document) - set(_JSON_FIELDS))
    if unknown:
        raise SecretFileError(
            f"unknown field(s) (the fields are {', '.join(_JSON_FIELDS)}): "
            + ", ".join(k if valid_name(k) else "(unprintable)" for k in unknown)
        )
    missing = [k for k in _JSON_FIELDS if k not in document]
    if missing:
        raise SecretFileError(f"missing field(s): {', '.join(missing)}")
    _check_version(document["keycask_secrets"])
    context = document["context"]
    if not isinstance(context, dict):
        raise SecretFileError('"context" is not a JSON object')
    secrets = document["secrets"]
    if not isinstance(secrets, dict):
        raise SecretFileError('"secrets" is not a JSON object')
    blobs: dict[str, bytes] = {}
    for name, value in secrets.items():
        if not valid_name(name):
            raise SecretFileError(f'a name in "secrets" does not match {NAME_RULE}')
        blobs[name] = decode_value(value, name)
    return SecretFile(_check_key_id(document["key_id"]), check_context(context), blobs)


def _check_version(version: object) -> None:
    # bool is an int in Python; JSON true is not version 1.
    if type(version) is not int or version != FORMAT_VERSION:
        raise SecretFileError(
            f"format version is not {FORMAT_VERSION} (a newer keycask may have written it)"
        )


def _parse_dotenv(text: str) -> SecretFile:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    # CRLF from an editor or git's autocrlf: the same file.
    lines = [line.removesuffix("\r") for line in lines]
    if len(lines) < 3:
        raise SecretFileError(
            f"the header is missing (lines '{_DOTENV_VERSION}{FORMAT_VERSION}', "
            f"'{_DOTENV_KEY}ARN', '{_DOTENV_CONTEXT}{{...}}')"
        )
    version, key_line, context_line = lines[:3]
    if not version.startswith(_DOTENV_VERSION):
        raise SecretFileError(f"line 1 is not '{_DOTENV_VERSION}{FORMAT_VERSION}'")
    version_text = version[len(_DOTENV_VERSION) :]
    if version_text != str(FORMAT_VERSION):
        _check_version(None)
    if not key_line.startswith(_DOTENV_KEY):
        raise SecretFileError(f"line 2 is not '{_DOTENV_KEY}ARN'")
    key_id = _check_key_id(key_line[len(_DOTENV_KEY) :])
    if not context_line.startswith(_DOTENV_CONTEXT):
        raise SecretFileError(f"line 3 is not '{_DOTENV_CONTEXT}{{...}}' (a JSON object)")
    try:
        context = json.loads(
            context_line[len(_DOTENV_CONTEXT) :],
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
        )
    except SecretFileError:
        raise
    except (ValueError, RecursionError):
        raise SecretFileError("line 3: the context is not a JSON object") from None
    if not isinstance(context, dict):
        raise SecretFileError("line 3: the context is not a JSON object")
    blobs: dict[str, bytes] = {}
    for number, line in enumerate(lines[3:], start=4):
        name, equals, value = line.partition("=")
        if not equals:
            # Comments and blank lines would be dropped by the next write:
            # refused, so nothing a person wrote disappears silently.
            raise SecretFileError(
                f"line {number} is not NAME={VALUE_PREFIX}... (comments and blank lines "
                "are kept out of keycask's secrets files)"
            )
        if not valid_name(name):
            raise SecretFileError(f"line {number}: the name does not match {NAME_RULE}")
        if name in blobs:
            raise SecretFileError(f"line {number}: {name} appears twice")
        try:
            blobs[name] = decode_value(value, name)
        except SecretFileError as error:
            raise SecretFileError(f"line {number}: {error}") from None
    return SecretFile(key_id, check_context(context), blobs)
