"""Per-client admission budgets: token buckets per connection and per address.

Theory of operation
-------------------
Every client request costs the node work on the one event loop that also
runs consensus, so each client pays for it in *cost units* from two token
buckets: one for its connection and one for its source address (a client
that opens more connections does not get more budget).  A bucket refills
at ``rate_per_s`` up to ``burst``; a charge goes through only when both
buckets hold its whole cost (:meth:`ClientLimiter.try_charge`), and
otherwise nothing is taken and the refusal says how long until they will,
which the API sends as ``Retry-After``.  A cost learnt only after the work
(a body sent without ``Content-Length``) is taken with
:meth:`ClientLimiter.charge`, which may leave a bucket in debt: the client
then waits until it has paid.

What a request costs, in units of roughly ten microseconds of the event
loop: one, plus one per KiB of body (the decoding and hashing it causes)
and per KiB of answer (the encoding and sending), plus four per
transaction envelope it asks the node to admit (a lookup, a decode and a
signature check), plus one per step of a query (a state read).  Debt is
not capped: a client that made the node work for a second waits about a
second.

A connection is known by its peer's (address, port), which no two open
connections to one listener share.  Both tables are bounded: at most
``max_clients`` entries each, and the least recently seen is forgotten
first (it starts again with a full bucket, which is the generous failure;
a closed connection's entry simply ages out).  Nothing here reads a clock:
``now_ms`` is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

BODY_KIB_BYTES = 1024
# Cost units are roughly ten microseconds of the event loop's time.
REQUEST_COST = 1
ENVELOPE_COST = 4
STEP_COST = 1

# A client as its budgets know it: (address, port), the address already
# reduced to what the per-address caps count (an IPv6 client's /64).
Client = tuple[str, int]


@dataclass(frozen=True)
class BucketConfig:
    rate_per_s: int
    burst: int

    def __post_init__(self) -> None:
        if self.rate_per_s < 1 or self.burst < 1:
            raise ValueError("a token bucket needs a positive rate and burst")


class TokenBucket:
    """Tokens in cost units; may go into debt down to ``-burst``."""

    __slots__ = ("_config", "_tokens", "_updated_ms")

    def __init__(self, config: BucketConfig, now_ms: int) -> None:
        self._config = config
        self._tokens = float(config.burst)
        self._updated_ms = now_ms

    def _refill(self, now_ms: int) -> None:
        elapsed_ms = max(0, now_ms - self._updated_ms)
        self._updated_ms = max(self._updated_ms, now_ms)
        self._tokens = min(
            float(self._config.burst), self._tokens + elapsed_ms * self._config.rate_per_s / 1000
        )

    def wait_ms(self, cost: int, now_ms: int) -> int:
        """0 when the bucket holds ``cost``, else the milliseconds until it will."""
        self._refill(now_ms)
        missing = min(cost, self._config.burst) - self._tokens
        if missing <= 0:
            return 0
        return int(missing * 1000 / self._config.rate_per_s) + 1

    def charge(self, cost: int, now_ms: int) -> None:
        self._refill(now_ms)
        self._tokens -= cost


def body_cost(body_bytes: int) -> int:
    """Reading, hashing and parsing a body: a unit per KiB."""
    return body_bytes // BODY_KIB_BYTES


def envelopes_cost(count: int) -> int:
    """Admitting transaction envelopes (a lookup, a decode, perhaps a signature check)."""
    return count * ENVELOPE_COST


def steps_cost(steps: int) -> int:
    """A query's state reads (contracts/queries.py counts them as steps)."""
    return steps * STEP_COST


def request_cost(body_bytes: int) -> int:
    """A request with a body of ``body_bytes``, before anything it asks to admit."""
    return REQUEST_COST + body_cost(body_bytes)


class _BucketTable:
    """Buckets by key, at most ``max_entries``, least recently used forgotten first."""

    def __init__(self, config: BucketConfig, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a bucket table needs room for one entry")
        self._config = config
        self._max_entries = max_entries
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def get(self, key: object, now_ms: int) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._config, now_ms)
            if len(self._buckets) > self._max_entries:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class ClientLimiter:
    """The per-connection and per-address buckets, and the rule that combines them."""

    def __init__(
        self, per_connection: BucketConfig, per_address: BucketConfig, max_clients: int
    ) -> None:
        self._connections = _BucketTable(per_connection, max_clients)
        self._addresses = _BucketTable(per_address, max_clients)

    def buckets(self, address: str, port: int, now_ms: int) -> tuple[TokenBucket, TokenBucket]:
        """The (connection, address) buckets of a client at ``address``:``port``."""
        return self._connections.get((address, port), now_ms), self._addresses.get(address, now_ms)

    @staticmethod
    def try_charge(buckets: tuple[TokenBucket, ...], cost: int, now_ms: int) -> int:
        """Charge every bucket and return 0, or charge none and return the wait in ms.

        A cost above a bucket's burst is let through once the bucket is
        full (and leaves it in debt): refusing it for ever would be worse.
        """
        wait_ms = max(bucket.wait_ms(cost, now_ms) for bucket in buckets)
        if wait_ms == 0:
            for bucket in buckets:
                bucket.charge(cost, now_ms)
        return wait_ms

    @staticmethod
    def charge(buckets: tuple[TokenBucket, ...], cost: int, now_ms: int) -> None:
        """Charge a cost already incurred, into debt if need be."""
        for bucket in buckets:
            bucket.charge(cost, now_ms)
