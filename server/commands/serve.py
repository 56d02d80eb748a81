"""`nextbest serve`: run the decision service."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from server.config import Limits


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the decision service (gRPC) with its joiner and learner",
        description="Run the decision service: DecisionService and AdminService on gRPC, with health "
        "checking and reflection, the reward joiner and the learner. Creates the loop 'default' on a "
        "new store. SIGTERM or SIGINT shuts down gracefully.",
    )
    serve.add_argument("--store", default="./nextbest-data", help="LMDB store directory (default: ./nextbest-data)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks a free one (default: 50051)")
    serve.add_argument("--threads", type=int, default=16, help="gRPC worker threads (default: 16)")
    serve.add_argument("--grace", type=float, default=10.0, help="seconds to finish in-flight calls on shutdown")
    d = Limits()
    serve.add_argument("--max-actions", type=int, default=d.max_actions, help="actions per Rank request")
    serve.add_argument("--max-namespaces", type=int, default=d.max_namespaces, help="namespaces per context/action")
    serve.add_argument("--max-features", type=int, default=d.max_features_per_namespace, help="features per namespace")
    serve.add_argument("--max-string-length", type=int, default=d.max_string_length, help="characters per id/name")
    serve.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, help="bytes per request")
    serve.add_argument(
        "--policy-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="allow `python:MODULE:Class` policy specs from this module (repeatable); none by default",
    )
    serve.add_argument("--keep-models", type=int, default=10, help="model versions kept per loop (default: 10)")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import policies
    from server.app import NextbestServer
    from server.store import open_store

    limits = Limits(
        max_actions=args.max_actions,
        max_namespaces=args.max_namespaces,
        max_features_per_namespace=args.max_features,
        max_string_length=args.max_string_length,
        max_message_bytes=args.max_message_bytes,
    )
    policies.allow_python_modules(args.policy_module)
    server = NextbestServer(
        open_store(args.store),
        args.host,
        args.port,
        limits=limits,
        max_workers=args.threads,
        keep_models=args.keep_models,
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("nextbest").info("received %s; shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    loops = ", ".join(server.catalog.names())
    print(f"nextbest serving on {server.address} (store {args.store}; loops: {loops})", flush=True)
    stopping.wait()
    server.stop(grace=args.grace)
    print("nextbest stopped", flush=True)
    return 0
