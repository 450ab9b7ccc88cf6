"""The `provenet` command.

    provenet sim [simulator options]
    provenet net init DIR --validators N [--observers M] [--no-tls] [--base-port P]
                      [--chain-id ID] [--host H | --hosts A,B,...] [--force]
    provenet net up DIR [--timeout-s S]
    provenet net status DIR
    provenet net down DIR
    provenet node run --config FILE
    provenet tx|query|trace|demo ...      (node/ops/cli_client.py)

Every handler returns an exit code.  An operator's mistake (a bad argument,
a missing or malformed file, an existing network) prints one line to
stderr and exits 1 without a traceback, because a traceback reads as a bug
in Provenet when the fix is in the command line.  Anything else is a bug
and keeps its traceback.

Subcommand modules register handlers with ``set_defaults(handler=fn)``
where ``fn(args: argparse.Namespace) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from node.ops.catalog import CHAIN_ID, DEFAULT_BASE_PORT
from node.ops.cli_bundle import add_bundle_commands
from node.ops.cli_client import add_client_commands
from node.ops.cli_validators import add_validator_commands
from node.ops.netctl import DEFAULT_UP_TIMEOUT_S, NetError
from node.sdk.keys import KeyFileError
from node.sdk.schema import ConfigError

Handler = Callable[[argparse.Namespace], int]

# Failures caused by the operator's input, reported in one line.
OPERATOR_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    KeyFileError,
    NetError,
    FileExistsError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sim"]:
        # The simulator owns its whole argument list (and its --help).
        from consensus.sim.__main__ import main as sim_main

        return sim_main(args[1:])
    parser = build_parser()
    try:
        namespace = parser.parse_args(args)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler | None = getattr(namespace, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(namespace)
    except OPERATOR_ERRORS as exc:
        print(f"provenet: error: {_describe(exc)}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in NODE_EXTRA_MODULES:
            raise
        print(f"provenet: error: {_missing_node_extra(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# The import names of the `node` extra (pyproject.toml).  A participant who
# installed only the SDK (`pip install provenet`) can sign, submit, query and
# verify; running or creating a node needs these, and says so in one line.
NODE_EXTRA_MODULES = frozenset({"cryptography", "uvloop", "prometheus_client"})


def _missing_node_extra(exc: ModuleNotFoundError) -> str:
    return (
        f"this command runs or sets up a node, which needs the node's dependencies "
        f"(missing: {exc.name}): pip install 'provenet[node]'"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provenet", description="Provenet: a permissioned PBFT ledger for value chains."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands.add_parser(
        "sim", help="run the deterministic cluster simulator (provenet sim --help)", add_help=False
    )
    _add_net_commands(commands)
    _add_node_commands(commands)
    add_client_commands(commands)
    add_bundle_commands(commands)
    add_validator_commands(commands)
    return parser


# ------------------------------------------------------------ net


def _add_net_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    net = commands.add_parser("net", help="create and run a local network")
    sub = net.add_subparsers(title="net commands", metavar="ACTION")
    net.set_defaults(handler=lambda _args: _usage(net))

    init = sub.add_parser("init", help="write a network directory (keys, genesis, configs, CA)")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--validators", type=int, required=True, metavar="N")
    init.add_argument(
        "--observers",
        type=int,
        default=0,
        metavar="M",
        help="read-only regulator nodes (default 0)",
    )
    init.add_argument("--no-tls", dest="tls", action="store_false", help="plain http/ws, no CA")
    init.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        metavar="P",
        help=f"api ports P.., peer ports P+100.. (default {DEFAULT_BASE_PORT})",
    )
    init.add_argument("--chain-id", default=CHAIN_ID, metavar="ID", help=f"default {CHAIN_ID}")
    init.add_argument("--host", default="127.0.0.1", help="address nodes listen on and advertise")
    init.add_argument(
        "--hosts",
        type=_address_list,
        metavar="A,B,...",
        help="one address per node (validators, then observers) instead of --host",
    )
    init.add_argument("--force", action="store_true", help="replace an existing network")
    init.set_defaults(handler=_net_init)

    up = sub.add_parser("up", help="start every node in the background and wait until healthy")
    up.add_argument("dir", type=Path, metavar="DIR")
    up.add_argument("--timeout-s", type=float, default=DEFAULT_UP_TIMEOUT_S, metavar="S")
    up.set_defaults(handler=_net_up)

    status = sub.add_parser("status", help="view, height and peers of every node")
    status.add_argument("dir", type=Path, metavar="DIR")
    status.set_defaults(handler=_net_status)

    down = sub.add_parser("down", help="stop every node (SIGTERM, then SIGKILL after 10 s)")
    down.add_argument("dir", type=Path, metavar="DIR")
    down.set_defaults(handler=_net_down)


def _address_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _net_init(args: argparse.Namespace) -> int:
    from node.ops.netctl import load_network
    from node.ops.netinit import init_network

    path = init_network(
        args.dir,
        args.validators,
        tls=args.tls,
        base_port=args.base_port,
        chain_id=args.chain_id,
        host=args.host,
        force=args.force,
        observers=args.observers,
        hosts=args.hosts,
    )
    network = load_network(path.parent)
    security = f"TLS, CA {network.ca_file}" if network.tls else "no TLS"
    validators = sum(1 for node in network.nodes if node.role == "validator")
    observers = len(network.nodes) - validators
    print(
        f"wrote network {network.chain_id} ({validators} validators, {observers} observers, {security})"
    )
    print(f"  in {network.root}")
    _warn_ephemeral_ports(args.base_port, len(network.nodes))
    print(f"start it with: provenet net up {args.dir}")
    return 0


def _warn_ephemeral_ports(base_port: int, nodes: int) -> None:
    from node.ops.netinit import ephemeral_port_range, ephemeral_ports

    clashing = ephemeral_ports(base_port, nodes)
    if clashing:
        low, high = ephemeral_port_range()
        print(
            f"warning: ports {clashing[0]}..{clashing[-1]} are in the kernel's ephemeral range "
            f"{low}-{high}: an outgoing connection can take one while its node restarts; "
            "choose a --base-port outside it (the default 7100 is)",
            file=sys.stderr,
        )


def _net_up(args: argparse.Namespace) -> int:
    from node.ops import netctl

    endpoints = netctl.up(args.dir, args.timeout_s)
    print(netctl.format_endpoints(args.dir, endpoints))
    return 0


def _net_status(args: argparse.Namespace) -> int:
    from node.ops import netctl

    rows = netctl.status(args.dir)
    print(netctl.format_status(rows))
    return 0 if all(row["up"] for row in rows) else 1


def _net_down(args: argparse.Namespace) -> int:
    from node.ops import netctl

    outcome = netctl.down(args.dir)
    for name, result in outcome.items():
        print(f"{name}: {result}")
    return 0


# ------------------------------------------------------------ node


def _add_node_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser("node", help="run one node")
    sub = node.add_subparsers(title="node commands", metavar="ACTION")
    node.set_defaults(handler=lambda _args: _usage(node))
    run = sub.add_parser("run", help="run a node in the foreground until SIGTERM/SIGINT")
    run.add_argument("--config", type=Path, required=True, metavar="FILE")
    run.set_defaults(handler=_node_run)


def _node_run(args: argparse.Namespace) -> int:
    # Imported here so that `provenet net ...` works without the node runtime loaded.
    from node.app import run_node

    return run_node(args.config)


if __name__ == "__main__":
    sys.exit(main())
