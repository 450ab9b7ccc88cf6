"""Read sets (contracts/recorded_reads.py): what a verdict reads is all it needs.

A light client recomputes a compliance verdict from the reads a node
proved; these tests pin the two halves: the recorder sees every read the
contract code makes (and refuses a scan, which no point proof covers), and
the proven view answers exactly the recorded reads and names any other.
"""

from __future__ import annotations

import pytest
from contracts_testkit import World, cut_and_grade, export_to_belgium, mine_and_extract

from contracts.diamond_compliance import compliance
from contracts.orgs import sanction_key
from contracts.queries import query
from contracts.recorded_reads import (
    ProvenState,
    RecordingState,
    TooManyReads,
    UnprovableRead,
    UnprovenRead,
)
from contracts.state import MemoryState


def graded_stone() -> World:
    world = World()
    mine_and_extract(world, "P1", 10_000)
    export_to_belgium(world, "P1", 10_000)
    cut_and_grade(world, "P1")
    return world


def test_the_recorder_keeps_each_value_and_each_absence_once_in_key_order() -> None:
    recorder = RecordingState(MemoryState([(b"b", b"2"), (b"a", b"1")]), max_reads=8)
    assert recorder.get(b"b") == b"2"
    assert recorder.get(b"zz") is None
    assert recorder.get(b"a") == b"1"
    assert recorder.get(b"b") == b"2"
    assert recorder.reads() == [(b"a", b"1"), (b"b", b"2"), (b"zz", None)]


def test_the_recorder_refuses_a_scan_and_reads_beyond_its_bound() -> None:
    recorder = RecordingState(MemoryState([(b"a", b"1")]), max_reads=2)
    with pytest.raises(UnprovableRead):
        recorder.scan(b"a")
    recorder.get(b"a")
    recorder.get(b"b")
    recorder.get(b"a")  # already recorded: no new read
    with pytest.raises(TooManyReads):
        recorder.get(b"c")


def test_the_proven_view_answers_proven_keys_and_names_any_other() -> None:
    view = ProvenState([(b"a", b"1"), (b"gone", None)])
    assert view.get(b"a") == b"1"
    assert view.get(b"gone") is None
    with pytest.raises(UnprovenRead) as missing:
        view.get(b"sanction/mine/M1")
    assert missing.value.key == b"sanction/mine/M1"
    with pytest.raises(UnprovableRead):
        view.scan(b"")
    with pytest.raises(ValueError, match="twice"):
        ProvenState([(b"a", b"1"), (b"a", None)])


def test_compliance_reads_points_only_and_its_reads_reproduce_the_verdict() -> None:
    world = graded_stone()
    world.ok("regulator", "diamonds", "sanction", {"kind": "mine", "target": "M1", "reason": "x"})
    recorder = RecordingState(world.state, max_reads=10_000)
    served = query(recorder, "diamonds", "compliance", {"asset_id": "S1"})
    assert served["ok"] and served == query(
        world.state, "diamonds", "compliance", {"asset_id": "S1"}
    )
    reads = recorder.reads()
    # Present and absent keys both count: the sanction read, and the absent
    # sanction of every organisation on the way.
    assert (sanction_key("mine", "M1"), world.state.get(sanction_key("mine", "M1"))) in reads
    assert (sanction_key("org", "debswana"), None) in reads
    assert query(ProvenState(reads), "diamonds", "compliance", {"asset_id": "S1"}) == served


def test_every_recorded_read_is_needed_to_recompute_the_verdict() -> None:
    world = graded_stone()
    recorder = RecordingState(world.state, max_reads=10_000)
    compliance(recorder, "S1", 100)
    reads = recorder.reads()
    for left_out in range(len(reads)):
        partial = reads[:left_out] + reads[left_out + 1 :]
        with pytest.raises(UnprovenRead) as missing:
            compliance(ProvenState(partial), "S1", 100)
        assert missing.value.key == reads[left_out][0]
