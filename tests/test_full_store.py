"""A full store: calls fail with RESOURCE_EXHAUSTED and a clear message, nothing half-written remains, the server
recovers by itself once space is freed, and with serve-without-logging Rank keeps answering (unlogged, counted)."""

import os
import random
import re
import resource
import signal
import subprocess
import sys

import grpc
import pytest

from nextbest.client import Client, action
from nextbest.server.store import Stream, open_store
from nextbest.testing import child_commands, running_server, wait_for
from nextbest.v1 import records_pb2

SMALL_MAP = 1 << 20  # 1 MiB: refused beyond 768 KiB, the rest is the reserve kept for deletes
ACTIONS = [action("a", "email"), action("b", "push")]
# about 20 KB per decision, of random hex: the store compresses long entries, and these stay ~10 KB
BULKY = {"u": {"tokens": [f"{i:03d}" + random.Random(i).randbytes(100).hex() for i in range(100)]}}


def fill(client: Client, loop: str, limit: int = 500) -> tuple[set[str], grpc.RpcError]:
    """Rank bulky decisions until one is refused; the acknowledged event ids and the refusal."""
    acked = set()
    for i in range(limit):
        try:
            acked.add(client.rank(ACTIONS, BULKY, loop=loop, event_id=f"{loop}-{i}").event_id)
        except grpc.RpcError as e:
            return acked, e
    raise AssertionError(f"the store took {limit} bulky decisions")


def logged(store, loop: str) -> set[str]:
    entries = store.log.read(Stream.DECISIONS, loop, 0, 100_000)
    assert len(entries) == store.log.last_seq(Stream.DECISIONS, loop)  # no gap, nothing half-appended
    return {records_pb2.DecisionRecord.FromString(data).event_id for _, data in entries}


def test_a_full_map_refuses_writes_clearly_and_recovers_when_space_is_freed(tmp_path):
    with running_server(tmp_path / "store", store_options={"map_size": SMALL_MAP}, train=False) as (server, client):
        client.create_loop("bulk")
        acked, refusal = fill(client, "bulk")
        assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert re.match(
            r"store full: the LMDB store at .* is full \(only the reserve kept for deletes is left\); free space "
            r"\(retention, prune, delete a loop\) or reopen it with a larger map_size \(nextbest serve "
            r"--store-max-bytes; now 1048576 bytes\)",
            refusal.details(),
        ), refusal.details()
        assert logged(server.store, "bulk") == acked and len(acked) > 10
        for call in (lambda: client.reward("bulk-0", 1.0, loop="bulk"), lambda: client.create_loop("more")):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.rank(ACTIONS, loop="bulk", event_id="bulk-0").event_id == "bulk-0"  # retries still answer
        client.delete_loop("bulk")  # deletes work in the reserve; no restart needed after
        assert client.rank(ACTIONS, BULKY, event_id="after").event_id == "after"
        assert server.store.log.get(Stream.DECISIONS, "default", "after") is not None


def test_retention_frees_a_full_store_by_itself(tmp_path, clock):
    OLD = 13
    options = {"store_options": {"map_size": SMALL_MAP}, "clock": clock, "retention_interval_seconds": 0.05}
    with running_server(tmp_path / "store", **options) as (server, client):
        client.create_loop("r", reward_wait_seconds=1, publish_interval_seconds=0.05, retention_days=1)
        for i in range(OLD):
            client.reward(client.rank(ACTIONS, BULKY, loop="r", event_id=f"old-{i}").event_id, 1.0, loop="r")
        clock.advance(2)
        wait_for(lambda: client.stats("r").learned == OLD)  # joined (a copy of each) and learned
        acked, refusal = fill(client, "r")
        assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        clock.advance(86_400)  # the old decisions are more than a day old now, the newer ones are not; their
        # windows close, and joining them needs room that only retention can make

        def ranked() -> bool:
            try:
                return bool(client.rank(ACTIONS, BULKY, loop="r", event_id="after"))
            except grpc.RpcError:
                return False

        wait_for(ranked)
        wait_for(lambda: client.stats("r").joined == OLD + len(acked))  # none skipped while the store was full
        assert server.store.log.get(Stream.DECISIONS, "r", "old-0") is None
        assert all(server.store.log.get(Stream.DECISIONS, "r", event_id) for event_id in acked)


def test_serve_without_logging_answers_from_the_current_model_and_counts_it(tmp_path, caplog):
    options = {"store_options": {"map_size": SMALL_MAP}, "train": False, "rpc_metrics": True}
    with running_server(tmp_path / "store", serve_without_logging=True, **options) as (server, client):
        unlogged = None
        for i in range(500):
            r = client.rank(ACTIONS, BULKY, event_id=f"e{i}")
            if server.store.log.get(Stream.DECISIONS, "default", r.event_id) is None:
                unlogged = r
                break
        assert unlogged is not None and unlogged.model_version == "0" and unlogged.chosen_action_id in {"a", "b"}
        again = client.rank(ACTIONS, BULKY, event_id=unlogged.event_id)
        assert again == unlogged  # the same seeded draw from the same model
        samples = server.metrics.registry.get_sample_value
        assert samples("nextbest_unlogged_decisions_total", {"loop": "default"}) == 2
        assert "answering Rank without logging (1 unlogged decisions so far): the LMDB store" in caplog.text
        with pytest.raises(grpc.RpcError) as err:  # only Rank answers unlogged
            client.reward(unlogged.event_id, 1.0)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.slow
def test_a_full_disk_refuses_writes_and_the_server_recovers_when_there_is_space_again(tmp_path):
    store = tmp_path / "store"
    file_limit = 2 << 20  # the data file may not grow past 2 MiB: a full disk for LMDB

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.Popen(
        [sys.executable, "-m", "nextbest", "--log-level", "ERROR", "serve", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        line = proc.stdout.readline()
        if "serving on" not in line:
            proc.kill()
            pytest.fail(f"the server did not start: {line!r}; stderr: {proc.stderr.read()[-3000:]}")
        address = re.search(r"serving on (\S+)", line).group(1)
        with Client(address) as client:
            acked, refusal = fill(client, "default")
            assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert re.match(
                r"store full: the disk under the LMDB store at .* is full or failing \(mdb_txn_commit: .*\); nothing "
                r"of the failed write remains, and writes resume once there is disk space",
                refusal.details(),
            ), refusal.details()
            unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            for pid in [proc.pid, *child_commands(proc.pid)]:  # space again, for the parent and its serving workers
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (unlimited, unlimited))
            acked.add(client.rank(ACTIONS, BULKY, event_id="after").event_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    with open_store(str(store)) as s:
        assert logged(s, "default") == acked and len(acked) > 50
