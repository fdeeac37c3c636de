"""Properties of the Cloud KMS door's list pages (service/core/gcp_pages.py):
walking every page of a filtered list, by its tokens, yields each matching
item once, in order, whatever the page size; no page holds more than it
may; a list with more candidates than one request looks at is still walked
whole; an ordered list is paged by position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.errors import ValidationException
from keycask.service.core import gcp_pages
from keycask.service.core.gcp_requests import ListRequest, ListResult, LocationName

_PARENT = LocationName("keycask-test", "global")


@dataclass(frozen=True)
class _Select:
    """A filter (the items in ``keep``) and an order (descending, if ``ordered``)."""

    keep: frozenset[int]
    ordered: bool = False

    def matches(self, item: Any) -> bool:
        return int(item) in self.keep

    def sort(self, items: list[Any]) -> list[Any]:
        return sorted(items, reverse=True)


def _candidates(count: int, hidden: frozenset[int] = frozenset()) -> gcp_pages.Candidates:
    async def candidates(after: str) -> AsyncGenerator[tuple[str, Any]]:
        start = int(after) + 1 if after else 0
        for i in range(start, count):
            yield f"{i:06d}", None if i in hidden else i

    return candidates


def _walk(
    count: int, select: _Select | None, size: int, hidden: frozenset[int] = frozenset()
) -> list[ListResult]:
    pages: list[ListResult] = []
    after = ""
    while True:
        req = ListRequest(_PARENT, size, after, select)
        got = asyncio.run(gcp_pages.page(req, _candidates(count, hidden)))
        pages.append(got)
        if got.next_after is None:
            return pages
        assert len(pages) < 10_000
        after = got.next_after


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 60),
    st.frozensets(st.integers(0, 60)),
    st.frozensets(st.integers(0, 60)),
    st.integers(0, 12),
    st.booleans(),
)
def test_pages_walk_every_matching_item_once(
    count: int, keep: frozenset[int], hidden: frozenset[int], size: int, ordered: bool
) -> None:
    select = _Select(keep, ordered)
    pages = _walk(count, select, size, hidden)
    items = [item for got in pages for item in got.items]
    expected = [i for i in range(count) if i in keep and i not in hidden]
    assert items == (sorted(expected, reverse=True) if ordered else expected)
    for got in pages:
        assert len(got.items) <= (size or gcp_pages.PAGE_MAX)
    # The whole list in one answer says so (its totalSize); no other does.
    assert [got.whole for got in pages] == [len(pages) == 1] + [False] * (len(pages) - 1)
    # Fewer candidates than a request looks at: every page but the last is full.
    for got in pages[:-1]:
        assert len(got.items) == (size or gcp_pages.PAGE_MAX)


def test_a_sparse_filter_over_many_candidates_pages_past_what_it_looked_at() -> None:
    count = 2 * gcp_pages.SCAN_MAX + 5
    keep = frozenset({3, gcp_pages.SCAN_MAX + 7, count - 1})
    pages = _walk(count, _Select(keep), 10)
    assert [item for got in pages for item in got.items] == sorted(keep)
    assert len(pages) == 3 and [len(got.items) for got in pages] == [1, 1, 1]
    assert pages[0].next_after == f"{gcp_pages.SCAN_MAX - 1:06d}"


def test_an_ordered_list_over_the_bound_and_stray_tokens_are_refused() -> None:
    too_many = _candidates(gcp_pages.SCAN_MAX + 1)
    ordered = _Select(frozenset({1}), ordered=True)
    with pytest.raises(ValidationException):
        asyncio.run(gcp_pages.page(ListRequest(_PARENT, 10, "", ordered), too_many))
    with pytest.raises(ValidationException):
        asyncio.run(gcp_pages.page(ListRequest(_PARENT, 10, "000001", ordered), _candidates(3)))
    with pytest.raises(ValidationException):
        asyncio.run(gcp_pages.page(ListRequest(_PARENT, 10, "~2", None), _candidates(3)))
