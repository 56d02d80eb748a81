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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT) and the store; one trainer (default: 1)",
    )
    serve.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port at /metrics (0: any)"
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import policies

    if args.workers < 1:
        raise SystemExit("nextbest serve: --workers must be at least 1")
    policies.allow_python_modules(args.policy_module)
    options = {
        "limits": Limits(
            max_actions=args.max_actions,
            max_namespaces=args.max_namespaces,
            max_features_per_namespace=args.max_features,
            max_string_length=args.max_string_length,
            max_message_bytes=args.max_message_bytes,
        ),
        "max_workers": args.threads,
    }
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("nextbest").info("received %s; shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.workers == 1:
        _serve_one(args, options, stopping)
    else:
        _serve_workers(args, options, stopping)
    print("nextbest stopped", flush=True)
    return 0


def _announce(address: str, args: argparse.Namespace, loops: list[str], metrics_port: int) -> None:
    extra = f"; metrics on port {metrics_port}" if args.metrics_port is not None else ""
    workers = f"; {args.workers} workers" if args.workers > 1 else ""
    print(f"nextbest serving on {address} (store {args.store}; loops: {', '.join(loops)}{workers}{extra})", flush=True)


def _serve_one(args: argparse.Namespace, options: dict, stopping: threading.Event) -> None:
    from server.app import NextbestServer
    from server.store import open_store

    server = NextbestServer(
        open_store(args.store),
        args.host,
        args.port,
        keep_models=args.keep_models,
        metrics_port=args.metrics_port,
        **options,
    ).start()
    _announce(server.address, args, server.catalog.names(), server.metrics_port)
    stopping.wait()
    server.stop(grace=args.grace)


def _serve_workers(args: argparse.Namespace, options: dict, stopping: threading.Event) -> None:
    from server.app import ensure_default_loop
    from server.metrics import Metrics
    from server.store import open_store
    from server.trainer import Trainer
    from server.workers import WorkerPool, free_port

    store = open_store(args.store)
    ensure_default_loop(store)
    port = args.port or free_port(args.host)
    pool = WorkerPool(
        args.workers,
        args.store,
        args.host,
        port,
        {
            **options,
            "rpc_metrics": args.metrics_port is not None,
            "grace": args.grace,
            "policy_modules": args.policy_module,
        },
    )
    trainer = Trainer(store, keep_models=args.keep_models)
    trainer.start()
    pool.start()
    metrics, metrics_port = None, 0
    if args.metrics_port is not None:
        metrics = Metrics(store, trainer.stats)
        metrics_port = metrics.serve(args.host, args.metrics_port)
    _announce(f"{args.host}:{port}", args, sorted(store.configs.list()), metrics_port)
    stopping.wait()
    pool.stop(args.grace)
    trainer.stop()
    if metrics:
        metrics.stop()
    store.close()
