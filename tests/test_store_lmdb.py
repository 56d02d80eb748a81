"""The LMDB store on real LMDB environments in tmp_path."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import pytest

import server.store.lmdb as lmdb_store
from server.store import Entry, Store, StoreFullError, Stream, open_store
from server.store.lmdb import open_lmdb

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


def test_append_is_idempotent_within_and_across_calls(store: Store) -> None:
    first = store.log.append(D, "l", [Entry("a", b"1"), Entry(None, b"2"), Entry("a", b"3"), Entry("b", b"4")])
    assert [(r.seq, r.created, r.data) for r in first] == [
        (1, True, b"1"),
        (2, True, b"2"),
        (1, False, b"1"),
        (3, True, b"4"),
    ]
    again = store.log.append(D, "l", [Entry("b", b"5"), Entry(None, b"2"), Entry("c", b"6")])
    assert [(r.seq, r.created, r.data) for r in again] == [(3, False, b"4"), (4, True, b"2"), (5, True, b"6")]
    assert store.log.get(D, "l", "a") == b"1"
    assert store.log.get(D, "l", "zzz") is None
    assert store.log.get(Stream.REWARDS, "l", "a") is None  # keys are per stream
    assert store.log.last_seq(D, "l") == 5
    assert store.log.append(D, "l", []) == []
    with pytest.raises(ValueError, match="too long"):
        store.log.append(D, "l", [Entry("k" * 600, b"")])


def test_read_pages_through_one_stream_of_one_loop(store: Store) -> None:
    rng = random.Random(1)
    payloads = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(25)]
    for i in range(0, 25, 5):
        store.log.append(D, "l", [Entry(None if j % 2 else f"k{j}", payloads[j]) for j in range(i, i + 5)])
    store.log.append(Stream.REWARDS, "l", [Entry(None, b"other stream")])
    store.log.append(D, "l2", [Entry(None, b"other loop")])
    pages, after = [], 0
    while page := store.log.read(D, "l", after, 10):
        pages.append(page)
        after = page[-1][0]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [e for p in pages for e in p] == list(enumerate(payloads, 1))
    assert store.log.read(D, "l", 25, 10) == []
    assert store.log.read(D, "l", 3, 0) == []
    assert store.log.read(Stream.REWARDS, "l", 0, 10) == [(1, b"other stream")]
    assert store.log.last_seq(Stream.JOINED, "l") == 0


def test_trim_deletes_entries_and_keys_but_not_the_counter(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(lmdb_store, "_CHUNK", 3)  # several transactions per trim
    store.log.append(D, "l", [Entry(f"k{i}" if i % 3 else None, b"%d" % i) for i in range(1, 11)])
    assert store.log.trim(D, "l", 8) == 7
    assert store.log.trim(D, "l", 8) == 0
    assert [s for s, _ in store.log.read(D, "l", 0, 100)] == [8, 9, 10]
    assert store.log.get(D, "l", "k2") is None
    assert store.log.get(D, "l", "k8") == b"8"
    assert store.log.last_seq(D, "l") == 10
    assert store.log.append(D, "l", [Entry("k2", b"again")])[0].seq == 11  # its key went with it
    assert store.log.trim(D, "l", 100) == 4
    assert store.log.last_seq(D, "l") == 11
    assert store.log.append(D, "l", [Entry(None, b"")])[0].seq == 12


def test_cursors(store: Store) -> None:
    assert store.log.get_cursor("l/joiner") is None
    store.log.set_cursor("l/joiner", b"1")
    store.log.set_cursor("l/joiner", b"2")
    assert store.log.get_cursor("l/joiner") == b"2"


def test_drop_loop_leaves_other_loops_alone(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(lmdb_store, "_CHUNK", 4)
    for loop in ("a", "ab", "b"):  # "a" is a prefix of "ab"
        for stream in Stream:
            store.log.append(stream, loop, [Entry(f"{loop}{i}", loop.encode()) for i in range(10)])
        store.log.set_cursor(f"{loop}/joiner", loop.encode())
        store.models.publish(loop, "spec", loop.encode(), 10)
        store.models.publish(loop, "spec", loop.encode(), 20)
    store.log.drop_loop("a")
    store.models.drop_loop("a")
    for stream in Stream:
        assert store.log.read(stream, "a", 0, 100) == []
        assert store.log.last_seq(stream, "a") == 0
        assert store.log.get(stream, "a", "a1") is None
        for loop in ("ab", "b"):
            assert store.log.read(stream, loop, 0, 100) == [(i, loop.encode()) for i in range(1, 11)]
            assert store.log.get(stream, loop, f"{loop}1") == loop.encode()
    assert store.log.get_cursor("a/joiner") is None
    assert store.log.get_cursor("ab/joiner") == b"ab"
    assert store.models.live("a") is None
    assert store.models.versions("a") == []
    assert store.models.versions("ab") == [1, 2]
    assert store.log.append(D, "a", [Entry("a1", b"new")])[0].seq == 1
    assert store.models.publish("a", "spec", b"new", 0).version == 3  # versions are never reused


def test_models(store: Store) -> None:
    assert store.models.live("l") is None
    assert store.models.live_version("l") == 0
    assert store.models.versions("l") == []
    m1 = store.models.publish("l", "--cb_explore_adf", b"\x00model1", 41, b"state1")
    m2 = store.models.publish("l", "--cb_explore_adf -q ::", b"model2" * 1000, 42)
    assert (m1.version, m2.version) == (1, 2)
    assert store.models.live("l") == m2
    assert store.models.live_version("l") == 2
    assert store.models.get("l", 1) == m1
    assert store.models.get("l", 1).state == b"state1"
    assert store.models.get("l", 0) is None
    assert store.models.get("other", 1) is None
    store.models.publish("l", "s", b"3", 43)
    store.models.prune("l", 2)
    assert store.models.versions("l") == [2, 3]
    store.models.prune("l", 0)  # the live version always stays
    assert store.models.versions("l") == [3]
    assert store.models.publish("l", "s", b"4", 44).version == 4


def test_configs(store: Store) -> None:
    c = store.configs
    assert c.generation() == 0
    assert c.create("a", b"1")
    assert not c.create("a", b"other")
    assert c.get("a") == b"1"
    assert c.generation() == 1
    c.put("a", b"2")
    with pytest.raises(KeyError):
        c.put("missing", b"x")
    assert c.create("b", b"3")
    assert c.list() == {"a": b"2", "b": b"3"}
    assert c.generation() == 3
    assert c.delete("a")
    assert not c.delete("a")
    assert c.get("a") is None
    assert c.list() == {"b": b"3"}
    assert c.generation() == 4


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "db"), map_size=MAP) as s:
        s.log.append(D, "l", [Entry("k", b"v"), Entry(None, b"w")])
        s.log.trim(D, "l", 2)
        s.log.set_cursor("l/c", b"pos")
        s.models.publish("l", "spec", b"model", 7, b"st")
        s.configs.create("l", b"cfg")
    s.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        s.log.last_seq(D, "l")
    with pytest.raises(RuntimeError, match="closed"):
        s.configs.create("m", b"")
    with open_store(str(tmp_path / "db"), map_size=MAP) as s:
        assert s.log.read(D, "l", 0, 10) == [(2, b"w")]
        assert s.log.last_seq(D, "l") == 2
        assert s.log.get_cursor("l/c") == b"pos"
        m = s.models.live("l")
        assert (m.version, m.spec, m.data, m.learned_seq, m.state) == (1, "spec", b"model", 7, b"st")
        assert s.configs.list() == {"l": b"cfg"}
        assert s.configs.generation() == 1


def test_open_store_rejects_urls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nats://"):
        open_store("nats://localhost:4222")


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
