"""Bounds a hostile or careless Vault client meets at keycask's transit
mounts (service/core/transit_mounts.py): the one document holding an
account's mounts cannot be grown without end."""

from __future__ import annotations

import json
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
