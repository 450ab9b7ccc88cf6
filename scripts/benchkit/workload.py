"""Pre-signed transaction workloads for benchmarks and soak runs of a network.

Theory of operation
-------------------
A workload is signed in full before anything is sent, so that signing is
the clients' cost and never competes with the nodes being measured.  It
is built for a network made by ``provenet net init`` (organisation ids of
``node.ops.catalog``) from a mapping ``org_id -> signer`` and the chain id, and
comes back as a :class:`Workload`:

* ``setup``: transactions to commit, in this order, before the rest is
  sent (the mines the main phase extracts from);
* ``txs``: the main phase in one order that succeeds when executed
  sequentially;
* ``by_sender``: the main phase split per sending organisation, each list
  in nonce order, starting from the ``next_nonces`` the caller passes
  (read them from ``GET /v1/nonce/{sender}`` to run again on a live chain);
* ``next_nonces``: every sender's next nonce after the whole workload.

Every asset, certificate, mine and lot id starts with ``run_tag`` (then a
dash), so the same workload can run any number of times on one chain as
long as each run has its own tag; the two modes never share an id, so one
tag can serve both.

Two modes
---------
``mixed`` (:data:`MIXED`) is the diamond value chain of
``scripts/bench_contracts.py``, 16 transactions per chain:
the miner extracts a parcel, splits it and transfers one half to the
trader; the exporting KP authority (kp-bw) issues a certificate for it; the
trader ships; the importing authority (kp-be) confirms the import; the
cutter cuts three stones and, for two of them, hands custody to the lab,
the lab grades, the cutter transfers to the retailer (leadfirm), the
retailer sells; finally the miner transfers the other half.  Setup is the
registration of the mine by kp-bw.  The transactions depend on *other*
senders' earlier transactions (``ship`` needs kp-bw's certificate,
``grade`` needs the cutter's custody transfer...): executed out of the
order of ``txs`` such a transaction is rejected by the contract (it still
commits and consumes its nonce), and everything downstream of it fails
too.  Use it to measure the realistic mix, with one lane, or with several
lanes accepting a lower success rate.

``independent`` (:data:`INDEPENDENT`) has only transactions that depend on
their own sender's earlier transactions, so every interleaving that keeps
each sender's order succeeds: the mode for throughput.  Per chain, 15
transactions from five senders:

* miner (4): ``diamonds.extract`` a parcel, ``split`` it in two, ``merge``
  the halves back, ``transfer`` the result to the trader (domestic rough,
  no certificate needed; the trader never acts on it);
* kp-bw (2): ``register_mine`` a new Botswana mine, then
  ``set_mine_accreditation`` on it;
* kp-be (2): the same for a new Belgian mine;
* cutter (5): ``extract`` rough at the Belgian mine registered in setup,
  ``cut`` it into three polished stones, ``transfer`` each to the retailer
  (polished stones cross borders freely);
* farm (2): ``food.harvest`` a lot, ``food.ship`` it to the mill (the
  mill never receives it).

Setup registers the two mines extracted from (miner's in Botswana by kp-bw,
the cutter's in Belgium by kp-be).  A cutter operating a mine in Belgium is
a benchmark artefact, not a real-world flow: it is the only way the
contracts let a manufacturer hold rough without another sender's help.

Lanes
-----
:func:`split_into_lanes` deals the per-sender lists to ``count`` lanes,
one per client process, so that each sender's transactions all go to one
lane and keep their nonce order there.  A sender is never split across
lanes: two clients racing one sender's nonces would hand the node gaps
and reorderings for nothing.  Hence the parallelism a workload offers is
the number of its senders (seven for ``mixed``, five for ``independent``);
lanes beyond that stay empty, and more throughput needs more sending
organisations, not more clients per organisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from consensus.codec import Signer
from contracts.tx import Transaction, sign_tx

MIXED = "mixed"
INDEPENDENT = "independent"
MODES = (MIXED, INDEPENDENT)

TX_PER_MIXED_CHAIN = 16
TX_PER_INDEPENDENT_CHAIN = 15
# Identifiers are [A-Za-z0-9._:-] and at most 64 characters; the longest
# id a chain builds adds 14 characters (and a 7-digit index) to the tag.
_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
MAX_RUN_TAG_LEN = 32


@dataclass(frozen=True)
class Cast:
    """Which organisation plays each part; the defaults are ``node.ops.catalog``'s ids."""

    miner: str = "miner"
    trader: str = "bw-trader"
    cutter: str = "cutter"
    kp_export: str = "kp-bw"
    kp_import: str = "kp-be"
    lab: str = "lab"
    retailer: str = "leadfirm"
    farm: str = "farm"
    mill: str = "mill"
    export_country: str = "BW"
    import_country: str = "BE"


NETWORK_CAST = Cast()


class Planner:
    """Signs transactions in the order they are added, tracking each sender's nonce.

    ``txs`` keeps that order, which is the order the workload succeeds in
    when executed one by one; ``by_sender`` keeps each sender's share.
    """

    def __init__(
        self,
        signers: Mapping[str, Signer],
        chain_id: str,
        next_nonces: Mapping[str, int] | None = None,
    ) -> None:
        self.signers = signers
        self.chain_id = chain_id
        self.nonces: dict[str, int] = dict(next_nonces or {})
        self.txs: list[Transaction] = []
        self.by_sender: dict[str, list[Transaction]] = {}

    def add(
        self, org: str, method: str, args: dict[str, object], contract: str = "diamonds"
    ) -> Transaction:
        signer = self.signers.get(org)
        if signer is None:
            raise KeyError(f"the workload needs a signer for organisation {org!r}")
        nonce = self.nonces.get(org, 0)
        self.nonces[org] = nonce + 1
        tx = sign_tx(
            signer,
            chain_id=self.chain_id,
            nonce=nonce,
            contract=contract,
            method=method,
            args=args,
        )
        self.txs.append(tx)
        self.by_sender.setdefault(org, []).append(tx)
        return tx


def register_mine(plan: Planner, mine_id: str, cast: Cast = NETWORK_CAST) -> None:
    """The export authority registers a mine operated by the miner."""
    plan.add(
        cast.kp_export,
        "register_mine",
        {"mine_id": mine_id, "country": cast.export_country, "operator": cast.miner},
    )


def diamond_chain(
    plan: Planner, index: int, cast: Cast = NETWORK_CAST, prefix: str = "", mine_id: str = "M1"
) -> None:
    """One parcel from mine to retail sale: 16 transactions (see the module docstring)."""
    parcel, half_a, half_b = f"{prefix}P{index}", f"{prefix}P{index}a", f"{prefix}P{index}b"
    cert = f"{cast.export_country}-{prefix}{index}"
    plan.add(
        cast.miner, "extract", {"mine_id": mine_id, "parcel_id": parcel, "carats_points": 20_000}
    )
    plan.add(
        cast.miner,
        "split",
        {
            "asset_id": parcel,
            "outputs": [
                {"asset_id": half_a, "carats_points": 12_000},
                {"asset_id": half_b, "carats_points": 8_000},
            ],
        },
    )
    plan.add(cast.miner, "transfer", {"asset_id": half_a, "to_org": cast.trader})
    plan.add(
        cast.kp_export,
        "issue_kp_certificate",
        {
            "cert_id": cert,
            "exporter": cast.trader,
            "importer": cast.cutter,
            "origin_country": cast.export_country,
            "destination_country": cast.import_country,
            "parcels": [half_a],
            "carats_points": 12_000,
            "value_cents": 5_000_000,
            "hs_code": "7102.31",
            "expiry_height": 10**9,
        },
    )
    plan.add(cast.trader, "ship", {"cert_id": cert})
    plan.add(cast.kp_import, "confirm_import", {"cert_id": cert, "carats_points": 12_000})
    stones = [f"{prefix}S{index}-{n}" for n in range(3)]
    plan.add(
        cast.cutter,
        "cut",
        {
            "asset_id": half_a,
            "stones": [{"asset_id": stone, "carats_points": 1_500} for stone in stones],
        },
    )
    for stone in stones[:2]:
        plan.add(
            cast.cutter, "transfer", {"asset_id": stone, "to_org": cast.lab, "custody_only": True}
        )
        plan.add(
            cast.lab,
            "grade",
            {
                "asset_id": stone,
                "report_id": f"R-{stone}",
                "carats_points": 1_500,
                "colour": "E",
                "clarity": "VS1",
                "cut_grade": "Excellent",
            },
        )
        plan.add(cast.cutter, "transfer", {"asset_id": stone, "to_org": cast.retailer})
        plan.add(
            cast.retailer,
            "sell",
            {"asset_id": stone, "buyer_ref": f"c{index}", "price_cents": 1_000_000},
        )
    plan.add(cast.miner, "transfer", {"asset_id": half_b, "to_org": cast.trader})


def independent_setup(plan: Planner, cast: Cast = NETWORK_CAST, prefix: str = "") -> None:
    """The two mines the independent mode extracts from."""
    register_mine(plan, f"{prefix}IM1", cast)
    plan.add(
        cast.kp_import,
        "register_mine",
        {"mine_id": f"{prefix}IM2", "country": cast.import_country, "operator": cast.cutter},
    )


def independent_chain(
    plan: Planner, index: int, cast: Cast = NETWORK_CAST, prefix: str = ""
) -> None:
    """15 transactions from five senders, none depending on another sender's."""
    tag = f"{prefix}I"
    parcel = f"{tag}P{index}"
    plan.add(
        cast.miner,
        "extract",
        {"mine_id": f"{tag}M1", "parcel_id": parcel, "carats_points": 20_000},
    )
    halves = [f"{parcel}a", f"{parcel}b"]
    plan.add(
        cast.miner,
        "split",
        {
            "asset_id": parcel,
            "outputs": [
                {"asset_id": halves[0], "carats_points": 12_000},
                {"asset_id": halves[1], "carats_points": 8_000},
            ],
        },
    )
    plan.add(cast.miner, "merge", {"inputs": halves, "output_id": f"{parcel}m"})
    plan.add(cast.miner, "transfer", {"asset_id": f"{parcel}m", "to_org": cast.trader})
    for authority, country, operator, mine in (
        (cast.kp_export, cast.export_country, cast.miner, f"{tag}MX{index}"),
        (cast.kp_import, cast.import_country, cast.cutter, f"{tag}MI{index}"),
    ):
        plan.add(
            authority, "register_mine", {"mine_id": mine, "country": country, "operator": operator}
        )
        plan.add(authority, "set_mine_accreditation", {"mine_id": mine, "accredited": True})
    rough = f"{tag}R{index}"
    stones = [f"{tag}S{index}-{n}" for n in range(3)]
    plan.add(
        cast.cutter,
        "extract",
        {"mine_id": f"{tag}M2", "parcel_id": rough, "carats_points": 10_000},
    )
    plan.add(
        cast.cutter,
        "cut",
        {"asset_id": rough, "stones": [{"asset_id": s, "carats_points": 1_500} for s in stones]},
    )
    for stone in stones:
        plan.add(cast.cutter, "transfer", {"asset_id": stone, "to_org": cast.retailer})
    lot = f"{tag}L{index}"
    plan.add(
        cast.farm,
        "harvest",
        {"lot_id": lot, "product": "wheat", "mass_grams": 1_000_000},
        contract="food",
    )
    plan.add(cast.farm, "ship", {"lot_id": lot, "to_org": cast.mill}, contract="food")


@dataclass
class Workload:
    """A signed workload; see the module docstring for the meaning of each part."""

    mode: str
    setup: list[Transaction]
    txs: list[Transaction]
    by_sender: dict[str, list[Transaction]]
    next_nonces: dict[str, int] = field(default_factory=dict)

    def ordered(self) -> list[Transaction]:
        """Setup then main phase: one order in which every transaction succeeds."""
        return [*self.setup, *self.txs]

    def lanes(self, count: int) -> list[list[Transaction]]:
        """The main phase for ``count`` clients; within a lane, the order of ``txs``."""
        return split_into_lanes(self.by_sender, count, order=self.txs)


def build_workload(
    signers: Mapping[str, Signer],
    chain_id: str,
    *,
    mode: str = MIXED,
    chains: int = 1,
    run_tag: str = "",
    next_nonces: Mapping[str, int] | None = None,
    cast: Cast = NETWORK_CAST,
) -> Workload:
    """Sign ``chains`` chains of ``mode`` for ``chain_id``; see the module docstring.

    ``run_tag`` must be unique per run on one chain (an empty tag gives the
    bare ids of ``scripts/bench_contracts.py``); ``next_nonces`` gives each
    sender's first nonce (0 when absent).
    """
    if mode not in MODES:
        raise ValueError(f"workload mode must be one of {MODES}, not {mode!r}")
    if chains < 0:
        raise ValueError("chains must not be negative")
    if len(run_tag) > MAX_RUN_TAG_LEN or not set(run_tag) <= _TAG_CHARS:
        raise ValueError(f"run_tag must be at most {MAX_RUN_TAG_LEN} chars of [A-Za-z0-9._:-]")
    prefix = f"{run_tag}-" if run_tag else ""
    plan = Planner(signers, chain_id, next_nonces)
    if mode == MIXED:
        register_mine(plan, f"{prefix}M1", cast)
    else:
        independent_setup(plan, cast, prefix)
    setup = list(plan.txs)
    main = Planner(signers, chain_id, plan.nonces)
    for index in range(chains):
        if mode == MIXED:
            diamond_chain(main, index, cast, prefix, mine_id=f"{prefix}M1")
        else:
            independent_chain(main, index, cast, prefix)
    next_after = {**plan.nonces, **main.nonces}
    return Workload(mode, setup, main.txs, main.by_sender, next_after)


def split_into_lanes(
    by_sender: Mapping[str, Sequence[Transaction]],
    count: int,
    order: Sequence[Transaction] | None = None,
) -> list[list[Transaction]]:
    """Deal whole senders to ``count`` lanes, balancing transaction counts.

    Senders go, largest first, to the lane with the fewest transactions so
    far, so the split is deterministic and as even as whole senders allow.
    Within a lane the senders' transactions interleave: in the order of
    ``order`` when given (which must list each sender's transactions in
    nonce order, as ``Workload.txs`` does), otherwise spread evenly, each
    sender's k-th of n transactions placed at fraction (k + 1/2)/n of the
    lane.  Either way each sender's own order is kept.
    """
    if count < 1:
        raise ValueError("a workload needs at least one lane")
    loads = [0] * count
    members: list[list[str]] = [[] for _ in range(count)]
    for sender in sorted(by_sender, key=lambda org: (-len(by_sender[org]), org)):
        lane = min(range(count), key=lambda k: (loads[k], k))
        members[lane].append(sender)
        loads[lane] += len(by_sender[sender])
    position: dict[tuple[bytes, int], int] = {}
    if order is not None:
        position = {(tx.sender, tx.nonce): n for n, tx in enumerate(order)}
    lanes: list[list[Transaction]] = []
    for senders in members:
        keyed: list[tuple[Fraction | int, int, Transaction]] = []
        for rank, sender in enumerate(senders):
            txs = by_sender[sender]
            for k, tx in enumerate(txs):
                key: Fraction | int = (
                    position[(tx.sender, tx.nonce)]
                    if order is not None
                    else Fraction(2 * k + 1, 2 * len(txs))
                )
                keyed.append((key, rank, tx))
        keyed.sort(key=lambda item: (item[0], item[1]))
        lanes.append([tx for _, _, tx in keyed])
    return lanes
