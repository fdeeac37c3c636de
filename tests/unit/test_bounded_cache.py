from __future__ import annotations

from keycask.keys.cache import BoundedCache


def test_forgets_oldest_when_full() -> None:
    cache: BoundedCache[int, str] = BoundedCache(3)
    for i in range(5):
        cache.put(i, str(i))
    assert len(cache) == 3
    assert cache.get(0) is None and cache.get(1) is None
    assert [cache.get(i) for i in (2, 3, 4)] == ["2", "3", "4"]


def test_replacing_an_entry_does_not_evict() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    assert cache.get("a") == 3 and cache.get("b") == 2


def test_pop_and_clear() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.pop("a")
    cache.pop("missing")
    assert cache.get("a") is None
    cache.put("b", 2)
    cache.clear()
    assert len(cache) == 0
