"""The connection to NATS: the asyncio loop that runs its requests, retries of transient failures, the errors
they map to, and the requests the other layers share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError

from ..base import StoreFullError, StoreUnavailableError

log = logging.getLogger("nextbest")

REQUEST_TIMEOUT = 2.0  # one request; operations retry transient failures until their own timeout
CLOSE_SECONDS = 2.0  # the most closing waits for the server's goodbye, and then for the client's tasks
READ_BATCH = 1000  # entries per direct-get batch request
WRONG_LAST_SEQUENCE = (10071, 10164)
STREAM_IN_USE = 10058  # stream name already in use with a different configuration
_FULL = (10023, 10047, 10077)  # insufficient resources, storage resources exceeded, maximum bytes exceeded
EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

_T = TypeVar("_T")


def hex_name(name: str) -> str:
    return name.encode().hex()


def transient(e: BaseException) -> bool:
    """Whether retrying may succeed: a timeout, no responder yet, or JetStream briefly unavailable."""
    if isinstance(e, APIError):
        return e.code == 503 and e.err_code not in _FULL
    return isinstance(
        e,
        TimeoutError | nats.errors.NoRespondersError | nats.errors.ConnectionReconnectingError | NoStreamResponseError,
    )


def unavailable(e: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"JetStream did not answer in time ({type(e).__name__}: {e}); retry")


def refusal(what: str, e: Exception) -> Exception:
    """What to raise when JetStream refused `what` with `e`: StoreFullError when it was for lack of space, else `e`."""
    if not (isinstance(e, APIError) and (e.err_code in _FULL or "insufficient" in (e.description or ""))):
        return e
    return StoreFullError(
        f"JetStream refused {what}: {e}; free space (retention, prune, delete a loop) or raise the stream limit "
        "(stream_max_bytes) or the servers' JetStream storage"
    )


class Runner:
    """An asyncio loop in a daemon thread, running the coroutines that synchronous callers submit."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError("the NATS store is closed")

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run `coro` on the loop and return its result; RuntimeError once the store is closed."""
        if self.closed:
            coro.close()
        self.check_open()
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError as e:
            future.cancel()
            raise StoreUnavailableError(f"JetStream did not answer within {timeout:.0f} s; retry") from e
        except BaseException as e:
            if self.closed:  # closing cancelled the call: it failed because the store went away, not by itself
                raise StoreUnavailableError("the NATS store was closed during the call") from e
            raise

    def stop(self) -> None:
        """Cancel what still runs on the loop (e.g. a client reconnecting to a server that is gone), then end it."""
        self.closed = True
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self.loop).result(CLOSE_SECONDS)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_SECONDS)


@dataclass
class Conn:
    """The connection and what every part of the store shares."""

    runner: Runner
    nc: NatsClient
    js: JetStreamContext
    prefix: str
    replicas: int
    timeout: float
    stream_max_bytes: int

    def call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Run the request `make()` on the loop, retrying it while it fails transiently."""
        return self.runner.run(self.retrying(make), self.timeout + REQUEST_TIMEOUT + 1)

    async def retrying(self, make: Callable[[], Awaitable[_T]]) -> _T:
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                return await make()
            except Exception as e:
                if not transient(e):
                    raise
                if time.monotonic() + delay > deadline:
                    raise unavailable(e) from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def api(self, subject: str, request: dict[str, Any]) -> dict[str, Any]:
        """A JetStream API request (those nats-py does not wrap with the answer we need)."""
        msg = await self.nc.request(f"$JS.API.{subject}", json.dumps(request).encode(), timeout=REQUEST_TIMEOUT)
        response = json.loads(msg.data)
        if "error" in response:
            raise APIError.from_error(response["error"])
        return response

    async def add_stream(self, config: api.StreamConfig) -> None:
        """Create a stream unless it exists (another process may create it at the same moment)."""
        try:
            await self.js.add_stream(config)
        except APIError as e:
            if e.err_code != STREAM_IN_USE:
                raise

    def owns(self, stream: str) -> bool:
        """Whether a JetStream stream belongs to this store (its prefix)."""
        p = re.escape(self.prefix)
        return re.fullmatch(rf"{p}_[a-z]+_[0-9a-f]*|KV_{p}_[a-z]+|OBJ_{p}_[a-z]+", stream) is not None


async def direct_batch(nc: NatsClient, stream: str, start: int, limit: int) -> tuple[list[Any], bool]:
    """One batched direct get (any current replica answers): up to `limit` messages with seq >= start, and
    whether more may follow. Nothing when the stream does not exist."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        request = json.dumps({"seq": start, "batch": min(limit, READ_BATCH)}).encode()
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox)
        out = []
        while True:
            msg = await sub.next_msg(REQUEST_TIMEOUT)
            status = (msg.headers or {}).get("Status")
            if status is None:
                out.append(msg)
            elif status == "204":  # end of batch
                return out, int(msg.headers.get("Nats-Num-Pending", "0")) > 0
            elif status in ("404", "503"):  # nothing (more) to read; no such stream
                return out, False
            else:
                raise APIError(code=int(status), description=msg.headers.get("Description"))
    finally:
        await sub.unsubscribe()


async def used_bytes(conn: Conn) -> int:
    """The bytes of this store's streams, page by page of the stream list."""
    total, seen = 0, 0
    while True:
        page = await conn.api("STREAM.LIST", {"offset": seen})
        streams = page.get("streams") or []
        total += sum(s["state"]["bytes"] for s in streams if conn.owns(s["config"]["name"]))
        seen += len(streams)
        if not streams or seen >= page["total"]:
            return total


async def connect(servers: list[str], timeout: float) -> NatsClient:
    async def disconnected() -> None:
        if not nc.is_closed:
            log.warning("NATS store: disconnected; reconnecting")

    async def reconnected() -> None:
        log.info("NATS store: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    async def error(e: Exception) -> None:
        log.warning("NATS store: %s", e)

    connecting = nats.connect(
        servers=servers,
        name="nextbest",
        connect_timeout=max(int(timeout), 1),
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        ping_interval=5,
        max_outstanding_pings=3,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )
    try:
        nc = await asyncio.wait_for(connecting, timeout)
    except TimeoutError:
        raise StoreUnavailableError(f"no NATS server answered at {', '.join(servers)} within {timeout:.0f} s") from None
    return nc


def server_urls(location: str) -> list[str]:
    """`nats://a:4222,b:4222` -> the URL of every server."""
    rest = location.removeprefix("nats://")
    servers = [f"nats://{s.strip()}" for s in rest.split(",") if s.strip()]
    if not servers:
        raise ValueError(f"no NATS server in {location!r}")
    return servers
