"""Slow, CPU-bound cryptography (RSA key generation, RSA private-key
operations) off the event loop, on a thread pool of its own with a bound.

asyncio's default executor also runs keycask's file-lock waits; flooding it
with 4096-bit key generations would stall every write. Here at most
``MAX_QUEUED`` such calls wait at a time, and a caller beyond that gets
ThrottlingException at once instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from keycask.errors import ThrottlingException

T = TypeVar("T")

MAX_QUEUED = 8
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keycask-rsa")
_queued = 0


async def run_slow(function: Callable[..., T], *args: object) -> T:
    global _queued  # noqa: PLW0603 - one bound per process, like the pool it guards
    if _queued >= MAX_QUEUED:
        raise ThrottlingException("Too many slow key operations in progress; retry later.")
    _queued += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_executor, function, *args)
    finally:
        _queued -= 1
