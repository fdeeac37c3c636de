"""Consistent online backup and restore of a data directory on the SQLite store.

Why one module of ~640 lines: ``create_backup``, ``verify_backup`` and
``restore_backup`` are the writer and the two readers of one authenticated
format; the magic line, the manifest rules, the member names allowed, the
trailer and the list of files that must never be copied have to agree
between them, and a reader checking that restore refuses exactly what create
never writes needs them side by side.

What goes in a backup
---------------------
``keycask.db`` (a snapshot), ``seal.json`` when present, and every
``audit/*.jsonl`` segment. Nothing else, ever: not ``operator.json`` (a
restore makes a new operator token rather than bring back an old one), not ``dev-root.key``
(the plaintext dev root key), not ``credentials``/``config`` (the dev AWS
profile, which holds a secret access key), not ``tls/`` (its private key), not
``run/`` or ``dev-clock`` (per-host runtime state). The store holds only barrier
ciphertext, so a backup is useless without the seal's root key; shipping the
dev root key inside it would undo exactly that. A --dev data dir is still backed
up, with the key left out and a note saying so in ``BackupInfo.notes``.

Consistency
-----------
The database is copied with SQLite's online backup API from a read connection on
the live file, in one step: that step runs inside one read transaction, and WAL
gives a reader a fixed snapshot while other processes keep committing. The copy
is switched to rollback-journal mode so the snapshot is one self-contained file.

The audit segments are copied *after* the database snapshot. keycask writes an
audit record durably before it commits (audit-before-commit), so every commit in
the snapshot already has its record in the segments copied later. Segments are
append-only and may grow during the copy; each is copied up to the last complete
line present when it was opened, so no record is ever cut in half.

File format (version 2)
-----------------------
::

    KEYCASK-BACKUP 2\\n                          magic line
    <manifest JSON, one line, UTF-8>\\n
    <file 1 bytes><file 2 bytes>...             in manifest order, sizes from the manifest
    HMAC-SHA256 <64 lowercase hex>\\n            the tag of the SHA-256 of every byte before

The manifest::

    {"format": 2, "created": "2025-01-01T00:00:00+00:00",
     "files": [{"name": "keycask.db", "size": 8192, "sha256": "<hex>"}, ...],
     "notes": ["..."]}

Names are POSIX relative paths and must be one of ``keycask.db`` (required),
``seal.json`` or ``audit/<segment>.jsonl``; anything else
(absolute paths, ``..``, other files) makes the whole backup invalid.

Why this framing rather than tar: the only parser involved is ``json``; tar
would bring member types (symlinks, hard links, devices) and header quirks that
restore would have to refuse one by one. Sizes in the manifest frame the body,
so any truncation or insertion shifts the trailer and is caught.

Authentication
--------------
The per-file SHA-256 sums only say which member is damaged. What makes a
backup trustworthy is the trailer: an HMAC under a key derived from the root
key (``keycask.crypto.backup_mac``), computed by a holder of the root (the
unsealed server, or the dev key) and checked before restore writes anything.
The barrier authenticates every stored *value*, but not the files around it:
a backup whose ``seal.json`` names a library to load, or whose database
carries a trigger, would pass every SHA-256 anyone can recompute. This module
never sees the root: callers pass ``tag``, which maps the 32-byte SHA-256 of
the file to its 32-byte tag. Format 1 (SHA-256 only) is refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from keycask.errors import StorageIntegrityError
from keycask.storage.sqlite import check_schema

MAGIC = b"KEYCASK-BACKUP 2\n"
_UNAUTHENTICATED_MAGIC = b"KEYCASK-BACKUP 1\n"
FORMAT_VERSION = 2
DB_FILE = "keycask.db"
SEAL_FILE = "seal.json"
OPERATOR_FILE = "operator.json"
# What a backup is tagged with: the SHA-256 of every byte before the trailer
# in, the 32-byte MAC out.
Tagger = Callable[[bytes], bytes]
# A seal file is a few hundred bytes; this bounds what is read of one before
# the backup is authenticated.
_MAX_SEAL = 64 << 10
AUDIT_DIR = "audit"
AUDIT_SUFFIX = ".jsonl"
# Files a data dir may have that must never be copied; named so the backup can
# say what it left out.
_SECRET_FILES = {
    "dev-root.key": "dev-root.key (the --dev plaintext root key) was left out: restore"
    " it separately, or the restored store cannot be unsealed",
    "credentials": "credentials (the dev AWS profile, holds a secret key) was left out",
    "config": "config (the dev AWS profile) was left out",
    "tls": "tls/ (the TLS private key) was left out: copy it separately or make a new one",
    OPERATOR_FILE: "operator.json (the operator token's hash) was left out: a restore makes "
    "a new token",
}

_TRAILER_PREFIX = b"HMAC-SHA256 "
_TRAILER_SIZE = len(_TRAILER_PREFIX) + 64 + 1
_CHUNK = 1 << 20
# A manifest line is a few hundred bytes per file; this bounds what a hostile
# or damaged backup can make us buffer before its checksum is known.
_MAX_MANIFEST = 16 << 20
NEXT_SEAL_FILE = "seal.next.json"  # a rekey in progress (service/sealing.py)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


_SEGMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.jsonl")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BackupError(Exception):
    """The backup could not be made, is damaged, or cannot be restored here."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    created: str
    files: tuple[str, ...]
    db_bytes: int
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class _Manifest:
    created: str
    members: tuple[_Member, ...]
    notes: tuple[str, ...]
    body_offset: int

    def info(self) -> BackupInfo:
        db_bytes = next(m.size for m in self.members if m.name == DB_FILE)
        return BackupInfo(
            created=self.created,
            files=tuple(m.name for m in self.members),
            db_bytes=db_bytes,
            notes=self.notes,
        )


# -- create ---------------------------------------------------------------------------


def create_backup(data_dir: Path, out: Path, tag: Tagger) -> BackupInfo:
    """Snapshot ``data_dir`` into the single file ``out`` (mode 0600, never
    overwritten), authenticated with ``tag`` (see "Authentication")."""
    db_path = data_dir / DB_FILE
    if not db_path.is_file():
        raise BackupError(f"{db_path} does not exist: not a keycask data dir on the SQLite store")
    if out.exists() or out.is_symlink():
        raise BackupError(f"{out} already exists: refusing to overwrite it")
    tmp_out = out.with_name(out.name + ".tmp")
    out_dir = out.parent
    if not out_dir.is_dir():
        raise BackupError(f"{out_dir} is not a directory")

    if (data_dir / NEXT_SEAL_FILE).exists():
        raise BackupError(
            f"a rekey is half done ({NEXT_SEAL_FILE} exists): unseal the server to finish "
            "it, then back up"
        )
    # The store and the seal file must match: a rekey between copying one and
    # the other would give a backup that nothing opens.
    seal_before = _read_or_none(data_dir / SEAL_FILE)
    notes = [note for name, note in _SECRET_FILES.items() if (data_dir / name).exists()]
    # Staging beside ``out``: same filesystem, private (mkdtemp is 0700), and
    # contents are hashed while copied because the manifest precedes them.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".keycask-backup-") as staging_name:
        staging = Path(staging_name)
        members: list[tuple[_Member, Path]] = []
        members.append(_stage_database(db_path, staging / "db"))
        source = data_dir / SEAL_FILE
        if source.exists() or source.is_symlink():
            members.append(_stage_file(source, SEAL_FILE, staging / SEAL_FILE, whole_lines=False))
        if not (data_dir / SEAL_FILE).exists() and not (data_dir / "dev-root.key").exists():
            notes.append("no seal.json in the data dir: restore needs the same seal configuration")
        audit_dir = data_dir / AUDIT_DIR
        if audit_dir.is_dir():
            for index, source in enumerate(sorted(audit_dir.glob("*" + AUDIT_SUFFIX))):
                name = f"{AUDIT_DIR}/{source.name}"
                if not _SEGMENT_NAME.fullmatch(source.name):
                    # Restore would refuse the name, so the backup would be
                    # unusable; better to leave out one stray file and say so.
                    notes.append(f"{name} was left out: not a valid audit segment name")
                    continue
                members.append(
                    _stage_file(source, name, staging / f"audit-{index}", whole_lines=True)
                )

        if (
            _read_or_none(data_dir / SEAL_FILE) != seal_before
            or (data_dir / NEXT_SEAL_FILE).exists()
        ):
            raise BackupError("the seal changed while the backup ran (a rekey?): back up again")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = {
            "format": FORMAT_VERSION,
            "created": created,
            "files": [{"name": m.name, "size": m.size, "sha256": m.sha256} for m, _ in members],
            "notes": notes,
        }
        manifest_line = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        try:
            fd = os.open(tmp_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise BackupError(
                f"{tmp_out} exists (an interrupted backup?): remove it and try again"
            ) from None
        try:
            with os.fdopen(fd, "wb") as dst:
                digest = hashlib.sha256()
                _write(dst, digest.update, MAGIC)
                _write(dst, digest.update, manifest_line + b"\n")
                for _, staged in members:
                    with staged.open("rb") as src:
                        for chunk in _chunks(src):
                            _write(dst, digest.update, chunk)
                dst.write(_trailer(tag, digest.digest()))
                # The tag is under the root the server holds now: a rekey
                # since the seal file was copied would make it not match.
                if _read_or_none(data_dir / SEAL_FILE) != seal_before:
                    raise BackupError(
                        "the seal changed while the backup ran (a rekey?): back up again"
                    )
                dst.flush()
                os.fsync(dst.fileno())
            _publish(tmp_out, out)
        except BaseException:
            tmp_out.unlink(missing_ok=True)
            raise
        _fsync_dir(out_dir)
    return BackupInfo(
        created=created,
        files=tuple(m.name for m, _ in members),
        db_bytes=members[0][0].size,
        notes=tuple(notes),
    )


def _stage_database(db_path: Path, target: Path) -> tuple[_Member, Path]:
    try:
        # mode=rw: never create a database where there is none; not mode=ro,
        # because a WAL reader may need to create the -shm file.
        source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {db_path}: {exc}") from exc
    try:
        source.execute("PRAGMA busy_timeout=10000")
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        dest = sqlite3.connect(target)
        try:
            # pages=-1: the whole database in one step, so in one read
            # transaction, so one consistent snapshot.
            source.backup(dest, pages=-1)
            # One self-contained file: no -wal beside the snapshot.
            dest.execute("PRAGMA journal_mode=DELETE")
            result = dest.execute("PRAGMA integrity_check").fetchall()
        finally:
            dest.close()
    except sqlite3.Error as exc:
        raise BackupError(f"snapshot of {db_path} failed: {exc}") from exc
    finally:
        source.close()
    if result != [("ok",)]:
        raise BackupError(f"snapshot of {db_path} fails integrity_check: {result[:5]}")
    digest = hashlib.sha256()
    size = 0
    with target.open("rb") as f:
        for chunk in _chunks(f):
            digest.update(chunk)
            size += len(chunk)
    return _Member(DB_FILE, size, digest.hexdigest()), target


def _stage_file(
    source: Path, name: str, target: Path, *, whole_lines: bool
) -> tuple[_Member, Path]:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise BackupError(f"cannot read {source} (a symlink?): {exc}") from exc
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise BackupError(f"{source} is not a regular file")
        # The size when opened bounds the copy: an append-only segment that
        # keeps growing must not keep the backup running.
        remaining = os.fstat(src.fileno()).st_size
        keep = 0
        written = 0
        with open(target, "xb") as dst:
            while remaining > 0:
                chunk = src.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                dst.write(chunk)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = written + newline + 1
                written += len(chunk)
            if whole_lines:
                # A record being appended right now is left for the next backup.
                dst.truncate(keep)
            else:
                keep = written
    digest = hashlib.sha256()
    with target.open("rb") as f:
        for chunk in _chunks(f):
            digest.update(chunk)
    return _Member(name, keep, digest.hexdigest()), target


def _publish(tmp: Path, out: Path) -> None:
    # link() fails if ``out`` appeared meanwhile, where rename() would silently
    # replace it.
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise BackupError(f"{out} already exists: refusing to overwrite it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A filesystem without hard links: the best left is check-then-rename.
        if out.exists() or out.is_symlink():
            raise BackupError(f"{out} already exists: refusing to overwrite it") from None
        os.rename(tmp, out)
        return
    tmp.unlink()


# -- verify ---------------------------------------------------------------------------


def verify_backup(path: Path, tag: Tagger) -> BackupInfo:
    """Check the magic, the tag over the whole file and every file's checksum."""
    with _open_backup(path) as f:
        manifest = _read_verified(f, path, tag)
        f.seek(manifest.body_offset)
        for member in manifest.members:
            digest = hashlib.sha256()
            for chunk in _read_exact(f, member.size):
                digest.update(chunk)
            _check_digest(member, digest.hexdigest())
    return manifest.info()


@contextlib.contextmanager
def _open_backup(path: Path) -> Iterator[IO[bytes]]:
    try:
        f = path.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot open backup {path}: {exc}") from exc
    with f:
        yield f


def _trailer(tag: Tagger, digest: bytes) -> bytes:
    mac = tag(digest)
    if len(mac) != 32:
        raise BackupError("the backup tag is not 32 bytes")
    return _TRAILER_PREFIX + mac.hex().encode() + b"\n"


def _check_magic(f: IO[bytes], path: Path) -> None:
    magic = f.read(len(MAGIC))
    if magic == _UNAUTHENTICATED_MAGIC:
        raise BackupError(
            f"{path} is a format 1 backup, which carries no MAC: nothing proves it was not "
            "modified, so it is not restored; take a new backup with this keycask"
        )
    if magic != MAGIC:
        raise BackupError(f"{path} is not a keycask backup (bad magic line)")


def backup_seal_file(path: Path) -> bytes | None:
    """The ``seal.json`` a backup carries, or None: what the caller needs to
    obtain the root (with the seal's secret) and so the tag. NOT yet
    authenticated: use it only to derive a root, never to configure anything."""
    with _open_backup(path) as f:
        _check_magic(f, path)
        line = f.readline(_MAX_MANIFEST)
        if not line.endswith(b"\n"):
            raise BackupError("backup manifest is missing or too large")
        manifest = _parse_manifest(line)
        offset = len(MAGIC) + len(line)
        for member in manifest.members:
            if member.name == SEAL_FILE:
                if member.size > _MAX_SEAL:
                    raise BackupError("the backup's seal.json is too large")
                f.seek(offset)
                data = b"".join(_read_exact(f, member.size))
                _check_digest(member, hashlib.sha256(data).hexdigest())
                return data
            offset += member.size
    return None


def _read_verified(f: IO[bytes], path: Path, tag: Tagger) -> _Manifest:
    """Check magic and the tag over the whole file, then parse the manifest."""
    _check_magic(f, path)
    total = os.fstat(f.fileno()).st_size
    if total < len(MAGIC) + _TRAILER_SIZE:
        raise BackupError(f"{path} is truncated: no checksum trailer")
    f.seek(0)
    digest = hashlib.sha256()
    for chunk in _read_exact(f, total - _TRAILER_SIZE):
        digest.update(chunk)
    trailer = f.read(_TRAILER_SIZE)
    expected = _trailer(tag, digest.digest())
    if not hmac.compare_digest(trailer, expected):
        raise BackupError(
            "backup checksum mismatch (its MAC does not verify): the file is damaged, "
            "truncated or was modified, or the seal's secret given is not this backup's"
        )

    f.seek(len(MAGIC))
    line = f.readline(_MAX_MANIFEST)
    if not line.endswith(b"\n"):
        raise BackupError("backup manifest is missing or too large")
    manifest = _parse_manifest(line)
    body_offset = len(MAGIC) + len(line)
    body = sum(m.size for m in manifest.members)
    if body_offset + body + _TRAILER_SIZE != total:
        raise BackupError("backup size does not match its manifest: the file is damaged")
    return _Manifest(manifest.created, manifest.members, manifest.notes, body_offset)


def _parse_manifest(line: bytes) -> _Manifest:
    try:
        raw: Any = json.loads(line)
    except ValueError as exc:
        raise BackupError(f"backup manifest is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_VERSION:
        raise BackupError(f"backup manifest is not format {FORMAT_VERSION}")
    created, files, notes = raw.get("created"), raw.get("files"), raw.get("notes")
    if not isinstance(created, str) or not isinstance(files, list) or not isinstance(notes, list):
        raise BackupError("backup manifest lacks created/files/notes")
    if not all(isinstance(n, str) for n in notes):
        raise BackupError("backup manifest notes must be strings")
    members: list[_Member] = []
    seen: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict) or set(entry) != {"name", "size", "sha256"}:
            raise BackupError(f"backup manifest entry is malformed: {entry!r}")
        name, size, sha = entry["name"], entry["size"], entry["sha256"]
        if not isinstance(name, str):
            raise BackupError(f"backup manifest names must be strings: {name!r}")
        _check_name(name)
        if name in seen:
            raise BackupError(f"backup names {name!r} twice")
        seen.add(name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BackupError(f"backup manifest size for {name!r} is invalid")
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise BackupError(f"backup manifest checksum for {name!r} is invalid")
        members.append(_Member(name, size, sha))
    if DB_FILE not in seen:
        raise BackupError(f"backup has no {DB_FILE}")
    return _Manifest(created, tuple(members), tuple(notes), 0)


def _check_name(name: str) -> None:
    """Refuse any name that is not one a backup is allowed to contain.

    An allowlist rather than a blocklist of ``..`` and ``/``: a crafted backup
    must not be able to plant ``dev-root.key``, ``credentials``,
    ``operator.json`` or a path outside the data dir.
    """
    pure = PurePosixPath(name)
    safe = (
        "\\" not in name
        and "\x00" not in name
        and not pure.is_absolute()
        and str(pure) == name
        and ".." not in pure.parts
    )
    allowed = name in (DB_FILE, SEAL_FILE) or (
        len(pure.parts) == 2 and pure.parts[0] == AUDIT_DIR and _SEGMENT_NAME.fullmatch(pure.name)
    )
    if not (safe and allowed):
        raise BackupError(f"backup names an unsafe or unexpected path: {name!r}")


def _check_digest(member: _Member, hexdigest: str) -> None:
    if not hmac.compare_digest(hexdigest, member.sha256):
        raise BackupError(
            f"checksum mismatch for {member.name}: the backup is damaged or was modified"
        )


# -- restore --------------------------------------------------------------------------


def restore_backup(path: Path, data_dir: Path, tag: Tagger) -> BackupInfo:
    """Restore into ``data_dir``, which must not exist or be empty, once the
    backup's tag verifies with ``tag``.

    Files are written into a private staging directory beside ``data_dir`` and
    checked again while written (the backup could change after
    ``verify_backup``); the restored database must pass ``integrity_check``.
    Only then does the staging directory become ``data_dir``, in one rename, so
    a failed restore leaves ``data_dir`` as it was.
    """
    verify_backup(path, tag)
    _check_target(data_dir)
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{data_dir.name}.restore-"))
    try:
        with _open_backup(path) as f:
            manifest = _read_verified(f, path, tag)
            f.seek(manifest.body_offset)
            for member in manifest.members:
                _restore_member(f, member, staging)
        _check_database(staging / DB_FILE)
        if (staging / AUDIT_DIR).is_dir():
            _fsync_dir(staging / AUDIT_DIR)
        os.chmod(staging, 0o700)
        _fsync_dir(staging)
        _check_target(data_dir)
        # rename(2) replaces an empty directory atomically and fails on a
        # non-empty one, so a dir filled meanwhile is not clobbered.
        try:
            os.rename(staging, data_dir)
        except OSError as exc:
            raise BackupError(f"cannot restore into {data_dir}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(parent)
    return manifest.info()


def _check_target(data_dir: Path) -> None:
    if data_dir.is_symlink():
        raise BackupError(f"{data_dir} is a symlink: restore into a real directory")
    if data_dir.exists():
        if not data_dir.is_dir():
            raise BackupError(f"{data_dir} exists and is not a directory")
        if any(data_dir.iterdir()):
            raise BackupError(f"{data_dir} is not empty: restore only into a new or empty dir")


def _restore_member(f: IO[bytes], member: _Member, staging: Path) -> None:
    target = staging.joinpath(*PurePosixPath(member.name).parts)
    if target.parent != staging:
        # Staging is fresh, so the directory cannot already be a symlink.
        target.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as dst:
        for chunk in _read_exact(f, member.size):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    _check_digest(member, digest.hexdigest())


def _check_database(db_path: Path) -> None:
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            # The table keycask reads, with the columns it reads.
            conn.execute("SELECT path, value, revision FROM kv LIMIT 0").fetchall()
            # Nothing else: the server would refuse to open it anyway.
            check_schema(conn, "the restored database")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"restored database does not open: {exc}") from exc
    except StorageIntegrityError as exc:
        raise BackupError(str(exc)) from exc
    if result != [("ok",)]:
        raise BackupError(f"restored database fails integrity_check: {result[:5]}")


# -- helpers --------------------------------------------------------------------------


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _read_exact(f: IO[bytes], size: int) -> Iterator[bytes]:
    remaining = size
    while remaining > 0:
        chunk = f.read(min(_CHUNK, remaining))
        if not chunk:
            raise BackupError("backup is truncated")
        remaining -= len(chunk)
        yield chunk


def _write(dst: IO[bytes], update: Callable[[bytes], object], data: bytes) -> None:
    dst.write(data)
    update(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
