"""The Cloud KMS door's IAM requests (getIamPolicy, setIamPolicy,
testIamPermissions on a crypto key or a key ring), checked and built into
``service/core/gcp_requests.py``'s requests for ``core/gcp_iam.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from keycask.errors import ValidationException
from keycask.service.core.gcp_requests import (
    Binding,
    KeyRequest,
    RingRequest,
    SetIamPolicyRequest,
    TestPermissionsRequest,
)
from keycask.service.doors.gcp_codec import Doc, Query, key_name, ring_name

_MAX_BINDINGS: Final = 100
_MAX_MEMBERS: Final = 1500


def get_iam(params: Mapping[str, str], query: Query, doc: Doc) -> KeyRequest:
    return KeyRequest(key_name(params))


def _strings(value: object, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise ValidationException(f"Invalid value at '{what}': a list of at most {limit}.")
    if not all(isinstance(v, str) and 0 < len(v) <= 512 for v in value):
        raise ValidationException(f"Invalid value at '{what}': strings of 1 to 512 characters.")
    return tuple(value)


def get_ring_iam(params: Mapping[str, str], query: Query, doc: Doc) -> RingRequest:
    return RingRequest(ring_name(params))


def set_ring_iam(params: Mapping[str, str], query: Query, doc: Doc) -> SetIamPolicyRequest:
    bindings, etag = _policy(doc)
    return SetIamPolicyRequest(ring_name(params), bindings, etag)


def set_iam(params: Mapping[str, str], query: Query, doc: Doc) -> SetIamPolicyRequest:
    bindings, etag = _policy(doc)
    return SetIamPolicyRequest(key_name(params), bindings, etag)


def _policy(doc: Doc) -> tuple[tuple[Binding, ...], str]:
    policy = doc.get("policy")
    if not isinstance(policy, dict):
        raise ValidationException("policy is required.")
    raw = policy.get("bindings", [])
    if not isinstance(raw, list) or len(raw) > _MAX_BINDINGS:
        raise ValidationException(f"policy.bindings: a list of at most {_MAX_BINDINGS}.")
    bindings = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("role"), str):
            raise ValidationException("Each binding needs a role.")
        if entry.get("condition"):
            raise ValidationException(
                "Conditional role bindings are not supported by keycask: write the "
                "condition in the key policy through the AWS door."
            )
        members = _strings(entry.get("members", []), "members", _MAX_MEMBERS)
        bindings.append(Binding(entry["role"], members))
    etag = policy.get("etag", "")
    if not isinstance(etag, str):
        raise ValidationException("Invalid value at 'policy.etag'.")
    return tuple(bindings), etag


def test_iam(params: Mapping[str, str], query: Query, doc: Doc) -> TestPermissionsRequest:
    permissions = _strings(doc.get("permissions", []), "permissions", 100)
    return TestPermissionsRequest(key_name(params), permissions)


def test_ring_iam(params: Mapping[str, str], query: Query, doc: Doc) -> TestPermissionsRequest:
    permissions = _strings(doc.get("permissions", []), "permissions", 100)
    return TestPermissionsRequest(ring_name(params), permissions)
