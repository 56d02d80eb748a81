"""The storage interfaces on NATS JetStream, for several serving and training processes over one cluster.

Names (`<p>` is the `prefix` option; `<l>` the loop name's UTF-8 bytes in hex; `<kind>` a Stream's value):

    stream <p>_<kind>_<l>   subjects <p>.<kind>.<l>.k.<sha256 of key>, <p>.<kind>.<l>.u (unkeyed)
    KV     <p>_cursors      "c" + hex(cursor name) -> data
    KV     <p>_live         <l> -> live version, highest version ever published (>QQ)
    KV     <p>_loops        "c" + hex(loop name) -> LoopConfig bytes
    KV     <p>_leases       "c" + hex(lease name) -> {"holder", "expires"} (JSON)
    object <p>_models       <l>/<version> -> model header + spec + state + model bytes

An event log stream's sequence is the entry's seq, so seqs are contiguous and purges never lower the
last one. A keyed append publishes with `Nats-Expected-Last-Subject-Sequence: 0`, so the first entry
of a key wins on every server; its `Nats-Msg-Id` is the key (the event id, for a decision), so JetStream
also recognizes a retry within its two-minute duplicate window. An unkeyed entry carries a fresh message
id per append, so a publish retried after a lost acknowledgement is stored once. Writes are durable once
JetStream acknowledges them: on a quorum of `replicas` servers (a single server acknowledges once
written to its files, not fsynced, unless it runs with `sync_interval: always`).

Reads of the log are batched direct gets, which any current replica may answer: with replicas > 1 a
read right after an append may miss it for a few milliseconds. `live_version`, `configs.list/get` and
`configs.generation` answer from local copies of the `live` and `loops` buckets, which a background
task brings up to date every 50 ms (so polling them costs nothing); the process's own writes show in
them at once, other processes' writes within about 50 ms.

A multi-entry append is not atomic: when it fails part-way, the entries before the failure stay (a
retry of a keyed entry is idempotent). Entries of one call get increasing seqs unless a publish had
to be retried after a transient error (leader change, reconnect), which may place it after the
entries that followed it.

Every method runs its requests on the Store's one asyncio loop (a daemon thread) and blocks until
they are done, retrying transient failures (timeouts, no responders, leader elections) until
`timeout` seconds have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NoStreamResponseError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from .base import (
    Appended,
    ConfigStore,
    Entry,
    EventLog,
    Leases,
    ModelStore,
    PublishConflictError,
    Store,
    StoredModel,
    StoreFullError,
    StoreUnavailableError,
    Stream,
    decode_model,
    encode_model,
)

log = logging.getLogger("nextbest")

DEFAULT_TIMEOUT = 10.0
_REQUEST_TIMEOUT = 2.0  # one request; operations retry transient failures until their own timeout
_CLOSE_SECONDS = 2.0  # the most closing waits for the server's goodbye, and then for the client's tasks
_DUPLICATE_WINDOW = 120.0
_READ_BATCH = 1000  # entries per direct-get batch request
_POLL_SECONDS = 0.05  # how often the local copies of the live and loops buckets catch up
_PREFIX = re.compile(r"[A-Za-z0-9-]+")
_WRONG_LAST_SEQUENCE = (10071, 10164)
_STREAM_IN_USE = 10058  # stream name already in use with a different configuration
_NO_MESSAGE = 10037
_STREAM_NOT_FOUND = 10059
_FULL = (10023, 10047, 10077)  # insufficient resources, storage resources exceeded, maximum bytes exceeded
_LIVE = struct.Struct(">QQ")  # live version, highest version ever published
_EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII without spaces: usable as a message id as is

_T = TypeVar("_T")


def _hex(name: str) -> str:
    return name.encode().hex()


def stream_name(stream: Stream, loop: str, prefix: str = "nextbest") -> str:
    """The JetStream stream that holds `stream` of `loop`."""
    return f"{prefix}_{stream.value}_{_hex(loop)}"


def _msg_id(key: str | None) -> str:
    """The Nats-Msg-Id of an entry: its key (an event id, for decisions) when it fits a header, else the key's
    SHA-256; a fresh id for an unkeyed entry, so only a retry of the same publish is deduplicated."""
    if key is None:
        return uuid.uuid4().hex
    return key if _HEADER_SAFE.fullmatch(key) else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _key(name: str) -> str:
    """A KV key for any name: KV keys allow few characters, and must not be empty."""
    return "c" + _hex(name)


def _unkey(key: str) -> str:
    return bytes.fromhex(key[1:]).decode()


def _transient(e: BaseException) -> bool:
    """Whether retrying may succeed: a timeout, no responder yet, or JetStream briefly unavailable."""
    if isinstance(e, APIError):
        return e.code == 503 and e.err_code not in _FULL
    return isinstance(
        e,
        TimeoutError | nats.errors.NoRespondersError | nats.errors.ConnectionReconnectingError | NoStreamResponseError,
    )


def _unavailable(e: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"JetStream did not answer in time ({type(e).__name__}: {e}); retry")


def _full(e: BaseException) -> bool:
    return isinstance(e, APIError) and (e.err_code in _FULL or "insufficient" in (e.description or ""))


def _full_error(what: str, e: BaseException) -> StoreFullError:
    return StoreFullError(
        f"JetStream refused {what}: {e}; free space (retention, prune, delete a loop) or raise the stream limit "
        "(stream_max_bytes) or the servers' JetStream storage"
    )


class _Runner:
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
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self.loop).result(_CLOSE_SECONDS)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_CLOSE_SECONDS)


@dataclass
class _Conn:
    """The connection and what every part of the store shares."""

    runner: _Runner
    nc: NatsClient
    js: JetStreamContext
    prefix: str
    replicas: int
    timeout: float
    stream_max_bytes: int

    def call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Run the request `make()` on the loop, retrying it while it fails transiently."""
        return self.runner.run(self.retrying(make), self.timeout + _REQUEST_TIMEOUT + 1)

    async def retrying(self, make: Callable[[], Awaitable[_T]]) -> _T:
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                return await make()
            except Exception as e:
                if not _transient(e):
                    raise
                if time.monotonic() + delay > deadline:
                    raise _unavailable(e) from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def api(self, subject: str, request: dict[str, Any]) -> dict[str, Any]:
        """A JetStream API request (those nats-py does not wrap with the answer we need)."""
        msg = await self.nc.request(f"$JS.API.{subject}", json.dumps(request).encode(), timeout=_REQUEST_TIMEOUT)
        response = json.loads(msg.data)
        if "error" in response:
            raise APIError.from_error(response["error"])
        return response

    async def add_stream(self, config: api.StreamConfig) -> None:
        """Create a stream unless it exists (another process may create it at the same moment)."""
        try:
            await self.js.add_stream(config)
        except APIError as e:
            if e.err_code != _STREAM_IN_USE:
                raise

    def owns(self, stream: str) -> bool:
        """Whether a JetStream stream belongs to this store (its prefix)."""
        p = re.escape(self.prefix)
        return re.fullmatch(rf"{p}_[a-z]+_[0-9a-f]*|KV_{p}_[a-z]+|OBJ_{p}_[a-z]+", stream) is not None


class _Publisher:
    """Pipelined JetStream publishes: `send` writes one in order on the connection, the acknowledgement (or
    error) arrives on a future (nats-py's publish_async loses errors: they raise in its reply handler)."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._futures: dict[str, asyncio.Future] = {}
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._reply)

    async def send(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future:
        token = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        future.add_done_callback(lambda _: self._futures.pop(token, None))
        await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}", headers=headers)
        return future

    async def _reply(self, msg: Any) -> None:
        future = self._futures.get(msg.subject.rsplit(".", 1)[1])
        if future is None or future.done():
            return
        if (msg.headers or {}).get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        response = json.loads(msg.data)
        if "error" not in response:
            future.set_result(api.PubAck.from_response(response))
            return
        try:
            APIError.from_error(response["error"])  # raises the error's class
        except APIError as e:
            future.set_exception(e)


async def _bucket(conn: _Conn, name: str) -> KeyValue:
    """The KV bucket `<prefix>_<name>`, created when missing. Its stream allows direct gets (the mirrors'
    polls); the handle reads from the stream leader, so reads after writes are consistent."""
    bucket = f"{conn.prefix}_{name}"
    config = api.KeyValueConfig(
        bucket=bucket, history=1, storage=api.StorageType.FILE, replicas=conn.replicas, direct=True
    )
    try:
        await conn.js.create_key_value(config)
    except APIError as e:
        if e.err_code != _STREAM_IN_USE:
            raise
    return KeyValue(name=bucket, stream=f"KV_{bucket}", pre=f"$KV.{bucket}.", js=conn.js, direct=False)


async def _object_store(js: JetStreamContext, config: api.ObjectStoreConfig) -> ObjectStore:
    try:
        return await js.create_object_store(config=config, bucket=config.bucket)
    except APIError as e:
        if e.err_code != _STREAM_IN_USE:
            raise
        return await js.object_store(config.bucket)


async def _direct_batch(nc: NatsClient, stream: str, start: int, limit: int) -> tuple[list[Any], bool]:
    """One batched direct get (any current replica answers): up to `limit` messages with seq >= start, and
    whether more may follow. Nothing when the stream does not exist."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        request = json.dumps({"seq": start, "batch": min(limit, _READ_BATCH)}).encode()
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox)
        out = []
        while True:
            msg = await sub.next_msg(_REQUEST_TIMEOUT)
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


class _Mirror:
    """A local copy of a KV bucket: (revision, value or None when deleted) per key, kept current by polling
    the bucket's stream with batched direct gets every 50 ms. (A push watcher is an ordered consumer that
    lives on one server: when that server stops, nats-py notices only after missed heartbeats, tens of
    seconds; a poll just asks another replica.)"""

    def __init__(self, nc: NatsClient, kv: KeyValue) -> None:
        self._nc = nc
        self._stream = kv._stream
        self._pre = kv._pre
        self._lock = threading.Lock()
        self._values: dict[str, tuple[int, bytes | None]] = {}
        self._polled = 0  # every message up to this seq has been applied
        self.revision = 0  # the highest revision seen: raised by every write to the bucket
        self._task: asyncio.Task | None = None
        self._stopping = False

    def apply(self, key: str, revision: int, value: bytes | None) -> None:
        """Take a write seen by a poll or made by this process, unless a later one is known."""
        with self._lock:
            if revision > self._values.get(key, (0, None))[0]:
                self._values[key] = (revision, value)
            self.revision = max(self.revision, revision)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._values.get(key, (0, None))[1]

    def items(self) -> dict[str, bytes]:
        with self._lock:
            return {k: v for k, (_, v) in self._values.items() if v is not None}

    async def start(self) -> None:
        """Load the bucket, then follow it in a background task."""
        await self._poll()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _poll(self) -> None:
        more = True
        while more:
            msgs, more = await _direct_batch(self._nc, self._stream, self._polled + 1, _READ_BATCH)
            for msg in msgs:
                seq = int(msg.headers["Nats-Sequence"])
                deleted = msg.headers.get("KV-Operation") in ("DEL", "PURGE")
                self.apply(msg.headers["Nats-Subject"][len(self._pre) :], seq, None if deleted else msg.data)
                self._polled = seq
            more = more and bool(msgs)

    async def _follow(self) -> None:
        while not self._stopping:
            await asyncio.sleep(_POLL_SECONDS)
            try:
                await self._poll()
            except Exception as e:  # disconnected, no replica answering: the next poll tries again
                log.debug("NATS store: polling %s: %s", self._stream, e)

    async def stop(self) -> None:
        """Stop following; the flag ends the loop even when a cancellation is lost (asyncio.wait_for in Python
        3.11 can swallow one that arrives as its awaited message does)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=_REQUEST_TIMEOUT + 1)


class NatsEventLog(EventLog):
    """EventLog on JetStream: one stream per (stream, loop) whose sequence numbers are the entries' seqs."""

    def __init__(self, conn: _Conn, publisher: _Publisher, cursors: KeyValue) -> None:
        self._conn = conn
        self._publisher = publisher
        self._cursors = cursors
        self._known: set[str] = set()  # streams this process has created or seen

    def _name(self, stream: Stream, loop: str) -> str:
        return stream_name(stream, loop, self._conn.prefix)

    def _subject(self, stream: Stream, loop: str, key: str | None) -> str:
        base = f"{self._conn.prefix}.{stream.value}.{_hex(loop)}"
        return f"{base}.u" if key is None else f"{base}.k.{hashlib.sha256(key.encode()).hexdigest()}"

    async def _create(self, name: str, stream: Stream, loop: str) -> None:
        c = self._conn
        await c.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[f"{c.prefix}.{stream.value}.{_hex(loop)}.>"],
                storage=api.StorageType.FILE,
                num_replicas=c.replicas,
                duplicate_window=_DUPLICATE_WINDOW,
                allow_direct=True,
                max_bytes=c.stream_max_bytes,
                discard=api.DiscardPolicy.NEW,
            )
        )
        self._known.add(name)

    def append(self, stream: Stream, loop: str, entries: Sequence[Entry]) -> list[Appended]:
        """Append entries in order (pipelined); StoreFullError when JetStream refuses them for lack of space."""
        if not entries:
            return []
        c = self._conn
        return c.runner.run(self._append(stream, loop, entries), c.timeout * 2 + _REQUEST_TIMEOUT * 2)

    async def _append(self, stream: Stream, loop: str, entries: Sequence[Entry]) -> list[Appended]:
        name = self._name(stream, loop)
        if name not in self._known:
            await self._conn.retrying(lambda: self._create(name, stream, loop))
        writes = [(self._subject(stream, loop, e.key), e, _msg_id(e.key)) for e in entries]
        pending = []
        for subject, e, msg_id in writes:
            pending.append(await self._publisher.send(subject, e.data, self._headers(e, msg_id)))
        return [await self._outcome(name, stream, loop, w, ack) for w, ack in zip(writes, pending, strict=True)]

    @staticmethod
    def _headers(e: Entry, msg_id: str) -> dict[str, str]:
        headers = {"Nats-Msg-Id": msg_id}
        if e.key is not None:
            headers[_EXPECTED_SUBJECT_SEQ] = "0"
        return headers

    async def _outcome(
        self, name: str, stream: Stream, loop: str, write: tuple[str, Entry, str], pending: asyncio.Future
    ) -> Appended:
        """The result of one pipelined publish."""
        try:
            ack = await asyncio.wait_for(pending, _REQUEST_TIMEOUT)
        except Exception as e:
            return await self._publish(name, stream, loop, write, e)
        return await self._acked(name, write, ack)

    async def _acked(self, name: str, write: tuple[str, Entry, str], ack: api.PubAck) -> Appended:
        """The outcome of an acknowledged publish. A duplicate of a keyed entry (its key is the message id)
        may be another process's entry for the same key: the stored one is the answer."""
        subject, e, _ = write
        if not ack.duplicate or e.key is None:
            return Appended(ack.seq, True, e.data)
        existing = await self._last(name, subject)
        if existing is not None:
            return Appended(existing[0], False, existing[1])
        # the key's first entry was trimmed, but JetStream still remembers its id: store this one under a fresh id
        headers = self._headers(e, uuid.uuid4().hex)
        try:
            ack = await self._conn.js.publish(subject, e.data, timeout=_REQUEST_TIMEOUT, headers=headers)
        except APIError as error:
            existing = await self._last(name, subject) if self._conflict(error) else None
            if existing is None:
                raise self._mapped(error) from error
            return Appended(existing[0], False, existing[1])
        return Appended(ack.seq, True, e.data)

    async def _publish(
        self, name: str, stream: Stream, loop: str, write: tuple[str, Entry, str], error: Exception
    ) -> Appended:
        """Publish one entry again until it is stored or the entry holding its key is found; `error`: what the
        last try got. The same message id makes a retry after a lost acknowledgement harmless."""
        subject, e, msg_id = write
        deadline = time.monotonic() + self._conn.timeout
        while True:
            if self._conflict(error):
                existing = await self._last(name, subject)
                if existing is not None:
                    return Appended(existing[0], False, existing[1])
            elif not _transient(error):
                raise self._mapped(error) from error
            if time.monotonic() > deadline:
                raise self._mapped(error) from error
            if isinstance(error, NoStreamResponseError):  # deleted by drop_loop, perhaps in another process
                await self._create(name, stream, loop)
            else:
                await asyncio.sleep(0.05)
            try:
                ack = await self._conn.js.publish(
                    subject, e.data, timeout=_REQUEST_TIMEOUT, headers=self._headers(e, msg_id)
                )
            except Exception as again:
                error = again
                continue
            return await self._acked(name, write, ack)

    @staticmethod
    def _conflict(e: BaseException | None) -> bool:
        return isinstance(e, APIError) and e.err_code in _WRONG_LAST_SEQUENCE

    @staticmethod
    def _mapped(e: Exception) -> Exception:
        if _full(e):
            return _full_error("an append", e)
        return _unavailable(e) if _transient(e) else e

    async def _last(self, name: str, subject: str) -> tuple[int, bytes] | None:
        """The last message on `subject` (seq, data), from the stream leader."""
        try:
            msg = await self._conn.js.get_msg(name, subject=subject)
        except NotFoundError as e:
            if e.err_code in (_NO_MESSAGE, _STREAM_NOT_FOUND):
                return None
            raise
        return msg.seq, msg.data or b""

    def get(self, stream: Stream, loop: str, key: str) -> bytes | None:
        found = self._conn.call(lambda: self._last(self._name(stream, loop), self._subject(stream, loop, key)))
        return None if found is None else found[1]

    def read(self, stream: Stream, loop: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` entries after `after_seq`, by batched direct gets (an empty read is one round trip)."""
        if limit <= 0:
            return []
        return self._conn.call(lambda: self._read(self._name(stream, loop), max(after_seq, 0), limit))

    async def _read(self, name: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        more = True
        while more and len(out) < limit:
            start = (out[-1][0] if out else after_seq) + 1
            msgs, more = await _direct_batch(self._conn.nc, name, start, limit - len(out))
            out.extend((int(m.headers["Nats-Sequence"]), m.data) for m in msgs)
            more = more and bool(msgs)
        return out

    def last_seq(self, stream: Stream, loop: str) -> int:
        return self._conn.call(lambda: self._last_seq(self._name(stream, loop)))

    async def _last_seq(self, name: str) -> int:
        try:
            return (await self._conn.js.stream_info(name)).state.last_seq
        except NotFoundError:
            return 0

    def trim(self, stream: Stream, loop: str, before_seq: int) -> int:
        """Purge entries with seq < before_seq (never past the last entry, so the counter stays)."""
        return self._conn.call(lambda: self._trim(self._name(stream, loop), before_seq))

    async def _trim(self, name: str, before_seq: int) -> int:
        last = await self._last_seq(name)
        if last == 0 or before_seq <= 1:
            return 0
        response = await self._conn.api(f"STREAM.PURGE.{name}", {"seq": min(before_seq, last + 1)})
        return response.get("purged", 0)

    def get_cursor(self, name: str) -> bytes | None:
        return self._conn.call(lambda: _kv_get(self._cursors, _key(name)))

    def set_cursor(self, name: str, data: bytes) -> None:
        self._conn.call(lambda: self._cursors.put(_key(name), data))

    def drop_loop(self, loop: str) -> None:
        """Delete the loop's three streams and its cursors."""
        self._conn.call(lambda: self._drop_loop(loop))

    async def _drop_loop(self, loop: str) -> None:
        for stream in Stream:
            name = self._name(stream, loop)
            self._known.discard(name)
            with contextlib.suppress(NotFoundError):
                await self._conn.js.delete_stream(name)
        mine = _key(f"{loop}/")
        for key in await _kv_keys(self._cursors):
            if key.startswith(mine):
                await self._cursors.delete(key)


async def _kv_get(kv: KeyValue, key: str) -> bytes | None:
    try:
        return (await kv.get(key)).value or b""
    except KeyNotFoundError:
        return None


async def _kv_delete(kv: KeyValue, js: JetStreamContext, key: str, revision: int) -> int:
    """Delete `key` if it is still at `revision` (KeyWrongLastSequenceError otherwise); the delete's revision."""
    headers = {"KV-Operation": "DEL", _EXPECTED_SUBJECT_SEQ: str(revision)}
    try:
        return (await js.publish(f"$KV.{kv._name}.{key}", headers=headers)).seq
    except APIError as e:
        if e.err_code in _WRONG_LAST_SEQUENCE:
            raise KeyWrongLastSequenceError(description=e.description) from e
        raise


async def _kv_keys(kv: KeyValue) -> list[str]:
    try:
        return await kv.keys()
    except NoKeysError:
        return []


class NatsModelStore(ModelStore):
    """ModelStore on a JetStream object store, with the live version per loop in a KV bucket.

    publish first reserves the next version number (a compare-and-set of the loop's live record
    raising its highest version), stores the object, then makes it live with a second compare-and-set;
    when that finds another write, the object is deleted and the publish retried (PublishConflictError
    with `if_live`). Version numbers are never reused.
    """

    def __init__(self, conn: _Conn, objects: ObjectStore, live: KeyValue, mirror: _Mirror) -> None:
        self._conn = conn
        self._objects = objects
        self._live = live
        self._mirror = mirror

    async def _read_live(self, loop: str) -> tuple[int, int, int]:
        """(revision, live version, highest version) of the loop's live record; revision 0 when none."""
        try:
            entry = await self._live.get(_hex(loop))
        except KeyNotFoundError:
            return 0, 0, 0
        return entry.revision, *_LIVE.unpack(entry.value)

    async def _set_live(self, loop: str, live: int, high: int, revision: int) -> int:
        """Compare-and-set the live record; KeyWrongLastSequenceError when it is no longer at `revision`."""
        value = _LIVE.pack(live, high)
        new = await self._live.update(_hex(loop), value, last=revision)
        self._mirror.apply(_hex(loop), new, value)
        return new

    def publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes = b"", if_live: int | None = None
    ) -> StoredModel:
        c = self._conn
        make = lambda: self._publish(loop, spec, data, learned_seq, state, if_live)  # noqa: E731
        return c.runner.run(c.retrying(make), c.timeout * 2 + _REQUEST_TIMEOUT * 2)

    async def _publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes, if_live: int | None
    ) -> StoredModel:
        while True:
            revision, live, high = await self._read_live(loop)
            if if_live is not None and live != if_live:
                raise PublishConflictError(f"loop {loop}: live model is version {live}, not {if_live}")
            m = StoredModel(loop, high + 1, spec, data, learned_seq, time.time(), state)
            try:
                reserved = await self._set_live(loop, live, m.version, revision)
            except KeyWrongLastSequenceError:
                continue
            if await self._store_and_go_live(m, reserved):
                return m
            if if_live is not None:
                raise PublishConflictError(f"loop {loop}: another publish came first (version {m.version} dropped)")

    async def _store_and_go_live(self, m: StoredModel, reserved: int) -> bool:
        """Store the model under its reserved version and make it live; False (object deleted) when another
        write came first."""
        name = f"{_hex(m.loop)}/{m.version}"
        try:
            await self._objects.put(name, encode_model(m))
        except APIError as e:
            raise (_full_error("a model", e) if _full(e) else e) from e
        try:
            await self._set_live(m.loop, m.version, m.version, reserved)
            return True
        except KeyWrongLastSequenceError:
            if (await self._read_live(m.loop))[1] == m.version:  # ours: its acknowledgement was lost
                return True
        await self._objects.delete(name)
        return False

    def live(self, loop: str) -> StoredModel | None:
        return self._conn.call(lambda: self._get_live(loop))

    async def _get_live(self, loop: str) -> StoredModel | None:
        version = (await self._read_live(loop))[1]
        return await self._get(loop, version) if version else None

    def live_version(self, loop: str) -> int:
        """From the local copy of the live bucket: costs no request."""
        self._conn.runner.check_open()
        raw = self._mirror.get(_hex(loop))
        return _LIVE.unpack(raw)[0] if raw else 0

    def get(self, loop: str, version: int) -> StoredModel | None:
        return self._conn.call(lambda: self._get(loop, version)) if version > 0 else None

    async def _get(self, loop: str, version: int) -> StoredModel | None:
        try:
            result = await self._objects.get(f"{_hex(loop)}/{version}")
        except NotFoundError:
            return None
        return decode_model(loop, version, result.data)

    def versions(self, loop: str) -> list[int]:
        return self._conn.call(lambda: self._versions(loop))

    async def _versions(self, loop: str) -> list[int]:
        try:
            infos = await self._objects.list(ignore_deletes=True)
        except NotFoundError:
            return []
        mine = f"{_hex(loop)}/"
        return sorted(int(i.name[len(mine) :]) for i in infos if i.name.startswith(mine) and not i.deleted)

    def prune(self, loop: str, keep: int) -> None:
        self._conn.call(lambda: self._prune(loop, keep))

    async def _prune(self, loop: str, keep: int) -> None:
        versions = await self._versions(loop)
        live = (await self._read_live(loop))[1]
        for v in versions[: max(len(versions) - max(keep, 0), 0)]:
            if v != live:
                await self._objects.delete(f"{_hex(loop)}/{v}")

    def drop_loop(self, loop: str) -> None:
        """Delete every version; the highest version number is kept so none is reused."""
        self._conn.call(lambda: self._drop_loop(loop))

    async def _drop_loop(self, loop: str) -> None:
        while True:
            revision, live, high = await self._read_live(loop)
            if not live:
                break
            try:
                await self._set_live(loop, 0, high, revision)
                break
            except KeyWrongLastSequenceError:
                continue
        for v in await self._versions(loop):
            await self._objects.delete(f"{_hex(loop)}/{v}")


class NatsConfigStore(ConfigStore):
    """ConfigStore on a KV bucket; get, list and generation answer from the bucket's local copy."""

    def __init__(self, conn: _Conn, kv: KeyValue, mirror: _Mirror) -> None:
        self._conn = conn
        self._kv = kv
        self._mirror = mirror

    def create(self, name: str, data: bytes) -> bool:
        return self._conn.call(lambda: self._create(name, data))

    async def _create(self, name: str, data: bytes) -> bool:
        try:
            revision = await self._kv.create(_key(name), data)
        except KeyWrongLastSequenceError:
            return False
        except APIError as e:
            raise (_full_error("a loop config", e) if _full(e) else e) from e
        self._mirror.apply(_key(name), revision, data)
        return True

    def put(self, name: str, data: bytes) -> None:
        """Replace an existing loop's config; KeyError when there is none."""
        self._conn.call(lambda: self._put(name, data))

    async def _put(self, name: str, data: bytes) -> None:
        while True:
            try:
                entry = await self._kv.get(_key(name))
            except KeyNotFoundError:
                raise KeyError(name) from None
            try:
                revision = await self._kv.update(_key(name), data, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            self._mirror.apply(_key(name), revision, data)
            return

    def get(self, name: str) -> bytes | None:
        self._conn.runner.check_open()
        return self._mirror.get(_key(name))

    def list(self) -> dict[str, bytes]:
        self._conn.runner.check_open()
        return {_unkey(k): v for k, v in self._mirror.items().items()}

    def delete(self, name: str) -> bool:
        return self._conn.call(lambda: self._delete(name))

    async def _delete(self, name: str) -> bool:
        while True:
            try:
                entry = await self._kv.get(_key(name))
            except KeyNotFoundError:
                return False
            try:
                revision = await _kv_delete(self._kv, self._conn.js, _key(name), entry.revision)
            except KeyWrongLastSequenceError:
                continue
            self._mirror.apply(_key(name), revision, None)
            return True

    def generation(self) -> int:
        """The highest revision of the config bucket seen: raised by every create, put and delete."""
        self._conn.runner.check_open()
        return self._mirror.revision


class NatsLeases(Leases):
    """Leases in a KV bucket; takeovers are compare-and-set on the lease's revision."""

    def __init__(self, conn: _Conn, kv: KeyValue) -> None:
        self._conn = conn
        self._kv = kv

    def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        return self._conn.call(lambda: self._acquire(name, holder, ttl_seconds))

    async def _acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        value = json.dumps({"holder": holder, "expires": time.time() + ttl_seconds}).encode()
        try:
            entry = await self._kv.get(_key(name))
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None:
                await self._kv.create(_key(name), value)
                return True
            current = json.loads(entry.value)
            if current["holder"] != holder and current["expires"] > time.time():
                return False
            await self._kv.update(_key(name), value, last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # another holder got there first
        return True

    def release(self, name: str, holder: str) -> None:
        self._conn.call(lambda: self._release(name, holder))

    async def _release(self, name: str, holder: str) -> None:
        try:
            entry = await self._kv.get(_key(name))
        except KeyNotFoundError:
            return
        if json.loads(entry.value)["holder"] == holder:
            with contextlib.suppress(KeyWrongLastSequenceError):  # taken over meanwhile
                await _kv_delete(self._kv, self._conn.js, _key(name), entry.revision)


async def _used_bytes(conn: _Conn) -> int:
    """The bytes of this store's streams, page by page of the stream list."""
    total, seen = 0, 0
    while True:
        page = await conn.api("STREAM.LIST", {"offset": seen})
        streams = page.get("streams") or []
        total += sum(s["state"]["bytes"] for s in streams if conn.owns(s["config"]["name"]))
        seen += len(streams)
        if not streams or seen >= page["total"]:
            return total


async def _connect(servers: list[str], timeout: float) -> NatsClient:
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


def _servers(location: str) -> list[str]:
    """`nats://a:4222,b:4222` -> the URL of every server."""
    rest = location.removeprefix("nats://")
    servers = [f"nats://{s.strip()}" for s in rest.split(",") if s.strip()]
    if not servers:
        raise ValueError(f"no NATS server in {location!r}")
    return servers


def open_nats(
    location: str,
    *,
    replicas: int = 1,
    prefix: str = "nextbest",
    timeout: float = DEFAULT_TIMEOUT,
    stream_max_bytes: int = -1,
) -> Store:
    """Connect to the JetStream servers of `location` (`nats://host:port[,host:port...]`) and open the store.

    `replicas`: the replication factor of the streams and buckets this store creates (existing ones
    keep theirs); `prefix` ([A-Za-z0-9-]+) names them all, so deployments can share servers; `timeout`:
    how long an operation keeps retrying transient failures (also the connect timeout);
    `stream_max_bytes`: the most each event log stream may hold (-1: no limit but the servers'), beyond
    which appends raise StoreFullError. The client reconnects to any of the servers (and those the
    cluster announces) for as long as the store is open.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"invalid NATS store prefix {prefix!r}: letters, digits and '-' only")
    runner = _Runner(f"nats-store {prefix}")
    try:
        return runner.run(_open(runner, _servers(location), replicas, prefix, timeout, stream_max_bytes), timeout * 3)
    except BaseException:
        runner.stop()
        raise


async def _open(
    runner: _Runner, servers: list[str], replicas: int, prefix: str, timeout: float, stream_max_bytes: int
) -> Store:
    nc = await _connect(servers, timeout)
    try:
        return await _open_on(runner, nc, replicas, prefix, timeout, stream_max_bytes)
    except BaseException:
        await nc.close()
        raise


async def _open_on(
    runner: _Runner, nc: NatsClient, replicas: int, prefix: str, timeout: float, stream_max_bytes: int
) -> Store:
    js = nc.jetstream(timeout=_REQUEST_TIMEOUT)
    conn = _Conn(runner, nc, js, prefix, replicas, timeout, stream_max_bytes)
    cursors, live, loops, leases = [
        await conn.retrying(lambda n=n: _bucket(conn, n)) for n in ("cursors", "live", "loops", "leases")
    ]
    config = api.ObjectStoreConfig(bucket=f"{prefix}_models", storage=api.StorageType.FILE, replicas=replicas)
    objects = await conn.retrying(lambda: _object_store(js, config))
    publisher = _Publisher(nc)
    await publisher.start()
    mirrors = _Mirror(nc, live), _Mirror(nc, loops)
    for mirror in mirrors:
        await mirror.start()

    async def shutdown() -> None:
        for mirror in mirrors:
            await mirror.stop()
        await nc.close()

    def close() -> None:
        if runner.closed:
            return
        try:
            runner.run(shutdown(), _CLOSE_SECONDS)
        except Exception as e:  # every write was acknowledged before; only the goodbye is lost
            log.warning("NATS store: could not close the connection cleanly (%s: %s); dropped it", type(e).__name__, e)
        finally:
            runner.stop()

    return Store(
        NatsEventLog(conn, publisher, cursors),
        NatsModelStore(conn, objects, live, mirrors[0]),
        NatsConfigStore(conn, loops, mirrors[1]),
        NatsLeases(conn, leases),
        close,
        lambda: conn.call(lambda: _used_bytes(conn)),
    )
