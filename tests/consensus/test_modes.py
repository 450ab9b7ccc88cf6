"""The mode table in consensus/modes.py is complete, and the replica obeys it.

``Replica.step`` routes every input by (mode, kind) and changes modes only
through the transition table; a reader trusts that table, so these tests
check that it has one row for every pair and that a transition it lacks
stops the replica instead of happening.
"""

from __future__ import annotations

from collections import Counter
from itertools import product
from typing import get_args

import pytest
from helpers import batch, node, pre_prepare, request

from consensus import view_change
from consensus.events import ClientRequest, Executed, Tick
from consensus.messages import Commit, Message, Prepare, PrePrepare
from consensus.modes import (
    ROUTE_ROWS,
    TRANSITION_ROWS,
    InvariantViolation,
    Mode,
    Route,
    Trigger,
    next_mode,
    route,
)
from consensus.normal_case import Equivocation

INPUT_KINDS = (*get_args(Message), ClientRequest, Tick, Executed)


def test_the_route_table_has_exactly_one_row_for_every_mode_and_input_kind() -> None:
    rows = Counter((mode, kind) for mode, kind, _ in ROUTE_ROWS)
    assert set(rows) == set(product(Mode, INPUT_KINDS))
    assert all(count == 1 for count in rows.values())


def test_every_route_is_taken_in_some_mode_and_every_trigger_leads_somewhere() -> None:
    assert {r for _, _, r in ROUTE_ROWS} == set(Route)
    assert {row.trigger for row in TRANSITION_ROWS} == set(Trigger)
    pairs = Counter((row.mode, row.trigger) for row in TRANSITION_ROWS)
    assert all(count == 1 for count in pairs.values())


def test_normal_case_messages_are_ordered_while_active_and_buffered_while_changing() -> None:
    for kind in (PrePrepare, Prepare, Commit):
        assert route(Mode.ACTIVE, kind) is Route.ORDER
        assert route(Mode.CHANGING, kind) is Route.BUFFER


def test_a_new_view_is_the_only_way_back_to_active() -> None:
    into_active = {row.trigger for row in TRANSITION_ROWS if row.next_mode is Mode.ACTIVE}
    assert into_active == {Trigger.NEW_VIEW}
    assert next_mode(Mode.CHANGING, Trigger.NEW_VIEW) is Mode.ACTIVE
    assert next_mode(Mode.ACTIVE, Trigger.SUSPECTED) is Mode.CHANGING


def test_a_transition_missing_from_the_table_is_an_invariant_violation() -> None:
    with pytest.raises(InvariantViolation, match="CHANGING on EQUIVOCATION"):
        next_mode(Mode.CHANGING, Trigger.EQUIVOCATION)


def test_a_replica_changing_views_that_is_asked_to_depose_for_equivocation_stops() -> None:
    backup = node(1)
    first = pre_prepare(0, batch(1, request("a")))
    second = pre_prepare(0, batch(1, request("b")))
    backup.receive(first)
    backup.receive(second)  # equivocation: the replica votes to leave view 0
    assert backup.replica.mode is Mode.CHANGING

    # Proposals are never ordered while changing views, so evidence of
    # equivocation reaching the replica now is its own bug, and it stops.
    with pytest.raises(InvariantViolation):
        view_change.depose_equivocating_primary(
            backup.replica, Equivocation(first, second), effects=[]
        )


def test_an_input_of_no_known_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a replica input"):
        route(Mode.ACTIVE, int)
