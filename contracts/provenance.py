"""The provenance DAG shared by the rule packs: events and bounded walks.

Theory of operation
-------------------
Assets (diamond parcels and stones) and lots (food) are nodes of a
directed acyclic graph: a node's record lists its parents (what it was
split, merged, cut or processed from), and its id is fresh when created,
so edges always point from older to newer nodes and no cycle can form.

Each node keeps its history in state as numbered events under
``<pack>/event/<node>/<seq>``; the sequence number lives in the node's
record, so events read back in the order they happened.

Walks (:func:`walk`) are breadth-first, visit neighbours in ascending
order and stop after ``max_nodes`` nodes, reporting ``truncated``: queries
pass that flag on, and rules that need the whole DAG refuse to guess.  The
neighbour function yields in ascending order itself (a prefix scan of
forward edges already does), and the walk pulls from it lazily: a lot used
in thousands of processing runs costs only the edges the walk still has
room for, so a big graph gives a truncated answer rather than exhausting
the query's step budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from consensus.codec import decode, encode
from contracts.context import Call
from contracts.records import record_from_bytes, save
from contracts.state import ReadableState


@dataclass(frozen=True, slots=True)
class ProvEvent:
    seq: int
    kind: str
    height: int
    time_ms: int
    tx_id: bytes
    actor: str
    attributes: bytes  # canonical encoding of the attribute map

    def to_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "height": self.height,
            "time_ms": self.time_ms,
            "tx_id": self.tx_id,
            "actor": self.actor,
            "attributes": decode(self.attributes),
        }


def event_prefix(pack: bytes, node_id: str) -> bytes:
    return pack + b"/event/" + node_id.encode() + b"/"


def record_event(
    call: Call, pack: bytes, node_id: str, seq: int, kind: str, attributes: dict[str, object]
) -> None:
    """Store event ``seq`` of a node and emit it in the receipt."""
    event = ProvEvent(
        seq=seq,
        kind=kind,
        height=call.block.height,
        time_ms=call.block.time_ms,
        tx_id=call.tx_id,
        actor=call.sender_org.org_id,
        attributes=encode(attributes),
    )
    save(call.store, event_prefix(pack, node_id) + b"%010d" % seq, event)
    call.emit(kind, {"id": node_id, **attributes})


def read_events(
    view: ReadableState, pack: bytes, node_id: str, limit: int
) -> tuple[list[ProvEvent], bool]:
    """A node's events in order, at most ``limit``; the flag says more exist."""
    events: list[ProvEvent] = []
    for _, raw in view.scan(event_prefix(pack, node_id)):
        if len(events) == limit:
            return events, True
        events.append(record_from_bytes(ProvEvent, raw))
    return events, False


def walk(
    start: str, neighbours: Callable[[str], Iterable[str]], max_nodes: int
) -> tuple[list[str], dict[str, int], bool]:
    """Breadth-first walk from ``start``.

    ``neighbours(node)`` must yield in ascending order; it is consumed only
    as far as needed.  Returns the nodes in visiting order, each node's
    distance from the start, and whether the walk stopped at ``max_nodes``
    with nodes left.
    """
    order = [start]
    depth = {start: 0}
    next_index = 0
    while next_index < len(order):
        node = order[next_index]
        next_index += 1
        for neighbour in neighbours(node):
            if neighbour in depth:
                continue
            if len(order) >= max_nodes:
                return order, depth, True
            depth[neighbour] = depth[node] + 1
            order.append(neighbour)
    return order, depth, False
