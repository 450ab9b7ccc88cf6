"""The connection caps' bookkeeping: which connections a port holds, by address and identity.

No I/O: :class:`ConnectionTable` decides whether a new connection is
admitted, refused or admitted by evicting another (see the limits in the
package docstring), and :class:`ByAddress` picks that victim in O(1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


def address_key(host: str | None) -> str:
    """The address a per-address cap counts: IPv4 as is, IPv6 by its /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class PortLimits:
    """The caps of one port (see the package docstring, node/runtime/listener/__init__.py)."""

    max_connections: int
    max_per_address: int
    max_per_identity: int
    # Peer port: a full port evicts an unidentified connection (ByAddress.victim).
    evict_when_full: bool
    # TLS certificate names whose connections count per identity (validators).
    trusted_names: frozenset[str]


@dataclass(frozen=True)
class Admission(Generic[Key]):
    refused: str | None
    evicted: tuple[Key, ...] = ()


class ByAddress(Generic[Key]):
    """Entries grouped by client address, each group in arrival order; no I/O.

    ``victim`` is the oldest entry of the address holding the most: when a
    full table must make room, the caller with the most entries pays, so a
    newcomer from an address holding few (a validator dialling in) is not
    evicted unless every address in the table holds as few.  Counts are
    kept in buckets, so every operation is O(1).
    """

    def __init__(self) -> None:
        self._address_of: dict[Key, str] = {}
        self._entries: dict[str, dict[Key, None]] = {}
        self._addresses_holding: dict[int, dict[str, None]] = {}
        self._most = 0

    def __len__(self) -> int:
        return len(self._address_of)

    def __contains__(self, key: object) -> bool:
        return key in self._address_of

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._address_of))

    def count(self, address: str) -> int:
        entries = self._entries.get(address)
        return 0 if entries is None else len(entries)

    def add(self, key: Key, address: str) -> None:
        held = self.count(address)
        self._address_of[key] = address
        self._entries.setdefault(address, {})[key] = None
        self._move(address, held, held + 1)
        self._most = max(self._most, held + 1)

    def remove(self, key: Key) -> bool:
        """Forget ``key``; False when it was not held."""
        address = self._address_of.pop(key, None)
        if address is None:
            return False
        entries = self._entries[address]
        del entries[key]
        if not entries:
            del self._entries[address]
        held = len(entries)
        self._move(address, held + 1, held)
        while self._most > 0 and not self._addresses_holding.get(self._most):
            self._most -= 1
        return True

    def victim(self) -> Key | None:
        if self._most == 0:
            return None
        address = next(iter(self._addresses_holding[self._most]))
        return next(iter(self._entries[address]))

    def _move(self, address: str, old: int, new: int) -> None:
        if old > 0:
            bucket = self._addresses_holding[old]
            del bucket[address]
            if not bucket:
                del self._addresses_holding[old]
        if new > 0:
            self._addresses_holding.setdefault(new, {})[address] = None


class ConnectionTable(Generic[Key]):
    """Which connections one port holds, by address and identity; no I/O."""

    def __init__(self, limits: PortLimits) -> None:
        self.limits = limits
        self._unidentified: ByAddress[Key] = ByAddress()
        self._identified: dict[str, dict[Key, None]] = {}
        self._identity_of: dict[Key, str] = {}

    def __len__(self) -> int:
        return len(self._unidentified) + len(self._identity_of)

    def __contains__(self, key: object) -> bool:
        return key in self._unidentified or key in self._identity_of

    def admit(self, key: Key, address: str) -> Admission[Key]:
        limits = self.limits
        if self._unidentified.count(address) >= limits.max_per_address:
            return Admission("per_address")
        evicted: tuple[Key, ...] = ()
        if len(self._unidentified) >= limits.max_connections:
            victim = self._unidentified.victim() if limits.evict_when_full else None
            if victim is None:
                return Admission("per_port")
            self.release(victim)
            evicted = (victim,)
        self._unidentified.add(key, address)
        return Admission(None, evicted)

    def identify(self, key: Key, identity: str) -> tuple[Key, ...]:
        """Count ``key`` as ``identity``'s from now on; return links it replaces."""
        if not self._unidentified.remove(key):
            return ()
        links = self._identified.setdefault(identity, {})
        replaced = []
        while len(links) >= max(1, self.limits.max_per_identity):
            oldest = next(iter(links))
            self.release(oldest)
            replaced.append(oldest)
        links[key] = None
        self._identity_of[key] = identity
        return tuple(replaced)

    def release(self, key: Key) -> bool:
        """Forget ``key``; False when it was not held (released already)."""
        if self._unidentified.remove(key):
            return True
        identity = self._identity_of.pop(key, None)
        if identity is None:
            return False
        links = self._identified[identity]
        del links[key]
        if not links:
            del self._identified[identity]
        return True

    def unidentified(self) -> list[Key]:
        return list(self._unidentified)
