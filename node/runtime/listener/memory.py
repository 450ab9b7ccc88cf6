"""Returning the C heap that closed connections freed to the system (glibc's ``malloc_trim``).

A TLS connection costs the process about 50 KiB of C heap under
uvloop (the SSL object and its buffers) and about 300 KiB under the
standard loop (which gives each a 256 KiB read buffer up front).  glibc
keeps that heap after the connection closes and, with bursts of
connections, fragments it, so RSS grew burst after burst (six bursts of
3,000 idle connections: 56 to 480 MiB, never returned; ``malloc_trim``
gives it all back, nothing stays alive).  On the standard loop before
CPython 3.11.8 a failed handshake also leaves its protocol in a reference
cycle until the next full collection (gh-109534).  The caps bound how
many connections exist at once, and :class:`MemoryTrimmer` collects and
returns the freed heap to the system once a burst of closes is over
(``scripts/bench_connections.py`` measures it).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("provenet.listener")

# Freed heap is returned to the system after this many closed connections...
TRIM_AFTER_CLOSED = 512
# ...once the burst has been quiet this long, and at most this often.
TRIM_DELAY_S = 1.0
TRIM_MIN_INTERVAL_S = 5.0


class MemoryTrimmer:
    """Hands the C heap freed by closed connections back to the system (glibc only).

    Why: glibc keeps freed memory in its heap; after bursts of TLS
    connections the heap fragments and the process's RSS grows with every
    burst even though nothing is live.  ``malloc_trim(0)`` releases the free
    pages; it walks the heap (and a full garbage collection runs first), so
    it runs once a burst is over and at most every ``TRIM_MIN_INTERVAL_S``,
    not per close.
    """

    def __init__(self) -> None:
        self._malloc_trim = _load_malloc_trim()
        self._closed = 0
        self._last_closed_at = 0.0
        self._last_trim = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def closed_one(self) -> None:
        if self._malloc_trim is None:
            return
        self._closed += 1
        self._last_closed_at = time.monotonic()
        if self._closed >= TRIM_AFTER_CLOSED and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._maybe_trim)

    def _maybe_trim(self) -> None:
        self._timer = None
        now = time.monotonic()
        due = max(self._last_closed_at + TRIM_DELAY_S, self._last_trim + TRIM_MIN_INTERVAL_S)
        if now < due:
            self._timer = asyncio.get_running_loop().call_later(due - now, self._maybe_trim)
            return
        assert self._malloc_trim is not None
        started = time.perf_counter()
        # The standard loop's TLS protocol sits in a reference cycle once its
        # connection failed (CPython gh-109534, before 3.11.8), with a 256 KiB
        # buffer each: only a full collection frees them for the trim.  Under
        # uvloop (the node's loop) nothing is left in cycles, and a full
        # collection of a large heap would hold the loop for tens of ms at a
        # stranger's bidding, so it runs only on the standard loop.
        if _on_standard_loop():
            gc.collect()
        collected = time.perf_counter()
        self._malloc_trim(0)
        self._last_trim = time.monotonic()
        log.debug(
            "after %d closed connections: collected in %.1f ms, returned the freed heap in %.1f ms",
            self._closed,
            (collected - started) * 1000,
            (time.perf_counter() - collected) * 1000,
        )
        self._closed = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _on_standard_loop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("asyncio")


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
