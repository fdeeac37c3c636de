"""TagResource, UntagResource, ListResourceTags, and the tag rules CreateKey shares."""

from __future__ import annotations

from collections.abc import Sequence

from keycask.errors import TagException
from keycask.keys.model import Tag
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.paging import offset_marker, page_limit
from keycask.service.core.requests import (
    ListKeyScopedRequest,
    TagResourceRequest,
    UntagResourceRequest,
)
from keycask.service.core.resolve import use_key
from keycask.service.core.results import ListResourceTagsResult

MAX_TAGS = 50


def validate_new_tags(existing: Sequence[Tag], new: Sequence[dict[str, str]]) -> tuple[Tag, ...]:
    """Merge ``new`` over ``existing`` (a new value replaces an old one).

    Tag keys are case-sensitive in AWS, so AWS lets a key carry both "Owner"
    and "owner". Policy conditions name tags without case
    (``aws:ResourceTag/owner``, ``aws:RequestTag/owner``), so such a pair
    would make the condition read either value: keycask refuses a tag whose
    key differs only in case from another tag of the request or of the key
    (TagException). A new value for exactly the same key still replaces the
    old one. Keys tagged so before this rule keep their tags; conditions on
    them fail closed (policy/conditions.py).
    """
    merged = {t.tag_key: t.tag_value for t in existing}
    seen: set[str] = set()
    for item in new:
        key, value = item["tag_key"], item["tag_value"]
        # AWS reserves the prefix in any case ("AWS:", "Aws:"), as IAM does.
        if key[:4].lower() == "aws:":
            raise TagException("Tags beginning with aws: are reserved")
        if key in seen:
            raise TagException("Duplicate tag keys")
        seen.add(key)
        merged[key] = value
    if len(merged) > MAX_TAGS:
        # AWS's answer for the 51st tag: a TagException, not a quota error.
        raise TagException("Too many tags")
    folded: dict[str, str] = {}
    for key in merged:
        other = folded.setdefault(key.lower(), key)
        if other != key and key in seen:
            raise TagException(
                f"Tag key {key} differs only in case from the tag key {other}; policy "
                "conditions name tag keys without case, so keycask refuses such a pair."
            )
    return tuple(Tag(k, v) for k, v in merged.items())


async def tag_resource(deps: Deps, call: Call, req: TagResourceRequest) -> Outcome:
    for tag in req.tags:
        call.conditions["aws:RequestTag/" + tag["tag_key"]] = tag["tag_value"]
    call.conditions["aws:TagKeys"] = tuple(tag["tag_key"] for tag in req.tags)
    stored = await use_key(deps.keys, call, req.key_id, "kms:TagResource", state="TagResource")
    key = stored.value
    tags = validate_new_tags(key.tags, req.tags)
    return Outcome(None, deps.keys.stage_update(stored, key.replace(tags=tags)))


async def untag_resource(deps: Deps, call: Call, req: UntagResourceRequest) -> Outcome:
    call.conditions["aws:TagKeys"] = tuple(req.tag_keys)
    stored = await use_key(deps.keys, call, req.key_id, "kms:UntagResource", state="UntagResource")
    key = stored.value
    drop = set(req.tag_keys)
    tags = tuple(t for t in key.tags if t.tag_key not in drop)
    if tags == key.tags:
        return Outcome()
    return Outcome(None, deps.keys.stage_update(stored, key.replace(tags=tags)))


async def list_resource_tags(deps: Deps, call: Call, req: ListKeyScopedRequest) -> Outcome:
    key = (await use_key(deps.keys, call, req.key_id, "kms:ListResourceTags")).value
    start = offset_marker(req.marker)
    limit = page_limit(req.limit, 50)
    page = list(key.tags[start : start + limit])
    truncated = start + limit < len(key.tags)
    return Outcome(
        ListResourceTagsResult(
            tags=page, truncated=truncated, next_marker=str(start + limit) if truncated else None
        )
    )
