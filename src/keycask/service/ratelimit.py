"""A token bucket per caller, for the few calls that must stay cheap to
refuse: operator calls, where guessing (tokens, shares, passphrases) is the
attack."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, max_callers: int = 4096) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, caller: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.pop(caller, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[caller] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)  # the least recently seen caller
        return allowed
