"""The client API: aiohttp routes over the engine, the store and the state.

Every error leaves as ``{"error": {"code", "message"}}`` with the HTTP
status of its code (:data:`node.sdk.errors.HTTP_STATUS`), including aiohttp's own refusals
(unknown route, body too large).  Before a handler runs, the request is
charged to its client's budget (:class:`AdmissionBudget`, over
node/api/ratelimit.py); bodies are read and parsed by node/api/request_body.py,
every limit checked before the work it guards.  Responses are JSON, with bytes as hex,
unless the client sends ``Accept: application/msgpack``; then they are the
same objects in canonical msgpack with raw bytes.  The shapes are listed in
the README's API section.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import msgpack
from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consensus.codec import DecodeError, Limits, decode, digest, encode
from contracts.admission import check_stateless
from contracts.orgs import KeyRecord, key_key
from contracts.queries import query
from contracts.records import load
from contracts.results import ReceiptLeaf
from contracts.state import ReadableState
from contracts.tx import Transaction, admission_codec_limits, encode_tx, tx_from_value
from contracts.validators import VALIDATORS_KEY
from node.api import audit, chain_stream, openapi, proven, state_read
from node.api.errors import ApiError
from node.api.ratelimit import (
    BucketConfig,
    Client,
    ClientLimiter,
    TokenBucket,
    body_cost,
    envelopes_cost,
    request_cost,
    steps_cost,
)
from node.api.request_body import JSON_OR_MSGPACK, MSGPACK, media_type, parse_json, read_body
from node.runtime import certified
from node.runtime.certified import anchor_state, await_anchor, results_anchor
from node.runtime.chain import ChainHost, Subscriber, now_ms
from node.runtime.config import NodeLimits
from node.runtime.listener.connections import address_key
from node.runtime.mempool import PoolEntry, Refused
from node.runtime.views import (
    block_view,
    event_view,
    proof_view,
    receipt_proof_view,
    receipt_view,
    to_json,
)
from node.sdk.errors import status_of
from node.sdk.transport import STREAM_PATH

log = logging.getLogger("provenet.api")

# Heights, limits and timeouts: ASCII digits that fit SQLite's 64-bit integers.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
# Reads that walk many assets or blocks cost a client this many units of its
# admission budget (node/api/ratelimit.py); everything else costs what its body does.
EXPENSIVE_READ_COST = 100
_EXPENSIVE_READ_PREFIXES = ("/v1/audit/", "/v1/bundle/")


def _wants_msgpack(request: web.Request) -> bool:
    return MSGPACK in request.headers.get("Accept", "")


def respond(
    request: web.Request, value: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    if _wants_msgpack(request):
        return web.Response(
            body=encode(value), status=status, content_type=MSGPACK, headers=headers
        )
    body = json.dumps(to_json(value), separators=(",", ":"))
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


def error_response(
    request: web.Request, code: str, message: str, retry_after_s: int
) -> web.Response:
    status = status_of(code)
    headers = {"Retry-After": str(retry_after_s)} if status == 429 else None
    return respond(request, {"error": {"code": code, "message": message}}, status, headers)


_AIOHTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request"}


def error_middleware(retry_after_s: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            wait_s = exc.retry_after_s if exc.retry_after_s is not None else retry_after_s
            return error_response(request, exc.code, exc.message, wait_s)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _AIOHTTP_CODES.get(exc.status, "bad_request")
            response = error_response(request, code, exc.reason, retry_after_s)
            response.set_status(exc.status)
            # A 405 names the methods the path takes (RFC 9110, 15.5.6).
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception("unexpected error serving %s", request.path)
            return error_response(request, "internal", "internal error", retry_after_s)

    return middleware


class AdmissionBudget:
    """Charges every request to its connection's and its address's token buckets.

    See node/api/ratelimit.py for the buckets; this is where the API decides what
    a request costs and refuses it with 429 ``rate_limited`` (and
    Retry-After) before it is read, parsed or admitted.  A batch pays for
    its envelopes through :meth:`charge` once their count is known and
    before any of them is looked at; a body sent without Content-Length
    pays for its size once read (:meth:`charge_incurred`).
    """

    def __init__(self, limits: NodeLimits) -> None:
        self.limiter = ClientLimiter(
            BucketConfig(limits.client_cost_per_s, limits.client_cost_burst),
            BucketConfig(limits.address_cost_per_s, limits.address_cost_burst),
            limits.max_rate_limited_addresses,
        )
        self._max_body_bytes = limits.max_body_bytes

    @staticmethod
    def client(request: web.Request) -> Client:
        """The (address, port) a request's budget is kept under."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        address, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0)
        # An IPv6 client owns a /64: one budget for all of it, as the
        # listener's connection caps count it.
        return address_key(address), port

    def buckets(self, client: Client) -> tuple[TokenBucket, ...]:
        return self.limiter.buckets(client[0], client[1], now_ms())

    def charge(self, request: web.Request, cost: int) -> None:
        """Take ``cost`` units from the client's budget, or refuse with 429."""
        self.charge_client(self.client(request), cost)

    def charge_client(self, client: Client, cost: int) -> None:
        """:meth:`charge` for a client known by its (address, port): a chain
        stream charges each message after its request has been answered."""
        wait_ms = self.limiter.try_charge(self.buckets(client), cost, now_ms())
        if wait_ms:
            raise ApiError(
                "rate_limited",
                f"this client is over its admission budget; retry in {wait_ms} ms",
                retry_after_s=max(1, -(-wait_ms // 1000)),
            )

    def charge_incurred(self, request: web.Request, cost: int) -> None:
        """Take a cost already incurred, into debt if need be: the next request waits."""
        self.charge_incurred_client(self.client(request), cost)

    def charge_incurred_client(self, client: Client, cost: int) -> None:
        self.limiter.charge(self.buckets(client), cost, now_ms())

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def middleware(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            # A body is paid for up to what the node will read of it: a
            # declared 10 GB is refused at 1 MiB and must not cost more.
            declared = min(request.content_length or 0, self._max_body_bytes)
            cost = request_cost(declared)
            if request.path.startswith(_EXPENSIVE_READ_PREFIXES):
                cost += EXPENSIVE_READ_COST
            self.charge(request, cost)
            response = await handler(request)
            # Building and sending an answer costs what its size does (a chain
            # page, a block range, a bundle): paid once it is known.
            if isinstance(response, web.Response) and isinstance(response.body, bytes):
                self.charge_incurred(request, body_cost(len(response.body)))
            return response

        return middleware


def _hex(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError("malformed_tx", f"{field} must be hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ApiError("malformed_tx", f"{field} must be hex") from None


def payload_from_json(document: object) -> bytes:
    """The envelope bytes from ``{"envelope": hex}`` or ``{"tx": {...}}``."""
    if not isinstance(document, dict):
        raise ApiError("malformed_tx", "expected an object with 'envelope' or 'tx'")
    if "envelope" in document:
        return _hex(document["envelope"], "envelope")
    fields = document.get("tx")
    if not isinstance(fields, dict):
        raise ApiError("malformed_tx", "expected an object with 'envelope' or 'tx'")
    try:
        tx = Transaction(
            chain_id=fields["chain_id"],
            sender=_hex(fields["sender"], "sender"),
            nonce=fields["nonce"],
            contract=fields["contract"],
            method=fields["method"],
            args=fields.get("args", {}),
            expiry_height=fields.get("expiry_height"),
            signature=_hex(fields["signature"], "signature"),
        )
    except KeyError as exc:
        raise ApiError("malformed_tx", f"tx is missing {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ApiError("malformed_tx", str(exc)) from None
    return encode_tx(tx)


def decode_payload(payload: bytes, engine: ChainHost) -> Transaction:
    limits = engine.ledger.contract_limits
    if len(payload) > limits.max_tx_bytes:
        raise ApiError(
            "too_large", f"transaction of {len(payload)} bytes exceeds {limits.max_tx_bytes}"
        )
    try:
        value = decode(payload, admission_codec_limits(limits))
    except DecodeError as exc:
        if "float" in str(exc):
            raise ApiError("float_not_allowed", str(exc)) from None
        raise ApiError("malformed_msgpack", f"not canonical msgpack: {exc}") from None
    try:
        return tx_from_value(value)
    except DecodeError as exc:
        raise ApiError("malformed_tx", str(exc)) from None


def msgpack_list_length(raw: bytes) -> int | None:
    """The item count a msgpack list declares in its header, read without decoding it."""
    unpacker = msgpack.Unpacker(max_buffer_size=16)
    unpacker.feed(raw[:5])
    try:
        return int(unpacker.read_array_header())
    except Exception:  # msgpack raises several types; all mean "not a list header".
        return None


def batch_limits(limits: NodeLimits) -> Limits:
    """Decoder bounds of a msgpack batch body: one flat list of envelope bytes."""
    return Limits(
        max_size_bytes=limits.max_body_bytes,
        max_depth=1,
        max_collection_len=limits.max_batch_envelopes,
        max_str_len=0,
        max_bytes_len=limits.max_body_bytes,
        max_objects=1 + limits.max_batch_envelopes,
        max_containers=1,
    )


def query_limits(limits: NodeLimits) -> Limits:
    """Decoder bounds of a msgpack query body ``{contract, name, args}``: the same
    counts a JSON query body may hold."""
    return Limits(
        max_size_bytes=limits.max_body_bytes,
        max_depth=8,
        max_collection_len=limits.max_json_containers,
        max_str_len=limits.max_body_bytes,
        max_bytes_len=limits.max_body_bytes,
        max_objects=limits.max_json_values,
        max_containers=limits.max_json_containers,
    )


class ClientApi:
    """The handlers; ``read_only`` is for observer nodes, which refuse writes."""

    def __init__(
        self, engine: ChainHost, status: Callable[[], dict[str, object]], read_only: bool = False
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.limits = engine.limits
        self._status = status
        self.read_only = read_only
        self._audit = audit.AuditLimits()
        self.budget = AdmissionBudget(self.limits)
        self._chain_streams = chain_stream.ChainStreams(engine, self.limits, self.budget)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/txs", self.submit),
            web.post("/v1/txs/batch", self.submit_batch),
            # Hex only, so /v1/txs/batch is not also a transaction id and a 405
            # there names POST alone.
            web.get("/v1/txs/{tx_id:[0-9a-fA-F]+}", self.get_tx),
            web.get("/v1/blocks/latest", self.latest_block),
            web.get("/v1/blocks/{height}", self.get_block),
            web.get("/v1/blocks", self.block_range),
            web.get("/v1/chain", self.chain_page),
            web.get("/v1/results/{height}", self.get_results),
            web.get(STREAM_PATH, self.chain_stream),
            web.post("/v1/query", self.post_query),
            web.get("/v1/trace/{asset_id}", self.named_query("diamonds", "trace", "asset_id")),
            web.get("/v1/compliance/{asset_id}", self.compliance),
            web.get(
                "/v1/recall_impact/{lot_id}", self.named_query("food", "recall_impact", "lot_id")
            ),
            web.get("/v1/audit/noncompliant", self.audit_noncompliant),
            web.get("/v1/audit/sanctions", self.audit_sanctions),
            web.get("/v1/audit/activity", self.audit_activity),
            web.get("/v1/nonce/{sender}", self.get_nonce),
            web.get("/v1/state/{key}", self.get_state),
            web.get("/v1/events", self.events),
            web.get("/v1/status", self.get_status),
            web.get("/v1/validators", self.get_validators),
            web.get("/v1/validators/history", self.validator_history),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
            web.get(openapi.OPENAPI_PATH, self.openapi_spec),
        ]

    # ------------------------------------------------------------ submitting

    async def submit(self, request: web.Request) -> web.Response:
        if self.read_only:
            raise ApiError("read_only", "this is a read-only observer node; submit to a validator")
        # Every parameter is checked before the transaction is admitted: a
        # refused request must change nothing.
        timeout_ms = self._timeout_ms(request)
        payload = await self._read_payload(request)
        tx, status = self.accept(payload)
        tx_id = digest(payload)
        if request.query.get("wait") in ("1", "true", "yes"):
            status = await self._wait_outcome(tx_id, status, timeout_ms)
            self._refuse_if_nonce_lost(tx, status)
        return respond(request, status, 202 if status["status"] == "pending" else 200)

    async def submit_batch(self, request: web.Request) -> web.Response:
        if self.read_only:
            raise ApiError("read_only", "this is a read-only observer node; submit to a validator")
        kind, raw = await self._read(request)
        payloads = self._batch_payloads(kind, raw)
        # The whole batch is paid for before any envelope is looked at.
        self.budget.charge(request, envelopes_cost(len(payloads)))
        results: list[dict[str, object]] = []
        for start in range(0, len(payloads), self.limits.admission_chunk_envelopes):
            if start:
                # Admission work is bounded per turn of the event loop: the
                # replica task, which shares the loop, runs between chunks.
                await asyncio.sleep(0)
            chunk = payloads[start : start + self.limits.admission_chunk_envelopes]
            results.extend(self._accept_one(payload) for payload in chunk)
        return respond(request, {"results": results})

    def _accept_one(self, payload: bytes) -> dict[str, object]:
        """One batch entry's result; a refusal is a result, not an error of the batch."""
        try:
            _, status = self.accept(payload)
        except ApiError as exc:
            error = {"code": exc.code, "message": exc.message}
            return {"tx_id": digest(payload), "status": "refused", "error": error}
        return {"tx_id": status["tx_id"], "status": status["status"], "error": None}

    def _batch_payloads(self, kind: str, raw: bytes) -> list[bytes]:
        """The envelopes of a batch body, refused whole if there are too many."""
        maximum = self.limits.max_batch_envelopes
        if kind == MSGPACK:
            declared = msgpack_list_length(raw)
            if declared is not None and declared > maximum:
                raise ApiError(
                    "too_large", f"a batch of {declared} envelopes exceeds the limit of {maximum}"
                )
            try:
                items = decode(raw, batch_limits(self.limits))
            except DecodeError as exc:
                raise ApiError("malformed_msgpack", str(exc)) from None
        else:
            # {"envelopes": [...]}: the object, the list and its items.
            document = parse_json(raw, self.limits.max_json_containers, maximum + 2)
            items = document.get("envelopes") if isinstance(document, dict) else None
            if isinstance(items, list) and len(items) <= maximum:
                items = [_hex(item, "envelope") for item in items]
        if not isinstance(items, list):
            raise ApiError("bad_request", "expected a list of transaction envelopes")
        if len(items) > maximum:
            raise ApiError(
                "too_large", f"a batch of {len(items)} envelopes exceeds the limit of {maximum}"
            )
        if not all(isinstance(item, bytes) for item in items):
            raise ApiError("bad_request", "expected a list of transaction envelopes")
        return items

    async def _read(self, request: web.Request) -> tuple[str, bytes]:
        """The body's media type (JSON or msgpack, else 415) and its bytes, within the limit."""
        kind = media_type(request, JSON_OR_MSGPACK)
        raw = await read_body(request, self.limits.max_body_bytes, self.limits.body_read_timeout_ms)
        if request.content_length is None:
            self.budget.charge_incurred(request, body_cost(len(raw)))
        return kind, raw

    async def _read_payload(self, request: web.Request) -> bytes:
        kind, raw = await self._read(request)
        if kind == MSGPACK:
            return raw
        return payload_from_json(self._parse_json(raw))

    def _parse_json(self, raw: bytes) -> Any:
        return parse_json(raw, self.limits.max_json_containers, self.limits.max_json_values)

    def accept(self, payload: bytes) -> tuple[Transaction, dict[str, object]]:
        """Admit one envelope, or return what is already known about it."""
        tx = decode_payload(payload, self.engine)
        # The cheapest refusal of a stranger's transaction comes before the
        # store is asked about it: a key that was never a member signed nothing
        # this node knows.
        record = self._member_key(tx)
        tx_id = digest(payload)
        known = self.tx_status(tx_id)
        if known is not None and known["status"] != "dropped":
            self._refuse_if_nonce_lost(tx, known)
            return tx, known
        # A transaction dropped before execution never ran: the same bytes may
        # try again (its nonce gap may have filled since), and are checked anew.
        self._check(tx, record)
        try:
            self.engine.submit(PoolEntry(tx, tx_id, payload, now_ms()))
        except Refused as refusal:
            self.engine.metrics.submissions.labels(refusal.code).inc()
            raise ApiError(refusal.code, refusal.message) from None
        self.engine.metrics.submissions.labels("accepted").inc()
        return tx, self._pending(tx_id)

    def _refuse_if_nonce_lost(self, tx: Transaction, status: dict[str, object]) -> None:
        """A double-spend loser is answered one way: 409 ``nonce_used``.

        Another transaction of the same sender took this one's nonce, and it
        can never execute.  The node learns that in one of three ways (at
        admission, when the winner executes while this one waits in the
        mempool, or when this one reaches a block after the winner and the
        contracts refuse it as ``bad_nonce``); the submitter hears the same
        answer from all three.  ``GET /v1/txs/{id}`` still reports what
        happened to it, proof included.
        """
        receipt = status.get("receipt")
        code = receipt.get("code") if isinstance(receipt, dict) else None
        lost = (status["status"] == "dropped" and code == "nonce_used") or (
            status["status"] == "committed"
            and code == "bad_nonce"
            and tx.nonce < self.engine.committed_nonce(tx.sender)
        )
        if lost:
            raise ApiError(
                "nonce_used",
                f"nonce {tx.nonce} of this sender was used by another transaction; "
                f"this one ({status['status']}) will never execute",
            )

    def _member_key(self, tx: Transaction) -> KeyRecord:
        record = load(self.engine.ledger.state, key_key(tx.sender), KeyRecord)
        if record is None:
            raise ApiError("unknown_key", f"key {tx.sender.hex()[:16]} is not a member key")
        return record

    def _check(self, tx: Transaction, record: KeyRecord) -> None:
        engine = self.engine
        if tx.chain_id != engine.config.chain_id:
            raise ApiError(
                "wrong_chain",
                f"this node serves chain {engine.config.chain_id!r}, not {tx.chain_id!r}",
            )
        # The contracts' own stateless argument checks, so that a transaction
        # that can never execute is refused before it is ordered and keeps
        # its nonce free (contracts.admission).
        refusal = check_stateless(tx, engine.ledger.contract_limits)
        if refusal is not None:
            raise ApiError(refusal.code, refusal.message)
        next_height = self.store.height() + 1
        if tx.expiry_height is not None and tx.expiry_height < next_height:
            raise ApiError("expired", f"transaction expired at height {tx.expiry_height}")
        if record.revoked_from_height is not None and next_height >= record.revoked_from_height:
            raise ApiError(
                "key_revoked", f"key {tx.sender.hex()[:16]} of {record.org_id} is revoked"
            )
        if not engine.ledger.verify(tx):
            raise ApiError("bad_signature", "signature does not verify")

    # ------------------------------------------------------------ reading

    def tx_status(self, tx_id: bytes) -> dict[str, object] | None:
        position = self.store.tx_position(tx_id)
        if position is not None:
            height, index = position
            stored = self.store.block(height)
            assert stored is not None, "an indexed transaction's block is stored"
            return {
                "tx_id": tx_id,
                "status": "committed",
                "height": height,
                "index": index,
                "receipt": receipt_view(stored.receipts[index]),
                "proof": proof_view(stored, index),
                "receipt_proof": receipt_proof_view(
                    stored,
                    index,
                    results_anchor(self.store, height, self.limits.results_anchor_search_heights),
                ),
            }
        if self.engine.mempool.get(tx_id) is not None:
            return self._pending(tx_id)
        outcome = self.engine.outcome_of(tx_id)
        if outcome is not None and outcome.status == "dropped":
            receipt: dict[str, object] = {
                "tx_id": tx_id,
                "status": "dropped",
                "code": outcome.code,
                "message": outcome.message,
                "events": [],
                "writes": 0,
            }
            return {
                "tx_id": tx_id,
                "status": "dropped",
                "height": None,
                "index": None,
                "receipt": receipt,
                "proof": None,
                "receipt_proof": None,
            }
        return None

    @staticmethod
    def _pending(tx_id: bytes) -> dict[str, object]:
        return {
            "tx_id": tx_id,
            "status": "pending",
            "height": None,
            "index": None,
            "receipt": None,
            "proof": None,
            "receipt_proof": None,
        }

    def _timeout_ms(self, request: web.Request) -> int:
        raw = request.query.get("timeout_ms", "10000")
        if not _WHOLE_NUMBER.fullmatch(raw):
            raise ApiError("bad_request", "timeout_ms must be a whole number of milliseconds")
        return min(int(raw), self.limits.max_wait_ms)

    async def get_tx(self, request: web.Request) -> web.Response:
        tx_id = _path_hex(request, "tx_id")
        timeout_ms = self._timeout_ms(request)
        status = self.tx_status(tx_id)
        if status is None:
            raise ApiError("not_found", "no such transaction on this node")
        if request.query.get("wait") in ("1", "true", "yes"):
            status = await self._wait_outcome(tx_id, status, timeout_ms)
        return respond(request, status, 202 if status["status"] == "pending" else 200)

    async def _wait_outcome(
        self, tx_id: bytes, status: dict[str, object], timeout_ms: int
    ) -> dict[str, object]:
        """``wait=1``: within ``timeout_ms`` in all, wait for a pending
        transaction to commit, then for the later block that certifies its
        results (the anchor of its receipt proof); the status as it stands."""
        deadline_s = time.monotonic() + timeout_ms / 1000
        if status["status"] == "pending":
            await self.engine.wait_for(tx_id, timeout_ms / 1000)
            status = self.tx_status(tx_id) or status
        proof = status.get("receipt_proof")
        height = status.get("height")
        if isinstance(proof, dict) and proof["anchor"] is None and isinstance(height, int):
            remaining_s = deadline_s - time.monotonic()
            if remaining_s > 0 and await await_anchor(self.engine, height, remaining_s):
                status = self.tx_status(tx_id) or status
        return status

    async def latest_block(self, request: web.Request) -> web.Response:
        return self._block_response(request, self.store.height())

    async def get_block(self, request: web.Request) -> web.Response:
        return self._block_response(request, _path_int(request, "height"))

    def _block_response(self, request: web.Request, height: int) -> web.Response:
        stored = self.store.block(height)
        if stored is None:
            raise ApiError("not_found", f"no block at height {height}")
        return respond(request, block_view(stored))

    async def get_results(self, request: web.Request) -> web.Response:
        """A height's results, every receipt's outcome and the certificate that
        certifies them (node/sdk/certified_results.py); ``wait=1`` waits up to
        ``timeout_ms`` for that certificate when it is not stored yet."""
        height = _path_int(request, "height")
        timeout_ms = self._timeout_ms(request)
        results = self.store.results_at(height) if 0 < height <= self.store.height() else None
        stored = self.store.block(height) if results is not None else None
        if results is None or stored is None:
            raise ApiError("not_found", f"no executed block at height {height}")
        search = self.limits.results_anchor_search_heights
        anchor = certified.results_anchor(self.store, height, search)
        if anchor is None and request.query.get("wait") in ("1", "true", "yes"):
            anchor = await certified.await_anchor(self.engine, height, timeout_ms / 1000)
        answer = {
            "height": height,
            "results": results.to_dict(),
            "receipts": [ReceiptLeaf.from_stored(receipt).to_dict() for receipt in stored.receipts],
            "anchor": None if anchor is None else anchor.to_dict(),
        }
        return respond(request, answer)

    async def block_range(self, request: web.Request) -> web.Response:
        start = _query_int(request, "from", 1)
        limit = min(
            _query_int(request, "limit", self.limits.max_blocks_per_page),
            self.limits.max_blocks_per_page,
        )
        blocks = []
        for height in range(max(1, start), max(1, start) + limit):
            stored = self.store.block(height)
            if stored is None:
                break
            blocks.append(block_view(stored))
        return respond(request, {"blocks": blocks})

    async def chain_page(self, request: web.Request) -> web.Response:
        """Full blocks (header, certificate, payloads) for observers, in msgpack."""
        start = max(1, _query_int(request, "from", 1))
        limit = min(
            _query_int(request, "limit", self.limits.max_blocks_per_page),
            self.limits.max_blocks_per_page,
        )
        blocks = chain_stream.chain_blocks(self.store, start, limit, self.limits.chain_page_bytes)
        page = chain_stream.page(self.engine, self.store.height(), blocks, start + len(blocks) - 1)
        return web.Response(body=encode(page), content_type=MSGPACK)

    async def chain_stream(self, request: web.Request) -> web.StreamResponse:
        """The chain pushed to observers as it grows (node/api/chain_stream.py)."""
        start = max(1, _query_int(request, "from", self.store.height() + 1))
        limit = min(
            _query_int(request, "limit", self.limits.max_blocks_per_page),
            self.limits.max_blocks_per_page,
        )
        blocks = _query_int(request, "blocks", 1) != 0
        return await self._chain_streams.handle(request, start, max(1, limit), blocks)

    async def post_query(self, request: web.Request) -> web.Response:
        kind, raw = await self._read(request)
        document: object
        if kind == MSGPACK:
            try:
                document = decode(raw, query_limits(self.limits))
            except DecodeError as exc:
                raise ApiError("malformed_msgpack", str(exc)) from None
        else:
            document = self._parse_json(raw)
        if not isinstance(document, dict):
            raise ApiError("bad_request", "expected {contract, name, args}")
        contract, name, args = (
            document.get("contract"),
            document.get("name"),
            document.get("args", {}),
        )
        if not isinstance(contract, str) or not isinstance(name, str) or not isinstance(args, dict):
            raise ApiError("bad_request", "expected {contract: str, name: str, args: object}")
        return respond(request, {"result": self.run_query(request, contract, name, args)})

    def named_query(
        self, contract: str, name: str, arg: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            result = self.run_query(request, contract, name, {arg: request.match_info[arg]})
            return respond(request, {"result": result})

        return handler

    async def compliance(self, request: web.Request) -> web.Response:
        """A diamond's verdict; with ``prove=1`` also every read it depends on, proven
        against the certified state root of one height (node/api/proven.py)."""
        args: dict[str, object] = {"asset_id": request.match_info["asset_id"]}
        timeout_ms = self._timeout_ms(request)
        if request.query.get("prove") not in ("1", "true", "yes"):
            return respond(
                request, {"result": self.run_query(request, "diamonds", "compliance", args)}
            )
        # No await from here until the proofs are taken: state stays at `height`.
        height, state = self.store.height(), self.engine.ledger.state
        state_root = state.root()
        verdict, reads = proven.record_and_prove(
            state,
            lambda view: self.run_query(request, "diamonds", "compliance", args, view),
            self.limits.max_proven_reads,
        )
        self.budget.charge_incurred(request, steps_cost(len(reads)))
        anchor = await anchor_state(self.engine, height, state_root, timeout_ms / 1000)
        if anchor is None:
            raise ApiError("unavailable", f"height {height} is not certified yet; retry")
        answer = {
            "verdict": verdict,
            "height": anchor.height,
            "reads": reads,
            "anchor": anchor.to_dict(),
        }
        return respond(request, answer)

    def run_query(
        self,
        request: web.Request,
        contract: str,
        name: str,
        args: dict[str, object],
        state: ReadableState | None = None,
    ) -> object:
        """Answer a query within the node's step cap; the client pays for the steps it took."""
        view = self.engine.ledger.state if state is None else state
        answer = query(view, contract, name, args, self.limits.max_query_steps)
        steps = answer["steps"]
        assert type(steps) is int, "a query's answer counts its steps"
        self.budget.charge_incurred(request, steps_cost(steps))
        if not answer["ok"]:
            raise ApiError(str(answer["error"]), str(answer["message"]))
        return answer["result"]

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The live block stream; ``from_height`` replays stored blocks first."""
        start = max(1, _query_int(request, "from_height", self.store.height() + 1))
        ws = web.WebSocketResponse(heartbeat=10.0)
        if not ws.can_prepare(request).ok:
            raise ApiError("bad_request", "the event stream is a websocket")
        subscriber = self.engine.subscribe()
        if subscriber is None:
            raise ApiError("too_many_subscribers", "this node serves its maximum of event streams")
        try:
            await ws.prepare(request)
        except BaseException:
            self.engine.unsubscribe(subscriber)
            raise
        # Reading is what notices a client's close (and answers pings), so a
        # reader runs beside the sender and ends the stream when the client goes.
        reader = asyncio.create_task(_read_until_closed(ws))
        try:
            await self._stream(ws, subscriber, start, reader)
        except ConnectionResetError:
            pass
        finally:
            reader.cancel()
            self.engine.unsubscribe(subscriber)
        return ws

    async def _stream(
        self,
        ws: web.WebSocketResponse,
        subscriber: Subscriber,
        start: int,
        reader: asyncio.Task[None],
    ) -> None:
        next_height = await self._replay(ws, start, self.store.height())
        while not ws.closed:
            if subscriber.overflowed:
                await ws.close(
                    code=WSCloseCode.TRY_AGAIN_LATER,
                    message=b"fell behind; resume from the last height",
                )
                return
            getter = asyncio.create_task(subscriber.queue.get())
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                return
            frame = getter.result()
            height = int(str(frame["height"]))
            if height < next_height:
                continue
            next_height = await self._replay(ws, next_height, height - 1)
            await ws.send_str(json.dumps(to_json(frame)))
            next_height = height + 1

    async def _replay(self, ws: web.WebSocketResponse, low: int, high: int) -> int:
        """Send stored blocks low..high; return the next height to send."""
        for height in range(low, high + 1):
            stored = self.store.block(height)
            if stored is None:
                return height
            await ws.send_str(json.dumps(to_json(event_view(stored))))
        return max(low, high + 1)

    async def audit_noncompliant(self, request: web.Request) -> web.Response:
        limit = _query_int(request, "limit", self._audit.max_results)
        limits = replace(self._audit, max_results=min(limit, self._audit.max_results))
        return respond(request, {"result": audit.noncompliant(self.engine.ledger.state, limits)})

    async def audit_sanctions(self, request: web.Request) -> web.Response:
        result = audit.sanctions_and_revocations(self.engine.ledger.state, self._audit)
        return respond(request, {"result": result})

    async def audit_activity(self, request: web.Request) -> web.Response:
        height = self.store.height()
        last = _query_int(request, "to", height)
        first = _query_int(request, "from", max(1, last - self._audit.max_blocks + 1))
        result = audit.activity(
            self.store,
            self.engine.ledger.state,
            self.engine.ledger.contract_limits,
            first,
            last,
            self._audit,
        )
        return respond(request, {"result": result})

    async def get_nonce(self, request: web.Request) -> web.Response:
        sender = _path_hex(request, "sender")
        return respond(
            request,
            {
                "sender": sender,
                "next_nonce": self.engine.committed_nonce(sender),
                "pending_next_nonce": self.engine.mempool.pending_next_nonce(sender),
            },
        )

    async def get_state(self, request: web.Request) -> web.Response:
        """One state key's value; with ``prove=1`` its proof and the anchor of
        the height it is proven at (node/api/state_read.py)."""
        key = state_read.parse_key(request.match_info["key"], self.limits.max_state_key_bytes)
        prove = request.query.get("prove") in ("1", "true", "yes")
        timeout_ms = self._timeout_ms(request)
        # No await from reading the height to taking the proof: the state
        # stays at that height.
        answer = state_read.read_state(self.engine.ledger.state, self.store.height(), key, prove)
        if prove:
            height = answer["height"]
            assert isinstance(height, int)
            state_root = self.engine.ledger.state.root()
            anchor = await anchor_state(self.engine, height, state_root, timeout_ms / 1000)
            answer["anchor"] = None if anchor is None else anchor.to_dict()
            if anchor is not None:
                # A quiet chain's proof is anchored at an earlier height with
                # the same state (anchor_state): say that height.
                answer["height"] = anchor.height
        return respond(request, answer)

    async def get_status(self, request: web.Request) -> web.Response:
        return respond(request, self._status())

    async def get_validators(self, request: web.Request) -> web.Response:
        return respond(request, self._status()["validator_set"])

    async def validator_history(self, request: web.Request) -> web.Response:
        """Each write of the validator-set record above ``after``, in height
        order, as a proven state answer at its height (the proof stored when
        it was executed, node/runtime/storage.py ValidatorChange) with the
        anchor certifying that height's state root, for light clients to
        follow the set from genesis (node/sdk/validator_history.py).  A change
        whose certifying block has not come yet ends the page (anchor null)."""
        after = _query_int(request, "after", 0)
        limit = self.limits.max_validator_changes_per_page
        changes = self.store.validator_changes(after, limit + 1)
        search = self.limits.results_anchor_search_heights
        answers: list[dict[str, object]] = []
        for change in changes[:limit]:
            anchor = results_anchor(self.store, change.height, search)
            answers.append(
                {
                    "key": VALIDATORS_KEY,
                    "value": change.value,
                    "height": change.height,
                    "proof": change.proof,
                    "anchor": None if anchor is None else anchor.to_dict(),
                }
            )
            if anchor is None:
                break
        more = len(changes) > limit and len(answers) == limit
        return respond(request, {"changes": answers, "more": more})

    async def healthz(self, request: web.Request) -> web.Response:
        if self.engine.fatal is not None:
            raise ApiError("unavailable", f"replica task stopped: {self.engine.fatal!r}")
        # The node's name lets `net up` tell its own node from another
        # process that happens to hold the same port.
        body = {"ok": True, "node": self.engine.config.node_name, "height": self.store.height()}
        return respond(request, body)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.engine.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi_spec(self, request: web.Request) -> web.Response:
        """This API's OpenAPI 3.1 description (node/api/openapi.json), always JSON."""
        return web.Response(body=openapi.spec_bytes(), content_type="application/json")


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


def _path_hex(request: web.Request, name: str) -> bytes:
    try:
        return bytes.fromhex(request.match_info[name])
    except ValueError:
        raise ApiError("bad_request", f"{name} must be hex") from None


def _path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise ApiError("bad_request", f"{name} must be a whole number")
    return int(raw)


def _query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise ApiError("bad_request", f"{name} must be a whole number")
    return int(raw)
