"""`nextbest train`: the joiner and learner of every loop, for stores that replicas share (NATS)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from nextbest.server.commands.signals import stop_on_signals
from nextbest.server.commands.storage import add_store_arguments, open_store_or_exit

if TYPE_CHECKING:
    from nextbest.server.restrictions import Restrictions


def add(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="join rewards and learn every loop of a shared store (the trainer role)",
        description="Run the trainer of a store: for every loop, the joiner (decisions with their rewards, "
        "within the reward window) and the learner, which publishes models that every serving replica picks "
        "up. A trainer holds each loop's lease while it works on it; start a second one for failover: it "
        "stands by and takes over within --lease-seconds when the first one stops or dies. Creates the loop "
        "'default' on a new store. SIGTERM or SIGINT checkpoints and stops.",
    )
    add_store_arguments(train)
    add_trainer_arguments(train)
    add_restriction_arguments(train)
    add_metrics_arguments(train)
    train.set_defaults(run=run)


def add_restriction_arguments(parser: argparse.ArgumentParser) -> None:
    """What policy specs may reach: the same flags, and the same defaults, for every process that creates them."""
    parser.add_argument(
        "--rules-dir",
        metavar="DIR",
        help="`rules:` specs may read journey files from this directory only; none are read without it",
    )
    parser.add_argument(
        "--policy-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="allow `python:MODULE:Class` policy specs from this module (repeatable); none by default",
    )


def restrictions(command: str, args: argparse.Namespace) -> Restrictions:
    """The restrictions the flags ask for, applied to this process; SystemExit saying why they cannot be."""
    from nextbest.server.restrictions import Restrictions

    if args.rules_dir is not None and not os.path.isdir(args.rules_dir):
        raise SystemExit(f"nextbest {command}: --rules-dir {args.rules_dir}: no such directory")
    chosen = Restrictions(tuple(args.policy_module), args.rules_dir)
    try:
        chosen.apply()
    except ValueError as e:
        raise SystemExit(f"nextbest {command}: --policy-module: {e}") from None
    return chosen


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """The metrics endpoint's flags, shared with `nextbest serve`."""
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port at /metrics (0: any)"
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address of the metrics endpoint, which has no authentication (default: 127.0.0.1, whatever --host)",
    )


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """The trainer's flags, shared with `nextbest serve` (whose parent process trains an LMDB store)."""
    parser.add_argument("--keep-models", type=int, default=10, help="model versions kept per loop (default: 10)")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=10.0,
        help="how long a trainer holds a loop without renewing its lease: another trainer on the same store stands "
        "by and takes over after it (the failover time; default: 10)",
    )


def run(args: argparse.Namespace) -> int:
    from nextbest.server.app import ensure_default_loop
    from nextbest.server.metrics import Metrics
    from nextbest.server.trainer import Trainer

    if args.lease_seconds <= 0:
        raise SystemExit("nextbest train: --lease-seconds must be positive")
    restrictions("train", args)
    stopping = stop_on_signals("stopping")
    with open_store_or_exit("train", args) as store:
        ensure_default_loop(store)
        trainer = Trainer(store, keep_models=args.keep_models, lease_seconds=args.lease_seconds)
        trainer.start()
        metrics = None
        extra = ""
        if args.metrics_port is not None:
            metrics = Metrics(store, trainer.stats)
            extra = f"; metrics on port {metrics.serve(args.metrics_host, args.metrics_port)} ({args.metrics_host})"
        print(f"nextbest training (store {args.store}; trainer {trainer.holder}{extra})", flush=True)
        stopping.wait()
        trainer.stop()
        if metrics:
            metrics.stop()
    print("nextbest stopped", flush=True)
    return 0
