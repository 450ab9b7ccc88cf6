"""Chain-wide parameters: named limits and the rules genesis fixes.

Theory of operation
-------------------
Every bound the contract layer enforces has a name here.  The values are
written into state by genesis (key ``config``), and the runtime reads them
from state on every transaction, so every node enforces the same limits
for the same block without any out-of-band agreement: changing a limit
is a state change like any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from consensus.codec import decode, encode

CONFIG_KEY = b"config"


@dataclass(frozen=True, slots=True)
class ContractLimits:
    """Bounds on the size of a transaction and the work it may do."""

    max_tx_bytes: int = 64 * 1024
    max_args_depth: int = 6
    max_collection_len: int = 1024
    max_string_len: int = 4096
    max_id_len: int = 64
    # Every state read, write or scanned item costs one step.
    max_steps_per_tx: int = 50_000
    # Distinct keys a transaction may write (its nonce excluded).
    max_writes_per_tx: int = 2_000
    # Parcels split or cut into, lots consumed or produced by one step.
    max_inputs: int = 256
    max_outputs: int = 256
    # Assets (or lots) a provenance walk may visit before it stops: a query
    # then answers with truncated=True, a rule that needs the whole DAG
    # refuses with limit_exceeded.
    max_trace_nodes: int = 2_000
    max_events_per_node: int = 256
    max_query_steps: int = 500_000

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer")


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """What genesis fixes for the life of the chain (or until governance)."""

    chain_id: str
    # A proposal passes when approving organisations * denominator >=
    # numerator * member organisations (integers only: no fractions).
    threshold_numerator: int
    threshold_denominator: int
    kp_participants: tuple[str, ...]
    # Polished carats may be at most this many basis points of the rough.
    max_cutting_yield_bp: int
    limits: ContractLimits = field(default_factory=ContractLimits)

    def to_value(self) -> dict[str, object]:
        return {
            "chain_id": self.chain_id,
            "threshold_numerator": self.threshold_numerator,
            "threshold_denominator": self.threshold_denominator,
            "kp_participants": list(self.kp_participants),
            "max_cutting_yield_bp": self.max_cutting_yield_bp,
            "limits": asdict(self.limits),
        }

    @classmethod
    def from_bytes(cls, raw: bytes) -> ChainConfig:
        value = decode(raw)
        assert isinstance(value, dict), "config record is a map"
        limits = value["limits"]
        assert isinstance(limits, dict)
        participants = value["kp_participants"]
        assert isinstance(participants, list)
        return cls(
            chain_id=_expect_str(value["chain_id"]),
            threshold_numerator=_expect_int(value["threshold_numerator"]),
            threshold_denominator=_expect_int(value["threshold_denominator"]),
            kp_participants=tuple(_expect_str(item) for item in participants),
            max_cutting_yield_bp=_expect_int(value["max_cutting_yield_bp"]),
            limits=ContractLimits(**{key: _expect_int(item) for key, item in limits.items()}),
        )

    def to_bytes(self) -> bytes:
        return encode(self.to_value())


def _expect_str(value: object) -> str:
    assert isinstance(value, str), "config field is a string"
    return value


def _expect_int(value: object) -> int:
    assert isinstance(value, int), "config field is an integer"
    return value


_CACHE: dict[bytes, ChainConfig] = {}


def load_config(raw: bytes | None) -> ChainConfig:
    """Parse the config record, memoised on its exact bytes.

    Parsing is a pure function of the bytes, so the memo cannot make two
    nodes disagree; it only saves a decode per transaction.
    """
    if raw is None:
        raise ValueError("state has no config record: build it with genesis_state()")
    config = _CACHE.get(raw)
    if config is None:
        config = ChainConfig.from_bytes(raw)
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[raw] = config
    return config
