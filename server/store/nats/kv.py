"""KV buckets: keys for any name, the requests nats-py lacks, the local copies that answer polls, and the loop
configs and leases they hold.

`live_version`, `configs.list/get` and `configs.generation` answer from local copies of the `live` and `loops`
buckets, which a background task brings up to date every 50 ms (so polling them costs nothing); the process's
own writes show in them at once, other processes' writes within about 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from ..base import ConfigStore, Lease, Leases, SubjectChanges, SubjectStore, take_lease
from ._conn import (
    EXPECTED_SUBJECT_SEQ,
    READ_BATCH,
    REQUEST_TIMEOUT,
    STREAM_IN_USE,
    WRONG_LAST_SEQUENCE,
    Conn,
    direct_batch,
    hex_name,
    log,
    refusal,
)

_POLL_SECONDS = 0.05  # how often the local copies of the live and loops buckets catch up
_POLICY_KEY = "policy"  # in the subjects bucket: subject keys start with "c"


def kv_key(name: str) -> str:
    """A KV key for any name: KV keys allow few characters, and must not be empty."""
    return "c" + hex_name(name)


def kv_name(key: str) -> str:
    return bytes.fromhex(key[1:]).decode()


async def open_bucket(conn: Conn, name: str) -> KeyValue:
    """The KV bucket `<prefix>_<name>`, created when missing. Its stream allows direct gets (the mirrors'
    polls); the handle reads from the stream leader, so reads after writes are consistent."""
    bucket = f"{conn.prefix}_{name}"
    config = api.KeyValueConfig(
        bucket=bucket, history=1, storage=api.StorageType.FILE, replicas=conn.replicas, direct=True
    )
    try:
        await conn.js.create_key_value(config)
    except APIError as e:
        if e.err_code != STREAM_IN_USE:
            raise
    return KeyValue(name=bucket, stream=f"KV_{bucket}", pre=f"$KV.{bucket}.", js=conn.js, direct=False)


async def kv_get(kv: KeyValue, key: str) -> bytes | None:
    try:
        return (await kv.get(key)).value or b""
    except KeyNotFoundError:
        return None


async def kv_delete(kv: KeyValue, js: JetStreamContext, key: str, revision: int) -> int:
    """Delete `key` if it is still at `revision` (KeyWrongLastSequenceError otherwise); the delete's revision."""
    headers = {"KV-Operation": "DEL", EXPECTED_SUBJECT_SEQ: str(revision)}
    try:
        return (await js.publish(f"$KV.{kv._name}.{key}", headers=headers)).seq
    except APIError as e:
        if e.err_code in WRONG_LAST_SEQUENCE:
            raise KeyWrongLastSequenceError(description=e.description) from e
        raise


async def kv_erase(conn: Conn, kv: KeyValue, key: str) -> None:
    """Delete `key` leaving no delete marker: keys written once and deleted (the joiner's spilled folds, one per
    event) would otherwise leave a marker each in the bucket for good."""
    await conn.api(f"STREAM.PURGE.{kv._stream}", {"filter": kv._pre + key})


async def kv_keys(kv: KeyValue) -> list[str]:
    try:
        return await kv.keys()
    except NoKeysError:
        return []


class Mirror:
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
            msgs, more = await direct_batch(self._nc, self._stream, self._polled + 1, READ_BATCH)
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
            await asyncio.wait([self._task], timeout=REQUEST_TIMEOUT + 1)


class NatsConfigStore(ConfigStore):
    """ConfigStore on a KV bucket; get, list and generation answer from the bucket's local copy."""

    def __init__(self, conn: Conn, kv: KeyValue, mirror: Mirror) -> None:
        self._conn = conn
        self._kv = kv
        self._mirror = mirror

    def create(self, name: str, data: bytes) -> bool:
        return self._conn.call(lambda: self._create(name, data))

    async def _create(self, name: str, data: bytes) -> bool:
        try:
            revision = await self._kv.create(kv_key(name), data)
        except KeyWrongLastSequenceError:
            return False
        except APIError as e:
            raise refusal("a loop config", e) from e
        self._mirror.apply(kv_key(name), revision, data)
        return True

    def put(self, name: str, data: bytes) -> None:
        """Replace an existing loop's config; KeyError when there is none."""
        self._conn.call(lambda: self._put(name, data))

    async def _put(self, name: str, data: bytes) -> None:
        while True:
            try:
                entry = await self._kv.get(kv_key(name))
            except KeyNotFoundError:
                raise KeyError(name) from None
            try:
                revision = await self._kv.update(kv_key(name), data, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            self._mirror.apply(kv_key(name), revision, data)
            return

    def get(self, name: str) -> bytes | None:
        self._conn.runner.check_open()
        return self._mirror.get(kv_key(name))

    def list(self) -> dict[str, bytes]:
        self._conn.runner.check_open()
        return {kv_name(k): v for k, v in self._mirror.items().items()}

    def delete(self, name: str) -> bool:
        return self._conn.call(lambda: self._delete(name))

    async def _delete(self, name: str) -> bool:
        while True:
            try:
                entry = await self._kv.get(kv_key(name))
            except KeyNotFoundError:
                return False
            try:
                revision = await kv_delete(self._kv, self._conn.js, kv_key(name), entry.revision)
            except KeyWrongLastSequenceError:
                continue
            self._mirror.apply(kv_key(name), revision, None)
            return True

    def generation(self) -> int:
        """The highest revision of the config bucket seen: raised by every create, put and delete."""
        self._conn.runner.check_open()
        return self._mirror.revision


class NatsLeases(Leases):
    """Leases in a KV bucket; takeovers are compare-and-set on the lease's revision."""

    def __init__(self, conn: Conn, kv: KeyValue) -> None:
        self._conn = conn
        self._kv = kv

    def acquire(self, name: str, holder: str, ttl_seconds: float, now: float) -> bool:
        return self._conn.call(lambda: self._acquire(name, holder, ttl_seconds, now))

    async def _acquire(self, name: str, holder: str, ttl_seconds: float, now: float) -> bool:
        try:
            entry = await self._kv.get(kv_key(name))
        except KeyNotFoundError:
            entry = None
        lease = take_lease(None if entry is None else Lease.decode(entry.value), holder, ttl_seconds, now)
        if lease is None:
            return False
        try:
            if entry is None:
                await self._kv.create(kv_key(name), lease.encode())
            else:
                await self._kv.update(kv_key(name), lease.encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # another holder got there first
        return True

    def release(self, name: str, holder: str) -> None:
        self._conn.call(lambda: self._release(name, holder))

    async def _release(self, name: str, holder: str) -> None:
        try:
            entry = await self._kv.get(kv_key(name))
        except KeyNotFoundError:
            return
        if Lease.decode(entry.value).holder == holder:
            with contextlib.suppress(KeyWrongLastSequenceError):  # taken over meanwhile
                await kv_delete(self._kv, self._conn.js, kv_key(name), entry.revision)


class NatsSubjectStore(SubjectStore):
    """Subject records and the contact policy in a KV bucket, read from its leader (so every replica sees every
    write at once); changes are compare-and-set on the key's revision, retried when another writer got there
    first."""

    def __init__(self, conn: Conn, kv: KeyValue) -> None:
        self._conn = conn
        self._kv = kv

    def get(self, subject: str) -> bytes | None:
        return self._conn.call(lambda: kv_get(self._kv, kv_key(subject)))

    def update(self, changes: SubjectChanges) -> None:
        if changes:
            self._conn.call(lambda: self._changing(changes))

    async def _changing(self, changes: SubjectChanges) -> None:
        """The changes concurrently, each compare-and-set on its own key."""
        await asyncio.gather(*(self._change(kv_key(s), c) for s, c in changes.items()))

    async def _change(self, key: str, change: Callable[[bytes | None], bytes | None]) -> bytes | None:
        while True:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                entry = None
            current = None if entry is None else entry.value or b""
            data = change(current)
            try:
                if data is None:
                    if entry is not None:
                        await kv_delete(self._kv, self._conn.js, key, entry.revision)
                elif entry is None:
                    await self._kv.create(key, data)
                elif data != current:
                    await self._kv.update(key, data, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            except APIError as e:
                raise refusal("a subject record", e) from e
            return data

    def sweep(self, change: Callable[[bytes], bytes | None]) -> int:
        keys = [k for k in self._conn.call(lambda: kv_keys(self._kv)) if k != _POLICY_KEY]
        deleted = 0
        for key in keys:
            data = self._conn.call(lambda key=key: self._change(key, lambda d: None if d is None else change(d)))
            deleted += data is None
        return deleted

    def get_policy(self) -> bytes | None:
        return self._conn.call(lambda: kv_get(self._kv, _POLICY_KEY))

    def update_policy(self, change: Callable[[bytes | None], bytes]) -> bytes:
        return self._conn.call(lambda: self._change(_POLICY_KEY, change))
