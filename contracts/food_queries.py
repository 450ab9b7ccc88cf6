"""Queries of the food pack: trace back, trace forward, recall impact.

Theory of operation
-------------------
All three are bounded breadth-first walks of the lot DAG
(contracts.provenance.walk): ``trace_back`` follows parents, the other two
follow the forward edges, through any number of processing steps and
merges.  ``recall_impact`` lists every downstream lot with who owns and
who holds it now (and where it is headed if in transit), nearest first.
Each answer carries ``truncated`` when ``max_trace_nodes`` cut it short.

:func:`recalled_upstream` is the rule behind ``recalled``: a lot may not
be shipped or processed if it, or anything it was made from, is recalled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict

from contracts.errors import ErrorCode, Rejected
from contracts.food_records import PACK, Lot, children, get_lot
from contracts.provenance import read_events, walk
from contracts.state import ReadableState


class _Lots:
    """Loads each lot once during a walk."""

    def __init__(self, view: ReadableState) -> None:
        self.view = view
        self.lots: dict[str, Lot] = {}

    def get(self, lot_id: str) -> Lot:
        lot = self.lots.get(lot_id)
        if lot is None:
            lot = get_lot(self.view, lot_id)
            self.lots[lot_id] = lot
        return lot

    def parents(self, lot_id: str) -> list[str]:
        return sorted(self.get(lot_id).parents)

    def children(self, lot_id: str) -> Iterator[str]:
        # A lazy prefix scan: the walk stops reading once it is full.
        return children(self.view, lot_id)


def _walk(
    view: ReadableState, lot_id: str, direction: str, max_nodes: int
) -> tuple[list[Lot], dict[str, int], bool]:
    lots = _Lots(view)
    lots.get(lot_id)
    step: Callable[[str], Iterable[str]] = lots.parents if direction == "back" else lots.children
    order, depth, truncated = walk(lot_id, step, max_nodes)
    return [lots.get(visited) for visited in order], depth, truncated


def recalled_upstream(view: ReadableState, lot_id: str, max_nodes: int) -> None:
    """Refuse with ``recalled`` if the lot or any ancestor is recalled."""
    lots, _, truncated = _walk(view, lot_id, "back", max_nodes)
    for lot in lots:
        if lot.recalled:
            link = "is" if lot.lot_id == lot_id else f"comes from lot {lot.lot_id}, which is"
            raise Rejected(ErrorCode.RECALLED, f"lot {lot_id} {link} recalled: {lot.recall_reason}")
    if truncated:
        raise Rejected(
            ErrorCode.LIMIT_EXCEEDED, f"upstream of lot {lot_id} exceeds {max_nodes} lots"
        )


def trace(
    view: ReadableState, lot_id: str, direction: str, max_nodes: int, max_events: int
) -> dict[str, object]:
    """``trace_back`` or ``trace_forward``: lots with their events and edges."""
    lots, depth, truncated = _walk(view, lot_id, direction, max_nodes)
    included = {lot.lot_id for lot in lots}
    nodes: list[dict[str, object]] = []
    edges: list[list[str]] = []
    for lot in lots:
        events, more = read_events(view, PACK, lot.lot_id, max_events)
        truncated = truncated or more
        node: dict[str, object] = asdict(lot)
        node["depth"] = depth[lot.lot_id]
        node["events"] = [event.to_dict() for event in events]
        nodes.append(node)
        edges.extend([parent, lot.lot_id] for parent in lot.parents if parent in included)
    return {"lot_id": lot_id, "nodes": nodes, "edges": sorted(edges), "truncated": truncated}


def recall_impact(view: ReadableState, lot_id: str, max_nodes: int) -> dict[str, object]:
    """Every lot downstream of ``lot_id`` and who owns and holds each now."""
    lots, depth, truncated = _walk(view, lot_id, "forward", max_nodes)
    affected = [
        {
            "lot_id": lot.lot_id,
            "product": lot.product,
            "mass_grams": lot.mass_grams,
            "status": lot.status,
            "owner": lot.owner,
            "custodian": lot.custodian,
            "destination": lot.destination,
            "recalled": lot.recalled,
            "depth": depth[lot.lot_id],
        }
        for lot in lots[1:]
    ]
    holders = sorted(
        {lot.custodian for lot in lots if lot.status != "consumed"}
        | {lot.destination for lot in lots if lot.destination}
    )
    return {
        "lot_id": lot_id,
        "recalled": lots[0].recalled,
        "affected": affected,
        "holders": holders,
        "truncated": truncated,
    }
