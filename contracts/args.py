"""Strict reading of transaction and query arguments.

Theory of operation
-------------------
Arguments arrive as an untrusted map.  A handler reads each one through an
:class:`Args` reader that checks its type and range and raises
``invalid_argument`` naming the argument; :meth:`Args.done` then refuses
any argument the handler did not read, so a typo in a field name is an
error rather than a silently ignored value.  Every contract method reads
its arguments this way in one parse function that needs no state
(contracts.methods), so admission can run the very same checks before a
transaction is ordered.

Identifiers (organisations, assets, certificates...) are 1 to
``max_id_len`` characters of letters, digits and ``. _ : -``.  Keeping
``/`` out of them makes every state key unambiguous: the key of one
asset's events can never be a prefix of another asset's.
"""

from __future__ import annotations

from contracts.config import ContractLimits
from contracts.errors import ErrorCode, Rejected

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER_HEX = frozenset("0123456789abcdef")
DIGEST_HEX_LEN = 64  # a SHA-256 digest (a transaction id) in lowercase hex
MAX_AMOUNT = 2**62


def invalid(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_ARGUMENT, message)


def check_id(value: object, what: str, limits: ContractLimits) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= limits.max_id_len
        or not set(value) <= _ID_CHARS
    ):
        raise invalid(
            f"{what} must be an identifier of 1-{limits.max_id_len} chars [A-Za-z0-9._:-]"
        )
    return value


def check_digest_hex(value: object, what: str) -> str:
    """A SHA-256 digest in lowercase hex, such as a proposal id.

    Read apart from identifiers because its length is fixed by the hash,
    not by the chain's ``max_id_len``, which may be shorter.
    """
    if not isinstance(value, str) or len(value) != DIGEST_HEX_LEN or not set(value) <= _LOWER_HEX:
        raise invalid(f"{what} must be {DIGEST_HEX_LEN} lowercase hex digits")
    return value


def check_country(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) != 2 or not set(value) <= _UPPER:
        raise invalid(f"{what} must be an ISO 3166-1 alpha-2 code such as 'BW'")
    return value


def check_amount(value: object, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_AMOUNT:
        raise invalid(f"{what} must be an integer in {minimum}..2**62")
    return value


class Args:
    """Typed accessors over an argument map; see the module docstring."""

    __slots__ = ("_finished", "_limits", "_raw", "_read")

    def __init__(self, raw: dict[str, object], limits: ContractLimits) -> None:
        self._raw = raw
        self._limits = limits
        self._read: set[str] = set()
        self._finished = False

    def _get(self, name: str, optional: bool = False) -> object:
        self._read.add(name)
        if name not in self._raw:
            if optional:
                return None
            raise invalid(f"missing argument {name!r}")
        return self._raw[name]

    def has(self, name: str) -> bool:
        return name in self._raw

    def ident(self, name: str) -> str:
        return check_id(self._get(name), name, self._limits)

    def digest_hex(self, name: str) -> str:
        return check_digest_hex(self._get(name), name)

    def country(self, name: str) -> str:
        return check_country(self._get(name), name)

    def amount(self, name: str, minimum: int = 1) -> int:
        return check_amount(self._get(name), name, minimum)

    def text(self, name: str, optional: bool = False) -> str:
        value = self._get(name, optional)
        if value is None and optional:
            return ""
        if not isinstance(value, str) or len(value) > self._limits.max_string_len:
            raise invalid(f"{name} must be a string of at most {self._limits.max_string_len} chars")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, optional=True)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid(f"{name} must be true or false")
        return value

    def choice(self, name: str, allowed: frozenset[str]) -> str:
        value = self._get(name)
        if not isinstance(value, str) or value not in allowed:
            raise invalid(f"{name} must be one of {sorted(allowed)}")
        return value

    def key(self, name: str) -> bytes:
        value = self._get(name)
        if not isinstance(value, bytes) or len(value) != 32:
            raise invalid(f"{name} must be a 32-byte Ed25519 public key")
        return value

    def items(self, name: str, maximum: int, optional: bool = False) -> list[object]:
        value = self._get(name, optional)
        if value is None and optional:
            return []
        if not isinstance(value, list) or not value:
            raise invalid(f"{name} must be a non-empty list")
        if len(value) > maximum:
            raise Rejected(
                ErrorCode.LIMIT_EXCEEDED, f"{name} has {len(value)} items, over the limit {maximum}"
            )
        return value

    def ident_list(self, name: str, maximum: int, optional: bool = False) -> tuple[str, ...]:
        values = self.items(name, maximum, optional)
        checked = tuple(check_id(value, f"{name} item", self._limits) for value in values)
        if len(set(checked)) != len(checked):
            raise invalid(f"{name} repeats an item")
        return checked

    def word_list(
        self, name: str, allowed: frozenset[str], optional: bool = False
    ) -> tuple[str, ...]:
        values = self.items(name, len(allowed), optional)
        for value in values:
            if not isinstance(value, str) or value not in allowed:
                raise invalid(f"{name} items must be among {sorted(allowed)}")
        checked = tuple(sorted(str(value) for value in values))
        if len(set(checked)) != len(checked):
            raise invalid(f"{name} repeats an item")
        return checked

    def sub(self, value: object, what: str) -> Args:
        """A reader over one map inside a list argument."""
        if not isinstance(value, dict):
            raise invalid(f"{what} must be a map")
        return Args(value, self._limits)

    def map(self, name: str) -> Args:
        """A reader over a map-valued argument."""
        return self.sub(self._get(name), name)

    def raw(self) -> dict[str, object]:
        """The whole argument map, as given."""
        return self._raw

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._read)
        if unknown:
            raise invalid(f"unknown argument(s) {unknown}")
        self._finished = True

    @property
    def finished(self) -> bool:
        """Whether :meth:`done` has accepted the map: every argument was read."""
        return self._finished
