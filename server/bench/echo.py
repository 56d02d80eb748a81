"""A bare gRPC echo service: the ceiling a Python gRPC server reaches on this machine.

`/nextbest.bench.Echo/Echo` (unary) answers with the bytes it received; `/nextbest.bench.Echo/Drain`
(client stream) reads every message and answers with their count (8 bytes, big-endian). No
(de)serialization, no interceptor, no work, on a thread pool of the same size as `nextbest serve`'s.
`nextbest bench` sends them the very bytes it sends to Rank and Reward, and to RewardStream, so
nextbest and the echo differ only by what nextbest does with a request.

    python -m nextbest.server.bench.echo --port 0 --threads 16    # prints "echo serving on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "nextbest.bench.Echo"
METHOD = f"/{SERVICE}/Echo"
STREAM_METHOD = f"/{SERVICE}/Drain"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _drain(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return sum(1 for _ in requests).to_bytes(8, "big")


def serve(host: str = "127.0.0.1", port: int = 0, threads: int = 16) -> tuple[grpc.Server, int]:
    """A started echo server bound to `host:port` (0 picks a free port) and the port it bound."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="echo"),
        options=[("grpc.so_reuseport", 0)],
    )
    handlers = {  # no (de)serializers: bytes in, bytes out
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Drain": grpc.stream_unary_rpc_method_handler(_drain),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; prints `echo serving on HOST:PORT` once ready."""
    parser = argparse.ArgumentParser(prog="python -m nextbest.server.bench.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    parser.add_argument("--threads", type=int, default=16, help="gRPC worker threads (default: 16)")
    args = parser.parse_args(argv)
    server, port = serve(args.host, args.port, args.threads)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"echo serving on {args.host}:{port}", flush=True)
    stopping.wait()
    server.stop(grace=1.0).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
