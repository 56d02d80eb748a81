"""`nextbest serve`: run the decision service."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from nextbest.server.commands.signals import stop_on_signals
from nextbest.server.commands.storage import (
    add_store_arguments,
    byte_size,
    open_store_or_exit,
    store_options,
)
from nextbest.server.commands.train import (
    add_metrics_arguments,
    add_restriction_arguments,
    add_trainer_arguments,
    restrictions,
)
from nextbest.server.config import Limits
from nextbest.server.evaluation import EvaluationLimits

if TYPE_CHECKING:
    from nextbest.server.app import Node, Started
    from nextbest.server.loopfile import Change


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the decision service (gRPC, and HTTP/JSON with --http-port) with its joiner and learner",
        description="Run the decision service: DecisionService and AdminService on gRPC, with health "
        "checking and reflection (and over HTTP/JSON with --http-port), and, on an LMDB store, the reward joiner "
        "and the learner. On a NATS store "
        "(--store nats://...) it is a stateless replica: run as many as needed behind a load balancer, and "
        "`nextbest train` for the joining and learning. Creates the loop 'default' on a new store. SIGTERM or "
        "SIGINT shuts down gracefully.",
    )
    add_store_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks a free one (default: 50051)")
    serve.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="also serve the HTTP/JSON APIs (nextbest's own under /v1, Personalizer's under /personalizer) on this "
        "port of --host, with the same API keys, TLS and limits; 0 picks a free one (default: no HTTP)",
    )
    serve.add_argument(
        "--http-allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (e.g. https://shop.example.com; * for any) call the HTTP API from a browser "
        "(CORS); repeatable",
    )
    serve.add_argument("--threads", type=int, default=16, help="gRPC worker threads (default: 16)")
    serve.add_argument("--grace", type=float, default=10.0, help="seconds to finish in-flight calls on shutdown")
    d = Limits()
    serve.add_argument("--max-actions", type=int, default=d.max_actions, help="actions per Rank request")
    serve.add_argument("--max-namespaces", type=int, default=d.max_namespaces, help="namespaces per context/action")
    serve.add_argument("--max-features", type=int, default=d.max_features_per_namespace, help="features per namespace")
    serve.add_argument("--max-string-length", type=int, default=d.max_string_length, help="characters per id/name")
    serve.add_argument("--max-message-bytes", type=byte_size, default=d.max_message_bytes, help="bytes per request")
    serve.add_argument(
        "--max-batch-requests", type=int, default=d.max_batch_requests, help="requests per RankBatch call"
    )
    serve.add_argument(
        "--max-loops", type=int, default=d.max_loops, help=f"loops in the store (default: {d.max_loops})"
    )
    serve.add_argument(
        "--max-model-bytes",
        type=byte_size,
        default=d.max_model_bytes,
        help="bytes of a model sent to ImportModel (default: 64M)",
    )
    e = EvaluationLimits()
    evaluation = serve.add_argument_group(
        "Evaluate", "Each Evaluate call runs in a process of its own, one at a time per serving process, within:"
    )
    evaluation.add_argument(
        "--evaluate-max-events",
        type=int,
        default=e.max_events,
        help=f"joined events in the evaluated range (default: {e.max_events:,})",
    )
    evaluation.add_argument(
        "--evaluate-max-memory",
        type=byte_size,
        default=e.max_memory_bytes,
        help="memory of the evaluation's process (its data segment; default: 2G)",
    )
    evaluation.add_argument(
        "--evaluate-timeout",
        type=float,
        default=e.timeout_seconds,
        help=f"seconds an evaluation may take (default: {e.timeout_seconds:g})",
    )
    serve.add_argument(
        "--max-generated-features",
        type=int,
        default=d.max_generated_features,
        help=f"features (interactions included) one Rank may make its policy generate (default: "
        f"{d.max_generated_features:,})",
    )
    access = serve.add_argument_group(
        "access",
        "Without API keys the server binds only a loopback address (unless --insecure). Keys are a JSON object "
        'of each key and its scopes, e.g. {"k1": ["decide"], "k2": ["decide", "admin"]}: "decide" allows '
        'Rank, Reward, Activate and RewardStream, "admin" the AdminService.',
    )
    access.add_argument(
        "--api-keys", metavar="FILE", help="API keys and their scopes (JSON); default: $NEXTBEST_API_KEYS, if set"
    )
    access.add_argument(
        "--insecure", action="store_true", help="serve a non-loopback address without API keys: anyone may call"
    )
    access.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate chain (PEM)")
    access.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    access.add_argument(
        "--tls-client-ca", metavar="FILE", help="mutual TLS: require client certificates signed by this CA (PEM)"
    )
    serve.add_argument(
        "--serve-without-logging",
        action="store_true",
        help="when the store is full, Rank still answers (unlogged, counted in nextbest_unlogged_decisions_total) "
        "instead of failing with RESOURCE_EXHAUSTED",
    )
    add_restriction_arguments(serve)
    serve.add_argument(
        "--loops",
        metavar="FILE",
        help="make the store's loops match this TOML or JSON file at start, as `nextbest apply FILE` does "
        "(creates and changes, never deletes)",
    )
    add_trainer_arguments(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gRPC server processes sharing the port (SO_REUSEPORT) and the store (default: 1); the joiner, "
        "learner (LMDB) and metrics endpoint run in the parent process, so learning never competes with serving "
        "for one interpreter",
    )
    serve.add_argument(
        "--trainers",
        type=int,
        default=1,
        help="trainer processes on an LMDB store (default: 1, the parent's): each takes its share of the loops, so "
        "that several loops learn in parallel on several cores",
    )
    add_metrics_arguments(serve)
    serve.set_defaults(run=run)


def _access(args: argparse.Namespace) -> dict:
    """The access options of NextbestServer from the flags; SystemExit with the reason when they cannot be used."""
    from nextbest.server.auth import ApiKeyError, ApiKeys, exposure_problem
    from nextbest.server.tls import ServerTls, TlsError

    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("nextbest serve: --tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise SystemExit("nextbest serve: --tls-client-ca needs --tls-cert and --tls-key")
    try:
        keys = ApiKeys.load(args.api_keys)
        tls = ServerTls.load(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    except (ApiKeyError, TlsError) as e:
        raise SystemExit(f"nextbest serve: {e}") from None
    problem = exposure_problem(args.host, keys, args.insecure)
    if problem:
        raise SystemExit(f"nextbest serve: {problem}")
    return {"api_keys": keys, "tls": tls, "insecure": args.insecure}


def limits(args: argparse.Namespace) -> Limits:
    """The request limits `serve`'s flags set (each has a flag); SystemExit for a count below 1."""
    counts = ("max_actions", "max_namespaces", "max_features", "max_string_length", "max_batch_requests", "max_loops")
    if low := [name for name in counts if getattr(args, name) < 1]:
        raise SystemExit(f"nextbest serve: --{low[0].replace('_', '-')} must be at least 1")
    return Limits(
        max_actions=args.max_actions,
        max_namespaces=args.max_namespaces,
        max_features_per_namespace=args.max_features,
        max_string_length=args.max_string_length,
        max_message_bytes=args.max_message_bytes,
        max_batch_requests=args.max_batch_requests,
        max_loops=args.max_loops,
        max_model_bytes=args.max_model_bytes,
        max_generated_features=args.max_generated_features,
    )


def _evaluation(args: argparse.Namespace) -> EvaluationLimits:
    if args.evaluate_max_events < 2 or args.evaluate_max_memory < 256 << 20 or not args.evaluate_timeout > 0:
        raise SystemExit(
            "nextbest serve: --evaluate-max-events must be at least 2, --evaluate-max-memory at least 256M and "
            "--evaluate-timeout positive"
        )
    return EvaluationLimits(args.evaluate_max_events, args.evaluate_max_memory, args.evaluate_timeout)


def run(args: argparse.Namespace) -> int:
    from nextbest.server.app import Node, ServerSettings, run_node
    from nextbest.server.errors import ServiceError
    from nextbest.server.store import is_remote

    if args.workers < 1:
        raise SystemExit("nextbest serve: --workers must be at least 1")
    if args.trainers < 1:
        raise SystemExit("nextbest serve: --trainers must be at least 1")
    if args.trainers > 1 and is_remote(args.store):
        raise SystemExit("nextbest serve: --trainers needs an LMDB store; on NATS, run `nextbest train` more times")
    if args.http_port is not None and not 0 <= args.http_port <= 65535:
        raise SystemExit("nextbest serve: --http-port must be between 0 and 65535")
    if args.http_allow_origin and args.http_port is None:
        raise SystemExit("nextbest serve: --http-allow-origin needs --http-port")
    settings = ServerSettings(
        limits=limits(args),
        max_workers=args.threads,
        serve_without_logging=args.serve_without_logging,
        restrictions=restrictions("serve", args),
        evaluation=_evaluation(args),
        rpc_metrics=args.metrics_port is not None,
        http_port=args.http_port,
        http_allow_origins=tuple(args.http_allow_origin),
        **_access(args),
    )
    node = Node(
        store=args.store,
        store_options=store_options(args),
        host=args.host,
        port=args.port,
        workers=args.workers,
        grace=args.grace,
        server=settings,
        keep_models=args.keep_models,
        lease_seconds=args.lease_seconds,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        loops=_declared_loops(args.loops),
        trainers=args.trainers,
    )
    stopping = stop_on_signals("shutting down")
    try:
        run_node(node, open_store_or_exit("serve", args), stopping, lambda s: _announce(s, node), _applied)
    except ServiceError as e:
        raise SystemExit(f"nextbest serve: --loops: {e}") from None
    print("nextbest stopped", flush=True)
    return 0


def _announce(started: Started, node: Node) -> None:
    """Print the serving line (first: scripts wait for it), then what a caller needs to know about access."""
    from nextbest.server.auth import is_loopback

    address, loops = started.address, started.loops
    keys, tls = node.server.api_keys, node.server.tls
    extra = f"; metrics on port {started.metrics_port} ({node.metrics_host})" if node.metrics_port is not None else ""
    workers = f"; {node.workers} workers" if node.workers > 1 else ""
    workers += f"; HTTP on port {started.http_port}" if started.http_port is not None else ""
    security = f"; {len(keys)} API keys" if keys else ""
    security += ("; mutual TLS" if tls.client_ca else "; TLS") if tls else ""
    print(
        f"nextbest serving on {address} (store {node.store}; loops: {', '.join(loops)}{workers}{security}{extra})",
        flush=True,
    )
    if keys is None and is_loopback(node.host):
        print(
            f"nextbest: no API keys configured, so serving loopback only ({node.host}) and without authentication; "
            "give --api-keys FILE to serve other hosts",
            flush=True,
        )
    elif keys is None:
        print(f"nextbest: WARNING: --insecure and no API keys: anyone who reaches {address} may call", flush=True)
    elif tls is None and not is_loopback(node.host):
        print("nextbest: WARNING: without TLS the API keys cross the network in clear text", flush=True)


def _declared_loops(path: str | None) -> dict | None:
    from nextbest.server.loopfile import LoopFileError, read

    if path is None:
        return None
    try:
        return read(path)
    except LoopFileError as e:
        raise SystemExit(f"nextbest serve: --loops {e}") from None


def _applied(change: Change) -> None:
    print(f"nextbest: --loops: {change.action} {change.loop}", flush=True)
