"""Limit and Marker, as every List* operation takes them."""

from __future__ import annotations

from keycask.errors import InvalidMarkerException


def page_limit(limit: int | None, default: int) -> int:
    return default if limit is None else limit


def offset_marker(marker: str | None) -> int:
    """Markers that are positions in a short list (tags, policies)."""
    if marker is None:
        return 0
    if not (marker.isascii() and marker.isdigit()) or len(marker) > 6:
        raise InvalidMarkerException("The marker is not valid.")
    return int(marker)
