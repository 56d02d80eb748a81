"""Crash safety of `nextbest serve` on a real LMDB store.

Under load from several clients the server is killed with SIGKILL at seeded moments, restarted on the same
store each time, then stopped with SIGTERM under load. Every decision and reward whose call was acknowledged
is in the store exactly once, every decision is joined exactly once, and the learner, which resumes each time
from its last checkpoint (the model published at the last graceful stop: publishing is held back meanwhile),
ends with the model of an uninterrupted run over the same joined events.
"""

import itertools
import random
import re
import signal
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

from nextbest import policies
from nextbest.client import Client, action, namespaces
from nextbest.server.learner import learn_event
from nextbest.server.store import Stream, open_store
from nextbest.testing import wait_for
from nextbest.v1 import records_pb2

pytestmark = pytest.mark.slow

SEED = 20261123
CRASHES = 3
CLIENTS = 4
LOOP = "crash"
SPEC = "vw:--cb_explore_adf --softmax --lambda 5 --epsilon 0.05 -q ::"  # a pmf that moves with every weight
SEGMENTS = ["student", "parent", "retiree"]
ACTIONS = [action("email-offer", "email"), action("push-tip", "push"), action("call-back", "call")]
BEST = {"student": "push-tip", "parent": "email-offer", "retiree": "call-back"}


def segment(event_id: str) -> str:
    return SEGMENTS[zlib.crc32(event_id.encode()) % len(SEGMENTS)]


class Server:
    """`nextbest serve` in a subprocess on a free port."""

    def __init__(self, store, log, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "nextbest", "--log-level", "WARNING", "serve"),
                *("--store", str(store), "--port", "0", *flags),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.address = re.search(r"serving on (\S+)", self.proc.stdout.readline()).group(1)

    def stop(self, signum: int) -> None:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=60)
        assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0), code


class Load:
    """Clients sending Rank then Reward until the server stops answering; records what was acknowledged."""

    def __init__(self, address: str, round_: int) -> None:
        self.decisions: set[str] = set()
        self.rewards: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(address, f"{round_}-{c}")) for c in range(CLIENTS)]
        for t in self._threads:
            t.start()

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.decisions) + len(self.rewards)

    def _send(self, address: str, prefix: str) -> None:
        with Client(address, timeout=30) as client:
            try:
                for i in range(100_000):
                    event_id = f"{prefix}-{i}"
                    r = client.rank(ACTIONS, {"user": {"segment": segment(event_id)}}, loop=LOOP, event_id=event_id)
                    with self._lock:
                        self.decisions.add(event_id)
                    client.reward(
                        event_id, float(r.chosen_action_id == BEST[segment(event_id)]), loop=LOOP, reward_id="r"
                    )
                    with self._lock:
                        self.rewards.add(event_id)
            except Exception:  # the server went away: what was acknowledged is recorded
                return

    def join(self) -> None:
        for t in self._threads:
            t.join(timeout=60)


def run_until(server: Server, round_: int, acknowledged: int, signum: int) -> Load:
    load = Load(server.address, round_)
    wait_for(lambda: load.acknowledged() >= acknowledged, timeout=60, interval=0.001)
    server.stop(signum)
    load.join()
    return load


def entries(s, stream: Stream) -> list[bytes]:
    return [data for _, data in s.log.read(stream, LOOP, 0, 1_000_000)]


def test_killed_and_stopped_under_load_loses_and_duplicates_nothing_and_learns_as_if_uninterrupted(tmp_path):
    store = tmp_path / "store"
    rng = random.Random(SEED)
    decisions: set[str] = set()
    rewards: set[str] = set()
    relearned = 0
    with (tmp_path / "server.log").open("w") as log:
        server = Server(store, log)
        with Client(server.address) as admin:
            admin.create_loop(LOOP, policy=SPEC, reward_wait_seconds=0.05, publish_interval_seconds=3600)
        for round_ in range(CRASHES + 1):
            signum = signal.SIGKILL if round_ < CRASHES else signal.SIGTERM
            load = run_until(server, round_, rng.randint(100, 400), signum)
            decisions |= load.decisions
            rewards |= load.rewards
            if signum == signal.SIGKILL:
                with open_store(str(store)) as s:  # what the restarted learner must learn again
                    live = s.models.live(LOOP)
                    relearned += s.log.last_seq(Stream.JOINED, LOOP) - (live.learned_seq if live else 0)
            server = Server(store, log)
        with Client(server.address) as admin:  # catch up: publish at once from now on
            admin.update_loop(LOOP, publish_interval_seconds=0.05)
            n = len(decisions)
            wait_for(lambda: (s := admin.stats(LOOP)).joined == s.decisions >= n and s.learned == s.joined, 60)
        server.stop(signal.SIGTERM)

    with open_store(str(store)) as s:
        logged = [records_pb2.DecisionRecord.FromString(d).event_id for d in entries(s, Stream.DECISIONS)]
        assert len(logged) == len(set(logged)) and set(logged) >= decisions
        reward_keys = [
            (r.event_id, r.reward_id) for r in map(records_pb2.RewardRecord.FromString, entries(s, Stream.REWARDS))
        ]
        assert len(reward_keys) == len(set(reward_keys)) and {e for e, _ in reward_keys} >= rewards
        joined = [records_pb2.JoinedEvent.FromString(d) for d in entries(s, Stream.JOINED)]
        assert sorted(j.decision.event_id for j in joined) == sorted(logged)  # each joined exactly once
        live = s.models.live(LOOP)
        assert live.learned_seq == len(joined)

    uninterrupted = policies.create(SPEC)
    for j in joined:
        event = learn_event(j)
        if event is not None:
            uninterrupted.learn([event])
    restored = policies.load(live.spec, live.data)  # not byte for byte: VW resets its progress counters on load
    for seg, actions in itertools.product([*SEGMENTS, "unseen"], [ACTIONS, ACTIONS[::-1], ACTIONS[1:]]):
        example = policies.Example(namespaces({"user": {"segment": seg}}), actions)
        np.testing.assert_allclose(restored.pmf(example), uninterrupted.pmf(example), rtol=0, atol=1e-6)
    print(
        f"\n{CRASHES} crashes (SIGKILL) and 1 SIGTERM under load; {len(decisions)} decisions and {len(rewards)} "
        f"rewards acknowledged and checked; {len(joined)} joined events; {relearned} relearned after crashes"
    )
    assert relearned > 0


def test_after_a_crash_the_restarted_server_joins_at_once_not_after_the_dead_ones_lease(tmp_path):
    """The trainer lease of a process of this host that is gone is taken over at once: with a 10-minute lease,
    decisions made after the restart are joined (and learned) within seconds."""
    import time

    lease = ("--lease-seconds", "600")
    with (tmp_path / "server.log").open("w") as log:
        server = Server(tmp_path / "store", log, *lease)
        with Client(server.address) as client:
            client.create_loop(LOOP, policy=SPEC, reward_wait_seconds=0.05)
            client.rank(ACTIONS, {"user": {"segment": "student"}}, loop=LOOP, event_id="before")
            wait_for(lambda: client.stats(LOOP).joined == 1, timeout=30)
        server.stop(signal.SIGKILL)
        server = Server(tmp_path / "store", log, *lease)
        ready = time.monotonic()
        with Client(server.address) as client:
            client.rank(ACTIONS, {"user": {"segment": "parent"}}, loop=LOOP, event_id="after")
            wait_for(lambda: client.stats(LOOP).joined == 2, timeout=120)  # not the lease's 600 s
            resumed = time.monotonic() - ready
        server.stop(signal.SIGTERM)
    print(f"joining resumed {resumed:.2f} s after the restarted server was ready (lease: 600 s)")
