"""The `nextbest` command line: `nextbest COMMAND --help` documents each command."""

from __future__ import annotations

import argparse
import sys

from server.commands import COMMANDS
from server.logs import FORMATS, configure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextbest",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level, args.log_format)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
