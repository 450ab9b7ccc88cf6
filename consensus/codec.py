"""The one canonical encoder of Provenet, SHA-256 digests and Ed25519 signing.

Theory of operation
-------------------
Everything that is hashed or signed anywhere in Provenet (consensus
messages, blocks, transactions, state) goes through :func:`encode`, so two
machines that hold equal values always produce equal bytes.  The encoding is
msgpack restricted to one form:

* values are ``None``, ``bool``, ``int`` (-2**63 .. 2**64-1), ``str``,
  ``bytes``, lists (tuples encode as lists) and maps whose keys are ``str``;
* map keys are written in sorted order (code-point order, which is the
  order of their UTF-8 bytes) and never repeat;
* every integer and length uses msgpack's shortest form (the packer does
  this on its own);
* no floats, no extension types.

:func:`decode` accepts exactly the bytes :func:`encode` would produce: it
decodes with hard limits (:class:`Limits`) on size, nesting depth,
collection length, string and bytes length, and on the total number of
values and of containers, and then re-encodes the value and compares, which
rejects every non-canonical form (unsorted or repeated keys, long-form
integers, ``bin`` used for text...) with one test instead of a list of
special cases.  Whatever the input, the only exception that leaves
:func:`decode` is :class:`DecodeError`.

Decoding cost is bounded before the work: every value takes at least one
byte, so an input no longer than the value and container limits cannot
exceed them, and is unpacked at once.  A longer input is first walked by
msgpack's own streaming reader, header by header (``read_array_header``,
``read_map_header``, ``skip``), which builds no value: each container's
item count is added to the running total when its header is read, so an
input that holds too many values, too many containers, or nests too deep
is refused after reading at most the limits' worth of headers, whatever its
length.  Only then is it unpacked.  The cost of any input is therefore
linear in its length and bounded by its limits (the time and memory per
input kind are in the README, measured by ``scripts/bench_decode.py``).

Signatures never cover bare payloads: :func:`signing_bytes` prefixes a
domain tag (what kind of object this is) and the chain id (which network),
so no signed object can be replayed as another kind or on another network.
Ed25519 keys and signatures are the same bytes whatever library makes
them; :class:`Ed25519Signer` and :func:`ed25519_verify` delegate to
:mod:`consensus.ed25519`, the one module that touches the signing
library (PyNaCl), which applies one acceptance rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import msgpack

from consensus import ed25519 as _ed25519

# A value the codec can carry.  (Recursive aliases are spelled out loosely
# because mypy's support for them is limited; `encode` checks at run time.)
Value = None | bool | int | str | bytes | list["Value"] | tuple["Value", ...] | dict[str, "Value"]

DIGEST_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


class DecodeError(ValueError):
    """Input bytes are malformed, non-canonical or over a limit."""


class EncodeError(TypeError):
    """The caller asked to encode a value outside the canonical subset."""


class ShapeError(DecodeError):
    """A decoded value does not have the shape of the model read from it.

    Every model that crosses a boundary (a block header, a commit
    certificate, a receipt, a proof, a chain page) raises this, and only
    this, from its decoders, with a message naming the field; the caller
    turns it into its own error kind (a rejected block, a refused proof, a
    malformed bundle)."""


# Heights, views, times and counts are at most 2**63 - 1: JSON integers are
# unbounded, and one past the codec's range could not even be hashed.
FIELD_INT_MAX = 2**63 - 1


@dataclass(frozen=True)
class FieldReader:
    """Typed reads of one decoded map that holds exactly the expected fields.

    ``hex_bytes`` reads the JSON form of a model, in which bytes travel as
    hex strings; otherwise bytes are bytes (the msgpack form).  ``what``
    names the map in every error."""

    values: dict[str, object]
    what: str
    hex_bytes: bool = False

    @classmethod
    def of(
        cls, value: object, names: frozenset[str], what: str, hex_bytes: bool = False
    ) -> FieldReader:
        if not isinstance(value, dict):
            raise ShapeError(f"{what} is not a map")
        if set(value) != names:
            missing = sorted(names - set(value))
            unknown = sorted(str(name) for name in set(value) - names)
            raise ShapeError(f"{what} has fields missing {missing}, unknown {unknown}")
        return cls(value, what, hex_bytes)

    def integer(self, name: str) -> int:
        value = self.values[name]
        # bool is an int subclass; a decoded true is never a height.
        if type(value) is not int or not 0 <= value <= FIELD_INT_MAX:
            raise ShapeError(f"{self.what}.{name} must be an integer in 0..2**63-1")
        return value

    def text(self, name: str) -> str:
        value = self.values[name]
        if not isinstance(value, str):
            raise ShapeError(f"{self.what}.{name} must be a string")
        return value

    def blob(self, name: str, sizes: tuple[int, ...] | None = None) -> bytes:
        return read_blob(self.values[name], f"{self.what}.{name}", sizes, self.hex_bytes)


def read_blob(
    value: object, what: str, sizes: tuple[int, ...] | None = None, hex_bytes: bool = False
) -> bytes:
    """``value`` as bytes (from hex when ``hex_bytes``), of one of ``sizes`` if given."""
    raw: bytes | None = value if isinstance(value, bytes) and not hex_bytes else None
    if hex_bytes and isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None or (sizes is not None and len(raw) not in sizes):
        kind = "bytes as hex" if hex_bytes else "bytes"
        size = "" if sizes is None else " or ".join(str(size) for size in sizes) + " "
        raise ShapeError(f"{what} must be {size}{kind}")
    return raw


def hex_fields(fields: dict[str, object]) -> dict[str, object]:
    """The JSON form of a flat model map: every bytes value as lowercase hex."""
    return {
        name: value.hex() if isinstance(value, bytes) else value for name, value in fields.items()
    }


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds enforced by :func:`decode`.

    The defaults suit the node's own records (its database and state), which
    it wrote itself; every decoder of input from elsewhere passes limits
    sized to what honest traffic of its kind needs.  ``max_depth`` counts
    levels below the top value (items of a top-level list are at depth 1).
    ``max_objects`` counts every value, containers and map keys included (a
    map of n entries is 1 + 2n values); ``max_containers`` counts lists and
    maps.  These two bound the work and memory of decoding, which grow with
    the number of values, not with the number of bytes.
    """

    max_size_bytes: int = 16 * 1024 * 1024
    max_depth: int = 32
    max_collection_len: int = 100_000
    max_str_len: int = 1024 * 1024
    max_bytes_len: int = 8 * 1024 * 1024
    max_objects: int = 1_048_576
    max_containers: int = 262_144


DEFAULT_LIMITS = Limits()


def encode(value: object) -> bytes:
    """Return the canonical msgpack bytes of ``value``.

    Raises :class:`EncodeError` for floats, non-string map keys, integers
    out of range or any other type: that is a programming error of the
    caller, never a property of peer input.
    """
    return msgpack.packb(_canonical(value, 0), use_bin_type=True)  # type: ignore[no-any-return]


def _canonical(value: object, depth: int) -> object:
    """Check ``value`` and return it with every map's keys sorted.

    Exact-type tests come first because this walk is the hottest code of a
    node (every record, vote and signed body goes through it); subclasses
    (an ``IntEnum``, a ``str`` enum) take the slower ``isinstance`` path below.
    """
    kind = type(value)
    if kind is str or kind is bytes or kind is bool or value is None:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise EncodeError(f"integer {value} is outside the msgpack range")
        return value
    if depth > DEFAULT_LIMITS.max_depth:
        raise EncodeError("value nests deeper than the codec allows")
    if kind is list or kind is tuple:
        items: list[object] | tuple[object, ...] = value  # type: ignore[assignment]
        _check_item_depth(len(items), depth)
        if all(type(item) is bytes or type(item) is str for item in items):
            return list(items)
        return [_canonical(item, depth + 1) for item in items]
    if kind is dict:
        mapping: dict[object, object] = value  # type: ignore[assignment]
        _check_item_depth(len(mapping), depth)
        for key in mapping:
            if type(key) is not str:
                raise EncodeError(f"map key {key!r} is not a string")
        return {key: _canonical(mapping[key], depth + 1) for key in sorted(mapping)}  # type: ignore[type-var]
    return _canonical_subclass(value, depth)


def _check_item_depth(count: int, depth: int) -> None:
    """A container's items sit one level below it (the fast paths skip their own check)."""
    if count and depth + 1 > DEFAULT_LIMITS.max_depth:
        raise EncodeError("value nests deeper than the codec allows")


def _canonical_subclass(value: object, depth: int) -> object:
    if isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        return _canonical(int(value), depth)
    if isinstance(value, list | tuple):
        return _canonical(list(value), depth)
    if isinstance(value, dict):
        return _canonical(dict(value), depth)
    raise EncodeError(f"type {type(value).__name__} is not in the canonical subset")


def _reject_ext(code: int, data: bytes) -> object:
    raise DecodeError(f"extension type {code} is not allowed")


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> object:
    """Decode canonical bytes; raise :class:`DecodeError` for anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("input is not bytes")
    if len(data) > limits.max_size_bytes:
        raise DecodeError(f"input of {len(data)} bytes exceeds {limits.max_size_bytes}")
    raw = bytes(data)
    if len(raw) > min(limits.max_objects, limits.max_containers):
        _check_shape(raw, limits)
        value = _unpack(raw, limits)
    else:
        # Every value takes a byte at least, so neither count can be over its
        # limit: unpack at once, then check depth, floats and keys on the tree.
        value = _unpack(raw, limits)
        _check_tree(value, limits)
    try:
        canonical = encode(value)
    except EncodeError as exc:
        raise DecodeError(str(exc)) from None
    if canonical != raw:
        raise DecodeError("input is not in canonical form")
    return value


def _unpack(raw: bytes, limits: Limits) -> object:
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bytes_len,
            max_array_len=limits.max_collection_len,
            max_map_len=limits.max_collection_len,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types; all mean "malformed".
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}") from None


# What a value's first byte says it is (the msgpack specification's table).
_SCALAR, _ARRAY, _MAP, _FLOAT, _EXT = range(5)
_KINDS = bytearray(256)
for _head in [*range(0x90, 0xA0), 0xDC, 0xDD]:
    _KINDS[_head] = _ARRAY
for _head in [*range(0x80, 0x90), 0xDE, 0xDF]:
    _KINDS[_head] = _MAP
for _head in (0xCA, 0xCB):
    _KINDS[_head] = _FLOAT
for _head in (0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8):
    _KINDS[_head] = _EXT
_KIND_OF = bytes(_KINDS)
_STR_HEADS = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB])


def _check_shape(raw: bytes, limits: Limits) -> None:
    """Walk the headers of ``raw`` without building a value; refuse it at the
    first header that takes it over a limit."""
    try:
        _walk_headers(raw, limits)
    except DecodeError:
        raise
    except Exception as exc:  # truncated input, a never-used byte, ...
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}") from None


def _walk_headers(raw: bytes, limits: Limits) -> None:
    reader = msgpack.Unpacker(max_buffer_size=len(raw))
    reader.feed(raw)
    tell, skip = reader.tell, reader.skip
    # For each open container: the values it still holds (a map's keys and
    # values both count, so in a map an even count left means a key is next),
    # and whether it is a map.
    left = [1]
    is_map = [False]
    objects = 1
    containers = 0
    while left:
        count = left[-1]
        if not count:
            left.pop()
            is_map.pop()
            continue
        # Skip a run of scalars without leaving this loop (most of the work).
        in_map = is_map[-1]
        while count:
            head = raw[tell()]
            if in_map and not count % 2 and head not in _STR_HEADS:
                raise DecodeError("map keys must be strings")
            kind = _KIND_OF[head]
            if kind != _SCALAR:
                break
            skip()
            count -= 1
        if not count:
            left[-1] = 0
            continue
        left[-1] = count - 1
        if kind == _ARRAY:
            items = reader.read_array_header()
            values = items
        elif kind == _MAP:
            items = reader.read_map_header()
            values = 2 * items
        elif kind == _FLOAT:
            raise DecodeError("floats are not allowed")
        else:
            raise DecodeError("extension types are not allowed")
        containers += 1
        objects += values
        _check_container(items, len(left), objects, containers, limits)
        left.append(values)
        is_map.append(kind == _MAP)
    if tell() != len(raw):
        raise DecodeError("trailing bytes after the value")


def _check_container(
    items: int, item_depth: int, objects: int, containers: int, limits: Limits
) -> None:
    if items > limits.max_collection_len:
        raise DecodeError(
            f"a collection of {items} exceeds {limits.max_collection_len} (max_collection_len)"
        )
    if items and item_depth > limits.max_depth:
        raise DecodeError(f"nesting deeper than {limits.max_depth} (max_depth)")
    if containers > limits.max_containers:
        raise DecodeError(f"more than {limits.max_containers} containers (max_containers)")
    if objects > limits.max_objects:
        raise DecodeError(f"more than {limits.max_objects} values (max_objects)")


def _check_tree(value: object, limits: Limits) -> None:
    """Reject floats, non-string keys and excess depth, without recursion."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limits.max_depth:
            raise DecodeError(f"nesting deeper than {limits.max_depth} (max_depth)")
        if isinstance(item, float):
            raise DecodeError("floats are not allowed")
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise DecodeError("map keys must be strings")
                stack.append((child, depth + 1))


def digest(data: bytes) -> bytes:
    """SHA-256 of ``data``: the only hash function of the project."""
    return hashlib.sha256(data).digest()


def digest_of(value: object) -> bytes:
    """SHA-256 of the canonical encoding of ``value``."""
    return hashlib.sha256(encode(value)).digest()


def signing_bytes(domain: str, chain_id: str, body: object) -> bytes:
    """The exact bytes a signature covers: domain tag, chain id, body."""
    return encode(["provenet-sig-v1", domain, chain_id, body])


class Signer(Protocol):
    """Something that signs with one validator's or participant's key."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    """Checks a signature; must be a pure function of its arguments."""

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool: ...


class Ed25519Signer:
    """An Ed25519 private key.  Raw 32-byte seeds are the on-disk form.

    Signing goes through :mod:`consensus.ed25519` (libsodium); the
    signature bytes are RFC 8032's, whatever library made them.
    """

    __slots__ = ("_key",)

    def __init__(self, private_key: _ed25519.Ed25519Key) -> None:
        self._key = private_key

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        """Build a key from a 32-byte seed (deterministic: tests, the simulator)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(_ed25519.key_from_seed(bytes(seed)))

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A fresh key from the operating system's randomness (node/ only)."""
        return cls(_ed25519.generate_key())

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def seed(self) -> bytes:
        """The 32-byte private seed, for writing a key file."""
        return self._key.seed

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message``.

    Malformed keys or signatures are simply invalid: this never raises.
    The check runs under the one strict acceptance rule of
    :mod:`consensus.ed25519`, so every node gives the same answer.
    """
    return _ed25519.verify(public_key, message, signature)


class CachingVerifier:
    """Memoises another verifier's answers in a bounded table.

    Verification is a pure function of (key, message, signature), so an
    answer can be reused: a prepared certificate inside a view change holds
    prepares the replica already checked, and the simulator delivers one
    message object to every replica.  The table holds at most
    ``max_entries`` answers and forgets the oldest first.
    """

    __slots__ = ("_answers", "_inner", "_max_entries", "hits", "misses")

    def __init__(self, inner: Verifier = ed25519_verify, max_entries: int = 65_536) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._inner = inner
        self._max_entries = max_entries
        self._answers: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = (public_key, signature, message)
        answer = self._answers.get(key)
        if answer is not None:
            self.hits += 1
            return answer
        self.misses += 1
        answer = self._inner(public_key, message, signature)
        if len(self._answers) >= self._max_entries:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = answer
        return answer


class FakeSigner:
    """A keyed-hash stand-in for Ed25519, for long simulator soaks only.

    The "signature" is SHA-256(seed || message) twice over, and the public
    key is derived from the seed, so :func:`fake_verify` can check it only
    through the registry of keys the simulator keeps.  It is fast and
    forgery-resistant inside the simulator, and worthless anywhere else.
    """

    __slots__ = ("_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._public = digest(b"fake-public" + seed)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        first = digest(self._seed + message)
        return first + digest(first)


class FakeVerifier:
    """Verifies :class:`FakeSigner` signatures by signing again with the key."""

    __slots__ = ("_signers",)

    def __init__(self, signers: list[FakeSigner]) -> None:
        self._signers = {signer.public_key: signer for signer in signers}

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        signer = self._signers.get(public_key)
        return signer is not None and signer.sign(message) == signature
