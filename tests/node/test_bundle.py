"""Provenance bundles: built by a real node, checked offline with only the genesis.

One in-process validator runs a 10-step diamond history (mine registration
to retail sale) through the SDK, serves the bundle over HTTP, and is then
stopped: every check below runs with no node at all.  Tampering tests
change one thing each and expect the failure to name it; a sweep flips
bytes all over the file and expects every flip to fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netfixture import free_base_port

from consensus.codec import Ed25519Signer, decode, digest, encode
from contracts.orgs import KeyRecord, key_key, sanction_key
from contracts.records import record_from_bytes, record_to_bytes
from contracts.tx import decode_tx, encode_tx, sign_tx
from node.api.bundle import UnknownAsset, build_bundle, entry_of, prepare_bundle
from node.app import start_node
from node.ops.cli_bundle import add_bundle_commands
from node.ops.demo import Cast
from node.ops.netinit import init_network
from node.runtime.certified import results_anchor
from node.runtime.config import load_node_config
from node.sdk.bundle import fetch_bundle, verify_bundle_file
from node.sdk.bundle_verify import BundleError, Verdict, verify_bundle
from node.sdk.client import ProvenetClient
from node.sdk.errors import ProvenetError
from node.sdk.genesis import NetworkGenesis, load_genesis
from node.sdk.keys import Identity, load_identity

pytestmark = pytest.mark.network

TOKEN = "t1"
STONE = f"S-{TOKEN}-1"
SIBLING = f"S-{TOKEN}-2"
PARCEL = f"P-{TOKEN}"
MINE = f"MINE-{TOKEN}"
CERT = f"BW-KP-{TOKEN}"
REPORT = f"GR-{TOKEN}"

# The 10 steps of the stone's history, (org, method, args).
HISTORY: list[tuple[str, str, dict[str, Any]]] = [
    ("kp-bw", "register_mine", {"mine_id": MINE, "country": "BW", "operator": "miner"}),
    ("miner", "extract", {"mine_id": MINE, "parcel_id": PARCEL, "carats_points": 10_000}),
    ("kp-bw", "issue_kp_certificate", {
        "cert_id": CERT, "exporter": "miner", "importer": "cutter", "origin_country": "BW",
        "destination_country": "BE", "parcels": [PARCEL], "carats_points": 10_000,
        "value_cents": 5_000_000, "hs_code": "7102.31", "expiry_height": 1_000,
    }),
    ("miner", "ship", {"cert_id": CERT}),
    ("kp-be", "confirm_import", {"cert_id": CERT, "carats_points": 10_000}),
    ("cutter", "cut", {"asset_id": PARCEL, "stones": [
        {"asset_id": STONE, "carats_points": 1_500}, {"asset_id": SIBLING, "carats_points": 1_500},
    ]}),
    ("cutter", "transfer", {"asset_id": STONE, "to_org": "lab", "custody_only": True}),
    ("lab", "grade", {"asset_id": STONE, "report_id": REPORT, "carats_points": 1_500,
                      "colour": "E", "clarity": "VS1", "cut_grade": "Excellent"}),
    ("cutter", "transfer", {"asset_id": STONE, "to_org": "leadfirm"}),
    ("leadfirm", "sell", {"asset_id": STONE, "buyer_ref": "customer-1", "price_cents": 1_250_000}),
]  # fmt: skip
METHODS = [method for _, method, _ in HISTORY]

# A second history: two extractions merged, split, both halves exported under
# one certificate, each cut.  The bundle of T1 needs its sibling parcel QB too
# (issued, shipped and confirmed with QA), including QB's later cut.
MERGED: list[tuple[str, str, dict[str, Any]]] = [
    ("kp-bw", "register_mine", {"mine_id": "MINE-t2", "country": "BW", "operator": "miner"}),
    ("miner", "extract", {"mine_id": "MINE-t2", "parcel_id": "Q1", "carats_points": 5_000}),
    ("miner", "extract", {"mine_id": "MINE-t2", "parcel_id": "Q2", "carats_points": 3_000}),
    ("miner", "merge", {"inputs": ["Q1", "Q2"], "output_id": "QM"}),
    ("miner", "split", {"asset_id": "QM", "outputs": [
        {"asset_id": "QA", "carats_points": 4_000}, {"asset_id": "QB", "carats_points": 4_000},
    ]}),
    ("kp-bw", "issue_kp_certificate", {
        "cert_id": "BW-KP-t2", "exporter": "miner", "importer": "cutter", "origin_country": "BW",
        "destination_country": "BE", "parcels": ["QA", "QB"], "carats_points": 8_000,
        "value_cents": 4_000_000, "hs_code": "7102.31", "expiry_height": 1_000,
    }),
    ("miner", "ship", {"cert_id": "BW-KP-t2"}),
    ("kp-be", "confirm_import", {"cert_id": "BW-KP-t2", "carats_points": 8_000}),
    ("cutter", "cut", {"asset_id": "QA", "stones": [{"asset_id": "T1", "carats_points": 1_500}]}),
    ("cutter", "cut", {"asset_id": "QB", "stones": [{"asset_id": "T9", "carats_points": 1_500}]}),
]  # fmt: skip


@dataclass
class Chain:
    dir: Path
    genesis_file: Path
    network: NetworkGenesis
    data: bytes  # the stone's bundle, fetched over HTTP through the SDK
    built: bytes  # the same, built directly from the store
    sibling: bytes  # the sibling stone's bundle (cut from the same parcel, never graded)
    sanctioned: bytes  # the stone's bundle after a regulator sanctioned the cutter
    merged: bytes  # T1's bundle (the MERGED history)
    revoked: bytes  # T1's bundle after a regulator revoked its KP certificate
    cli_file: Path  # what `provenet bundle` wrote
    cli_output: str
    unknown_error: ProvenetError | None
    online_compliance_after_sanction: dict[str, Any]
    governed: bytes  # SIBLING's bundle: a transfer signed by a key governance added
    governed_revoked: bytes  # the same after that key's revocation
    governed_key: bytes  # that key
    after_rejected: bytes  # SIBLING's bundle after a transfer the chain rejected
    rejected_entry: dict[str, Any]  # that transfer as a bundle entry, with its proofs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provenet")
    add_bundle_commands(parser.add_subparsers())
    return parser


def run_cli(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    code: int = args.handler(args)
    return code


async def _build_chain(tmp: Path) -> Chain:
    init_network(tmp / "net", 1, tls=False, base_port=free_base_port(1))
    net = tmp / "net"
    node = await start_node(load_node_config(net / "nodes" / "v0" / "config.json"))
    url = f"http://127.0.0.1:{node.config.api_port}"
    cast = Cast(lambda org: ProvenetClient.from_network_dir(net, org_id=org), out=lambda _: None)
    try:
        for org, method, args in HISTORY:
            await cast.step(org, "diamonds", method, args)
        reader = ProvenetClient.from_url(url, genesis_file=net / "genesis.json")
        async with reader:
            data = await fetch_bundle(reader, STONE)
            sibling = await fetch_bundle(reader, SIBLING)
            try:
                await fetch_bundle(reader, "NO-SUCH-STONE")
                unknown_error = None
            except ProvenetError as error:
                unknown_error = error
        built = encode(await build_bundle(node.engine, node.network, STONE, 10.0))
        cli_file = tmp / "stone.bundle"
        argv = ["bundle", STONE, "-o", str(cli_file), "--node", url, "--genesis", str(net / "genesis.json")]  # fmt: skip
        cli_output = await asyncio.to_thread(_capture, lambda: run_cli(*argv))
        for org, method, args in MERGED:
            await cast.step(org, "diamonds", method, args)
        merged = encode(await build_bundle(node.engine, node.network, "T1", 10.0))
        await cast.step(
            "regulator", "diamonds", "revoke_certificate",
            {"kind": "kp", "cert_id": "BW-KP-t2", "reason": "forged"},
        )  # fmt: skip
        revoked = encode(await build_bundle(node.engine, node.network, "T1", 10.0))
        governed, governed_revoked, governed_key = await _governed_key(node, cast, net)
        await cast.step(
            "regulator", "diamonds", "sanction",
            {"kind": "org", "target": "cutter", "reason": "laundering rough"},
        )  # fmt: skip
        sanctioned = encode(await build_bundle(node.engine, node.network, STONE, 10.0))
        online = await cast.client("leadfirm").compliance(STONE)
        after_rejected, rejected_entry = await _rejected_transfer(node, cast)
    finally:
        await cast.close()
        await node.stop()
    return Chain(
        dir=net,
        genesis_file=net / "genesis.json",
        network=load_genesis(net / "genesis.json"),
        data=data,
        built=built,
        sibling=sibling,
        sanctioned=sanctioned,
        merged=merged,
        revoked=revoked,
        cli_file=cli_file,
        cli_output=cli_output,
        unknown_error=unknown_error,
        online_compliance_after_sanction=online,
        governed=governed,
        governed_revoked=governed_revoked,
        governed_key=governed_key,
        after_rejected=after_rejected,
        rejected_entry=rejected_entry,
    )


async def _governed_key(node: Any, cast: Cast, net: Path) -> tuple[bytes, bytes, bytes]:
    """Governance adds a second key to the cutter, which signs the sibling's
    hand-over to the lab; then the cutter revokes that key.  The sibling's
    bundle before and after the revocation, and the key."""
    second = Ed25519Signer.from_seed(b"cutter-second-key".ljust(32, b"\0"))
    proposal = await cast.step(
        "cutter", "membership", "propose",
        {"action": "add_key", "params": {"org_id": "cutter", "key": second.public_key}},
    )  # fmt: skip
    voters = [org.org_id for org in load_genesis(net / "genesis.json").genesis.organisations]
    for org in voters:
        if org == "cutter":
            continue
        answer = await cast.client(org).submit(
            "membership", "vote", {"proposal_id": str(proposal["tx_id"])}, raise_on_reject=False
        )
        if answer["status"] != "ok":
            break  # the proposal passed on an earlier vote and is closed
    url = f"http://127.0.0.1:{node.config.api_port}"
    signer = Identity("cutter", second)
    async with ProvenetClient.from_url(url, signer, genesis_file=net / "genesis.json") as client:
        await client.submit(
            "diamonds", "transfer", {"asset_id": SIBLING, "to_org": "lab", "custody_only": True}
        )
    governed = encode(await build_bundle(node.engine, node.network, SIBLING, 10.0))
    await cast.step("cutter", "membership", "revoke_own_key", {"key": second.public_key})
    revoked = encode(await build_bundle(node.engine, node.network, SIBLING, 10.0))
    return governed, revoked, second.public_key


async def _rejected_transfer(node: Any, cast: Cast) -> tuple[bytes, dict[str, Any]]:
    """A transfer of the sibling by the sanctioned cutter, which the chain
    rejects; the sibling's bundle after it, and the transfer as an entry
    with all its proofs."""
    answer = await cast.client("cutter").submit(
        "diamonds", "transfer", {"asset_id": SIBLING, "to_org": "leadfirm"}, raise_on_reject=False
    )
    assert answer["status"] == "rejected" and answer["code"] == "sanctioned", answer
    after = encode(await build_bundle(node.engine, node.network, SIBLING, 10.0))
    height, index = node.store.tx_position(bytes.fromhex(str(answer["tx_id"])))
    anchor = results_anchor(node.store, height, 64)
    assert anchor is not None
    return after, entry_of(node.store.block(height), index, anchor)


def _capture(work: Callable[[], int]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = work()
    assert code == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return asyncio.run(_build_chain(tmp_path_factory.mktemp("bundle")))


def _fails(data: bytes, network: NetworkGenesis) -> BundleError:
    with pytest.raises(BundleError) as failure:
        verify_bundle(data, network)
    return failure.value


def _document(chain: Chain) -> dict[str, Any]:
    document = decode(chain.data)
    assert isinstance(document, dict)
    return document


def _entry_of(document: dict[str, Any], method: str, occurrence: int = 0) -> int:
    """Position of the n-th entry calling ``method``."""
    hits = [
        n
        for n, entry in enumerate(document["entries"])
        if decode(entry["tx"])["method"] == method  # type: ignore[index]
    ]
    return hits[occurrence]


def _resigned(chain: Chain, envelope: bytes, **changed: object) -> bytes:
    """The same transaction with ``changed`` arguments, signed again by its sender."""
    tx = decode_tx(envelope)
    org = next(o for o in chain.network.genesis.organisations if tx.sender in o.keys)
    identity = load_identity(chain.dir / "orgs" / f"{org.org_id}.key")
    forged = sign_tx(
        identity.signer,
        chain_id=tx.chain_id,
        nonce=tx.nonce,
        contract=tx.contract,
        method=tx.method,
        args={**tx.args, **changed},
        expiry_height=tx.expiry_height,
    )
    return encode_tx(forged)


# ------------------------------------------------------------------ clean bundles


def test_a_clean_bundle_verifies_offline_with_the_whole_history(chain: Chain) -> None:
    verdict = verify_bundle(chain.data, chain.network)
    assert [step.method for step in verdict.steps] == METHODS
    assert [step.org_id for step in verdict.steps] == [org for org, _, _ in HISTORY]
    assert verdict.conflict_free and verdict.compliance["failures"] == []
    assert {check.rule: check.ok for check in verdict.checks} == {
        "mine_registration": True,
        "kp_crossing": True,
    }
    assert [node["asset_id"] for node in verdict.trace["nodes"]] == [STONE, PARCEL]
    assert verdict.trace["nodes"][0]["status"] == "sold"
    assert verdict.trace["kp_certificates"][0]["confirmed_by"] == "kp-be"
    heights = [step.height for step in verdict.steps]
    assert heights == sorted(heights) and verdict.as_of_height >= heights[-1]


def test_the_route_the_store_and_the_cli_give_the_same_bytes(chain: Chain) -> None:
    assert chain.data == chain.built
    assert chain.cli_file.read_bytes() == chain.data
    assert "verified against the genesis: conflict-free" in chain.cli_output
    assert f"{len(HISTORY)} transactions" in chain.cli_output


def test_an_unknown_asset_is_a_clear_error(chain: Chain) -> None:
    assert chain.unknown_error is not None
    assert chain.unknown_error.code == "unknown_asset"
    assert chain.unknown_error.status == 404
    assert "NO-SUCH-STONE" in chain.unknown_error.message


def test_build_bundle_refuses_an_unknown_asset(chain: Chain) -> None:
    from contracts.genesis import genesis_state
    from contracts.state import MemoryState

    state = MemoryState(genesis_state(chain.network.genesis))
    with pytest.raises(UnknownAsset, match="no diamond asset S-9"):
        prepare_bundle(None, state, chain.network, "S-9", 100)  # type: ignore[arg-type]


def test_cli_verify_prints_the_provenance_and_the_verdict(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("verify", str(chain.cli_file), "--genesis", str(chain.genesis_file)) == 0
    out = capsys.readouterr().out
    assert f"Bundle for {STONE}" in out and "Offline verdict: CONFLICT-FREE as of block " in out
    for method in METHODS:
        assert f"diamonds.{method}" in out
    assert f"kp_crossing {CERT}" in out and "issued by kp-bw (KP authority of BW)" in out
    assert (
        run_cli("verify", str(chain.cli_file), "--genesis", str(chain.genesis_file), "--json") == 0
    )
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verified"] and verdict["conflict_free"] and len(verdict["steps"]) == 10


def test_the_sdk_checks_a_file(chain: Chain) -> None:
    verdict = verify_bundle_file(chain.cli_file, chain.genesis_file)
    assert isinstance(verdict, Verdict) and verdict.conflict_free


def test_a_sibling_stone_has_its_own_bundle(chain: Chain) -> None:
    verdict = verify_bundle(chain.sibling, chain.network)
    assert verdict.asset_id == SIBLING
    assert [step.method for step in verdict.steps] == METHODS[:6]


def test_a_sanction_in_force_is_in_the_bundle_and_one_after_it_is_not(
    chain: Chain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert chain.online_compliance_after_sanction["conflict_free"] is False
    verdict = verify_bundle(chain.sanctioned, chain.network)
    assert verdict.steps[-1].method == "sanction"
    assert not verdict.conflict_free
    assert {f["rule"] for f in verdict.compliance["failures"]} == {
        f["rule"] for f in chain.online_compliance_after_sanction["failures"]
    }
    path = tmp_path / "sanctioned.bundle"
    path.write_bytes(chain.sanctioned)
    assert run_cli("verify", str(path), "--genesis", str(chain.genesis_file)) == 3
    assert "NOT CONFLICT-FREE" in capsys.readouterr().out
    # The bundle built before the sanction still verifies as it stood then.
    assert verify_bundle(chain.data, chain.network).conflict_free


def test_a_merged_and_co_shipped_history_replays(chain: Chain) -> None:
    verdict = verify_bundle(chain.merged, chain.network)
    assert [step.call for step in verdict.steps] == [f"diamonds.{m}" for _, m, _ in MERGED]
    assert verdict.conflict_free
    assert [node["asset_id"] for node in verdict.trace["nodes"]] == ["T1", "QA", "QM", "Q1", "Q2"]
    document = decode(chain.merged)
    assert isinstance(document, dict)
    del document["entries"][2]  # Q2's extraction
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "missing_upstream_link"
    assert "diamonds.merge by miner" in failure.message and "no diamond asset Q2" in failure.message


def test_a_revocation_in_force_is_in_the_bundle(chain: Chain) -> None:
    verdict = verify_bundle(chain.revoked, chain.network)
    assert verdict.steps[-1].method == "revoke_certificate"
    assert not verdict.conflict_free
    assert {f["rule"] for f in verdict.compliance["failures"]} == {"kp_certificate_revoked"}


# ------------------------------------------------------------------ tampering


def test_a_changed_transaction_byte_fails_its_signature(chain: Chain) -> None:
    document = _document(chain)
    position = _entry_of(document, "issue_kp_certificate")
    envelope = document["entries"][position]["tx"]
    at = envelope.index(b"7102.31")
    # The same-length text keeps the envelope canonical: only the signature can tell.
    document["entries"][position]["tx"] = envelope[:at] + b"7102.21" + envelope[at + 7 :]
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "signature"
    assert f"entry {position} (diamonds.issue_kp_certificate" in str(failure)
    # Flipped in place in the file, the same byte fails the same way (the
    # first 7102.31 in the file is in the certificate's record, a proven read).
    at = chain.data.index(envelope) + envelope.index(b"7102.31")
    tampered = chain.data[:at] + b"7102.21" + chain.data[at + 7 :]
    assert _fails(tampered, chain.network).kind == "signature"


def test_a_changed_certificate_signature_fails_the_certificate(chain: Chain) -> None:
    document = _document(chain)
    position = _entry_of(document, "grade")
    commit = document["entries"][position]["certificate"][0]
    commit["signature"] = bytes([commit["signature"][0] ^ 1]) + commit["signature"][1:]
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "certificate"
    assert "bad signature from validator 0" in failure.message
    assert f"entry {position} (diamonds.grade" in failure.message


@pytest.mark.parametrize(
    ("method", "occurrence", "named"),
    [
        ("extract", 0, f"no diamond asset {PARCEL}"),
        ("register_mine", 0, f"no mine {MINE}"),
        ("issue_kp_certificate", 0, f"no KP certificate {CERT}"),
        ("ship", 0, f"KP certificate {CERT} is issued, expected shipped"),
        ("confirm_import", 0, "diamonds.cut by cutter"),
        ("transfer", 0, "diamonds.grade by lab"),
        ("cut", 0, f"no diamond asset {STONE}"),
    ],
)
def test_a_dropped_upstream_link_is_named(
    chain: Chain, method: str, occurrence: int, named: str
) -> None:
    """The replay refuses the first entry that needed the dropped one, and
    the reason is the rule pack's own refusal, naming what is missing."""
    document = _document(chain)
    del document["entries"][_entry_of(document, method, occurrence)]
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "missing_upstream_link"
    assert str(failure).startswith("missing upstream link: ")
    assert named in failure.message


def test_another_network_s_validator_set_fails(chain: Chain, tmp_path: Path) -> None:
    init_network(tmp_path / "other", 1, tls=False, base_port=free_base_port(1))
    other = load_genesis(tmp_path / "other" / "genesis.json")
    failure = _fails(chain.data, other)
    assert failure.kind == "validator_set"
    assert "public_key" in failure.message
    # A bundle whose validator list was swapped for another fails against the real genesis.
    document = _document(chain)
    document["validators"][0]["public_key"] = other.validators[0].public_key
    assert _fails(encode(document), chain.network).kind == "validator_set"
    # Swapping both (a forged genesis naming other validators) breaks every certificate.
    forged = dataclasses.replace(
        chain.network,
        validators=(
            dataclasses.replace(
                chain.network.validators[0], public_key=other.validators[0].public_key
            ),
        ),
    )
    failure = _fails(encode(document), forged)
    assert failure.kind == "certificate"


def test_a_history_that_never_creates_the_asset_fails(chain: Chain) -> None:
    document = _document(chain)
    document["entries"] = document["entries"][: _entry_of(document, "cut")]
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "missing_upstream_link"
    assert f"no transaction in the bundle creates asset {STONE}" in failure.message


def test_an_unrelated_entry_or_another_asset_id_fails(chain: Chain) -> None:
    sibling = decode(chain.sibling)
    assert isinstance(sibling, dict)
    stone = _document(chain)
    # The stone's hand-over to the lab replays on the sibling's history (the
    # cutter holds both stones) but is no part of the sibling's provenance.
    sibling["entries"].append(stone["entries"][_entry_of(stone, "transfer")])
    failure = _fails(encode(sibling), chain.network)
    assert failure.kind == "unrelated_entry"
    assert "entry 6 (diamonds.transfer by cutter" in failure.message
    assert f"not part of the provenance of {SIBLING}" in failure.message
    # The stone's grading is signed by the lab, whose key the sibling's
    # bundle does not prove (and the lab never held the sibling).
    sibling["entries"][-1] = stone["entries"][_entry_of(stone, "grade")]
    failure = _fails(encode(sibling), chain.network)
    assert failure.kind == "missing_read"
    assert "entry 6 (diamonds.grade at block" in failure.message
    assert "record b'm/key/" in failure.message
    # The stone's bundle renamed to its sibling: the stone's own steps do not belong.
    stone["asset_id"] = SIBLING
    assert _fails(encode(stone), chain.network).kind == "unrelated_entry"


def test_every_flipped_byte_fails(chain: Chain) -> None:
    rng = random.Random(20240605)
    data = chain.data
    positions = sorted(rng.sample(range(len(data)), 200))
    kinds: dict[str, int] = {}
    for position in positions:
        tampered = bytearray(data)
        tampered[position] ^= rng.randrange(1, 256)
        try:
            verify_bundle(bytes(tampered), chain.network)
        except BundleError as failure:
            kinds[failure.kind] = kinds.get(failure.kind, 0) + 1
        else:
            pytest.fail(f"flipping byte {position} of {len(data)} went unnoticed")
    assert sum(kinds.values()) == 200
    print(f"byte flips by failure kind: {sorted(kinds.items())}")


def test_a_version_of_true_fails_as_format(chain: Chain) -> None:
    """True == 1 in Python: the byte 0xc3 (true) where 0x01 stands must not verify."""
    tampered = encode({**_document(chain), "version": True})
    assert len(tampered) == len(chain.data)
    failure = _fails(tampered, chain.network)
    assert failure.kind == "format" and "version True" in failure.message


def test_a_bundle_dense_in_values_is_refused_by_count(chain: Chain) -> None:
    # 5 MB of lists of zeros: far inside the byte limit, over the value count.
    lists = 5_000
    inner = b"\xdc\x03\xe8" + b"\x00" * 1_000
    data = b"\xdc" + lists.to_bytes(2, "big") + inner * lists
    failure = _fails(data, chain.network)
    assert failure.kind == "format" and "max_objects" in failure.message


def test_bundle_size_and_offline_verification_time(chain: Chain) -> None:
    verify_bundle(chain.data, chain.network)  # warm the imports
    runs = 20
    started = time.perf_counter()
    for _ in range(runs):
        verify_bundle(chain.data, chain.network)
    elapsed_ms = (time.perf_counter() - started) * 1000 / runs
    document = _document(chain)
    as_of_bytes = len(encode(document["as_of"]))
    receipts_bytes = sum(len(encode(entry["receipt"])) for entry in document["entries"])
    print(
        f"10-step stone: bundle {len(chain.data):,} bytes ({len(HISTORY)} transactions, "
        f"1 validator; as-of point {as_of_bytes:,} bytes with {len(_reads(document))} proven "
        f"reads, receipt proofs {receipts_bytes:,} bytes), offline verification "
        f"{elapsed_ms:.1f} ms"
    )
    assert elapsed_ms < 1_000


# ------------------------------------------------------------------ one model of the rules


def test_the_verdict_follows_the_rule_pack_not_a_model_of_it(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change a rule in contracts/ only: the offline verdict must change with it.

    A verifier that re-derived the facts in node/ (as bundle_verify once did,
    judging KP authorities from the genesis file and the provenance from the
    transactions' arguments) would go on answering as before.
    """
    import contracts.diamond_scope as pack

    assert verify_bundle(chain.data, chain.network).conflict_free
    # The pack's rule for who is a KP authority: if no one is, every crossing
    # and every mine registration by an authority fails the offline check.
    monkeypatch.setattr(pack, "_is_kp_authority", lambda org, country: False)
    verdict = verify_bundle(chain.data, chain.network)
    assert not verdict.conflict_free
    assert [(c.rule, c.ok) for c in verdict.checks] == [
        ("mine_registration", False),
        ("kp_crossing", False),
    ]
    assert "NOT the exporting authority" in verdict.format()
    monkeypatch.undo()
    # The pack's rule for what a provenance is made of: without the records
    # that keep no transaction id, the mine's registration is not part of it.
    monkeypatch.setattr(pack._Walk, "records", lambda self: [])
    failure = _fails(chain.data, chain.network)
    assert failure.kind == "unrelated_entry"
    assert "entry 0 (diamonds.register_mine by kp-bw" in failure.message


def test_the_verifier_names_no_diamond_method() -> None:
    """A tripwire for a second model: bundle_verify.py spells no diamond
    method, so it cannot branch on one; what a method means is the pack's."""
    import ast

    import node.sdk.bundle_verify as module
    from contracts.methods import METHODS

    tree = ast.parse(Path(module.__file__).read_text())
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert strings.isdisjoint(METHODS["diamonds"]), strings & set(METHODS["diamonds"])


def test_a_reordered_or_altered_transaction_is_refused(chain: Chain) -> None:
    document = _document(chain)
    entries = document["entries"]
    first, second = _entry_of(document, "ship"), _entry_of(document, "confirm_import")
    entries[first], entries[second] = entries[second], entries[first]
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "order"
    assert f"is not after entry {first}" in failure.message
    # A transaction re-signed by its sender with other arguments is no longer
    # the one the block committed: its id is not under the block's root.
    document = _document(chain)
    position = _entry_of(document, "confirm_import")
    envelope = document["entries"][position]["tx"]
    document["entries"][position]["tx"] = _resigned(chain, envelope, carats_points=9_999)
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "tx_id"
    # With its id and Merkle proof changed to match, the block's certificate
    # still does not cover it.
    document["entries"][position]["tx_id"] = digest(document["entries"][position]["tx"])
    assert _fails(encode(document), chain.network).kind == "inclusion"


# ------------------------------------------------------------------ version 2: outcomes, absence, signers


def _reads(document: dict[str, Any]) -> list[dict[str, Any]]:
    reads: list[dict[str, Any]] = document["as_of"]["reads"]
    return reads


def _read_of(document: dict[str, Any], key: bytes) -> dict[str, Any]:
    return next(read for read in _reads(document) if read["key"] == key)


def _without_read(data: bytes, key: bytes) -> bytes:
    document = decode(data)
    assert isinstance(document, dict)
    kept = [read for read in _reads(document) if read["key"] != key]
    assert len(kept) == len(_reads(document)) - 1, f"no read of {key!r} to drop"
    document["as_of"]["reads"] = kept
    return encode(document)


def test_the_verdict_and_every_entry_are_proven_as_of_one_certified_height(chain: Chain) -> None:
    verdict = verify_bundle(chain.data, chain.network)
    document = _document(chain)
    assert document["version"] == 2
    assert verdict.as_of_height == document["as_of"]["height"] >= verdict.steps[-1].height
    assert verdict.certified_by > verdict.as_of_height
    assert verdict.proven_reads == len(_reads(document))
    for entry in document["entries"]:
        assert entry["receipt"]["leaf"]["tx_id"] == entry["tx_id"]
        assert entry["receipt"]["leaf"]["status"] == "ok"
    text = verdict.format()
    assert f"As of block {verdict.as_of_height} (certified by block {verdict.certified_by}" in text
    assert f"Proven as of block {verdict.as_of_height}: the compliance verdict" in text


def test_a_version_1_bundle_is_refused_with_a_request_to_fetch_it_again(chain: Chain) -> None:
    document = _document(chain)
    document["version"] = 1
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "format"
    assert "version 1 bundle" in failure.message and "fetch it again" in failure.message


def test_a_transaction_the_chain_rejected_is_refused(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sanctioned cutter's transfer of the sibling was rejected on chain.
    Presented in the sibling's bundle without the sanction's transaction, it
    replays (as it did in version 1 bundles); its proven receipt refuses it."""
    import node.sdk.bundle_verify as bundle_verify

    forged = decode(chain.after_rejected)
    assert isinstance(forged, dict)
    del forged["entries"][_entry_of(forged, "sanction")]
    forged["entries"].append(chain.rejected_entry)
    failure = _fails(encode(forged), chain.network)
    assert failure.kind == "receipt"
    assert "the chain rejected it (rejected, sanctioned)" in failure.message
    assert f"entry {len(forged['entries']) - 1} (diamonds.transfer" in failure.message
    # Its receipt swapped for a successful transaction's: that one is proven
    # at another height, and is another transaction's.
    rejected = dict(chain.rejected_entry)
    rejected["receipt"] = forged["entries"][-2]["receipt"]
    forged["entries"][-1] = rejected
    failure = _fails(encode(forged), chain.network)
    assert failure.kind == "receipt" and "its receipt's anchor certifies height" in failure.message
    # With its own anchor but the successful transaction's leaf and path.
    rejected["receipt"] = {
        **forged["entries"][-2]["receipt"],
        "anchor": chain.rejected_entry["receipt"]["anchor"],
    }
    failure = _fails(encode(forged), chain.network)
    assert failure.kind == "receipt" and "the receipt proven is transaction" in failure.message
    # A leaf saying "ok" for the rejected transaction is not under the root.
    ok_leaf = {**chain.rejected_entry["receipt"]["leaf"], "status": "ok", "code": None}
    rejected["receipt"] = {**chain.rejected_entry["receipt"], "leaf": ok_leaf}
    failure = _fails(encode(forged), chain.network)
    assert failure.kind == "receipt" and "certified receipts" in failure.message
    # Without the receipt check, the replay alone accepts it (the hole).
    monkeypatch.setattr(bundle_verify, "_check_receipt", lambda *args: None)
    assert verify_bundle(encode(forged), chain.network).steps[-1].method == "transfer"


def test_an_omitted_sanction_read_is_missing_and_a_stale_absence_proof_fails(chain: Chain) -> None:
    sanction = sanction_key("org", "cutter")
    assert _read_of(decode(chain.sanctioned), sanction)["value"] is not None  # type: ignore[arg-type]
    failure = _fails(_without_read(chain.sanctioned, sanction), chain.network)
    assert failure.kind == "missing_read"
    assert repr(sanction) in failure.message
    # The sanction's absence, proven against the root of a height before it.
    forged = decode(chain.sanctioned)
    assert isinstance(forged, dict)
    stale = _read_of(_document(chain), sanction)
    assert stale["value"] is None
    _read_of(forged, sanction).update(value=None, proof=stale["proof"])
    failure = _fails(encode(forged), chain.network)
    assert failure.kind == "state"
    assert f"the absence of key {sanction!r} does not verify" in failure.message


def test_a_sanction_left_out_of_the_entries_still_decides_the_verdict(chain: Chain) -> None:
    """Absence is proven: dropping the sanction's transaction changes the
    replay, not the verdict, which is recomputed from the proven reads."""
    forged = decode(chain.sanctioned)
    assert isinstance(forged, dict)
    del forged["entries"][_entry_of(forged, "sanction")]
    verdict = verify_bundle(encode(forged), chain.network)
    assert "sanction" not in [step.method for step in verdict.steps]
    assert not verdict.conflict_free
    assert "org_sanctioned" in {f["rule"] for f in verdict.compliance["failures"]}


def test_a_key_added_by_governance_signs_a_verifiable_history(chain: Chain) -> None:
    for data in (chain.governed, chain.governed_revoked):
        verdict = verify_bundle(data, chain.network)
        assert verdict.asset_id == SIBLING
        assert [step.method for step in verdict.steps] == [*METHODS[:6], "transfer"]
        assert verdict.steps[-1].org_id == "cutter"
    document = decode(chain.governed_revoked)
    assert isinstance(document, dict)
    record = record_from_bytes(KeyRecord, _read_of(document, key_key(chain.governed_key))["value"])
    assert record.valid_from_height > 1 and record.revoked_from_height is not None
    assert (
        record.revoked_from_height > verify_bundle(chain.governed, chain.network).steps[-1].height
    )


def test_a_signer_whose_key_record_is_not_proven_is_refused(chain: Chain) -> None:
    failure = _fails(
        _without_read(chain.governed_revoked, key_key(chain.governed_key)), chain.network
    )
    assert failure.kind == "missing_read"
    assert "entry 6 (diamonds.transfer" in failure.message
    assert f"key {chain.governed_key.hex()[:16]}" in failure.message


@pytest.mark.parametrize("signer", ["governed", "genesis"])
def test_a_key_revoked_before_the_entry_is_refused_as_signer(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, signer: str
) -> None:
    """The chain refuses a revoked key's transaction, so no true bundle holds
    one; suppose a proof could be forged (the state proof check is switched
    off): the key record's own heights still refuse the entry, whether
    governance added the key or genesis did."""
    import node.sdk.bundle_verify as bundle_verify

    document = decode(chain.governed_revoked)
    assert isinstance(document, dict)
    position = 6 if signer == "governed" else _entry_of(document, "cut")
    entry = document["entries"][position]
    sender = decode_tx(entry["tx"]).sender
    read = _read_of(document, key_key(sender))
    record = record_from_bytes(KeyRecord, read["value"])
    height = entry["header"]["height"]
    forged = dataclasses.replace(record, revoked_from_height=height)
    read["value"] = record_to_bytes(forged)
    monkeypatch.setattr(bundle_verify, "verify_state_proof", lambda *args: True)
    failure = _fails(encode(document), chain.network)
    assert failure.kind == "signer"
    assert f"entry {position} (diamonds." in failure.message
    assert f"revoked from block {height}: not at block {height}" in failure.message
