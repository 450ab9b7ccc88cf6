"""The engine tells the replica of executed blocks in the order it executed them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from consensus.events import Deliver, Effect, Event, Executed
from node.runtime.engine import Engine


class _Replica:
    """Delivers block 3 when told block 1 executed (as a replica does when an
    execution settles heights its validator history held back)."""

    def __init__(self) -> None:
        self.executed: list[int] = []

    def step(self, event: Event) -> list[Effect]:
        assert isinstance(event, Executed)
        self.executed.append(event.height)
        return [Deliver(3)] if event.height == 1 else []  # type: ignore[arg-type]


def test_blocks_delivered_while_hearing_of_an_execution_are_reported_after_it() -> None:
    engine: Any = Engine.__new__(Engine)
    engine.replica = _Replica()
    engine._execute = lambda height: SimpleNamespace(
        height=height, results_root=b"", validators=None
    )
    engine._carry_out([Deliver(1), Deliver(2)])  # type: ignore[arg-type]
    # Before: [1, 3, 2], and the replica stopped the node ("executed height
    # 3 out of order").
    assert engine.replica.executed == [1, 2, 3]
