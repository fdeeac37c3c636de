"""Vault Transit mounts: ``POST`` / ``DELETE /v1/sys/mounts/<path>`` and
``GET /v1/sys/mounts``, as Vault clients and provisioning tools manage them.

Each mount is its own namespace of key names: the transit key ``NAME`` of
the mount ``PATH`` is the key the alias ``alias/PATH/NAME`` names. The
default mount ``transit`` is always there and cannot be disabled. The
others are listed per account and region in one document at
``vault/mounts/<account>/<region>`` behind the barrier. Disabling a mount
schedules every key its aliases name for deletion (ScheduleKeyDeletion with
the shortest waiting period, 7 days; a key already waiting is left as it
is) and removes those aliases (DeleteAlias), in one commit.

Managing mounts is authorized as ``keycask:EnableVaultMount``,
``keycask:DisableVaultMount`` and ``keycask:ListVaultMounts`` (identity
policies; administrators may); disabling also needs kms:ScheduleKeyDeletion
and kms:DeleteAlias on each key, as the AWS door would.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from keycask.errors import NotFoundException, ValidationException
from keycask.keys.model import KeyState
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import aliases, deletion
from keycask.service.core.requests import DeleteAliasRequest, ScheduleKeyDeletionRequest

DEFAULT_MOUNT = "transit"
# Path segments that name a transit operation: a mount's own segments never
# do, so a request path splits into mount and operation one way only.
OPERATION_SEGMENTS = frozenset(
    {"keys", "encrypt", "decrypt", "rewrap", "datakey", "random", "hmac", "sign", "verify",
     "hash", "export", "backup", "restore"}
)  # fmt: skip
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
# "projects" is the Cloud KMS door's path (/v1/projects/...); the first
# segments of the reserved alias prefixes (aws, gcp, azure) are other doors'
# aliases: a mount there would write alias/aws/..., alias/azure/... and so
# stand in for an AWS managed key or another door's key (found in review).
_RESERVED = (
    frozenset({"sys", "auth", "cubbyhole", "identity", "projects"})
    | aliases.reserved_mount_segments()
)
# alias/<mount>/<name> must fit AWS's 256 characters with room for the name.
MAX_MOUNT_LENGTH = 128
# Bounds of the one document that holds an account's mounts per region, read
# on every request to a mount other than the default: 100 mounts, each
# description at most 1,024 characters, the whole document at most 256 KiB
# encoded (a character JSON escapes takes up to 6 bytes). Vault sets none of
# these; AWS's own per-account quotas are of this order.
MAX_MOUNTS = 100
MAX_DESCRIPTION = 1024
MAX_DOCUMENT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Mount:
    path: str
    description: str
    created: float
    accessor: str


@dataclass(frozen=True, slots=True)
class EnableMountRequest:
    path: str
    type: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class MountPathRequest:
    path: str


@dataclass(frozen=True, slots=True)
class ListMountsRequest:
    pass


@dataclass(frozen=True, slots=True)
class MountsResult:
    mounts: tuple[Mount, ...]


def check_mount_path(path: str) -> str:
    """The mount path without its trailing slash; ValidationException if it
    is not one keycask takes."""
    path = path.strip("/")
    segments = path.split("/")
    if not path or len(path) > MAX_MOUNT_LENGTH or not all(map(_SEGMENT.fullmatch, segments)):
        raise ValidationException(
            f"invalid mount path {path[:64]!r}: segments of A-Z a-z 0-9 _ - separated by /, "
            f"at most {MAX_MOUNT_LENGTH} characters"
        )
    if segments[0] in _RESERVED or any(s in OPERATION_SEGMENTS for s in segments):
        raise ValidationException(f"cannot mount at {path[:64]!r}: the path is reserved")
    return path


def _default(created: float) -> Mount:
    return Mount(DEFAULT_MOUNT, "the default transit mount", created, "transit_default")


async def _stored(deps: Deps, call: Call) -> tuple[dict[str, Mount], int]:
    stored = await deps.keys.vault_mounts(call.account, call.region)
    if not stored.value:
        return {}, 0
    doc = orjson.loads(stored.value)
    return {
        path: Mount(path, str(m["description"]), float(m["created"]), str(m["accessor"]))
        for path, m in doc.items()
    }, stored.revision


def _doc(mounts: dict[str, Mount]) -> bytes:
    return orjson.dumps(
        {
            m.path: {"description": m.description, "created": m.created, "accessor": m.accessor}
            for m in mounts.values()
        }
    )


async def require_mount(deps: Deps, call: Call, mount: str) -> None:
    """NotFoundException unless ``mount`` is enabled (the default always is)."""
    if mount == DEFAULT_MOUNT:
        return
    known, _ = await _stored(deps, call)
    if mount not in known:
        raise NotFoundException(f"no handler for route: no transit mount at {mount[:64]!r}")


def mounted(
    handler: Callable[[Deps, Call, Any], Awaitable[Outcome]],
) -> Callable[[Deps, Call, Any], Awaitable[Outcome]]:
    """``handler``, run only if the request's mount is enabled."""

    async def run(deps: Deps, call: Call, req: Any) -> Outcome:
        await require_mount(deps, call, req.mount)
        return await handler(deps, call, req)

    return run


async def list_mounts(deps: Deps, call: Call, req: ListMountsRequest) -> Outcome:
    await call.authorize("keycask:ListVaultMounts")
    known, _ = await _stored(deps, call)
    default = _default(0.0)
    return Outcome(MountsResult((default, *sorted(known.values(), key=lambda m: m.path))))


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


async def enable_mount(deps: Deps, call: Call, req: EnableMountRequest) -> Outcome:
    await call.authorize("keycask:EnableVaultMount")
    if req.type != "transit":
        raise ValidationException(f"keycask mounts transit engines only, not {req.type[:32]!r}")
    path = check_mount_path(req.path)
    if len(req.description) > MAX_DESCRIPTION:
        raise ValidationException(
            f"description must be at most {MAX_DESCRIPTION} characters, not {len(req.description)}"
        )
    known, revision = await _stored(deps, call)
    for existing in (DEFAULT_MOUNT, *known):
        if _overlaps(path, existing):
            raise ValidationException(f"path is already in use at {existing}/")
    if len(known) >= MAX_MOUNTS:
        raise ValidationException(
            f"this account has {len(known)} transit mounts in this region besides the "
            f"default; the limit is {MAX_MOUNTS}: disable one first"
        )
    mount = Mount(path, req.description, call.time.timestamp(), "transit_" + secrets.token_hex(4))
    known[path] = mount
    doc = _doc(known)
    if len(doc) > MAX_DOCUMENT:
        raise ValidationException(
            f"this account's transit mounts in this region would take more than "
            f"{MAX_DOCUMENT // 1024} KiB: use shorter descriptions, or disable a mount first"
        )
    call.detail = f"transit mount {path}/ enabled"
    write = deps.keys.stage_vault_mounts(call.account, call.region, doc, revision)
    return Outcome(None, [write])


async def disable_mount(deps: Deps, call: Call, req: MountPathRequest) -> Outcome:
    await call.authorize("keycask:DisableVaultMount")
    path = req.path.strip("/")
    if path == DEFAULT_MOUNT:
        raise ValidationException("the default mount transit cannot be disabled")
    known, revision = await _stored(deps, call)
    if path not in known:
        raise ValidationException(f"no matching mount at {path[:64]!r}")
    writes: list[Write] = []
    scheduled: set[str] = set()
    prefix = f"alias/{path}/"
    after = ""
    while True:
        batch = await deps.keys.list_aliases(call.account, call.region, after, 500)
        for alias in batch:
            if not alias.name.startswith(prefix):
                continue
            stored = await deps.keys.get(alias.target)
            if stored is not None and str(stored.value.key_id) not in scheduled:
                key = stored.value
                scheduled.add(str(key.key_id))
                if key.state not in (KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION):
                    out = await deletion.schedule_key_deletion(
                        deps,
                        call,
                        ScheduleKeyDeletionRequest(
                            key_id=key.arn,
                            pending_window_in_days=deletion.MIN_PENDING_WINDOW_DAYS,
                        ),
                    )
                    writes.extend(out.writes)
            removed = await aliases.delete_alias(deps, call, DeleteAliasRequest(alias.name))
            writes.extend(removed.writes)
        if len(batch) < 500:
            break
        after = batch[-1].name
    del known[path]
    writes.append(deps.keys.stage_vault_mounts(call.account, call.region, _doc(known), revision))
    call.detail = (
        f"transit mount {path}/ disabled: {len(scheduled)} keys scheduled for deletion "
        f"in {deletion.MIN_PENDING_WINDOW_DAYS} days, their aliases removed"
    )
    return Outcome(None, writes)
