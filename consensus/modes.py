"""The replica's modes, what each does with every input, and how modes change.

Theory of operation
-------------------
A replica is always in one of two modes for its current view ``v``:

* ``ACTIVE``: it operates in view ``v``.  It orders requests (the normal
  case: PRE-PREPARE, PREPARE, COMMIT, then delivery in height order), takes
  checkpoints, and runs the request timer that makes it suspect the primary.
* ``CHANGING``: it has voted VIEW-CHANGE(v) and waits for the NEW-VIEW of
  ``v``.  It orders nothing: view-stamped messages are buffered, a bounded
  number per sender, and replayed once the view starts.  Checkpoints, view
  changes, STATUS and state transfer go on; the new-view timer runs.

Catching up (state transfer) is not a mode: a replica in either mode that
learns the cluster is ahead of it fetches the missing blocks, each with its
commit certificate, while it keeps doing what its mode does.

``ROUTES`` below is the one table of the replica's behaviour: for every mode
and every kind of input (a peer's message, a local request, a tick of the
clock, an execution result) it names the ``Route`` that ``Replica.step``
takes, and that route's handler is the only code that runs for it.  Every
(mode, kind) pair appears exactly once.  Before routing, ``Replica.step``
drops, whatever the mode, a message that is not from a validator, that is
our own, that it already holds, or whose signature is bad (counted in
``dropped``).

Modes change only through ``TRANSITIONS``: a handler that decides to leave
its view or to start one names a ``Trigger``, and the table gives the next
mode.  A trigger the table does not list for the current mode is a bug in
the replica, not a peer's fault: ``next_mode`` raises
:class:`InvariantViolation` and the host must stop.

::

    ACTIVE --SUSPECTED / VIEW_CHANGES_ABOVE / EQUIVOCATION / NEW_EPOCH--> CHANGING (view + 1 or above)
    CHANGING --SUSPECTED / VIEW_CHANGES_ABOVE--> CHANGING (a later view)
    CHANGING --NEW_VIEW--> ACTIVE      ACTIVE --NEW_VIEW (of a later view)--> ACTIVE

A restart does not transition: the mode comes back from the last
``ViewRecord`` on disk (see restore.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from consensus.events import ClientRequest, Executed, Tick
from consensus.messages import (
    Checkpoint,
    Commit,
    ForwardedRequest,
    NewView,
    Prepare,
    PrePrepare,
    StateRequest,
    StateResponse,
    Status,
    ViewChange,
)


class InvariantViolation(AssertionError):
    """The replica's own state is inconsistent: the host must stop it."""


class Mode(Enum):
    ACTIVE = "active"
    CHANGING = "changing"


class Route(Enum):
    """What a replica does with one input; ``Replica.step`` runs its handler."""

    # PRE-PREPARE, PREPARE, COMMIT: a stale one (earlier view, or at or below
    # the stable checkpoint) is dropped; one for a later view or beyond the
    # window is buffered; one for this view is voted on (normal_case).  Two
    # signed proposals for one height are evidence against the primary.
    ORDER = "order"
    # The same while changing views: dropped if stale, else buffered.
    BUFFER = "buffer"
    # CHECKPOINT: counted; a quorum makes it stable and moves the window.
    CHECKPOINT = "checkpoint"
    # VIEW-CHANGE while active: one for a later view counts toward leaving
    # ours; one for our view or an earlier one is evidence the sender is
    # behind, and it gets the NEW-VIEW that started our view.
    VIEW_CHANGE_OR_ANSWER = "view_change_or_answer"
    # VIEW-CHANGE while changing: one for our view or a later one counts;
    # an earlier one is ignored (we have no NEW-VIEW to answer with).
    VIEW_CHANGE = "view_change"
    # NEW-VIEW while active: only one for a later view is taken (checked,
    # then entered); one for ours or earlier is dropped as stale.
    NEW_VIEW_ABOVE = "new_view_above"
    # NEW-VIEW while changing: one for our view or a later one is taken.
    NEW_VIEW = "new_view"
    # STATUS: the peer's height, view and suspicion are noted; it may be
    # sent the stable proof or the NEW-VIEW it lacks.
    STATUS = "status"
    # StateRequest / StateResponse: state transfer, in either mode.
    SERVE_BLOCKS = "serve_blocks"
    STATE_TRANSFER = "state_transfer"
    # A request a peer forwarded, or a local client's: kept while waiting;
    # an active backup also forwards a local one to the primary.
    KEEP_REQUEST = "keep_request"
    KEEP_AND_FORWARD_REQUEST = "keep_and_forward_request"
    # Tick while active: the request timer (suspect the primary);
    # while changing: the new-view timer (suspect the new primary).
    REQUEST_TIMER = "request_timer"
    NEW_VIEW_TIMER = "new_view_timer"
    # Executed: the state root of a delivered block, maybe our CHECKPOINT.
    EXECUTED = "executed"


InputKind = type

# The table: mode x input kind -> route.  One row per pair, read top to bottom
# as "in this mode, this input goes there".
ROUTE_ROWS: tuple[tuple[Mode, InputKind, Route], ...] = (
    (Mode.ACTIVE, PrePrepare, Route.ORDER),
    (Mode.ACTIVE, Prepare, Route.ORDER),
    (Mode.ACTIVE, Commit, Route.ORDER),
    (Mode.ACTIVE, Checkpoint, Route.CHECKPOINT),
    (Mode.ACTIVE, ViewChange, Route.VIEW_CHANGE_OR_ANSWER),
    (Mode.ACTIVE, NewView, Route.NEW_VIEW_ABOVE),
    (Mode.ACTIVE, Status, Route.STATUS),
    (Mode.ACTIVE, StateRequest, Route.SERVE_BLOCKS),
    (Mode.ACTIVE, StateResponse, Route.STATE_TRANSFER),
    (Mode.ACTIVE, ForwardedRequest, Route.KEEP_REQUEST),
    (Mode.ACTIVE, ClientRequest, Route.KEEP_AND_FORWARD_REQUEST),
    (Mode.ACTIVE, Tick, Route.REQUEST_TIMER),
    (Mode.ACTIVE, Executed, Route.EXECUTED),
    (Mode.CHANGING, PrePrepare, Route.BUFFER),
    (Mode.CHANGING, Prepare, Route.BUFFER),
    (Mode.CHANGING, Commit, Route.BUFFER),
    (Mode.CHANGING, Checkpoint, Route.CHECKPOINT),
    (Mode.CHANGING, ViewChange, Route.VIEW_CHANGE),
    (Mode.CHANGING, NewView, Route.NEW_VIEW),
    (Mode.CHANGING, Status, Route.STATUS),
    (Mode.CHANGING, StateRequest, Route.SERVE_BLOCKS),
    (Mode.CHANGING, StateResponse, Route.STATE_TRANSFER),
    (Mode.CHANGING, ForwardedRequest, Route.KEEP_REQUEST),
    (Mode.CHANGING, ClientRequest, Route.KEEP_REQUEST),
    (Mode.CHANGING, Tick, Route.NEW_VIEW_TIMER),
    (Mode.CHANGING, Executed, Route.EXECUTED),
)

ROUTES: Mapping[tuple[Mode, InputKind], Route] = {
    (mode, kind): route for mode, kind, route in ROUTE_ROWS
}


class Trigger(Enum):
    """Why a replica leaves its view or starts one."""

    # f+1 replicas, this one included, suspect the primary of its view (its
    # request timer while active, its new-view timer while changing).
    SUSPECTED = "suspected"
    # f+1 peers sent VIEW-CHANGE for views above ours: one of them is honest.
    VIEW_CHANGES_ABOVE = "view_changes_above"
    # The primary signed two different proposals for one height.  Proposals
    # are only ordered while active, so this never fires while changing.
    EQUIVOCATION = "equivocation"
    # A valid NEW-VIEW for our view or a later one: received, built by us as
    # the new primary, or found on disk after a crash.
    NEW_VIEW = "new_view"
    # A stable checkpoint moved our window into a new validator set's epoch
    # (consensus.epochs): every epoch's views start with a NEW-VIEW of that
    # set, so that a validator joining or catching up can check the NEW-VIEW
    # of the view it finds the others in.
    NEW_EPOCH = "new_epoch"


@dataclass(frozen=True)
class Transition:
    mode: Mode
    trigger: Trigger
    next_mode: Mode


TRANSITION_ROWS: tuple[Transition, ...] = (
    Transition(Mode.ACTIVE, Trigger.SUSPECTED, Mode.CHANGING),
    Transition(Mode.ACTIVE, Trigger.VIEW_CHANGES_ABOVE, Mode.CHANGING),
    Transition(Mode.ACTIVE, Trigger.EQUIVOCATION, Mode.CHANGING),
    Transition(Mode.ACTIVE, Trigger.NEW_VIEW, Mode.ACTIVE),
    Transition(Mode.ACTIVE, Trigger.NEW_EPOCH, Mode.CHANGING),
    Transition(Mode.CHANGING, Trigger.SUSPECTED, Mode.CHANGING),
    Transition(Mode.CHANGING, Trigger.VIEW_CHANGES_ABOVE, Mode.CHANGING),
    Transition(Mode.CHANGING, Trigger.NEW_VIEW, Mode.ACTIVE),
)

TRANSITIONS: Mapping[tuple[Mode, Trigger], Mode] = {
    (row.mode, row.trigger): row.next_mode for row in TRANSITION_ROWS
}


def route(mode: Mode, kind: InputKind) -> Route:
    """The route an input of ``kind`` takes in ``mode``."""
    found = ROUTES.get((mode, kind))
    if found is None:
        raise ValueError(f"not a replica input: {kind.__name__}")
    return found


def next_mode(mode: Mode, trigger: Trigger) -> Mode:
    """The mode ``trigger`` leads to from ``mode``; a pair not in the table
    means the replica's own logic went wrong."""
    found = TRANSITIONS.get((mode, trigger))
    if found is None:
        raise InvariantViolation(f"no transition from {mode.name} on {trigger.name}")
    return found
