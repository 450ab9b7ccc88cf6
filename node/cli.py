"""The `provenet` command.

Only the subcommands whose machinery exists are wired in; the network and
node commands arrive with the node runtime (see the README's roadmap).
"""

from __future__ import annotations

import sys

from consensus.sim.__main__ import main as sim_main


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print("usage: provenet sim [simulator options]   (see: provenet sim --help)")
        return 0 if args else 2
    if args[0] == "sim":
        return sim_main(args[1:])
    print(f"provenet: unknown command {args[0]!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
