"""The `--store` flags shared by the commands that open a store, and the backend options they map to."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from nextbest.server.config import DEFAULT_MAP_SIZE
from nextbest.server.store import is_remote

if TYPE_CHECKING:
    from nextbest.server.store import Store

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

STORE_HELP = (
    "where the data lives: an LMDB directory (default: ./nextbest-data) or nats://HOST:PORT[,HOST:PORT...] "
    "for a NATS JetStream server or cluster"
)


def byte_size(text: str) -> int:
    """A number of bytes, optionally with a binary unit: `4096`, `512K`, `64M`, `16G`, `1T` (also `16GiB`)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 4096, 64M, 16G)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def add_store_arguments(parser: argparse.ArgumentParser, *, sizing: bool = True) -> None:
    """`--store`, and with `sizing` the backend's capacity flags (`--store-max-bytes`, `--store-replicas`)."""
    parser.add_argument("--store", default="./nextbest-data", help=STORE_HELP)
    if not sizing:
        return
    parser.add_argument(
        "--store-max-bytes",
        type=byte_size,
        default=DEFAULT_MAP_SIZE,
        help="LMDB: the most the store may hold (LMDB's map size; the file grows as needed; default: 16G); once "
        "full, writes fail with RESOURCE_EXHAUSTED until space is freed",
    )
    parser.add_argument(
        "--store-replicas",
        type=int,
        default=1,
        help="NATS: copies JetStream keeps of each stream and bucket it creates (1, 3 or 5; default: 1)",
    )


def open_store_or_exit(command: str, args: argparse.Namespace) -> Store:
    """The store `args.store` names, opened with the options of the flags; SystemExit saying why it cannot be."""
    from nextbest.server.store import StoreUnavailableError, open_store

    try:
        return open_store(args.store, **store_options(args))
    except (StoreUnavailableError, ValueError) as e:
        raise SystemExit(f"nextbest {command}: cannot open the store {args.store}: {e}") from None


def store_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of `open_store` that the parsed flags ask for, for the backend `args.store` names."""
    if is_remote(args.store):
        return {"replicas": getattr(args, "store_replicas", 1)}
    return {"map_size": args.store_max_bytes} if hasattr(args, "store_max_bytes") else {}
