"""The learner on a real store: shadows that fail, promotions across a restart, swap points, poisoned models.

A server without a trainer (`train=False`) answers the admin calls; the test drives the loop's `Learner`
itself, pass by pass, over joined events it appends to the log, so that a restart can fall between any two.
"""

import io
import json

import numpy as np
import pytest
from test_export import max_pmf_gap, vw_replay

from nextbest import policies
from nextbest.client import action, namespaces
from nextbest.server.export import export, live_replay
from nextbest.server.learner import Learner, learn_event
from nextbest.server.store import Entry, Stream
from nextbest.testing import running_server
from nextbest.v1 import admin_pb2, records_pb2

LOOP = "learn"
SPEC = "vw:--cb_explore_adf --softmax --lambda 5 -q ::"  # a pmf that moves with every weight
OTHER = "vw:--cb_explore_adf --squarecb -q ::"
PUSH_ONLY = 'fixed:{"push-tip": 1}'
SEGMENTS = ["student", "parent", "retiree"]
ACTIONS = [action("email-offer", "email"), action("push-tip", "push"), action("call-back", "call")]
PROBES = [
    policies.Example(namespaces({"user": {"segment": s}}), actions)
    for s in SEGMENTS
    for actions in (ACTIONS, ACTIONS[::-1])
]


@pytest.fixture
def served(tmp_path):
    """A server without a trainer, and its store (the test runs the learner)."""
    with running_server(tmp_path / "store", train=False) as (server, client):
        client.create_loop(LOOP, policy=SPEC, publish_interval_seconds=3600)
        yield server.store, client


def joined(i, reward=None, actions=ACTIONS):
    """The i-th joined event: a seeded choice among `actions` with a uniform logged pmf."""
    rng = np.random.default_rng(i)
    decision = records_pb2.DecisionRecord(
        loop=LOOP,
        event_id=f"e{i}",
        context=namespaces({"user": {"segment": SEGMENTS[i % 3]}}),
        actions=actions,
        pmf=[1 / len(actions)] * len(actions),
        chosen_index=int(rng.integers(len(actions))),
        policy=SPEC,
    )
    return records_pb2.JoinedEvent(decision=decision, reward=float(rng.integers(2)) if reward is None else reward)


def append(store, events):
    store.log.append(Stream.JOINED, LOOP, [Entry(e.decision.event_id, e.SerializeToString()) for e in events])


def config(client):
    return client.get_loop(LOOP)


def run_learner(store, client, learner=None):
    """Passes of the loop's learner (a new one: a restart) until it has consumed the log, then a publish."""
    learner = learner or Learner(store, LOOP, config(client))
    while learner.step(config(client)):
        pass
    learner.publish()
    return learner


def trained(spec, events):
    """`spec` learning `events` uninterrupted, as the learner should have."""
    policy = policies.create(spec)
    for e in events:
        event = learn_event(e)
        if event is not None:
            policy.learn([event])
    return policy


def served_policy(store):
    live = store.models.live(LOOP)
    return policies.load(live.spec, live.data)


def test_a_shadow_that_raises_skips_those_events_alone_and_the_loop_learns_on(served):
    store, client = served
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=LOOP, spec=PUSH_ONLY, mode=admin_pb2.POLICY_MODE_SHADOW))
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=LOOP, spec=OTHER, mode=admin_pb2.POLICY_MODE_SHADOW))
    events = [joined(i, actions=[ACTIONS[0], ACTIONS[2]] if i % 5 == 0 else ACTIONS) for i in range(40)]
    append(store, events)
    run_learner(store, client)
    assert store.models.live(LOOP).learned_seq == 40
    assert max_pmf_gap(served_policy(store), trained(SPEC, events), PROBES) <= 1e-9  # learned once each
    estimates = {p.spec: p for p in client.stats(LOOP).policies}
    assert (estimates[PUSH_ONLY].events, estimates[PUSH_ONLY].skipped_events) == (32, 8)
    assert (estimates[OTHER].events, estimates[OTHER].skipped_events) == (40, 0)
    assert (estimates[SPEC].events, estimates[SPEC].skipped_events) == (40, 0)


def test_a_promotion_acknowledged_before_a_restart_keeps_what_the_shadow_learned(served):
    store, client = served
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=LOOP, spec=OTHER, mode=admin_pb2.POLICY_MODE_SHADOW))
    events = [joined(i) for i in range(30)]
    append(store, events)
    run_learner(store, client)  # checkpoints the shadow with the live model
    client.admin.PromotePolicy(admin_pb2.PromotePolicyRequest(loop=LOOP, shadow=OTHER))
    run_learner(store, client)  # a restart before the learner saw the promotion
    assert store.models.live(LOOP).spec == OTHER
    assert max_pmf_gap(served_policy(store), trained(OTHER, events), PROBES) <= 1e-9


def test_the_swap_point_is_recorded_and_the_export_replays_across_it(served, tmp_path, capsys):
    store, client = served
    before, after = [joined(i) for i in range(30)], [joined(i) for i in range(30, 55)]
    append(store, before)
    learner = run_learner(store, client)
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=LOOP, spec=OTHER, mode=admin_pb2.POLICY_MODE_REPLACE))
    append(store, after)
    run_learner(store, client, learner)
    state = records_pb2.LearnerState.FromString(store.models.live(LOOP).state)
    assert (state.live_spec, state.live_start_seq) == (OTHER, 30)
    out = io.StringIO()
    export(store, LOOP, out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["Seq"] for line in lines] == list(range(1, 56))
    served_ = served_policy(store)
    swapped = [line for line in lines if json.loads(line)["Seq"] > state.live_start_seq]
    assert max_pmf_gap(served_, vw_replay(swapped, OTHER, tmp_path), PROBES) <= 1e-4
    assert max_pmf_gap(served_, vw_replay(lines, OTHER, tmp_path), PROBES) > 1e-3  # the point matters
    assert live_replay(store, LOOP).endswith(f"is {OTHER} learning the lines with 30 < Seq <= 55")


def test_a_model_whose_predictions_are_not_finite_is_refused_and_the_loop_learns_on_without_its_cause(served):
    store, client = served
    good = [joined(i) for i in range(20)]
    append(store, good)
    learner = run_learner(store, client)
    version = store.models.live_version(LOOP)
    poisoned = joined(20, reward=1e308)  # logged before rewards were bounded, say
    later = [joined(i) for i in range(21, 40)]
    append(store, [poisoned, *later])
    learner.step(config(client))  # learns through 40
    learner.publish()  # refused
    assert store.models.live_version(LOOP) == version  # the last good model keeps serving
    assert learner.state().refused_models == 1
    run_learner(store, client, learner)  # back to the last good model, relearns the 20 events with care
    live = store.models.live(LOOP)
    assert live.learned_seq == 40
    assert max_pmf_gap(served_policy(store), trained(SPEC, good + later), PROBES) <= 1e-9
    stats = client.stats(LOOP)
    assert stats.refused_models == 1
    assert [(p.events, p.skipped_events) for p in stats.policies if p.live] == [(39, 1)]


def test_a_policy_that_does_not_learn_is_never_refused(served):
    store, client = served
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=LOOP, spec=PUSH_ONLY, mode=admin_pb2.POLICY_MODE_REPLACE))
    client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=LOOP, spec=OTHER, mode=admin_pb2.POLICY_MODE_SHADOW))
    append(store, [joined(i, actions=[ACTIONS[0], ACTIONS[2]]) for i in range(10)])  # push-only scores none
    run_learner(store, client)
    assert store.models.live(LOOP).learned_seq == 10
    assert client.stats(LOOP).refused_models == 0
