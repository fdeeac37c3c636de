"""CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.

Why one module of ~620 lines: the five operations share one set of rules
(which operations suit a key, what a constraint may say, who may retire) and
one stored form; CreateGrant's "as strict or stricter" check, idempotence by
name and the retire rules all read the same helpers, and splitting them by
operation would put each rule far from the others that depend on it.

A grant lets one principal (the grantee) call some operations on one key,
optionally only with a given encryption context; evaluation counts it after
the key policy and identity policies (policy/evaluate.py). Grants are stored
behind the barrier at ``grant/<key id>/<grant id>``, with an index entry
``retiring/<principal>/<key id>/<grant id>`` for ListRetirableGrants, and are
strongly consistent: a committed grant is usable by the next request on any
worker, and a retired or revoked one is gone as soon.

Rules, as the AWS KMS API Reference and Developer Guide give them:

- The operations must suit the key ("Grant operations"): data keys and
  ReEncrypt only on encryption keys, Sign/Verify on signing keys,
  GenerateMac/VerifyMac on HMAC keys, DeriveSharedSecret on key agreement
  keys, Encapsulate/Decapsulate on ML-KEM keys, GetPublicKey on asymmetric
  keys; CreateGrant, DescribeKey and RetireGrant on any. Otherwise
  ValidationException.
- Encryption context constraints (at most one kind, at most 8 pairs, values
  up to 384 characters) only with operations that take an encryption context:
  never with cryptographic operations of asymmetric or HMAC keys. They apply
  only to those operations; keys compare without case, values exactly.
- A grantee who creates a grant through its own grant's CreateGrant may only
  make one as strict or stricter: a subset of the operations, and an
  encryption context constraint at least as narrow.
- Name makes CreateGrant idempotent: the same name and parameters on the same
  key answer the existing grant's id, with a new token.
- RetireGrant: the retiring principal, or the grantee if the grant allows
  RetireGrant, without any policy (each checked by ARN and the unique id it
  had when the grant was made); an account named so delegates to its
  principals' identity policies; other principals of the issuing account need
  kms:RetireGrant evaluated like any action, key policy first.
  RevokeGrant: kms:RevokeGrant on the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from keycask.arn import Arn
from keycask.crypto import random_bytes
from keycask.errors import (
    AccessDeniedException,
    DryRunOperationException,
    InvalidArnException,
    InvalidGrantIdException,
    InvalidMarkerException,
    LimitExceededException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.ids import parse_mrk, record_id
from keycask.keys.keystore import Grant, Stored
from keycask.keys.model import Key, KeySpec, KeyUsage, iam_root_arn
from keycask.keys.states import require_state
from keycask.policy.conditions import ContextInput
from keycask.policy.evaluate import Subject
from keycask.service.core.authz import (
    GrantToken,
    fold_context,
    grant_view,
    invalid_grant_token,
    new_grant_token,
    parse_grant_token,
)
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers.crypto import DRY_RUN
from keycask.service.core.paging import page_limit
from keycask.service.core.requests import (
    CreateGrantRequest,
    ListGrantsRequest,
    ListRetirableGrantsRequest,
    RetireGrantRequest,
    RevokeGrantRequest,
)
from keycask.service.core.resolve import resolve_key, use_key
from keycask.service.core.results import (
    CreateGrantResult,
    GrantConstraints,
    GrantListEntry,
    ListGrantsResult,
)

# AWS's limits on an encryption context constraint.
MAX_CONSTRAINT_PAIRS = 8
MAX_CONSTRAINT_VALUE = 384
# AWS's quota of grants per KMS key.
MAX_GRANTS_PER_KEY = 50_000
# Token hashes kept per grant: every CreateGrant retry with the same Name
# issues a new token; the oldest are forgotten beyond this.
MAX_TOKENS_PER_GRANT = 100
_LIST_DEFAULT, _LIST_MAX = 50, 100

_GRANT_ID = re.compile(r"[0-9a-f]{64}")
_NAME = r"[\w+=,.@-]+"
# AWS principals a grant can name: an account, an IAM user or role, an
# assumed-role session, a federated user.
_PRINCIPAL = re.compile(
    rf"arn:aws[a-z-]*:(?:iam::(\d{{12}}):(?:root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)"
    rf"|sts::(\d{{12}}):(?:assumed-role/{_NAME}/{_NAME}|federated-user/{_NAME}))"
)

# Operations any key can be granted.
_ANY_KEY = frozenset({"CreateGrant", "DescribeKey", "RetireGrant"})
_SYMMETRIC = frozenset(
    {
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "ReEncryptFrom",
        "ReEncryptTo",
    }
)
_BY_USAGE = {
    KeyUsage.ENCRYPT_DECRYPT: frozenset(
        {"Decrypt", "Encrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"}
    ),
    KeyUsage.SIGN_VERIFY: frozenset({"Sign", "Verify", "GetPublicKey"}),
    KeyUsage.GENERATE_VERIFY_MAC: frozenset({"GenerateMac", "VerifyMac"}),
    KeyUsage.KEY_AGREEMENT: frozenset({"DeriveSharedSecret", "GetPublicKey"}),
    KeyUsage.ENCAPSULATE_DECAPSULATE: frozenset({"Encapsulate", "Decapsulate", "GetPublicKey"}),
}


def grant_operations_for(key: Key) -> frozenset[str]:
    """The grant operations AWS accepts for ``key``."""
    if key.key_spec is KeySpec.SYMMETRIC_DEFAULT:
        return _ANY_KEY | _SYMMETRIC
    return _ANY_KEY | _BY_USAGE[key.key_usage]


def principal_account(arn: str) -> str | None:
    """The account of a principal ARN a grant may name, or None if it is not one."""
    match = _PRINCIPAL.fullmatch(arn)
    if match is None:
        return None
    return match[1] or match[2]


def _root(account: str) -> str:
    return iam_root_arn(account)


def _check_principal(arn: str, member: str) -> None:
    if principal_account(arn) is None:
        raise ValidationException(
            f"{member} {arn!r} is not a valid principal ARN: name an account "
            "(arn:aws:iam::<account>:root), an IAM user or role, an assumed-role "
            "session or a federated user."
        )


def _check_grant_id(grant_id: str) -> str:
    if _GRANT_ID.fullmatch(grant_id) is None:
        raise InvalidGrantIdException(f"Invalid grant ID {grant_id[:128]!r}.")
    return grant_id


def _grant_not_found(grant_id: str, key: Key) -> NotFoundException:
    return NotFoundException(f"Grant ID {grant_id} not found for key {key.arn}.")


# -- constraints --


def _constraints(
    given: Mapping[str, Any] | None,
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """(EncryptionContextEquals, EncryptionContextSubset), at most one of
    them; an empty map counts as not given."""
    if not given:
        return None, None
    if given.get("source_arn") is not None:
        raise UnsupportedOperationException(
            "keycask does not support the SourceArn grant constraint (it is for grants "
            "to AWS service principals)."
        )
    equals = given.get("encryption_context_equals") or None
    subset = given.get("encryption_context_subset") or None
    if equals is not None and subset is not None:
        raise ValidationException(
            "Specify only one of the EncryptionContextEquals and EncryptionContextSubset "
            "grant constraints."
        )
    for pairs in (equals, subset):
        if pairs is None:
            continue
        if len(pairs) > MAX_CONSTRAINT_PAIRS:
            raise ValidationException(
                f"A grant constraint can have at most {MAX_CONSTRAINT_PAIRS} encryption "
                "context pairs."
            )
        if any(len(value) > MAX_CONSTRAINT_VALUE for value in pairs.values()):
            raise ValidationException(
                f"An encryption context value in a grant constraint can have at most "
                f"{MAX_CONSTRAINT_VALUE} characters."
            )
        if fold_context(pairs) is None:
            raise ValidationException(
                "A grant constraint cannot have encryption context keys that differ only "
                "by case: grant constraints compare keys without case."
            )
    return equals, subset


def _as_strict(
    parent: Grant,
    operations: Sequence[str],
    equals: Mapping[str, str] | None,
    subset: Mapping[str, str] | None,
) -> bool:
    """Whether a grant of ``operations`` with these constraints is as strict
    as ``parent`` or stricter (AWS: child grants of a grant's CreateGrant)."""
    if not set(operations) <= set(parent.operations):
        return False
    if parent.context_equals is not None:
        return equals is not None and fold_context(equals) == fold_context(parent.context_equals)
    if parent.context_subset is not None:
        narrowed = equals if equals is not None else subset
        if narrowed is None:
            return False
        folded = fold_context(narrowed) or {}
        return all(folded.get(k.lower()) == v for k, v in parent.context_subset.items())
    return True


# -- CreateGrant --


async def _unique_id(deps: Deps, arn: str | None) -> str | None:
    """The unique id of the user or role ``arn`` names now (recorded with the
    grant, so a principal re-created under that name is not its grantee)."""
    if arn is None or deps.credentials is None:
        return None
    return await deps.credentials.unique_id(arn)


def _same_principal(recorded: str | None, subject: Subject) -> bool:
    return recorded is None or recorded == subject.unique_id


def _operations(requested: Sequence[str], key: Key, constrained: bool) -> tuple[str, ...]:
    operations = tuple(dict.fromkeys(requested))  # in the order given, once each
    if not operations:
        raise ValidationException("Operations must list at least one grant operation.")
    valid = grant_operations_for(key)
    wrong = [op for op in operations if op not in valid]
    if wrong:
        raise ValidationException(
            f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not a valid grant "
            f"operation for {key.arn} ({key.key_spec.value}, {key.key_usage.value})."
        )
    if constrained and key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        crypto = [op for op in operations if op not in _ANY_KEY]
        if crypto:
            raise ValidationException(
                "Encryption context grant constraints apply only to operations that take "
                f"an encryption context; {', '.join(crypto)} on {key.arn} does not."
            )
    return operations


def _same_grant(
    grant: Grant,
    *,
    grantee: str,
    grantee_id: str | None,
    retiring: str | None,
    retiring_id: str | None,
    operations: Sequence[str],
    equals: Mapping[str, str] | None,
    subset: Mapping[str, str] | None,
) -> bool:
    # The ids too: a grant to an earlier principal of the same name is not
    # this grant, whatever its ARN says.
    return (
        grant.grantee == grantee
        and grant.grantee_id == grantee_id
        and grant.retiring == retiring
        and grant.retiring_id == retiring_id
        and set(grant.operations) == set(operations)
        and (None if grant.context_equals is None else dict(grant.context_equals)) == equals
        and (None if grant.context_subset is None else dict(grant.context_subset)) == subset
    )


async def _check_parent_grant(
    deps: Deps,
    call: Call,
    key: Key,
    *,
    operations: Sequence[str],
    equals: Mapping[str, str] | None,
    subset: Mapping[str, str] | None,
) -> None:
    """A CreateGrant allowed only by the caller's grants makes a grant no
    wider than one of them."""
    assert call.caller is not None
    caller = call.caller.principal.arn
    parents = [
        stored.value
        for stored in await deps.keys.grants(key.key_id)
        if grant_view(stored.value).names(call.caller.subject)
        and "CreateGrant" in stored.value.operations
    ]
    if any(_as_strict(parent, operations, equals, subset) for parent in parents):
        return
    call.decision = "deny"
    call.decided_by = f"{call.decided_by}: the new grant is wider than the caller's grant"
    raise AccessDeniedException(
        f"User: {caller} is not authorized to perform: kms:CreateGrant on resource: {key.arn} "
        "because a grant allows only grants with a subset of its operations and an "
        "encryption context constraint at least as strict as its own"
    )


async def create_grant(deps: Deps, call: Call, req: CreateGrantRequest) -> Outcome:
    key = (await resolve_key(deps.keys, call, req.key_id)).value
    call.key_arn = key.arn
    _check_principal(req.grantee_principal, "GranteePrincipal")
    if req.retiring_principal is not None:
        _check_principal(req.retiring_principal, "RetiringPrincipal")
    equals, subset = _constraints(req.constraints)
    requested = tuple(dict.fromkeys(req.operations))
    context: dict[str, ContextInput] = {
        "kms:GrantOperations": requested,
        "kms:GranteePrincipal": req.grantee_principal,
        "kms:GrantIsForAWSResource": False,
    }
    if req.retiring_principal is not None:
        context["kms:RetiringPrincipal"] = req.retiring_principal
    if equals is not None:
        context["kms:GrantConstraintType"] = "EncryptionContextEquals"
    elif subset is not None:
        context["kms:GrantConstraintType"] = "EncryptionContextSubset"
    await call.authorize("kms:CreateGrant", key, context=context)
    if (call.decided_by or "").startswith("grant "):
        await _check_parent_grant(
            deps, call, key, operations=requested, equals=equals, subset=subset
        )
    require_state("CreateGrant", key)
    operations = _operations(requested, key, equals is not None or subset is not None)

    grantee_id = await _unique_id(deps, req.grantee_principal)
    retiring_id = await _unique_id(deps, req.retiring_principal)
    grants = await deps.keys.grants(key.key_id)
    existing = None
    if req.name is not None:
        existing = next(
            (
                stored
                for stored in grants
                if stored.value.name == req.name
                and _same_grant(
                    stored.value,
                    grantee=req.grantee_principal,
                    grantee_id=grantee_id,
                    retiring=req.retiring_principal,
                    retiring_id=retiring_id,
                    operations=operations,
                    equals=equals,
                    subset=subset,
                )
            ),
            None,
        )
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    if existing is not None:
        # The same grant again: its id, and a token of its own.
        grant = existing.value
        token, digest = new_grant_token(key, grant.grant_id)
        hashes = (*grant.token_hashes, digest)[-MAX_TOKENS_PER_GRANT:]
        call.detail = f"grant {grant.grant_id} (existing, same Name and parameters)"
        writes = deps.keys.stage_put_grant(
            replace(grant, token_hashes=hashes), expect=existing.revision
        )
        return Outcome(CreateGrantResult(grant_token=token, grant_id=grant.grant_id), writes)

    if len(grants) >= MAX_GRANTS_PER_KEY:
        raise LimitExceededException(
            f"{key.arn} has {len(grants)} grants, the most a key can have."
        )
    grant_id = random_bytes(32).hex()
    token, digest = new_grant_token(key, grant_id)
    grant = Grant(
        grant_id=grant_id,
        key_id=key.key_id,
        key_arn=key.arn,
        name=req.name,
        grantee=req.grantee_principal,
        retiring=req.retiring_principal,
        operations=operations,
        context_equals=equals,
        context_subset=subset,
        issuing_account=_root(call.account),
        created=deps.clock.now(),
        token_hashes=(digest,),
        grantee_id=grantee_id,
        retiring_id=retiring_id,
    )
    call.detail = f"grant {grant_id}"
    writes = deps.keys.stage_put_grant(grant, expect=0)
    return Outcome(CreateGrantResult(grant_token=token, grant_id=grant_id), writes)


# -- listing --


def _entry(grant: Grant) -> GrantListEntry:
    constraints = None
    if grant.context_equals is not None or grant.context_subset is not None:
        constraints = GrantConstraints(
            encryption_context_equals=(
                None if grant.context_equals is None else dict(grant.context_equals)
            ),
            encryption_context_subset=(
                None if grant.context_subset is None else dict(grant.context_subset)
            ),
        )
    return GrantListEntry(
        key_id=grant.key_arn,
        grant_id=grant.grant_id,
        creation_date=grant.created,
        grantee_principal=grant.grantee,
        issuing_account=grant.issuing_account,
        operations=grant.operations,
        name=grant.name,
        retiring_principal=grant.retiring,
        constraints=constraints,
    )


def _limit(limit: int | None) -> int:
    # AWS takes 1 to 100 and may answer fewer than asked for.
    return min(page_limit(limit, _LIST_DEFAULT), _LIST_MAX)


async def list_grants(deps: Deps, call: Call, req: ListGrantsRequest) -> Outcome:
    key = (await use_key(deps.keys, call, req.key_id, "kms:ListGrants", state="ListGrants")).value
    wanted = None if req.grant_id is None else _check_grant_id(req.grant_id)
    after = ""
    if req.marker is not None:
        if _GRANT_ID.fullmatch(req.marker) is None:
            raise InvalidMarkerException("The marker is not valid.")
        after = req.marker
    limit = _limit(req.limit)
    chosen: list[Grant] = []
    for stored in await deps.keys.grants(key.key_id):  # in grant id order
        grant = stored.value
        if grant.grant_id <= after:
            continue
        if wanted is not None and grant.grant_id != wanted:
            continue
        if req.grantee_principal is not None and grant.grantee != req.grantee_principal:
            continue
        chosen.append(grant)
        if len(chosen) > limit:
            break
    truncated = len(chosen) > limit
    chosen = chosen[:limit]
    return Outcome(
        ListGrantsResult(
            grants=[_entry(g) for g in chosen],
            truncated=truncated,
            next_marker=chosen[-1].grant_id if truncated else None,
        )
    )


# "<key id>/<grant id>", the key as callers name it (a UUID or an mrk- id):
# a multi-Region copy's record id is internal and never shown.
_RETIRABLE_MARKER = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
    r"/([0-9a-f]{64})"
)


def _retirable_position(marker: str, region: str) -> str:
    """Where a ListRetirableGrants marker resumes the retiring index."""
    match = _RETIRABLE_MARKER.fullmatch(marker)
    if match is None:
        raise InvalidMarkerException("The marker is not valid.")
    key_text, grant_id = match.groups()
    mrk = parse_mrk(key_text)
    key_id = key_text if mrk is None else str(record_id(mrk, region))
    return f"{key_id}/{grant_id}"


async def list_retirable_grants(deps: Deps, call: Call, req: ListRetirableGrantsRequest) -> Outcome:
    principal = req.retiring_principal
    account = principal_account(principal)
    if account is None:
        raise InvalidArnException(f"RetiringPrincipal {principal!r} is not a valid principal ARN.")
    # AWS: the authorized resource is the retiring principal, in the
    # caller's own account; only identity policies decide.
    await call.authorize("kms:ListRetirableGrants", resource=principal)
    if account != call.account:
        assert call.caller is not None
        call.decision = "deny"
        call.decided_by = "the retiring principal is in another account"
        raise AccessDeniedException(
            f"User: {call.caller.arn} is not authorized to perform: "
            f"kms:ListRetirableGrants on resource: {principal} because it is not in account "
            f"{call.account}"
        )
    after = "" if req.marker is None else _retirable_position(req.marker, call.region)
    limit = _limit(req.limit)
    chosen: list[Grant] = []
    last = after
    more = True
    # Index entries of grants on keys in other regions are skipped, so a page
    # may take more than one listing.
    while more and len(chosen) <= limit:
        found = await deps.keys.retirable(principal, last, limit + 1)
        more = len(found) == limit + 1
        for key_id, grant_id in found:
            last = f"{key_id}/{grant_id}"
            stored = await deps.keys.grant(key_id, grant_id)
            if stored is None or stored.value.retiring != principal:
                continue
            if Arn.parse(stored.value.key_arn).region != call.region:
                continue
            chosen.append(stored.value)
            if len(chosen) > limit:
                break
    truncated = len(chosen) > limit
    chosen = chosen[:limit]
    # The key's public id: its ARN's last part (grants live in one region).
    key_text = Arn.parse(chosen[-1].key_arn).resource.removeprefix("key/") if truncated else ""
    marker = f"{key_text}/{chosen[-1].grant_id}" if truncated else None
    entries = [_entry(g) for g in chosen]
    return Outcome(ListGrantsResult(grants=entries, truncated=truncated, next_marker=marker))


# -- retiring and revoking --


async def _grant_by_token(deps: Deps, call: Call, token: GrantToken) -> tuple[Key, Stored[Grant]]:
    stored_key = await deps.keys.get(token.key_id)
    if stored_key is None or stored_key.value.region != call.region:
        raise NotFoundException(f"Grant ID {token.grant_id} not found.")
    key = stored_key.value
    stored = await deps.keys.grant(key.key_id, token.grant_id)
    if stored is None:
        raise _grant_not_found(token.grant_id, key)
    return key, stored


async def _authorize_retire(call: Call, key: Key, grant: Grant) -> None:
    """AWS ("Retiring and revoking grants"): the principals a grant names may
    retire it without any policy; an account a grant names (as its retiring
    principal, or as a grantee allowed RetireGrant) delegates to its own
    principals' identity policies, as a grant to an account does; anyone else
    in the issuing account needs kms:RetireGrant the way every other action is
    allowed: key policy (directly, or delegating to the account's identity
    policies), grants, and no explicit deny anywhere."""
    assert call.caller is not None
    caller = call.caller.subject
    if grant.retiring == caller.arn and _same_principal(grant.retiring_id, caller):
        call.decision, call.decided_by = "allow", f"grant {grant.grant_id} retiring principal"
        return
    if grant_view(grant).names(caller) and "RetireGrant" in grant.operations:
        call.decision, call.decided_by = "allow", f"grant {grant.grant_id}"
        return
    named = {grant.retiring} if grant.retiring is not None else set()
    if "RetireGrant" in grant.operations:
        named.add(grant.grantee)
    if caller.root in named:
        await call.authorize("kms:RetireGrant", resource=key.arn)
        return
    if caller.root == grant.issuing_account:
        # The key policy decides here as for any action: one that leaves the
        # caller out (or denies it) is not bypassed by an identity policy.
        await call.authorize("kms:RetireGrant", key)
        return
    call.decision = "deny"
    call.decided_by = f"grant {grant.grant_id} does not let the caller retire it"
    raise AccessDeniedException(
        f"User: {caller.arn} is not authorized to perform: kms:RetireGrant on resource: "
        f"{key.arn} because the grant does not name it as a principal that may retire it"
    )


async def retire_grant(deps: Deps, call: Call, req: RetireGrantRequest) -> Outcome:
    if req.grant_token is not None:
        token = parse_grant_token(req.grant_token, call.region)
        if req.grant_id is not None and req.grant_id != token.grant_id:
            raise ValidationException("GrantId does not identify the grant of the GrantToken.")
        if req.key_id is not None:
            named = (await resolve_key(deps.keys, call, req.key_id)).value
            if named.key_id != token.key_id:
                raise ValidationException("KeyId does not identify the key of the GrantToken.")
        key, stored = await _grant_by_token(deps, call, token)
        call.key_arn = key.arn
        if not token.opens(stored.value):
            raise invalid_grant_token()
    else:
        if req.key_id is None or req.grant_id is None:
            raise ValidationException(
                "Specify the grant to retire with a GrantToken, or with a KeyId and a GrantId."
            )
        key = (await resolve_key(deps.keys, call, req.key_id)).value
        call.key_arn = key.arn
        found = await deps.keys.grant(key.key_id, _check_grant_id(req.grant_id))
        if found is None:
            raise _grant_not_found(req.grant_id, key)
        stored = found
    await _authorize_retire(call, key, stored.value)
    require_state("RetireGrant", key)
    call.detail = f"grant {stored.value.grant_id}"
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(None, deps.keys.stage_delete_grant(stored))


async def revoke_grant(deps: Deps, call: Call, req: RevokeGrantRequest) -> Outcome:
    key = (await use_key(deps.keys, call, req.key_id, "kms:RevokeGrant", state="RevokeGrant")).value
    stored = await deps.keys.grant(key.key_id, _check_grant_id(req.grant_id))
    if stored is None:
        raise _grant_not_found(req.grant_id, key)
    call.detail = f"grant {req.grant_id}"
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(None, deps.keys.stage_delete_grant(stored))
