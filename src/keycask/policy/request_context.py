"""The condition keys of a request, built in one place.

The server's authorization (``service/call.py``), ``keycask policy
simulate`` and ``keycask policy who-can`` all read a request's condition
keys from here, so a policy decides the same way wherever it is asked: what
the server sets for a principal, a key, a connection, the simulator sets
too. A pure function of its inputs:

* the caller (``Subject``): its ARN, account, unique id and tags;
* the key, when the action is on one: its spec, usage, origin, account, tags;
* the region the caller named (SigV4 scope);
* the encryption context;
* the operation's own parameters, already as condition keys (algorithms,
  windows, the alias the key was named by, request tags, ...), which the
  handlers name because only they read the request's fields;
* the transport: the time, the source address, whether TLS carried it.

A key that does not apply to the request is absent, so ``...IfExists`` and
``Null`` behave as in AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from keycask.arn import Arn
from keycask.keys.model import Key
from keycask.policy.conditions import ContextInput, RequestContext
from keycask.policy.evaluate import Subject

RESOURCE_ALIASES = "kms:ResourceAliases"
REQUEST_ALIAS = "kms:RequestAlias"


@dataclass(frozen=True, slots=True)
class Transport:
    """What the connection tells about a request. keycask serves plain HTTP
    unless TLS is configured, hence ``secure`` False by default; without a
    ``time`` the time keys are absent (who-can: no particular request)."""

    time: datetime | None = None
    source_ip: str | None = None
    secure: bool = False


NO_TRANSPORT = Transport()


def principal_keys(subject: Subject) -> dict[str, ContextInput]:
    """The condition keys a request carries because of who sent it."""
    values: dict[str, ContextInput] = {
        "aws:PrincipalArn": subject.arn,
        "aws:PrincipalAccount": subject.account,
        "aws:userid": subject.unique_id,
        "kms:CallerAccount": subject.account,
        # keycask has no AWS services calling on a principal's behalf.
        "aws:PrincipalIsAWSService": False,
        "aws:ViaAWSService": False,
    }
    session = subject.session
    if session is not None:
        # A role session (IAM's global condition keys): aws:PrincipalArn is
        # the role's, aws:userid "<role id>:<session name>", no aws:username.
        values["aws:PrincipalType"] = "AssumedRole"
        values["aws:userid"] = session.user_id
        values["aws:TokenIssueTime"] = datetime.fromtimestamp(session.issued, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        if session.federated_provider is not None:
            values["aws:FederatedProvider"] = session.federated_provider
        if session.source_identity is not None:
            values["aws:SourceIdentity"] = session.source_identity
    else:
        arn = Arn.parse_or_none(subject.arn)
        if arn is not None and arn.resource_name:
            values["aws:PrincipalType"] = "User" if arn.resource_type == "user" else "AssumedRole"
            values["aws:username"] = arn.resource_name.rsplit("/", 1)[-1]
    # A session's tags are already its role's with the session's own over them.
    for name, value in subject.tags.items():
        values["aws:PrincipalTag/" + name] = value
    return values


def key_keys(key: Key) -> dict[str, ContextInput]:
    """The condition keys a request on ``key`` carries because of the key."""
    values: dict[str, ContextInput] = {
        "kms:KeySpec": key.key_spec.value,
        "kms:CustomerMasterKeySpec": key.key_spec.value,
        "kms:KeyUsage": key.key_usage.value,
        "kms:CustomerMasterKeyUsage": key.key_usage.value,
        "kms:KeyOrigin": key.origin.value,
        "kms:MultiRegion": key.mrk is not None,
        "aws:ResourceAccount": key.account,
    }
    if key.mrk is not None and key.primary_region is not None:
        values["kms:MultiRegionKeyType"] = (
            "PRIMARY" if key.region == key.primary_region else "REPLICA"
        )
    for tag in key.tags:
        values["aws:ResourceTag/" + tag.tag_key] = tag.tag_value
    return values


def transport_keys(transport: Transport) -> dict[str, ContextInput]:
    values: dict[str, ContextInput] = {"aws:SecureTransport": transport.secure}
    if transport.time is not None:
        values["aws:CurrentTime"] = transport.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        values["aws:EpochTime"] = str(int(transport.time.timestamp()))
    if transport.source_ip:
        values["aws:SourceIp"] = transport.source_ip
    return values


def context_keys(encryption_context: Mapping[str, str] | None) -> dict[str, ContextInput]:
    values: dict[str, ContextInput] = {}
    if encryption_context:
        for name, value in encryption_context.items():
            values["kms:EncryptionContext:" + name] = value
        values["kms:EncryptionContextKeys"] = tuple(encryption_context)
    return values


def condition_keys(
    subject: Subject | None,
    *,
    region: str,
    key: Key | None = None,
    encryption_context: Mapping[str, str] | None = None,
    parameters: Mapping[str, ContextInput] | None = None,
    transport: Transport,
) -> dict[str, ContextInput]:
    """Every condition key of the request, as given to ``RequestContext.of``.
    The operation's ``parameters`` are applied last and win. Without a
    ``subject`` (who-can's "any principal"), the principal's keys are absent."""
    values = transport_keys(transport)
    if subject is not None:
        values.update(principal_keys(subject))
    values["aws:RequestedRegion"] = region
    if key is not None:
        values.update(key_keys(key))
    values.update(context_keys(encryption_context))
    if parameters:
        values.update(parameters)
    return values


def request_context(
    subject: Subject | None,
    *,
    region: str,
    key: Key | None = None,
    encryption_context: Mapping[str, str] | None = None,
    parameters: Mapping[str, ContextInput] | None = None,
    transport: Transport,
) -> RequestContext:
    """``condition_keys`` as the evaluator reads them."""
    return RequestContext.of(
        condition_keys(
            subject,
            region=region,
            key=key,
            encryption_context=encryption_context,
            parameters=parameters,
            transport=transport,
        )
    )
