"""A small declarative reader for the node's JSON files (config.json, genesis.json).

Theory of operation
-------------------
Each section of a file is a *schema*: a mapping from key to :class:`Field`,
whose ``check`` turns the decoded JSON value into a typed one or raises.
:func:`read_object` refuses a key the schema does not name (a typo such as
``listen_hots`` would otherwise be ignored and the default silently used)
and a missing required one.  A check is a function ``(value, at) -> typed
value``; ``at`` (:class:`At`) knows the file and the key path, so every
failure is one :class:`ConfigError` line of the form::

    /etc/provenet/v0/config.json: tls.enabeld: unknown key (did you mean 'enabled'?)
    /etc/provenet/genesis.json: threshold: expected [numerator, denominator] ..., got [2]

Types are compared exactly: JSON ``true`` is not the integer 1 here,
although Python's ``bool`` is an ``int``.  Why not a library: JSON Schema
validators (``jsonschema``) bring five packages for what these functions
do, and msgspec ignores unknown fields of dataclasses and cannot word an
error in terms of what the operator should write.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.sdk.errors import ProvenetError
from node.sdk.strict_json import RepeatedKey, unique_keys

# Longest rendering of an offending value or key in an error message.
MAX_SHOWN_CHARS = 60


class ConfigError(ProvenetError, ValueError):
    """A configuration or genesis file is malformed; the one-line message names the key."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_config", message, text=message)


@dataclass(frozen=True)
class At:
    """Where a value sits: the file and the key path inside it (``peers[1].name``)."""

    file: str
    path: str = ""

    def key(self, name: str) -> At:
        shown = name if name.isidentifier() else _show(name)
        return At(self.file, f"{self.path}.{shown}" if self.path else shown)

    def index(self, position: int) -> At:
        return At(self.file, f"{self.path}[{position}]")

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.path or '(top level)'}: {message}")

    def expected(self, what: str, value: object) -> ConfigError:
        return self.error(f"expected {what}, got {_show(value)}")


Check = Callable[[Any, At], Any]
_REQUIRED = object()
# The default of an optional key that, when absent, is left out of the result
# (for sections that override another object's defaults field by field).
OMITTED = object()


@dataclass(frozen=True)
class Field:
    """One key of a schema: how to check its value, and its default if optional."""

    check: Check
    default: Any = _REQUIRED


def optional(check: Check, default: Any) -> Field:
    return Field(check, default)


def required(check: Check) -> Field:
    return Field(check)


def read_object(value: object, at: At, schema: Mapping[str, Field]) -> dict[str, Any]:
    """Check a JSON object against ``schema``; every key of the result is set."""
    if type(value) is not dict:
        raise at.expected("an object", value)
    for name in value:
        if name not in schema:
            raise at.key(name).error(_unknown_key_message(name, schema))
    result: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in value:
            result[name] = spec.check(value[name], at.key(name))
        elif spec.default is _REQUIRED:
            raise at.key(name).error("missing (this key is required)")
        elif spec.default is not OMITTED:
            result[name] = spec.default
    return result


def read_json_file(path: Path) -> dict[str, Any]:
    """A file holding one JSON object; a key given twice is refused, not last-wins."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except RepeatedKey as exc:
        raise At(str(path)).key(exc.key).error("appears twice in one object") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: is not valid JSON: nested too deeply") from None
    if type(data) is not dict:
        raise At(str(path)).expected("a JSON object", data)
    return data


# ------------------------------------------------------------------ checks


def integer(minimum: int = 0, maximum: int | None = None) -> Check:
    span = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"

    def check(value: Any, at: At) -> int:
        if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
            raise at.expected(f"an integer, {span}", value)
        return value

    return check


def text(value: Any, at: At) -> str:
    """A non-empty string of printable characters."""
    if type(value) is not str or not value or not value.isprintable():
        raise at.expected("a non-empty string", value)
    return value


def boolean(value: Any, at: At) -> bool:
    if type(value) is not bool:
        raise at.expected("true or false", value)
    return value


def choice(options: Collection[str]) -> Check:
    listed = ", ".join(repr(option) for option in sorted(options))

    def check(value: Any, at: At) -> str:
        if type(value) is not str or value not in options:
            raise at.expected(f"one of {listed}", value)
        return value

    return check


def hex_bytes(size: int) -> Check:
    def check(value: Any, at: At) -> bytes:
        raw = None
        if type(value) is str and len(value) == 2 * size:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raw = None
        if raw is None:
            raise at.expected(f"{size} bytes as {2 * size} hex digits", value)
        return raw

    return check


def list_of(item: Check, min_items: int = 0) -> Check:
    def check(value: Any, at: At) -> tuple[Any, ...]:
        if type(value) is not list or len(value) < min_items:
            least = (
                f" of at least {min_items} item{'s' if min_items > 1 else ''}" if min_items else ""
            )
            raise at.expected(f"a list{least}", value)
        return tuple(item(element, at.index(i)) for i, element in enumerate(value))

    return check


def unique(values: list[tuple[At, object]], what: str) -> None:
    """Refuse the second of two equal values (``values``: where each sits, and it)."""
    seen: set[object] = set()
    for at, value in values:
        if value in seen:
            raise at.error(f"{what} {_show(value)} appears twice")
        seen.add(value)


def nested(schema: Mapping[str, Field]) -> Check:
    def check(value: Any, at: At) -> dict[str, Any]:
        return read_object(value, at, schema)

    return check


# ------------------------------------------------------------------ helpers


def _unknown_key_message(name: str, schema: Mapping[str, Field]) -> str:
    close = difflib.get_close_matches(name, list(schema), n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (expected one of: {', '.join(schema)})"


def _show(value: object) -> str:
    """A value as JSON would spell it, on one line, cut short."""
    try:
        shown = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        shown = f"a {type(value).__name__}"
    if len(shown) > MAX_SHOWN_CHARS:
        shown = shown[: MAX_SHOWN_CHARS - 3] + "..."
    return shown
