"""The admin API (``X-Amz-Target: KeycaskAdmin.<Op>``): principals, their
policies, tags and access keys (``core/handlers/principals.py``), OpenID
Connect identity providers (``core/handlers/identity_providers.py``) and
the read-only LintPolicy, WhoCan, ListAuditRecords and ListNodes
(``core/handlers/inspection.py``), signed like the KMS API, with small JSON
shapes of keycask's own, decoded here into the core's typed requests
(``core/principal_requests.py``, ``core/idp_requests.py``) and encoded from
its typed results.

Why one module of ~780 lines: it is one wire, one table (``WIRE``) read by
one decoder and one encoder; every shape follows the same member, type and
order rules, which are easiest to check side by side.

Operations (``?`` = optional; Account defaults to the caller's account):

    CreatePrincipal       {Name, Account?, Role?, Tags?{k: v}, Admin?, TrustPolicy?,
                          MaxSessionDuration?} -> {Arn, UniqueId, AccessKeyId?,
                          SecretAccessKey?}: a role with a TrustPolicy is assumed
                          through STS and gets no access key
    UpdateRole            {Name, Account?, TrustPolicy?, MaxSessionDuration?}
    GetPrincipal          {Name, Account?} -> {Arn, UniqueId, Name, Account, Kind,
                          Admin, Tags, PolicyNames, AccessKeyCount, CreateDate,
                          TrustPolicy?, MaxSessionDuration?}
    ListPrincipals        {Account?, Marker?, Limit?}
                          -> {Principals: [{Arn, Name, Kind, Admin}], Truncated, NextMarker?}
    DeletePrincipal       {Name, Account?}: the principal, its policies and all
                          its access keys, at once (a principal cannot delete itself)
    PutPrincipalPolicy    {Name, Account?, PolicyName, PolicyDocument}
    GetPrincipalPolicy    {Name, Account?, PolicyName} -> {PolicyName, PolicyDocument}
    DeletePrincipalPolicy {Name, Account?, PolicyName}
    TagPrincipal          {Name, Account?, Tags{k: v}}
    UntagPrincipal        {Name, Account?, TagKeys[k]}
    CreateAccessKey       {Name, Account?} -> {AccessKeyId, SecretAccessKey}
    ListAccessKeys        {Name, Account?} -> {AccessKeys: [{AccessKeyId, Status, CreateDate}]}
    UpdateAccessKey       {AccessKeyId, Status: Active|Inactive}
    DeleteAccessKey       {AccessKeyId}
    CreateToken           {Name, Account?, Ttl?} -> {Token, TokenId, ExpiresAt}: a bearer
                          token (auth/tokens.py), shown once; Ttl in seconds, default 3600
    ListTokens            {Name, Account?} -> {Tokens: [{TokenId, CreateDate, ExpiresAt}]}
    RevokeToken           {TokenId}
    CreateXksCredential   {Name, Account?} -> {Arn, AccessKeyId, SecretAccessKey,
                          XksProxyUriPath}: an XKS
                          proxy credential (docs/xks.md), shown once; the principal is
                          made (a user without access keys) if it does not exist
    ListXksCredentials    {Name, Account?} -> {AccessKeys: [{AccessKeyId, Status, CreateDate}]}
    DeleteXksCredential   {AccessKeyId}: revoked at once

    CreateIdentityProvider {Url, Audiences[], Jwks? | JwksUrl?, Account?} -> {Arn}:
                          the issuer (https://host/path, no port: a token's iss),
                          client ids (1-100, a token's aud), and the JWK Set as
                          JSON text or a URL the server fetches now and keeps
                          (https://; http:// to loopback in --dev only)
    ListIdentityProviders {Account?} -> {IdentityProviders: [{Arn, Url, Audiences}]}
    GetIdentityProvider   {Arn} -> {Arn, Url, Audiences, Jwks, JwksUrl?, CreateDate}
    DeleteIdentityProvider {Arn}: tokens of its issuer are refused at once

A provider's ARN is ``arn:aws:iam::<account>:oidc-provider/<host/path>``.

    LintPolicy            {PolicyDocument, Kind?: key|identity|trust, Account?,
                          KeyTags?{k: v}, Admin?, Name?} -> {Findings: [{Severity,
                          Statement, Rule, Message}]}: keycask policy lint on a
                          document (a malformed one: the malformed-policy finding)
    WhoCan                {KeyId, Action} -> {KeyArn, Action, Allowed: [{principal, kind,
                          via, conditions}]}: keycask policy who-can, over the caller's
                          account's principals, for a key of that account
    ListAuditRecords      {Limit?, KeyId?, Principal?, Operation?, Outcome?, Verify?,
                          Marker?} -> {Records: [...], NextMarker?,
                          OlderRecordsNotRead?, Chain?: {Ok,
                          Records, Segments, Anchored, Problem?}}: this node's recent
                          records of the caller's account (the last 4 MiB of its log),
                          newest first (``core/handlers/inspection.py``)
    ListNodes             {} -> {Nodes: [{NodeId, Name, Address, Version, Started,
                          LastHeartbeat, State: ready|stopped|unreachable, This}]}:
                          the cluster's nodes as they record themselves (``core/nodes.py``)

Operations that answer nothing answer ``{}``. A body is checked whole before
anything is authorized: unknown and missing members, then each member's type
and value, in the order the table's decoders read them (so a request with
several faults is always refused for the same one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from keycask.auth.credentials import (
    CredentialStore,
    check_account,
    check_max_session_duration,
    check_name,
)
from keycask.auth.identity_providers import (
    IdentityProviders,
    check_audiences,
    check_url,
    parse_arn,
)
from keycask.auth.sigv4 import HttpRequest
from keycask.auth.tokens import DEFAULT_TTL, TokenStore, check_ttl
from keycask.errors import InvalidMarkerException, ValidationException
from keycask.ports import Write
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call
from keycask.service.core.handlers.identity_providers import OPERATIONS as IDP_OPERATIONS
from keycask.service.core.handlers.inspection import OPERATIONS as INSPECTION_OPERATIONS
from keycask.service.core.handlers.inspection import (
    Inspector,
    LintPolicyRequest,
    LintPolicyResult,
    ListAuditRecordsRequest,
    ListAuditRecordsResult,
    ListNodesRequest,
    ListNodesResult,
    WhoCanRequest,
    WhoCanResult,
    check_kind,
    check_limit,
    check_outcome,
    findings_doc,
)
from keycask.service.core.handlers.principals import (
    OPERATIONS,
    check_tag_count,
    check_tag_key,
    check_tag_value,
)
from keycask.service.core.handlers.tokens import OPERATIONS as TOKEN_OPERATIONS
from keycask.service.core.handlers.xks_credentials import OPERATIONS as XKS_OPERATIONS
from keycask.service.core.handlers.xks_credentials import (
    CreateXksCredentialResult,
    XksCredentials,
)
from keycask.service.core.idp_requests import (
    CreateIdentityProviderRequest,
    CreateIdentityProviderResult,
    GetIdentityProviderResult,
    IdentityProviderRequest,
    ListIdentityProvidersRequest,
    ListIdentityProvidersResult,
)
from keycask.service.core.principal_requests import (
    AccessKeyRequest,
    CreatePrincipalRequest,
    ListPrincipalsRequest,
    PrincipalPolicyRequest,
    PrincipalRequest,
    PutPrincipalPolicyRequest,
    TagPrincipalRequest,
    UntagPrincipalRequest,
    UpdateAccessKeyRequest,
    UpdateRoleRequest,
)
from keycask.service.core.principal_results import (
    CreateAccessKeyResult,
    CreatePrincipalResult,
    GetPrincipalPolicyResult,
    GetPrincipalResult,
    ListAccessKeysResult,
    ListPrincipalsResult,
)
from keycask.service.core.token_requests import (
    CreateTokenRequest,
    CreateTokenResult,
    ListTokensResult,
    TokenIdRequest,
)
from keycask.service.door import Action
from keycask.service.doors.awsjson import (
    AwsJsonErrors,
    WireCodec,
    check_content_type,
    json_object,
)
from keycask.service.doors.signed import SignedCallers

TARGET_PREFIX = "KeycaskAdmin."

_POLICY_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,128}$")
_MAX_LIMIT = 1000

Doc = dict[str, Any]


# -- members --


def _string(doc: Doc, name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise ValidationException(f"{name} must be a string.")
    return value


def _optional_string(doc: Doc, name: str) -> str | None:
    return None if doc.get(name) is None else _string(doc, name)


def _flag(doc: Doc, name: str) -> bool:
    value = doc.get(name, False)
    if not isinstance(value, bool):
        raise ValidationException(f"{name} must be true or false.")
    return value


def _tags(doc: Doc, name: str) -> tuple[tuple[str, str], ...]:
    value = doc.get(name)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValidationException(f'{name} must be an object of tags: {{"key": "value"}}.')
    for key, tag_value in value.items():
        if not isinstance(tag_value, str):
            raise ValidationException(f"The value of tag {key[:128]!r} must be a string.")
        check_tag_key(key)
        check_tag_value(key, tag_value)
    return tuple(value.items())


def _account(doc: Doc) -> str | None:
    """``Account``, checked; None (also for ``""``) is the caller's account."""
    account = _optional_string(doc, "Account") or None
    if account is not None:
        check_account(account)
    return account


def _name(doc: Doc) -> str:
    name = _string(doc, "Name")
    check_name(name)
    return name


def _policy_name(doc: Doc) -> str:
    name = _string(doc, "PolicyName")
    if not _POLICY_NAME.match(name):
        raise ValidationException("PolicyName must be 1-128 of A-Z a-z 0-9 and _ + = , . @ -.")
    return name


# -- requests, one decoder per operation --


def _principal_request(doc: Doc) -> PrincipalRequest:
    return PrincipalRequest(_name(doc), _account(doc))


def _max_session_duration(doc: Doc) -> int | None:
    value = doc.get("MaxSessionDuration")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationException("MaxSessionDuration must be a whole number of seconds.")
    check_max_session_duration(value)
    return value


def _create_principal(doc: Doc) -> CreatePrincipalRequest:
    name = _name(doc)
    account = _account(doc)
    kind = "role" if _flag(doc, "Role") else "user"
    admin = _flag(doc, "Admin")
    tags = _tags(doc, "Tags")
    check_tag_count(dict(tags))
    trust_policy = _optional_string(doc, "TrustPolicy")
    max_session = _max_session_duration(doc)
    if trust_policy is not None and (kind != "role" or admin):
        raise ValidationException(
            "TrustPolicy makes a role assumed through STS: give Role true, and not Admin "
            "(give the role an identity policy instead)."
        )
    if max_session is not None and trust_policy is None:
        raise ValidationException("MaxSessionDuration needs a TrustPolicy.")
    return CreatePrincipalRequest(name, account, kind, admin, tags, trust_policy, max_session)


def _update_role(doc: Doc) -> UpdateRoleRequest:
    trust_policy = _optional_string(doc, "TrustPolicy")
    return UpdateRoleRequest(_name(doc), _account(doc), trust_policy, _max_session_duration(doc))


def _list_principals(doc: Doc) -> ListPrincipalsRequest:
    account = _account(doc)
    marker = _optional_string(doc, "Marker")
    limit = doc.get("Limit")
    if "Limit" in doc and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT
    ):
        raise ValidationException(f"Limit must be a whole number from 1 to {_MAX_LIMIT}.")
    if marker is not None:
        try:
            check_name(marker)
        except ValidationException:
            raise InvalidMarkerException("The marker is not valid.") from None
    return ListPrincipalsRequest(account, marker, limit)


def _put_principal_policy(doc: Doc) -> PutPrincipalPolicyRequest:
    policy_name = _policy_name(doc)
    document = _string(doc, "PolicyDocument")
    return PutPrincipalPolicyRequest(_name(doc), policy_name, document, _account(doc))


def _principal_policy(doc: Doc) -> PrincipalPolicyRequest:
    policy_name = _policy_name(doc)
    return PrincipalPolicyRequest(_name(doc), policy_name, _account(doc))


def _tag_principal(doc: Doc) -> TagPrincipalRequest:
    tags = _tags(doc, "Tags")
    if not tags:
        raise ValidationException("Tags must name at least one tag.")
    check_tag_count(dict(tags))
    return TagPrincipalRequest(_name(doc), tags, _account(doc))


def _untag_principal(doc: Doc) -> UntagPrincipalRequest:
    keys = doc["TagKeys"]
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ValidationException("TagKeys must be a list of tag keys.")
    for key in keys:
        check_tag_key(key)
    return UntagPrincipalRequest(_name(doc), tuple(keys), _account(doc))


def _update_access_key(doc: Doc) -> UpdateAccessKeyRequest:
    status = _string(doc, "Status")
    if status not in ("Active", "Inactive"):
        raise ValidationException("Status must be Active or Inactive.")
    return UpdateAccessKeyRequest(_string(doc, "AccessKeyId"), active=status == "Active")


def _access_key(doc: Doc) -> AccessKeyRequest:
    return AccessKeyRequest(_string(doc, "AccessKeyId"))


def _create_identity_provider(doc: Doc) -> CreateIdentityProviderRequest:
    check_url(url := _string(doc, "Url"))
    audiences = doc["Audiences"]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise ValidationException("Audiences must be a list of client ids.")
    jwks, jwks_url = _optional_string(doc, "Jwks"), _optional_string(doc, "JwksUrl")
    if (jwks is None) == (jwks_url is None):
        raise ValidationException("Give the signing keys as either Jwks or JwksUrl.")
    audiences = check_audiences(audiences)
    return CreateIdentityProviderRequest(url, audiences, jwks, jwks_url, _account(doc))


def _list_identity_providers(doc: Doc) -> ListIdentityProvidersRequest:
    return ListIdentityProvidersRequest(_account(doc))


def _identity_provider(doc: Doc) -> IdentityProviderRequest:
    arn = _string(doc, "Arn")
    if parse_arn(arn) is None:
        raise ValidationException("Arn must be arn:aws:iam::<account>:oidc-provider/<host/path>.")
    return IdentityProviderRequest(arn)


def _create_token(doc: Doc) -> CreateTokenRequest:
    ttl = doc.get("Ttl", DEFAULT_TTL)
    check_ttl(ttl)
    return CreateTokenRequest(_name(doc), _account(doc), ttl)


def _token_id(doc: Doc) -> TokenIdRequest:
    return TokenIdRequest(_string(doc, "TokenId"))


def _lint_policy(doc: Doc) -> LintPolicyRequest:
    text = _string(doc, "PolicyDocument")
    kind = check_kind(_optional_string(doc, "Kind") or "key")
    account = _account(doc)
    tags = doc.get("KeyTags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValidationException('KeyTags must be an object of tags: {"key": "value"}.')
    if len(tags) > 50:
        raise ValidationException("KeyTags holds at most 50 tags.")
    name = _optional_string(doc, "Name") or "policy"
    return LintPolicyRequest(text, kind, account, tuple(tags.items()), _flag(doc, "Admin"), name)


def _who_can(doc: Doc) -> WhoCanRequest:
    return WhoCanRequest(_string(doc, "KeyId"), _string(doc, "Action"))


def _list_audit_records(doc: Doc) -> ListAuditRecordsRequest:
    limit = doc.get("Limit", 50)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValidationException("Limit must be a whole number.")
    return ListAuditRecordsRequest(
        check_limit(limit),
        _optional_string(doc, "KeyId") or None,
        _optional_string(doc, "Principal") or None,
        _optional_string(doc, "Operation") or None,
        check_outcome(_optional_string(doc, "Outcome") or None),
        _flag(doc, "Verify"),
        _optional_string(doc, "Marker") or None,
    )


# -- results --


def _date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nothing(result: None) -> Doc:
    return {}


def _created_principal(result: CreatePrincipalResult) -> Doc:
    doc: Doc = {"Arn": result.arn, "UniqueId": result.unique_id}
    if result.access_key_id is not None:
        doc["AccessKeyId"] = result.access_key_id
        doc["SecretAccessKey"] = result.secret_access_key
    return doc


def _principal(result: GetPrincipalResult) -> Doc:
    return {
        "Arn": result.arn,
        "UniqueId": result.unique_id,
        "Name": result.name,
        "Account": result.account,
        "Kind": result.kind,
        "Admin": result.admin,
        "Tags": dict(result.tags),
        "PolicyNames": list(result.policy_names),
        "AccessKeyCount": result.access_key_count,
        "CreateDate": _date(result.created),
        **(
            {"TrustPolicy": result.trust_policy, "MaxSessionDuration": result.max_session_duration}
            if result.trust_policy is not None
            else {}
        ),
    }


def _principals(result: ListPrincipalsResult) -> Doc:
    doc: Doc = {
        "Principals": [
            {"Arn": p.arn, "Name": p.name, "Kind": p.kind, "Admin": p.admin}
            for p in result.principals
        ],
        "Truncated": result.truncated,
    }
    if result.next_marker is not None:
        doc["NextMarker"] = result.next_marker
    return doc


def _policy(result: GetPrincipalPolicyResult) -> Doc:
    return {"PolicyName": result.policy_name, "PolicyDocument": result.policy_document}


def _created_access_key(result: CreateAccessKeyResult) -> Doc:
    return {"AccessKeyId": result.access_key_id, "SecretAccessKey": result.secret_access_key}


def _access_keys(result: ListAccessKeysResult) -> Doc:
    return {
        "AccessKeys": [
            {
                "AccessKeyId": key.access_key_id,
                "Status": "Active" if key.active else "Inactive",
                "CreateDate": _date(key.created),
            }
            for key in result.access_keys
        ]
    }


def _created_xks_credential(result: CreateXksCredentialResult) -> Doc:
    return {
        "Arn": result.arn,
        "AccessKeyId": result.access_key_id,
        "SecretAccessKey": result.secret_access_key,
        "XksProxyUriPath": result.uri_path,
    }


def _created_token(result: CreateTokenResult) -> Doc:
    return {"Token": result.token, "TokenId": result.token_id, "ExpiresAt": _date(result.expires)}


def _tokens(result: ListTokensResult) -> Doc:
    return {
        "Tokens": [
            {"TokenId": t.token_id, "CreateDate": _date(t.created), "ExpiresAt": _date(t.expires)}
            for t in result.tokens
        ]
    }


def _created_identity_provider(result: CreateIdentityProviderResult) -> Doc:
    return {"Arn": result.arn}


def _findings(result: LintPolicyResult) -> Doc:
    return {"Findings": findings_doc(result.findings)}


def _who(result: WhoCanResult) -> Doc:
    return {
        "KeyArn": result.key_arn,
        "Action": result.action,
        "Allowed": [f.to_dict() for f in result.findings],
    }


def _audit_records(result: ListAuditRecordsResult) -> Doc:
    doc: Doc = {"Records": list(result.records)}
    if result.next_marker is not None:
        doc["NextMarker"] = result.next_marker
    if result.window_exhausted:
        doc["OlderRecordsNotRead"] = True
    if result.chain is not None:
        chain = result.chain
        doc["Chain"] = {
            "Ok": chain.ok,
            "Records": chain.records,
            "Segments": chain.segments,
            "Anchored": chain.anchored,
            **({"Problem": chain.problem} if chain.problem else {}),
        }
    return doc


def _list_nodes(doc: Doc) -> ListNodesRequest:
    return ListNodesRequest()


def _nodes(result: ListNodesResult) -> Doc:
    return {
        "Nodes": [
            {
                "NodeId": n.record.node_id,
                "Name": n.record.name,
                "Address": n.record.address,
                "Version": n.record.version,
                "Started": _date(n.record.started),
                "LastHeartbeat": _date(n.record.heartbeat),
                "State": n.state,
                "This": n.this,
            }
            for n in result.nodes
        ]
    }


def _identity_providers(result: ListIdentityProvidersResult) -> Doc:
    return {
        "IdentityProviders": [
            {"Arn": p.arn, "Url": p.url, "Audiences": list(p.audiences)} for p in result.providers
        ]
    }


def _identity_provider_shown(result: GetIdentityProviderResult) -> Doc:
    doc: Doc = {
        "Arn": result.arn,
        "Url": result.url,
        "Audiences": list(result.audiences),
        "Jwks": result.jwks,
        "CreateDate": _date(result.created),
    }
    if result.jwks_url is not None:
        doc["JwksUrl"] = result.jwks_url
    return doc


@dataclass(frozen=True, slots=True)
class Wire:
    """One operation's JSON shape: its members, and how its body becomes the
    typed request and its result the answer."""

    members: frozenset[str]
    required: frozenset[str]
    decode: Callable[[Doc], object]
    encode: Callable[[Any], Doc]


def _wire(
    decode: Callable[[Doc], object],
    encode: Callable[[Any], Doc],
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> Wire:
    return Wire(frozenset(required + optional), frozenset(required), decode, encode)


_IN_ACCOUNT = ("Account",)
WIRE: Mapping[str, Wire] = {
    "CreatePrincipal": _wire(_create_principal, _created_principal, required=("Name",),
                             optional=("Account", "Role", "Tags", "Admin", "TrustPolicy",
                                       "MaxSessionDuration")),
    "UpdateRole": _wire(_update_role, _nothing, required=("Name",),
                        optional=("Account", "TrustPolicy", "MaxSessionDuration")),
    "GetPrincipal": _wire(_principal_request, _principal, required=("Name",),
                          optional=_IN_ACCOUNT),
    "ListPrincipals": _wire(_list_principals, _principals, required=(),
                            optional=("Account", "Marker", "Limit")),
    "DeletePrincipal": _wire(_principal_request, _nothing, required=("Name",),
                             optional=_IN_ACCOUNT),
    "PutPrincipalPolicy": _wire(_put_principal_policy, _nothing,
                                required=("Name", "PolicyName", "PolicyDocument"),
                                optional=_IN_ACCOUNT),
    "GetPrincipalPolicy": _wire(_principal_policy, _policy, required=("Name", "PolicyName"),
                                optional=_IN_ACCOUNT),
    "DeletePrincipalPolicy": _wire(_principal_policy, _nothing,
                                   required=("Name", "PolicyName"), optional=_IN_ACCOUNT),
    "TagPrincipal": _wire(_tag_principal, _nothing, required=("Name", "Tags"),
                          optional=_IN_ACCOUNT),
    "UntagPrincipal": _wire(_untag_principal, _nothing, required=("Name", "TagKeys"),
                            optional=_IN_ACCOUNT),
    "CreateAccessKey": _wire(_principal_request, _created_access_key, required=("Name",),
                             optional=_IN_ACCOUNT),
    "ListAccessKeys": _wire(_principal_request, _access_keys, required=("Name",),
                            optional=_IN_ACCOUNT),
    "UpdateAccessKey": _wire(_update_access_key, _nothing,
                             required=("AccessKeyId", "Status")),
    "DeleteAccessKey": _wire(_access_key, _nothing, required=("AccessKeyId",)),
}  # fmt: skip
IDP_WIRE: Mapping[str, Wire] = {
    "CreateIdentityProvider": _wire(_create_identity_provider, _created_identity_provider,
                                    required=("Url", "Audiences"),
                                    optional=("Jwks", "JwksUrl", "Account")),
    "ListIdentityProviders": _wire(_list_identity_providers, _identity_providers, required=(),
                                   optional=_IN_ACCOUNT),
    "GetIdentityProvider": _wire(_identity_provider, _identity_provider_shown,
                                 required=("Arn",)),
    "DeleteIdentityProvider": _wire(_identity_provider, _nothing, required=("Arn",)),
}  # fmt: skip
TOKEN_WIRE: Mapping[str, Wire] = {
    "CreateToken": _wire(_create_token, _created_token, required=("Name",),
                         optional=("Account", "Ttl")),
    "ListTokens": _wire(_principal_request, _tokens, required=("Name",), optional=_IN_ACCOUNT),
    "RevokeToken": _wire(_token_id, _nothing, required=("TokenId",)),
}  # fmt: skip
XKS_WIRE: Mapping[str, Wire] = {
    "CreateXksCredential": _wire(_principal_request, _created_xks_credential,
                                 required=("Name",), optional=_IN_ACCOUNT),
    "ListXksCredentials": _wire(_principal_request, _access_keys, required=("Name",),
                                optional=_IN_ACCOUNT),
    "DeleteXksCredential": _wire(_access_key, _nothing, required=("AccessKeyId",)),
}  # fmt: skip
INSPECTION_WIRE: Mapping[str, Wire] = {
    "LintPolicy": _wire(_lint_policy, _findings, required=("PolicyDocument",),
                        optional=("Kind", "Account", "KeyTags", "Admin", "Name")),
    "WhoCan": _wire(_who_can, _who, required=("KeyId", "Action")),
    "ListAuditRecords": _wire(_list_audit_records, _audit_records, required=(),
                              optional=("Limit", "KeyId", "Principal", "Operation", "Outcome",
                                        "Verify", "Marker")),
    "ListNodes": _wire(_list_nodes, _nodes, required=()),
}  # fmt: skip


def decode(target: str, wire: Wire, body: bytes) -> object:
    """The request's typed request, once its members are checked against the
    operation's shape."""
    doc = json_object(body)
    unknown = sorted(set(doc) - wire.members)
    if unknown:
        raise ValidationException(
            f"{unknown[0][:64]!r} is not a member of {target}; "
            f"its members are {', '.join(sorted(wire.members))}."
        )
    missing = sorted(wire.required - set(doc))
    if missing:
        raise ValidationException(f"{target} requires {', '.join(missing)}.")
    return wire.decode(doc)


class AdminDoor(AwsJsonErrors):
    name = "admin"
    prefixes = (TARGET_PREFIX,)
    serves_sealed = False

    def __init__(
        self,
        credentials: CredentialStore,
        authz: Authorizer,
        codec: WireCodec,
        signed: SignedCallers,
        identity_providers: IdentityProviders,
        *,
        tokens: TokenStore | None = None,
        inspector: Inspector | None = None,
        xks_uri_path: str = "/kms/xks/v1",
    ) -> None:
        super().__init__(codec)
        self._credentials = credentials
        self._authz = authz
        if (
            WIRE.keys() != OPERATIONS.keys()
            or IDP_WIRE.keys() != IDP_OPERATIONS.keys()
            or INSPECTION_WIRE.keys() != INSPECTION_OPERATIONS.keys()
            or XKS_WIRE.keys() != XKS_OPERATIONS.keys()
        ):
            raise ValueError("every admin operation needs its wire shape, and only those")
        wires = {
            **WIRE,
            **IDP_WIRE,
            **XKS_WIRE,
            **(INSPECTION_WIRE if inspector is not None else {}),
        }
        self._wire = {TARGET_PREFIX + name: wire for name, wire in wires.items()}
        self._actions = {
            TARGET_PREFIX + op.name: Action(
                TARGET_PREFIX + op.name, partial(op.handler, credentials), op.mutates, op.request
            )
            for op in OPERATIONS.values()
        }
        self._actions.update(
            {
                TARGET_PREFIX + op.name: Action(
                    TARGET_PREFIX + op.name,
                    partial(op.handler, XksCredentials(credentials, xks_uri_path)),
                    op.mutates,
                    op.request,
                )
                for op in XKS_OPERATIONS.values()
            }
        )
        self._actions.update(
            {
                TARGET_PREFIX + op.name: Action(
                    TARGET_PREFIX + op.name,
                    partial(op.handler, identity_providers),
                    op.mutates,
                    op.request,
                )
                for op in IDP_OPERATIONS.values()
            }
        )
        if tokens is not None:
            if TOKEN_WIRE.keys() != TOKEN_OPERATIONS.keys():
                raise ValueError("every token operation needs its wire shape, and only those")
            self._wire.update({TARGET_PREFIX + name: wire for name, wire in TOKEN_WIRE.items()})
            self._actions.update(
                {
                    TARGET_PREFIX + op.name: Action(
                        TARGET_PREFIX + op.name, partial(op.handler, tokens), op.mutates, op.request
                    )
                    for op in TOKEN_OPERATIONS.values()
                }
            )
        if inspector is not None:  # (unit tests build the door without one)
            self._actions.update(
                {
                    TARGET_PREFIX + op.name: Action(
                        TARGET_PREFIX + op.name, partial(op.handler, inspector), False, op.request
                    )
                    for op in INSPECTION_OPERATIONS.values()
                }
            )
        self.authenticate = signed.authenticate

    def operation(self, target: str) -> str | None:
        return target if target in self._actions else None

    def action(self, call: Call, request: HttpRequest) -> Action:
        assert call.operation is not None
        check_content_type(request)
        return self._actions[call.operation]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        return decode(action.name, self._wire[action.name], request.body)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        return orjson.dumps(self._wire[action.name].encode(result))

    async def commit(self, writes: Sequence[Write]) -> None:
        # Identity providers' too: verify reads them from the store, uncached.
        await self._credentials.commit(writes)

    def committed(self) -> None:
        # Policies or tags may have changed: callers' subjects are built again.
        self._authz.clear()
