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
    the results root the block certifies     (this node diverged:
      for an earlier height (its receipts      it stops, see below)
      and state root, contracts.results) is
      the one we got by re-executing it

An accepted block is executed through contracts/ and stored exactly as a
validator stores it, so the observer serves the same read API.  A rejected
block is never executed, stored or served: the observer records an alert
naming the validator that served it (status, metrics, log) and moves on to
the next validator.  Sources are tried in turn: a validator that errors,
lies or has nothing new hands over to the next, so one stopped or lying
validator cannot stall the observer while another serves the chain.  After
a restart the observer resumes from its own store.

A block that passes every check but the last was certified by a quorum, so
the fault is the observer's own: its execution diverged.  It stops
following (it executes nothing more, and keeps serving reads), fetches the
certified results from a source and names the first receipt it executed
differently (node/runtime/divergence.py), in its status, metrics and log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import ssl
import time

import aiohttp

from consensus.blocks import (
    BlockHeader,
    ChainTip,
    CommittedBlock,
    certificate_problem,
    derive_header,
)
from consensus.codec import DecodeError, Limits, ShapeError, decode
from consensus.config import ReplicaConfig
from consensus.merkle import merkle_root
from consensus.messages import Batch, Commit
from consensus.proofs import NotACommit
from consensus.quorum import ValidatorSet
from consensus.wire import (
    DEFAULT_WIRE_LIMITS,
    GOVERNED_MAX_VALIDATOR_ID,
    MARGIN_DEN,
    MARGIN_NUM,
    REQUEST_HEADER_BYTES,
    WireLimits,
)
from contracts.validators import MAX_VALIDATORS
from node.runtime import divergence
from node.runtime.chain import Alert, ChainHost, now_ms
from node.runtime.config import NODE_CONSENSUS_DEFAULTS, NodeConfig, NodeLimits, PeerEntry
from node.runtime.ledger import Ledger
from node.runtime.metrics import NodeMetrics
from node.runtime.storage import Store
from node.sdk.chain_page import CertifiedHeader, FullBlock
from node.sdk.errors import ProvenetError
from node.sdk.transport import (
    MSGPACK,
    STREAM_PATH,
    NodeFailed,
    RetryPolicy,
    StreamRefused,
    Transport,
)

log = logging.getLogger("provenet.follower")

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
    # Any id: on a governed chain ids outgrow the set (never reused), and
    # whether a signer counts is the certificate check's to say.
    max_validator_id=GOVERNED_MAX_VALIDATOR_ID,
)
# Bytes of a block's header, of one COMMIT, and of a page's and a block's
# keys and headers (upper bounds; the header is nine fields).
_HEADER_BYTES = 512
_COMMIT_BYTES = 256


def page_limits(limits: NodeLimits, validators: int, consensus: dict[str, int]) -> Limits:
    """Decoding bounds of a ``GET /v1/chain`` page or chain-stream message,
    sized to an honest one.

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
      header, n COMMITs and R request headers, plus the tip's header and n
      COMMITs;
    * 7 + (25 + n) + F * (25 + n + R) values: the page map's 7, the tip's
      (a block without payloads), and per block its map's 7, its header's
      18, then n COMMITs and R payloads;
    * 5 + 4F containers (the page, its list, the tip's map, header and
      certificate, and per block its map, its header, its certificate and
      its payloads);
    * nested 4 deep (page > blocks > block > payloads > payload).

    With the defaults (F = 64, n = 4, R = 4,096, 8 MiB pages) that is 10 MB,
    264,000 values and 261 containers.  The observer's ``chain_page_bytes``
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
    tip_bytes = _HEADER_BYTES + validators * _COMMIT_BYTES
    return Limits(
        max_size_bytes=(honest_bytes + tip_bytes) * MARGIN_NUM // MARGIN_DEN,
        max_depth=4,
        max_collection_len=max(requests, validators, blocks, len(_HEADER_TYPES)),
        max_str_len=1024,
        max_bytes_len=payload_bytes,
        max_objects=(7 + 25 + validators + blocks * (25 + validators + requests))
        * MARGIN_NUM
        // MARGIN_DEN,
        max_containers=(5 + 4 * blocks) * MARGIN_NUM // MARGIN_DEN,
    )


def tip_limits(validators: int) -> Limits:
    """Decoding bounds of a tips-only chain-stream message: a page with no
    blocks and a tip (a header and n COMMITs)."""
    return Limits(
        max_size_bytes=(_HEADER_BYTES * 2 + validators * _COMMIT_BYTES) * MARGIN_NUM // MARGIN_DEN,
        max_depth=3,
        max_collection_len=max(validators, len(_HEADER_TYPES)),
        max_str_len=1024,
        max_bytes_len=_COMMIT_BYTES,
        max_objects=(7 + 25 + validators) * MARGIN_NUM // MARGIN_DEN,
        max_containers=5,
    )


def _consensus_defaults() -> dict[str, int]:
    """The consensus core's own defaults of the batch bounds."""
    wanted = ("max_batch_bytes",)
    return {
        field.name: field.default
        for field in dataclasses.fields(ReplicaConfig)
        if field.name in wanted and isinstance(field.default, int)
    }


class BlockRejected(ProvenetError):
    """A source's block or tip does not verify; ``kind`` (the code) names the alert."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message, text=message)
        self.kind = kind


class ResultsDiverged(BlockRejected):
    """A block certified by a quorum carries results this node did not compute:
    its own execution diverged at ``executed_height`` (or below)."""

    def __init__(self, executed_height: int, message: str) -> None:
        super().__init__("results_root_mismatch", message)
        self.executed_height = executed_height


# The header's fields and their types (the observer tests build hostile headers from it).
_HEADER_TYPES = BlockHeader.FIELD_TYPES


def _tip(served: object) -> tuple[BlockHeader, tuple[Commit, ...]]:
    """The header and certificate of a source's tip (a block without payloads)."""
    try:
        tip = CertifiedHeader.from_dict(served, COMMIT_LIMITS)
    except NotACommit as exc:
        raise BlockRejected("bad_certificate", str(exc)) from None
    except DecodeError as exc:
        raise BlockRejected("malformed", f"malformed tip: {exc}") from None
    return tip.header, tip.certificate.commits


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
        block = FullBlock.from_dict(served, COMMIT_LIMITS)
    except NotACommit as exc:
        raise BlockRejected("bad_certificate", str(exc)) from None
    except ShapeError as exc:
        raise BlockRejected("malformed", str(exc)) from None
    except DecodeError as exc:
        raise BlockRejected("malformed", f"malformed block: {exc}") from None
    try:
        return _check_block(block, tip, chain_id, validators, root_at)
    except BlockRejected:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise BlockRejected("malformed", f"malformed block: {exc}") from None


def _check_block(
    served: FullBlock,
    tip: ChainTip,
    chain_id: str,
    validators: ValidatorSet,
    root_at: dict[int, bytes] | None,
) -> CommittedBlock:
    header = served.header
    certificate = served.certificate.commits
    if header.chain_id != chain_id:
        raise BlockRejected("wrong_chain", f"block is for chain {header.chain_id!r}")
    if header.height != tip.height + 1:
        raise BlockRejected(
            "wrong_height", f"expected height {tip.height + 1}, got {header.height}"
        )
    requests = served.requests()
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
        header.executed_results_root,
    )
    if derive_header(chain_id, batch, tip.block_hash, tip.time_ms) != header:
        raise BlockRejected("bad_chain_link", "the header does not follow this node's chain")
    problem = certificate_problem(
        header.height, header.batch_digest, certificate, validators, chain_id
    )
    if problem is not None:
        raise BlockRejected("bad_certificate", problem)
    known = None if root_at is None else root_at.get(header.executed_height)
    if header.executed_height > 0 and known is not None and known != header.executed_results_root:
        raise ResultsDiverged(
            header.executed_height,
            f"block {header.height} certifies results at height {header.executed_height} "
            "this node did not compute",
        )
    return CommittedBlock(header, requests, certificate)


class _StoredRoots(dict[int, bytes]):
    """Results roots by height, read from the store on demand."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store

    def get(self, height: int, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        root = self._store.results_root_at(height)
        return default if root is None else root


# Retries counted after a source lied about its tip: enough for the longest pause.
_LIAR_RETRIES = 64


class _Outcome(enum.Enum):
    """How one turn with a source ended."""

    APPLIED = "applied"  # blocks were applied (polling: stay with this source)
    LEFT = "left"  # a stream ended after doing what it could: go on to the next at once
    NOTHING = "nothing"  # nothing new, or the source failed: next source after a pause


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
        self._stop_requested = asyncio.Event()
        # The highest height a verified commit certificate has shown us, from
        # any source (a block we applied, or a source's tip), and who showed it.
        self._certified_height = tip.height
        self._certified_by = ""
        self._mode = ""
        self._rejections_in_a_row = 0
        self._stopped = False
        # A governed set may grow to MAX_VALIDATORS: size pages for that.
        governed = getattr(ledger, "history", None) is not None
        largest = max(validators.n, MAX_VALIDATORS) if governed else validators.n
        self._page_limits = page_limits(config.limits, largest, config.consensus)
        self._tip_limits = tip_limits(largest)
        self._stall_s = config.limits.follow_stall_timeout_ms / 1000
        self._request_s = config.limits.follow_request_timeout_ms / 1000
        # How soon to listen again to a source's tips after its stream ended.
        self._tips_retry = RetryPolicy(
            first_pause_s=self.limits.peer_backoff_min_ms / 1000,
            max_pause_s=self.limits.peer_backoff_max_ms / 1000,
        )

    def validators_at(self, height: int) -> ValidatorSet:
        """The set that certifies block ``height``: on a governed chain the one
        this observer's own execution of the chain puts in force there
        (consensus.epochs), else the genesis set."""
        history = self.ledger.history
        return self.validators if history is None else history.set_at(height)

    def _maybe_a_later_set(self, header: BlockHeader, certificate: tuple[Commit, ...]) -> bool:
        """Could a set not yet known here have signed this certificate, which
        the known set refuses?  Only above the heights the executed chain
        settles, and only if it names an unknown validator or every commit
        is authentic and merely too few for the set known: a forged or
        mismatched commit is a lie whatever the set."""
        history = self.ledger.history
        if history is None:
            return False
        if header.height <= history.settled_through(self.ledger.epoch_rules.window_size):
            return False
        members = history.members()
        if any(commit.sender not in members for commit in certificate):
            return True
        signers = sorted({commit.sender for commit in certificate})
        if not signers:
            return False
        those = ValidatorSet(tuple(members[i] for i in signers), tuple(signers))
        problem = certificate_problem(
            header.height, header.batch_digest, certificate, those, self.config.chain_id
        )
        return problem is None

    @property
    def source(self) -> str:
        return self.sources[self._index].name if self.sources else ""

    def stop(self) -> None:
        self._stopped = True
        self._stop_requested.set()

    @property
    def certified_height(self) -> int:
        """The highest height this observer has seen certified by a quorum of the
        validators: a height one lying validator claims is never believed."""
        return max(self._certified_height, self.tip.height)

    @property
    def source_height(self) -> int:
        return self.certified_height

    def following(self) -> dict[str, object]:
        certified = self.certified_height
        return {
            "source": self.source,
            "mode": self._mode,
            "source_height": certified,
            "certified_height": certified,
            "certified_by": self._certified_by,
            "lag_blocks": certified - self.tip.height,
        }

    async def run(self) -> None:
        if not self.sources:
            raise ValueError("an observer needs validators to follow (config peers)")
        try:
            transport = self._transport()
            try:
                watchers = [
                    asyncio.create_task(
                        self._watch_tips(transport, source), name=f"tips {source.name}"
                    )
                    for source in self.sources
                ]
                try:
                    await self._follow_sources(transport)
                finally:
                    for watcher in watchers:
                        watcher.cancel()
                    await asyncio.gather(*watchers, return_exceptions=True)
            finally:
                await transport.close()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("follower stopped")
                self.fatal = exc
            raise

    def _transport(self) -> Transport:
        """The SDK's transport to the sources, one node at a time (the source
        rotation is this class's own).  Connecting and every read are bounded
        by the stall timeout, so a hung source costs that long; a polled page
        by the request timeout as a whole; streams bound their own reads
        (_follow_stream).  Without a CA the sources' answers are not verified
        by TLS: every block proves itself by its certificate."""
        return Transport(
            [source.api_url for source in self.sources],
            self._client_ssl if self._client_ssl is not None else False,
            timeout_s=self._request_s,
            connect_timeout_s=self._stall_s,
            read_timeout_s=self._stall_s,
            retry=RetryPolicy(rounds=1),
        )

    async def _follow_sources(self, transport: Transport) -> None:
        while not self._stopped and self.divergence is None:
            source = self.sources[self._index]
            outcome = await self._follow(transport, source)
            if self.divergence is not None:
                break
            if outcome is not _Outcome.APPLIED:
                self._next_source(source)
            if outcome is _Outcome.NOTHING:
                await asyncio.sleep(self._pause_s())
        if self.divergence is not None and not self._stopped:
            await self._name_divergence(transport, self.divergence.detected_height)
            # Stopped for good: the node serves reads until it is told to stop.
            await self._stop_requested.wait()

    async def _name_divergence(self, transport: Transport, detected_height: int) -> None:
        """Find the first receipt this observer got wrong, asking the source
        that showed it first (node/runtime/divergence.py)."""
        first = self._index
        ordered = [*self.sources[first:], *self.sources[:first]]
        found = await divergence.diagnose(
            self.store,
            transport,
            [divergence.Source(s.name, s.api_url) for s in ordered],
            self.validators_at(detected_height),
            self.config.chain_id,
            detected_height,
            self.limits,
        )
        self.halt(found)

    async def _follow(self, transport: Transport, source: PeerEntry) -> _Outcome:
        """One turn with ``source``: its block stream, or one polled page when it has none."""
        try:
            return await self._follow_stream(transport, source)
        except StreamRefused:
            return await self._follow_once(transport, source)
        except (NodeFailed, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("source %s: %s", source.name, exc)
            self._switched(source, "failed")
            return _Outcome.NOTHING

    # ------------------------------------------------------------ streaming

    async def _follow_stream(self, transport: Transport, source: PeerEntry) -> _Outcome:
        """Apply blocks as ``source`` pushes them, until it stalls, errs or lies."""
        path = (
            f"{STREAM_PATH}?from={self.tip.height + 1}"
            f"&limit={self.limits.follow_page_blocks}&blocks=1"
        )
        outcome = _Outcome.NOTHING
        async with transport.websocket(
            source.api_url, path, max_msg_size=self._page_limits.max_size_bytes
        ) as ws:
            self._mode = "stream"
            # A height another source proved exists, and since when: this one
            # must reach it within the stall timeout.  A steady lag of a block or
            # two is normal (validators commit a little apart); a source that
            # cannot reach what was certified a stall timeout ago is too slow.
            owed: tuple[int, float] | None = None
            while not self._stopped:
                try:
                    message = await ws.receive(timeout=self._stall_s)
                except TimeoutError:
                    self._switched(source, "silent")
                    return outcome
                if message.type is not aiohttp.WSMsgType.BINARY:
                    self._switched(source, "closed")
                    return outcome
                try:
                    served = decode(message.data, self._page_limits)
                except DecodeError as exc:
                    log.debug("source %s: %s", source.name, exc)
                    self._switched(source, "failed")
                    return outcome
                applied, rejected = self._apply_page(served, source)
                if rejected:
                    return outcome
                if applied:
                    outcome = _Outcome.LEFT
                owed = self._owed(owed)
                if owed is not None and time.monotonic() - owed[1] > self._stall_s:
                    self._switched(source, "behind")
                    return outcome
        return outcome

    def _owed(self, owed: tuple[int, float] | None) -> tuple[int, float] | None:
        """The height the current source owes us and since when, after a message."""
        if owed is not None and self.tip.height >= owed[0]:
            owed = None
        if owed is None and self.certified_height > self.tip.height:
            owed = (self.certified_height, time.monotonic())
        return owed

    async def _watch_tips(self, transport: Transport, source: PeerEntry) -> None:
        """Learn ``source``'s certified tip as the chain grows, for as long as we run."""
        path = f"{STREAM_PATH}?blocks=0"
        # Retries since the last good message: the pause before the next
        # connection grows with them (self._tips_retry).
        retries = 0
        while not self._stopped:
            try:
                async with transport.websocket(
                    source.api_url, path, max_msg_size=self._tip_limits.max_size_bytes
                ) as ws:
                    while not self._stopped:
                        message = await ws.receive(timeout=self._stall_s)
                        if message.type is not aiohttp.WSMsgType.BINARY:
                            break
                        served = decode(message.data, self._tip_limits)
                        tip = served.get("tip") if isinstance(served, dict) else None
                        if not self._note_tip(tip, source):
                            # A liar waits the longest back-off before it is heard again.
                            retries = _LIAR_RETRIES
                            break
                        retries = 0
            except (NodeFailed, aiohttp.ClientError, OSError, TimeoutError, DecodeError) as exc:
                log.debug("tips of %s: %s", source.name, exc)
            retries = min(retries + 1, _LIAR_RETRIES)
            await asyncio.sleep(self._tips_retry.pause_s(retries))

    # ------------------------------------------------------------ polling

    async def _follow_once(self, transport: Transport, source: PeerEntry) -> _Outcome:
        """Fetch and apply one page from ``source`` (a source with no stream)."""
        self._mode = "poll"
        try:
            page = await self._fetch(transport, source)
        except (NodeFailed, OSError, DecodeError, ValueError) as exc:
            log.debug("source %s: %s", source.name, exc)
            self._switched(source, "failed")
            return _Outcome.NOTHING
        applied, rejected = self._apply_page(page, source)
        return _Outcome.APPLIED if applied and not rejected else _Outcome.NOTHING

    async def _fetch(self, transport: Transport, source: PeerEntry) -> object:
        path = f"/v1/chain?from={self.tip.height + 1}&limit={self.limits.follow_page_blocks}"
        reply = await transport.fetch(
            source.api_url,
            "GET",
            path,
            accept=MSGPACK,
            max_body_bytes=self._page_limits.max_size_bytes,
        )
        if reply.status != 200:
            raise ValueError(f"HTTP {reply.status}")
        return decode(reply.body, self._page_limits)

    # ------------------------------------------------------------ checking

    def _apply_page(self, page: object, source: PeerEntry) -> tuple[int, bool]:
        """Check and apply a page's blocks in order, then note its tip: (applied, rejected).

        Every block passes :func:`check_block` whichever way it came; the first
        that fails is alerted and ends the page, and so does a false tip."""
        blocks = page.get("blocks") if isinstance(page, dict) else None
        if not isinstance(blocks, list):
            return 0, False
        applied = 0
        for served in blocks:
            try:
                block = check_block(
                    served,
                    self.tip,
                    self.config.chain_id,
                    self.validators_at(self.tip.height + 1),
                    self._roots,
                )
            except ResultsDiverged as diverged:
                # A quorum certified these results: the fault is this node's own.
                self.halt(divergence.noticed(diverged.executed_height, diverged.message))
                return applied, True
            except BlockRejected as rejected:
                self._alert(rejected, source, self.tip.height + 1)
                self._rejections_in_a_row += 1
                return applied, True
            self._rejections_in_a_row = 0
            executed = self.execute_and_announce(block)
            self.tip = ChainTip(
                executed.height, executed.block_hash, executed.time_ms, executed.results_root
            )
            applied += 1
        assert isinstance(page, dict)
        if not self._note_tip(page.get("tip"), source):
            return applied, True
        self._update_lag()
        return applied, False

    def _note_tip(self, served: object, source: PeerEntry) -> bool:
        """Believe a source's tip if its certificate verifies; False (and an alert) if not.

        A tip no higher than what we already know is not checked: it could not
        change anything, and checking costs a quorum of signatures."""
        if served is None:
            return True
        try:
            header, certificate = _tip(served)
        except BlockRejected as rejected:
            self._alert(rejected, source, self.tip.height + 1)
            return False
        if header.height <= self.certified_height:
            return True
        problem = None
        if header.chain_id != self.config.chain_id:
            problem = BlockRejected("wrong_chain", f"tip is for chain {header.chain_id!r}")
        else:
            why = certificate_problem(
                header.height,
                header.batch_digest,
                certificate,
                self.validators_at(header.height),
                self.config.chain_id,
            )
            if why is not None and self._maybe_a_later_set(header, certificate):
                # Perhaps signed by a set decided in blocks not executed here
                # yet: not believed, and not a lie either until they are.
                return True
            if why is not None:
                problem = BlockRejected("bad_certificate", f"tip at height {header.height}: {why}")
        if problem is not None:
            self._alert(problem, source, header.height)
            return False
        self._certified_height = header.height
        self._certified_by = source.name
        self._update_lag()
        return True

    def _update_lag(self) -> None:
        self.metrics.observer_lag_blocks.set(self.certified_height - self.tip.height)

    def _pause_s(self) -> float:
        """The poll interval, longer once every source has been rejected in a
        row: then the fault may be this node's own (its execution diverged),
        and hammering the validators helps nobody."""
        pause_ms = self.limits.follow_poll_interval_ms
        if self._rejections_in_a_row >= len(self.sources):
            pause_ms = max(pause_ms, self.limits.peer_backoff_max_ms)
        return pause_ms / 1000

    def _next_source(self, left: PeerEntry) -> None:
        """After ``left``: the source that proved the highest height first (it is
        likely the quickest to have the next block), else the next in turn."""
        names = [source.name for source in self.sources]
        if self._certified_by != left.name and self._certified_by in names:
            self._index = names.index(self._certified_by)
        else:
            self._index = (self._index + 1) % len(self.sources)

    def _switched(self, source: PeerEntry, reason: str) -> None:
        log.debug("leaving source %s: %s", source.name, reason)
        self.metrics.observer_source_switches.labels(source.name, reason).inc()

    def _alert(self, rejected: BlockRejected, source: PeerEntry, height: int) -> None:
        alert = Alert(rejected.kind, source.name, height, rejected.message, now_ms())
        self.alerts.append(alert)
        self.metrics.observer_alerts.labels(rejected.kind, source.name).inc()
        self._switched(source, "rejected")
        log.warning(
            "rejected block %d from validator %s: %s (%s)",
            alert.height,
            source.name,
            rejected.message,
            rejected.kind,
        )
