"""The HTTP application over the in-process servicers, and the uvicorn server that runs it in a thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from nextbest.server.http import dashboard, jsonapi, openapi, personalizer
from nextbest.server.http.api import SUBSCRIPTION_KEY_HEADER, Services
from nextbest.server.http.calls import HttpError
from nextbest.server.tls import ServerTls

OPENAPI_PATH = "/openapi.json"
PERSONALIZER_MOUNTS = ("/personalizer", "/loops/{loop}/personalizer")  # the first serves the loop `default`
_START_TIMEOUT = 30.0


def _is_personalizer(path: str) -> bool:
    parts = path.split("/")
    return parts[1:2] == ["personalizer"] or (parts[1:2] == ["loops"] and parts[3:4] == ["personalizer"])


async def _unrouted(request: Request, exc: Exception) -> Response:
    """No route for the path (404) or the method (405): the error body of the API the path is under."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = HttpError(grpc.StatusCode.NOT_FOUND, f"no such path: {request.method} {request.url.path}")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = HttpError(
            grpc.StatusCode.UNIMPLEMENTED, f"{request.method} {request.url.path}: allowed: {allowed}", status=405
        )
    else:
        error = HttpError(grpc.StatusCode.INVALID_ARGUMENT, str(exc.detail), status=exc.status_code)
    render = personalizer.error_response if _is_personalizer(request.url.path) else jsonapi.error_response
    response = render(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def build_app(services: Services, allow_origins: Sequence[str] = ()) -> Starlette:
    """nextbest's JSON API under /v1 (described at /openapi.json, open to all like gRPC reflection), the
    Personalizer API at its mount points and, with a store to read, the dashboard at /; browsers' pages from
    `allow_origins` (CORS; "*": any) may call them."""
    described = JSONResponse(openapi.document())

    async def describe(request: Request) -> Response:
        return described

    routes: list[BaseRoute] = [*jsonapi.routes(services), Route(OPENAPI_PATH, describe)]
    routes += [Mount(path, routes=personalizer.routes(services)) for path in PERSONALIZER_MOUNTS]
    if services.store is not None:
        routes += dashboard.routes(services)
    cors = Middleware(
        CORSMiddleware,
        allow_origins=allow_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type", SUBSCRIPTION_KEY_HEADER],
        expose_headers=[jsonapi.MODEL_SPEC_HEADER, jsonapi.MODEL_VERSION_HEADER],
    )
    app = Starlette(
        routes=routes, exception_handlers={HTTPException: _unrouted}, middleware=[cors] if allow_origins else []
    )
    app.router.redirect_slashes = False  # `/v1/loops/` is no path of the API: 404, not a redirect
    return app


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    host = host.strip("[]")
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on the accepted connections only then (else every response,
    # written as head then body, waits for the client's delayed ACK: 40 ms a call)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """uvicorn serving `app` on `host:port` (0 picks a free port) in a thread of its own, with TLS when `tls` is
    given; `reuse_port` shares the port with other processes (SO_REUSEPORT), as the gRPC workers do."""

    def __init__(
        self, app: Starlette, host: str, port: int, *, tls: ServerTls | None = None, reuse_port: bool = False
    ) -> None:
        self._socket = listening_socket(host, port, reuse_port)
        self.port: int = self._socket.getsockname()[1]
        context = tls.ssl_context() if tls else None  # TlsError now rather than in the server's thread
        config = uvicorn.Config(
            app,
            log_config=None,  # nextbest's logging; uvicorn's start and stop lines are not worth INFO
            log_level=logging.WARNING,
            access_log=False,
            lifespan="off",
            ws="none",
            server_header=False,
            ssl_context_factory=(lambda config, default: context) if context else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, args=([self._socket],), name="http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise OSError(f"the HTTP server did not start on port {self.port}")
        return self

    def stop(self, grace: float) -> None:
        """Stop accepting connections, let in-flight calls finish within `grace` seconds, then cancel them (and
        close the socket of a server never started)."""
        self._server.config.timeout_graceful_shutdown = grace
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(grace + 5)
        self._socket.close()
