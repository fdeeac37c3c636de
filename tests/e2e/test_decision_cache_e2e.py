"""The authorization decision cache never outlives what it decided on (issue
15): for each change of a key policy, an identity policy, a grant (created,
revoked, retired), a key's state (disabled, scheduled for deletion) and a
principal's access key (deactivated, deleted), the caller's decisions are
warmed first (the same request, answered from memory), then the change is
made and the very next request must get the new answer:

* on one process;
* on two workers of one server (``--workers 2``): the caller has a
  kept-alive connection to each worker and the very next request on each is
  checked, so one of them always runs on the worker that did not make the
  change;
* on two PostgreSQL nodes: the change is made on node A; node B learns of a
  commit by LISTEN/NOTIFY, at a moment of its own, so the test first waits
  until B shows that it has dropped its caches, through a path that does not
  use the decision cache: after the change, A writes a marker (a new tag
  value on a key B has cached) and B's ListResourceTags, answered from B's
  key cache, shows it only once B has dropped every cache after both
  commits. Then the very next request on B (and on A, which committed) must
  be decided anew.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from cluster import Cluster, client, pg_schema, poll

from conftest import Server, dev_call

CONTEXT = {"purpose": "decision-cache"}
WARM = 3  # requests per connection before a change: the later ones are remembered


@dataclass
class Topology:
    """Where a change is made and where the next request is checked."""

    admin: Any  # a kms client of the process that makes the changes
    admin_call: Callable[[str, dict[str, Any]], dict[str, Any]]  # KeycaskAdmin.* there
    # Clients of ``credentials``, one per process whose next request is checked.
    callers: Callable[[tuple[str, str]], list[Any]]
    # Returns once every checked process has dropped what the last change
    # made stale (at once, except across nodes).
    settle: Callable[[], None]


def _code(call: Callable[[], object]) -> str:
    try:
        call()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def _encrypt(kms: Any, key: str) -> Callable[[], object]:
    return lambda: kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=CONTEXT)


def _warm(topology: Topology, callers: list[Any], key: str, expected: str) -> None:
    topology.settle()  # across nodes: a principal, key or grant made on A, known on B
    for kms in callers:
        for _ in range(WARM):
            assert _code(_encrypt(kms, key)) == expected


def _next(topology: Topology, callers: list[Any], key: str, expected: str) -> None:
    """The very next Encrypt on every checked process answers ``expected``."""
    topology.settle()
    found = [_code(_encrypt(kms, key)) for kms in callers]
    assert found == [expected] * len(callers)


def _principal(topology: Topology, name: str, *actions: str) -> tuple[tuple[str, str], str]:
    made = topology.admin_call("CreatePrincipal", {"Name": name})
    if actions:
        _put_identity(topology, name, *actions)
    return (made["AccessKeyId"], made["SecretAccessKey"]), str(made["Arn"])


def _put_identity(topology: Topology, name: str, *actions: str) -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
    }
    body = {"Name": name, "PolicyName": "use", "PolicyDocument": json.dumps(document)}
    topology.admin_call("PutPrincipalPolicy", body)


def exercise(topology: Topology) -> None:
    admin = topology.admin
    key = admin.create_key(Description="decision cache")["KeyMetadata"]["KeyId"]
    default_policy = admin.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    alice, alice_arn = _principal(topology, "alice", "kms:Encrypt", "kms:DescribeKey")
    callers = topology.callers(alice)

    # 1. The key policy: an explicit deny of alice, then the old policy again.
    _warm(topology, callers, key, "ok")
    denying = json.loads(default_policy)
    denying["Statement"].append(
        {
            "Sid": "DenyAlice",
            "Effect": "Deny",
            "Principal": {"AWS": alice_arn},
            "Action": "kms:Encrypt",
            "Resource": "*",
        }
    )
    admin.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(denying))
    _next(topology, callers, key, "AccessDeniedException")
    _warm(topology, callers, key, "AccessDeniedException")
    admin.put_key_policy(KeyId=key, PolicyName="default", Policy=default_policy)
    _next(topology, callers, key, "ok")

    # 2. Alice's identity policy: Encrypt taken away, then given back.
    _warm(topology, callers, key, "ok")
    _put_identity(topology, "alice", "kms:DescribeKey")
    _next(topology, callers, key, "AccessDeniedException")
    _warm(topology, callers, key, "AccessDeniedException")
    _put_identity(topology, "alice", "kms:Encrypt", "kms:DescribeKey")
    _next(topology, callers, key, "ok")

    # 3. Grants to bob, who has no policy of his own: created, revoked,
    # created again and retired by bob himself.
    bob, bob_arn = _principal(topology, "bob")
    bobs = topology.callers(bob)
    _warm(topology, bobs, key, "AccessDeniedException")
    grant = admin.create_grant(KeyId=key, GranteePrincipal=bob_arn, Operations=["Encrypt"])
    _next(topology, bobs, key, "ok")
    _warm(topology, bobs, key, "ok")
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    _next(topology, bobs, key, "AccessDeniedException")
    _warm(topology, bobs, key, "AccessDeniedException")
    grant = admin.create_grant(
        KeyId=key, GranteePrincipal=bob_arn, Operations=["Encrypt", "RetireGrant"]
    )
    _next(topology, bobs, key, "ok")
    _warm(topology, bobs, key, "ok")
    # By bob, on the process that makes the changes (the last one checked).
    bobs[-1].retire_grant(KeyId=key, GrantId=grant["GrantId"])
    _next(topology, bobs, key, "AccessDeniedException")

    # 4. The key's state: disabled, enabled, scheduled for deletion, cancelled.
    _warm(topology, callers, key, "ok")
    admin.disable_key(KeyId=key)
    _next(topology, callers, key, "DisabledException")
    admin.enable_key(KeyId=key)
    _next(topology, callers, key, "ok")
    _warm(topology, callers, key, "ok")
    admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    _next(topology, callers, key, "KMSInvalidStateException")
    admin.cancel_key_deletion(KeyId=key)
    admin.enable_key(KeyId=key)
    _next(topology, callers, key, "ok")

    # 5. Alice's access key: deactivated, activated, deleted.
    _warm(topology, callers, key, "ok")
    topology.admin_call("UpdateAccessKey", {"AccessKeyId": alice[0], "Status": "Inactive"})
    _next(topology, callers, key, "UnrecognizedClientException")
    topology.admin_call("UpdateAccessKey", {"AccessKeyId": alice[0], "Status": "Active"})
    _next(topology, callers, key, "ok")
    _warm(topology, callers, key, "ok")
    topology.admin_call("DeleteAccessKey", {"AccessKeyId": alice[0]})
    _next(topology, callers, key, "UnrecognizedClientException")


def _admin_call(endpoint: str, credentials: tuple[str, str]) -> Callable[..., dict[str, Any]]:
    def call(operation: str, body: dict[str, Any]) -> dict[str, Any]:
        return dev_call(endpoint, credentials, body, target="KeycaskAdmin." + operation)

    return call


# -- one process --


def test_one_process_decides_anew_after_every_change(fresh_server: Server) -> None:
    exercise(
        Topology(
            admin=fresh_server.client(),
            admin_call=_admin_call(fresh_server.endpoint, fresh_server.credentials()),
            callers=lambda credentials: [fresh_server.client(credentials)],
            settle=lambda: None,
        )
    )


# -- two workers --


def _segment_sizes(server: Server) -> list[int]:
    paths = [server.data_dir / "audit" / f"server-{slot}.jsonl" for slot in (0, 1)]
    return [p.stat().st_size if p.exists() else 0 for p in paths]


def _one_per_worker(server: Server, credentials: tuple[str, str]) -> list[Any]:
    """A client (one kept-alive connection) on each worker, worker 0 first:
    which worker served a request is the one whose audit segment grew (every
    request is audited before it is answered, denied ones too). Which worker
    accepts a connection is the kernel's choice; the bound is generous."""
    found: dict[int, Any] = {}
    for _ in range(300):
        kms = server.client(credentials)
        before = _segment_sizes(server)
        _code(kms.list_keys)
        after = _segment_sizes(server)
        grown = [n for n in (0, 1) if after[n] > before[n]]
        if len(grown) == 1:
            found.setdefault(grown[0], kms)
        if len(found) == 2:
            return [found[0], found[1]]
    raise AssertionError("the kernel never gave a connection to both workers")


def test_two_workers_decide_anew_after_every_change(workers: Server) -> None:
    # Changes go through one kept-alive connection (one worker) and admin
    # calls through new ones (either worker); the next request is checked on
    # both workers, so always on one that did not make the change.
    exercise(
        Topology(
            admin=_one_per_worker(workers, workers.credentials())[1],
            admin_call=_admin_call(workers.endpoint, workers.credentials()),
            callers=lambda credentials: _one_per_worker(workers, credentials),
            settle=lambda: None,
        )
    )


# -- two PostgreSQL nodes --


def test_two_nodes_decide_anew_after_every_change(tmp_path: Path) -> None:
    with pg_schema() as dsn:
        cluster = Cluster(tmp_path, dsn, size=2).start()
        try:
            a, b = cluster.nodes
            admin_a, admin_b = client(a), client(b)
            marker = admin_a.create_key(Description="marker")["KeyMetadata"]["KeyId"]

            def tags_on_b() -> dict[str, str]:
                listed = admin_b.list_resource_tags(KeyId=marker)["Tags"]
                return {t["TagKey"]: t["TagValue"] for t in listed}

            def settle() -> None:
                # A's marker write commits after the change; B shows it from
                # its key cache only once it has dropped every cache since.
                value = uuid.uuid4().hex
                admin_a.tag_resource(KeyId=marker, Tags=[{"TagKey": "m", "TagValue": value}])
                poll("B sees the marker", lambda: tags_on_b().get("m") == value or None, 30)

            poll("B caches the marker key", lambda: tags_on_b() is not None, 30)
            exercise(
                Topology(
                    admin=admin_a,
                    admin_call=_admin_call(a.endpoint, cluster.admin),
                    callers=lambda credentials: [client(b, credentials), client(a, credentials)],
                    settle=settle,
                )
            )
        finally:
            cluster.stop()
