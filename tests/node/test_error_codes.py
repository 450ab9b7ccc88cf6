"""One error base with a code, and one table from code to HTTP status.

Every error the node raises on purpose is a :class:`ProvenetError` with a
stable ``code``; every code the client API can answer with has its status
in :data:`HTTP_STATUS` (a code missing there would silently go out as 400
and be missing from the OpenAPI description), and the OpenAPI description
lists each code under that status.  The codes are collected from the
sources, so a new ``ApiError("new_code", ...)`` fails here until the table
names its status.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from functools import cache
from pathlib import Path

import pytest

import node
from contracts.errors import ErrorCode
from node.api import openapi
from node.api.bundle import BundleBuildError, BundleTooCostly, UnknownAsset
from node.api.errors import ApiError
from node.api.routes import _AIOHTTP_CODES
from node.ops.netctl import NetError
from node.runtime.follower import BlockRejected
from node.runtime.mempool import Refused
from node.runtime.storage import StorageError
from node.sdk.bundle_verify import BundleError
from node.sdk.errors import HTTP_STATUS, ProvenetError, status_of
from node.sdk.keys import KeyFileError
from node.sdk.schema import ConfigError
from node.sdk.strict_json import RepeatedKey

NODE_DIR = Path(node.__file__).parent
# Calls whose argument at this position is a client API error code.
CODE_ARGUMENT = {"ApiError": 0, "Refused": 0, "_error_body": 0, "error_response": 1}
# Contract codes the node passes through as API errors: a query's refusal
# (lookups, argument checks, the step budget) and the contracts' stateless
# admission checks (contracts.admission).
CONTRACT_CODES_ANSWERED = {
    *(code.value for code in ErrorCode if code.value.startswith("unknown_")),
    ErrorCode.INVALID_ARGUMENT.value,
    ErrorCode.LIMIT_EXCEEDED.value,
    ErrorCode.BUDGET_EXCEEDED.value,
    ErrorCode.TOO_LARGE.value,
}
# Exceptions of node/ that are control flow inside one module, never shown
# to a caller: they carry no code.
# NodeFailed and its StreamRefused tell the transport's caller to try another node.
INTERNAL_SIGNALS = {"NodeFailed", "StreamRefused", "HandshakeError", "_SlowReader", "Diverged"}


def _literal(node_: ast.expr | None) -> str | None:
    return node_.value if isinstance(node_, ast.Constant) and isinstance(node_.value, str) else None


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _codes_in(tree: ast.AST) -> set[str]:
    """Error codes written literally in one module's API error paths."""
    codes: set[str] = set()
    for item in ast.walk(tree):
        if isinstance(item, ast.Call) and _call_name(item) in CODE_ARGUMENT:
            position = CODE_ARGUMENT[_call_name(item) or ""]
            if len(item.args) > position and (code := _literal(item.args[position])):
                codes.add(code)
        elif isinstance(item, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "code" for target in item.targets
        ):
            # `code = "..."`: BundleBuildError's classes, the listener's parser errors.
            if code := _literal(item.value):
                codes.add(code)
        elif isinstance(item, ast.FunctionDef) and item.name.endswith("_error"):
            # The listener's _server_error returns (code, message).
            for inner in ast.walk(item):
                returned = inner.value if isinstance(inner, ast.Return) else None
                if isinstance(returned, ast.Tuple) and (code := _literal(returned.elts[0])):
                    codes.add(code)
    return codes


@cache
def emitted_codes() -> frozenset[str]:
    """Every code the client API can answer with, from the sources."""
    codes = set(_AIOHTTP_CODES.values()) | {"internal"} | CONTRACT_CODES_ANSWERED
    for path in sorted(NODE_DIR.rglob("*.py")):
        if "ops" in path.relative_to(NODE_DIR).parts:
            continue  # operator tooling answers no HTTP request
        codes |= _codes_in(ast.parse(path.read_text(), str(path)))
    return frozenset(codes)


def test_the_scan_finds_the_codes_of_every_kind_of_refusal() -> None:
    codes = emitted_codes()
    # One of each source: a route, the mempool, a bundle class, the
    # listener's parser and server errors, aiohttp's refusals, a query.
    for code in (
        "malformed_tx",
        "nonce_conflict",
        "unknown_asset",
        "malformed_http",
        "unavailable",
        "method_not_allowed",
        "budget_exceeded",
    ):
        assert code in codes, code
    assert len(codes) >= 35


def test_every_code_the_node_answers_with_has_one_status() -> None:
    missing = sorted(code for code in emitted_codes() if code not in HTTP_STATUS)
    assert not missing, f"add these codes to node.sdk.errors.HTTP_STATUS: {missing}"
    for code, status in HTTP_STATUS.items():
        assert 400 <= status < 600, code
        assert ApiError(code, "m").status == status_of(code) == status


def test_the_openapi_description_gives_every_code_its_status() -> None:
    spec = openapi.build_spec()
    enum = set(spec["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"])
    listed: set[tuple[int, str]] = set()
    for item in spec["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                listed |= {(int(status), code) for code in response.get("x-error-codes", ())}
    for response in spec["components"]["responses"].values():
        listed |= {(response["x-status"], code) for code in response["x-error-codes"]}
    assert enum == set(HTTP_STATUS)
    assert all(HTTP_STATUS[code] == status for status, code in listed)
    assert {code for _, code in listed} >= emitted_codes()


def _node_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages([str(NODE_DIR)], "node."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return list(found.values())


def test_every_error_of_node_has_the_one_base() -> None:
    exceptions = _node_exceptions()
    assert len(exceptions) >= 15
    strays = [
        f"{error.__module__}.{error.__name__}"
        for error in exceptions
        if not issubclass(error, ProvenetError) and error.__name__ not in INTERNAL_SIGNALS
    ]
    assert not strays, f"subclass node.sdk.errors.ProvenetError: {strays}"


@pytest.mark.parametrize(
    ("error", "code", "text", "also"),
    [
        (ApiError("nonce_used", "used"), "nonce_used", "used", Exception),
        (Refused("mempool_full", "full"), "mempool_full", "full", Exception),
        (BlockRejected("bad_certificate", "forged"), "bad_certificate", "forged", Exception),
        (UnknownAsset("no asset S1"), "unknown_asset", "no asset S1", BundleBuildError),
        (BundleTooCostly("too many"), "too_large", "too many", ApiError),
        (ConfigError("f: k: bad"), "bad_config", "f: k: bad", ValueError),
        (KeyFileError("no key"), "bad_key_file", "no key", ValueError),
        (RepeatedKey("a"), "duplicate_key", "the key 'a' appears twice in one object", ValueError),
        (StorageError("corrupt"), "bad_storage", "corrupt", RuntimeError),
        (NetError("no node"), "net_failed", "no node", Exception),
        (BundleError("header", "bad"), "bad_bundle", "block header: bad", Exception),
        (
            ProvenetError("rate_limited", "slow down"),
            "rate_limited",
            "rate_limited: slow down",
            Exception,
        ),
    ],
)
def test_each_error_keeps_its_text_and_the_base_callers_catch(
    error: ProvenetError, code: str, text: str, also: type[BaseException]
) -> None:
    assert isinstance(error, ProvenetError) and isinstance(error, also)
    assert error.code == code
    assert str(error) == text
