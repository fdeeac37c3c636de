"""Role sessions against a real server with two worker processes, driven by
boto3 and the AWS CLI holding temporary credentials.

Until the STS door answers AssumeRole over the wire, the test issues the
session itself with keycask's ``SessionTokens`` on the data dir's store,
committing a new token key (if one is made) as a local operator's command
does: under the servers' writer lock. The servers then open the token from
the store as they would one their own AssumeRole issued.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from keycask import config
from keycask.app import open_store
from keycask.auth.sessions import Issued, NewSession, SessionTokens
from keycask.cli.localstore import writing

if TYPE_CHECKING:
    from conftest import Server

AWS = Path(sys.executable).parent / "aws"


def admin(server: Server, operation: str, **body: Any) -> dict[str, Any]:
    from conftest import dev_call

    return dev_call(server.endpoint, server.credentials(), body, target="KeycaskAdmin." + operation)


def issue(server: Server, account: str, role_id: str, **changes: Any) -> Issued:
    """A session of role ``app``, issued on the data dir's store."""

    async def run() -> Issued:
        settings = config.load(dev=True, data_dir=str(server.data_dir))
        storage, barrier = await open_store(settings)
        try:
            now = datetime.now(UTC)
            issued = await SessionTokens(barrier).issue(
                NewSession(
                    account=account,
                    role_name="app",
                    role_id=role_id,
                    session_name="e2e",
                    expires=int((now + timedelta(hours=1)).timestamp()),
                    **changes,
                ),
                now,
            )
            if issued.writes:
                async with writing(settings, storage, barrier):
                    await barrier.commit(issued.writes)
            return issued
        finally:
            await storage.close()

    return asyncio.run(run())


def session_client(server: Server, issued: Issued, token: str | None = None) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=issued.claims.access_key_id,
        aws_secret_access_key=issued.claims.secret,
        aws_session_token=issued.token if token is None else token,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_boto3_and_the_aws_cli_with_session_credentials(workers: Server, tmp_path: Path) -> None:
    created = admin(workers, "CreatePrincipal", Name="app", Role=True)
    account = created["Arn"].split(":")[4]
    use = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
            }
        ],
    }
    admin(
        workers, "PutPrincipalPolicy", Name="app", PolicyName="use", PolicyDocument=json.dumps(use)
    )
    key = workers.client().create_key()["KeyMetadata"]["Arn"]
    issued = issue(workers, account, created["UniqueId"], source_identity="alice")
    session_arn = f"arn:aws:sts::{account}:assumed-role/app/e2e"

    # Several clients (connections): whichever worker answers opens the token.
    for _ in range(4):
        kms = session_client(workers, issued)
        blob = kms.encrypt(KeyId=key, Plaintext=b"temporary")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"temporary"

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=issued.claims.access_key_id,
        AWS_SECRET_ACCESS_KEY=issued.claims.secret,
        AWS_SESSION_TOKEN=issued.token,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    described = subprocess.run(
        [str(AWS), "--endpoint-url", workers.endpoint, "kms", "describe-key", "--key-id", key],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["KeyMetadata"]["Arn"] == key

    records = [
        json.loads(line)
        for segment in sorted((workers.data_dir / "audit").glob("server*.jsonl"))
        for line in segment.read_text().splitlines()
    ]
    mine = [r for r in records if r["access_key_id"] == issued.claims.access_key_id]
    assert {r["operation"] for r in mine} >= {"Encrypt", "Decrypt", "DescribeKey"}
    assert all(r["principal"] == session_arn for r in mine)
    assert all(r["source_identity"] == "alice" for r in mine)

    # Another token with this session's key: refused. Then the role goes.
    other = issue(workers, account, created["UniqueId"])
    with pytest.raises(ClientError) as refused:
        session_client(workers, issued, other.token).describe_key(KeyId=key)
    assert code(refused) == "UnrecognizedClientException"
    admin(workers, "DeletePrincipal", Name="app")
    for _ in range(4):
        with pytest.raises(ClientError) as revoked:
            session_client(workers, issued).describe_key(KeyId=key)
        assert code(revoked) == "UnrecognizedClientException"
