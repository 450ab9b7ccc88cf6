"""Genesis: state 0 is deterministic, and a malformed genesis is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from contracts_testkit import make_genesis, signer_for
from snapshot_root import root_from_snapshot

from contracts.config import CONFIG_KEY, ChainConfig, ContractLimits
from contracts.genesis import GenesisOrg, genesis_state
from contracts.state import MemoryState


def test_genesis_state_is_sorted_deterministic_and_carries_the_config() -> None:
    writes = genesis_state(make_genesis())
    assert writes == sorted(writes) == genesis_state(make_genesis())
    config = ChainConfig.from_bytes(dict(writes)[CONFIG_KEY])
    assert config == make_genesis().config()
    assert config.max_cutting_yield_bp == 6_000 and config.kp_participants == (
        "BE",
        "BW",
        "IN",
        "US",
    )
    assert MemoryState(writes).root() == root_from_snapshot(writes)


def test_limits_travel_in_state() -> None:
    limits = ContractLimits(max_trace_nodes=7, max_writes_per_tx=9)
    config = ChainConfig.from_bytes(dict(genesis_state(make_genesis(limits)))[CONFIG_KEY])
    assert config.limits == limits


def test_a_different_genesis_gives_a_different_root() -> None:
    base = make_genesis()
    assert root_from_snapshot(genesis_state(base)) != root_from_snapshot(
        genesis_state(replace(base, max_cutting_yield_bp=5_000))
    )


@pytest.mark.parametrize(
    "change",
    [
        {"threshold_numerator": 0},
        {"threshold_numerator": 4, "threshold_denominator": 3},
        {"max_cutting_yield_bp": 10_001},
        {"kp_participants": ("Botswana",)},
        {"chain_id": ""},
        {"organisations": ()},
    ],
)
def test_malformed_genesis_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        genesis_state(replace(make_genesis(), **change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "member",
    [
        GenesisOrg("x", "X", "BW", ("wizard",), (signer_for("x").public_key,)),
        GenesisOrg("x", "X", "BW", ("trader",), (signer_for("x").public_key,), ("kp_authority",)),
        GenesisOrg("x", "X", "BW", ("trader",), ()),
        GenesisOrg("x", "X", "BW", ("trader",), (b"short",)),
        GenesisOrg("a/b", "X", "BW", ("trader",), (signer_for("x").public_key,)),
        GenesisOrg("kp-bw", "dup", "BW", ("trader",), (signer_for("x").public_key,)),
        GenesisOrg("x", "X", "BW", ("trader",), (signer_for("kp-bw").public_key,)),
    ],
)
def test_malformed_members_are_refused(member: GenesisOrg) -> None:
    base = make_genesis()
    with pytest.raises(ValueError):
        genesis_state(replace(base, organisations=(*base.organisations, member)))


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValueError):
        ContractLimits(max_steps_per_tx=0)
