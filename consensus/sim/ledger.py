"""Every vote each honest replica sends, to catch one contradicting another.

An honest replica never signs two different values for one (kind, view,
height): two pre-prepares (also those inside its NEW-VIEW), prepares or
commits, two checkpoints for one height, two view changes or new views for
one view.  The simulator records what each honest replica sends, across its
crashes and restarts, and reports any such pair as a safety violation: it is
how a broken persist-before-send rule shows up.
"""

from __future__ import annotations

from consensus.messages import (
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
)

VoteKey = tuple[str, int, int]


def vote_key(message: Message) -> tuple[VoteKey, bytes] | None:
    """The slot a vote occupies and the value it gives it; None for non-votes."""
    match message:
        case Prepare() | Commit():
            return (message.DOMAIN, message.view, message.height), message.digest
        case PrePrepare():
            return ("pre-prepare", message.view, message.height), message.batch.digest
        case Checkpoint():
            return ("checkpoint", 0, message.height), message.results_root
        case ViewChange():
            return ("view-change", message.new_view, 0), message.ident
        case NewView():
            return ("new-view", message.view, 0), message.ident
    return None


class VoteLedger:
    """What each sender has signed so far, one value per slot."""

    def __init__(self) -> None:
        self._values: dict[int, dict[VoteKey, bytes]] = {}

    def record(self, sender: int, message: Message) -> list[str]:
        """Record ``sender``'s own message; return the contradictions it makes."""
        if getattr(message, "sender", None) != sender:
            return []  # relayed evidence signed by someone else, or unsigned
        carried = list(message.pre_prepares) if isinstance(message, NewView) else []
        found = []
        values = self._values.setdefault(sender, {})
        for item in [message, *carried]:
            entry = vote_key(item)
            if entry is None:
                continue
            key, value = entry
            if values.setdefault(key, value) != value:
                found.append(f"equivocation: replica {sender} sent two different {key}")
        return found
