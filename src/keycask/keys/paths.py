"""Where keys and what hangs off them live in the store, and the schedule.

Paths:
    key/<key id>                             key metadata (JSON)
    mat/<key id>/<version, 10 digits>        key material of one version
    idx/key/<account>/<region>/<key id>      listing index for ListKeys
    mrk/<32 hex>                             empty; the multi-Region key existed
                                             (written once, never deleted)
    mat/mrk-<32 hex>/<version, 10 digits>    a multi-Region set's shared material
    idx/key/<account>/<region>/mrk-<32 hex>  a multi-Region copy's listing entry
    alias/<account>/<region>/<alias name>    alias (JSON)
    sched/<epoch seconds, 12 digits>/<job>/<key id>
                                             empty; the lifecycle jobs due then
    import/<key id>/<token id>               wrapping key of one GetParametersForImport
    usage/<key id>                           the key's last successful cryptographic use
    gone/<key id>                            empty; the key existed and was deleted
    grant/<key id>/<grant id>                a grant on the key (JSON)
    retiring/<principal arn>/<key id>/<grant id>
                                             empty; ListRetirableGrants pages over it
    cks/<account>/<region>/<store id>        a custom key store (JSON; keys/custom_stores.py)
    cksidx/<store id>/<key id>               empty; a key of that custom key store

A multi-Region key's copy in a region lives at ``key/<record id>``
(``ids.record_id``), so every per-region path above (grants, usage, schedule,
import tokens, ``gone/``, ``retiring/``) takes the record id like a UUID key
id; only its material and listing entry are named by the ``mrk-`` id.

Every change to a key brings its schedule entries (``due_jobs``) along in the
same commit, so the schedule is a function of the keys and never disagrees
with them.
"""

from __future__ import annotations

import math
import re
import uuid

import orjson

from keycask.keys.ids import MRK_PREFIX, format_mrk, parse_mrk, record_id
from keycask.keys.model import Key, KeyState

# Lifecycle jobs the scheduler runs when their time comes.
JOB_ROTATE = "rotate"
JOB_DELETE = "delete"
JOB_EXPIRE = "expire"
JOB_TOKENS = "tokens"  # sweep a key's (or Cloud KMS import job's) expired import parameters
# Destroy the material of the key's Cloud KMS versions scheduled for
# destruction (service/core/gcp_versions.py); not derived from the key's
# own fields, like JOB_TOKENS.
JOB_GCP_DESTROY = "gcpdestroy"
# Rotate an Azure Key Vault key by its rotation policy
# (service/core/azure_rotation.py): a new version, a keycask key of its own.
JOB_AZURE_ROTATE = "azrotate"
# Carry out an Azure Key Vault key's Notify action (the same module): a
# KeyNearExpiry notice for each version whose exp is that close.
JOB_AZURE_NOTIFY = "aznotify"
SCHED_PREFIX = "sched/"
MRK_MARKER_PREFIX = "mrk/"


def key_path(key_id: uuid.UUID) -> str:
    return f"key/{key_id}"


def material_path(key_id: uuid.UUID, version: int) -> str:
    return f"mat/{key_id}/{version:010d}"


def material_prefix(key_id: uuid.UUID) -> str:
    return f"mat/{key_id}/"


def mrk_marker_path(mrk: bytes) -> str:
    return MRK_MARKER_PREFIX + format_mrk(mrk)[len(MRK_PREFIX) :]


def mrk_material_path(mrk: bytes, version: int) -> str:
    return f"mat/{format_mrk(mrk)}/{version:010d}"


def mrk_material_prefix(mrk: bytes) -> str:
    return f"mat/{format_mrk(mrk)}/"


def key_material_path(key: Key, version: int) -> str:
    """Where ``key``'s material of ``version`` is: its own for a single-Region
    key, the set's shared material for a multi-Region copy."""
    if key.mrk is None:
        return material_path(key.key_id, version)
    return mrk_material_path(key.mrk, version)


def index_path(key: Key) -> str:
    """``key``'s ListKeys entry: named by its public id, so a listing shows
    ``mrk-...`` and never a record id."""
    return index_prefix(key.account, key.region) + key.public_id


def index_entry_key_id(region: str, entry: str) -> uuid.UUID:
    """The stored key id (a record id for an ``mrk-`` entry) behind the last
    part of an index path of ``region``."""
    mrk = parse_mrk(entry)
    return uuid.UUID(entry) if mrk is None else record_id(mrk, region)


def parse_material_path(path: str) -> tuple[uuid.UUID | bytes, int]:
    """(key id, version) of ``mat/<key id>/<version>``, or (mrk id, version) of
    ``mat/mrk-<hex>/<version>``."""
    _, owner, version = path.split("/")
    mrk = parse_mrk(owner)
    return (uuid.UUID(owner) if mrk is None else mrk), int(version)


def import_prefix(key_id: uuid.UUID) -> str:
    return f"import/{key_id}/"


def gone_path(key_id: uuid.UUID) -> str:
    return f"gone/{key_id}"


TRANSIT_PREFIX = "transit/"


def transit_path(key_id: uuid.UUID) -> str:
    """A key's Vault Transit settings (service/core/transit.py)."""
    return f"{TRANSIT_PREFIX}{key_id}"


VAULT_MOUNTS_PREFIX = "vault/mounts/"


def vault_mounts_path(account: str, region: str) -> str:
    """An account's Vault Transit mounts in a region (service/core/transit_mounts.py)."""
    return f"{VAULT_MOUNTS_PREFIX}{account}/{region}"


GCP_RING_PREFIX = "gcp/ring/"
GCP_KEY_PREFIX = "gcp/key/"
GCP_RING_COUNT_PREFIX = "gcp/ring-count/"
GCP_JOB_PREFIX = "gcp/job/"
GCP_JOB_COUNT_PREFIX = "gcp/job-count/"


def gcp_ring_count_path(account: str, region: str) -> str:
    """How many Cloud KMS key rings an account has made in a region, over
    all its projects and the locations that name the region (the bound
    service/core/gcp.py keeps)."""
    return f"{GCP_RING_COUNT_PREFIX}{account}/{region}"


def gcp_ring_prefix(account: str, project: str, location: str) -> str:
    """Where a Cloud KMS project's key rings in a location are listed
    (service/core/gcp.py): one document per key ring, named by its id."""
    return f"{GCP_RING_PREFIX}{account}/{project}/{location}/"


def gcp_job_prefix(account: str, project: str, location: str, ring: str) -> str:
    """Where a Cloud KMS key ring's import jobs are listed
    (service/core/gcp_imports.py): one document per job, named by its id.
    Apart from the key rings' prefix, so that a listing of key rings never
    meets a job."""
    return f"{GCP_JOB_PREFIX}{account}/{project}/{location}/{ring}/"


def gcp_job_count_path(account: str, region: str) -> str:
    """How many Cloud KMS import jobs an account has made in a region (the
    bound service/core/gcp_imports.py keeps)."""
    return f"{GCP_JOB_COUNT_PREFIX}{account}/{region}"


def gcp_key_path(key_id: uuid.UUID) -> str:
    """A key's Cloud KMS settings (service/core/gcp.py): its name, labels, purpose."""
    return f"{GCP_KEY_PREFIX}{key_id}"


AZURE_KEY_PREFIX = "azure/key/"
AZURE_GATE_PREFIX = "azure/gate/"


def azure_gate_path(key_id: uuid.UUID) -> str:
    """An Azure Key Vault version's conditions on use (nbf, exp, key_ops),
    beside its own keycask key, checked by every door (service/core/azure_gate.py)."""
    return f"{AZURE_GATE_PREFIX}{key_id}"


def azure_key_path(key_id: uuid.UUID) -> str:
    """An Azure Key Vault key's settings (service/core/azure.py): its vault,
    name and versions, kept beside its first version's keycask key."""
    return f"{AZURE_KEY_PREFIX}{key_id}"


def usage_path(key_id: uuid.UUID) -> str:
    return f"usage/{key_id}"


def sched_path(when: float, job: str, key_id: uuid.UUID) -> str:
    # Rounded up: an entry never comes due before its event does.
    return f"{SCHED_PREFIX}{max(0, math.ceil(when)):012d}/{job}/{key_id}"


def due_jobs(key: Key) -> set[str]:
    """The schedule entries ``key`` needs: one per lifecycle event ahead of it.

    Derived from the key alone, so every change to a key brings its schedule
    along in the same commit and the two never disagree.
    """
    paths: set[str] = set()
    if key.state is KeyState.PENDING_DELETION and key.deletion_date is not None:
        paths.add(sched_path(key.deletion_date.timestamp(), JOB_DELETE, key.key_id))
    if (
        key.state is KeyState.ENABLED
        and key.rotation_period_days is not None
        and key.next_rotation is not None
        # A multi-Region set rotates once, from its primary's record: the
        # replicas' copies of next_rotation are the shared value, not jobs.
        and key.multi_region_type != "REPLICA"
        and key.rotates_on_schedule
    ):
        paths.add(sched_path(key.next_rotation.timestamp(), JOB_ROTATE, key.key_id))
    expiring = [v.valid_to for v in key.versions if v.imported and v.valid_to is not None]
    if expiring:
        paths.add(sched_path(min(expiring).timestamp(), JOB_EXPIRE, key.key_id))
    return paths


def import_token_expiry(value: bytes) -> float:
    """When stored import parameters expire (epoch seconds). The service
    writes them as JSON with an ``expires`` member."""
    return float(orjson.loads(value)["expires"])


def parse_sched_path(path: str) -> tuple[int, str, uuid.UUID]:
    when, job, key_id = path[len(SCHED_PREFIX) :].split("/")
    return int(when), job, uuid.UUID(key_id)


def index_prefix(account: str, region: str) -> str:
    return f"idx/key/{account}/{region}/"


def alias_prefix(account: str, region: str) -> str:
    return f"alias/{account}/{region}/"


GRANT_PREFIX = "grant/"
RETIRING_PREFIX = "retiring/"
# What follows ``retiring/<principal arn>/`` in an index entry of exactly that
# principal (a principal with a longer ARN shares the prefix, not the shape).
RETIRING_TAIL = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/([0-9a-f]{64})"
)


def grant_prefix(key_id: uuid.UUID) -> str:
    return f"{GRANT_PREFIX}{key_id}/"


def retiring_prefix(principal: str) -> str:
    return f"{RETIRING_PREFIX}{principal}/"


CUSTOM_STORE_PREFIX = "cks/"
CUSTOM_STORE_KEYS_PREFIX = "cksidx/"


def custom_store_prefix(account: str, region: str) -> str:
    return f"{CUSTOM_STORE_PREFIX}{account}/{region}/"


def custom_store_path(account: str, region: str, store_id: str) -> str:
    return custom_store_prefix(account, region) + store_id


def custom_store_keys_prefix(store_id: str) -> str:
    return f"{CUSTOM_STORE_KEYS_PREFIX}{store_id}/"


def custom_store_key_path(store_id: str, key_id: uuid.UUID) -> str:
    return f"{custom_store_keys_prefix(store_id)}{key_id}"
