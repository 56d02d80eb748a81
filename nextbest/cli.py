"""The `nextbest` command line: `nextbest COMMAND --help` documents each command."""

from __future__ import annotations

import argparse
import sys

from nextbest.commands import admin, apply, rankfile
from nextbest.server.commands import bench, demo, evaluate, export, serve, train
from nextbest.server.logs import FORMATS, configure

# `serve`, `train`, `bench`, `evaluate`, `export` and `demo` need the server install; the others the client only.
COMMANDS = [serve, train, admin, apply, rankfile, bench, evaluate, export, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextbest",
        allow_abbrev=False,  # `evaluate --log FILE` is not an abbreviation of --log-level or --log-format
        description="nextbest: a self-hosted decision service (contextual bandits behind gRPC).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text lines (default) or one JSON object per line (time, level, logger, message, loop, event_id)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(commands)
    return parser


# What `pip install 'nextbest[server]'` adds to the client install, by import name.
SERVER_EXTRA = frozenset(
    {
        "vowpalwabbit",
        "lmdb",
        "numpy",
        "scipy",
        "matplotlib",
        "prometheus_client",
        "nats",
        "grpc_health",
        "grpc_reflection",
    }
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level, args.log_format)
    try:
        return args.run(args)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in SERVER_EXTRA:
            raise
        print(
            f"nextbest {args.command}: needs the server install: pip install 'nextbest[server]' (no module {e.name})",
            file=sys.stderr,
        )
        return 2
