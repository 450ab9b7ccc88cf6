"""Validators on separate "hosts": Linux network namespaces joined by a bridge.

Layout (all names start with ``pvn<pid>-`` so leftovers of a dead run can be
found and removed, and a concurrent run's are never touched)::

    root namespace (pytest, the SDK workload)
      pvn<pid>-ra  10.231.S.254/24 ─┐ veth
                                     │
    namespace pvn<pid>-hub           │
      bridge br0 ── pvn<pid>-rb ─────┘
                 ── pvn<pid>-v0b ── veth ── pvn<pid>-v0a 10.231.S.1 in namespace pvn<pid>-v0
                 ── pvn<pid>-v1b ── veth ── pvn<pid>-v1a 10.231.S.2 in namespace pvn<pid>-v1
                 ...

The bridge sits in a namespace of its own, so the host's real interfaces
and its bridge/netfilter settings are never touched; the only thing added
to the root namespace is one veth end with an address in a /24 that no
existing route covers.  Clients run in the root namespace (in the test
process) and reach every validator through that leg, so the workload and
the history checker need no ``ip netns exec``.

A partition is a set of iptables DROP rules in the validators' own
namespaces (INPUT from every address on the other side): the links between
the two sides stall the way a cut cable does (no RST, TCP retransmits), and
the client leg stays up, so the test can still ask each side its height.
Healing flushes those rules.  Every rule, veth and bridge lives in a
namespace the run created, so deleting the namespaces removes them all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

PREFIX = "pvn"
SUBNET_FIRST = ipaddress.IPv4Network("10.231.0.0/16")
ROOT_HOST_OCTET = 254
COMMAND_TIMEOUT_S = 10
LINK_GONE_TIMEOUT_S = 5


class NetnsUnavailable(Exception):
    """This machine cannot run namespace tests (not root, no ip or iptables)."""


def unavailable_reason() -> str | None:
    """Why the namespace tests must skip here, or None when they can run."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, bridge and iptables)"
    for tool in ("ip", "iptables"):
        if not _which(tool):
            return f"needs {tool} (apt-get install -y iproute2 iptables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "netns", "exec", probe, "iptables", "-S"])
    except NetnsUnavailable as exc:
        return f"cannot create a namespace with iptables here: {exc}"
    finally:
        _quiet(["ip", "netns", "del", probe])
    return None


def _which(tool: str) -> bool:
    return any(
        os.access(os.path.join(d, tool), os.X_OK)
        for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin", *os.environ["PATH"].split(":"))
    )


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def _quiet(argv: Sequence[str]) -> None:
    """Best-effort cleanup: a thing already gone is not an error."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(list(argv), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    """The pid in ``pvn<pid>-...``, or None for a name this module did not make."""
    if not name.startswith(PREFIX):
        return None
    digits = name[len(PREFIX) :].partition("-")[0]
    return int(digits) if digits.isdigit() else None


def sweep_leftovers() -> list[str]:
    """Delete namespaces and root-namespace links left by runs whose process is gone.

    Returns what was removed.  A run that is still alive (another pytest on
    this machine) keeps its things.
    """
    removed: list[str] = []
    for name in _run(["ip", "netns", "list"]).split():
        owner = _owner_pid(name)
        if owner is not None and not _pid_alive(owner):
            _quiet(["ip", "netns", "del", name])
            removed.append(name)
    for name in _root_links():
        owner = _owner_pid(name)
        if owner is not None and not _pid_alive(owner):
            _quiet(["ip", "link", "del", name])
            removed.append(name)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 inside 10.231.0.0/16 that no route of the root namespace overlaps."""
    routes: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in _run(["ip", "-4", "route", "show", "table", "all"]).splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            routes.append(ipaddress.ip_network(first if first != "default" else "0.0.0.0/32"))
    start = os.getpid() % 256
    for step in range(256):
        candidate = list(SUBNET_FIRST.subnets(new_prefix=24))[(start + step) % 256]
        if not any(candidate.overlaps(route) for route in routes if route.prefixlen > 0):
            return candidate
    raise NetnsUnavailable("no free /24 in 10.231.0.0/16")


@dataclass
class NamespaceNet:
    """Namespaces, veths and a bridge for ``names``; see the module docstring."""

    names: tuple[str, ...]
    run_id: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    # ("netns" or "link", name) in creation order: teardown undoes exactly these.
    _created: list[tuple[str, str]] = field(default_factory=list)
    _cut: bool = False

    def namespace(self, name: str) -> str:
        return f"{self.run_id}-{name}"

    @property
    def hub(self) -> str:
        return self.namespace("hub")

    @property
    def root_link(self) -> str:
        return f"{self.run_id}-ra"

    def address(self, name: str) -> str:
        return str(self.subnet.network_address + 1 + self.names.index(name))

    @property
    def root_address(self) -> str:
        return str(self.subnet.network_address + ROOT_HOST_OCTET)

    def exec_prefix(self, name: str) -> list[str]:
        """The argv prefix that runs a command on ``name``'s "host"."""
        return ["ip", "netns", "exec", self.namespace(name)]

    # ---------------------------------------------------------------- setup

    def create(self) -> None:
        """Build everything; on any failure undo what was built and re-raise."""
        for name in self.names:
            if len(f"{self.run_id}-{name}b") > 15:
                raise ValueError(f"interface name for {name!r} is over Linux's 15 characters")
        try:
            self._add_namespace(self.hub)
            _run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
            _run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
            for name in self.names:
                self._add_host(name)
            self._add_root_leg()
        except BaseException:
            self.destroy()
            raise

    def _add_namespace(self, namespace: str) -> None:
        _run(["ip", "netns", "add", namespace])
        self._created.append(("netns", namespace))
        _run(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def _add_host(self, name: str) -> None:
        namespace = self.namespace(name)
        self._add_namespace(namespace)
        inner, outer = f"{self.run_id}-{name}a", f"{self.run_id}-{name}b"
        _run(["ip", "link", "add", inner, "type", "veth", "peer", "name", outer])
        self._created.append(("link", inner))  # deleting it removes the pair, wherever it is
        _run(["ip", "link", "set", inner, "netns", namespace])
        _run(["ip", "link", "set", outer, "netns", self.hub])
        _run(["ip", "-n", self.hub, "link", "set", outer, "master", "br0", "up"])
        cidr = f"{self.address(name)}/{self.subnet.prefixlen}"
        _run(["ip", "-n", namespace, "addr", "add", cidr, "dev", inner])
        _run(["ip", "-n", namespace, "link", "set", inner, "up"])

    def _add_root_leg(self) -> None:
        outer = f"{self.run_id}-rb"
        _run(["ip", "link", "add", self.root_link, "type", "veth", "peer", "name", outer])
        self._created.append(("link", self.root_link))
        _run(["ip", "link", "set", outer, "netns", self.hub])
        _run(["ip", "-n", self.hub, "link", "set", outer, "master", "br0", "up"])
        cidr = f"{self.root_address}/{self.subnet.prefixlen}"
        _run(["ip", "addr", "add", cidr, "dev", self.root_link])
        _run(["ip", "link", "set", self.root_link, "up"])

    # ---------------------------------------------------------------- faults

    def partition(self, *sides: Iterable[str]) -> None:
        """Cut every link between nodes on different ``sides`` (clients keep theirs)."""
        groups = [set(side) for side in sides]
        for group in groups:
            others = {n for g in groups if g is not group for n in g}
            for name in group:
                for other in sorted(others):
                    self._iptables(name, "-A", "INPUT", "-s", self.address(other), "-j", "DROP")
        self._cut = True

    def heal(self) -> None:
        """Remove every rule :meth:`partition` added."""
        for name in self.names:
            self._iptables(name, "-F", "INPUT")
        self._cut = False

    def rules(self, name: str) -> list[str]:
        return [
            line
            for line in _run([*self.exec_prefix(name), "iptables", "-S", "INPUT"]).splitlines()
            if line.startswith("-A")
        ]

    def _iptables(self, name: str, *args: str) -> None:
        _run([*self.exec_prefix(name), "iptables", "-w", "5", *args])

    # ---------------------------------------------------------------- teardown

    def destroy(self) -> None:
        """Remove everything this object created, whatever state it is in."""
        # Deleting one end of a veth deletes both at once (synchronously),
        # whereas a namespace's interfaces go away in the background after
        # `netns del`: links first, so no name is still taken when we return.
        for kind, name in reversed(self._created):
            if kind == "link":
                # A link already moved into a namespace goes with it; in the
                # root namespace (a failed move, the client leg) it goes here.
                _quiet(["ip", "link", "del", name])
            else:
                _quiet(["ip", "netns", "del", name])
        self._created.clear()
        self._wait_links_gone()

    def _wait_links_gone(self) -> None:
        deadline = time.monotonic() + LINK_GONE_TIMEOUT_S
        while time.monotonic() < deadline and self.leftovers():
            time.sleep(0.05)

    def leftovers(self) -> list[str]:
        """Namespaces and root links of this run that still exist."""
        return existing(f"{self.run_id}-")


def existing(prefix: str) -> list[str]:
    """Namespaces, and links of the root namespace, whose names start with ``prefix``."""
    found = [n for n in _run(["ip", "netns", "list"]).split() if n.startswith(prefix)]
    return found + [n for n in _root_links() if n.startswith(prefix)]


def remove_all(prefix: str) -> None:
    """Delete every namespace and root-namespace link whose name starts with ``prefix``."""
    links = [n for n in _root_links() if n.startswith(prefix)]
    for name in links:
        _quiet(["ip", "link", "del", name])
    for name in _run(["ip", "netns", "list"]).split():
        if name.startswith(prefix):
            _quiet(["ip", "netns", "del", name])


def _root_links() -> list[str]:
    names = []
    for line in _run(["ip", "-o", "link", "show"]).splitlines():
        if ":" in line:
            names.append(line.split(":")[1].strip().partition("@")[0])
    return names


@contextlib.contextmanager
def namespace_net(names: Sequence[str]) -> Iterator[NamespaceNet]:
    """A :class:`NamespaceNet` that is destroyed on the way out, even on failure."""
    sweep_leftovers()
    net = NamespaceNet(tuple(names))
    net.create()
    try:
        yield net
    finally:
        net.destroy()
