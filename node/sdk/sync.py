"""A small synchronous wrapper around :class:`~node.sdk.client.ProvenetClient`.

Why a private loop in a thread: the async client keeps one aiohttp session
(connection pooling, the failover preference, the nonce count) that must
live on one event loop.  Running that loop in a daemon thread lets plain
scripts call it, and also code that is itself inside a running loop (a
notebook), where ``asyncio.run`` would refuse.  Each call submits one
coroutine to that loop and blocks for its result; exceptions are the async
client's own (:class:`~node.sdk.errors.ProvenetError` and subclasses).

Example::

    with Client.from_network_dir("net", org_id="farm") as client:
        receipt = client.submit("food", "harvest",
                                {"lot_id": "W1", "product": "wheat", "mass_grams": 1_000_000})
        print(receipt["height"], client.query("food", "lot", {"lot_id": "W1"}))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from contracts.tx import Transaction
from node.sdk.client import DEFAULT_TIMEOUT_S, DEFAULT_WAIT_S, ProvenetClient
from node.sdk.keys import Identity

T = TypeVar("T")
JSON = dict[str, Any]


class Client:
    """Blocking calls to a Provenet network; wraps one :class:`ProvenetClient`."""

    def __init__(self, inner: ProvenetClient) -> None:
        self.inner = inner
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="provenet-sdk", daemon=True
        )
        self._thread.start()
        self._closed = False

    @classmethod
    def from_network_dir(
        cls,
        net_dir: Path | str,
        org_id: str | None = None,
        node: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Client:
        """See :meth:`ProvenetClient.from_network_dir`."""
        return cls(ProvenetClient.from_network_dir(net_dir, org_id, node, timeout_s))

    @classmethod
    def from_url(
        cls,
        url: str | list[str],
        identity: Identity | Path | str | None = None,
        genesis_file: Path | str = "genesis.json",
        ca_file: Path | str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Client:
        """See :meth:`ProvenetClient.from_url`."""
        return cls(ProvenetClient.from_url(url, identity, genesis_file, ca_file, timeout_s))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("this client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Close the session and stop the private loop (idempotent)."""
        if self._closed:
            return
        self._run(self.inner.close())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- calls

    def sign(
        self,
        contract: str,
        method: str,
        args: dict[str, object],
        nonce: int | None = None,
        expiry_height: int | None = None,
    ) -> Transaction:
        return self._run(self.inner.sign(contract, method, args, nonce, expiry_height))

    def submit(
        self,
        contract: str,
        method: str,
        args: dict[str, object],
        wait: bool = True,
        timeout_s: float = DEFAULT_WAIT_S,
        raise_on_reject: bool = True,
    ) -> JSON:
        """Sign, submit and wait; the verified receipt (see ProvenetClient.submit)."""
        return self._run(
            self.inner.submit(
                contract,
                method,
                args,
                wait=wait,
                timeout_s=timeout_s,
                raise_on_reject=raise_on_reject,
            )
        )

    def submit_tx(
        self, tx: Transaction, wait: bool = True, timeout_s: float = DEFAULT_WAIT_S
    ) -> JSON:
        return self._run(self.inner.submit_tx(tx, wait=wait, timeout_s=timeout_s))

    def query(self, contract: str, name: str, args: dict[str, object]) -> Any:
        return self._run(self.inner.query(contract, name, args))

    def trace(self, asset_id: str) -> JSON:
        return self._run(self.inner.trace(asset_id))

    def compliance(self, asset_id: str) -> JSON:
        return self._run(self.inner.compliance(asset_id))

    def recall_impact(self, lot_id: str) -> JSON:
        return self._run(self.inner.recall_impact(lot_id))

    def status(self) -> JSON:
        return self._run(self.inner.status())

    def tx_status(self, identifier: bytes | str, wait: bool = False) -> JSON:
        return self._run(self.inner.tx_status(identifier, wait=wait))

    def block(self, height: int | str = "latest") -> JSON:
        return self._run(self.inner.block(height))
