"""Calling the gRPC servicers in process from HTTP routes, and the HTTP status of each gRPC status.

A route parses its request into the RPC's request message and `await invoke(servicer.Method, request)`: the
servicer runs in a worker thread with a ServicerContext of its own, exactly as under gRPC, and whatever status it
ends with (a ServiceError of server/errors.py, a store error, `context.abort()`, `context.set_code()`) comes back
as an HttpError carrying the gRPC status code and message. The HTTP status follows grpc-gateway's mapping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
from starlette.concurrency import run_in_threadpool

from nextbest.server.errors import status_of

# grpc-gateway's runtime.HTTPStatusFromCode (FAILED_PRECONDITION: 400, as there and as AIP-193 says).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class HttpError(Exception):
    """A call's failure: its gRPC status code and message, and the HTTP status it answers with (by default the
    code's, see HTTP_STATUS; `status` overrides it, e.g. 413 for a body over the limit)."""

    def __init__(self, code: grpc.StatusCode, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = HTTP_STATUS[code] if status is None else status


class _Aborted(Exception):
    """Raised by ServicerContext.abort, as grpc raises to end the handler."""


class CallContext(grpc.ServicerContext):
    """The ServicerContext of a servicer method called in process: records the status the method sets or aborts
    with; `cancel()` (the HTTP client went away) makes `is_active()` false, which long calls (Evaluate) watch."""

    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._active = threading.Event()
        self._active.set()

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self._code, self._details = code, details
        raise _Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def is_active(self) -> bool:
        return self._active.is_set()

    def cancel(self) -> None:
        self._active.clear()

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return ""

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict:
        return {}

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        pass

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        pass

    def set_compression(self, compression: Any) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass


def call(method: Callable[[Any, grpc.ServicerContext], Any], request: Any, context: CallContext | None = None) -> Any:
    """Run a servicer method (`request` is a message, or an iterator of them for a client stream) and return its
    response (the list of messages of a server stream); HttpError with the status it ended with otherwise."""
    context = context or CallContext()
    response = None
    try:
        response = method(request, context)
        if isinstance(response, Iterator):
            response = list(response)
    except _Aborted:
        pass
    except Exception as exc:
        if context.code() in (None, grpc.StatusCode.OK):
            raise HttpError(*status_of(exc)) from None
    code = context.code()
    if code not in (None, grpc.StatusCode.OK):
        raise HttpError(code, context.details() or code.name)
    return response


async def invoke(
    method: Callable[[Any, grpc.ServicerContext], Any], request: Any, context: CallContext | None = None
) -> Any:
    """`call` in a worker thread: servicers block (the store, VW), the event loop must not."""
    return await run_in_threadpool(call, method, request, context)
