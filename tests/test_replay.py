"""The served model is VW learning `nextbest export`: a whole service's life, replayed through VW in-process.

`nextbest serve` (a subprocess) runs one loop per reward aggregation, each with a different default reward (one
with the default policy), on traffic with every feature shape Rank accepts (`test_export.SHAPES`), exclusions,
deferred decisions (some activated) and 0, 1 or 2 rewards per decision. It is killed (SIGKILL) under traffic,
restarted, stopped cleanly (SIGTERM), restarted; meanwhile one loop gets two shadows (one raising on every
decision without `push-tip`) and later promotes the other, and one loop replaces its policy. Then, for every
loop, VW itself (`vw --dsjson` with the live spec's arguments) learns the export's lines of the live model's
range (`server.export.live_replay`) and must give the served model's probabilities on the logged examples.
"""

import io
import json
import signal

import numpy as np
import pytest
from test_crash import Server
from test_export import SHAPES, max_pmf_gap, vw_replay

from nextbest import policies
from nextbest.client import Client, RewardAggregation, action
from nextbest.server.config import DEFAULT_POLICY
from nextbest.server.export import export, logged_event
from nextbest.server.store import Stream, open_store
from nextbest.testing import wait_for
from nextbest.v1 import admin_pb2, records_pb2

pytestmark = pytest.mark.slow

SPEC = "vw:--cb_explore_adf --softmax --lambda 5 -q ::"  # a pmf that moves with every weight
OTHER = "vw:--cb_explore_adf --squarecb -q ::"
REPLACEMENT = "vw:--cb_explore_adf --softmax --lambda 2 --cb_type ips -q ::"
PUSH_ONLY = 'fixed:{"push-tip": 1}'  # raises on a decision without push-tip among the candidates
LOOPS = {  # loop: (aggregation, default reward, policy; "" for the server's default)
    "earliest": (RewardAggregation.REWARD_AGGREGATION_EARLIEST, 0.0, SPEC),
    "sum": (RewardAggregation.REWARD_AGGREGATION_SUM, -0.5, SPEC),
    "average": (RewardAggregation.REWARD_AGGREGATION_AVERAGE, 0.25, ""),
    "min": (RewardAggregation.REWARD_AGGREGATION_MIN, 1.0, SPEC),
    "max": (RewardAggregation.REWARD_AGGREGATION_MAX, 0.0, SPEC),
}
SHAPE_LIST = list(SHAPES.values())
ROUND = 30  # decisions per loop and round


def traffic(client, loop, first, rng):
    """ROUND decisions of `loop` numbered from `first`: shapes, exclusions, deferrals, 0-2 rewards each."""
    for i in range(first, first + ROUND):
        shape = SHAPE_LIST[i % len(SHAPE_LIST)]
        context = {"user ü": shape, "visit": {"n": i % 7, "tokens": [f"p{i % 3}"] * (1 + i % 2)}}
        actions = [
            action("email-offer", "email", {"offer": shape}),
            action("push-tip", "push"),
            action("call-back", "", {"script": {"tokens": ["short", "short", "friendly"]}}),
            action("sms", "sms", {"empty": {}}),
        ]
        excluded = ["push-tip"] if i % 6 == 2 else ["sms"] if i % 4 == 1 else []
        deferred = i % 5 == 0
        event_id = f"{loop}-{i}"
        client.rank(actions, context, loop=loop, event_id=event_id, excluded=excluded, deferred=deferred)
        if deferred and i % 10 == 0:
            client.activate(event_id, loop=loop)
        for k in range(i % 3):  # none: the default reward
            client.reward(event_id, float(rng.normal()), loop=loop, reward_id=str(k))


def round_(client, number, rng):
    for loop in LOOPS:
        traffic(client, loop, number * ROUND, rng)


def caught_up(client, decisions):
    return all(
        (s := client.stats(loop)).joined == s.decisions == decisions and s.learned == decisions for loop in LOOPS
    )


def set_policy(client, loop, spec, mode):
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=loop, spec=spec, mode=mode))


@pytest.fixture(scope="module")
def lived(tmp_path_factory):
    """The store after the service's life (see the module doc), and the last GetStats of each loop."""
    directory = tmp_path_factory.mktemp("replay")
    store = directory / "store"
    rng = np.random.default_rng(14)
    with (directory / "server.log").open("w") as log:
        server = Server(store, log)
        with Client(server.address) as client:
            for loop, (aggregation, default, policy) in LOOPS.items():
                client.create_loop(
                    loop,
                    policy=policy,
                    reward_aggregation=aggregation,
                    default_reward=default,
                    reward_wait_seconds=0.5,
                    publish_interval_seconds=0.05,
                )
            set_policy(client, "sum", PUSH_ONLY, admin_pb2.POLICY_MODE_SHADOW)
            round_(client, 0, rng)
            wait_for(lambda: caught_up(client, ROUND), timeout=60)
            set_policy(client, "sum", OTHER, admin_pb2.POLICY_MODE_SHADOW)  # learns from here on
            round_(client, 1, rng)  # killed with rewards in their window, events joined and not learned
        server.stop(signal.SIGKILL)
        server = Server(store, log)
        with Client(server.address) as client:
            round_(client, 2, rng)
            set_policy(client, "max", REPLACEMENT, admin_pb2.POLICY_MODE_REPLACE)
            round_(client, 3, rng)
        server.stop(signal.SIGTERM)
        server = Server(store, log)
        with Client(server.address) as client:
            round_(client, 4, rng)
            client.admin.PromotePolicy(admin_pb2.PromotePolicyRequest(loop="sum", shadow=OTHER))
            round_(client, 5, rng)
            wait_for(lambda: caught_up(client, 6 * ROUND), timeout=60)
            stats = {loop: client.stats(loop) for loop in LOOPS}
        server.stop(signal.SIGTERM)  # publishes what was learned since the last publish
    return str(store), stats


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_the_served_model_is_vw_learning_the_export(lived, loop, tmp_path):
    store_dir, _ = lived
    with open_store(store_dir) as store:
        out = io.StringIO()
        assert export(store, loop, out) == (6 * ROUND, 0)
        live = store.models.live(loop)
        state = records_pb2.LearnerState.FromString(live.state)
        joined = [records_pb2.JoinedEvent.FromString(d) for _, d in store.log.read(Stream.JOINED, loop, 0, 10**6)]
    assert live.learned_seq == len(joined) == 6 * ROUND
    lines = [line for line in out.getvalue().splitlines() if state.live_start_seq < json.loads(line)["Seq"]]
    probes = [logged_event(j).example for j in joined[::7]]
    gap = max_pmf_gap(policies.load(live.spec, live.data), vw_replay(lines, live.spec, tmp_path), probes)
    print(f"\n{loop}: {live.spec}, {len(lines)} lines replayed, max |dp| {gap:.2e} over {len(probes)} probes")
    assert gap <= 1e-4


def test_the_loops_went_through_what_the_replay_is_meant_to_cover(lived):
    store_dir, stats = lived
    with open_store(store_dir) as store:
        live = {loop: store.models.live(loop) for loop in LOOPS}
        starts = {loop: records_pb2.LearnerState.FromString(m.state).live_start_seq for loop, m in live.items()}
        joined = [records_pb2.JoinedEvent.FromString(d) for _, d in store.log.read(Stream.JOINED, "sum", 0, 10**6)]
    assert (live["sum"].spec, live["max"].spec, live["min"].spec) == (OTHER, REPLACEMENT, SPEC)
    assert live["average"].spec == DEFAULT_POLICY
    assert ROUND <= starts["sum"] < 6 * ROUND and ROUND <= starts["max"] < 6 * ROUND  # swaps mid-stream
    assert starts["min"] == 0
    shadows = {p.spec: p for p in stats["sum"].policies}
    assert shadows[PUSH_ONLY].skipped_events == 6 * ROUND // 6 and shadows[PUSH_ONLY].events > 0
    assert any(j.defaulted for j in joined) and any(j.reward_count == 2 for j in joined)
    assert any(j.decision.deferred and j.activated for j in joined)
    assert any(j.decision.deferred and not j.activated for j in joined)
    assert any(len(j.decision.actions) == 3 for j in joined)  # exclusions
