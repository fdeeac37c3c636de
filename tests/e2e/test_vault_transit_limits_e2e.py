"""Bounds a hostile or careless Vault client meets at keycask's Vault door:
the one document holding an account's mounts cannot be grown without end
(service/core/transit_mounts.py), and slow key generation does not stall
the other writes (Action.prepare)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import hvac
import hvac.exceptions
import pytest
from tests.conftest import Server


def _vault(server: Server) -> hvac.Client:
    name = f"lim-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    allow = {"Effect": "Allow", "Action": ["kms:*", "keycask:*VaultMount*"], "Resource": "*"}
    path = server.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": [allow]}))
    server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    token = json.loads(server.cli("principals", "token", "create", name, "--json").stdout)["Token"]
    return hvac.Client(url=server.endpoint, token=token)


def test_mount_count_and_description_are_bounded(fresh_server: Server) -> None:
    vault = _vault(fresh_server)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="at most 1024"):
        vault.sys.enable_secrets_engine("transit", path="long", description="d" * 1025)
    vault.sys.enable_secrets_engine("transit", path="edge", description="d" * 1024)
    for n in range(99):
        vault.sys.enable_secrets_engine("transit", path=f"m{n}")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="the limit is 100"):
        vault.sys.enable_secrets_engine("transit", path="one-too-many")
    listed = vault.sys.list_mounted_secrets_engines()["data"]
    assert "one-too-many/" not in listed and len([p for p in listed if p.endswith("/")]) == 101
    # Disabling one makes room again.
    vault.sys.disable_secrets_engine("m0")
    vault.sys.enable_secrets_engine("transit", path="one-too-many")


def test_rsa_generation_does_not_hold_the_write_lock(fresh_server: Server) -> None:
    """Two rsa-4096 keys made through the Vault door (whose CreateKey runs
    under the write lock, to make the alias) generate before the lock is
    taken: a write sent while they generate is answered first. Under the old
    order it waited for at least one generation (seconds) to end."""
    vault = _vault(fresh_server)
    vault.secrets.transit.create_key("other")
    done: list[str] = []

    def create(name: str) -> None:
        _vault_client(vault).secrets.transit.create_key(name, key_type="rsa-4096")
        done.append(name)

    threads = [threading.Thread(target=create, args=(f"big{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # both requests are in; the generations take seconds
    vault.secrets.transit.update_key_configuration("other", deletion_allowed=True)
    done.append("config")
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(done) == ["big0", "big1", "config"]
    assert done.index("config") < 2, done
    for name in ("big0", "big1"):
        assert vault.secrets.transit.read_key(name)["data"]["type"] == "rsa-4096"


def _vault_client(vault: hvac.Client) -> hvac.Client:
    return hvac.Client(url=vault.url, token=vault.token)


def test_mount_names_and_the_mounts_document_are_bounded(fresh_server: Server) -> None:
    vault = _vault(fresh_server)
    # /v1/projects/ is the Cloud KMS door's.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="reserved"):
        vault.sys.enable_secrets_engine("transit", path="projects")
    # A mount names its keys alias/<mount>/<name>: the other doors' alias
    # prefixes are not a mount's (found in review: a mount "azure" took
    # alias/azure/_backup, a mount "aws" alias/aws/s3).
    for reserved in ("aws", "gcp", "azure", "azure/orders"):
        with pytest.raises(hvac.exceptions.InvalidRequest, match="reserved"):
            vault.sys.enable_secrets_engine("transit", path=reserved)
    # Characters JSON escapes take 6 bytes each: the document's encoded size
    # is bounded, not only each description's length.
    escaped = "\u0001" * 1024
    refused = 0
    for n in range(60):
        try:
            vault.sys.enable_secrets_engine("transit", path=f"e{n}", description=escaped)
        except hvac.exceptions.InvalidRequest as error:
            assert "256 KiB" in str(error)
            refused += 1
    assert refused > 0
    listed = vault.sys.list_mounted_secrets_engines()["data"]
    assert 40 <= len([p for p in listed if p.startswith("e")]) < 60
