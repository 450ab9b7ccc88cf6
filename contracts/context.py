"""The context a contract handler runs in.

Theory of operation
-------------------
A handler receives one :class:`Call`: the transaction and its id, the
block, the chain config, the authenticated sending organisation, the
metered write buffer and the list of events emitted so far.  That is
everything a handler may look at or touch; the runtime builds the call,
and applies the buffer and the events only if the handler returns without
raising :class:`~contracts.errors.Rejected`.  The arguments are not part
of the call: the handler receives them typed, from its method's stateless
parse function (contracts.methods), so no handler reads a raw argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.buffer import TxBuffer
from contracts.config import ChainConfig
from contracts.orgs import Org
from contracts.receipt import BlockContext, Event
from contracts.tx import Transaction


@dataclass(frozen=True, slots=True)
class Call:
    tx: Transaction
    tx_id: bytes
    block: BlockContext
    config: ChainConfig
    sender_org: Org
    store: TxBuffer
    events: list[Event] = field(default_factory=list)

    def emit(self, kind: str, attributes: dict[str, object]) -> None:
        self.events.append(Event(self.tx.contract, kind, attributes))
