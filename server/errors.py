"""Errors that become a gRPC status, and the interceptor that maps them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc

from nextbest.server.store import StoreFullError, StoreUnavailableError

log = logging.getLogger("nextbest")


class ServiceError(Exception):
    """An error with the gRPC status code it answers with; the message names the field."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


_STATUS_ERRORS = (ServiceError, StoreFullError, StoreUnavailableError)  # errors that carry their own status


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status a call that raised `exc` answers with (INTERNAL, logged, for an unexpected exception)."""
    if isinstance(exc, ServiceError):
        return exc.code, str(exc)
    if isinstance(exc, StoreFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"store full: {exc}"
    if isinstance(exc, StoreUnavailableError):
        return grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}"
    log.exception("unexpected error")
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


class _Malformed:
    """A request message that did not parse: the call answers INVALID_ARGUMENT instead of gRPC's INTERNAL
    (after which gRPC, for a client stream, never finishes the call and a graceful stop hangs)."""

    def __init__(self, error: Exception) -> None:
        self.reason = str(error)[:200] or type(error).__name__


def _tolerant(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> object:
        try:
            return deserializer(data)
        except Exception as e:
            return _Malformed(e)

    return parse


def _parsed(request: object, field: str = "request") -> object:
    if isinstance(request, _Malformed):
        raise InvalidArgument(f"{field}: not a valid message ({request.reason})")
    return request


def _parsed_stream(requests: Iterator) -> Iterator:
    for i, request in enumerate(requests):
        yield _parsed(request, f"request message {i}")


def _guard(fn: Callable, streaming: bool = False) -> Callable:
    def call(request_or_iterator, context: grpc.ServicerContext):
        try:
            if streaming:
                return fn(_parsed_stream(request_or_iterator), context)
            return fn(_parsed(request_or_iterator), context)
        except Exception as exc:  # every failure becomes a clean status; the server keeps serving
            if context.code() is not None and not isinstance(
                exc, ServiceError | StoreFullError | StoreUnavailableError
            ):
                raise  # context.abort() already set the status
            context.abort(*status_of(exc))

    return call


def _guard_stream(fn: Callable) -> Callable:
    def call(request, context: grpc.ServicerContext):
        try:
            yield from fn(_parsed(request), context)
        except Exception as exc:
            if context.code() is not None and not isinstance(
                exc, ServiceError | StoreFullError | StoreUnavailableError
            ):
                raise
            context.abort(*status_of(exc))

    return call


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns malformed request messages, ServiceError, StoreFullError and unexpected exceptions into gRPC
    statuses."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=_guard(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=_guard(handler.stream_unary, streaming=True))
        if handler.unary_stream:
            return handler._replace(unary_stream=_guard_stream(handler.unary_stream))
        return handler
