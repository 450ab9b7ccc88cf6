"""A pause must not restart the censorship bound.

A primary that executes others' requests (or keeps a backup behind) but
never this one is deposed once the request has waited max_request_wait_ms.
The resume rule (a tick more than max_tick_gap_ms after the last) restarts
that bound too, so any host stall longer than max_tick_gap_ms (1 s by
default: a long event-loop turn on a saturated host is enough) once per
bound lets the censorship go on for ever.  A lone suspicion is no vote, so
there is nothing to protect by restarting it.
"""

from __future__ import annotations

from helpers import T0, make_config, node, request, sent, signed

from consensus.messages import Status, ViewChange


def test_a_stall_longer_than_the_tick_gap_does_not_restart_the_starvation_bound() -> None:
    config = make_config(
        1, request_timeout_ms=1_000, max_request_wait_ms=30_000, max_tick_gap_ms=1_000
    )
    backup = node(1, config)
    backup.request(request(1))
    # f + 1 peers are ahead (the primary keeps us behind): only starvation applies.
    backup.receive(signed(Status(0, True, 9, 0, 2)), signed(Status(0, True, 9, 0, 3)))
    backup.receive(signed(Status(0, True, 9, 0, 3, suspect=True)))
    now = T0
    while now < T0 + 30_000:
        # Ticks every 500 ms, but one turn of the host's loop took 1.5 s at 20 s.
        now += 1_500 if now == T0 + 20_000 else 500
        effects = backup.tick(now)
    assert [vc.new_view for vc in sent(effects, ViewChange)] == [1]
