"""A token bucket per caller, for the few things that must stay cheap to
refuse: failed operator authentications and failed unseal inputs, where
guessing (tokens, shares, passphrases, PINs) is the attack."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, max_callers: int = 4096) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _refill(self, caller: str, now: float) -> float:
        tokens, last = self._buckets.pop(caller, (self._burst, now))
        return min(self._burst, tokens + (now - last) * self._rate)

    def _store(self, caller: str, tokens: float, now: float) -> None:
        self._buckets[caller] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)  # the least recently seen caller

    def allow(self, caller: str) -> bool:
        """Take one token if there is one; whether there was."""
        now = time.monotonic()
        tokens = self._refill(caller, now)
        allowed = tokens >= 1.0
        self._store(caller, tokens - 1.0 if allowed else tokens, now)
        return allowed

    def exhausted(self, caller: str) -> bool:
        """Whether ``caller`` has no token left, without taking one."""
        if caller not in self._buckets:
            return False
        now = time.monotonic()
        tokens = self._refill(caller, now)
        self._store(caller, tokens, now)
        return tokens < 1.0
