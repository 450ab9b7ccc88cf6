"""The asynchronous Provenet client: sign, submit, wait, verify, query, subscribe.

Theory of operation
-------------------
A :class:`ProvenetClient` holds a participant's identity (its Ed25519
transaction key), the network's chain id and validator set (from
genesis.json), and a list of node API URLs.  It trusts no single node:

* **Signing is local.**  :meth:`ProvenetClient.sign` builds and signs a
  transaction offline.  The sender's nonce is counted locally
  (:mod:`node.sdk.nonces`); the first one comes from
  ``GET /v1/nonce/{sender}`` (``pending_next_nonce``, so transactions
  still in a mempool are counted; every node is asked, so one that is
  still catching up cannot hand out a used nonce, and the node this client
  sends to counts too, since only it holds the client's pipelined
  transactions).  A call whose transaction did not consume its nonce
  (refused before ordering, dropped, node unreachable) gives the nonce back
  and the next call takes it, so one failure leaves no gap that would
  stall every later transaction, and nothing is fetched again that could
  collide with transactions still in flight.
* **A sender is never wedged.**  Consensus may execute a sender's
  transactions out of nonce order (after a view change PBFT can commit a
  later batch below an earlier one), and the later ones then execute as
  ``rejected bad_nonce``.  Such a transaction never ran and never can (its
  id is spent), so :meth:`ProvenetClient.submit` signs the same call again
  *at the same nonce* and submits it (at most ``resign_attempts`` times, 5 by default);
  the node releases it at once into the hole it fills
  (:mod:`node.runtime.mempool`).  To get a new transaction id for the same nonce
  and call, the new signature carries an expiry height one below the
  previous one (below ``2**63`` when the call gave none), a height no
  chain reaches, so the call's meaning is unchanged.  A 409
  ``nonce_used`` is never a reason to sign at a *fresh* nonce: it is one
  node's word, with no proof, and a faulty node can pass the transaction
  on and still say it, so the call would execute twice.  The call ends
  with that error (the count is resynchronised before the next one), and
  the caller decides.  Since one call holds one nonce, and signs again
  there only when its earlier signature provably can never execute (a
  verified receipt), no call executes twice.
* **Submitting is idempotent.**  A transaction's id is the hash of its
  signed bytes, and a node answers a resubmission of the same bytes with
  the same status.  So when a node fails mid-request the client sends the
  *same bytes* to the next node and, from then on, waits by polling
  ``GET /v1/txs/{id}?wait=true``; a lost answer can never make a
  transaction execute twice.
* **Results are verified.**  A committed status carries a proof (header,
  commit certificate, Merkle path); the client checks it against the
  validator set (:mod:`node.sdk.proof`) before returning, and raises
  :class:`~node.sdk.errors.ProofError` if it does not hold.  The outcome
  is proven too (:mod:`node.sdk.receipt_proof`): the receipt is a leaf
  under the receipts root of its height, which a later block's certificate
  certifies, and the receipt the node served must be that leaf.  No call
  reports a receipt, ok or rejected, unless it is proven: while no later
  block has carried the height's results the client asks again, for at
  most ``proof_wait_s``, then raises ProofError ``unproven``.  Proofs are
  checked against :meth:`ProvenetClient.validators_at`, the one place that
  says which validator set is in force at a height.
* **Events resume.**  :meth:`ProvenetClient.events` follows
  ``/v1/events`` and, when the socket closes or fails, reconnects (to the
  next node after a failure) from the last height it yielded plus one,
  with bounded back-off; no height is yielded twice.

Example::

    async with ProvenetClient.from_network_dir("net", org_id="miner") as client:
        receipt = await client.submit(
            "diamonds", "extract", {"mine_id": "M1", "parcel_id": "P1", "carats_points": 20_000}
        )
        print(receipt["status"], receipt["height"])
        print(await client.compliance("S1"))
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from consensus.blocks import BlockHeader
from consensus.codec import encode
from consensus.epochs import EpochRules, ValidatorHistory
from consensus.quorum import ValidatorSet
from contracts.tx import MAX_NONCE, Transaction, encode_tx, sign_tx, tx_id
from node.sdk.certified_results import CertifiedResults, verify_results
from node.sdk.compliance_proof import verify_compliance
from node.sdk.errors import (
    ProofError,
    ProvenetError,
    TransactionDropped,
    TransactionRejected,
    TransactionTimeout,
    Unavailable,
)
from node.sdk.genesis import ConfigError, load_genesis
from node.sdk.keys import Identity, load_identity
from node.sdk.network_file import read_network
from node.sdk.nonces import NonceBook
from node.sdk.proof import verify_block, verify_tx_proof
from node.sdk.receipt_proof import check_receipt_proof, is_anchored
from node.sdk.state_proof import ProvenState, verify_state_answer
from node.sdk.tls import client_context
from node.sdk.transport import (
    MAX_CONNECTIONS_PER_NODE,
    MSGPACK,
    NodeFailed,
    RetryPolicy,
    StreamRefused,
    Transport,
    describe_failure,
)
from node.sdk.validator_history import apply_changes

JSON = dict[str, Any]

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WAIT_S = 60.0
# One server-side wait at most; below the node's default max_wait_ms (60 s).
_WAIT_CHUNK_S = 30.0
# How long a call waits on one node for its pending transaction before it
# asks the next node (and hands the transaction to it if that node never saw
# it).  A node cut off from its peers, or stuck in a view of its own, keeps
# answering "pending"; without this a sender waited out the whole outage.
DEFAULT_PENDING_FAILOVER_S = 5.0
_EVENTS_MIN_BACKOFF_S = 0.1
_EVENTS_MAX_BACKOFF_S = 5.0
_EVENTS_HEARTBEAT_S = 20.0
# The largest event frame (one block as JSON) the client accepts: aiohttp's
# default, which is what events() always accepted.
_EVENTS_MAX_FRAME_BYTES = 4 * 1024 * 1024
# Committed refusals from the contract runtime's admission stage: the
# transaction changed nothing, not even its nonce (contracts/runtime.py).
_NONCE_UNUSED_CODES = frozenset(
    {"bad_nonce", "expired", "unknown_key", "key_revoked", "bad_signature", "wrong_chain",
     "too_large"}
)  # fmt: skip
# submit() signs a call again only when its earlier signature can never
# execute: committed as rejected bad_nonce (its id is spent, and the receipt
# is proven), and then at the same nonce.  One node's "dropped" or
# "nonce_used", or a refusal after a
# failover, cannot prove the first will never commit, and a second signature
# with a fresh nonce could then execute the call twice; that error goes to
# the caller (the nonce is given back where it was not used), who decides
# whether to send the call again.
DEFAULT_RESIGN_ATTEMPTS = 5
# How long a call asks again for the certificate of a committed
# transaction's results (a later block carries them within a few blocks;
# when the chain goes idle the primary proposes an empty block to carry
# them; when the primary fails right after the block, the backups depose
# it and the next primary carries them, a view change later) before it
# raises ProofError "unproven".
DEFAULT_PROOF_WAIT_S = 30.0
# The pause before asking again when a node answered at once without the
# certificate (an honest node holds the request until it has it).
_PROOF_RETRY_S = 0.1
# Pages of validator-set changes one refresh follows (each at most the
# node's max_validator_changes_per_page): governance changes the set rarely.
_MAX_HISTORY_PAGES = 1_000
_T = TypeVar("_T")


def _nonce_count(answer: object, name: str) -> int | None:
    """One count in one node's nonce answer, or None for a failure or garbage."""
    count = answer.get(name) if isinstance(answer, dict) else None
    return count if type(count) is int and count >= 0 else None


# What an outcome says about its transaction's nonce (_fate).
_DEAD = "dead"  # committed as rejected bad_nonce: never executes; the nonce may be free
_USED = "used"  # another transaction used the nonce: this one never executes
_UNUSED = "unused"  # not consumed (refused, dropped, unreachable): give it back
_KEPT = "kept"  # consumed, or possibly still pending: leave it alone


def _fate(outcome: JSON | ProvenetError) -> str:
    """Classify a submission's result or error by what it says about the nonce."""
    if isinstance(outcome, dict):
        if outcome.get("status") != "rejected":
            return _KEPT
        code = outcome.get("code")
        return _DEAD if code == "bad_nonce" else _UNUSED if code in _NONCE_UNUSED_CODES else _KEPT
    if isinstance(outcome, TransactionRejected):
        code = outcome.code
        return _DEAD if code == "bad_nonce" else _UNUSED if code in _NONCE_UNUSED_CODES else _KEPT
    if outcome.code == "nonce_used":
        return _USED
    if isinstance(outcome, TransactionTimeout | ProofError) or outcome.code == "nonce_conflict":
        # Still pending somewhere, or held by another pending transaction.
        return _KEPT
    return _UNUSED


def _code(outcome: JSON | ProvenetError) -> str | None:
    """The refusal or error code of a submission's result, if it has one."""
    if isinstance(outcome, ProvenetError):
        return outcome.code
    code = outcome.get("code")
    return code if isinstance(code, str) else None


def _resigned_expiry(expiry_height: int | None, earlier_signatures: int) -> int | None:
    """The expiry height of a call's next signature at a nonce it signed before.

    One below the previous one, so the new transaction has a new id: from
    the call's own expiry, or from 2**63 (a height no chain reaches) when it
    gave none.  The first signature carries the call's expiry unchanged.
    """
    if earlier_signatures == 0:
        return expiry_height
    base = expiry_height if expiry_height is not None else MAX_NONCE + 1
    return base - earlier_signatures


def _height_of(status: JSON) -> int:
    """The height a status names (0 when it names none; its proof then fails)."""
    height = status.get("height")
    return height if type(height) is int else 0


def _hex_id(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _wait_params(wait_s: float) -> dict[str, str]:
    return {"wait": "true", "timeout_ms": str(max(1, int(wait_s * 1000)))}


class ProvenetClient:
    """A participant's connection to a Provenet network (see the module docstring).

    ``nodes`` are API base URLs (``https://127.0.0.1:7100``); ``identity`` is
    needed only to sign; ``validators`` and ``chain_id`` come from genesis.json
    and are what proofs are checked against; ``ssl`` is a client context
    trusting the network CA (None: the system's trust store for https);
    ``resign_attempts`` bounds how often :meth:`submit` signs one call again
    (see "A sender is never wedged" above); ``pending_failover_s`` is how
    long a waiting call lets one node hold its transaction "pending" before
    it asks (and, if need be, hands the transaction to) the next node;
    ``proof_wait_s`` is how long a call asks again for the certificate of a
    committed transaction's results before it raises ProofError
    ``unproven``.

    One client serves any number of concurrent calls; up to
    ``max_connections_per_node`` of them run against one node at once and
    the rest queue without their ``timeout_s`` running (see "Concurrency"
    in :mod:`node.sdk.transport`).  Set it to your concurrency, below the
    node's ``max_connections_per_address`` (64 by default).
    """

    def __init__(
        self,
        nodes: list[str],
        identity: Identity | None,
        chain_id: str,
        validators: ValidatorSet,
        ssl: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_rounds: int = 2,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
        resign_attempts: int = DEFAULT_RESIGN_ATTEMPTS,
        pending_failover_s: float = DEFAULT_PENDING_FAILOVER_S,
        proof_wait_s: float = DEFAULT_PROOF_WAIT_S,
        epoch_rules: EpochRules | None = None,
    ) -> None:
        if not pending_failover_s > 0:
            raise ValueError("pending_failover_s must be positive")
        if not proof_wait_s >= 0:
            raise ValueError("proof_wait_s must not be negative")
        self.proof_wait_s = proof_wait_s
        self.identity = identity
        self.chain_id = chain_id
        self.validators = validators
        self.transport = Transport(
            nodes,
            ssl,
            timeout_s,
            retry_rounds=retry_rounds,
            max_connections_per_node=max_connections_per_node,
        )
        # Signatures submit() adds to one call whose earlier one can never execute.
        self.resign_attempts = max(0, resign_attempts)
        self.pending_failover_s = pending_failover_s
        self._nonces: dict[bytes, NonceBook] = {}
        self._nonce_lock = asyncio.Lock()
        # Checks, off the calls' path, of whether to leave the preferred node
        # (_wait_committed); at most max_connections_per_node at once.
        self._probes: set[asyncio.Task[None]] = set()
        # The highest height prove_state has seen proven: no later answer
        # may be older (node.sdk.state_proof, part "stale").
        self.proven_height = 0
        # On a governed chain (genesis epoch_rules), the validator sets
        # followed from genesis (node.sdk.validator_history): refreshed when
        # a proof needs a height beyond them or a certificate fails.
        self.epoch_rules = epoch_rules
        self._history = None if epoch_rules is None else ValidatorHistory.genesis(validators)
        self._last_change_height = 0
        self._followed_through = 0
        self._wanted_height = 0
        self._lenient = False
        self._history_lock = asyncio.Lock()

    # ---------------------------------------------------------------- building

    @classmethod
    def from_network_dir(
        cls,
        net_dir: Path | str,
        org_id: str | None = None,
        node: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
    ) -> ProvenetClient:
        """A client for a network directory written by ``provenet net init``.

        ``org_id`` picks the participant key ``orgs/<org_id>.key``; ``node``
        (a node name such as ``v2``, or an API URL) is tried first.  Validators
        come before observers, which refuse writes.

        >>> client = ProvenetClient.from_network_dir("net", org_id="cutter", node="v1")
        """
        network = read_network(net_dir)
        genesis = load_genesis(network.genesis_file)
        if network.chain_id != genesis.chain_id:
            raise ConfigError(f"{net_dir}: network.json and genesis.json name different chains")
        identity = None if org_id is None else load_identity(network.org_key(org_id))
        context = network.ssl_context()
        urls = network.api_urls(node)
        return cls(
            urls,
            identity,
            genesis.chain_id,
            genesis.validator_set(),
            context,
            timeout_s,
            max_connections_per_node=max_connections_per_node,
            epoch_rules=genesis.epoch_rules,
        )

    @classmethod
    def from_url(
        cls,
        url: str | list[str],
        identity: Identity | Path | str | None = None,
        genesis_file: Path | str = "genesis.json",
        ca_file: Path | str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
    ) -> ProvenetClient:
        """A client for one node URL (or several), a genesis file and optionally a CA.

        ``identity`` is an :class:`Identity` or the path of its key file.

        >>> client = ProvenetClient.from_url(
        ...     "https://10.0.0.5:7100", "miner.key", genesis_file="genesis.json", ca_file="ca.pem"
        ... )
        """
        genesis = load_genesis(Path(genesis_file))
        if isinstance(identity, str | Path):
            identity = load_identity(Path(identity))
        context = None if ca_file is None else _ca_context(Path(ca_file))
        urls = [url] if isinstance(url, str) else list(url)
        return cls(
            urls,
            identity,
            genesis.chain_id,
            genesis.validator_set(),
            context,
            timeout_s,
            max_connections_per_node=max_connections_per_node,
            epoch_rules=genesis.epoch_rules,
        )

    async def __aenter__(self) -> ProvenetClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (the client can be used again afterwards)."""
        for probe in list(self._probes):
            probe.cancel()
        await asyncio.gather(*self._probes, return_exceptions=True)
        await self.transport.close()

    # ---------------------------------------------------------------- signing

    def _require_identity(self) -> Identity:
        if self.identity is None:
            raise ProvenetError("no_identity", "this client has no key to sign with")
        return self.identity

    async def next_nonce(self) -> int:
        """Reserve the next nonce of this client's key (fetched once, then counted)."""
        sender = self._require_identity().public_key
        async with self._nonce_lock:
            book = await self._synced_book(sender)
            return book.take()

    async def _synced_book(self, sender: bytes) -> NonceBook:
        """The sender's nonce book, asking the network first when it must (hold the lock)."""
        book = self._nonces.setdefault(sender, NonceBook())
        if book.needs_network:
            committed, robust_pending, pending = await self._network_nonce(sender)
            if book.gap:
                book.rebase(committed, robust_pending)
            else:
                book.resync(committed, pending)
        return book

    async def _network_nonce(self, sender: bytes) -> tuple[int, int, int]:
        """The sender's next nonce on chain, past its pending transactions, and
        past them counting the preferred node's mempool, as the nodes report
        them, robust to a few wrong ones.

        A node that is still catching up after a restart reports an old
        count, and a faulty one may report anything.  Every node is asked;
        with answers from a quorum, the (f+1)-th highest is taken (at most f
        nodes are faulty, so it is no higher than some honest node's count,
        and lagging nodes cannot pull it down); with fewer, the highest.
        The pending count is at least what the preferred node (the one this
        client sends to) reports: a client's pipelined transactions wait in
        that node's mempool only, and the others cannot count them.
        """
        path = f"/v1/nonce/{sender.hex()}"
        nodes = self.transport.nodes
        answers = await asyncio.gather(
            *(self.transport.request(url, "GET", path) for url in nodes),
            return_exceptions=True,
        )
        committed = self._robust([_nonce_count(a, "next_nonce") for a in answers])
        pending = self._robust([_nonce_count(a, "pending_next_nonce") for a in answers])
        if committed is None or pending is None:
            errors = [(url, str(a)) for url, a in zip(nodes, answers, strict=True)]
            raise Unavailable(errors)
        preferred = _nonce_count(answers[self.transport.preferred], "pending_next_nonce")
        return committed, pending, max(pending, preferred if preferred is not None else 0)

    def _robust(self, counts: list[int | None]) -> int | None:
        """The (f+1)-th highest of a quorum of answers, else the highest; None for none."""
        known = sorted((count for count in counts if count is not None), reverse=True)
        if not known:
            return None
        return known[self.validators.f] if len(known) >= self.validators.quorum else known[0]

    def forget_nonce(self, sender: bytes | None = None) -> None:
        """Drop the local nonce count so the next signature asks the nodes again."""
        if sender is None and self.identity is not None:
            sender = self.identity.public_key
        if sender is not None:
            self._nonces.pop(sender, None)

    async def sign(
        self,
        contract: str,
        method: str,
        args: dict[str, object],
        nonce: int | None = None,
        expiry_height: int | None = None,
    ) -> Transaction:
        """Build and sign a transaction with this client's key (no I/O given a nonce).

        >>> tx = await client.sign("food", "harvest", {"lot_id": "W1", "product": "wheat",
        ...                                             "mass_grams": 1_000_000})
        """
        identity = self._require_identity()
        reserved = nonce is None
        if nonce is None:
            nonce = await self.next_nonce()
        try:
            return sign_tx(
                identity.signer,
                chain_id=self.chain_id,
                nonce=nonce,
                contract=contract,
                method=method,
                args=args,
                expiry_height=expiry_height,
            )
        except BaseException:
            if reserved:
                self._give_back(identity.public_key, nonce)
            raise

    def _give_back(self, sender: bytes, nonce: int) -> None:
        """Return a nonce no transaction consumed (never signed, refused, dropped):
        the next transaction takes it, so no gap stalls the sender."""
        book = self._nonces.get(sender)
        if book is not None:
            book.give_back(nonce)

    def _count_is_behind(self, sender: bytes) -> None:
        """A nonce proved used by another transaction: ask the network before the next."""
        book = self._nonces.get(sender)
        if book is not None:
            book.stale = True

    # ---------------------------------------------------------------- submitting

    async def submit(
        self,
        contract: str,
        method: str,
        args: dict[str, object],
        wait: bool = True,
        timeout_s: float = DEFAULT_WAIT_S,
        expiry_height: int | None = None,
        raise_on_reject: bool = True,
    ) -> JSON:
        """Sign, submit and (by default) wait for the commit; return the verified receipt.

        The answer is the receipt (``tx_id``, ``status`` "ok" or "rejected",
        ``code``, ``message``, ``events``, ``writes``) plus ``height``,
        ``index`` and ``block_hash`` of the block whose certificate was
        checked.  With ``wait=False`` it is the node's TxStatus (usually
        ``{"status": "pending", ...}``).  A contract refusal raises
        :class:`TransactionRejected` unless ``raise_on_reject=False``.

        >>> receipt = await client.submit("diamonds", "sell",
        ...     {"asset_id": "S1", "buyer_ref": "c1", "price_cents": 100_000})
        >>> receipt["height"]
        17
        """
        # Retries resend the same bytes (same id); a new signature is made only
        # when the earlier one can never execute (see the note above ProvenetClient).
        sender = self._require_identity().public_key
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        nonce = await self.next_nonce()
        signatures = 0
        for attempt in range(self.resign_attempts + 1):
            try:
                tx = await self.sign(
                    contract, method, args, nonce=nonce,
                    expiry_height=_resigned_expiry(expiry_height, signatures),
                )  # fmt: skip
            except BaseException:
                self._give_back(sender, nonce)
                raise
            signatures += 1
            failure: ProvenetError | None = None
            try:
                result = await self._submit_signed(
                    tx, wait, max(0.0, deadline - loop.time()), raise_on_reject
                )
                fate = _fate(result)
            except ProvenetError as error:
                failure, fate = error, _fate(error)
            again = attempt < self.resign_attempts and loop.time() < deadline
            if fate == _DEAD and again:
                continue  # the same nonce, a new id: it fills the hole it left
            self._settle(tx, fate, _code(failure if failure is not None else result))
            if failure is not None:
                raise failure
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def submit_tx(
        self,
        tx: Transaction,
        wait: bool = True,
        timeout_s: float = DEFAULT_WAIT_S,
        raise_on_reject: bool = True,
    ) -> JSON:
        """Submit an already signed transaction; see :meth:`submit` for the answer.

        It is never signed again (the caller holds the key's intent); a nonce
        it did not consume is given back for the next :meth:`sign`.
        """
        try:
            result = await self._submit_signed(tx, wait, timeout_s, raise_on_reject)
        except ProvenetError as error:
            self._settle(tx, _fate(error), error.code)
            raise
        self._settle(tx, _fate(result), _code(result))
        return result

    async def _submit_signed(
        self, tx: Transaction, wait: bool, timeout_s: float, raise_on_reject: bool
    ) -> JSON:
        envelope = encode_tx(tx)
        identifier = tx_id(tx)
        deadline = asyncio.get_running_loop().time() + timeout_s
        status = await self._post_envelope(envelope, identifier, timeout_s if wait else None)
        if wait:
            status = await self._wait_committed(envelope, identifier, status, deadline)
        status = await self._anchored(identifier, status)
        return await self._checked(lambda: self._result(identifier, status, raise_on_reject))

    def _settle(self, tx: Transaction, fate: str, code: str | None = None) -> None:
        """Book what a transaction's outcome (``code``: its error or refusal
        code) says about its nonce."""
        book = self._nonces.get(tx.sender)
        if fate == _USED:
            self._count_is_behind(tx.sender)
        if fate in (_DEAD, _UNUSED):
            self._give_back(tx.sender, tx.nonce)
        elif book is not None:
            book.settle(tx.nonce)
        if code == "nonce_gap" and book is not None:
            # A nonce below this one never arrived: recount before the next.
            book.gap = True

    async def wait_tx(
        self, tx: Transaction, timeout_s: float = DEFAULT_WAIT_S, raise_on_reject: bool = True
    ) -> JSON:
        """Wait for a transaction already submitted (e.g. by :meth:`submit_many`)."""
        envelope = encode_tx(tx)
        identifier = tx_id(tx)
        deadline = asyncio.get_running_loop().time() + timeout_s
        status = await self._status_or_resend(envelope, identifier, 0.0)
        status = await self._wait_committed(envelope, identifier, status, deadline)
        status = await self._anchored(identifier, status)
        return await self._checked(lambda: self._result(identifier, status, raise_on_reject))

    async def submit_many(self, txs: list[Transaction]) -> list[JSON]:
        """Submit signed transactions in one request without waiting.

        Returns one ``{"tx_id", "status", "error"}`` per transaction, in order;
        wait for each with :meth:`wait_tx` or :meth:`tx_status`.
        """
        body = encode([encode_tx(tx) for tx in txs])
        answer = await self.transport.call("POST", "/v1/txs/batch", body=body, content_type=MSGPACK)
        results = list(_need_dict(answer, "batch answer").get("results", []))
        for tx, result in zip(txs, results, strict=False):
            error = result.get("error") if isinstance(result, dict) else None
            if error:
                code = error.get("code") if isinstance(error, dict) else error
                self._settle(tx, _fate(ProvenetError(str(code), "")), str(code))
        return results

    @property
    def _wait_chunk_s(self) -> float:
        """The longest one node is asked to hold a request for a pending transaction."""
        return min(_WAIT_CHUNK_S, self.pending_failover_s)

    async def _post_envelope(
        self, envelope: bytes, identifier: bytes, wait_s: float | None, start: int | None = None
    ) -> JSON:
        """POST the signed bytes with failover (from node ``start``, by default
        the preferred one); only the first node is asked to wait."""
        attempts = 0

        async def send(url: str) -> JSON:
            nonlocal attempts
            first = attempts == 0
            attempts += 1
            wait = wait_s is not None and first
            return await self._post_to(url, envelope, identifier, wait_s if wait else None, first)

        return await self.transport.failover(send, start=start)

    async def _post_to(
        self, url: str, envelope: bytes, identifier: bytes, wait_s: float | None, first: bool
    ) -> JSON:
        wait_chunk_s = min(wait_s, self._wait_chunk_s) if wait_s is not None else 0.0
        params = _wait_params(wait_chunk_s) if wait_s is not None else None
        try:
            answer = await self.transport.request(
                url, "POST", "/v1/txs", params=params, body=envelope,
                content_type=MSGPACK, wait_s=wait_chunk_s,
            )  # fmt: skip
        except ProvenetError as error:
            # A retry may reach a node that already executed the first attempt.
            if first or error.code != "nonce_used":
                raise
            answer = await self._known_status(url, identifier, error)
        return _need_dict(answer, "transaction status")

    async def _known_status(self, url: str, identifier: bytes, refusal: ProvenetError) -> Any:
        """The node's status of a transaction it refused as a replay, or the refusal."""
        try:
            return await self.transport.request(url, "GET", f"/v1/txs/{identifier.hex()}")
        except ProvenetError:
            raise refusal from None

    async def _wait_committed(
        self, envelope: bytes, identifier: bytes, status: JSON, deadline: float
    ) -> JSON:
        """Poll until the transaction leaves "pending" or the loop clock passes ``deadline``.

        Each wait of at most ``pending_failover_s`` asks the next node in
        turn, so one node that cannot commit (cut off from its peers, or in
        a view of its own) holds the call for one such wait, not the whole
        outage: the next node either knows the transaction or is handed it.
        """
        loop = asyncio.get_running_loop()
        first = node = self.transport.preferred
        while status.get("status") == "pending":
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                raise TransactionTimeout(identifier)
            node = (node + 1) % len(self.transport.nodes)
            status = await self._status_or_resend(
                envelope, identifier, min(remaining_s, self._wait_chunk_s), start=node
            )
        if node != first and len(self._probes) < self.transport.max_connections_per_node:
            # Whether to leave the preferred node is checked off the call's
            # path: asking a stopped node would hold this answer for a timeout.
            probe = asyncio.create_task(self._leave_if_stuck(first, node, identifier))
            self._probes.add(probe)
            probe.add_done_callback(self._probes.discard)
        return status

    async def _leave_if_stuck(self, first: int, node: int, identifier: bytes) -> None:
        """Prefer ``node`` over ``first`` if ``first`` has still not seen the commit.

        Then the preferred node is cut off or stuck, and later calls go to
        the node that committed rather than wait on it again.  A preferred
        node that was merely slow has seen the commit by now and stays
        preferred, so a backlog does not scatter a sender's transactions
        across mempools.  (Should the node asked last have failed and its
        successor answered, the next call's failover corrects this.)
        """
        path = f"/v1/txs/{identifier.hex()}"
        try:
            answer = await self.transport.request(self.transport.nodes[first], "GET", path)
            committed = isinstance(answer, dict) and answer.get("status") == "committed"
        except (ProvenetError, NodeFailed):
            committed = False
        if not committed and self.transport.preferred == first:
            self.transport.preferred = node

    async def _status_or_resend(
        self, envelope: bytes, identifier: bytes, wait_s: float, start: int | None = None
    ) -> JSON:
        """The status from the first node that answers (from ``start``); a node
        that never saw the transaction is handed it and asked to wait."""
        path = f"/v1/txs/{identifier.hex()}"
        params = _wait_params(wait_s) if wait_s > 0 else None
        try:
            answer = await self.transport.call(
                "GET", path, start=start, params=params, wait_s=wait_s
            )
        except ProvenetError as error:
            if error.code != "not_found":
                raise
            # That node never saw it (or the one that had it failed before
            # passing it on): hand it over, and let it hold the wait.
            return await self._post_envelope(
                envelope, identifier, wait_s if wait_s > 0 else None, start=start
            )
        return _need_dict(answer, "transaction status")

    async def _anchored(self, identifier: bytes, status: JSON) -> JSON:
        """A committed status whose receipt proof has its anchor: while the
        answer lacks it (no later block has carried the height's results
        yet), ask again with ``wait``, for ``proof_wait_s`` in all.  The
        answer is verified afterwards, whichever node gave it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.proof_wait_s
        path = f"/v1/txs/{identifier.hex()}"
        while status.get("status") == "committed" and not is_anchored(status):
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                break
            wait_s = min(remaining_s, self._wait_chunk_s)
            asked = loop.time()
            answer = await self.transport.call(
                "GET", path, params=_wait_params(wait_s), wait_s=wait_s
            )
            status = _need_dict(answer, "transaction status")
            if not is_anchored(status) and loop.time() - asked < wait_s:
                # Answered at once without it: do not hammer the node.
                await asyncio.sleep(min(_PROOF_RETRY_S, max(0.0, deadline - loop.time())))
        return status

    def validators_at(self, height: int) -> ValidatorSet:
        """The validator set in force at ``height``, which every certificate of
        a block at that height is checked against: the genesis set, or on a
        governed chain the set the followed history puts there.  A height
        beyond what the client has followed raises ProofError
        ``validator_history_behind``, which :meth:`_checked` answers by
        following the history further and checking again."""
        if self._history is None:
            return self.validators
        if height > self._followed_through and not self._lenient:
            self._wanted_height = max(self._wanted_height, height)
            raise ProofError(
                "validator_history_behind",
                f"height {height} is beyond the validator sets followed "
                f"(through {self._followed_through}): refresh_validators() first",
            )
        return self._history.set_at(height)

    def _block_signers(self, block: object) -> ValidatorSet:
        """The set in force at a block answer's height (verify_block then
        checks that height against the header's: a wrong one fails there)."""
        height = block.get("height") if isinstance(block, dict) else None
        return self.validators_at(height if type(height) is int else 0)

    @property
    def validator_history(self) -> ValidatorHistory | None:
        """The validator sets followed so far (None: a fixed set)."""
        return self._history

    async def refresh_validators(self) -> ValidatorHistory | None:
        """Follow the validator-set changes since the last one known
        (``GET /v1/validators/history``), each checked under the sets already
        trusted (node.sdk.validator_history); ProofError if a node lies."""
        if self._history is None or self.epoch_rules is None:
            return self._history
        async with self._history_lock:
            for _ in range(_MAX_HISTORY_PAGES):
                params = {"after": str(self._last_change_height)}
                answer = await self.transport.call("GET", "/v1/validators/history", params=params)
                followed = apply_changes(
                    self._history,
                    self._last_change_height,
                    answer,
                    self.epoch_rules,
                    self.chain_id,
                )
                self._history = followed.history
                self._last_change_height = followed.last_change_height
                if not followed.more:
                    break
            self._followed_through = max(self._followed_through, self._wanted_height)
        return self._history

    async def _checked(self, check: Callable[[], _T]) -> _T:
        """``check()`` (a proof check reading :meth:`validators_at`), run again
        once the validator history is followed further when it needed a later
        height or a certificate failed (a signer this client does not know
        yet: a set added since).  The second run's failure stands."""
        if self._history is None:
            return check()
        try:
            return check()
        except ProofError as error:
            if error.part not in ("certificate", "validator_history_behind"):
                raise
        await self.refresh_validators()
        # No await from here to the end of check(): concurrent calls see the
        # flag only within this one synchronous check.
        self._lenient = True
        try:
            return check()
        finally:
            self._lenient = False

    def _result(self, identifier: bytes, status: JSON, raise_on_reject: bool) -> JSON:
        state = status.get("status")
        if state == "dropped":
            raise TransactionDropped(status)
        if state != "committed":
            return status
        receipt = self._verified_receipt(identifier, status)
        if receipt.get("status") == "rejected" and raise_on_reject:
            raise TransactionRejected(receipt, receipt)
        return receipt

    def _verified_receipt(self, identifier: bytes, status: JSON) -> JSON:
        """The receipt of a committed status whose proofs hold (inclusion under
        its block's certificate, receipt under the certificate of its
        results), with its block's place and the block that certified it."""
        if status.get("tx_id") != identifier.hex():
            raise ProofError("malformed", "the status is for another transaction")
        header = verify_tx_proof(
            identifier, status.get("proof"), self.validators_at(_height_of(status)), self.chain_id
        )
        proof = _need_dict(status["proof"], "proof")
        # Exact types: a JSON true or 1.0 equals 1 in Python but is no height.
        height, index = status.get("height"), status.get("index")
        if (type(height), type(index)) != (int, int) or (height, index) != (
            header.height,
            proof["index"],
        ):
            raise ProofError("header", "the status names another place than its proof")
        receipt = status.get("receipt")
        if (
            not isinstance(receipt, dict)
            or receipt.get("tx_id", identifier.hex()) != identifier.hex()
        ):
            raise ProofError("malformed", "a committed status needs this transaction's receipt")
        proven = check_receipt_proof(identifier, status, header, self.validators_at, self.chain_id)
        return {
            **receipt,
            "status": proven.status,
            "code": proven.code,
            "height": header.height,
            "index": proof["index"],
            "block_hash": header.hash.hex(),
            "certified_by": proven.certified_by,
        }

    # ---------------------------------------------------------------- reading

    async def tx_status(
        self,
        identifier: bytes | str,
        wait: bool = False,
        timeout_s: float = _WAIT_CHUNK_S,
        verify: bool = True,
    ) -> JSON:
        """The node's TxStatus for a transaction id; a committed one's proof is checked.

        >>> status = await client.tx_status(receipt["tx_id"])
        """
        params = _wait_params(timeout_s) if wait else None
        answer = await self.transport.call(
            "GET", f"/v1/txs/{_hex_id(identifier)}", params=params,
            wait_s=timeout_s if wait else 0.0,
        )  # fmt: skip
        status = _need_dict(answer, "transaction status")
        if verify and status.get("status") == "committed":
            tx = bytes.fromhex(_hex_id(identifier))
            status = await self._anchored(tx, status)
            checked = status
            await self._checked(lambda: self._verified_receipt(tx, checked))
        return status

    async def block(self, height: int | str = "latest", verify: bool = True) -> JSON:
        """One block (header, certificate, transaction results); its certificate is checked."""
        answer = _need_dict(await self.transport.call("GET", f"/v1/blocks/{height}"), "block")
        if verify:
            await self._checked(
                lambda: verify_block(answer, self._block_signers(answer), self.chain_id)
            )
        return answer

    async def blocks(self, from_height: int, limit: int = 100, verify: bool = True) -> list[JSON]:
        """Consecutive blocks from ``from_height`` (the node may return fewer)."""
        params = {"from": str(from_height), "limit": str(limit)}
        answer = await self.transport.call("GET", "/v1/blocks", params=params)
        blocks = list(_need_dict(answer, "blocks").get("blocks", []))
        for block in blocks if verify else ():
            await self._checked(partial(self._verify_block, block))
        return blocks

    def _verify_block(self, block: object) -> BlockHeader:
        return verify_block(block, self._block_signers(block), self.chain_id)

    async def results(
        self, height: int, wait: bool = False, timeout_s: float = _WAIT_CHUNK_S
    ) -> CertifiedResults:
        """A height's results and every receipt's outcome, verified against the
        validator set (node/sdk/certified_results.py); ProofError names what failed.

        >>> certified = await client.results(7)
        >>> [(r.tx_id.hex(), r.status, r.code) for r in certified.receipts]
        """
        params = _wait_params(timeout_s) if wait else None
        answer = await self.transport.call(
            "GET", f"/v1/results/{int(height)}", params=params,
            wait_s=timeout_s if wait else 0.0,
        )  # fmt: skip
        return await self._checked(
            lambda: verify_results(answer, int(height), self.validators_at, self.chain_id)
        )

    async def query(self, contract: str, name: str, args: dict[str, object]) -> Any:
        """A read-only contract query; returns its result.

        >>> await client.query("food", "lot", {"lot_id": "W1"})
        """
        body = {"contract": contract, "name": name, "args": args}
        answer = await self.transport.call("POST", "/v1/query", json_body=body)
        return _unwrap(answer)

    async def trace(self, asset_id: str) -> JSON:
        """The provenance trace of a diamond (every upstream asset, event, certificate)."""
        answer = await self.transport.call("GET", f"/v1/trace/{_segment(asset_id)}")
        return _need_dict(_unwrap(answer), "trace")

    async def compliance(self, asset_id: str) -> JSON:
        """The conflict-free verdict of a diamond, with every failing link."""
        answer = await self.transport.call("GET", f"/v1/compliance/{_segment(asset_id)}")
        return _need_dict(_unwrap(answer), "compliance")

    async def verified_compliance(
        self, asset_id: str, min_height: int | None = None, timeout_s: float = _WAIT_CHUNK_S
    ) -> JSON:
        """A diamond's verdict, trusting no node: every state read it depends on is
        proven against one certified state root and the verdict is computed again
        here (:mod:`node.sdk.compliance_proof`).  Returns ``{"verdict", "height",
        "certified_by", "reads"}``; raises :class:`ProofError` naming the part that failed.

        ``timeout_s`` bounds the wait for the certificate of the node's height;
        a verdict as of a height below ``min_height``, or below the highest
        height this client has already seen proven, is refused (part ``stale``).
        """
        params = {"prove": "1", "timeout_ms": str(max(1, int(timeout_s * 1000)))}
        answer = await self.transport.call(
            "GET", f"/v1/compliance/{_segment(asset_id)}", params=params, wait_s=timeout_s
        )
        floor = max(self.proven_height, min_height or 0)
        proven = await self._checked(
            lambda: verify_compliance(answer, asset_id, self.validators_at, self.chain_id, floor)
        )
        height = proven["height"]
        assert isinstance(height, int), "a verified verdict names its height"
        self.proven_height = max(self.proven_height, height)
        return proven

    async def recall_impact(self, lot_id: str) -> JSON:
        """Every lot downstream of a food lot, with who holds it now."""
        answer = await self.transport.call("GET", f"/v1/recall_impact/{_segment(lot_id)}")
        return _need_dict(_unwrap(answer), "recall impact")

    async def read_state(self, key: bytes) -> JSON:
        """``{"key", "value", "height"}`` of one state key, as one node says (unproven)."""
        answer = await self.transport.call("GET", f"/v1/state/{key.hex()}")
        return _need_dict(answer, "state")

    async def prove_state(
        self, key: bytes, min_height: int | None = None, timeout_s: float = _WAIT_CHUNK_S
    ) -> ProvenState:
        """What ``key`` holds (value None: absent), trusting no node: the node's
        state proof is checked against a state root its commit certificate
        certifies (:mod:`node.sdk.state_proof`).  Raises :class:`ProofError`
        naming the part that failed: ``state``, ``unproven`` (no certificate
        within ``timeout_s``), ``stale`` (as of a height below ``min_height``
        or below the highest height this client has already seen proven).
        """
        params = {"prove": "1", "timeout_ms": str(max(1, int(timeout_s * 1000)))}
        answer = await self.transport.call(
            "GET", f"/v1/state/{key.hex()}", params=params, wait_s=timeout_s
        )
        floor = max(self.proven_height, min_height or 0)
        proven = await self._checked(
            lambda: verify_state_answer(
                answer, key, self.validators_at, self.chain_id, min_height=floor
            )
        )
        self.proven_height = max(self.proven_height, proven.height)
        return proven

    async def status(self) -> JSON:
        """The answering node's status (height, view, peers, mempool)."""
        return _need_dict(await self.transport.call("GET", "/v1/status"), "status")

    async def validators_info(self) -> JSON:
        """The validator set as a node reports it (for display; proofs use genesis)."""
        return _need_dict(await self.transport.call("GET", "/v1/validators"), "validators")

    async def nonce(self, sender: bytes | None = None) -> JSON:
        """``{"sender", "next_nonce", "pending_next_nonce"}`` of a key (default: ours)."""
        key = sender if sender is not None else self._require_identity().public_key
        return _need_dict(await self.transport.call("GET", f"/v1/nonce/{key.hex()}"), "nonce")

    # ---------------------------------------------------------------- events

    async def events(
        self, from_height: int | None = None, max_backoff_s: float = _EVENTS_MAX_BACKOFF_S
    ) -> AsyncGenerator[JSON, None]:
        """Committed blocks as event frames, in height order, forever.

        Starts at ``from_height`` (default: the next block).  Survives node
        failures and slow-subscriber cut-offs by reconnecting from the last
        height seen plus one; never yields a height twice.

        >>> async for frame in client.events():
        ...     print(frame["height"], [tx["status"] for tx in frame["txs"]])
        """
        next_height = from_height if from_height is not None else await self._next_height()
        index = self.transport.preferred
        backoff = RetryPolicy(first_pause_s=_EVENTS_MIN_BACKOFF_S, max_pause_s=max_backoff_s)
        # Connections in a row that gave nothing: the pause before the next grows with them.
        retries = 0
        while True:
            url = self.transport.nodes[index]
            received = False
            try:
                async with aclosing(self._event_frames(url, next_height)) as frames:
                    async for frame in frames:
                        height = frame.get("height")
                        if frame.get("type") != "block" or type(height) is not int:
                            continue
                        if height < next_height:
                            continue
                        received = True
                        retries = 0
                        next_height = height + 1
                        yield frame
            except NodeFailed:
                received = False
            if not received:
                # A node that gave nothing is skipped; one that served and closed is kept.
                index = (index + 1) % len(self.transport.nodes)
                retries += 1
                await asyncio.sleep(backoff.pause_s(retries))

    async def _next_height(self) -> int:
        return int((await self.status())["height"]) + 1

    async def _event_frames(self, base_url: str, from_height: int) -> AsyncGenerator[JSON, None]:
        """Frames from one websocket connection until it closes; NodeFailed on errors.

        The transport bounds the handshake (the client's timeout) and the close.
        """
        try:
            async with self.transport.websocket(
                base_url,
                f"/v1/events?from_height={from_height}",
                max_msg_size=_EVENTS_MAX_FRAME_BYTES,
                heartbeat_s=_EVENTS_HEARTBEAT_S,
            ) as socket:
                async for message in socket:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        yield _frame(message.data)
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        raise NodeFailed(f"websocket error: {socket.exception()}")
        except StreamRefused as refused:
            if 400 <= refused.status < 500:
                raise ProvenetError(
                    "bad_request", f"event stream refused: {refused.message}", refused.status
                ) from None
            raise NodeFailed(f"websocket handshake: HTTP {refused.status}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeFailed(describe_failure(exc)) from None


# -------------------------------------------------------------------- helpers


def _need_dict(answer: object, what: str) -> JSON:
    if not isinstance(answer, dict):
        raise ProvenetError("bad_answer", f"the node's {what} is not a JSON object")
    return answer


def _unwrap(answer: object) -> Any:
    """A query answer is ``{"result": ...}``; accept a bare result too."""
    document = _need_dict(answer, "query answer")
    return document["result"] if set(document) == {"result"} else document


def _segment(identifier: str) -> str:
    return quote(identifier, safe="")


def _frame(text: str) -> JSON:
    try:
        frame = json.loads(text)
    except ValueError:
        raise NodeFailed("event frame is not JSON") from None
    if not isinstance(frame, dict):
        raise NodeFailed("event frame is not a JSON object")
    return frame


def _ca_context(ca_file: Path) -> ssl.SSLContext:
    """A client TLS context trusting only the network CA (node/runtime/tls.py's rule)."""
    return client_context(ca_file)
