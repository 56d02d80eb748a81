"""The store interfaces in this process's memory: for unit tests of the joiner, learner and trainer with a fake
clock, and for trying things out. Nothing survives the process. `open_memory(backend)` opens another view
of the same data, as reopening an LMDB directory does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

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
    Stream,
    SubjectChanges,
    SubjectStore,
    created_changes,
    cursor_prefix,
    prune_selection,
    take_lease,
)


@dataclass
class _Stream:
    entries: dict[int, tuple[str | None, bytes]] = field(default_factory=dict)  # seq → (key, data), in order
    keys: dict[str, int] = field(default_factory=dict)
    last: int = 0


@dataclass
class _Models:
    versions: dict[int, StoredModel] = field(default_factory=dict)
    record: LiveRecord = LiveRecord()


@dataclass
class MemoryBackend:
    """Everything a memory store holds; shared by the stores opened on it."""

    clock: Callable[[], float] = time.time  # the models' creation times
    lock: threading.RLock = field(default_factory=threading.RLock)
    streams: dict[tuple[Stream, str], _Stream] = field(default_factory=dict)
    cursors: dict[str, bytes] = field(default_factory=dict)
    models: dict[str, _Models] = field(default_factory=dict)
    configs: dict[str, bytes] = field(default_factory=dict)
    generation: int = 0
    leases: dict[str, Lease] = field(default_factory=dict)
    subjects: dict[str, bytes] = field(default_factory=dict)
    contact_policy: bytes | None = None

    def used_bytes(self) -> int:
        with self.lock:
            events = sum(len(d) for s in self.streams.values() for _, d in s.entries.values())
            models = sum(len(m.data) + len(m.state) for ms in self.models.values() for m in ms.versions.values())
            records = sum(map(len, self.configs.values())) + sum(map(len, self.cursors.values()))
            return events + models + records + sum(map(len, self.subjects.values()))


class _Handle:
    """One opened store: closing it makes its parts refuse every call, as a closed LMDB store does."""

    closed = False


class _Part:
    def __init__(self, backend: MemoryBackend, handle: _Handle) -> None:
        self._b = backend
        self._handle = handle

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._handle.closed:
            raise RuntimeError("the memory store is closed")
        with self._b.lock:
            yield


class MemoryEventLog(_Part, EventLog):
    def _stream(self, stream: Stream, loop: str) -> _Stream:
        return self._b.streams.setdefault((stream, loop), _Stream())

    def append(
        self, stream: Stream, loop: str, entries: Sequence[Entry], subjects: SubjectChanges | None = None
    ) -> list[Appended]:
        with self._locked():
            s = self._stream(stream, loop)
            out = []
            for e in entries:
                if e.key is not None and e.key in s.keys:
                    seq = s.keys[e.key]
                    out.append(Appended(seq, False, s.entries[seq][1]))
                    continue
                s.last += 1
                s.entries[s.last] = (e.key, e.data)
                if e.key is not None:
                    s.keys[e.key] = s.last
                out.append(Appended(s.last, True, e.data))
            for changes in created_changes(entries, out, subjects):
                _change_subjects(self._b, changes)
            return out

    def get(self, stream: Stream, loop: str, key: str) -> bytes | None:
        with self._locked():
            s = self._b.streams.get((stream, loop))
            seq = s.keys.get(key) if s else None
            return None if seq is None else s.entries[seq][1]

    def read(self, stream: Stream, loop: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        with self._locked():
            s = self._b.streams.get((stream, loop))
            if s is None or limit <= 0:
                return []
            out = []
            for seq in range(max(after_seq, 0) + 1, s.last + 1):
                if seq in s.entries:
                    out.append((seq, s.entries[seq][1]))
                    if len(out) == limit:
                        break
            return out

    def last_seq(self, stream: Stream, loop: str) -> int:
        with self._locked():
            s = self._b.streams.get((stream, loop))
            return s.last if s else 0

    def trim(self, stream: Stream, loop: str, before_seq: int) -> int:
        with self._locked():
            s = self._b.streams.get((stream, loop))
            if s is None:
                return 0
            gone = [seq for seq in s.entries if seq < before_seq]
            for seq in gone:
                key, _ = s.entries.pop(seq)
                if key is not None:
                    del s.keys[key]
            return len(gone)

    def get_cursor(self, name: str) -> bytes | None:
        with self._locked():
            return self._b.cursors.get(name)

    def set_cursor(self, name: str, data: bytes) -> None:
        with self._locked():
            self._b.cursors[name] = bytes(data)

    def delete_cursor(self, name: str) -> None:
        with self._locked():
            self._b.cursors.pop(name, None)

    def drop_loop(self, loop: str) -> None:
        with self._locked():
            for key in [k for k in self._b.streams if k[1] == loop]:
                del self._b.streams[key]
            for name in [n for n in self._b.cursors if n.startswith(cursor_prefix(loop))]:
                del self._b.cursors[name]


class MemoryModelStore(_Part, ModelStore):
    """A version number is never reused, even after prune or drop_loop."""

    def publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes = b"", if_live: int | None = None
    ) -> StoredModel:
        with self._locked():
            models = self._b.models.setdefault(loop, _Models())
            models.record.check(loop, if_live)
            record = models.record.reserved().published()
            m = StoredModel(loop, record.live, spec, bytes(data), learned_seq, self._b.clock(), bytes(state))
            models.versions[m.version] = m
            models.record = record
            return m

    def live(self, loop: str) -> StoredModel | None:
        with self._locked():
            models = self._b.models.get(loop)
            return models.versions.get(models.record.live) if models else None

    def live_version(self, loop: str) -> int:
        with self._locked():
            models = self._b.models.get(loop)
            return models.record.live if models else 0

    def get(self, loop: str, version: int) -> StoredModel | None:
        with self._locked():
            models = self._b.models.get(loop)
            return models.versions.get(version) if models else None

    def versions(self, loop: str) -> list[int]:
        with self._locked():
            models = self._b.models.get(loop)
            return sorted(models.versions) if models else []

    def prune(self, loop: str, keep: int) -> None:
        with self._locked():
            models = self._b.models.get(loop)
            if models is None:
                return
            for v in prune_selection(sorted(models.versions), keep, models.record.live):
                del models.versions[v]

    def drop_loop(self, loop: str) -> None:
        with self._locked():
            models = self._b.models.get(loop)
            if models is not None:
                models.versions.clear()
                models.record = models.record.dropped()


class MemoryConfigStore(_Part, ConfigStore):
    def create(self, name: str, data: bytes) -> bool:
        with self._locked():
            if name in self._b.configs:
                return False
            self._b.configs[name] = bytes(data)
            self._b.generation += 1
            return True

    def put(self, name: str, data: bytes) -> None:
        with self._locked():
            if name not in self._b.configs:
                raise KeyError(name)
            self._b.configs[name] = bytes(data)
            self._b.generation += 1

    def get(self, name: str) -> bytes | None:
        with self._locked():
            return self._b.configs.get(name)

    def list(self) -> dict[str, bytes]:
        with self._locked():
            return dict(self._b.configs)

    def delete(self, name: str) -> bool:
        with self._locked():
            if self._b.configs.pop(name, None) is None:
                return False
            self._b.generation += 1
            return True

    def generation(self) -> int:
        with self._locked():
            return self._b.generation


class MemoryLeases(_Part, Leases):
    def acquire(self, name: str, holder: str, ttl_seconds: float, now: float) -> bool:
        with self._locked():
            lease = take_lease(self._b.leases.get(name), holder, ttl_seconds, now)
            if lease is not None:
                self._b.leases[name] = lease
            return lease is not None

    def release(self, name: str, holder: str) -> None:
        with self._locked():
            current = self._b.leases.get(name)
            if current is not None and current.holder == holder:
                del self._b.leases[name]


def _change_subjects(backend: MemoryBackend, changes: SubjectChanges) -> None:
    for subject, change in changes.items():
        data = change(backend.subjects.get(subject))
        if data is None:
            backend.subjects.pop(subject, None)
        else:
            backend.subjects[subject] = bytes(data)


class MemorySubjectStore(_Part, SubjectStore):
    def get(self, subject: str) -> bytes | None:
        with self._locked():
            return self._b.subjects.get(subject)

    def update(self, changes: SubjectChanges) -> None:
        with self._locked():
            _change_subjects(self._b, changes)

    def sweep(self, change: Callable[[bytes], bytes | None]) -> int:
        with self._locked():
            changed = {subject: change(data) for subject, data in self._b.subjects.items()}
            _change_subjects(self._b, {subject: lambda _, data=data: data for subject, data in changed.items()})
            return sum(data is None for data in changed.values())

    def get_policy(self) -> bytes | None:
        with self._locked():
            return self._b.contact_policy

    def update_policy(self, change: Callable[[bytes | None], bytes]) -> bytes:
        with self._locked():
            self._b.contact_policy = bytes(change(self._b.contact_policy))
            return self._b.contact_policy


def open_memory(backend: MemoryBackend | None = None, *, clock: Callable[[], float] = time.time) -> Store:
    """A store over `backend` (a new, empty one when None, whose models are stamped by `clock`)."""
    b = backend if backend is not None else MemoryBackend(clock=clock)
    handle = _Handle()

    def close() -> None:
        handle.closed = True

    return Store(
        log=MemoryEventLog(b, handle),
        models=MemoryModelStore(b, handle),
        configs=MemoryConfigStore(b, handle),
        leases=MemoryLeases(b, handle),
        close=close,
        used_bytes=b.used_bytes,
        subjects=MemorySubjectStore(b, handle),
    )
