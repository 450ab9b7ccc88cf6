"""The namespace plumbing of the partition tests: cuts what it says, heals, leaves nothing.

Root only.  Two "hosts" with a TCP listener each: a partition stops them
reaching each other while the root namespace still reaches both, and
healing restores the link (about 4 s, with PROVENET_FAULTS=1: the default
run's short 2/2 split in test_partition.py covers the same through real
nodes).  Afterwards no namespace, veth or root-namespace address of the run
is left, even when the body raised, and a dead run's leftovers are swept
(fast, in the default run).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from faults import netns
from faults.netns import existing, namespace_net, unavailable_reason

pytestmark = pytest.mark.network

PORT = 7100
CONNECT_TIMEOUT_S = 0.5
LISTEN = (
    "import socket,sys,time;s=socket.socket();"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
    "s.bind((sys.argv[1],int(sys.argv[2])));s.listen();print('up',flush=True);time.sleep(30)"
)
CONNECT = (
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]))\n"
    "    print('ok')\n"
    "except OSError:\n"
    "    print('cut')\n"
)


def test_namespace_tests_skip_with_a_reason_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = unavailable_reason()
    assert reason is not None and "root" in reason


@pytest.fixture
def netns_ok() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def reach(prefix: list[str], address: str) -> str:
    argv = [*prefix, sys.executable, "-c", CONNECT, address, str(PORT), str(CONNECT_TIMEOUT_S)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()


@pytest.mark.faults
@pytest.mark.skipif(
    not os.environ.get("PROVENET_FAULTS"), reason="set PROVENET_FAULTS=1 for the fault campaign"
)
def test_a_partition_cuts_validator_links_only_and_heals(netns_ok: None) -> None:
    with namespace_net(["a", "b"]) as hosts:
        run_id = hosts.run_id
        listeners = [
            subprocess.Popen(
                [*hosts.exec_prefix(n), sys.executable, "-c", LISTEN, hosts.address(n), str(PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in ("a", "b")
        ]
        try:
            for listener in listeners:
                assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
            a, b = hosts.address("a"), hosts.address("b")
            assert reach(hosts.exec_prefix("a"), b) == "ok"
            hosts.partition(["a"], ["b"])
            assert reach(hosts.exec_prefix("a"), b) == "cut"
            assert reach(hosts.exec_prefix("b"), a) == "cut"
            assert reach([], a) == reach([], b) == "ok"  # clients keep their links
            hosts.heal()
            assert hosts.rules("a") == hosts.rules("b") == []
            assert reach(hosts.exec_prefix("a"), b) == "ok"
        finally:
            for listener in listeners:
                listener.kill()
                listener.wait()
    assert existing(f"{run_id}-") == []


def test_everything_is_removed_even_when_the_body_raises(netns_ok: None) -> None:
    with pytest.raises(RuntimeError), namespace_net(["a"]) as hosts:
        run_id = hosts.run_id
        hosts.partition(["a"], [])
        raise RuntimeError("the test failed")
    assert existing(f"{run_id}-") == []


def test_leftovers_of_a_dead_run_are_swept(netns_ok: None) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    stale = f"{netns.PREFIX}{child.pid}-hub"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netns.sweep_leftovers()
        assert existing(stale) == []
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
