"""A network whose nodes run on separate "hosts" (network namespaces), as an operator runs one.

The operator's steps, one for one:

1. ``provenet net init DIR --validators 4 --hosts A,B,C,D`` writes keys,
   genesis, the CA and one config per node, each with its own address
   (certificates name that address, so TLS checks hostnames as usual);
2. on each host, ``provenet node run --config nodes/<name>/config.json``;
   here "on each host" is ``ip netns exec <namespace>`` (the harness's
   launcher), and every node keeps the default ports (7100 + i, 7200 + i):
   each namespace has a port space of its own, so nothing else on this
   machine can hold them.

The test process, its SDK workload and the history checker stay in the
root namespace and reach every node at its own address through the bridge
(tests/faults/netns.py).  Processes are stopped by the harness
(:class:`faults.harness.ProcessNetwork`) before the namespaces are deleted,
whatever happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from netfixture import provenet

from faults.harness import ProcessNetwork
from faults.netns import NamespaceNet, namespace_net
from node.ops.catalog import DEFAULT_BASE_PORT


@asynccontextmanager
async def namespace_network(
    parent: Path, validators: int = 4, observers: int = 0
) -> AsyncIterator[tuple[ProcessNetwork, NamespaceNet]]:
    """Init and start a network with one namespace per node; always stop and remove it."""
    names = [f"v{i}" for i in range(validators)] + [f"o{j}" for j in range(observers)]
    with namespace_net(names) as hosts:
        directory = parent / "net"
        args = ["net", "init", str(directory), "--validators", str(validators)]
        args += ["--observers", str(observers)]
        args += ["--hosts", ",".join(hosts.address(name) for name in names)]
        args += ["--base-port", str(DEFAULT_BASE_PORT)]
        provenet(*args)
        launcher = ProcessNetwork(directory, launcher=lambda entry: hosts.exec_prefix(entry.name))
        async with launcher as net:
            yield net, hosts
