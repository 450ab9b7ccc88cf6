"""The organisations of a local demo network, and who runs its validators.

Why a fixed catalog: ``provenet net init`` must produce a network on which
both rule packs can run end to end (a diamond from mine to retail under the
Kimberley Process, a food lot from farm to recall) without the operator
typing a genesis by hand.  Every role and certifier scope those scenarios
need is held by exactly one organisation here, and the CLI, the SDK demo and
the benchmarks all name organisations by these ids.
"""

from __future__ import annotations

from dataclasses import dataclass

CHAIN_ID = "provenet-local"
DEFAULT_BASE_PORT = 7100
# Kimberley Process participant countries of the demo chain.
KP_PARTICIPANTS: tuple[str, ...] = ("BE", "BW", "US")


@dataclass(frozen=True)
class OrgSpec:
    """One catalog organisation: what genesis declares about it (its key is generated)."""

    org_id: str
    name: str
    country: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...] = ()


def _catalog(*specs: OrgSpec) -> dict[str, OrgSpec]:
    return {spec.org_id: spec for spec in specs}


ORGS: dict[str, OrgSpec] = _catalog(
    OrgSpec("leadfirm", "Lead Firm Jewellers", "US", ("lead_firm", "retailer")),
    OrgSpec("miner", "Botswana Mining Co", "BW", ("supplier",)),
    OrgSpec("bw-trader", "Gaborone Rough Traders", "BW", ("trader", "supplier")),
    OrgSpec("cutter", "Antwerp Cutting Works", "BE", ("manufacturer", "trader")),
    OrgSpec("kp-bw", "KP Authority of Botswana", "BW", ("certifier",), ("kp_authority",)),
    OrgSpec("kp-be", "KP Authority of Belgium", "BE", ("certifier",), ("kp_authority",)),
    OrgSpec("lab", "Antwerp Grading Lab", "BE", ("certifier",), ("grading_lab",)),
    OrgSpec("regulator", "Market Regulator", "BE", ("regulator",)),
    OrgSpec("farm", "Valley Farm", "US", ("supplier",)),
    OrgSpec("mill", "River Mill", "US", ("manufacturer",)),
    OrgSpec("grocer", "Corner Grocer", "US", ("retailer",)),
    OrgSpec("safety-lab", "Food Safety Lab", "US", ("certifier",), ("food_safety",)),
)

# Validator i is run by VALIDATOR_ORGS[i % len(VALIDATOR_ORGS)]: the regulator
# runs an observer, never a validator, so it is not in this list.
VALIDATOR_ORGS: tuple[str, ...] = (
    "leadfirm",
    "miner",
    "cutter",
    "lab",
    "kp-bw",
    "kp-be",
    "bw-trader",
    "mill",
    "grocer",
    "farm",
)


def validator_org(index: int) -> str:
    """The organisation that runs validator ``index`` (0-based)."""
    return VALIDATOR_ORGS[index % len(VALIDATOR_ORGS)]
