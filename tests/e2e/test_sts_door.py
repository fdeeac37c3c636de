"""The STS door end to end: a real keycask server, called by boto3's STS
client, the AWS CLI (``AWS_ENDPOINT_URL_STS``) and raw requests that no SDK
would send. Every answer is STS's XML (read by botocore's Query parser),
every request is audited under the door ``sts``, and a KMS request keeps
reaching the KMS door whatever its content type."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from conftest import Server, dev_call

FORM = "application/x-www-form-urlencoded; charset=utf-8"
WHO_AM_I = b"Action=GetCallerIdentity&Version=2011-06-15"
AWS = Path(sys.executable).parent / "aws"


def _sts(server: Server, key: tuple[str, str]) -> Any:
    return boto3.client(
        "sts",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def _user(server: Server, name: str) -> dict[str, Any]:
    """A new user principal (KeycaskAdmin.CreatePrincipal) and its access key."""
    return dev_call(
        server.endpoint,
        server.credentials(),
        {"Name": name},
        target="KeycaskAdmin.CreatePrincipal",
    )


def _post(
    server: Server, body: bytes, headers: dict[str, str], path: str = "/"
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def _signed(
    server: Server,
    body: bytes,
    key: tuple[str, str],
    *,
    service: str = "sts",
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=body,
        headers={"Content-Type": FORM, **(headers or {})},
    )
    SigV4Auth(Credentials(*key), service, "us-east-1").add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def _sts_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The error as botocore's Query parser reads it, after checking it is STS's XML."""
    assert headers["content-type"] == "text/xml", headers
    assert body.startswith(b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">')
    assert b"Traceback" not in body
    parsed = create_parser("query").parse(
        {"body": body, "headers": headers, "status_code": status}, None
    )
    assert parsed["ResponseMetadata"]["RequestId"] == headers["x-amzn-requestid"]
    error: dict[str, Any] = parsed["Error"]
    return error


def _records(server: Server, request_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [
            record
            for path in sorted((Path(server.data_dir) / "audit").glob("*.jsonl"))
            for line in path.read_text().splitlines()
            if (record := json.loads(line)).get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- GetCallerIdentity by real clients --


def test_get_caller_identity_names_the_signing_user(server: Server) -> None:
    user = _user(server, f"sts-{uuid.uuid4().hex[:8]}")
    answer = _sts(server, (user["AccessKeyId"], user["SecretAccessKey"])).get_caller_identity()
    assert answer["Arn"] == user["Arn"]
    assert answer["UserId"] == user["UniqueId"]
    assert answer["Account"] == user["Arn"].split(":")[4]
    metadata = answer["ResponseMetadata"]
    assert metadata["HTTPHeaders"]["content-type"] == "text/xml"
    assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"]
    (record,) = _records(server, metadata["RequestId"])
    assert record["door"] == "sts"
    assert record["operation"] == "GetCallerIdentity"
    assert record["principal"] == user["Arn"]
    assert record["outcome"] == "success"
    assert record["decision"] == "allow"


def test_the_aws_cli_gets_the_caller_identity(server: Server, tmp_path: Path) -> None:
    user = _user(server, f"cli-{uuid.uuid4().hex[:8]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL_STS=server.endpoint,
        AWS_ACCESS_KEY_ID=user["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=user["SecretAccessKey"],
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    done = subprocess.run(
        [str(AWS), "sts", "get-caller-identity", "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "UserId": user["UniqueId"],
        "Account": user["Arn"].split(":")[4],
        "Arn": user["Arn"],
    }


# -- refusals, in STS's words --


def test_an_unsigned_request_is_refused(server: Server) -> None:
    status, headers, body = _post(server, WHO_AM_I, {"Content-Type": FORM})
    assert status == 403
    assert _sts_error(status, headers, body)["Code"] == "MissingAuthenticationToken"
    (record,) = _records(server, headers["x-amzn-requestid"])
    assert record["door"] == "sts" and record["outcome"] == "error"
    assert record["operation"] == "GetCallerIdentity"


def test_a_wrong_secret_is_a_signature_that_does_not_match(server: Server) -> None:
    access_key, _ = server.credentials()
    headers = _signed(server, WHO_AM_I, (access_key, "x" * 40))
    status, answer_headers, body = _post(server, WHO_AM_I, headers)
    assert status == 403
    error = _sts_error(status, answer_headers, body)
    assert error["Code"] == "SignatureDoesNotMatch" and error["Type"] == "Sender"
    with pytest.raises(ClientError) as refused:
        _sts(server, (access_key, "y" * 40)).get_caller_identity()
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_an_unknown_access_key_is_an_invalid_client_token_id(server: Server) -> None:
    with pytest.raises(ClientError) as refused:
        _sts(server, ("AKIAUNKNOWNUNKNOWN00", "z" * 40)).get_caller_identity()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_signature_scoped_to_another_service_is_refused(server: Server) -> None:
    headers = _signed(server, WHO_AM_I, server.credentials(), service="kms")
    status, answer_headers, body = _post(server, WHO_AM_I, headers)
    error = _sts_error(status, answer_headers, body)
    assert (status, error["Code"]) == (403, "SignatureDoesNotMatch")
    assert "'sts'" in error["Message"]


def test_a_body_changed_after_signing_is_refused(server: Server) -> None:
    headers = _signed(server, WHO_AM_I, server.credentials())
    tampered = WHO_AM_I + b"&Extra=1"
    headers["Content-Length"] = str(len(tampered))
    status, answer_headers, body = _post(server, tampered, headers)
    assert _sts_error(status, answer_headers, body)["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        (b"Action=Frobnicate&Version=2011-06-15", "Frobnicate"),
        (b"Action=GetCallerIdentity&Version=2011-06-16", "2011-06-16"),
        (b"Version=2011-06-15", "no Action"),
        (b"Action=GetSessionToken&Version=2011-06-15", "GetSessionToken"),
    ],
)
def test_actions_keycask_does_not_serve_are_invalid_actions(
    server: Server, form: bytes, fragment: str
) -> None:
    status, headers, body = _post(server, form, _signed(server, form, server.credentials()))
    error = _sts_error(status, headers, body)
    assert (status, error["Code"]) == (400, "InvalidAction")
    assert fragment in error["Message"]
    (record,) = _records(server, headers["x-amzn-requestid"])
    assert record["door"] == "sts" and record["error_code"] == "UnknownOperationException"


def test_an_unknown_action_is_answered_only_to_an_authenticated_caller(server: Server) -> None:
    form = b"Action=Frobnicate&Version=2011-06-15"
    status, headers, body = _post(server, form, {"Content-Type": FORM})
    assert _sts_error(status, headers, body)["Code"] == "MissingAuthenticationToken"


@pytest.mark.parametrize(
    "form",
    [
        b"Action=GetCallerIdentity&Version",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%zz",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%FF",
        b"Action=GetCallerIdentity&Action=GetCallerIdentity&Version=2011-06-15",
        b"\xff\xfe",
    ],
)
def test_malformed_forms_are_validation_errors(server: Server, form: bytes) -> None:
    status, headers, body = _post(server, form, _signed(server, form, server.credentials()))
    error = _sts_error(status, headers, body)
    assert (status, error["Code"]) == (400, "ValidationError")
    (record,) = _records(server, headers["x-amzn-requestid"])
    assert record["door"] == "sts"


def test_members_the_model_does_not_have_are_refused(server: Server) -> None:
    form = WHO_AM_I + b"&Colour=red"
    status, headers, body = _post(server, form, _signed(server, form, server.credentials()))
    error = _sts_error(status, headers, body)
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "Colour" in error["Message"]


def test_parameters_in_the_query_string_are_refused(server: Server) -> None:
    status, headers, body = _post(
        server,
        WHO_AM_I,
        _signed(server, WHO_AM_I, server.credentials()),
        path="/?Action=GetCallerIdentity",
    )
    error = _sts_error(status, headers, body)
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "query string" in error["Message"]


def test_assume_role_with_web_identity_is_sent_unsigned_and_reaches_its_handler(
    server: Server,
) -> None:
    """No credentials at all, as botocore sends it; until the handlers land
    the answer is UnsupportedOperation, not an authentication failure."""
    anonymous = boto3.client(
        "sts",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
    )
    with pytest.raises(ClientError) as refused:
        anonymous.assume_role_with_web_identity(
            RoleArn="arn:aws:iam::000000000000:role/ci",
            RoleSessionName="run-1",
            WebIdentityToken="header.payload.signature",
        )
    assert refused.value.response["Error"]["Code"] not in (
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
    )
    request_id = refused.value.response["ResponseMetadata"]["RequestId"]
    (record,) = _records(server, request_id)
    assert record["door"] == "sts" and record["operation"] == "AssumeRoleWithWebIdentity"
    assert record["principal"] is None


def test_assume_role_refuses_parameters_keycask_does_not_implement(server: Server) -> None:
    with pytest.raises(ClientError) as refused:
        _sts(server, server.credentials()).assume_role(
            RoleArn="arn:aws:iam::000000000000:role/ci",
            RoleSessionName="run-1",
            SerialNumber="arn:aws:iam::000000000000:mfa/me",
            TokenCode="123456",
        )
    assert refused.value.response["Error"]["Code"] == "UnsupportedOperation"
    assert "SerialNumber" in refused.value.response["Error"]["Message"]


# -- the other doors are where they were --


def test_a_kms_request_with_a_form_content_type_still_reaches_the_kms_door(
    server: Server,
) -> None:
    body = b"{}"
    headers = _signed(
        server,
        body,
        server.credentials(),
        service="kms",
        headers={"X-Amz-Target": "TrentService.ListKeys"},
    )
    status, answer_headers, answer = _post(server, body, headers)
    assert status == 400
    assert answer_headers["content-type"] == "application/x-amz-json-1.1"
    assert json.loads(answer)["__type"] == "SerializationException"
    (record,) = _records(server, answer_headers["x-amzn-requestid"])
    assert record["door"] == "kms" and record["operation"] == "ListKeys"


def test_an_untargeted_json_request_is_still_the_kms_doors(server: Server) -> None:
    body = b"{}"
    headers = _signed(
        server,
        body,
        server.credentials(),
        service="kms",
        headers={"Content-Type": "application/x-amz-json-1.1"},
    )
    status, answer_headers, answer = _post(server, body, headers)
    assert status == 400
    assert answer_headers["content-type"] == "application/x-amz-json-1.1"
    # The KMS door's answer as before: its signatures must cover X-Amz-Target.
    assert json.loads(answer)["__type"] == "IncompleteSignatureException"
    (record,) = _records(server, answer_headers["x-amzn-requestid"])
    assert record["door"] == "kms"


def test_kms_calls_work_alongside(server: Server, kms: Any) -> None:
    key = kms.create_key(Description="sts door neighbour")["KeyMetadata"]["KeyId"]
    assert (
        kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"])[
            "Plaintext"
        ]
        == b"x"
    )


def test_a_sealed_server_answers_sts_calls_service_unavailable(fresh_server: Server) -> None:
    dev_call(fresh_server.endpoint, fresh_server.credentials(), {}, target="KeycaskOperator.Seal")
    status, headers, body = _post(
        fresh_server, WHO_AM_I, _signed(fresh_server, WHO_AM_I, fresh_server.credentials())
    )
    error = _sts_error(status, headers, body)
    assert (status, error["Code"], error["Type"]) == (503, "ServiceUnavailable", "Receiver")
    assert "sealed" in error["Message"]
    (record,) = _records(fresh_server, headers["x-amzn-requestid"])
    assert record["door"] == "sts" and record["error_code"] == "KMSInvalidStateException"
