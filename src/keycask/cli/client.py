"""What the command modules share: the audit record of a local operator's
change, where the running server is and how to reach it (one set of
connection options for every command that calls it), the SigV4-signed call an
administrator's profile makes, and JSON output.

Connection options resolve as the AWS CLI's do, so a profile made for ``aws``
works for ``keycask`` unchanged: a flag, then the environment, then the AWS
profile, then keycask's local defaults. Credentials come from botocore's own
chain (environment, shared credentials and config files, profiles), never
from a parser of our own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keycask import config
from keycask.cli.errors import CommandFailed

if TYPE_CHECKING:
    import botocore.credentials
    import botocore.session

    from keycask.audit import AuditRecord

# The profile a --dev server writes into its data dir (keycask.app.PROFILE).
DEV_PROFILE = "keycask"


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
    # Imported here: the audit package (and the crypto under it) is for the
    # commands that open a data dir, not for the application tools.
    from keycask.audit import AuditRecord

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


# -- connection options --

_LOCAL = "the local listen address, over HTTPS when the data dir has tls/cert.pem"
ENDPOINT_HELP = (
    "the keycask server's URL (env KEYCASK_ADDR; default: AWS_ENDPOINT_URL_KMS, "
    f"AWS_ENDPOINT_URL or the profile's endpoint_url, else {_LOCAL})"
)
TOKEN_ENDPOINT_HELP = f"the keycask server's URL (env KEYCASK_ADDR; default: {_LOCAL})"
_CA = (
    "CA bundle (PEM) that vouches for an HTTPS server's certificate, e.g. the "
    "tls/cert.pem that `operator init --tls-self-signed` or `server --dev "
    "--tls-self-signed` made (env KEYCASK_CACERT or "
    "AWS_CA_BUNDLE{profile}; default: the data dir's tls/cert.pem, else the system's CAs)"
)
CA_HELP = _CA.format(profile=", or the profile's ca_bundle")
TOKEN_CA_HELP = _CA.format(profile="")
PROFILE_HELP = (
    "AWS profile to sign with, an administrator's (env AWS_PROFILE; default: credentials "
    "in the environment, else the 'keycask' profile a --dev server writes, else the "
    "standard AWS chain)"
)
DATA_DIR_HELP = (
    "the server's data directory, for a --dev server's AWS profile and a "
    "self-signed certificate (env KEYCASK_DATA_DIR, default ./.keycask)"
)


def add_connection_options(parser: argparse.ArgumentParser, *, signed: bool) -> None:
    """The options of every command that calls a running server: where it is,
    the CA to trust for it, and (``signed``: SigV4 calls) the AWS profile."""
    parser.add_argument(
        "--endpoint-url",
        "--addr",
        dest="endpoint_url",
        metavar="URL",
        help=ENDPOINT_HELP if signed else TOKEN_ENDPOINT_HELP,
    )
    parser.add_argument("--ca-file", metavar="PEM", help=CA_HELP if signed else TOKEN_CA_HELP)
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    if signed:
        parser.add_argument("--profile", help=PROFILE_HELP)


@dataclass(frozen=True, slots=True)
class Setting:
    """One resolved value and where it came from (for ``config show``)."""

    value: str | None
    source: str


def data_dir(args: argparse.Namespace) -> Path:
    return Path(
        getattr(args, "data_dir", None)
        or os.environ.get("KEYCASK_DATA_DIR")
        or config.DEFAULT_DATA_DIR
    ).resolve()


def _local_cert(args: argparse.Namespace) -> Path:
    return data_dir(args) / config.TLS_DIR / config.TLS_CERT_FILE


def _first(*candidates: tuple[str | None, str]) -> Setting | None:
    for value, source in candidates:
        if value:
            return Setting(value, source)
    return None


def resolve_endpoint(
    args: argparse.Namespace, session: botocore.session.Session | None = None
) -> Setting:
    """The server's URL: flag, KEYCASK_ADDR, the AWS endpoint settings (of a
    signed call's profile), else the local listen address."""
    env = os.environ
    found = _first(
        (getattr(args, "endpoint_url", None), "--endpoint-url"),
        (env.get("KEYCASK_ADDR"), "env KEYCASK_ADDR"),
    )
    if found is None and session is not None:
        found = _first(
            (env.get("AWS_ENDPOINT_URL_KMS"), "env AWS_ENDPOINT_URL_KMS"),
            (env.get("AWS_ENDPOINT_URL"), "env AWS_ENDPOINT_URL"),
            (_scoped(session).get("endpoint_url"), "profile endpoint_url"),
        )
    if found is not None:
        return Setting(str(found.value).rstrip("/"), found.source)
    host, port = config.parse_listen(env.get("KEYCASK_LISTEN") or config.DEFAULT_LISTEN)
    scheme = "https" if _local_cert(args).exists() else "http"
    host = f"[{host}]" if ":" in host else host
    return Setting(f"{scheme}://{host}:{port}", "local listen address")


def resolve_ca(
    args: argparse.Namespace, endpoint: str, session: botocore.session.Session | None = None
) -> Setting:
    """The CA file to trust for ``endpoint``: flag, KEYCASK_CACERT,
    AWS_CA_BUNDLE or the profile's ca_bundle, else the data dir's own
    certificate, else (None) the system's CAs."""
    found = _first(
        (getattr(args, "ca_file", None), "--ca-file"),
        (os.environ.get("KEYCASK_CACERT"), "env KEYCASK_CACERT"),
    )
    if found is None and session is not None:
        # botocore's ca_bundle: AWS_CA_BUNDLE, else the profile's ca_bundle.
        bundle = session.get_config_variable("ca_bundle")
        source = "env AWS_CA_BUNDLE" if os.environ.get("AWS_CA_BUNDLE") else "profile ca_bundle"
        found = _first((bundle, source))
    elif found is None:
        found = _first((os.environ.get("AWS_CA_BUNDLE"), "env AWS_CA_BUNDLE"))
    if found is not None:
        return found
    if endpoint.startswith("https://") and _local_cert(args).exists():
        return Setting(str(_local_cert(args)), "the data dir's tls/cert.pem")
    return Setting(None, "the system's CAs")


def _scoped(session: botocore.session.Session) -> dict[str, Any]:
    import botocore.exceptions

    try:
        return dict(session.get_scoped_config())
    except botocore.exceptions.ProfileNotFound:
        return {}


def aws_session(args: argparse.Namespace) -> tuple[botocore.session.Session, Setting]:
    """A botocore session for a signed call, and the profile it uses.

    The standard chain decides, with one keycask default on top: when the
    command line and the environment name no profile and no credentials, the
    ``keycask`` profile a --dev server wrote into its data dir (or one the
    AWS files have) is used, as every dev walkthrough expects."""
    import botocore.session

    # "Found credentials in ..." on every command is noise, not news.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    env = os.environ
    flag = getattr(args, "profile", None)
    named_by_env = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
    env_keys = bool(env.get("AWS_ACCESS_KEY_ID"))
    wanted = flag or named_by_env or (None if env_keys else DEV_PROFILE)
    session = botocore.session.Session()
    local = _dev_files_session(args)
    if local is not None and wanted is not None and wanted in local.available_profiles:
        session = local
    named: Setting | None = None
    if flag:
        session.set_config_variable("profile", flag)
        named = Setting(flag, "--profile")
    elif named_by_env:
        variable = "AWS_PROFILE" if env.get("AWS_PROFILE") else "AWS_DEFAULT_PROFILE"
        named = Setting(named_by_env, f"env {variable}")
    if named is not None:
        if named.value not in session.available_profiles:
            raise config.ConfigError(
                f"the AWS profile {named.value!r} ({named.source}) is in neither the AWS "
                "config file nor the credentials file (AWS_CONFIG_FILE, "
                "AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/)"
            )
        return session, named
    if not env_keys and DEV_PROFILE in session.available_profiles:
        session.set_config_variable("profile", DEV_PROFILE)
        where = "the data dir's dev profile" if session is local else "keycask's default"
        return session, Setting(DEV_PROFILE, where)
    return session, Setting(None, "none (the standard AWS chain)")


def _dev_files_session(args: argparse.Namespace) -> botocore.session.Session | None:
    """A session reading the AWS files a --dev server wrote into its data
    dir, where the environment names no files of its own."""
    import botocore.session

    directory = data_dir(args)
    if not (directory / "credentials").exists():
        return None
    session = botocore.session.Session()
    if "AWS_CONFIG_FILE" not in os.environ:
        session.set_config_variable("config_file", str(directory / "config"))
    if "AWS_SHARED_CREDENTIALS_FILE" not in os.environ:
        session.set_config_variable("credentials_file", str(directory / "credentials"))
    return session


def credentials(session: botocore.session.Session) -> botocore.credentials.Credentials | None:
    import botocore.exceptions

    try:
        return session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        return None


def region(session: botocore.session.Session, args: argparse.Namespace) -> Setting:
    found = session.get_config_variable("region")
    if found:
        source = "env AWS_DEFAULT_REGION" if os.environ.get("AWS_DEFAULT_REGION") else "profile"
        return Setting(str(found), source)
    settings = config.load(dev=True, data_dir=str(data_dir(args)))
    return Setting(settings.region, "KEYCASK_REGION or keycask's default")


# -- calls --


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token, a share or a signed body to
    wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener(endpoint: str, ca_file: str | None) -> urllib.request.OpenerDirector:
    """An opener for ``endpoint`` that trusts ``ca_file`` (None: the
    system's CAs) and follows no redirect."""
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if endpoint.startswith("https://"):
        context = ssl.create_default_context(cafile=ca_file)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


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
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(error):
            hint = (
                " (give the CA that vouches for it: --ca-file, KEYCASK_CACERT, AWS_CA_BUNDLE "
                "or the profile's ca_bundle)"
            )
        raise CallError(f"cannot reach {where}: {error}{hint}") from None
    if not isinstance(answer, dict):
        raise CallError(f"unexpected answer from {where}")
    return answer


def server_call(
    args: argparse.Namespace, target: str, body: dict[str, object], *, timeout: float = 60.0
) -> dict[str, object]:
    """POST ``body`` to ``target`` on the running server, signed (SigV4) with
    the credentials ``aws_session`` finds."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session, profile = aws_session(args)
    found = credentials(session)
    if found is None:
        named = f"profile {profile.value!r}" if profile.value else "the standard AWS chain"
        raise config.ConfigError(
            f"no AWS credentials ({named}): give --profile or AWS_PROFILE, or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a --dev server writes the "
            "'keycask' profile into its data dir when it first starts)"
        )
    endpoint = resolve_endpoint(args, session).value
    assert endpoint is not None
    ca = resolve_ca(args, endpoint, session).value
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(found, "kms", str(region(session, args).value)).add_auth(request)
    prepared = urllib.request.Request(  # noqa: S310 - the URL is the operator's own endpoint
        request.url, data=data, headers=dict(request.headers), method="POST"
    )
    return post_json(prepared, where=endpoint, timeout=timeout, opener=opener(endpoint, ca))


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
