"""What the command modules share: the audit record of a local operator's
change, one JSON call to the running server, the SigV4-signed call an
administrator's profile makes, and JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

from keycask import config
from keycask.audit import AuditRecord
from keycask.cli.errors import CommandFailed


class CallError(CommandFailed):
    """A call failed; the text is what to print: ``<Code>: <message>``, or why
    the server could not be reached."""


def local_record(
    operation: str,
    detail: str,
    *,
    outcome: str = "success",
    key_arn: str | None = None,
    region: str | None = None,
) -> AuditRecord:
    """A change made straight in the data dir, whose access is the authority."""
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        operation=operation,
        principal="local operator",
        access_key_id=None,
        source_ip=None,
        key_arn=key_arn,
        encryption_context=None,
        decision="allow",
        decided_by="local access to the data directory",
        outcome=outcome,
        error_code=None if outcome == "success" else "KMSInternalException",
        region=region,
        detail=detail,
    )


def post_json(
    request: urllib.request.Request,
    *,
    where: str,
    timeout: float,
    opener: urllib.request.OpenerDirector | None = None,
) -> dict[str, object]:
    """Send ``request``; its JSON object answer, or ``CallError`` with the
    AWS error code and message of an error answer."""
    open_ = opener.open if opener is not None else urllib.request.urlopen
    try:
        with open_(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read() or b"{}")
        except ValueError:
            detail = {}
        code = str(detail.get("__type", error.code)).rsplit("#", 1)[-1]
        raise CallError(f"{code}: {detail.get('message', '')}") from None
    except OSError as error:
        raise CallError(f"cannot reach {where}: {error}") from None
    if not isinstance(answer, dict):
        raise CallError(f"unexpected answer from {where}")
    return answer


def server_call(
    args: argparse.Namespace, target: str, body: dict[str, object], *, timeout: float = 60.0
) -> dict[str, object]:
    """POST ``body`` to ``target`` on the running server, signed (SigV4) with
    the profile ``args.profile`` from the data dir's AWS files (the one a
    --dev server writes), unless the environment names its own files."""
    import botocore.exceptions
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    settings = config.load(dev=True, data_dir=args.data_dir)
    # "Found credentials in ..." on every command is noise, not news.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    session = botocore.session.Session()
    if "AWS_CONFIG_FILE" not in os.environ:
        session.set_config_variable("config_file", str(settings.data_dir / "config"))
    if "AWS_SHARED_CREDENTIALS_FILE" not in os.environ:
        session.set_config_variable("credentials_file", str(settings.data_dir / "credentials"))
    session.set_config_variable("profile", args.profile)
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        credentials = None
    if credentials is None:
        raise config.ConfigError(
            f"no credentials for profile {args.profile!r} (a --dev server writes the "
            "'keycask' profile into its data dir when it first starts)"
        )
    endpoint = (
        args.endpoint_url
        or session.get_scoped_config().get("endpoint_url")
        or settings.endpoint_url
    )
    region = session.get_config_variable("region") or settings.region
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=endpoint.rstrip("/") + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(credentials, "kms", region).add_auth(request)
    prepared = urllib.request.Request(  # noqa: S310 - the URL is the operator's own endpoint
        request.url, data=data, headers=dict(request.headers), method="POST"
    )
    return post_json(prepared, where=endpoint, timeout=timeout)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
