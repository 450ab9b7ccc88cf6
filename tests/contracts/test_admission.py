"""check_stateless(): admission runs execution's own argument checks, and only those.

Three things are checked.  The method table pairs every method with a
parse function and nothing else dispatches.  Arguments that can never be
valid (a negative weight, a missing field, a malformed identifier, an
unknown method) are refused with the contract's own code and message.
And, as a property over arbitrary argument maps for every method, a
refusal by ``check_stateless`` is exactly the refusal ``execute`` gives
the same signed transaction against a genesis state, changing nothing
but the sender's nonce: admission never refuses what execution would
accept, nor with another code.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import pytest
from contracts_testkit import CHAIN_ID, make_genesis, signer_for
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from snapshot_root import pairs

from contracts.admission import check_stateless
from contracts.config import ContractLimits
from contracts.errors import Rejected
from contracts.genesis import genesis_state
from contracts.methods import METHODS, Method, lookup
from contracts.orgs import nonce_key
from contracts.receipt import BlockContext
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction, sign_tx

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
DIGEST = "ab" * 32
OUTPUTS = [{"asset_id": "Q1", "carats_points": 600}, {"asset_id": "Q2", "carats_points": 400}]

# One argument map per method that passes its stateless checks (state may
# still refuse it).  The property below mutates these so that examples
# reach every check of every parse function, not only the first.
TEMPLATES: dict[tuple[str, str], dict[str, object]] = {
    ("membership", "propose"): {
        "action": "add_org",
        "params": {
            "org_id": "newco",
            "name": "New Co",
            "country": "BW",
            "roles": ["certifier"],
            "scopes": ["organic"],
            "keys": [KEY_A],
        },
    },
    ("membership", "vote"): {"proposal_id": DIGEST, "approve": False},
    ("membership", "revoke_own_key"): {"key": KEY_A},
    ("diamonds", "register_mine"): {"mine_id": "M1", "country": "BW", "operator": "debswana"},
    ("diamonds", "set_mine_accreditation"): {"mine_id": "M1", "accredited": False},
    ("diamonds", "extract"): {"mine_id": "M1", "parcel_id": "P1", "carats_points": 1_000},
    ("diamonds", "issue_kp_certificate"): {
        "cert_id": "BW-1",
        "exporter": "debswana",
        "importer": "antwerp",
        "origin_country": "BW",
        "destination_country": "BE",
        "parcels": ["P1", "P2"],
        "hs_code": "7102.31",
        "carats_points": 1_000,
        "value_cents": 0,
        "expiry_height": 100,
    },
    ("diamonds", "ship"): {"cert_id": "BW-1"},
    ("diamonds", "confirm_import"): {"cert_id": "BW-1", "carats_points": 1_000},
    ("diamonds", "reject_import"): {"cert_id": "BW-1", "reason": "short"},
    ("diamonds", "transfer"): {"asset_id": "P1", "to_org": "antwerp", "custody_only": True},
    ("diamonds", "split"): {"asset_id": "P1", "outputs": OUTPUTS},
    ("diamonds", "merge"): {"inputs": ["P1", "P2"], "output_id": "P3"},
    ("diamonds", "cut"): {"asset_id": "P1", "stones": OUTPUTS[:1]},
    ("diamonds", "grade"): {
        "asset_id": "S1",
        "report_id": "R1",
        "carats_points": 100,
        "colour": "D",
        "clarity": "VVS1",
        "cut_grade": "Good",
    },
    ("diamonds", "sell"): {"asset_id": "S1", "buyer_ref": "b-1", "price_cents": 0},
    ("diamonds", "sanction"): {"kind": "country", "target": "ZZ", "reason": "audit"},
    ("diamonds", "lift_sanction"): {"kind": "mine", "target": "M1"},
    ("diamonds", "freeze"): {"asset_id": "P1", "reason": "audit"},
    ("diamonds", "unfreeze"): {"asset_id": "P1"},
    ("diamonds", "revoke_certificate"): {"kind": "grading", "cert_id": "R1", "reason": "x"},
    ("food", "harvest"): {"lot_id": "L1", "product": "wheat", "mass_grams": 5_000},
    ("food", "process"): {
        "inputs": [{"lot_id": "L1", "mass_grams": 5_000}],
        "outputs": [{"lot_id": "L2", "product": "flour", "mass_grams": 4_000}],
    },
    ("food", "ship"): {"lot_id": "L1", "to_org": "mill", "claims": ["organic"]},
    ("food", "receive"): {"lot_id": "L1"},
    ("food", "certify"): {"cert_id": "C1", "lot_id": "L1", "kind": "organic", "expiry_height": 9},
    ("food", "revoke_certificate"): {"cert_id": "C1", "reason": "lapsed"},
    ("food", "recall"): {"lot_id": "L1", "reason": "listeria"},
}
# Parameters of the other governance actions, so that mutated proposals
# reach every action's parse function, not only add_org's.
PROPOSE_PARAMS: list[dict[str, object]] = [
    {"org_id": "acme", "key": KEY_B},
    {"org_id": "acme", "old_key": KEY_A, "new_key": KEY_B},
    {"org_id": "acme", "roles": ["trader"]},
]
ACTIONS = ["add_org", "add_key", "rotate_key", "revoke_key", "set_roles"]

DEFAULT_LIMITS = ContractLimits()
# Small enough for generated arguments to cross every limit; max_id_len
# still admits every genesis organisation's id.
TIGHT_LIMITS = ContractLimits(
    max_tx_bytes=700,
    max_args_depth=4,
    max_string_len=16,
    max_id_len=12,
    max_inputs=3,
    max_outputs=3,
)
SENDERS = ["kp-bw", "debswana", "antwerp", "gia", "jeweller", "regulator", "farm", "mill"]
ADMISSION_CODES = frozenset({"too_large"})


@cache
def genesis_items(limits: ContractLimits) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(genesis_state(make_genesis(limits)))


def signed(sender: str, contract: str, method: str, args: dict[str, object]) -> Transaction:
    return sign_tx(
        signer_for(sender), chain_id=CHAIN_ID, nonce=0, contract=contract, method=method, args=args
    )


# --- the table ---------------------------------------------------------------


def test_every_method_in_the_table_has_a_parse_function_and_a_handler() -> None:
    count = 0
    for contract, methods in METHODS.items():
        for name, entry in methods.items():
            assert isinstance(entry, Method), (contract, name)
            assert callable(entry.parse) and callable(entry.run), (contract, name)
            assert entry.parse.__name__.startswith("parse_"), (contract, name)
            assert lookup(contract, name) is entry
            count += 1
    assert count == 28
    assert set(TEMPLATES) == {(c, m) for c, methods in METHODS.items() for m in methods}


@pytest.mark.parametrize(("contract", "method"), sorted(TEMPLATES))
def test_each_parse_function_reads_its_template_into_a_frozen_dataclass(
    contract: str, method: str
) -> None:
    entry = lookup(contract, method)
    parsed = entry.read(TEMPLATES[contract, method], DEFAULT_LIMITS)
    assert dataclasses.is_dataclass(parsed)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(parsed, dataclasses.fields(parsed)[0].name, None)
    tx = signed("kp-bw", contract, method, TEMPLATES[contract, method])
    assert check_stateless(tx, DEFAULT_LIMITS) is None


def test_a_parse_function_that_forgets_done_is_a_broken_invariant() -> None:
    sloppy = Method(lambda args, limits: args.ident("mine_id"), lambda call, parsed: None, False)
    with pytest.raises(AssertionError, match="done"):
        sloppy.read({"mine_id": "M1"}, DEFAULT_LIMITS)


# --- arguments that can never be valid ------------------------------------------


def refusal(contract: str, method: str, args: dict[str, object]) -> Rejected:
    found = check_stateless(signed("debswana", contract, method, args), DEFAULT_LIMITS)
    assert found is not None, f"{contract}.{method} {args} passed the stateless checks"
    return found


EXTRACT = TEMPLATES["diamonds", "extract"]


def test_extract_with_negative_carats_is_refused_with_the_contracts_code() -> None:
    found = refusal("diamonds", "extract", {**EXTRACT, "carats_points": -100_000})
    assert (found.code, found.message) == (
        "invalid_argument",
        "carats_points must be an integer in 1..2**62",
    )


def test_extract_with_a_missing_field_is_refused() -> None:
    args = {key: value for key, value in EXTRACT.items() if key != "parcel_id"}
    found = refusal("diamonds", "extract", args)
    assert (found.code, found.message) == ("invalid_argument", "missing argument 'parcel_id'")


def test_extract_with_a_bad_identifier_is_refused() -> None:
    found = refusal("diamonds", "extract", {**EXTRACT, "parcel_id": "P/1"})
    assert found.code == "invalid_argument"
    assert found.message.startswith("parcel_id must be an identifier")


def test_extract_with_an_unknown_argument_is_refused() -> None:
    found = refusal("diamonds", "extract", {**EXTRACT, "colour": "red"})
    assert (found.code, found.message) == ("invalid_argument", "unknown argument(s) ['colour']")


def test_an_unknown_method_or_contract_is_refused() -> None:
    assert refusal("diamonds", "dig", EXTRACT).code == "unknown_method"
    assert refusal("gold", "extract", EXTRACT).code == "unknown_contract"


def test_a_list_over_the_genesis_limit_is_refused_with_limit_exceeded() -> None:
    outputs = [{"asset_id": f"Q{i}", "carats_points": 1} for i in range(4)]
    tx = signed("debswana", "diamonds", "split", {"asset_id": "P1", "outputs": outputs})
    found = check_stateless(tx, ContractLimits(max_outputs=3))
    assert found is not None and found.code == "limit_exceeded"
    assert check_stateless(tx, DEFAULT_LIMITS) is None


def test_an_envelope_over_the_size_or_depth_limit_is_refused_as_too_large() -> None:
    tx = signed("debswana", "diamonds", "extract", {**EXTRACT, "parcel_id": "P" * 5_000})
    found = check_stateless(tx, ContractLimits(max_tx_bytes=1_000))
    assert found is not None and found.code == "too_large"
    deep = signed("debswana", "diamonds", "extract", {"mine_id": [[[[[[["M1"]]]]]]]})
    found = check_stateless(deep, DEFAULT_LIMITS)
    assert found is not None and found.code == "too_large"


def test_a_malformed_proposal_is_refused_before_it_is_ordered() -> None:
    params = {"org_id": "acme", "key": b"short"}
    found = refusal("membership", "propose", {"action": "add_key", "params": params})
    assert (found.code, found.message) == (
        "invalid_argument",
        "key must be a 32-byte Ed25519 public key",
    )


def test_checks_that_need_state_are_left_to_execution() -> None:
    # Mine M9 does not exist and the sender is no operator: only state says so.
    tx = signed("debswana", "diamonds", "extract", {**EXTRACT, "mine_id": "M9"})
    assert check_stateless(tx, DEFAULT_LIMITS) is None
    state = MemoryState(genesis_items(DEFAULT_LIMITS))
    assert execute(state, tx, BlockContext(1, 0, "v0")).error == "unknown_mine"


# --- the property: admission's refusal is execution's refusal --------------------

KNOWN_NAMES = sorted(
    {name for args in TEMPLATES.values() for name in args}
    | {name for params in PROPOSE_PARAMS for name in params}
    | {"org_id", "name", "country", "roles", "scopes", "keys", "asset_id", "carats_points"}
)
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([-100_000, -1, 0, 1, 2**62, 2**62 + 1]),
    _text,
    st.sampled_from(["", "P1", "BW", "bw", "a/b", "7102.31", "organic", "country", DIGEST]),
    st.sampled_from(["x" * 13, "x" * 17, "x" * 65, "BW-" + "9" * 70]),
    st.binary(max_size=40),
    st.just(KEY_A),
)
_keys = st.one_of(st.sampled_from(KNOWN_NAMES), _text)
values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=12,
)


def mutate(data: st.DataObject, value: object, depth: int = 0) -> object:
    """The value with one random change somewhere inside it."""
    if isinstance(value, dict) and value and depth < 4 and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        changed = dict(value)
        how = data.draw(st.sampled_from(["inside", "replace", "drop", "add"]))
        if how == "inside":
            changed[key] = mutate(data, value[key], depth + 1)
        elif how == "replace":
            changed[key] = data.draw(values)
        elif how == "drop":
            del changed[key]
        else:
            changed[data.draw(_keys)] = data.draw(values)
        return changed
    if isinstance(value, list) and value and depth < 4 and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        changed_list = list(value)
        how = data.draw(st.sampled_from(["inside", "replace", "drop", "repeat", "grow"]))
        if how == "inside":
            changed_list[index] = mutate(data, value[index], depth + 1)
        elif how == "replace":
            changed_list[index] = data.draw(values)
        elif how == "drop":
            del changed_list[index]
        elif how == "repeat":
            changed_list.append(value[index])
        else:  # past the tight limits' list sizes
            changed_list.extend(value[index : index + 1] * 3)
        return changed_list
    return data.draw(values)


def arguments(data: st.DataObject, contract: str, method: str) -> dict[str, object]:
    template = TEMPLATES.get((contract, method), EXTRACT)
    if (contract, method) == ("membership", "propose") and data.draw(st.booleans()):
        params = data.draw(st.sampled_from(PROPOSE_PARAMS))
        template = {"action": data.draw(st.sampled_from(ACTIONS)), "params": params}
    how = data.draw(st.sampled_from(["template", "grown", "mutated", "mutated", "random"]))
    if how == "template":
        return template
    if how == "grown":  # every list past the tight limits' sizes
        return {k: v * 4 if isinstance(v, list) else v for k, v in template.items()}
    if how == "random":
        return data.draw(st.dictionaries(_keys, values, max_size=8))
    args: object = template
    for _ in range(data.draw(st.integers(1, 3))):
        args = mutate(data, args)
    return args if isinstance(args, dict) else {"value": args}


method_names = st.sampled_from(
    [*sorted(TEMPLATES), ("diamonds", "dig"), ("gold", "extract"), ("food", "propose")]
)


def assert_admission_agrees_with_execution(
    data: st.DataObject, limits: ContractLimits, contract: str, method: str
) -> None:
    sender = data.draw(st.sampled_from(SENDERS))
    tx = signed(sender, contract, method, arguments(data, contract, method))
    refused = check_stateless(tx, limits)
    state = MemoryState(genesis_items(limits))
    before = dict(pairs(state))
    receipt = execute(state, tx, BlockContext(1, 1_700_000_000_000, "v0"))
    event(f"refused {refused.code}" if refused else f"admitted, executed {receipt.error or 'ok'}")
    if refused is None:
        return
    assert (receipt.error, receipt.message) == (refused.code, refused.message), tx.args
    after = dict(pairs(state))
    nonce = nonce_key(tx.sender)
    assert {k: v for k, v in after.items() if k != nonce} == before
    if refused.code in ADMISSION_CODES:
        assert nonce not in after
    else:
        assert after[nonce] == b"\x01"  # the canonical encoding of 1


AGREEMENT = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(st.data(), method_names)
def test_a_stateless_refusal_is_the_refusal_execution_gives(
    data: st.DataObject, name: tuple[str, str]
) -> None:
    assert_admission_agrees_with_execution(data, DEFAULT_LIMITS, *name)


@AGREEMENT
@given(st.data(), method_names)
def test_a_stateless_refusal_under_tight_limits_is_the_refusal_execution_gives(
    data: st.DataObject, name: tuple[str, str]
) -> None:
    assert_admission_agrees_with_execution(data, TIGHT_LIMITS, *name)
