"""The client API's OpenAPI 3.1 description against what a node serves.

``node/api/openapi.json`` is the published contract of the client API.  These
tests hold it to the node: the file is what ``node/api/openapi/`` builds, it
is valid OpenAPI 3.1 (checked with openapi-spec-validator), its paths and
methods are exactly the routes a node serves, every error code the node
answers with is in it with its status, and a node serves it at
``/v1/openapi.json``.

Then schemathesis (a property-based API tester) generates requests from
the spec against a live single validator on 127.0.0.1, seeded with the
diamond and food demos so blocks, transactions, traces and bundles exist,
and checks every answer: no 5xx, status code, content type, headers and
body conform to the spec, refused (negative) inputs get a 4xx, every error
code is one the spec lists for that status (tests/node/api_fuzz_hooks.py),
and no request takes longer than REQUEST_TIMEOUT_S.  It runs once with JSON
answers and once with ``Accept: application/msgpack``.  The default run is
bounded in examples per operation and in total time; ``PROVENET_API_FUZZ=1
scripts/test -m api_fuzz`` runs a longer one with a random seed.

Not fuzzed: ``GET /v1/events`` is a websocket, which schemathesis cannot
drive (test_api.py covers the stream).  ``positive_data_acceptance`` is
not checked: a transaction's validity (signature, chain, nonce, contract
arguments) cannot be written in a schema, so a schema-valid submission is
rightly refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netfixture import free_base_port
from openapi_spec_validator import OpenAPIV31SpecValidator

from contracts.tx import encode_tx, sign_tx
from node.api import openapi
from node.app import RunningNode, start_node
from node.ops import demo
from node.ops.netinit import init_network
from node.runtime.config import load_node_config
from node.sdk import ProvenetClient
from node.sdk.errors import HTTP_STATUS
from node.sdk.keys import load_identity

JSON = "application/json"
MSGPACK = "application/msgpack"

HERE = Path(__file__).resolve().parent
SPEC_FILE = Path(openapi.__file__).parent.with_name(openapi.SPEC_NAME)

# The fuzz run's bounds.  A request not answered in REQUEST_TIMEOUT_S is a
# hang (schemathesis reports a network error and exits 1); a schemathesis
# process still running after DEFAULT_ or FUZZ_RUN_TIMEOUT_S is killed and
# the test fails.
REQUEST_TIMEOUT_S = 10
DEFAULT_EXAMPLES = 25
DEFAULT_RUN_TIMEOUT_S = 150
FUZZ_EXAMPLES = int(os.environ.get("PROVENET_API_FUZZ_EXAMPLES", "300"))
FUZZ_RUN_TIMEOUT_S = int(os.environ.get("PROVENET_API_FUZZ_TIMEOUT_S", "1800"))
NOT_FUZZED = ("/v1/events", "/v1/chain/stream")
# Every check runs but one: a valid signature cannot be written in a schema,
# so schemathesis's "valid data is accepted" cannot hold for submissions.
EXCLUDED_CHECKS = ("positive_data_acceptance",)


def spec() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SPEC_FILE.read_text())
    return document


# ---------------------------------------------------------------- the file


def test_the_file_is_what_the_builder_gives() -> None:
    assert SPEC_FILE.read_text() == openapi.render(openapi.build_spec()), (
        "node/api/openapi.json is stale: run `python -m node.api.openapi`"
    )


def test_the_spec_is_valid_openapi_3_1() -> None:
    document = spec()
    assert document["openapi"].startswith("3.1.")
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def _error_responses(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    found.append((f"{method.upper()} {path}", status, response))
    for name, response in document["components"]["responses"].items():
        found.append((name, str(response["x-status"]), response))
    return found


def test_every_error_response_is_the_shared_error_schema_with_its_codes() -> None:
    document = spec()
    codes = document["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
    for where, status, response in _error_responses(document):
        schemas = {media: body["schema"] for media, body in response["content"].items()}
        assert schemas == {
            "application/json": {"$ref": "#/components/schemas/Error"},
            "application/msgpack": {"$ref": "#/components/schemas/Error"},
        }, where
        listed = response["x-error-codes"]
        assert listed and set(listed) <= set(codes), where
        assert all(openapi.ERROR_STATUS[code] == int(status) for code in listed), where
        if status == "429":
            assert response["headers"]["Retry-After"] == {
                "$ref": "#/components/headers/Retry-After"
            }, where


def test_every_error_code_of_the_node_is_in_the_spec_with_its_status() -> None:
    document = spec()
    enum = set(document["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"])
    answered = {(status, code) for _, status, r in _error_responses(document) for code in r["x-error-codes"]}  # fmt: skip
    for code, status in HTTP_STATUS.items():
        assert code in enum, f"{code} is missing from the Error enum"
        assert (str(status), code) in answered, f"no operation answers {status} {code}"
    # The other way round: the spec promises no status the node would not give.
    for code in enum:
        assert openapi.ERROR_STATUS[code] == HTTP_STATUS[code], code


# ---------------------------------------------------------------- a live node


@dataclass
class Seeded:
    """A single validator with the demos' diamonds and food lots committed.

    ``fresh`` holds two signed transactions the node has not seen, so the
    fuzz run's examples submit a valid transaction, alone and in a batch.
    """

    node: RunningNode
    directory: Path
    url: str
    stone: str
    lot: str
    tx_id: str
    sender: str
    fresh: tuple[bytes, bytes]


@pytest_asyncio.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Seeded]:
    directory = tmp_path / "net"
    init_network(directory, 1, tls=False, base_port=free_base_port(1))
    config_path = directory / "nodes" / "v0" / "config.json"
    config = json.loads(config_path.read_text())
    # The fuzzer is one client sending as fast as it can: with the default
    # budgets most of its requests would be answered 429 (conformant, but
    # the run would check little else).
    config["limits"] = {"client_cost_per_s": 10**6, "address_cost_per_s": 10**6}
    config_path.write_text(json.dumps(config))
    node = await start_node(load_node_config(config_path))
    try:

        def client(org_id: str) -> ProvenetClient:
            return ProvenetClient.from_network_dir(directory, org_id=org_id)

        quiet = lambda line: None  # noqa: E731
        stone = (await demo.diamonds(client, out=quiet))["stone"]
        lot = (await demo.food(client, out=quiet))["lot"]
        url = f"http://127.0.0.1:{node.config.api_port}"
        farm = load_identity(directory / "orgs" / "farm.key").signer
        sender = farm.public_key.hex()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v1/blocks/1") as response:
                tx_id = (await response.json())["txs"][0]["tx_id"]
            async with http.get(f"{url}/v1/nonce/{sender}") as response:
                nonce = (await response.json())["pending_next_nonce"]
        fresh = tuple(
            encode_tx(
                sign_tx(
                    farm,
                    chain_id=node.config.chain_id,
                    nonce=nonce + offset,
                    contract="food",
                    method="harvest",
                    args={"lot_id": f"FUZZ-{offset}", "product": "wheat", "mass_grams": 1_000},
                )
            )
            for offset in (0, 1)
        )
        yield Seeded(node, directory, url, stone, lot, tx_id, sender, (fresh[0], fresh[1]))
    finally:
        await node.stop()


def _served_routes(node: RunningNode) -> set[tuple[str, str]]:
    served = set()
    for runner in node.runners:
        for route in runner.app.router.routes():
            # aiohttp adds a HEAD route beside every GET; the spec lists the GET.
            if route.method != "HEAD" and route.resource is not None:
                served.add((route.method, route.resource.canonical))
    return served


@pytest.mark.network
@pytest.mark.asyncio
async def test_the_spec_lists_exactly_the_routes_a_node_serves(seeded: Seeded) -> None:
    described = {
        (method.upper(), path) for path, item in spec()["paths"].items() for method in item
    }
    served = _served_routes(seeded.node) - {("GET", "/peer")}  # the peer port, not the API
    assert served == described


@pytest.mark.network
@pytest.mark.asyncio
async def test_a_node_serves_its_spec(seeded: Seeded) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{seeded.url}{openapi.OPENAPI_PATH}") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.read() == SPEC_FILE.read_bytes()


@pytest.mark.network
@pytest.mark.asyncio
async def test_a_405_names_the_methods_the_path_takes(seeded: Seeded) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.delete(f"{seeded.url}/v1/status") as response,
    ):
        assert response.status == 405
        assert (await response.json())["error"]["code"] == "method_not_allowed"
        assert set(response.headers.get("Allow", "").replace(" ", "").split(",")) >= {"GET"}


@pytest.mark.network
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/v1/txs/batch", "text/plain", b'{"envelopes": []}'),
        ("/v1/query", "text/plain", b"{}"),
        ("/v1/txs", "application/octet-stream", b"{}"),
    ],
)
async def test_a_body_of_a_type_the_operation_does_not_take_is_415(
    seeded: Seeded, path: str, content_type: str, body: bytes
) -> None:
    headers = {"Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{seeded.url}{path}", data=body, headers=headers) as response,
    ):
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "unsupported_media_type"


# ---------------------------------------------------------------- schemathesis


def _fuzz_spec(seeded: Seeded) -> dict[str, Any]:
    """The spec with the seeded chain's ids and transactions as examples.

    The examples phase then reaches real blocks, transactions, traces and
    bundles, and submits valid transactions, so those answers are checked
    against their schemas too.
    """
    document = spec()
    examples = {
        "asset_id": seeded.stone,
        "lot_id": seeded.lot,
        "tx_id": seeded.tx_id,
        "sender": seeded.sender,
        "height": 1,
    }
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in examples:
                    parameter["example"] = examples[parameter["name"]]
    bodies = {
        "/v1/txs": {"envelope": seeded.fresh[0].hex()},
        "/v1/txs/batch": {"envelopes": [seeded.fresh[1].hex()]},
        "/v1/query": {"contract": "diamonds", "name": "trace", "args": {"asset_id": seeded.stone}},
    }
    for path, body in bodies.items():
        document["paths"][path]["post"]["requestBody"]["content"][JSON]["example"] = body
    return document


@dataclass(frozen=True)
class FuzzPass:
    """One schemathesis run: which answers it asks for and how far it goes."""

    accept: str
    max_examples: int
    phases: str
    seed: int | None


@dataclass(frozen=True)
class FuzzRun:
    returncode: int
    output: str
    report: dict[str, Any]

    @property
    def examples(self) -> int:
        return int(self.report.get("test_cases", {}).get("generated", 0))

    @property
    def seconds(self) -> float:
        return float(self.report.get("running_time", 0.0))


def _arguments(seeded: Seeded, work: Path, spec_path: Path, run: FuzzPass) -> list[str]:
    arguments = [
        "run",
        str(spec_path),
        f"--url={seeded.url}",
        "--checks=all",
        f"--exclude-checks={','.join(EXCLUDED_CHECKS)}",
        *(f"--exclude-path={path}" for path in NOT_FUZZED),
        f"--phases={run.phases}",
        f"--max-examples={run.max_examples}",
        f"--request-timeout={REQUEST_TIMEOUT_S}",
        "--workers=1",
        "--generation-database=none",
        f"--header=Accept: {run.accept}",
        "--report=json,har",
        f"--report-json-path={work / 'report.json'}",
        f"--report-har-path={work / 'requests.har'}",
        "--no-color",
    ]
    if run.seed is not None:
        arguments.append(f"--seed={run.seed}")
    return arguments


async def _schemathesis(seeded: Seeded, work: Path, run: FuzzPass, timeout_s: int) -> FuzzRun:
    """Run schemathesis's CLI in its own process while this loop serves the node."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "openapi.json"
    spec_path.write_text(json.dumps(_fuzz_spec(seeded)))
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "api_fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        *_arguments(seeded, work, spec_path, run),
        cwd=work,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"schemathesis did not finish in {timeout_s} s")
    report_path = work / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return FuzzRun(process.returncode or 0, output.decode(errors="replace"), report)


async def _fuzz(seeded: Seeded, work: Path, passes: list[FuzzPass], timeout_s: int) -> None:
    for number, run in enumerate(passes):
        result = await _schemathesis(seeded, work / f"pass{number}", run, timeout_s)
        print(
            f"schemathesis, Accept {run.accept}, {run.phases}: "
            f"{result.examples} examples in {result.seconds:.1f} s"
        )
        assert result.returncode == 0, f"schemathesis found problems:\n{result.output}"


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.asyncio
async def test_schemathesis_finds_no_server_error_hang_or_spec_mismatch(
    seeded: Seeded, tmp_path: Path
) -> None:
    # JSON answers through every phase; msgpack answers through the examples
    # and a shorter random phase (the coverage phase's probes are the same).
    passes = [
        FuzzPass(JSON, DEFAULT_EXAMPLES, "examples,coverage,fuzzing", seed=1),
        FuzzPass(MSGPACK, DEFAULT_EXAMPLES // 2, "examples,fuzzing", seed=1),
    ]
    await _fuzz(seeded, tmp_path / "fuzz", passes, DEFAULT_RUN_TIMEOUT_S)


@pytest.mark.network
@pytest.mark.api_fuzz
@pytest.mark.skipif(
    not os.environ.get("PROVENET_API_FUZZ"), reason="set PROVENET_API_FUZZ=1 for the long API fuzz"
)
@pytest.mark.asyncio
async def test_long_api_fuzz(seeded: Seeded, tmp_path: Path) -> None:
    phases = "examples,coverage,fuzzing"
    passes = [FuzzPass(accept, FUZZ_EXAMPLES, phases, seed=None) for accept in (JSON, MSGPACK)]
    await _fuzz(seeded, tmp_path / "fuzz", passes, FUZZ_RUN_TIMEOUT_S)
