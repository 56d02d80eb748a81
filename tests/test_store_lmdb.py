"""The LMDB store on real LMDB environments in tmp_path: what only LMDB does (the contract of every backend
is in test_store_contract.py)."""

from __future__ import annotations

import multiprocessing
import os
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import pytest

from nextbest.server.store import Entry, Store, StoreFullError, Stream, open_store
from nextbest.server.store.lmdb import open_lmdb

D = Stream.DECISIONS
MAP = 64 << 20


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_lmdb(tmp_path / "db", map_size=MAP) as s:
        yield s


def _in_one_batch(
    store: Store, calls: list[Callable[[], object]], while_held: Callable[[], None] | None = None
) -> list[object]:
    """Run `calls` on threads while the writer is held, so that one transaction takes them all
    (`while_held` runs just before the writer is let go); return each call's result or exception."""
    env = store.log._env
    held, release = threading.Event(), threading.Event()
    blocker = threading.Thread(target=env.write, args=(lambda txn: held.set() or release.wait(),))
    blocker.start()
    held.wait()
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    while env._queue.qsize() < len(calls):
        time.sleep(0.001)
    if while_held:
        while_held()
    release.set()
    for t in [blocker, *threads]:
        t.join()
    return results


def test_a_new_store_is_private_to_its_owner(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, which left the store readable by everyone
    try:
        with open_store(str(tmp_path / "a" / "db")) as s:
            s.configs.create("x", b"1")
    finally:
        os.umask(previous)
    db = tmp_path / "a" / "db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o700
    files = sorted(db.iterdir())
    assert [f.name for f in files] == ["data.mdb", "lock.mdb"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_open_store_rejects_urls_of_other_schemes() -> None:
    with pytest.raises(ValueError, match="kafka://"):
        open_store("kafka://localhost:9092")


def test_group_commit_from_many_threads(tmp_path: Path) -> None:
    threads, per_thread = 8, 200
    acked: list[tuple[str, int, bool, bytes]] = []

    def work(t: int, s: Store) -> None:
        rng = random.Random(t)
        for i in range(per_thread):
            # half the keys are the thread's own, half are shared and race with the other threads
            key = f"t{t}-{i}" if i % 2 else f"shared-{rng.randrange(per_thread)}"
            r = s.log.append(D, "l", [Entry(key, f"{t}:{i}".encode())])[0]
            acked.append((key, r.seq, r.created, r.data))

    with open_lmdb(tmp_path / "db", map_size=MAP) as s:
        workers = [threading.Thread(target=work, args=(t, s)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert len(acked) == threads * per_thread
    keys = {key for key, *_ in acked}
    assert sum(created for _, _, created, _ in acked) == len(keys)  # each key created once
    with open_lmdb(tmp_path / "db", map_size=MAP) as s:
        entries = s.log.read(D, "l", 0, 10_000)
        assert [seq for seq, _ in entries] == list(range(1, len(keys) + 1))
        assert s.log.last_seq(D, "l") == len(keys)
        for key, seq, _, data in acked:
            assert s.log.get(D, "l", key) == data
            assert entries[seq - 1] == (seq, data)


def test_an_op_that_raises_leaves_the_rest_of_its_batch(store: Store) -> None:
    def half_done(txn: lmdb.Transaction) -> None:
        txn.put(b"half", b"done", db=store.log._env.db["meta"])
        raise RuntimeError("boom")

    results = _in_one_batch(
        store,
        [
            lambda: store.log.append(D, "l", [Entry("a", b"1")]),
            lambda: store.log._env.write(half_done),
            lambda: store.configs.put("missing", b""),
            lambda: store.log.append(D, "l", [Entry("b", b"2")]),
            lambda: store.configs.create("c", b"3"),
        ],
    )
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[2], KeyError)
    assert results[4] is True
    assert sorted(r[0].seq for r in (results[0], results[3])) == [1, 2]
    assert {store.log.get(D, "l", "a"), store.log.get(D, "l", "b")} == {b"1", b"2"}
    with store.log._env.read() as txn:
        assert txn.get(b"half", db=store.log._env.db["meta"]) is None
    assert store.configs.list() == {"c": b"3"}


class _FailingCommits:
    """An lmdb environment whose write transactions fail to commit with MapFullError."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env

    def __getattr__(self, name: str) -> object:
        return getattr(self.env, name)

    def begin(self, write: bool = False, parent: _FailingCommits | None = None) -> object:
        if parent is not None:
            return self.env.begin(write=write, parent=parent.env)
        return _FailingCommits(self.env.begin(write=True)) if write else self.env.begin()

    def commit(self) -> None:
        self.env.abort()
        raise lmdb.MapFullError("mdb_txn_commit: MDB_MAP_FULL (simulated)")


def test_a_failed_commit_fails_its_whole_batch(store: Store) -> None:
    env = store.log._env
    real = env.env
    store.log.append(D, "l", [Entry("old", b"0")])
    results = _in_one_batch(
        store,
        [
            lambda: store.log.append(D, "l", [Entry("a", b"1")]),
            lambda: store.configs.create("c", b"3"),
            lambda: store.log.trim(D, "l", 2),
        ],
        while_held=lambda: setattr(env, "env", _FailingCommits(real)),
    )
    env.env = real
    assert all(isinstance(r, StoreFullError) for r in results), results
    assert "full" in str(results[0])
    assert store.log.read(D, "l", 0, 10) == [(1, b"0")]
    assert store.log.last_seq(D, "l") == 1
    assert store.configs.generation() == 0
    assert store.log.append(D, "l", [Entry("a", b"1")])[0].seq == 2


def test_a_full_store_refuses_growth_until_space_is_freed(tmp_path: Path) -> None:
    rng = random.Random(7)
    with open_lmdb(tmp_path / "db", map_size=1 << 20) as s:
        with pytest.raises(StoreFullError):  # larger than the map: LMDB itself runs out of room
            s.models.publish("l", "spec", rng.randbytes(2 << 20), 0)
        assert s.models.versions("l") == []
        appended = 0
        with pytest.raises(StoreFullError, match="map_size"):
            while True:
                s.log.append(D, "l", [Entry(f"k{appended + i}", rng.randbytes(1024)) for i in range(16)])
                appended += 16
        assert appended > 300
        assert s.log.last_seq(D, "l") == appended  # nothing of the refused append remains
        assert len(s.log.read(D, "l", 0, 10_000)) == appended
        assert s.log.get(D, "l", f"k{appended}") is None
        with pytest.raises(StoreFullError):
            s.configs.create("other", b"cfg")
        s.log.set_cursor("l/joiner", b"x")  # cursors may use the reserve: retention saves its bounds in one
        assert s.log.trim(D, "l", appended // 2) == appended // 2 - 1
        assert s.configs.create("l", b"cfg")
        s.log.append(D, "l", [Entry(f"k{appended}", b"small")])
        s.models.publish("l", "spec", b"small", 0)
    with open_lmdb(tmp_path / "db", map_size=1 << 20) as s:
        assert s.log.get(D, "l", f"k{appended}") == b"small"
        assert s.log.last_seq(D, "l") == appended + 1
        assert s.models.live_version("l") == 1  # the refused publish took no version


def _append_from_child(path: str, n: int, ready, go) -> None:
    with open_lmdb(path, map_size=MAP) as s:
        ready.set()
        go.wait()
        seqs = [s.log.append(D, "l", [Entry(f"child-{i}", b"c%d" % i)])[0].seq for i in range(n)]
    assert seqs == sorted(seqs)


def test_two_processes_append_to_one_directory(tmp_path: Path) -> None:
    path, n_child, threads, per_thread = str(tmp_path / "db"), 200, 4, 50
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_append_from_child, args=(path, n_child, ready, go))
    child.start()
    with open_lmdb(path, map_size=MAP) as s:
        assert ready.wait(60)
        go.set()

        def work(t: int) -> None:
            for i in range(per_thread):
                s.log.append(D, "l", [Entry(f"parent-{t}-{i}", b"p")])

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        child.join(60)
        assert child.exitcode == 0
        total = n_child + threads * per_thread
        assert [seq for seq, _ in s.log.read(D, "l", 0, 10_000)] == list(range(1, total + 1))
        assert all(s.log.get(D, "l", f"child-{i}") == b"c%d" % i for i in range(n_child))
        assert all(s.log.get(D, "l", f"parent-{t}-{i}") == b"p" for t in range(threads) for i in range(per_thread))


def stored_values(store: Store) -> list[bytes]:
    env = store.log._env
    with env.read() as txn:
        return [v for _, v in txn.cursor(env.db["events"])]


def test_long_decisions_are_stored_compressed_and_read_back_as_appended(store: Store) -> None:
    rng = random.Random(3)
    words = [f"feature_{i}" for i in range(40)]
    long = " ".join(rng.choice(words) for _ in range(600)).encode()  # ~6 KB, compressible like a record
    noise = rng.randbytes(4000)  # longer when compressed: stored as it is
    short = b"reward"
    entries = [Entry("long", long), Entry(None, long), Entry("noise", noise), Entry(None, short)]
    appended = store.log.append(D, "l", entries)
    assert [a.data for a in appended] == [long, long, noise, short]
    assert [data for _, data in store.log.read(D, "l", 0, 10)] == [long, long, noise, short]
    assert store.log.get(D, "l", "long") == long
    again = store.log.append(D, "l", [Entry("long", b"other")])[0]
    assert (again.created, again.seq, again.data) == (False, 1, long)
    stored = stored_values(store)
    assert len(stored[0]) < len(long) / 3 and len(stored[1]) < len(long) / 3
    assert len(stored[2]) == 2 + len("noise") + len(noise)
    store.log.append(Stream.JOINED, "l", [Entry("long", long)])  # joined events are stored as they are
    assert len(stored_values(store)[-1]) == 2 + len("long") + len(long)
    assert store.log.trim(D, "l", 3) == 2  # trim finds the keys of compressed entries
    assert store.log.get(D, "l", "long") is None
    assert store.log.append(D, "l", [Entry("long", long)])[0].created


def test_entries_written_uncompressed_read_back(tmp_path: Path) -> None:
    """Stores written before entries were compressed (header: plain key length, or -1) stay readable."""
    path = tmp_path / "db"
    with open_lmdb(path, map_size=MAP) as s:
        s.log.append(D, "l", [Entry("k", b"x")])
        env = s.log._env
        prefix = b"l\0" + D.value.encode() + b"\0"
        data = b"y" * 5000
        env.write(
            lambda txn: txn.put(
                prefix + (2).to_bytes(8, "big"), (1).to_bytes(2, "big") + b"j" + data, db=env.db["events"]
            )
        )
        env.write(lambda txn: txn.put(prefix + b"j", (2).to_bytes(8, "big"), db=env.db["keys"]))
        env.write(lambda txn: txn.put(prefix + (3).to_bytes(8, "big"), b"\xff\xff" + data, db=env.db["events"]))
        assert [d for _, d in s.log.read(D, "l", 0, 10)] == [b"x", data, data]
        assert s.log.get(D, "l", "j") == data
