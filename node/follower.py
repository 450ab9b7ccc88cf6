"""Observer mode: follow the chain without voting, trusting no validator.

Theory of operation
-------------------
An observer (a regulator's node) holds no validator key, never votes and
accepts no transactions.  It fetches committed blocks in height order from
the validators' ``GET /v1/chain`` and accepts a block only if it proves
itself (:func:`check_block`)::

    check                                   rejection kind
    -------------------------------------   ----------------------
    the next height, this chain             wrong_height, wrong_chain
    payloads hash to the header's root      tampered_transaction
    header derives from our tip (prev hash,  bad_chain_link
      block time) and its own batch
    a quorum of the genesis validators       bad_certificate
      committed exactly this header
    the state root the block certifies for   state_root_mismatch
      an earlier height is the one we got
      by re-executing that height ourselves

An accepted block is executed through contracts/ and stored exactly as a
validator stores it, so the observer serves the same read API.  A rejected
block is never executed, stored or served: the observer records an alert
naming the validator that served it (status, metrics, log) and moves on to
the next validator.  Sources are tried in turn: a validator that errors,
lies or has nothing new hands over to the next, so one stopped or lying
validator cannot stall the observer while another serves the chain.  After
a restart the observer resumes from its own store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections import deque
from dataclasses import dataclass

import aiohttp

from consensus.blocks import (
    BlockHeader,
    ChainTip,
    CommittedBlock,
    certificate_problem,
    derive_header,
)
from consensus.codec import DecodeError, Limits, decode
from consensus.config import ReplicaConfig
from consensus.merkle import merkle_root
from consensus.messages import Batch, Commit, Request
from consensus.quorum import ValidatorSet
from consensus.wire import (
    DEFAULT_WIRE_LIMITS,
    MARGIN_DEN,
    MARGIN_NUM,
    REQUEST_HEADER_BYTES,
    WireLimits,
    message_from_wire,
)
from node.chain import ChainHost, now_ms
from node.config import NODE_CONSENSUS_DEFAULTS, NodeConfig, NodeLimits, PeerEntry
from node.ledger import Ledger
from node.metrics import NodeMetrics
from node.storage import Store, header_from_dict

log = logging.getLogger("provenet.follower")

MSGPACK = "application/msgpack"
MAX_ALERTS_KEPT = 100

# A COMMIT in a page's certificate is its wire bytes: one flat map of six
# fields (13 values, about 170 bytes).
COMMIT_LIMITS = WireLimits(
    codec=Limits(
        max_size_bytes=512,
        max_depth=1,
        max_collection_len=8,
        max_str_len=16,
        max_bytes_len=64,
        max_objects=16,
        max_containers=1,
    ),
    max_validators=DEFAULT_WIRE_LIMITS.max_validators,
)
# Bytes of a block's header, of one COMMIT, and of a page's and a block's
# keys and headers (upper bounds; the header is nine fields).
_HEADER_BYTES = 512
_COMMIT_BYTES = 256


def page_limits(limits: NodeLimits, validators: int, consensus: dict[str, int]) -> Limits:
    """Decoding bounds of a ``GET /v1/chain`` page, sized to an honest one.

    The observer asks for F = ``follow_page_blocks`` blocks; a validator
    serves blocks until their payloads would pass ``chain_page_bytes`` (the
    first block always).  A block holds at most R requests of at most P =
    ``max_payload_bytes`` each (and B = ``max_batch_bytes`` in all when it
    has more than one), and a certificate of at most n COMMITs.  R is the
    wire's ``max_requests_per_batch``, the most any block can hold whatever
    the validators configured (a larger PRE-PREPARE could not cross a peer
    link), so an observer needs no copy of the validators' ``max_batch_size``
    and never stalls on a page because they raised it.  So a page is at most

    * max(chain_page_bytes, B, P) bytes of payloads, plus for each block a
      header, n COMMITs and R request headers;
    * 5 + F * (25 + n + R) values: the page map's 5, and per block its map's
      7, its header's 18, then n COMMITs and R payloads;
    * 2 + 4F containers (the page and its list, and per block its map, its
      header, its certificate and its payloads);
    * nested 4 deep (page > blocks > block > payloads > payload).

    With the defaults (F = 64, n = 4, R = 4,096, 8 MiB pages) that is 10 MB,
    264,000 values and 258 containers.  The observer's ``chain_page_bytes``
    must be at least the validators'.
    """
    batch = {**_consensus_defaults(), **NODE_CONSENSUS_DEFAULTS, **consensus}
    requests = DEFAULT_WIRE_LIMITS.max_requests_per_batch
    payload_bytes = DEFAULT_WIRE_LIMITS.max_payload_bytes
    blocks = limits.follow_page_blocks
    block_bytes = _HEADER_BYTES + validators * _COMMIT_BYTES + requests * REQUEST_HEADER_BYTES
    honest_bytes = (
        max(limits.chain_page_bytes, batch["max_batch_bytes"], payload_bytes)
        + blocks * block_bytes
        + _HEADER_BYTES
    )
    return Limits(
        max_size_bytes=honest_bytes * MARGIN_NUM // MARGIN_DEN,
        max_depth=4,
        max_collection_len=max(requests, validators, blocks, len(_HEADER_TYPES)),
        max_str_len=1024,
        max_bytes_len=payload_bytes,
        max_objects=(5 + blocks * (25 + validators + requests)) * MARGIN_NUM // MARGIN_DEN,
        max_containers=(2 + 4 * blocks) * MARGIN_NUM // MARGIN_DEN,
    )


def _consensus_defaults() -> dict[str, int]:
    """The consensus core's own defaults of the batch bounds."""
    wanted = ("max_batch_bytes",)
    return {
        field.name: field.default
        for field in dataclasses.fields(ReplicaConfig)
        if field.name in wanted
    }


class BlockRejected(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Alert:
    kind: str
    validator: str
    height: int
    message: str
    time_ms: int

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "validator": self.validator,
            "height": self.height,
            "message": self.message,
            "time_ms": self.time_ms,
        }


def _header(fields: object) -> BlockHeader:
    if not isinstance(fields, dict) or set(fields) != set(_HEADER_TYPES):
        raise BlockRejected("malformed", "a block without a well-formed header")
    for name, kind in _HEADER_TYPES.items():
        if type(fields[name]) is not kind:
            raise BlockRejected("malformed", f"header field {name} is not {kind.__name__}")
    return header_from_dict(fields)


def _commits(raw: object) -> tuple[Commit, ...]:
    if not isinstance(raw, list):
        raise BlockRejected("malformed", "certificate is not a list")
    commits = []
    for item in raw:
        message = message_from_wire(item, COMMIT_LIMITS) if isinstance(item, bytes) else None
        if not isinstance(message, Commit):
            raise BlockRejected("bad_certificate", "certificate holds something other than commits")
        commits.append(message)
    return tuple(commits)


def check_block(
    served: object,
    tip: ChainTip,
    chain_id: str,
    validators: ValidatorSet,
    root_at: dict[int, bytes] | None,
) -> CommittedBlock:
    """The block ``served`` if it proves itself as the block after ``tip``.

    ``root_at`` maps heights to the state roots this node computed (a Store
    lookup in practice); a certified root for a height it does not know is
    not checked.  Raises :class:`BlockRejected` naming the failed check, and
    nothing else: whatever a lying validator sends is a rejection, never a
    crash.
    """
    try:
        return _check_block(served, tip, chain_id, validators, root_at)
    except BlockRejected:
        raise
    except (DecodeError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise BlockRejected("malformed", f"malformed block: {exc}") from None


_HEADER_TYPES = {
    "chain_id": str,
    "height": int,
    "prev_block_hash": bytes,
    "time_ms": int,
    "proposer_time_ms": int,
    "requests_root": bytes,
    "request_count": int,
    "executed_height": int,
    "executed_state_root": bytes,
}


def _check_block(
    served: object,
    tip: ChainTip,
    chain_id: str,
    validators: ValidatorSet,
    root_at: dict[int, bytes] | None,
) -> CommittedBlock:
    if not isinstance(served, dict):
        raise BlockRejected("malformed", "a block is not a map")
    header = _header(served.get("header"))
    payloads = served.get("payloads")
    if not isinstance(payloads, list) or not all(isinstance(p, bytes) for p in payloads):
        raise BlockRejected("malformed", "payloads are not a list of bytes")
    certificate = _commits(served.get("certificate"))
    if header.chain_id != chain_id:
        raise BlockRejected("wrong_chain", f"block is for chain {header.chain_id!r}")
    if header.height != tip.height + 1:
        raise BlockRejected(
            "wrong_height", f"expected height {tip.height + 1}, got {header.height}"
        )
    requests = tuple(Request.of(payload) for payload in payloads)
    if (
        merkle_root([r.digest for r in requests]) != header.requests_root
        or len(requests) != header.request_count
    ):
        raise BlockRejected(
            "tampered_transaction", "the transactions do not match the header's root"
        )
    batch = Batch(
        header.height,
        requests,
        header.proposer_time_ms,
        header.executed_height,
        header.executed_state_root,
    )
    if derive_header(chain_id, batch, tip.block_hash, tip.time_ms) != header:
        raise BlockRejected("bad_chain_link", "the header does not follow this node's chain")
    problem = certificate_problem(
        header.height, header.batch_digest, certificate, validators, chain_id
    )
    if problem is not None:
        raise BlockRejected("bad_certificate", problem)
    known = None if root_at is None else root_at.get(header.executed_height)
    if header.executed_height > 0 and known is not None and known != header.executed_state_root:
        raise BlockRejected(
            "state_root_mismatch",
            f"the block certifies a state root at height {header.executed_height} this node did not compute",
        )
    return CommittedBlock(header, requests, certificate)


class _StoredRoots(dict[int, bytes]):
    """State roots by height, read from the store on demand."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store

    def get(self, height: int, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        root = self._store.state_root_at(height)
        return default if root is None else root


class Follower(ChainHost):
    """The observer's chain task; see the module docstring."""

    def __init__(
        self,
        config: NodeConfig,
        validators: ValidatorSet,
        store: Store,
        ledger: Ledger,
        metrics: NodeMetrics,
        tip: ChainTip,
        client_ssl: ssl.SSLContext | None,
    ) -> None:
        super().__init__(config, store, ledger, metrics)
        self.validators = validators
        self.tip = tip
        self.sources: tuple[PeerEntry, ...] = config.peers
        self._client_ssl = client_ssl
        self._index = 0
        self._roots = _StoredRoots(store)
        self.alerts: deque[Alert] = deque(maxlen=MAX_ALERTS_KEPT)
        self._claims: dict[str, int] = {}
        self._rejections_in_a_row = 0
        self._stopped = False
        self._page_limits = page_limits(config.limits, validators.n, config.consensus)

    @property
    def source(self) -> str:
        return self.sources[self._index].name if self.sources else ""

    def stop(self) -> None:
        self._stopped = True

    @property
    def source_height(self) -> int:
        """The chain height at least one honest validator claimed: the (f+1)-th
        highest of the latest claims (one lying validator cannot inflate it)."""
        claims = sorted(self._claims.values(), reverse=True)
        f = self.validators.f
        return max(self.tip.height, claims[f]) if len(claims) > f else self.tip.height

    def following(self) -> dict[str, object]:
        return {
            "source": self.source,
            "source_height": self.source_height,
            "lag_blocks": max(0, self.source_height - self.tip.height),
        }

    async def run(self) -> None:
        if not self.sources:
            raise ValueError("an observer needs validators to follow (config peers)")
        timeout = aiohttp.ClientTimeout(total=30, connect=5, sock_read=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while not self._stopped:
                    progressed = await self._follow_once(session)
                    if not progressed:
                        await asyncio.sleep(self._pause_s())
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("follower stopped")
                self.fatal = exc
            raise

    async def _follow_once(self, session: aiohttp.ClientSession) -> bool:
        """Fetch and apply one page from the current source; True if blocks were applied."""
        source = self.sources[self._index]
        try:
            page = await self._fetch(session, source)
        except (aiohttp.ClientError, OSError, TimeoutError, DecodeError, ValueError) as exc:
            log.debug("source %s: %s", source.name, exc)
            self._next_source()
            return False
        blocks = page.get("blocks") if isinstance(page, dict) else None
        height = page.get("height") if isinstance(page, dict) else None
        if type(height) is int:
            self._claims[source.name] = height
        if not isinstance(blocks, list) or not blocks:
            self._next_source()
            return False
        for served in blocks:
            try:
                block = check_block(
                    served, self.tip, self.config.chain_id, self.validators, self._roots
                )
            except BlockRejected as rejected:
                self._alert(rejected, source)
                self._rejections_in_a_row += 1
                self._next_source()
                return False
            self._rejections_in_a_row = 0
            executed = self.execute_and_announce(block)
            self.tip = ChainTip(
                executed.height, executed.block_hash, executed.time_ms, executed.state_root
            )
        return True

    async def _fetch(self, session: aiohttp.ClientSession, source: PeerEntry) -> object:
        url = f"{source.api_url}/v1/chain?from={self.tip.height + 1}&limit={self.limits.follow_page_blocks}"
        context: ssl.SSLContext | bool = self._client_ssl if self._client_ssl is not None else False
        async with session.get(url, headers={"Accept": MSGPACK}, ssl=context) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > self._page_limits.max_size_bytes:
                    raise ValueError("chain page too large")
            return decode(bytes(body), self._page_limits)

    def _pause_s(self) -> float:
        """The poll interval, longer once every source has been rejected in a
        row: then the fault may be this node's own (its execution diverged),
        and hammering the validators helps nobody."""
        pause_ms = self.limits.follow_poll_interval_ms
        if self._rejections_in_a_row >= len(self.sources):
            pause_ms = max(pause_ms, self.limits.peer_backoff_max_ms)
        return pause_ms / 1000

    def _next_source(self) -> None:
        self._index = (self._index + 1) % len(self.sources)

    def _alert(self, rejected: BlockRejected, source: PeerEntry) -> None:
        alert = Alert(rejected.kind, source.name, self.tip.height + 1, rejected.message, now_ms())
        self.alerts.append(alert)
        self.metrics.observer_alerts.labels(rejected.kind, source.name).inc()
        log.warning(
            "rejected block %d from validator %s: %s (%s)",
            alert.height,
            source.name,
            rejected.message,
            rejected.kind,
        )
