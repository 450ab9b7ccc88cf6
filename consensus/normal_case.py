"""PBFT's normal case: requests, proposals, the three phases and delivery.

The primary batches waiting requests into PRE-PREPAREs (at most
``max_batch_size``, or fewer once the oldest has waited ``batch_timeout_ms``)
for consecutive heights inside the window.  A backup checks a proposal
(``batch_problem``) before it PREPAREs; a replica with the pre-prepare and
quorum-1 matching prepares from backups is prepared, records its prepared
certificate and COMMITs; a quorum of matching commits gives the commit
certificate.  Committed batches are delivered strictly in height order with
the header the replica derives.

Carrier blocks.  The results of height h are certified by the lowest later
block whose batch carries an executed height >= h (contracts/results.py), so
results are certified only when a later proposal carries them.  When the
chain goes idle after a burst nothing would.  So a primary with nothing
unproposed, every height it knows executed (for ``batch_timeout_ms``, in
case a request comes to carry them instead) and room in the window proposes
one EMPTY batch when some executed height with requests is carried by no
batch it knows (``maybe_carry``).  A backup accepts an empty batch only when it may carry
new results: its executed height lies above every executed height carried
by the batches it knows at lower heights, and not every height in between is
known to be empty (``carries_new_results``).  A faulty primary therefore
cannot chain empty blocks that carry only each other; an honest carrier is
never refused, since any height it carries with requests is one its backups
either know to hold requests or do not know at all.  An empty carrier's own
results need no carrier (it has no receipts), so the chain goes quiet again.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from consensus.blocks import ChainTip, CommittedBlock, derive_header
from consensus.events import (
    Broadcast,
    Deliver,
    Effect,
    Persist,
    PreparedRecord,
    PrePrepareRecord,
    RequestDropped,
    Send,
    VoteRecord,
)
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Commit,
    ForwardedRequest,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    sign,
)
from consensus.state import ReplicaState, ViewMessage

V = TypeVar("V", Prepare, Commit)


@dataclass(frozen=True)
class Equivocation:
    """Two signed proposals of one primary for one (view, height)."""

    first: PrePrepare
    second: PrePrepare


def is_stale(r: ReplicaState, message: ViewMessage) -> bool:
    """For an earlier view, or at or below the stable checkpoint: never needed again."""
    if message.view < r.view or message.height <= r.low_watermark:
        r.dropped["stale"] += 1
        return True
    return False


def hold(r: ReplicaState, sender: int, message: ViewMessage) -> None:
    """Route BUFFER: keep a view-stamped message until the view starts."""
    if not is_stale(r, message):
        r.buffer_message(sender, message)


def order(
    r: ReplicaState, sender: int, message: ViewMessage, effects: list[Effect]
) -> Equivocation | None:
    """Route ORDER: vote on a message of this view inside the window; buffer
    one for a later view or beyond the window.  Returns the evidence when the
    primary equivocated (the caller deposes it)."""
    if is_stale(r, message):
        return None
    if (
        message.view > r.view
        or message.height > r.low_watermark + r.config.window_size
        or not (r.is_member and r.in_window_epoch(message.height))
    ):
        # Beyond the window, or past a change of validator set: kept until
        # the window moves (consensus.epochs).
        r.buffer_message(sender, message)
        return None
    if not r.validators.contains(message.sender):
        r.dropped["not_in_validator_set"] += 1
        return None
    match message:
        case PrePrepare():
            return on_pre_prepare(r, message, effects)
        case Prepare():
            on_prepare(r, message, effects)
        case Commit():
            on_commit(r, message, effects)
    return None


def on_pre_prepare(
    r: ReplicaState, pre_prepare: PrePrepare, effects: list[Effect]
) -> Equivocation | None:
    if pre_prepare.sender != r.primary:
        r.dropped["pre_prepare_not_from_primary"] += 1
        return None
    slot = r.slot(pre_prepare.height)
    if slot.pre_prepare is not None:
        if slot.pre_prepare.batch.digest != pre_prepare.batch.digest:
            return Equivocation(slot.pre_prepare, pre_prepare)
        r.dropped["duplicate"] += 1
        return None
    problem = batch_problem(r, pre_prepare.batch, pre_prepare.height)
    if problem is not None:
        r.dropped[f"bad_batch:{problem}"] += 1
        return None
    accept_pre_prepare(r, pre_prepare, effects)
    return None


def batch_problem(r: ReplicaState, batch: Batch, height: int) -> str | None:
    """Why a fresh proposal for ``height`` must not be prepared, if it must not."""
    if batch.height != height:
        return "height"
    if len(batch.requests) > r.config.max_batch_size:
        return "size"
    if not batch.requests and not carries_new_results(r, batch.executed_height, height, True):
        return "empty_carries_nothing"
    seen: set[bytes] = set()
    for request in batch.requests:
        if request.digest in seen or not request.well_formed():
            return "request_malformed_or_repeated"
        seen.add(request.digest)
        if request.digest in r.recent_digests:
            return "request_already_ordered"
        if r.in_flight.get(request.digest, height) != height:
            return "request_in_flight"
        if request.digest not in r.waiting and not r.request_valid(request.payload):
            return "request_invalid"
    if abs(batch.proposer_time_ms - r.now_ms) > r.config.max_clock_skew_ms:
        return "clock_skew"
    if batch.proposer_time_ms < previous_time_ms(r, height):
        return "time_before_previous"
    if not 0 <= batch.executed_height < height:
        return "executed_height"
    known_root = r.executed_roots.get(batch.executed_height)
    if known_root is not None and known_root != batch.executed_results_root:
        return "results_root_mismatch"
    return None


def carried_below(r: ReplicaState, height: int) -> int:
    """The highest executed height carried by a batch this replica knows
    (delivered, or pre-prepared in this view) below ``height``."""
    logged = [
        slot.pre_prepare.batch.executed_height
        for h, slot in r.log.items()
        if h < height and slot.pre_prepare is not None
    ]
    return max([r.carried_height, *logged])


def holds_requests(r: ReplicaState, height: int) -> bool | None:
    """Whether the block at ``height`` holds requests; None when this replica
    does not know (not delivered since it started, or forgotten, and not in
    its log)."""
    if height <= r.delivered.height:
        if height < r.heights_known_from or height <= r.carried_height:
            return None
        return height in r.request_heights
    slot = r.log.get(height)
    if slot is None or slot.pre_prepare is None:
        return None
    return bool(slot.pre_prepare.batch.requests)


def carries_new_results(r: ReplicaState, executed_height: int, height: int, unknown: bool) -> bool:
    """Would a batch at ``height`` carrying ``executed_height`` carry results
    of a height with requests that no batch below it carries?  ``unknown`` is
    the answer for a height whose contents this replica does not know (both
    a backup and the primary, see maybe_carry, answer True)."""
    carried = carried_below(r, height)
    if executed_height <= carried:
        return False
    # Heights above the delivered one are judged from the log (at most the
    # window's worth, stopping at the first that decides); delivered ones
    # from the bounded request_heights.
    for h in range(max(carried + 1, r.delivered.height + 1), executed_height + 1):
        known = holds_requests(r, h)
        if known is None:
            return unknown
        if known:
            return True
    low, high = carried + 1, min(executed_height, r.delivered.height)
    if low > high:
        return False
    if low < r.heights_known_from:
        return unknown
    return any(low <= h <= high for h in r.request_heights)


def previous_time_ms(r: ReplicaState, height: int) -> int:
    """The proposer time of height - 1 when this view's log has it, else 0.

    Block times are made monotonic at derivation anyway (blocks.py); this
    check only stops a primary from proposing times that run backwards.
    """
    previous = r.log.get(height - 1)
    if previous is not None and previous.pre_prepare is not None:
        return previous.pre_prepare.batch.proposer_time_ms
    return 0


def accept_pre_prepare(r: ReplicaState, pre_prepare: PrePrepare, effects: list[Effect]) -> None:
    """Log a pre-prepare (fresh or from a new view) and vote for it."""
    slot = r.slot(pre_prepare.height)
    slot.pre_prepare = pre_prepare
    r.next_height = max(r.next_height, pre_prepare.height + 1)
    for request in pre_prepare.batch.requests:
        r.unproposed.pop(request.digest, None)
        if pre_prepare.height > r.delivered.height:
            r.in_flight[request.digest] = pre_prepare.height
            if len(r.waiting) < r.config.max_pending_requests:
                r.waiting.setdefault(request.digest, (request, r.now_ms))
    effects.append(Persist(PrePrepareRecord(pre_prepare)))
    if pre_prepare.sender != r.me:
        vote = Prepare(r.view, pre_prepare.height, pre_prepare.batch.digest, r.me)
        slot.prepares[r.me] = cast(r, vote, effects)
    check_prepared(r, pre_prepare.height, effects)


def on_prepare(r: ReplicaState, prepare: Prepare, effects: list[Effect]) -> None:
    if prepare.sender == r.primary:
        r.dropped["prepare_from_primary"] += 1
        return
    slot = r.slot(prepare.height)
    if not record_vote(r, slot.prepares, prepare):
        return
    check_prepared(r, prepare.height, effects)


def on_commit(r: ReplicaState, commit: Commit, effects: list[Effect]) -> None:
    slot = r.slot(commit.height)
    if not record_vote(r, slot.commits, commit):
        return
    check_committed(r, commit.height, effects)


def record_vote(
    r: ReplicaState, votes: dict[int, Prepare] | dict[int, Commit], vote: Prepare | Commit
) -> bool:
    known = votes.get(vote.sender)
    if known is not None:
        kind = "duplicate" if known.digest == vote.digest else "conflicting_vote"
        r.dropped[kind] += 1
        return False
    votes[vote.sender] = vote  # type: ignore[assignment]
    return True


def check_prepared(r: ReplicaState, height: int, effects: list[Effect]) -> None:
    slot = r.log[height]
    if slot.pre_prepare is None or slot.sent_commit:
        return
    digest = slot.pre_prepare.batch.digest
    prepares = [p for p in slot.prepares.values() if p.digest == digest]
    if len(prepares) < r.vote_quorum - 1:
        return
    certificate = PreparedCertificate(
        slot.pre_prepare, tuple(sorted(prepares, key=lambda p: p.sender))
    )
    r.prepared_certs[height] = certificate
    effects.append(Persist(PreparedRecord(certificate)))
    slot.commits[r.me] = cast(r, Commit(r.view, height, digest, r.me), effects)
    slot.sent_commit = True
    check_committed(r, height, effects)


def check_committed(r: ReplicaState, height: int, effects: list[Effect]) -> None:
    slot = r.log[height]
    if slot.committed or not slot.sent_commit or slot.pre_prepare is None:
        return
    digest = slot.pre_prepare.batch.digest
    commits = [c for c in slot.commits.values() if c.digest == digest]
    if len(commits) < r.vote_quorum:
        return
    slot.committed = True
    if height > r.delivered.height:
        # Progress resets the back-offs and restarts the request timer;
        # re-committing a delivered height (as a new view does with O) is
        # not progress.
        r.view_change_attempts = 0
        r.note_progress()
    if height > r.delivered.height and height not in r.committed:
        certificate = tuple(sorted(commits, key=lambda c: c.sender)[: r.vote_quorum])
        r.committed[height] = CertifiedBatch(slot.pre_prepare.batch, certificate)
        deliver_ready(r, effects)


def cast(r: ReplicaState, vote: V, effects: list[Effect]) -> V:
    """Sign, persist and broadcast one of our votes, refusing to contradict one."""
    kind = type(vote).DOMAIN
    r.guard(kind, vote.view, vote.height, vote.digest)
    signed = sign(vote, r.signer, r.config.chain_id)
    effects.append(Persist(VoteRecord(signed)))
    effects.append(Broadcast(signed))
    return signed


def on_client_request(
    r: ReplicaState, request: Request, effects: list[Effect], forward: bool
) -> None:
    digest = request.digest
    if digest in r.recent_digests:
        effects.append(RequestDropped(digest, "already_ordered"))
        return
    if digest in r.waiting:
        if forward and not r.is_primary and digest in r.unproposed and r.active:
            effects.append(Send(r.primary, ForwardedRequest(request, r.me)))
        return
    if len(r.waiting) >= r.config.max_pending_requests:
        effects.append(RequestDropped(digest, "pending_requests_full"))
        return
    r.waiting[digest] = (request, r.now_ms)
    if digest not in r.in_flight:
        r.unproposed[digest] = request
    if forward and not r.is_primary and r.active:
        effects.append(Send(r.primary, ForwardedRequest(request, r.me)))


def take_batch(r: ReplicaState) -> list[Request]:
    """The oldest unproposed requests, within the batch's count and byte
    bounds (always at least one, so an oversized request cannot stall)."""
    requests: list[Request] = []
    size_bytes = 0
    for digest in list(islice(r.unproposed, r.config.max_batch_size)):
        size_bytes += len(r.unproposed[digest].payload)
        if requests and size_bytes > r.config.max_batch_bytes:
            break
        requests.append(r.unproposed.pop(digest))
    return requests


def maybe_propose(r: ReplicaState, effects: list[Effect]) -> None:
    if not (r.active and r.is_primary):
        return
    if r.delivered.height < r.low_watermark:
        # A primary still catching up cannot tell which of its waiting
        # requests the stable part of the chain already holds.
        return
    while (
        r.unproposed
        and r.next_height <= r.low_watermark + r.config.window_size
        and r.in_window_epoch(r.next_height)
    ):
        oldest = next(iter(r.unproposed))
        waited_ms = r.now_ms - r.waiting.get(oldest, (None, r.now_ms))[1]
        full = len(r.unproposed) >= r.config.max_batch_size
        if not full and waited_ms < r.config.batch_timeout_ms:
            return
        propose(r, take_batch(r), effects)
    maybe_carry(r, effects)


def maybe_carry(r: ReplicaState, effects: list[Effect]) -> None:
    """Propose the empty carrier batch when the chain has gone idle with
    results that no proposal carries (see the module docstring).  Only once
    every height this primary knows is executed, so that the one carrier
    carries the last of a burst rather than one carrier per height."""
    if r.unproposed or r.next_height > r.low_watermark + r.config.window_size:
        return
    if r.executed_height != r.next_height - 1:
        return
    if r.now_ms - r.executed_ms < r.config.batch_timeout_ms:
        return
    # A height this primary does not know the contents of (below its restart
    # tip) counts as needing a carrier: otherwise a cluster restarted between
    # a block and its carrier would leave that block's results uncertified
    # until the next request.  It costs at most one empty block per restart,
    # since a delivered carrier raises carried_height past those heights.
    if carries_new_results(r, r.executed_height, r.next_height, True):
        propose(r, [], effects)


def propose(r: ReplicaState, requests: list[Request], effects: list[Effect]) -> None:
    """Sign, log and broadcast our PRE-PREPARE of ``requests`` at the next height."""
    batch = Batch(
        r.next_height,
        tuple(requests),
        max(r.now_ms, previous_time_ms(r, r.next_height)),
        r.executed_height,
        r.executed_roots[r.executed_height],
    )
    proposal = sign(
        PrePrepare(r.view, r.next_height, batch, r.me),
        r.signer,
        r.config.chain_id,
    )
    r.guard("pre-prepare", r.view, proposal.height, batch.digest)
    accept_pre_prepare(r, proposal, effects)
    effects.append(Broadcast(proposal))


def resend_stuck_votes(r: ReplicaState, effects: list[Effect]) -> None:
    """Retransmission for an empty carrier batch that delivery waits on.

    Called on every heartbeat.  When the lowest undelivered height holds a
    carrier pre-prepared in this view and is still not committed one
    heartbeat later, re-broadcast this replica's own part of it (the
    PRE-PREPARE if it is the primary's, its PREPARE and COMMIT).  Votes
    sent to a replica that was down are lost; for a batch of requests the
    request timer recovers (a new view re-proposes it), but a carrier
    starts no timer, so without this it would wait for the next request.
    Batches of requests are left to the timer, as before: re-sending their
    votes too changes which view changes happen, and the simulator's seed
    sweeps are tuned against the timer's behaviour.  Receivers drop what
    they already hold as duplicates.  Bounded: one slot, at most three
    messages, per heartbeat.
    """
    height = r.delivered.height + 1
    slot = r.log.get(height)
    stuck = (
        slot is not None
        and slot.pre_prepare is not None
        and not slot.pre_prepare.batch.requests
        and slot.pre_prepare.view == r.view
        and not slot.committed
    )
    if not stuck:
        r.stuck_height = None
        return
    if r.stuck_height != height:
        r.stuck_height = height
        return
    assert slot is not None and slot.pre_prepare is not None
    own: list[PrePrepare | Prepare | Commit] = []
    if slot.pre_prepare.sender == r.me:
        own.append(slot.pre_prepare)
    own.extend(vote for vote in (slot.prepares.get(r.me), slot.commits.get(r.me)) if vote)
    effects.extend(Broadcast(message) for message in own)
    r.dropped["resent_stuck_votes"] += 1


def deliver_ready(r: ReplicaState, effects: list[Effect]) -> None:
    while True:
        height = r.delivered.height + 1
        certified = r.committed.pop(height, None)
        if certified is None:
            return
        batch = certified.batch
        header = derive_header(
            r.config.chain_id, batch, r.delivered.block_hash, r.delivered.time_ms
        )
        effects.append(Deliver(CommittedBlock(header, batch.requests, certified.certificate)))
        r.delivered = ChainTip(height, header.hash, header.time_ms, b"")
        note_carried(r, height, batch)
        forget_delivered(r, height, batch)


def note_carried(r: ReplicaState, height: int, batch: Batch) -> None:
    """Remember what a delivered block carried and whether it held requests
    (what carrier blocks are judged by), within bounds."""
    r.carried_height = max(r.carried_height, batch.executed_height)
    if batch.requests:
        r.request_heights.append(height)
    while r.request_heights and r.request_heights[0] <= r.carried_height:
        r.request_heights.popleft()
    while len(r.request_heights) > 2 * r.config.window_size:
        # Forgotten heights count as unknown, never as empty.
        r.heights_known_from = r.request_heights.popleft() + 1


def forget_delivered(r: ReplicaState, height: int, batch: Batch) -> None:
    digests = tuple(request.digest for request in batch.requests)
    # Any block delivered is the cluster's progress, ours or not (a block
    # fetched by state transfer too): the primary is working.
    r.note_progress()
    for request_digest in digests:
        r.waiting.pop(request_digest, None)
        r.unproposed.pop(request_digest, None)
        r.in_flight.pop(request_digest, None)
        r.recent_digests[request_digest] = height
    r.recent.append((height, digests))
    horizon = height - r.config.dedup_horizon_heights
    while r.recent and r.recent[0][0] <= horizon:
        old_height, old_digests = r.recent.popleft()
        for request_digest in old_digests:
            if r.recent_digests.get(request_digest) == old_height:
                del r.recent_digests[request_digest]
