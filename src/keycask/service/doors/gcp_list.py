"""The Cloud KMS door's list requests (keyRings.list, cryptoKeys.list,
cryptoKeyVersions.list) with their ``filter`` and ``orderBy``
(``doors/gcp_filter.py``), each evaluated on an item as this door renders
it: the core pages what passes (``core/gcp_pages.py``).

Another list (importJobs.list) takes them the same way:
``selection(query, render_one)`` in its decoder, ``gcp_pages.page`` in its
operation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keycask.service.core.gcp_requests import ListRequest
from keycask.service.doors import gcp_codec as codec
from keycask.service.doors import gcp_filter
from keycask.service.doors import gcp_render as render
from keycask.service.doors.gcp_codec import Doc, Query


@dataclass(frozen=True, slots=True)
class ListSelection:
    """A list's filter and order on the rendered items (``core``'s Selection)."""

    where: gcp_filter.Node | None
    fields: tuple[gcp_filter.OrderField, ...]
    render: Callable[[Any], Doc]

    @property
    def ordered(self) -> bool:
        return bool(self.fields)

    def matches(self, item: Any) -> bool:
        return gcp_filter.matches(self.where, self.render(item))

    def sort(self, items: list[Any]) -> list[Any]:
        docs = [self.render(item) for item in items]
        return [items[i] for i in gcp_filter.order(self.fields, docs)]


def selection(query: Query, render_one: Callable[[Any], Doc]) -> ListSelection | None:
    """The request's ``filter`` and ``orderBy`` (None if it has neither)."""
    where = gcp_filter.parse_filter(codec.one(query, "filter") or "")
    order_by = codec.one(query, "orderBy") or codec.one(query, "order_by") or ""
    fields = gcp_filter.parse_order(order_by)
    if where is None and not fields:
        return None
    return ListSelection(where, fields, render_one)


def _selected(req: ListRequest, query: Query, render_one: Callable[[Any], Doc]) -> ListRequest:
    return dataclasses.replace(req, select=selection(query, render_one))


def list_rings(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    return _selected(codec.list_rings(params, query, doc), query, render.ring_doc)


def list_keys(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    return _selected(codec.list_keys(params, query, doc), query, render.key_doc)


def list_versions(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    return _selected(codec.list_versions(params, query, doc), query, render.version_doc)
