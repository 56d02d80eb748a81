"""The storage interfaces on one machine: every store in one LMDB environment (a directory).

Named databases (`P` is `loop \\0 stream \\0`; seqs and versions are 8-byte big-endian):

    events   P + seq           -> header (>h) + key + data: the header is the key length, -1 when unkeyed;
                                  decisions of 1 KiB or more are stored zlib-compressed when shorter,
                                  marked by 0x4000 added to the key length (-2 when unkeyed)
    keys     P + key           -> seq (a key too long for LMDB: 0xFF + its SHA-256, see _index_key)
    seqs     P                 -> last seq ever appended (trim never lowers it)
    cursors  name              -> data
    models   loop \\0 version   -> _MODEL header + spec + state + model bytes
    live     loop              -> live version, highest version ever published
    configs  name              -> data
    meta     config_generation -> counter
    meta     lease \\0 name     -> {"holder", "expires"} (JSON; expiry on the clock the acquirers pass)
    meta     contact_policy    -> ContactPolicy
    subjects subject id        -> SubjectHistory

Group commit: all writes of a Store run on its one writer thread. Callers queue an operation (a
function of a write transaction) and block until the transaction holding it has committed with
fsync; the writer puts everything queued (up to `max_batch` operations) in one transaction. When
an operation raises, that transaction is abandoned and the batch is redone with each operation in
a transaction of its own, so an operation that raises leaves nothing behind and its caller alone
gets the exception (child transactions would isolate it too, but cost every operation their
overhead). When the commit fails, every caller of the batch gets the error
(StoreFullError when the map or the disk is full) and nothing of the batch remains.

Space: `map_size` is the most the store may hold. LMDB reserves that much address space, but the
data file grows page by page as data is written (freed pages are reused), so a large map costs no
disk. Once the map is full LMDB cannot even delete, so writes that add data are refused with
StoreFullError while the data fills `map_size` minus a reserve (1/16 of the map, at least 256 KiB);
the reserve keeps trim, prune, drop_loop, config deletes and cursors working, and freeing space
through them makes the store writable again. A commit that fails because the disk is full (or a write
came short) fails its batch with StoreFullError too, and leaves the store as it was: writes
resume once there is disk space again.

Several processes may open the same directory: LMDB's locks serialize their writers. Open the
store after forking, never before, and give every process the same `map_size`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

import lmdb

from nextbest.server.config import DEFAULT_MAP_SIZE

from .base import (
    Appended,
    ConfigStore,
    Entry,
    EventLog,
    Lease,
    Leases,
    LiveRecord,
    ModelStore,
    Store,
    StoredModel,
    StoreFullError,
    Stream,
    SubjectChanges,
    SubjectStore,
    created_changes,
    cursor_prefix,
    decode_model,
    encode_model,
    prune_selection,
    take_lease,
)

_DBS = ("events", "keys", "seqs", "cursors", "models", "live", "configs", "meta", "subjects")
_CHUNK = 10_000  # entries deleted per write operation by trim and drop_loop
_GENERATION = b"config_generation"
_CONTACT_POLICY = b"contact_policy"
_U64 = struct.Struct(">Q")
_KEYLEN = struct.Struct(">h")
_COMPRESSED = 0x4000  # in an entry's header: its data is zlib-compressed (LMDB keys are far shorter)
_COMPRESS_FROM = 1024  # shorter data is stored as it is
# Decisions are compressed: Rank writes them, and fsyncs their pages, on the request path. Joined events are
# not: the trainer writes them, and compressing them made the joiner 60% slower (learned/s 2,350 -> 2,130).
_COMPRESSED_STREAMS = frozenset({Stream.DECISIONS})

# What LMDB says when a commit cannot write: a full disk or quota, a file size limit, or a short write (EIO).
_DISK_FULL = tuple(os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO))

_T = TypeVar("_T")
_Op = tuple[Callable[[lmdb.Transaction], object], bool, Future]


class _Redo(Exception):
    """An operation of a batch raised: the batch is redone with each operation in its own transaction."""


def _u64(raw: bytes | None) -> int:
    return _U64.unpack(raw)[0] if raw else 0


def _delete_prefix(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes, limit: int) -> int:
    cur = txn.cursor(db)
    n = 0
    if cur.set_range(prefix):
        while n < limit and cur.key().startswith(prefix):
            cur.delete()
            n += 1
    return n


class _Env:
    """The environment, its databases, the writer thread, and the gate that makes close() safe."""

    def __init__(self, path: str, map_size: int, max_readers: int, max_batch: int) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)  # decisions are the callers' data: the owner's alone
        self.path = path
        self.env = lmdb.open(path, map_size=map_size, max_dbs=len(_DBS), max_readers=max_readers, mode=0o600)
        self.env.reader_check()  # free reader slots left behind by dead processes
        self.db = {name: self.env.open_db(name.encode()) for name in _DBS}
        self.max_key_size = self.env.max_key_size()
        map_size = self.env.info()["map_size"]
        psize = self.env.stat()["psize"]
        self._limit_pages = (map_size - max(map_size // 16, 64 * psize)) // psize
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._mutex = threading.Lock()  # taken directly where a Condition's Python-level enter and exit cost
        self._lock = threading.Condition(self._mutex)
        self._closed = False
        self._readers = 0
        self._writer = threading.Thread(target=self._run, name=f"lmdb-writer {path}", daemon=True)
        self._writer.start()

    def used_bytes(self) -> int:
        """Bytes of the map in use: pages up to the highest one ever used (freed pages are reused)."""
        with self.read():
            return (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the LMDB store at {self.path} is closed")

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read transaction, ended when the block exits."""
        self._reader_in()
        try:
            with self.env.begin() as txn:
                yield txn
        finally:
            self._reader_out()

    def get(self, key: bytes, db: lmdb._Database) -> bytes | None:
        """The value of one key, in a read transaction of its own: `read` without a generator's cost (Rank reads
        a subject's history each time)."""
        self._reader_in()
        try:
            with self.env.begin(db=db) as txn:
                return txn.get(key)
        finally:
            self._reader_out()

    def _reader_in(self) -> None:
        with self._mutex:
            self._check_open()
            self._readers += 1

    def _reader_out(self) -> None:
        with self._mutex:
            self._readers -= 1
            if self._closed:  # close() waits for the last reader
                self._lock.notify_all()

    def write(self, op: Callable[[lmdb.Transaction], _T], grows: bool = True) -> _T:
        """Run `op` in the writer's next transaction; return its result once committed.

        `grows`: the operation may add data, so it is refused when the store is full.
        """
        future: Future = Future()
        with self._lock:
            self._check_open()
            self._queue.put((op, grows, future))
        return future.result()

    def close(self) -> None:
        """Finish the queued writes, wait for running reads, close the environment."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._writer.join()
        with self._lock:
            self._lock.wait_for(lambda: self._readers == 0)
        self.env.close()

    def _full(self, why: str) -> StoreFullError:
        return StoreFullError(
            f"the LMDB store at {self.path} is full ({why}); free space (retention, prune, delete a loop) or reopen "
            f"it with a larger map_size (nextbest serve --store-max-bytes; now {self.env.info()['map_size']} bytes)"
        )

    def _commit_error(self, error: BaseException) -> BaseException:
        """What the callers of a batch whose commit failed get: StoreFullError when the map or the disk is full."""
        if isinstance(error, lmdb.MapFullError):
            return self._full(f"commit failed: {error}")
        if isinstance(error, lmdb.DiskError) or (
            isinstance(error, lmdb.Error) and any(m in str(error) for m in _DISK_FULL)
        ):
            return StoreFullError(
                f"the disk under the LMDB store at {self.path} is full or failing ({error}); nothing of the failed "
                "write remains, and writes resume once there is disk space"
            )
        return error

    def _used_pages(self, txn: lmdb.Transaction) -> int:
        stats = [txn.stat(db) for db in self.db.values()]
        return sum(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:  # close() queues None last
                batch.pop()
                stop = True
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[_Op]) -> None:
        outcomes: list[tuple[Future, object, BaseException | None]] = []
        try:
            txn = self.env.begin(write=True)
            try:
                # the high-water page bounds the pages in use: count them only when it is past the limit
                full = self.env.info()["last_pgno"] > self._limit_pages and self._used_pages(txn) > self._limit_pages
                for op, grows, future in batch:
                    if grows and full:
                        outcomes.append((future, None, self._full("only the reserve kept for deletes is left")))
                        continue
                    try:
                        outcomes.append((future, op(txn), None))
                    except Exception as e:
                        if len(batch) > 1:
                            raise _Redo from e
                        raise
                txn.commit()
            except BaseException:
                txn.abort()
                raise
        except _Redo:  # an operation failed: nothing of the batch remains; each one again, alone
            for op in batch:
                self._commit([op])
        except BaseException as e:
            error = self._commit_error(e)
            for _, _, future in batch:
                future.set_exception(error)
        else:
            for future, result, error in outcomes:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)


def _prefix(stream: Stream, loop: str) -> bytes:
    return f"{loop}\0{stream.value}\0".encode()


def _index_key(prefix: bytes, key: str, max_key_size: int) -> bytes:
    """The bytes an entry's key is indexed under: its UTF-8, or when that does not fit LMDB's key size 0xFF and
    its SHA-256 (0xFF never occurs in UTF-8, so a digest never equals a key that fits)."""
    raw = key.encode()
    return raw if len(prefix) + len(raw) <= max_key_size else b"\xff" + hashlib.sha256(raw).digest()


def _encode_entry(key: bytes | None, data: bytes, compress: bool) -> bytes:
    """The stored value of an entry. A decision record (~2.4 KB) is longer than half an LMDB page, so it
    fills a page of its own; compressed (~1.2 KB, in ~30 us) it shares one: half the store, of the pages
    each commit writes, and of the page cache. (LZ4, ~1.6 KB in 5 us, is too long for that: appends in
    key order split pages evenly, so that two ~1.6 KB entries a page end up one.)"""
    compressed = compress and len(data) >= _COMPRESS_FROM and len(packed := zlib.compress(data, 1)) < len(data)
    body = packed if compressed else data
    if key is None:
        return _KEYLEN.pack(-2 if compressed else -1) + body
    return _KEYLEN.pack(len(key) | (_COMPRESSED if compressed else 0)) + key + body


def _entry_key(value: bytes) -> bytes | None:
    n = _KEYLEN.unpack_from(value)[0]
    return None if n < 0 else value[2 : 2 + (n & ~_COMPRESSED)]


def _entry_data(value: bytes) -> bytes:
    n = _KEYLEN.unpack_from(value)[0]
    if n < 0:
        return zlib.decompress(value[2:]) if n == -2 else value[2:]
    body = value[2 + (n & ~_COMPRESSED) :]
    return zlib.decompress(body) if n & _COMPRESSED else body


class LmdbEventLog(EventLog):
    """EventLog on LMDB; appends are idempotent through the `keys` index."""

    def __init__(self, env: _Env) -> None:
        self._env = env
        self._db = env.db

    def append(
        self, stream: Stream, loop: str, entries: Sequence[Entry], subjects: SubjectChanges | None = None
    ) -> list[Appended]:
        prefix = _prefix(stream, loop)
        if not entries:
            return []
        compress = stream in _COMPRESSED_STREAMS
        rows = []  # (key, stored value, data), encoded here rather than on the writer thread
        for e in entries:
            key = None if e.key is None else _index_key(prefix, e.key, self._env.max_key_size)
            rows.append((key, _encode_entry(key, e.data, compress), e.data))
        return self._env.write(lambda txn: self._append_changing(txn, prefix, rows, entries, subjects))

    def _append_changing(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        rows: list[tuple[bytes | None, bytes, bytes]],
        entries: Sequence[Entry],
        subjects: SubjectChanges | None,
    ) -> list[Appended]:
        appended = self._append(txn, prefix, rows)
        for changes in created_changes(entries, appended, subjects):
            _change_subjects(txn, self._db["subjects"], changes)
        return appended

    def _append(
        self, txn: lmdb.Transaction, prefix: bytes, rows: list[tuple[bytes | None, bytes, bytes]]
    ) -> list[Appended]:
        events, keys = self._db["events"], self._db["keys"]
        seq = _u64(txn.get(prefix, db=self._db["seqs"]))
        out = []
        for key, stored, data in rows:
            if key is not None:
                found = txn.get(prefix + key, db=keys)
                if found is not None:
                    value = txn.get(prefix + found, db=events)
                    out.append(Appended(_u64(found), False, _entry_data(value)))
                    continue
                txn.put(prefix + key, _U64.pack(seq + 1), db=keys)
            seq += 1
            txn.put(prefix + _U64.pack(seq), stored, db=events)
            out.append(Appended(seq, True, data))
        txn.put(prefix, _U64.pack(seq), db=self._db["seqs"])
        return out

    def get(self, stream: Stream, loop: str, key: str) -> bytes | None:
        prefix = _prefix(stream, loop)
        with self._env.read() as txn:
            seq = txn.get(prefix + _index_key(prefix, key, self._env.max_key_size), db=self._db["keys"])
            value = None if seq is None else txn.get(prefix + seq, db=self._db["events"])
        return None if value is None else _entry_data(value)

    def read(self, stream: Stream, loop: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        prefix = _prefix(stream, loop)
        out: list[tuple[int, bytes]] = []
        if limit <= 0:
            return out
        with self._env.read() as txn:
            cur = txn.cursor(self._db["events"])
            if not cur.set_range(prefix + _U64.pack(max(after_seq, 0) + 1)):
                return out
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                out.append((_u64(k[len(prefix) :]), _entry_data(v)))
                if len(out) == limit:
                    break
        return out

    def last_seq(self, stream: Stream, loop: str) -> int:
        with self._env.read() as txn:
            return _u64(txn.get(_prefix(stream, loop), db=self._db["seqs"]))

    def trim(self, stream: Stream, loop: str, before_seq: int) -> int:
        """Delete entries with seq < before_seq, in transactions of up to 10,000 entries."""
        prefix = _prefix(stream, loop)
        end = prefix + _U64.pack(max(before_seq, 0))
        total = 0
        while (n := self._env.write(lambda txn: self._trim(txn, prefix, end), grows=False)) == _CHUNK:
            total += n
        return total + n

    def _trim(self, txn: lmdb.Transaction, prefix: bytes, end: bytes) -> int:
        cur = txn.cursor(self._db["events"])
        n = 0
        if cur.set_range(prefix):
            while n < _CHUNK and cur.key().startswith(prefix) and cur.key() < end:
                key = _entry_key(cur.value())
                if key is not None:
                    txn.delete(prefix + key, db=self._db["keys"])
                cur.delete()
                n += 1
        return n

    def get_cursor(self, name: str) -> bytes | None:
        return self._env.get(name.encode(), self._db["cursors"])

    def set_cursor(self, name: str, data: bytes) -> None:
        """Save a consumer's position, also when the store is full: cursors are few and small, so they may use
        the reserve, and retention can then save the bounds it needs to free space."""
        self._env.write(lambda txn: txn.put(name.encode(), data, db=self._db["cursors"]), grows=False)

    def delete_cursor(self, name: str) -> None:
        self._env.write(lambda txn: txn.delete(name.encode(), db=self._db["cursors"]), grows=False)

    def drop_loop(self, loop: str) -> None:
        """Delete the loop's keys, entries, counters and cursors, in that order and in
        transactions of up to 10,000 records; call again to finish a drop that was interrupted."""
        targets = [(self._db[name], f"{loop}\0".encode()) for name in ("keys", "events", "seqs")]
        targets.append((self._db["cursors"], cursor_prefix(loop).encode()))

        def drop_some(txn: lmdb.Transaction) -> int:
            for db, prefix in targets:
                if n := _delete_prefix(txn, db, prefix, _CHUNK):
                    return n
            return 0

        while self._env.write(drop_some, grows=False):
            pass


def _model_key(loop: str, version: int) -> bytes:
    return loop.encode() + b"\0" + _U64.pack(version)


class LmdbModelStore(ModelStore):
    """ModelStore on LMDB; a version number is never reused, even after prune or drop_loop."""

    def __init__(self, env: _Env) -> None:
        self._env = env
        self._db = env.db

    def _live(self, txn: lmdb.Transaction, loop: str) -> LiveRecord:
        return LiveRecord.decode(txn.get(loop.encode(), db=self._db["live"]))

    def publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes = b"", if_live: int | None = None
    ) -> StoredModel:
        def op(txn: lmdb.Transaction) -> StoredModel:
            current = self._live(txn, loop)
            current.check(loop, if_live)
            record = current.reserved().published()
            m = StoredModel(loop, record.live, spec, data, learned_seq, time.time(), state)
            txn.put(_model_key(loop, m.version), encode_model(m), db=self._db["models"])
            txn.put(loop.encode(), record.encode(), db=self._db["live"])
            return m

        return self._env.write(op)

    def live(self, loop: str) -> StoredModel | None:
        with self._env.read() as txn:
            version = self._live(txn, loop).live
            raw = txn.get(_model_key(loop, version), db=self._db["models"]) if version else None
        return None if raw is None else decode_model(loop, version, raw)

    def live_version(self, loop: str) -> int:
        with self._env.read() as txn:
            return self._live(txn, loop).live

    def get(self, loop: str, version: int) -> StoredModel | None:
        if version <= 0:
            return None
        with self._env.read() as txn:
            raw = txn.get(_model_key(loop, version), db=self._db["models"])
        return None if raw is None else decode_model(loop, version, raw)

    def _versions(self, txn: lmdb.Transaction, loop: str) -> list[int]:
        prefix = loop.encode() + b"\0"
        cur = txn.cursor(self._db["models"])
        out = []
        if cur.set_range(prefix):
            for k in cur.iternext(values=False):
                if not k.startswith(prefix):
                    break
                out.append(_u64(k[len(prefix) :]))
        return out

    def versions(self, loop: str) -> list[int]:
        with self._env.read() as txn:
            return self._versions(txn, loop)

    def prune(self, loop: str, keep: int) -> None:
        def op(txn: lmdb.Transaction) -> None:
            for v in prune_selection(self._versions(txn, loop), keep, self._live(txn, loop).live):
                txn.delete(_model_key(loop, v), db=self._db["models"])

        self._env.write(op, grows=False)

    def drop_loop(self, loop: str) -> None:
        """Delete every version; the highest version number is kept so none is reused."""

        def op(txn: lmdb.Transaction) -> None:
            record = self._live(txn, loop)
            if record.high:
                txn.put(loop.encode(), record.dropped().encode(), db=self._db["live"])
            for v in self._versions(txn, loop):
                txn.delete(_model_key(loop, v), db=self._db["models"])

        self._env.write(op, grows=False)


class LmdbConfigStore(ConfigStore):
    """ConfigStore on LMDB; the generation counter is stored, so other processes see changes."""

    def __init__(self, env: _Env) -> None:
        self._env = env
        self._db = env.db["configs"]
        self._meta = env.db["meta"]

    def _bump(self, txn: lmdb.Transaction) -> None:
        txn.put(_GENERATION, _U64.pack(_u64(txn.get(_GENERATION, db=self._meta)) + 1), db=self._meta)

    def create(self, name: str, data: bytes) -> bool:
        def op(txn: lmdb.Transaction) -> bool:
            created = txn.put(name.encode(), data, overwrite=False, db=self._db)
            if created:
                self._bump(txn)
            return created

        return self._env.write(op)

    def put(self, name: str, data: bytes) -> None:
        """Replace an existing loop's config; KeyError when there is none."""

        def op(txn: lmdb.Transaction) -> None:
            if txn.get(name.encode(), db=self._db) is None:
                raise KeyError(name)
            txn.put(name.encode(), data, db=self._db)
            self._bump(txn)

        self._env.write(op)

    def get(self, name: str) -> bytes | None:
        return self._env.get(name.encode(), self._db)

    def list(self) -> dict[str, bytes]:
        with self._env.read() as txn:
            return {k.decode(): v for k, v in txn.cursor(self._db)}

    def delete(self, name: str) -> bool:
        def op(txn: lmdb.Transaction) -> bool:
            deleted = txn.delete(name.encode(), db=self._db)
            if deleted:
                self._bump(txn)
            return deleted

        return self._env.write(op, grows=False)

    def generation(self) -> int:
        with self._env.read() as txn:
            return _u64(txn.get(_GENERATION, db=self._meta))


class LmdbLeases(Leases):
    """Leases on LMDB: a record per name, read and written in one write transaction."""

    def __init__(self, env: _Env) -> None:
        self._env = env
        self._meta = env.db["meta"]

    def acquire(self, name: str, holder: str, ttl_seconds: float, now: float) -> bool:
        """Take or renew the lease; works when the store is full too (lease records are few and small)."""

        def op(txn: lmdb.Transaction) -> bool:
            raw = txn.get(_lease_key(name), db=self._meta)
            lease = take_lease(None if raw is None else Lease.decode(raw), holder, ttl_seconds, now)
            if lease is not None:
                txn.put(_lease_key(name), lease.encode(), db=self._meta)
            return lease is not None

        return self._env.write(op, grows=False)

    def release(self, name: str, holder: str) -> None:
        def op(txn: lmdb.Transaction) -> None:
            raw = txn.get(_lease_key(name), db=self._meta)
            if raw is not None and Lease.decode(raw).holder == holder:
                txn.delete(_lease_key(name), db=self._meta)

        self._env.write(op, grows=False)


def _change_subjects(txn: lmdb.Transaction, db: lmdb._Database, changes: SubjectChanges) -> None:
    for subject, change in changes.items():
        key = subject.encode()
        data = change(txn.get(key, db=db))
        if data is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, data, db=db)


class LmdbSubjectStore(SubjectStore):
    """Subject records in their own database, each change read and written in one write transaction."""

    def __init__(self, env: _Env) -> None:
        self._env = env
        self._db = env.db["subjects"]
        self._meta = env.db["meta"]

    def get(self, subject: str) -> bytes | None:
        return self._env.get(subject.encode(), self._db)

    def update(self, changes: SubjectChanges) -> None:
        """All the changes in one transaction."""
        if changes:
            self._env.write(lambda txn: _change_subjects(txn, self._db, changes))

    def sweep(self, change: Callable[[bytes], bytes | None]) -> int:
        """Change records in transactions of up to 10,000, resuming after the last key of the previous one."""
        after, deleted = b"", 0
        while True:
            done, more, after = self._env.write(lambda txn, start=after: self._sweep(txn, start, change), grows=False)
            deleted += done
            if not more:
                return deleted

    def _sweep(
        self, txn: lmdb.Transaction, start: bytes, change: Callable[[bytes], bytes | None]
    ) -> tuple[int, bool, bytes]:
        cur = txn.cursor(self._db)
        deleted, seen = 0, 0
        found = cur.set_range(start + b"\0") if start else cur.first()
        while found:
            if seen == _CHUNK:
                return deleted, True, start
            start, value = cur.key(), cur.value()
            data = change(value)
            seen += 1
            if data is None:
                deleted += 1
                cur.delete()  # moves to the next record, if any
                found = bool(cur.key())
                continue
            if data != value:
                cur.put(start, data)
            found = cur.next()
        return deleted, False, start

    def get_policy(self) -> bytes | None:
        return self._env.get(_CONTACT_POLICY, self._meta)

    def update_policy(self, change: Callable[[bytes | None], bytes]) -> bytes:
        def op(txn: lmdb.Transaction) -> bytes:
            data = change(txn.get(_CONTACT_POLICY, db=self._meta))
            txn.put(_CONTACT_POLICY, data, db=self._meta)
            return data

        return self._env.write(op)


def _lease_key(name: str) -> bytes:
    return b"lease\0" + name.encode()


def open_lmdb(
    path: str | os.PathLike[str],
    *,
    map_size: int = DEFAULT_MAP_SIZE,
    max_readers: int = 512,
    max_batch: int = 1024,
) -> Store:
    """Open (creating it if missing) the LMDB store in directory `path`.

    `map_size` bounds the data file (LMDB reserves that much address space; the file grows as
    needed); `max_readers` bounds concurrent read transactions over all processes; `max_batch`
    bounds the writes grouped into one commit. The store's methods may be called from any thread;
    a process opens a directory once (a second open raises lmdb.Error) and shares that Store.
    """
    env = _Env(os.fspath(path), map_size, max_readers, max_batch)
    return Store(
        LmdbEventLog(env),
        LmdbModelStore(env),
        LmdbConfigStore(env),
        LmdbLeases(env),
        env.close,
        env.used_bytes,
        LmdbSubjectStore(env),
    )
