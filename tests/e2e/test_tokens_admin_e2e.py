"""Bearer tokens' and XKS credentials' admin operations (handlers/tokens.py,
handlers/xks_credentials.py) as a hostile or careless caller meets them:
expired tokens do not hold places of the per-principal limit, and neither
RevokeToken nor DeleteXksCredential says which ids exist to a caller who may
not revoke them."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

import pytest
from tests.conftest import DevCallError, Server, dev_call


def _principal(server: Server, policy: dict[str, Any] | None = None) -> tuple[str, tuple[str, str]]:
    name = f"tok-{uuid.uuid4().hex[:8]}"
    created = json.loads(server.cli("principals", "create", name, "--json").stdout)
    if policy is not None:
        path = server.data_dir.parent / f"{name}.json"
        path.write_text(json.dumps(policy))
        server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    return name, (created["AccessKeyId"], created["SecretAccessKey"])


def _admin(server: Server, target: str, body: dict[str, Any], creds: tuple[str, str]) -> Any:
    return dev_call(server.endpoint, creds, body, target="KeycaskAdmin." + target)


@pytest.mark.slow
def test_expired_tokens_are_removed_when_the_next_is_made(fresh_server: Server) -> None:
    name, _ = _principal(fresh_server)
    for _ in range(3):
        fresh_server.cli("principals", "token", "create", name, "--ttl", "60")
    listed = json.loads(fresh_server.cli("principals", "token", "list", name, "--json").stdout)
    assert len(listed) == 3
    # Tokens expire by the wall clock (the dev clock moves only rotation and
    # deletion), and 60 seconds is the shortest TTL.
    time.sleep(61)
    fresh_server.cli("principals", "token", "create", name, "--ttl", "3600")
    listed = json.loads(fresh_server.cli("principals", "token", "list", name, "--json").stdout)
    assert len(listed) == 1
    audit = []
    for segment in sorted((fresh_server.data_dir / "audit").glob("*.jsonl")):
        audit += [json.loads(line) for line in segment.read_text().splitlines() if line]
    made = [r for r in audit if r["operation"] == "KeycaskAdmin.CreateToken"]
    assert "3 expired token(s) removed" in (made[-1].get("detail") or "")
    # Removed for good, with no tombstone: short-lived tokens made over and
    # over leave nothing behind (an expired row put back is expired still).
    uri = f"file:{fresh_server.data_dir / 'keycask.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        paths = [row[0] for row in conn.execute("SELECT path FROM kv")]
    assert len([p for p in paths if p.startswith("token/")]) == 1
    assert not [p for p in paths if p.startswith("tomb/token/")]


def test_revoke_token_authorizes_before_it_says_not_found(server: Server) -> None:
    target, _ = _principal(server)
    account = json.loads(server.cli("principals", "list", "--json").stdout)[0]["Arn"].split(":")[4]
    narrow = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "keycask:RevokeToken",
                "Resource": f"arn:aws:iam::{account}:user/{target}",
            }
        ],
    }
    _, creds = _principal(server, narrow)
    absent = uuid.uuid4().hex[:16]
    # May revoke one principal's tokens only: an unknown id is a refusal,
    # the same answer as another principal's existing token would get.
    with pytest.raises(DevCallError) as refused:
        _admin(server, "RevokeToken", {"TokenId": absent}, creds)
    assert refused.value.code == "AccessDeniedException"
    other, _ = _principal(server)
    server.cli("principals", "token", "create", other)
    listed = json.loads(server.cli("principals", "token", "list", other, "--json").stdout)
    with pytest.raises(DevCallError) as refused:
        _admin(server, "RevokeToken", {"TokenId": listed[0]["TokenId"]}, creds)
    assert refused.value.code == "AccessDeniedException"
    # Its own principal's token: revoked.
    server.cli("principals", "token", "create", target)
    mine = json.loads(server.cli("principals", "token", "list", target, "--json").stdout)
    _admin(server, "RevokeToken", {"TokenId": mine[0]["TokenId"]}, creds)
    # An administrator, who may revoke any token, learns that one is absent.
    with pytest.raises(DevCallError) as missing:
        _admin(server, "RevokeToken", {"TokenId": absent}, server.credentials())
    assert missing.value.code == "NotFoundException"


def test_delete_xks_credential_authorizes_before_it_says_not_found(server: Server) -> None:
    target, _ = _principal(server)
    account = json.loads(server.cli("principals", "list", "--json").stdout)[0]["Arn"].split(":")[4]
    narrow = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "keycask:DeleteXksCredential",
                "Resource": f"arn:aws:iam::{account}:user/{target}",
            }
        ],
    }
    _, creds = _principal(server, narrow)
    absent = "XKKC" + "A" * 22
    with pytest.raises(DevCallError) as refused:
        _admin(server, "DeleteXksCredential", {"AccessKeyId": absent}, creds)
    assert refused.value.code == "AccessDeniedException"
    with pytest.raises(DevCallError) as missing:
        _admin(server, "DeleteXksCredential", {"AccessKeyId": absent}, server.credentials())
    assert missing.value.code == "NotFoundException"
