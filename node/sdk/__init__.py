"""The Provenet participant SDK: offline signing, submit and wait with failover,
commit-proof verification, queries and event subscription.

Async first (:class:`ProvenetClient`), with a blocking wrapper (:class:`Client`)::

    from node.sdk import ProvenetClient

    async with ProvenetClient.from_network_dir("net", org_id="farm") as client:
        receipt = await client.submit(
            "food", "harvest", {"lot_id": "W1", "product": "wheat", "mass_grams": 1_000_000}
        )
"""

from __future__ import annotations

from node.sdk.client import ProvenetClient
from node.sdk.errors import (
    ProofError,
    ProvenetError,
    TransactionDropped,
    TransactionRejected,
    TransactionTimeout,
    Unavailable,
)
from node.sdk.proof import (
    commits_from_json,
    header_from_json,
    validator_set_from_genesis,
    verify_block,
    verify_tx_proof,
)
from node.sdk.sync import Client

__all__ = [
    "Client",
    "ProofError",
    "ProvenetClient",
    "ProvenetError",
    "TransactionDropped",
    "TransactionRejected",
    "TransactionTimeout",
    "Unavailable",
    "commits_from_json",
    "header_from_json",
    "validator_set_from_genesis",
    "verify_block",
    "verify_tx_proof",
]
