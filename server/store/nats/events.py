"""The event log on JetStream: one stream per (stream, loop) whose sequence numbers are the entries' seqs.

Seqs are contiguous and purges never lower the last one. A keyed append publishes with
`Nats-Expected-Last-Subject-Sequence: 0`, so the first entry of a key wins on every server; its `Nats-Msg-Id` is
the key (the event id, for a decision), so JetStream also recognizes a retry within its two-minute duplicate
window. An unkeyed entry carries a fresh message id per append, so a publish retried after a lost
acknowledgement is stored once. Writes are durable once JetStream acknowledges them: on a quorum of `replicas`
servers (a single server acknowledges once written to its files, not fsynced, unless it runs with
`sync_interval: always`).

Reads are batched direct gets, which any current replica may answer: with replicas > 1 a read right after an
append may miss it for a few milliseconds.

A multi-entry append is not atomic: when it fails part-way, the entries before the failure stay (a retry of a
keyed entry is idempotent). Entries of one call get increasing seqs unless a publish had to be retried after a
transient error (leader change, reconnect), which may place it after the entries that followed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from nats.js.kv import KeyValue

from ..base import Appended, Entry, EventLog, Stream, SubjectChanges, created_changes, cursor_prefix
from ._conn import (
    EXPECTED_SUBJECT_SEQ,
    REQUEST_TIMEOUT,
    WRONG_LAST_SEQUENCE,
    Conn,
    direct_batch,
    hex_name,
    refusal,
    transient,
    unavailable,
)
from .kv import NatsSubjectStore, kv_erase, kv_get, kv_key, kv_keys

_DUPLICATE_WINDOW = 120.0
_NO_MESSAGE = 10037
_STREAM_NOT_FOUND = 10059
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII without spaces: usable as a message id as is


def stream_name(stream: Stream, loop: str, prefix: str = "nextbest") -> str:
    """The JetStream stream that holds `stream` of `loop`."""
    return f"{prefix}_{stream.value}_{hex_name(loop)}"


def _msg_id(key: str | None) -> str:
    """The Nats-Msg-Id of an entry: its key (an event id, for decisions) when it fits a header, else the key's
    SHA-256; a fresh id for an unkeyed entry, so only a retry of the same publish is deduplicated."""
    if key is None:
        return uuid.uuid4().hex
    return key if _HEADER_SAFE.fullmatch(key) else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class Publisher:
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


class NatsEventLog(EventLog):
    """EventLog on JetStream: one stream per (stream, loop) whose sequence numbers are the entries' seqs."""

    def __init__(self, conn: Conn, publisher: Publisher, cursors: KeyValue, subjects: NatsSubjectStore) -> None:
        self._conn = conn
        self._subjects = subjects
        self._publisher = publisher
        self._cursors = cursors
        self._known: set[str] = set()  # streams this process has created or seen

    def _name(self, stream: Stream, loop: str) -> str:
        return stream_name(stream, loop, self._conn.prefix)

    def _subject(self, stream: Stream, loop: str, key: str | None) -> str:
        base = f"{self._conn.prefix}.{stream.value}.{hex_name(loop)}"
        return f"{base}.u" if key is None else f"{base}.k.{hashlib.sha256(key.encode()).hexdigest()}"

    async def _create(self, name: str, stream: Stream, loop: str) -> None:
        c = self._conn
        await c.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[f"{c.prefix}.{stream.value}.{hex_name(loop)}.>"],
                storage=api.StorageType.FILE,
                num_replicas=c.replicas,
                duplicate_window=_DUPLICATE_WINDOW,
                allow_direct=True,
                max_bytes=c.stream_max_bytes,
                discard=api.DiscardPolicy.NEW,
            )
        )
        self._known.add(name)

    def append(
        self, stream: Stream, loop: str, entries: Sequence[Entry], subjects: SubjectChanges | None = None
    ) -> list[Appended]:
        """Append entries in order (pipelined); StoreFullError when JetStream refuses them for lack of space.
        The subject changes follow the entries (a crash between them loses them: the joined event records a
        contact again)."""
        if not entries:
            return []
        c = self._conn
        appended = c.runner.run(self._append(stream, loop, entries), c.timeout * 2 + REQUEST_TIMEOUT * 2)
        for changes in created_changes(entries, appended, subjects):
            self._subjects.update(changes)
        return appended

    async def _append(self, stream: Stream, loop: str, entries: Sequence[Entry]) -> list[Appended]:
        name = self._name(stream, loop)
        if name not in self._known:
            await self._conn.retrying(lambda: self._create(name, stream, loop))
        writes = [(self._subject(stream, loop, e.key), e, _msg_id(e.key)) for e in entries]
        pending = []
        for subject, e, msg_id in writes:
            pending.append(await self._publisher.send(subject, e.data, self._headers(e, msg_id)))
        deadline = time.monotonic() + self._conn.timeout  # for the whole append, not per entry
        return [
            await self._outcome(name, stream, loop, w, ack, deadline) for w, ack in zip(writes, pending, strict=True)
        ]

    @staticmethod
    def _headers(e: Entry, msg_id: str) -> dict[str, str]:
        headers = {"Nats-Msg-Id": msg_id}
        if e.key is not None:
            headers[EXPECTED_SUBJECT_SEQ] = "0"
        return headers

    async def _outcome(
        self,
        name: str,
        stream: Stream,
        loop: str,
        write: tuple[str, Entry, str],
        pending: asyncio.Future,
        deadline: float,
    ) -> Appended:
        """The result of one pipelined publish, published again until `deadline` when it failed."""
        try:
            ack = await asyncio.wait_for(pending, REQUEST_TIMEOUT)
        except Exception as e:
            return await self._publish(name, stream, loop, write, e, deadline)
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
            ack = await self._conn.js.publish(subject, e.data, timeout=REQUEST_TIMEOUT, headers=headers)
        except APIError as error:
            existing = await self._last(name, subject) if self._conflict(error) else None
            if existing is None:
                raise self._mapped(error) from error
            return Appended(existing[0], False, existing[1])
        return Appended(ack.seq, True, e.data)

    async def _publish(
        self, name: str, stream: Stream, loop: str, write: tuple[str, Entry, str], error: Exception, deadline: float
    ) -> Appended:
        """Publish one entry again until it is stored or the entry holding its key is found, or `deadline` passes;
        `error`: what the last try got. The same message id makes a retry after a lost acknowledgement harmless."""
        subject, e, msg_id = write
        while True:
            if self._conflict(error):
                existing = await self._last(name, subject)
                if existing is not None:
                    return Appended(existing[0], False, existing[1])
            elif not transient(error):
                raise self._mapped(error) from error
            if time.monotonic() > deadline:
                raise self._mapped(error) from error
            await asyncio.sleep(0.05)
            try:
                if isinstance(error, NoStreamResponseError):  # no leader yet, or deleted by drop_loop elsewhere
                    await asyncio.wait_for(self._create(name, stream, loop), REQUEST_TIMEOUT)
                ack = await self._conn.js.publish(
                    subject, e.data, timeout=REQUEST_TIMEOUT, headers=self._headers(e, msg_id)
                )
            except Exception as again:
                error = again
                continue
            return await self._acked(name, write, ack)

    @staticmethod
    def _conflict(e: BaseException | None) -> bool:
        return isinstance(e, APIError) and e.err_code in WRONG_LAST_SEQUENCE

    @staticmethod
    def _mapped(e: Exception) -> Exception:
        refused = refusal("an append", e)
        return unavailable(e) if refused is e and transient(e) else refused

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
            msgs, more = await direct_batch(self._conn.nc, name, start, limit - len(out))
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
        return self._conn.call(lambda: kv_get(self._cursors, kv_key(name)))

    def set_cursor(self, name: str, data: bytes) -> None:
        self._conn.call(lambda: self._cursors.put(kv_key(name), data))

    def delete_cursor(self, name: str) -> None:
        self._conn.call(lambda: kv_erase(self._conn, self._cursors, kv_key(name)))

    def drop_loop(self, loop: str) -> None:
        """Delete the loop's three streams and its cursors."""
        self._conn.call(lambda: self._drop_loop(loop))

    async def _drop_loop(self, loop: str) -> None:
        for stream in Stream:
            name = self._name(stream, loop)
            self._known.discard(name)
            with contextlib.suppress(NotFoundError):
                await self._conn.js.delete_stream(name)
        mine = kv_key(cursor_prefix(loop))
        for key in await kv_keys(self._cursors):
            if key.startswith(mine):
                await self._cursors.delete(key)
