"""Contract ``membership``: organisations, keys and governance by vote.

Theory of operation
-------------------
Membership changes are proposals decided by votes of member organisations
(one vote per organisation, whichever of its keys signs).  Only *voters*
count: member organisations that hold at least one key and are not
sanctioned (themselves or through their country).  A keyless or
sanctioned organisation can neither sign nor be allowed to, so counting it
would let it block every decision.  A proposal passes when ``approvals *
threshold_denominator >= threshold_numerator * voters`` (the threshold
genesis declares, integers only; only approvals and rejections of current
voters count) and fails as soon as enough voters reject it that it can no
longer pass.  The proposer's organisation approves on proposing, and the
vote that reaches the threshold executes the action in the same
transaction.  A sanctioned organisation may neither propose nor vote
(``sanctioned``).

Actions: ``add_org``, ``add_key``, ``rotate_key``, ``revoke_key``,
``set_roles``, ``add_validator`` and ``remove_validator`` (the validator set
in state, contracts.validators; it orders blocks from the height
consensus.epochs computes).  Their parameters are checked in full when proposed (a
malformed proposal is refused outright) and again when they execute,
because state may have moved on in between; an action that no longer
applies marks the proposal ``failed`` with the reason, and the deciding
vote itself still succeeds so that voting can never get stuck.  A
proposal is named by the id of the transaction that proposed it, 64
lowercase hex digits, read apart from ordinary identifiers so that a
chain with a short ``max_id_len`` can still vote.

Key changes take effect from the block after the deciding one (see
contracts.orgs).  One shortcut skips the vote: an organisation may revoke
one of its own keys at once (``revoke_own_key``), because removing its own
power needs nobody's consent and a stolen key must be stoppable quickly.
It may not revoke its *last* key that way (``unauthorized``): a thief
could otherwise lock the organisation out for good.  To replace a last
key, propose ``rotate_key``; only governance may leave an organisation
keyless (``revoke_key``), and it then stops counting as a voter.

Methods and actions read their arguments in contracts.membership_args,
without state; the handlers here check them against state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consensus.codec import decode
from contracts.args import Args
from contracts.context import Call
from contracts.errors import ErrorCode, Rejected
from contracts.membership_args import (
    MAX_KEYS_PER_ORG,
    ActionParams,
    AddKeyParams,
    AddOrgParams,
    AddValidatorParams,
    ProposeArgs,
    RemoveValidatorParams,
    RevokeKeyParams,
    RevokeOwnKeyArgs,
    RotateKeyParams,
    SetRolesParams,
    VoteArgs,
    parse_action,
)
from contracts.orgs import (
    ORG_PREFIX,
    KeyRecord,
    Org,
    get_org,
    is_sanctioned_org,
    key_key,
    org_key,
)
from contracts.records import load, record_from_bytes, save
from contracts.state import ReadableState
from contracts.validators import (
    MAX_VALIDATORS,
    MIN_VALIDATORS,
    VALIDATORS_KEY,
    Validator,
    ValidatorSetRecord,
    validator_set,
)

STATUS_OPEN = "open"


@dataclass(frozen=True, slots=True)
class Proposal:
    proposal_id: str
    action: str
    params: bytes  # canonical encoding of the action's parameter map
    proposer: str
    approvals: tuple[str, ...]
    rejections: tuple[str, ...]
    status: str  # open | executed | rejected | failed
    outcome: str
    created_height: int


def proposal_key(proposal_id: str) -> bytes:
    return b"m/proposal/" + proposal_id.encode()


def propose(call: Call, args: ProposeArgs) -> None:
    action = args.action
    # Check against state now so that a proposal that cannot apply never
    # reaches a vote.
    apply_action(call, args.params, dry_run=True)
    proposal_id = call.tx_id.hex()
    proposal = Proposal(
        proposal_id=proposal_id,
        action=action,
        params=args.params_bytes,
        proposer=call.sender_org.org_id,
        approvals=(call.sender_org.org_id,),
        rejections=(),
        status=STATUS_OPEN,
        outcome="",
        created_height=call.block.height,
    )
    call.emit("proposed", {"proposal_id": proposal_id, "action": action})
    _decide(call, proposal)


def vote(call: Call, args: VoteArgs) -> None:
    proposal_id = args.proposal_id
    approve = args.approve
    proposal = load(call.store, proposal_key(proposal_id), Proposal)
    if proposal is None:
        raise Rejected(ErrorCode.UNKNOWN_PROPOSAL, f"no proposal {proposal_id}")
    if proposal.status != STATUS_OPEN:
        raise Rejected(ErrorCode.PROPOSAL_CLOSED, f"proposal {proposal_id} is {proposal.status}")
    voter = call.sender_org.org_id
    if voter in proposal.approvals or voter in proposal.rejections:
        raise Rejected(ErrorCode.ALREADY_VOTED, f"organisation {voter} already voted")
    if approve:
        proposal = replace(proposal, approvals=tuple(sorted((*proposal.approvals, voter))))
    else:
        proposal = replace(proposal, rejections=tuple(sorted((*proposal.rejections, voter))))
    call.emit("voted", {"proposal_id": proposal_id, "org_id": voter, "approve": approve})
    _decide(call, proposal)


def _decide(call: Call, proposal: Proposal) -> None:
    """Execute, reject or keep open; then store the proposal."""
    voters = current_voters(call.store)
    members = len(voters)
    approvals = len(voters.intersection(proposal.approvals))
    rejections = len(voters.intersection(proposal.rejections))
    numerator = call.config.threshold_numerator
    denominator = call.config.threshold_denominator
    if approvals * denominator >= numerator * members:
        try:
            params = parse_action(proposal.action, _stored_params(call, proposal))
            apply_action(call, params, dry_run=False)
        except Rejected as failure:
            proposal = replace(
                proposal, status="failed", outcome=f"{failure.code}: {failure.message}"
            )
        else:
            proposal = replace(proposal, status="executed", outcome="ok")
    elif (members - rejections) * denominator < numerator * members:
        proposal = replace(proposal, status="rejected", outcome="threshold can no longer be met")
    if proposal.status != STATUS_OPEN:
        call.emit(
            "decided",
            {
                "proposal_id": proposal.proposal_id,
                "status": proposal.status,
                "outcome": proposal.outcome,
            },
        )
    save(call.store, proposal_key(proposal.proposal_id), proposal)


def _stored_params(call: Call, proposal: Proposal) -> Args:
    raw = decode(proposal.params)
    assert isinstance(raw, dict), "a proposal stores a params map"
    return Args(raw, call.config.limits)


def current_voters(store: ReadableState) -> set[str]:
    """Organisations that can vote now: keyed and unsanctioned."""
    voters: set[str] = set()
    for _, raw in store.scan(ORG_PREFIX):
        org = record_from_bytes(Org, raw)
        if org.keys and not is_sanctioned_org(store, org):
            voters.add(org.org_id)
    return voters


def apply_action(call: Call, params: ActionParams, dry_run: bool) -> None:
    """Check an action's parsed parameters against state and, unless dry, apply it.

    Every check precedes every write, so a refusal leaves nothing behind.
    """
    match params:
        case AddOrgParams():
            _add_org(call, params, dry_run)
        case AddKeyParams():
            _add_key(call, params, dry_run)
        case RotateKeyParams():
            _rotate_key(call, params, dry_run)
        case RevokeKeyParams():
            _revoke_key(call, params, dry_run)
        case SetRolesParams():
            _set_roles(call, params, dry_run)
        case AddValidatorParams():
            _add_validator(call, params, dry_run)
        case RemoveValidatorParams():
            _remove_validator(call, params, dry_run)


def _require_new_key(call: Call, public_key: bytes) -> None:
    if call.store.get(key_key(public_key)) is not None:
        raise Rejected(ErrorCode.DUPLICATE, f"key {public_key.hex()[:16]} is already registered")


def _add_org(call: Call, params: AddOrgParams, dry_run: bool) -> None:
    org_id, name, country = params.org_id, params.name, params.country
    roles, scopes, keys = params.roles, params.scopes, params.keys
    if call.store.get(org_key(org_id)) is not None:
        raise Rejected(ErrorCode.DUPLICATE, f"organisation {org_id} already exists")
    for public_key in keys:
        _require_new_key(call, public_key)
    if dry_run:
        return
    org = Org(org_id, name, country, roles, scopes, tuple(sorted(keys)))
    save(call.store, org_key(org_id), org)
    for public_key in keys:
        save(call.store, key_key(public_key), KeyRecord(org_id, call.block.height + 1, None))
    call.emit("org_added", {"org_id": org_id, "country": country, "roles": list(roles)})


def _add_key(call: Call, params: AddKeyParams, dry_run: bool) -> None:
    org = get_org(call.store, params.org_id)
    public_key = params.key
    _require_new_key(call, public_key)
    if len(org.keys) >= MAX_KEYS_PER_ORG:
        raise Rejected(
            ErrorCode.LIMIT_EXCEEDED, f"organisation {org.org_id} has {MAX_KEYS_PER_ORG} keys"
        )
    if dry_run:
        return
    _install_key(call, org, public_key)


def _install_key(call: Call, org: Org, public_key: bytes) -> Org:
    save(call.store, key_key(public_key), KeyRecord(org.org_id, call.block.height + 1, None))
    org = replace(org, keys=tuple(sorted((*org.keys, public_key))))
    save(call.store, org_key(org.org_id), org)
    call.emit("key_added", {"org_id": org.org_id, "key": public_key})
    return org


def _owned_key(call: Call, org: Org, public_key: bytes) -> KeyRecord:
    record = load(call.store, key_key(public_key), KeyRecord)
    if record is None or record.org_id != org.org_id or public_key not in org.keys:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"key {public_key.hex()[:16]} is not an active key of {org.org_id}",
        )
    return record


def _retire_key(call: Call, org: Org, public_key: bytes, record: KeyRecord) -> Org:
    save(
        call.store, key_key(public_key), replace(record, revoked_from_height=call.block.height + 1)
    )
    org = replace(org, keys=tuple(key for key in org.keys if key != public_key))
    save(call.store, org_key(org.org_id), org)
    call.emit(
        "key_revoked",
        {"org_id": org.org_id, "key": public_key, "from_height": call.block.height + 1},
    )
    return org


def _rotate_key(call: Call, params: RotateKeyParams, dry_run: bool) -> None:
    org = get_org(call.store, params.org_id)
    old_key = params.old_key
    new_key = params.new_key
    record = _owned_key(call, org, old_key)
    _require_new_key(call, new_key)
    if dry_run:
        return
    org = _retire_key(call, org, old_key, record)
    _install_key(call, org, new_key)


def _revoke_key(call: Call, params: RevokeKeyParams, dry_run: bool) -> None:
    org = get_org(call.store, params.org_id)
    public_key = params.key
    record = _owned_key(call, org, public_key)
    if dry_run:
        return
    _retire_key(call, org, public_key, record)


def _set_roles(call: Call, params: SetRolesParams, dry_run: bool) -> None:
    org = get_org(call.store, params.org_id)
    roles, scopes = params.roles, params.scopes
    if dry_run:
        return
    save(call.store, org_key(org.org_id), replace(org, roles=roles, scopes=scopes))
    call.emit("roles_set", {"org_id": org.org_id, "roles": list(roles), "scopes": list(scopes)})


def _governed_set(call: Call) -> ValidatorSetRecord:
    record = validator_set(call.store)
    if record is None:
        raise Rejected(
            ErrorCode.VALIDATORS_NOT_GOVERNED,
            "this chain's genesis lists no validators: its set is fixed by configuration",
        )
    return record


def _add_validator(call: Call, params: AddValidatorParams, dry_run: bool) -> None:
    record = _governed_set(call)
    get_org(call.store, params.org_id)
    if record.find(params.key) is not None:
        raise Rejected(
            ErrorCode.DUPLICATE, f"key {params.key.hex()[:16]} is already a validator's key"
        )
    if len(record.ids) >= MAX_VALIDATORS:
        raise Rejected(ErrorCode.LIMIT_EXCEEDED, f"the set already has {MAX_VALIDATORS} validators")
    if dry_run:
        return
    added = Validator(
        record.next_id,
        params.org_id,
        params.key,
        params.tls_identity,
        params.peer_address,
        params.api_address,
    )
    updated = ValidatorSetRecord.of(record.next_id + 1, (*record.validators(), added))
    save(call.store, VALIDATORS_KEY, updated)
    call.emit(
        "validator_added",
        {"validator_id": added.validator_id, "org_id": added.org_id, "key": added.public_key},
    )


def _remove_validator(call: Call, params: RemoveValidatorParams, dry_run: bool) -> None:
    record = _governed_set(call)
    removed = record.find(params.key)
    if removed is None:
        raise Rejected(
            ErrorCode.UNKNOWN_VALIDATOR, f"key {params.key.hex()[:16]} is not a validator's key"
        )
    if len(record.ids) - 1 < MIN_VALIDATORS:
        raise Rejected(
            ErrorCode.VALIDATOR_SET_TOO_SMALL,
            f"removing it would leave {len(record.ids) - 1} validators; "
            f"at least {MIN_VALIDATORS} keep one fault tolerated",
        )
    if dry_run:
        return
    kept = tuple(v for v in record.validators() if v.public_key != params.key)
    save(call.store, VALIDATORS_KEY, ValidatorSetRecord.of(record.next_id, kept))
    call.emit(
        "validator_removed",
        {"validator_id": removed.validator_id, "org_id": removed.org_id, "key": removed.public_key},
    )


def revoke_own_key(call: Call, args: RevokeOwnKeyArgs) -> None:
    public_key = args.key
    org = call.sender_org
    record = _owned_key(call, org, public_key)
    if len(org.keys) == 1:
        raise Rejected(
            ErrorCode.UNAUTHORIZED,
            f"key {public_key.hex()[:16]} is the last key of {org.org_id}: "
            "propose rotate_key to replace it",
        )
    _retire_key(call, org, public_key, record)
