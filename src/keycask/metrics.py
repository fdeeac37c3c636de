"""keycask's Prometheus metrics: the series every layer counts into, and the
text exposition a scrape of ``GET /metrics`` answers (``http/metrics.py``).

A leaf module (``prometheus_client`` and the standard library only), so the
audit log, the key store and the pipeline all count into the same series.
Labels are bounded by construction: doors and operations are the names the
doors know (the model's operations; an unknown target is ``other``), error
codes are the ``KMSError`` classes' own codes, and nothing names a key or a
principal.

**Worker processes** (``--workers N``): the supervisor gives every worker the
same empty directory in ``PROMETHEUS_MULTIPROC_DIR`` before it starts them,
so ``prometheus_client`` keeps each worker's values in a memory-mapped file
of its own there; whichever worker a scrape reaches sums every worker's
files (``MultiProcessCollector``): one view of the whole server. Counters of
a worker that died stay in the sums; its live gauges are dropped when the
supervisor restarts it. A lone server keeps its values in memory.

What the hot path counts (requests and their durations, the caches' hits
and misses) is kept as plain numbers where it happens and copied into the
series by ``sync``, as are the process's CPU and memory: at every scrape,
and once a second from the maintenance timer, which is what makes a
worker's share visible to a scrape that another worker answers.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"

# No ``*_created`` series: a scrape shows the counts, not when each label
# set first appeared (half the lines, no use for alerts).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Every series lives in this registry (not prometheus_client's global one),
# so nothing a library registers there is exposed by accident.
_REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip

REQUESTS = Counter(
    "keycask_requests",
    "Requests answered, by front door, operation, outcome and error code.",
    ["door", "operation", "outcome", "error_code"],
    registry=_REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "keycask_request_duration_seconds",
    "Time from a request reaching the pipeline to its answer, by door and operation.",
    ["door", "operation"],
    buckets=_LATENCY_BUCKETS,
    registry=_REGISTRY,
)
AUTH_FAILURES = Counter(
    "keycask_auth_failures",
    "Requests whose caller could not be authenticated, by reason.",
    ["reason"],
    registry=_REGISTRY,
)
AUTHZ_DENIED = Counter(
    "keycask_authz_denied",
    "Requests an authorization decision denied, by operation.",
    ["operation"],
    registry=_REGISTRY,
)
AUDIT_RECORDS = Counter("keycask_audit_records", "Audit records made durable.", registry=_REGISTRY)
AUDIT_WRITE_FAILURES = Counter(
    "keycask_audit_write_failures",
    "Audit batches that could not be written or made durable (their requests failed).",
    registry=_REGISTRY,
)
AUDIT_FSYNC_SECONDS = Histogram(
    "keycask_audit_fsync_seconds",
    "Time one fsync of an audit batch took.",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=_REGISTRY,
)
AUDIT_BATCH_SIZE = Histogram(
    "keycask_audit_batch_size",
    "Records written together by one write and fsync (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=_REGISTRY,
)
JOBS = Counter(
    "keycask_jobs",
    "Background jobs run, by job (rotation, deletion, expiry, rewrite) and outcome.",
    ["job", "outcome"],
    registry=_REGISTRY,
)
KEY_NEAR_EXPIRY = Counter(
    "keycask_key_near_expiry_notices",
    "Notices that a key version's expiry is near (an Azure Key Vault rotation policy's Notify"
    " action), by front door; each version is noticed once per exp and trigger.",
    ["door"],
    registry=_REGISTRY,
)
CACHE_HITS = Counter(
    "keycask_cache_hits", "Cache lookups answered from memory.", ["cache"], registry=_REGISTRY
)
CACHE_MISSES = Counter(
    "keycask_cache_misses",
    "Cache lookups that went to the store.",
    ["cache"],
    registry=_REGISTRY,
)


# -- requests: the pipeline's one call per answer --

# Counted as plain numbers here and copied into the two series by ``sync``
# (every scrape, and once a second): prometheus_client's own inc and
# observe take a lock per value and scan the buckets in Python, which
# measured +31k instructions (+5 %) per Encrypt; a tally costs a dict hit,
# two additions and a C bisect. The histogram's sum and per-bucket counts
# are added to directly (its private _sum and _buckets, as observe adds to
# them), so both modes (in memory, and the workers' shared files) hold
# exactly what observing each request would have written.
_BOUNDS = (*_LATENCY_BUCKETS, math.inf)
# The tallies, by label set: bounded by the label sets themselves (doors'
# operation names, error codes); the cap only guards against a mistake.
_MAX_TALLIES = 4096


class _Tally:
    __slots__ = ("buckets", "count", "counter", "histogram", "seconds", "synced")

    def __init__(self, counter: Any, histogram: Any) -> None:
        self.counter = counter
        self.histogram = histogram
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * len(_BOUNDS)
        self.synced: tuple[int, float, list[int]] = (0, 0.0, [0] * len(_BOUNDS))

    def sync(self) -> None:
        count, seconds, buckets = self.synced
        if self.count == count:
            return
        self.counter.inc(self.count - count)
        self.histogram._sum.inc(self.seconds - seconds)
        for i, (now, then) in enumerate(zip(self.buckets, buckets, strict=True)):
            if now != then:
                self.histogram._buckets[i].inc(now - then)
        self.synced = (self.count, self.seconds, list(self.buckets))


_tallies: dict[tuple[str | None, str | None, str | None], _Tally] = {}
_ERROR_CODES: set[str] = set()


def known_error_codes(codes: Iterable[str]) -> None:
    """The error codes a request may be counted under (the KMSError
    classes' codes); any other is counted as ``other``."""
    _ERROR_CODES.update(codes)


def request_done(
    door: str | None, operation: str | None, error_code: str | None, seconds: float
) -> None:
    """Count one answered request and its duration (on the event loop)."""
    tally = _tallies.get((door, operation, error_code))
    if tally is None:
        tally = _new_tally(door, operation, error_code)
    tally.count += 1
    tally.seconds += seconds
    tally.buckets[bisect_left(_BOUNDS, seconds)] += 1


def _new_tally(door: str | None, operation: str | None, error_code: str | None) -> _Tally:
    if len(_tallies) >= _MAX_TALLIES:
        # Never expected: one more series ("other"), never more memory.
        door, operation, error_code = None, None, OTHER
        found = _tallies.get((door, operation, error_code))
        if found is not None:
            return found
    code = error_code or ""
    if code and code not in _ERROR_CODES:
        code = OTHER
    door_label, operation_label = door or "none", operation or OTHER
    outcome = "error" if code else "success"
    tally = _Tally(
        REQUESTS.labels(door_label, operation_label, outcome, code),
        REQUEST_SECONDS.labels(door_label, operation_label),
    )
    _tallies[(door, operation, error_code)] = tally
    return tally


# -- caches: plain integers where the lookups happen --


class CacheStats:
    """Hits and misses of one cache, counted as plain integers (the lookups
    are on the hot path); ``sync`` copies them into the series."""

    __slots__ = ("hits", "misses", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self.misses = 0


_caches: dict[str, CacheStats] = {}
_cache_synced: dict[str, tuple[int, int]] = {}
_sync_lock = threading.Lock()


def cache_stats(name: str) -> CacheStats:
    """The counters of the cache ``name`` (one per process, shared by every
    instance of that cache)."""
    stats = _caches.get(name)
    if stats is None:
        stats = _caches[name] = CacheStats(name)
    return stats


# A cache that counts elsewhere (the policy decision cache keeps its own
# hits and misses): read at sync.
_external_caches: dict[str, Callable[[], tuple[int, int]]] = {}


def watch_cache(name: str, read: Callable[[], tuple[int, int]]) -> None:
    _external_caches[name] = read


# -- the process, for worker processes --


class _Process:
    """The standard process series, summed over the live workers (a
    ``ProcessCollector`` would show only the process that answers); made
    only in multiprocess mode, where they are written to the shared files."""

    def __init__(self) -> None:
        self.rss = Gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes, summed over the live worker processes.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.fds = Gauge(
            "process_open_fds",
            "Open file descriptors, summed over the live worker processes.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.cpu = Counter(
            "process_cpu_seconds",
            "User and system CPU time in seconds, summed over the worker processes.",
            registry=None,
        )
        self.cpu_synced = 0.0

    def sync(self) -> None:
        self.rss.set(_rss_bytes())
        self.fds.set(_open_fds())
        times = os.times()
        used = times.user + times.system
        if used > self.cpu_synced:
            self.cpu.inc(used - self.cpu_synced)
            self.cpu_synced = used


@functools.cache
def _process() -> _Process:
    return _Process()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def sync() -> None:
    """Copy what is counted as plain integers into the series (every scrape,
    and once a second from the maintenance timer)."""
    with _sync_lock:
        for tally in list(_tallies.values()):
            tally.sync()
        current = {name: (s.hits, s.misses) for name, s in _caches.items()}
        for name, read in _external_caches.items():
            current[name] = read()
        for name, (hits, misses) in current.items():
            old_hits, old_misses = _cache_synced.get(name, (0, 0))
            if hits < old_hits or misses < old_misses:
                old_hits, old_misses = 0, 0  # a new cache under the name
            if hits > old_hits:
                CACHE_HITS.labels(name).inc(hits - old_hits)
            if misses > old_misses:
                CACHE_MISSES.labels(name).inc(misses - old_misses)
            _cache_synced[name] = (hits, misses)
        if multiprocess_dir() is not None:
            _process().sync()


# -- what a scrape reads from the running server --


class Readings:
    """Values a scrape reads from the server as it is then (``app.py`` sets
    them): they are state, not events, so no process counts them."""

    def __init__(self) -> None:
        self.sealed: Callable[[], bool] | None = None
        self.seal_type: Callable[[], str] | None = None
        self.version: str = ""
        # (state, key_spec) -> count, as last computed (see http/metrics.py).
        self.keys: Callable[[], dict[tuple[str, str], int] | None] | None = None
        self.notify_lag: Callable[[], float | None] | None = None


READINGS = Readings()


class _StateCollector:
    def collect(self) -> Iterable[Metric]:
        readings = READINGS
        if readings.sealed is not None:
            yield GaugeMetricFamily(
                "keycask_sealed",
                "1 while this server is sealed (no KMS call is served), else 0.",
                value=1 if readings.sealed() else 0,
            )
        if readings.seal_type is not None:
            info = GaugeMetricFamily(
                "keycask_seal_info", "The seal type this server's root key comes from.",
                labels=["type"],
            )  # fmt: skip
            info.add_metric([readings.seal_type()], 1)
            yield info
        build = GaugeMetricFamily("keycask_build_info", "keycask's version.", labels=["version"])
        build.add_metric([readings.version], 1)
        yield build
        counts = readings.keys() if readings.keys is not None else None
        if counts is not None:
            keys = GaugeMetricFamily(
                "keycask_keys", "KMS keys in the store, by state and key spec.",
                labels=["state", "key_spec"],
            )  # fmt: skip
            for (state, spec), count in sorted(counts.items()):
                keys.add_metric([state, spec], count)
            yield keys
        lag = readings.notify_lag() if readings.notify_lag is not None else None
        if lag is not None:
            yield GaugeMetricFamily(
                "keycask_cluster_notify_lag_seconds",
                "How late this node learnt of another node's commit, last time (see "
                "docs/operations.md).",
                value=lag,
            )


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def _scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is None:
        registry.register(_Forward(_REGISTRY))
        registry.register(ProcessCollector(registry=None))
    else:
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(_StateCollector())
    return registry


class _Forward:
    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


@functools.cache
def _scrape_registry_once() -> CollectorRegistry:
    return _scrape_registry()


def exposition() -> bytes:
    """The text exposition of every series (Prometheus 0.0.4)."""
    sync()
    return generate_latest(_scrape_registry_once())
