"""An Azure Key Vault rotation policy's Notify action, carried out by
keycask's scheduler (service/core/azure_rotation.py): Key Vault's
KeyNearExpiry event given as an audit record, a ``key_near_expiry`` log
event (``--log-format json``) and a count in ``/metrics``, once per version
and trigger, armed again by a new exp, on keycask's lifecycle clock
(``keycask dev advance-clock``), across a restart. Driven with
azure-keyvault-keys against a real server over TLS."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import (
    KeyClient,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
)
from cluster import audit_records, pg_schema
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import dev_call
from tests.e2e.test_azure_keyvault_e2e import TlsServer, _keys, _name, _records
from tests.e2e.test_gcp_kms_e2e import _token, _user

NOTIFY = "AzureKeyVault.KeyNearExpiry"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    """A fresh server (its lifecycle clock at the wall clock's time), its
    log in JSON lines in a file of its own."""
    srv = TlsServer(
        tmp_path / "data",
        args=("--tls-self-signed", "--log-format", "json"),
        stderr_path=tmp_path / "stderr.log",
    ).start()
    yield srv
    if srv.proc is not None:
        srv.stop()


def _client(server: TlsServer) -> KeyClient:
    return _keys(server, _token(server, _user(server, ["kms:*"])))


def _advance(server: TlsServer, duration: str) -> None:
    server.cli("dev", "advance-clock", duration)


def _notify(before: str, *, rotate: KeyRotationLifetimeAction | None = None) -> dict[str, Any]:
    actions = [KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry=before)]
    if rotate is not None:
        actions.insert(0, rotate)
    return {"lifetime_actions": actions}


def _notices(server: TlsServer, name: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in _records(server)
        if r.get("operation") == NOTIFY and (name is None or f"/{name} version" in r["detail"])
    ]


def _log_events(server: TlsServer, name: str | None = None) -> list[dict[str, Any]]:
    assert server.stderr_path is not None
    lines = server.stderr_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [
        e for e in events if e["event"] == "key_near_expiry" and (name is None or e["key"] == name)
    ]


def _counted(server: TlsServer) -> float:
    context = ssl.create_default_context(cafile=str(server.cert))
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=10, context=context) as r:
        text = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keycask_key_near_expiry_notices_total"
        and sample.labels == {"door": "azure-keyvault"}
    )


def _settle() -> None:
    """Room for the scheduler's own tick (once a second) to do anything
    it would do on top of the advance's run of due jobs."""
    time.sleep(1.5)


def test_notify_fires_once_per_version_and_again_for_a_new_exp(server: TlsServer) -> None:
    keys = _client(server)
    name = _name()
    exp = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    first = keys.create_rsa_key(name, expires_on=exp)
    version = first.properties.version
    assert version is not None
    # Another key under the same kind of policy, with no exp: never noticed.
    plain = _name()
    keys.create_ec_key(plain)
    for key in (name, plain):
        keys.update_key_rotation_policy(
            key, KeyRotationPolicy(), expires_in="P90D", **_notify("P30D")
        )
    assert [
        (a.action, a.time_before_expiry)
        for a in keys.get_key_rotation_policy(name).lifetime_actions
    ] == [("Notify", "P30D")]

    _advance(server, "5d")  # 35 days before exp
    _settle()
    assert _notices(server) == [] and _log_events(server) == []

    _advance(server, "6d")  # 29 days before exp: inside P30D
    _settle()
    [record] = _notices(server)
    assert record["door"] == "azure-keyvault"
    assert record["principal"] == "keycask"
    assert record["outcome"] == "success"
    meta = server.aws().describe_key(KeyId=f"alias/azure/default/{name}")["KeyMetadata"]
    assert record["key_arn"] == meta["Arn"]
    assert (
        f"Azure key default/{name} version {version} expires {exp.isoformat()}"
        in (record["detail"])
    )
    assert "(in 29 day(s))" in record["detail"]
    assert "timeBeforeExpiry P30D" in record["detail"]
    [event] = _log_events(server)
    assert event["level"] == "warning"
    assert {k: event[k] for k in ("door", "operation", "vault", "key", "version", "exp")} == {
        "door": "azure-keyvault",
        "operation": NOTIFY,
        "vault": "default",
        "key": name,
        "version": version,
        "exp": exp.isoformat(),
    }
    assert event["time_before_expiry"] == "P30D" and event["key_arn"] == meta["Arn"]
    assert _counted(server) == 1

    # Later: still the one notice (it was recorded in the key's settings).
    _advance(server, "10d")
    _settle()
    assert len(_notices(server)) == 1 and len(_log_events(server)) == 1
    assert _counted(server) == 1
    # A version made by hand has no exp: nothing for it.
    keys.rotate_key(name)
    _advance(server, "1d")
    _settle()
    assert len(_notices(server)) == 1

    # A new exp arms it again: 45 days ahead of keycask's clock (22 days on).
    moved = exp + timedelta(days=22 + 45 - 40)
    keys.update_key_properties(name, version, expires_on=moved)
    _advance(server, "10d")  # 35 days before the new exp
    _settle()
    assert len(_notices(server)) == 1
    _advance(server, "6d")  # 29 days before it
    _settle()
    records = _notices(server)
    assert len(records) == 2
    assert f"version {version} expires {moved.isoformat()}" in records[1]["detail"]
    assert [e["exp"] for e in _log_events(server)] == [exp.isoformat(), moved.isoformat()]
    assert _counted(server) == 2
    # The key without exp was never noticed.
    assert _notices(server, plain) == [] and _log_events(server, plain) == []


def test_an_exp_already_inside_the_window_is_noticed_at_once(server: TlsServer) -> None:
    keys = _client(server)
    name = _name()
    exp = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    keys.create_ec_key(name, expires_on=exp)
    keys.update_key_rotation_policy(name, KeyRotationPolicy(), expires_in="P90D", **_notify("P30D"))
    _advance(server, "1s")
    _settle()
    [record] = _notices(server, name)
    assert f"expires {exp.isoformat()} (in 10 day(s))" in record["detail"]
    # A shorter Notify is another trigger: noticed again when it comes.
    keys.update_key_rotation_policy(name, KeyRotationPolicy(), expires_in="P90D", **_notify("P7D"))
    _advance(server, "2d")  # 8 days left
    _settle()
    assert len(_notices(server, name)) == 1
    _advance(server, "1d12h")  # 6.5 days left
    _settle()
    assert len(_notices(server, name)) == 2
    # Expired: near expiry no more.
    _advance(server, "30d")
    _settle()
    assert len(_notices(server, name)) == 2 and len(_log_events(server, name)) == 2


def test_rotate_and_notify_in_one_policy(server: TlsServer) -> None:
    keys = _client(server)
    name = _name()
    exp = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    first = keys.create_rsa_key(name, expires_on=exp, key_operations=["sign", "verify"])
    rotate = KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_before_expiry="P15D")
    keys.update_key_rotation_policy(
        name, KeyRotationPolicy(), expires_in="P60D", **_notify("P20D", rotate=rotate)
    )
    got = keys.get_key_rotation_policy(name)
    assert [(a.action, a.time_before_expiry) for a in got.lifetime_actions] == [
        ("Rotate", "P15D"),
        ("Notify", "P20D"),
    ]

    def rotations() -> list[dict[str, Any]]:
        return [r for r in _records(server) if r.get("operation") == "AzureKeyVault.RotateKey"]

    _advance(server, "21d")  # v1: 19 days left: noticed, not yet rotated (at 15)
    _settle()
    assert [r["detail"].split(" expires ")[0] for r in _notices(server)] == [
        f"Azure key default/{name} version {first.properties.version}"
    ]
    assert rotations() == []

    _advance(server, "5d")  # v1: 14 days left: rotated; v2 expires in 60 days
    _settle()
    assert len(rotations()) == 1
    assert rotations()[0]["door"] == "azure-keyvault"
    second = keys.get_key(name)
    assert second.properties.version != first.properties.version
    assert len(_notices(server)) == 1

    _advance(server, "40d")  # v2: 20 days left (v1 expired meanwhile): noticed
    _settle()
    notices = _notices(server)
    assert len(notices) == 2
    assert f"version {second.properties.version} expires" in notices[1]["detail"]
    assert len(rotations()) == 1

    _advance(server, "6d")  # v2: 14 days left: rotated again; no other notice
    _settle()
    assert len(rotations()) == 2
    assert len(_notices(server)) == 2 and len(_log_events(server)) == 2
    assert _counted(server) == 2


def test_a_notice_survives_a_restart_and_is_not_repeated(server: TlsServer) -> None:
    keys = _client(server)
    name = _name()
    exp = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    keys.create_ec_key(name, expires_on=exp)
    keys.update_key_rotation_policy(name, KeyRotationPolicy(), expires_in="P90D", **_notify("P30D"))
    server.restart()  # armed before, carried out after
    _advance(server, "11d")
    _settle()
    assert len(_notices(server, name)) == 1
    server.restart()  # carried out before: not again
    _advance(server, "1d")
    _settle()
    assert len(_notices(server, name)) == 1
    assert len(_log_events(server, name)) == 1


def test_a_deleted_key_is_not_noticed_until_it_is_recovered(server: TlsServer) -> None:
    keys = _client(server)
    name = _name()
    exp = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    keys.create_ec_key(name, expires_on=exp)
    keys.update_key_rotation_policy(name, KeyRotationPolicy(), expires_in="P90D", **_notify("P30D"))
    keys.begin_delete_key(name).wait()
    _advance(server, "11d")
    _settle()
    assert _notices(server, name) == []
    keys.begin_recover_deleted_key(name).wait()
    _advance(server, "1s")
    _settle()
    assert len(_notices(server, name)) == 1


def test_notify_takes_time_before_expiry_only(server: TlsServer) -> None:
    keys = _client(server)
    name = _name()
    keys.create_ec_key(name)
    bad = KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_after_create="P30D")
    with pytest.raises(HttpResponseError) as caught:
        keys.update_key_rotation_policy(
            name, KeyRotationPolicy(), expires_in="P90D", lifetime_actions=[bad]
        )
    assert caught.value.status_code == 400
    assert "timeBeforeExpiry" in str(caught.value)
    # As with Rotate, a timeBeforeExpiry needs the policy's expiryTime.
    with pytest.raises(HttpResponseError) as caught:
        keys.update_key_rotation_policy(name, KeyRotationPolicy(), **_notify("P30D"))
    assert caught.value.status_code == 400
    assert keys.get_key_rotation_policy(name).lifetime_actions == []


def test_nodes_sharing_a_postgresql_store_notice_once(tmp_path: Path) -> None:
    """Two nodes whose clocks both pass the Notify time and both run the
    due jobs at the same moment (as well as the scheduler of the node that
    holds the jobs lock): one notice, in one node's audit log."""
    with pg_schema() as dsn:
        nodes = [
            TlsServer(
                tmp_path / f"node{n}",
                args=("--tls-self-signed",),
                env_extra={"KEYCASK_STORAGE": dsn},
            )
            for n in "ab"
        ]
        first, second = nodes
        try:
            first.start()
            second.data_dir.mkdir(mode=0o700, parents=True)
            for name in ("dev-root.key", "credentials"):
                shutil.copy2(first.data_dir / name, second.data_dir / name)
                (second.data_dir / name).chmod(0o600)
            second.start()
            keys = _client(first)
            name = _name()
            exp = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
            keys.create_ec_key(name, expires_on=exp)
            keys.update_key_rotation_policy(
                name, KeyRotationPolicy(), expires_in="P90D", **_notify("P30D")
            )

            def advance(days: int) -> None:
                # Each node keeps its own dev clock: both move, both run jobs.
                barrier = threading.Barrier(len(nodes))

                def one(node: TlsServer) -> None:
                    barrier.wait()
                    dev_call(
                        node.endpoint,
                        first.credentials(),
                        {"Seconds": days * 86400, "RunJobs": True},
                        ca_file=str(node.cert),
                    )

                threads = [threading.Thread(target=one, args=(node,)) for node in nodes]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(120)
                _settle()

            def notices() -> list[dict[str, Any]]:
                return [
                    r
                    for node in nodes
                    for r in audit_records(node.data_dir)
                    if r.get("operation") == NOTIFY and f"/{name} version" in r["detail"]
                ]

            advance(5)
            assert notices() == []
            advance(6)
            assert len(notices()) == 1
            advance(5)
            assert len(notices()) == 1
        finally:
            for node in nodes:
                if node.proc is not None:
                    node.stop(signal.SIGKILL)
