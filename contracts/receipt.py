"""Block context, events and receipts: what goes into and out of execute.

Theory of operation
-------------------
:class:`BlockContext` is the contracts' only view of the world: the height
and consensus time of the block being executed and who proposed it.  No
other clock or source of input exists in contracts/.

Every executed transaction yields a :class:`Receipt`: ok with the events
the transaction emitted, or rejected with a stable error code and a
message naming the failing link.  The node stores receipts and hashes
them, so :meth:`Receipt.to_dict` gives a value the canonical codec
encodes to the same bytes on every node; :meth:`Receipt.from_dict` reads
that form back and raises :class:`~consensus.codec.ShapeError` for
anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from consensus.codec import DIGEST_SIZE, FieldReader, ShapeError
from contracts.errors import ErrorCode
from contracts.results import EMPTY_WRITES_DIGEST, receipt_leaf

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class BlockContext:
    """The block a transaction executes in."""

    height: int
    time_ms: int  # consensus time of the block, milliseconds since the epoch
    proposer: str  # the proposing validator's id

    def __post_init__(self) -> None:
        if not isinstance(self.height, int) or self.height < 0:
            raise TypeError("BlockContext.height must be a non-negative int")
        if not isinstance(self.time_ms, int) or self.time_ms < 0:
            raise TypeError("BlockContext.time_ms must be a non-negative int")
        if not isinstance(self.proposer, str):
            raise TypeError("BlockContext.proposer must be str")


@dataclass(frozen=True, slots=True)
class Event:
    """Something a transaction did, for subscribers and indexers."""

    contract: str
    kind: str
    attributes: dict[str, object] = field(default_factory=dict)

    FIELDS: ClassVar[frozenset[str]] = frozenset({"contract", "kind", "attributes"})

    def to_dict(self) -> dict[str, object]:
        return {"contract": self.contract, "kind": self.kind, "attributes": self.attributes}

    @classmethod
    def from_dict(cls, value: object, what: str = "event") -> Event:
        fields = FieldReader.of(value, cls.FIELDS, what)
        attributes = fields.values["attributes"]
        if not isinstance(attributes, dict):
            raise ShapeError(f"{what}.attributes must be a map")
        return cls(fields.text("contract"), fields.text("kind"), attributes)


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one transaction."""

    tx_id: bytes
    status: str
    error: ErrorCode | None = None
    message: str = ""
    events: tuple[Event, ...] = ()
    writes: int = 0
    # SHA-256 over what the transaction wrote (contracts.results.writes_digest).
    writes_digest: bytes = EMPTY_WRITES_DIGEST

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"tx_id", "status", "error", "message", "events", "writes", "writes_digest"}
    )

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_dict(self) -> dict[str, object]:
        return {
            "tx_id": self.tx_id,
            "status": self.status,
            "error": None if self.error is None else str(self.error),
            "message": self.message,
            "events": [event.to_dict() for event in self.events],
            "writes": self.writes,
            "writes_digest": self.writes_digest,
        }

    @classmethod
    def from_dict(cls, value: object, what: str = "receipt") -> Receipt:
        """Read :meth:`to_dict`'s form; :class:`~consensus.codec.ShapeError` if
        malformed or if its error is not one of :class:`ErrorCode`."""
        fields = FieldReader.of(value, cls.FIELDS, what)
        events = fields.values["events"]
        if not isinstance(events, list):
            raise ShapeError(f"{what}.events must be a list")
        return cls(
            tx_id=fields.blob("tx_id", (DIGEST_SIZE,)),
            status=fields.text("status"),
            error=_error_code(fields.values["error"], f"{what}.error"),
            message=fields.text("message"),
            events=tuple(
                Event.from_dict(event, f"{what}.events[{n}]") for n, event in enumerate(events)
            ),
            writes=fields.integer("writes"),
            writes_digest=fields.blob("writes_digest", (DIGEST_SIZE,)),
        )

    def leaf(self) -> bytes:
        """This receipt's leaf in its height's receipts root (contracts.results)."""
        code = None if self.error is None else str(self.error)
        return receipt_leaf(self.tx_id, self.status, code, self.writes_digest)


def _error_code(value: object, what: str) -> ErrorCode | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in ErrorCode.__members__.values():
        raise ShapeError(f"{what} must be null or an error code")
    return ErrorCode(value)
