"""HTTP routes and the interceptors every call goes through.

A route is an async handler of an `HttpCall` (the request, the route's name, the API key scope it needs and its
body limit) that returns a response or raises HttpError. Around every handler, as gRPC's server interceptors do
around RPCs: metrics (outermost: they see the final status), the error renderer of the route's API (an HttpError
or an unexpected exception becomes that API's error body; never a bare 500 page), then API keys (the same keys and
scopes as gRPC, from `Authorization: Bearer KEY` or `Ocp-Apim-Subscription-Key: KEY`). The body is read on demand,
within the route's limit (by default the server's max_message_bytes; over it: 413).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import grpc
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from nextbest.server.admin_service import AdminService
from nextbest.server.auth import ApiKeys, bearer_key, refusal
from nextbest.server.config import Limits
from nextbest.server.decision_service import DecisionService
from nextbest.server.errors import status_of
from nextbest.server.http.calls import CallContext, HttpError, invoke
from nextbest.server.metrics import RpcMetrics
from nextbest.server.store import Store

SUBSCRIPTION_KEY_HEADER = "ocp-apim-subscription-key"  # Azure's API key header, sent by the Personalizer SDKs
_DISCONNECT_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RouteInfo:
    """What the interceptors know of a route: its name (metrics, messages; e.g. `DecisionService/Rank`), the API
    key scope it needs (auth.DECIDE or auth.ADMIN; None: open) and the largest body it reads."""

    name: str
    scope: str | None
    max_body: int


class HttpCall:
    """One request to a route: `request` (Starlette's), `route`, the path parameters and the body."""

    def __init__(self, request: Request, route: RouteInfo) -> None:
        self.request = request
        self.route = route
        self._body: bytes | None = None

    @property
    def path_params(self) -> dict[str, Any]:
        return self.request.path_params

    async def body(self) -> bytes:
        """The request body; HttpError 413 as soon as it is known to exceed the route's limit."""
        if self._body is None:
            limit = self.route.max_body
            declared = self.request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            chunks, size = [], 0
            async for chunk in self.request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def invoke_until_gone(self, method: Callable[[Any, grpc.ServicerContext], Any], request: Any) -> Any:
        """`calls.invoke`, cancelling the servicer's context when the client goes away or the server stops it
        (for long calls that watch it: Evaluate stops its process, as under gRPC)."""
        context = CallContext()

        async def watch() -> None:
            try:
                while not await self.request.is_disconnected():
                    await asyncio.sleep(_DISCONNECT_POLL_SECONDS)
            finally:  # also when cancelled: by the end of the call, or by the server's shutdown
                context.cancel()

        watcher = asyncio.ensure_future(watch())  # not a task group: it would wrap the call's HttpError in a group
        try:
            return await invoke(method, request, context)
        finally:
            watcher.cancel()

    async def json(self, empty: Any = None) -> Any:
        """The body parsed as JSON (`empty` when there is no body and it is not None); HttpError INVALID_ARGUMENT
        saying where it is malformed."""
        text = await self.text()
        if not text.strip() and empty is not None:
            return empty
        return parse_json(text, "request body")

    async def text(self) -> str:
        """The body as UTF-8 text (JSON's encoding); HttpError INVALID_ARGUMENT when it is not."""
        try:
            return (await self.body()).decode("utf-8")
        except UnicodeDecodeError as e:
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT, f"request body: not UTF-8 text (byte {e.start})"
            ) from None
        except RecursionError:  # json.loads of a few hundred thousand '['
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, "request body: JSON nested too deeply") from None


def parse_json(text: str, where: str) -> Any:
    """`text` parsed as JSON; HttpError INVALID_ARGUMENT saying where it is malformed (or too deeply nested)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise HttpError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except RecursionError:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: not usable JSON ({e})") from None


def _too_large(limit: int) -> HttpError:
    return HttpError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body: larger than the limit of {limit} bytes", status=413
    )


Handler = Callable[[HttpCall], Awaitable[Response]]
ErrorBody = Callable[[HttpError], Response]


class Interceptor(Protocol):
    """Runs around a route's handler: calls `next(call)` (or not) and returns the response."""

    async def __call__(self, call: HttpCall, next: Handler) -> Response: ...


class MetricsInterceptor:
    """Counts and times every call by route name and HTTP status (nextbest_http_requests, ..._latency_seconds)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def __call__(self, call: HttpCall, next: Handler) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await next(call)
            status = response.status_code
            return response
        finally:
            self._metrics.observe_http(call.route.name, status, time.perf_counter() - start)


class ErrorInterceptor:
    """Renders an HttpError, a client that went away or any unexpected exception (logged) as the API's error."""

    def __init__(self, error_body: ErrorBody) -> None:
        self._error_body = error_body

    async def __call__(self, call: HttpCall, next: Handler) -> Response:
        try:
            return await next(call)
        except HttpError as e:
            return self._error_body(e)
        except ClientDisconnect:
            return self._error_body(HttpError(grpc.StatusCode.CANCELLED, "the client closed the connection"))
        except Exception as e:
            return self._error_body(HttpError(*status_of(e)))


class AuthInterceptor:
    """Lets a call through only with a key that has the route's scope, as server.auth does for gRPC."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def __call__(self, call: HttpCall, next: Handler) -> Response:
        if call.route.scope is not None:
            refused = refusal(
                self._keys,
                request_key(call.request),
                call.route.scope,
                call.route.name,
                "the header 'Authorization: Bearer KEY' or 'Ocp-Apim-Subscription-Key: KEY'",
            )
            if refused is not None:
                raise HttpError(*refused)
        return await next(call)


def request_key(request: Request) -> str | None:
    """The API key a request sends in `Authorization: Bearer KEY` or `Ocp-Apim-Subscription-Key: KEY` headers; None
    when it sends none, or different ones."""
    headers = request.headers
    keys = [bearer_key(value) for value in headers.getlist("authorization")]
    keys += [value.strip() for value in headers.getlist(SUBSCRIPTION_KEY_HEADER)]
    return keys[0] if keys and keys[0] and all(key == keys[0] for key in keys) else None


def _chain(interceptors: Sequence[Interceptor], handler: Handler) -> Handler:
    for interceptor in reversed(interceptors):
        handler = partial(interceptor, next=handler)
    return handler


@dataclass(frozen=True)
class Api:
    """Routes that share an error body and the server's interceptors."""

    interceptors: tuple[Interceptor, ...]
    limits: Limits

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str],
        name: str,
        scope: str | None,
        max_body: int | None = None,
    ) -> Route:
        """A Starlette route of `handler` behind the interceptors; `max_body` defaults to max_message_bytes."""
        return Route(path, self.endpoint(handler, name=name, scope=scope, max_body=max_body), methods=list(methods))

    def endpoint(
        self, handler: Handler, *, name: str, scope: str | None, max_body: int | None = None
    ) -> Callable[[Request], Awaitable[Response]]:
        """`handler` behind the interceptors, as a Starlette endpoint (for a route whose methods have handlers of
        their own, see jsonapi)."""
        info = RouteInfo(name, scope, self.limits.max_message_bytes if max_body is None else max_body)
        chained = _chain(self.interceptors, handler)

        async def endpoint(request: Request) -> Response:
            return await chained(HttpCall(request, info))

        return endpoint


@dataclass(frozen=True)
class Services:
    """What HTTP routes are built from: the server's servicers (called through calls.invoke), its limits, the
    interceptors of its calls (API keys, metrics), and for what no RPC offers, its store and clock."""

    decisions: DecisionService
    admin: AdminService
    limits: Limits
    api_keys: ApiKeys | None = None
    metrics: RpcMetrics | None = None
    store: Store | None = None
    clock: Callable[[], float] = time.time

    def api(self, error_body: ErrorBody) -> Api:
        """An API whose errors answer with `error_body`: each call counted, then its errors rendered, then its
        API key checked."""
        interceptors: list[Interceptor] = []
        if self.metrics is not None:
            interceptors.append(MetricsInterceptor(self.metrics))
        interceptors.append(ErrorInterceptor(error_body))
        if self.api_keys is not None:
            interceptors.append(AuthInterceptor(self.api_keys))
        return Api(tuple(interceptors), self.limits)
