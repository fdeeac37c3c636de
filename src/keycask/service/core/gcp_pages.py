"""Pages of the Cloud KMS door's lists, after the door's filter and
before its pages: a list's operation yields its candidates in their own
order (an id to go on after, and the item, or None for one the caller may
not see, which no filter ever looks at), and ``page`` keeps those the
filter passes, so a page holds up to ``page_size`` matching items and its
token points past the last one it holds.

Without orderBy a page is read in the list's own order, and one request
looks at no more than ``SCAN_MAX`` candidates: a filter that passes few
answers a page of what it found so far (even none) with a token past the
last one it looked at, as AIP-158 allows. With orderBy the whole list is
read (at most ``SCAN_MAX`` candidates, else INVALID_ARGUMENT), sorted,
and paged by position: its token is ``~`` and the position.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from keycask.errors import ValidationException
from keycask.service.core.gcp_requests import ListRequest, ListResult, Selection

PAGE_MAX: Final = 1000
SCAN_MAX: Final = 10_000
OFFSET: Final = "~"

Candidates = Callable[[str], AsyncGenerator[tuple[str, Any]]]


async def page(req: ListRequest, candidates: Candidates) -> ListResult:
    """A page of ``req``: ``candidates(after)`` yields (id, item or None)
    in the list's order, from after the id ``after`` ("" from the start)."""
    size = min(req.page_size or PAGE_MAX, PAGE_MAX)
    select = req.select
    if select is not None and select.ordered:
        return await _ordered(req, select, size, candidates)
    if req.after.startswith(OFFSET):
        raise ValidationException(
            "Invalid page_token: it is from a list with an order_by; pass the same order_by."
        )
    items: list[Any] = []
    last_item = last_seen = ""
    scanned = 0
    async with contextlib.aclosing(candidates(req.after)) as found:
        async for ident, item in found:
            if scanned == SCAN_MAX:
                return ListResult(tuple(items), last_seen, False)
            scanned += 1
            if item is not None and (select is None or select.matches(item)):
                if len(items) == size:
                    return ListResult(tuple(items), last_item, False)
                items.append(item)
                last_item = ident
            last_seen = ident
    return ListResult(tuple(items), None, not req.after)


async def _ordered(
    req: ListRequest, select: Selection, size: int, candidates: Candidates
) -> ListResult:
    after = req.after
    position = after[len(OFFSET) :]
    if after and not (
        after.startswith(OFFSET) and position.isascii() and position.isdigit()
        and len(position) <= 9
    ):  # fmt: skip
        raise ValidationException(
            "Invalid page_token: it is not from a list with this order_by; pass the same "
            "order_by as the request that returned it."
        )
    start = int(position) if after else 0
    kept: list[Any] = []
    scanned = 0
    async with contextlib.aclosing(candidates("")) as found:
        async for _, item in found:
            scanned += 1
            if scanned > SCAN_MAX:
                raise ValidationException(
                    f"order_by sorts lists of at most {SCAN_MAX} items, and this one has more: "
                    "list without order_by (in name order)."
                )
            if item is not None and select.matches(item):
                kept.append(item)
    ordered = select.sort(kept)
    items = ordered[start : start + size]
    more = len(ordered) > start + size
    return ListResult(
        tuple(items), f"{OFFSET}{start + size}" if more else None, not start and not more
    )
