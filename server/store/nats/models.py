"""Models on JetStream: the model bytes in an object store, each loop's live version in a KV bucket."""

from __future__ import annotations

import time

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from ..base import (
    LiveRecord,
    ModelStore,
    PublishConflictError,
    StoredModel,
    decode_model,
    encode_model,
    prune_selection,
)
from ._conn import REQUEST_TIMEOUT, STREAM_IN_USE, Conn, hex_name, refusal
from .kv import Mirror


async def open_object_store(js: JetStreamContext, config: api.ObjectStoreConfig) -> ObjectStore:
    try:
        return await js.create_object_store(config=config, bucket=config.bucket)
    except APIError as e:
        if e.err_code != STREAM_IN_USE:
            raise
        return await js.object_store(config.bucket)


def _object_prefix(loop: str) -> str:
    return f"{hex_name(loop)}/"


def _object_name(loop: str, version: int) -> str:
    return f"{_object_prefix(loop)}{version}"


class NatsModelStore(ModelStore):
    """ModelStore on a JetStream object store, with the live version per loop in a KV bucket.

    publish first reserves the next version number (a compare-and-set of the loop's live record
    raising its highest version), stores the object, then makes it live with a second compare-and-set;
    when that finds another write, the object is deleted and the publish retried (PublishConflictError
    with `if_live`). Version numbers are never reused.
    """

    def __init__(self, conn: Conn, objects: ObjectStore, live: KeyValue, mirror: Mirror) -> None:
        self._conn = conn
        self._objects = objects
        self._live = live
        self._mirror = mirror

    async def _read_live(self, loop: str) -> tuple[int, LiveRecord]:
        """The loop's live record and its revision (0 when there is none)."""
        try:
            entry = await self._live.get(hex_name(loop))
        except KeyNotFoundError:
            return 0, LiveRecord()
        return entry.revision, LiveRecord.decode(entry.value)

    async def _set_live(self, loop: str, record: LiveRecord, revision: int) -> int:
        """Compare-and-set the live record; KeyWrongLastSequenceError when it is no longer at `revision`."""
        value = record.encode()
        new = await self._live.update(hex_name(loop), value, last=revision)
        self._mirror.apply(hex_name(loop), new, value)
        return new

    def publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes = b"", if_live: int | None = None
    ) -> StoredModel:
        c = self._conn
        make = lambda: self._publish(loop, spec, data, learned_seq, state, if_live)  # noqa: E731
        return c.runner.run(c.retrying(make), c.timeout * 2 + REQUEST_TIMEOUT * 2)

    async def _publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes, if_live: int | None
    ) -> StoredModel:
        while True:
            revision, current = await self._read_live(loop)
            current.check(loop, if_live)
            record = current.reserved()
            m = StoredModel(loop, record.high, spec, data, learned_seq, time.time(), state)
            try:
                reserved = await self._set_live(loop, record, revision)
            except KeyWrongLastSequenceError:
                continue
            if await self._store_and_go_live(m, record, reserved):
                return m
            if if_live is not None:
                raise PublishConflictError(f"loop {loop}: another publish came first (version {m.version} dropped)")

    async def _store_and_go_live(self, m: StoredModel, record: LiveRecord, reserved: int) -> bool:
        """Store the model under the version `record` reserved at revision `reserved`, and make it live; False
        (object deleted) when another write came first."""
        name = _object_name(m.loop, m.version)
        try:
            await self._objects.put(name, encode_model(m))
        except APIError as e:
            raise refusal("a model", e) from e
        try:
            await self._set_live(m.loop, record.published(), reserved)
            return True
        except KeyWrongLastSequenceError:
            if (await self._read_live(m.loop))[1].live == m.version:  # ours: its acknowledgement was lost
                return True
        await self._objects.delete(name)
        return False

    def live(self, loop: str) -> StoredModel | None:
        return self._conn.call(lambda: self._get_live(loop))

    async def _get_live(self, loop: str) -> StoredModel | None:
        version = (await self._read_live(loop))[1].live
        return await self._get(loop, version) if version else None

    def live_version(self, loop: str) -> int:
        """From the local copy of the live bucket: costs no request."""
        self._conn.runner.check_open()
        return LiveRecord.decode(self._mirror.get(hex_name(loop))).live

    def get(self, loop: str, version: int) -> StoredModel | None:
        return self._conn.call(lambda: self._get(loop, version)) if version > 0 else None

    async def _get(self, loop: str, version: int) -> StoredModel | None:
        try:
            result = await self._objects.get(_object_name(loop, version))
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
        mine = _object_prefix(loop)
        return sorted(int(i.name[len(mine) :]) for i in infos if i.name.startswith(mine) and not i.deleted)

    def prune(self, loop: str, keep: int) -> None:
        self._conn.call(lambda: self._prune(loop, keep))

    async def _prune(self, loop: str, keep: int) -> None:
        versions = await self._versions(loop)
        for v in prune_selection(versions, keep, (await self._read_live(loop))[1].live):
            await self._objects.delete(_object_name(loop, v))

    def drop_loop(self, loop: str) -> None:
        """Delete every version; the highest version number is kept so none is reused."""
        self._conn.call(lambda: self._drop_loop(loop))

    async def _drop_loop(self, loop: str) -> None:
        while True:
            revision, record = await self._read_live(loop)
            if not record.live:
                break
            try:
                await self._set_live(loop, record.dropped(), revision)
                break
            except KeyWrongLastSequenceError:
                continue
        for v in await self._versions(loop):
            await self._objects.delete(_object_name(loop, v))
