"""Narrow storage interfaces: an event log, a model store and a loop-config store.

The server, joiner and learner see only these (and leases, which keep one trainer per loop).
`server.store.lmdb` implements them on one machine, `server.store.nats` on a NATS JetStream cluster,
`server.store.memory` in the process's memory. Every write returns only once it is durable.

The records and rules every backend shares live here too: the live-version record, the lease record and its
expiry, which model versions a prune deletes, and the names of cursors.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import socket
import struct
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class StoreFullError(Exception):
    """The store has no room left (map or disk full); nothing of the failed write remains."""


class StoreUnavailableError(Exception):
    """The store cannot be reached now (e.g. a cluster electing a leader); the same call may succeed later."""


class PublishConflictError(Exception):
    """A conditional publish found another live version than the one it expected."""


class Stream(enum.Enum):
    """The append-only streams of the event log, each kept per loop."""

    DECISIONS = "decisions"  # DecisionRecord, keyed by event id
    REWARDS = "rewards"  # RewardRecord (rewards and activations), keyed by idempotency key or unkeyed
    JOINED = "joined"  # JoinedEvent, keyed by event id


def cursor_name(loop: str, consumer: str) -> str:
    """The cursor of a consumer (e.g. "joiner", "learner") of `loop`: under `cursor_prefix(loop)`, so that
    `EventLog.drop_loop` deletes it with the loop."""
    return cursor_prefix(loop) + consumer


def cursor_prefix(loop: str) -> str:
    return f"{loop}/"


SubjectChanges = Mapping[str, Callable[[bytes | None], bytes | None]]


@dataclass(frozen=True)
class Entry:
    """An entry to append: `key` makes the append idempotent (None: always appended). `subjects`: subject records
    to change when this entry is created (as the append's own `subjects` are; RankBatch records each decision's
    contact this way)."""

    key: str | None
    data: bytes
    subjects: SubjectChanges | None = None


@dataclass(frozen=True)
class Appended:
    """The outcome of appending one entry.

    `created` is False when an entry with the same key was already in the
    stream; `seq` and `data` are then those of the existing entry.
    """

    seq: int
    created: bool
    data: bytes


def created_changes(
    entries: Sequence[Entry], appended: Sequence[Appended], subjects: SubjectChanges | None
) -> list[SubjectChanges]:
    """The subject changes an append makes, in order: its own when it created an entry, then each created entry's."""
    changes = [subjects] if subjects and any(a.created for a in appended) else []
    changes.extend(e.subjects for e, a in zip(entries, appended, strict=True) if e.subjects and a.created)
    return changes


class EventLog(ABC):
    """Streams of records per (stream, loop), each numbered 1, 2, 3... in append order."""

    @abstractmethod
    def append(
        self, stream: Stream, loop: str, entries: Sequence[Entry], subjects: SubjectChanges | None = None
    ) -> list[Appended]:
        """Append entries in order; durable when this returns. Keys are unique per (stream, loop).

        `subjects`: subject records to change (as `SubjectStore.update` does) when an entry is created, none when
        every entry was there already: in the same transaction on LMDB and in memory, right after the entries on
        NATS (Rank records a contact with its decision this way).
        """

    @abstractmethod
    def get(self, stream: Stream, loop: str, key: str) -> bytes | None:
        """The entry appended under `key`, or None."""

    @abstractmethod
    def read(self, stream: Stream, loop: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` entries with seq > after_seq, in order."""

    @abstractmethod
    def last_seq(self, stream: Stream, loop: str) -> int:
        """The seq of the last entry ever appended (0 when none); trimming does not lower it."""

    @abstractmethod
    def trim(self, stream: Stream, loop: str, before_seq: int) -> int:
        """Delete entries with seq < before_seq (and their keys); return how many were deleted."""

    @abstractmethod
    def get_cursor(self, name: str) -> bytes | None:
        """A consumer's durable position or state, saved by `set_cursor`."""

    @abstractmethod
    def set_cursor(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def delete_cursor(self, name: str) -> None:
        """Delete a cursor (nothing happens when there is none)."""

    @abstractmethod
    def drop_loop(self, loop: str) -> None:
        """Delete every stream entry, key and cursor of `loop` (cursor names start with `loop/`)."""


@dataclass(frozen=True)
class StoredModel:
    """A published model: the learner's checkpoint.

    `learned_seq` is the seq of the last joined event the model has learned
    from; it is stored with the model bytes in the same write, so a learner
    that restarts from this model resumes right after it.
    """

    loop: str
    version: int
    spec: str
    data: bytes
    learned_seq: int
    created_at: float
    state: bytes = b""  # learner bookkeeping kept with the checkpoint


_MODEL = struct.Struct(">qdII")  # learned_seq, created_at, len(spec), len(state)


def encode_model(m: StoredModel) -> bytes:
    """A model as one value (header, spec, learner state, model bytes), as the backends store it."""
    spec = m.spec.encode()
    return _MODEL.pack(m.learned_seq, m.created_at, len(spec), len(m.state)) + spec + m.state + m.data


def decode_model(loop: str, version: int, raw: bytes) -> StoredModel:
    learned_seq, created_at, n_spec, n_state = _MODEL.unpack_from(raw)
    spec_end = _MODEL.size + n_spec
    state_end = spec_end + n_state
    spec = raw[_MODEL.size : spec_end].decode()
    return StoredModel(loop, version, spec, raw[state_end:], learned_seq, created_at, raw[spec_end:state_end])


@dataclass(frozen=True)
class LiveRecord:
    """A loop's live version (0: none) and the highest version ever published, which is never lowered: a version
    number is never reused, even after prune or drop_loop."""

    live: int = 0
    high: int = 0

    _FORMAT: ClassVar = struct.Struct(">QQ")

    @classmethod
    def decode(cls, raw: bytes | None) -> LiveRecord:
        return cls(*cls._FORMAT.unpack(raw)) if raw else cls()

    def encode(self) -> bytes:
        return self._FORMAT.pack(self.live, self.high)

    def check(self, loop: str, if_live: int | None) -> None:
        """PublishConflictError unless a publish conditional on `if_live` (None: unconditional) may go ahead."""
        if if_live is not None and self.live != if_live:
            raise PublishConflictError(f"loop {loop}: live model is version {self.live}, not {if_live}")

    def reserved(self) -> LiveRecord:
        """The next version number taken (as `high`), the live version unchanged."""
        return LiveRecord(self.live, self.high + 1)

    def published(self) -> LiveRecord:
        """The highest (reserved) version made live."""
        return LiveRecord(self.high, self.high)

    def dropped(self) -> LiveRecord:
        return LiveRecord(0, self.high)


def prune_selection(versions: Sequence[int], keep: int, live: int) -> list[int]:
    """The versions (oldest first) that keeping the newest `keep` deletes: never the live one."""
    return [v for v in versions[: max(len(versions) - max(keep, 0), 0)] if v != live]


class ModelStore(ABC):
    """Versioned models per loop; the newest published one is live."""

    @abstractmethod
    def publish(
        self, loop: str, spec: str, data: bytes, learned_seq: int, state: bytes = b"", if_live: int | None = None
    ) -> StoredModel:
        """Store a new version (last version + 1) and make it live, in one durable write.

        With `if_live`, only when the live version is still `if_live` (0: none);
        otherwise PublishConflictError and nothing is written.
        """

    @abstractmethod
    def live(self, loop: str) -> StoredModel | None:
        """The live model, or None before the first publish."""

    @abstractmethod
    def live_version(self, loop: str) -> int:
        """The live model's version (0 when none); cheap enough to poll."""

    @abstractmethod
    def get(self, loop: str, version: int) -> StoredModel | None: ...

    @abstractmethod
    def versions(self, loop: str) -> list[int]:
        """Versions still kept, oldest first."""

    @abstractmethod
    def prune(self, loop: str, keep: int) -> None:
        """Keep only the newest `keep` versions (the live one always stays)."""

    @abstractmethod
    def drop_loop(self, loop: str) -> None: ...


class ConfigStore(ABC):
    """Loop configurations (serialized LoopConfig) by loop name."""

    @abstractmethod
    def create(self, name: str, data: bytes) -> bool:
        """Store a new loop's config; False (and nothing written) when it exists."""

    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Replace an existing loop's config; KeyError (and nothing written) when there is none."""

    @abstractmethod
    def get(self, name: str) -> bytes | None: ...

    @abstractmethod
    def list(self) -> dict[str, bytes]:
        """Every loop's config, by name."""

    @abstractmethod
    def delete(self, name: str) -> bool:
        """False when there was no such loop."""

    @abstractmethod
    def generation(self) -> int:
        """A counter raised by every create, put and delete; cheap enough to poll."""


class SubjectStore(ABC):
    """Per-subject records by subject id (a customer's contact history, across every loop of the store) and the
    store's one contact policy."""

    @abstractmethod
    def get(self, subject: str) -> bytes | None:
        """The subject's record, or None."""

    @abstractmethod
    def update(self, changes: SubjectChanges) -> None:
        """Replace each subject's record by `change(current)` (None deletes it), each atomically, all durably when
        this returns. A change may run more than once (when another writer got there first): it must depend on
        its argument only."""

    @abstractmethod
    def sweep(self, change: Callable[[bytes], bytes | None]) -> int:
        """Apply `change` to every record, as `update` does; return how many records it deleted."""

    @abstractmethod
    def get_policy(self) -> bytes | None:
        """The stored contact policy (a serialized ContactPolicy), or None."""

    @abstractmethod
    def update_policy(self, change: Callable[[bytes | None], bytes]) -> bytes:
        """Replace the contact policy by `change(current)`, atomically and durably; return what was stored."""


@dataclass(frozen=True)
class Lease:
    """A lease record: who holds it until when, on the clock its acquirers pass (`Leases.acquire`'s `now`)."""

    holder: str
    expires: float

    @classmethod
    def decode(cls, raw: bytes) -> Lease:
        record = json.loads(raw)
        return cls(record["holder"], record["expires"])

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "expires": self.expires}).encode()


def take_lease(current: Lease | None, holder: str, ttl_seconds: float, now: float) -> Lease | None:
    """The record that gives `holder` the lease for `ttl_seconds` from `now`, or None when another holder has it,
    it has not expired and its holder may still be running."""
    if current is None or current.holder == holder or current.expires <= now or holder_is_gone(current.holder):
        return Lease(holder, now + ttl_seconds)
    return None


def process_holder() -> str:
    """A lease holder name for a holder in this process, `host:pid:start:random:table`: `table` names the process
    table the pid is in (this boot of this machine and its pid namespace: a container has its own), `start` when
    the process started (a later process given the same pid is told apart), and the random part holders in one
    process apart. `table` is empty where /proc cannot tell (the holder is then never judged gone)."""
    try:
        table, start = _process_table(), _process_start(os.getpid())
    except (OSError, ValueError, IndexError):
        table, start = "", ""
    return f"{socket.gethostname()}:{os.getpid()}:{start}:{uuid.uuid4().hex[:8]}:{table}"


def holder_is_gone(holder: str) -> bool:
    """True when `holder` (a `process_holder()` name) is a process of this process table that no longer runs, as
    after a crash: its lease need not be waited out. Holders elsewhere, and other names, are never judged gone."""
    parts = holder.split(":")
    if len(parts) != 5 or not parts[4] or not parts[1].isdigit():
        return False
    try:
        if parts[4] != _process_table():
            return False
        return _process_start(int(parts[1])) != parts[2]
    except FileNotFoundError:  # no such process
        return True
    except (OSError, ValueError, IndexError):  # cannot tell: keep the lease
        return False


def _process_table() -> str:
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return hashlib.blake2b(f"{boot}/{os.readlink('/proc/self/ns/pid')}".encode(), digest_size=8).hexdigest()


def _process_start(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat; its name may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rindex(b")") + 2 :].split()[19].decode()


class Leases(ABC):
    """Time-limited exclusive holds by name (e.g. one trainer per loop).

    Expiry follows the clock the callers pass as `now`: every acquirer of a name must use the same one (the
    wall clock across processes and machines, a fake clock in tests).
    """

    @abstractmethod
    def acquire(self, name: str, holder: str, ttl_seconds: float, now: float) -> bool:
        """Take or renew the lease `name` for `holder` until `now + ttl_seconds`; False when another holder has it
        and it has not expired at `now`."""

    @abstractmethod
    def release(self, name: str, holder: str) -> None:
        """Give the lease up (no-op unless `holder` has it)."""


@dataclass
class Store:
    """The stores a nextbest process works with."""

    log: EventLog
    models: ModelStore
    configs: ConfigStore
    leases: Leases
    close: Callable[[], None]  # releases the backend's resources
    used_bytes: Callable[[], int]  # space the stored data takes now
    subjects: SubjectStore
    # how another process opens the same store (`open_store(location, **options)`); set by `open_store`
    location: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
