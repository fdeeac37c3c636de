"""The KMS client the application tools (``encrypt``, ``decrypt``,
``secrets``, ``exec``) call keycask with: botocore's own, resolved exactly as
every other signed ``keycask`` command resolves its endpoint, CA, profile and
region (``cli/client.py``), so an AWS profile made for ``aws`` works unchanged.

These commands run on an application's host, not the operator's, so their
failures must read as one line a user can act on: ``explain`` turns botocore's
and the AWS Encryption SDK's exceptions into the AWS error code and reason the
server gave, or the address that could not be reached, and never shows a
traceback, a request body or a credential.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keycask import config
from keycask.cli import client
from keycask.cli.errors import CommandFailed

if TYPE_CHECKING:
    import botocore.session

# A user waiting at a terminal, or a deploy script: two tries (botocore's
# standard mode retries throttling and dropped connections) and a short
# connect timeout say "unreachable" in seconds rather than after a minute.
_ATTEMPTS = 2
_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 60.0
USER_AGENT = "keycask-cli"


class KmsCallFailed(CommandFailed):
    """A call to keycask failed; the text is the one line to print."""


@dataclass(frozen=True)
class Kms:
    """Where keycask is and how to sign for it; ``client`` makes a botocore
    KMS client bound to it. ``failures`` keeps the last error answers the
    server gave, for the AWS Encryption SDK, which replaces them with its own
    words (``explain`` restores the server's)."""

    session: botocore.session.Session
    endpoint: str
    ca_file: str | None
    region: str
    failures: list[tuple[str, str]] = field(default_factory=list, compare=False)

    def client(self, region: str | None = None) -> Any:
        from botocore.config import Config

        made = self.session.create_client(
            "kms",
            region_name=region or self.region,
            endpoint_url=self.endpoint,
            verify=self.ca_file if self.ca_file is not None else True,
            config=Config(
                retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
                connect_timeout=_CONNECT_TIMEOUT,
                read_timeout=_READ_TIMEOUT,
                user_agent_extra=USER_AGENT,
            ),
        )
        made.meta.events.register("after-call.kms", self._remember_failure)
        return made

    def _remember_failure(self, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        error = parsed.get("Error") if isinstance(parsed, dict) else None
        if isinstance(error, dict) and error.get("Code"):
            self.failures.append((str(error["Code"]), str(error.get("Message") or "")))
            del self.failures[:-8]


def add_kms_options(parser: argparse.ArgumentParser) -> None:
    """Where keycask is and who signs: the options of every signed command,
    plus the region (the namespace keycask selects by it)."""
    client.add_connection_options(parser, signed=True)
    parser.add_argument(
        "--region",
        help="the region to sign for (env AWS_DEFAULT_REGION, else the "
        "profile's region, else keycask's default); a key ARN's own region wins",
    )


def connect(args: argparse.Namespace) -> Kms:
    """The connection ``args`` and the environment describe; ``ConfigError``
    (exit 2) when no credentials can be found, before anything is read."""
    session, profile = client.aws_session(args)
    if client.credentials(session) is None:
        named = f"profile {profile.value!r}" if profile.value else "the standard AWS chain"
        raise config.ConfigError(
            f"no AWS credentials ({named}): give --profile or AWS_PROFILE, or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a --dev server writes the "
            "'keycask' profile into its data dir when it first starts)"
        )
    endpoint = client.resolve_endpoint(args, session).value
    assert endpoint is not None
    region = getattr(args, "region", None) or client.region(session, args).value
    assert region is not None
    ca = client.resolve_ca(args, endpoint, session).value
    # The SDK's failures are explained by ``explain``; its own log lines carry
    # tracebacks, which are not for a user's terminal.
    logging.getLogger("aws_encryption_sdk").setLevel(logging.CRITICAL + 1)
    return Kms(session=session, endpoint=endpoint, ca_file=ca, region=str(region))


def explain(error: BaseException, kms: Kms | None = None) -> str:
    """One line for ``error``: the AWS error code and message the server
    answered, or why it could not be reached, else the exception's text."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        SSLError,
    )

    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ClientError):
            body = cause.response.get("Error", {})
            return f"{body.get('Code', 'Error')}: {body.get('Message', '')}".rstrip(": ")
        if isinstance(cause, SSLError):
            return (
                f"cannot reach {kms.endpoint if kms else 'keycask'}: TLS verification failed "
                "(give the CA that vouches for it: --ca-file, KEYCASK_CACERT or AWS_CA_BUNDLE)"
            )
        if isinstance(cause, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
            return f"cannot reach {kms.endpoint if kms else 'keycask'}: {cause}"
        cause = cause.__cause__ or cause.__context__
    if kms is not None and kms.failures:
        code, message = kms.failures[-1]
        return f"{code}: {message}".rstrip(": ")
    return str(error) or type(error).__name__
