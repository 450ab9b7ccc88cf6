"""One sender's nonces as a client hands them out: counting, giving back, resyncing.

Theory of operation
-------------------
A sender's transactions execute only in nonce order, one per nonce, so a
client that pipelines many calls must hand out nonces with no gap (a gap
stalls every later transaction) and no collision (two pending transactions
with one nonce: one is refused ``nonce_conflict`` or loses as
``nonce_used``).  :class:`NonceBook` is that count, with no I/O:

* ``take`` hands out the lowest *free* nonce first (one a finished call left
  unconsumed), else the next fresh one;
* ``give_back`` returns a nonce whose transaction provably or probably never
  consumed it (refused before ordering, dropped, rejected at the contract
  runtime's admission stage, or its node unreachable), so the next call
  fills the hole instead of leaving it;
* ``resync`` moves the count up to what the network reports; it never moves
  it down below a nonce already handed out, since that nonce may be pending
  in a node's mempool, and a second transaction for it would collide.

A nonce that is consumed, or whose transaction may still be pending (the
wait ran out), is neither given back nor handed out again -- until the
network shows a gap: a later transaction dropped ``nonce_gap`` (or refused
as too far ahead) means some nonce below it never arrived, typically one
whose call timed out and whose transaction was then lost with the node
holding it.  Then ``rebase`` recounts from the network's robust counts
(never from the preferred node alone, which could inflate the count for
ever) and the nonces a call currently holds: every nonce from the
committed count up to the highest held one that no call holds is free
again.  Handing one out again can at worst collide with a transaction
still pending somewhere (``nonce_conflict``, or one of the two loses as
``nonce_used``); it can never make one call execute twice, since a nonce
executes at most once and a call holds one nonce at a time.
"""

from __future__ import annotations

# The most nonces a rebase offers again (from the committed count up): a
# call holding an absurd nonce (a count once inflated by a faulty node)
# must not make the book allocate for every nonce below it.
MAX_REOFFERED_NONCES = 4_096


class NonceBook:
    """One sender's nonce count in one client (see the module docstring)."""

    def __init__(self) -> None:
        # The next fresh nonce; None until the network has been asked.
        self.next: int | None = None
        # Set when the network says the count is behind (a nonce proved used).
        self.stale = False
        # Set when the network shows a gap below a nonce handed out.
        self.gap = False
        # Nonces calls hold now (taken, not yet settled).
        self._held: set[int] = set()
        # Nonces below ``next`` that finished calls left unconsumed.  Bounded
        # by the calls the client had in flight.
        self._free: set[int] = set()

    @property
    def needs_network(self) -> bool:
        return self.next is None or self.stale or self.gap

    @property
    def free(self) -> frozenset[int]:
        return frozenset(self._free)

    def take(self) -> int:
        """The nonce for the next transaction: the lowest free one, else a fresh one."""
        assert self.next is not None, "resync before taking a nonce"
        if self._free:
            nonce = min(self._free)
            self._free.remove(nonce)
        else:
            nonce = self.next
            self.next += 1
        self._held.add(nonce)
        return nonce

    def settle(self, nonce: int) -> None:
        """The call holding ``nonce`` ended and its transaction consumed it, or may
        still be pending somewhere: it is not handed out again (but see rebase)."""
        self._held.discard(nonce)

    def give_back(self, nonce: int) -> None:
        """``nonce`` was not consumed: hand it out again before any fresh one."""
        self._held.discard(nonce)
        if self.next is None or nonce >= self.next:
            return
        self._free.add(nonce)
        # Free nonces at the top of the count are simply not handed out yet.
        while self.next - 1 in self._free:
            self.next -= 1
            self._free.remove(self.next)

    def resync(self, committed: int, pending: int) -> None:
        """Adopt the network's view: ``committed`` is the sender's next nonce on
        chain, ``pending`` the next one past what the nodes hold for it."""
        self.next = max(committed, pending, self.next if self.next is not None else 0)
        self._free = {nonce for nonce in self._free if committed <= nonce < self.next}
        self.stale = False

    def rebase(self, committed: int, robust_pending: int) -> None:
        """Recount after the network showed a gap (see the module docstring):
        ``committed`` and ``robust_pending`` are the counts a quorum vouches for."""
        held_top = max(self._held, default=committed - 1) + 1
        self.next = max(committed, robust_pending, held_top)
        reoffered = range(committed, min(held_top, committed + MAX_REOFFERED_NONCES))
        self._free = {nonce for nonce in reoffered if nonce not in self._held}
        self.stale = self.gap = False

    def forget(self) -> None:
        """Drop everything: the next nonce comes from the network alone."""
        self.next = None
        self.stale = self.gap = False
        self._free.clear()
        self._held.clear()
