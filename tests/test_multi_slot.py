"""Multi-slot decisions (RankMultiSlot) through a real server: sampling, logging, joining per slot, learning."""

import io
import json

import grpc
import numpy as np
import pytest
from test_export import vw_replay

from nextbest import policies
from nextbest.client import action, namespaces, slot
from nextbest.server.config import Limits, normalized
from nextbest.server.export import export
from nextbest.server.joiner import Joiner
from nextbest.server.sampling import sample_index, slot_uniform
from nextbest.server.store import Entry, Stream, open_store
from nextbest.server.subjects.history import contacts
from nextbest.sim.slots import CCB_POLICY
from nextbest.testing import FakeClock, running_server, wait_for
from nextbest.v1 import decision_pb2, records_pb2, types_pb2

CCB = "vw:--ccb_explore_adf --epsilon 0.2 -q ua -q sa"
ACTIONS = [action("hero-sale", "web"), action("new-in", "web"), action("tips", ""), action("app", "push")]
SLOTS = [slot("hero", {"s": {"pos": "hero"}}), slot("side", {"s": {"pos": "side"}}, excluded=["hero-sale"])]


def _logged(server, loop, event_id):
    return records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, loop, event_id))


def test_slots_take_distinct_actions_with_exact_per_slot_probabilities(served):
    server, client = served
    client.create_loop("page", policy=CCB)
    for i in range(40):
        r = client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": f"s{i % 3}"}}, loop="page", event_id=f"e{i}")
        assert [s.slot_id for s in r.slots] == ["hero", "side"]
        chosen = [s.chosen_action_id for s in r.slots]
        assert len(set(chosen)) == 2
        logged = _logged(server, "page", f"e{i}")
        taken: list[int] = []
        for k, (decision, record) in enumerate(zip(r.slots, logged.slots, strict=True)):
            ids = [logged.actions[c].id for c in record.candidates]
            # the slot's candidates: what it may take that no earlier slot took
            allowed = [a.id for a in ACTIONS if a.id not in SLOTS[k].excluded_action_ids]
            assert ids == [a for a in allowed if a not in {logged.actions[t].id for t in taken}]
            assert sorted(p.action_id for p in decision.ranking) == sorted(ids)
            assert sum(p.probability for p in decision.ranking) == pytest.approx(1.0, abs=1e-12)
            pmf = dict(zip(ids, record.pmf, strict=True))
            assert {p.action_id: p.probability for p in decision.ranking} == pmf  # exactly the logged pmf
            assert decision.probability == pmf[decision.chosen_action_id]
            # reproducible from the log: the seeded draw of (loop, event id, slot index) over the logged pmf
            assert ids[sample_index(list(record.pmf), slot_uniform("page", f"e{i}", k))] == decision.chosen_action_id
            taken.append(record.candidates[record.chosen_index])
        assert r.slots[1].chosen_action_id != "hero-sale"


def test_rank_on_a_multi_slot_loop_is_one_slot_and_rank_multi_slot_on_a_single_slot_loop_fails(served):
    server, client = served
    client.create_loop("page", policy=CCB)
    r = client.rank(ACTIONS, {"u": {"seg": "a"}}, loop="page", excluded=["tips"], event_id="r")
    assert sum(p.probability for p in r.ranking) == pytest.approx(1.0)
    assert r.policy == CCB and "tips" not in {p.action_id for p in r.ranking}
    logged = _logged(server, "page", "r")  # a one-slot multi-slot decision, sampled as its slot 0
    (only,) = logged.slots
    ids = [logged.actions[c].id for c in only.candidates]
    assert only.id == "default" and ids == ["hero-sale", "new-in", "app"]
    assert ids[sample_index(list(only.pmf), slot_uniform("page", "r", 0))] == r.chosen_action_id
    assert client.rank(ACTIONS, {"u": {"seg": "b"}}, loop="page", event_id="r") == r  # a retry
    with pytest.raises(grpc.RpcError) as e:
        client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "a"}})  # the default loop decides one slot
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "single slot" in e.value.details()


@pytest.mark.slow
def test_retries_answer_the_logged_decision_across_a_restart(tmp_path):
    store = tmp_path / "store"
    with running_server(store) as (server, client):
        client.create_loop("page", policy=CCB, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        first = {}
        for i in range(60):
            r = client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": f"s{i % 3}"}}, loop="page", event_id=f"e{i}")
            first[r.event_id] = r
            client.reward(r.event_id, float(r.slots[0].chosen_action_id == "new-in"), loop="page", slot_id="hero")
        wait_for(lambda: client.stats("page").learned == 60)
    with running_server(store) as (server, client):
        for event_id, response in first.items():
            assert client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "x"}}, loop="page", event_id=event_id) == (
                response
            )
        assert server.store.log.last_seq(Stream.DECISIONS, "page") == 60


def _bad(**changes):
    request = decision_pb2.RankMultiSlotRequest(loop="page", actions=ACTIONS, slots=SLOTS)
    for name, value in changes.items():
        del getattr(request, name)[:]
        getattr(request, name).extend(value)
    return request


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_bad(slots=[slot("a"), slot("a")]), "slots[1].id: duplicate slot id 'a'"),
        (_bad(slots=[slot("a", baseline="nope")]), "slots[0].baseline_action_id: 'nope' is not among the actions"),
        (_bad(slots=[slot(f"s{i}") for i in range(5)]), "slots: 5 slots, more than the 4 actions"),
        (_bad(slots=[]), "slots: at least one slot is required"),
        (_bad(slots=[slot("")]), "slots[0].id: must not be empty"),
        (_bad(slots=[slot("a", excluded=["zz"])]), "slots[0].excluded_action_ids[0]: 'zz' is not among the actions"),
        (
            _bad(slots=[slot("a", baseline="tips", excluded=["tips"])]),
            "slots[0].baseline_action_id: 'tips' is excluded",
        ),
        (
            _bad(slots=[slot("a", baseline="tips"), slot("b", baseline="tips")]),
            "slots[1].baseline_action_id: 'tips' is also slots[0]'s baseline",
        ),
        (_bad(slots=[slot("a", {"u": {"x": 1}})]), "slots[0].features['u'] (namespace name): also a context namespace"),
        (
            _bad(slots=[slot("a", excluded=["tips", "app", "new-in"]), slot("b", excluded=["tips", "app", "new-in"])]),
            "slots[1]: every action the slot may take filled an earlier slot",
        ),
    ],
)
def test_bad_requests_name_the_field(served, request_, field):
    server, client = served
    client.create_loop("page", policy=CCB)
    request_.context["u"].numeric["x"] = 1.0
    with pytest.raises(grpc.RpcError) as e:
        client.decisions.RankMultiSlot(request_)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in e.value.details()
    assert server.store.log.last_seq(Stream.DECISIONS, "page") == 0


def test_a_reward_for_an_unknown_slot_is_refused_naming_the_field(served):
    server, client = served
    client.create_loop("page", policy=CCB)
    r = client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "a"}}, loop="page")
    assert client.reward(r.event_id, 1.0, loop="page", slot_id="side") is False
    with pytest.raises(grpc.RpcError) as e:
        client.reward(r.event_id, 1.0, loop="page", slot_id="footer")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "slot_id: 'footer' is not a slot of the decision" in e.value.details()
    stream = [decision_pb2.RewardRequest(loop="page", event_id=r.event_id, value=1.0, slot_id="footer")]
    with pytest.raises(grpc.RpcError) as e:
        client.reward_stream(stream)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rewards[0].slot_id" in e.value.details()


def test_rewards_join_per_slot_and_the_whole_event_counts_in_every_slot(served_fake_clock, clock):
    server, client = served_fake_clock
    client.create_loop("page", policy=CCB, reward_wait_seconds=10, default_reward=-1.0)
    r = client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "a"}}, loop="page", event_id="e")
    client.reward("e", 0.5, loop="page", slot_id="side")
    client.reward("e", 0.25, loop="page", slot_id="side")
    client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "a"}}, loop="page", event_id="f")
    client.reward("f", 2.0, loop="page")  # the whole event: every slot
    clock.advance(11)
    wait_for(lambda: client.stats("page").joined == 2)
    joined = records_pb2.JoinedEvent.FromString(server.store.log.get(Stream.JOINED, "page", "e"))
    assert [(s.slot_id, s.reward, s.reward_count, s.defaulted) for s in joined.slots] == [
        ("hero", -1.0, 0, True),
        ("side", 0.5, 2, False),  # the earliest, as configured by default
    ]
    assert (joined.reward, joined.reward_count) == (-0.5, 2)
    assert joined.decision.slots[1].id == "side" and r.slots[1].slot_id == "side"
    other = records_pb2.JoinedEvent.FromString(server.store.log.get(Stream.JOINED, "page", "f"))
    assert [(s.reward, s.reward_count) for s in other.slots] == [(2.0, 1), (2.0, 1)]


def test_logging_only_answers_each_slot_with_its_baseline(served):
    server, client = served
    client.create_loop("page", policy=CCB, learning_mode=types_pb2.LEARNING_MODE_LOGGING_ONLY)
    slots = [slot("hero", baseline="app"), slot("side"), slot("foot", baseline="hero-sale")]
    r = client.rank_multi_slot(ACTIONS, slots, {"u": {"seg": "a"}}, loop="page")
    # "side" has no baseline: the first action it may take that no earlier slot took
    assert [(s.chosen_action_id, s.probability) for s in r.slots] == [("app", 1.0), ("hero-sale", 1.0), ("new-in", 1.0)]
    assert r.policy == "baseline"


def _page(client, loop, event_id, rng):
    """One page view of a planted problem: the best action for the hero slot is 'new-in', for the side slot 'tips'
    (reward 1 with probability 0.8, else 0.1 for any other); whether each slot chose its best."""
    segment = f"s{rng.integers(3)}"
    r = client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": segment}}, loop=loop, event_id=event_id)
    hits = []
    for decision, best in zip(r.slots, ("new-in", "tips"), strict=True):
        hit = decision.chosen_action_id == best
        client.reward(event_id, float(rng.random() < (0.8 if hit else 0.1)), loop=loop, slot_id=decision.slot_id)
        hits.append(hit)
    return hits


@pytest.mark.slow
def test_a_planted_per_slot_preference_is_learned(served):
    server, client = served
    client.create_loop(
        "page",
        policy=CCB,
        reward_wait_seconds=0.05,
        publish_interval_seconds=0.05,
        shadow_policies=["vw:--ccb_explore_adf --epsilon 0.05", "vw:--cb_explore_adf --epsilon 0.05 -q ua -q sa"],
    )
    rng = np.random.default_rng(7)
    hits = [_page(client, "page", f"e{i}", rng) for i in range(1500)]
    last = np.array(hits[-300:])
    assert last[:, 0].mean() >= 0.75 and last[:, 1].mean() >= 0.75, last.mean(axis=0)
    stats = wait_for(lambda: (s := client.stats("page")).learned == 1500 and s)
    shadows = {e.spec: e for e in stats.policies if not e.live}
    assert len(shadows) == 2 and all(e.events > 0 and e.skipped_events == 0 for e in shadows.values()), shadows


REPLAY_CCB = "vw:--ccb_explore_adf --softmax --lambda 5 -q ua -q sa"  # a pmf that moves with every weight


@pytest.mark.slow
@pytest.mark.parametrize("spec", [REPLAY_CCB, CCB_POLICY])
def test_vw_learning_the_ccb_export_is_the_live_model(tmp_path, spec):
    clock = FakeClock()
    store = tmp_path / "store"
    with running_server(store, clock=clock) as (server, client):
        client.create_loop("page", policy=spec, reward_wait_seconds=10, publish_interval_seconds=0.05)
        rng = np.random.default_rng(11)
        for i in range(60):
            context = {"u": {"seg": f"s{i % 3}", "visits": i % 5, "tokens": ["music", "_promo"]}}
            r = client.rank_multi_slot(ACTIONS, SLOTS, context, loop="page", event_id=f"e{i}")
            for decision in r.slots:
                if rng.random() < 0.6:
                    client.reward(f"e{i}", float(rng.integers(1, 4)), loop="page", slot_id=decision.slot_id)
            if i % 7 == 0:
                client.reward(f"e{i}", 0.5, loop="page")
            if i % 5 == 0:  # a Rank on the loop: a one-slot decision
                one = client.rank(ACTIONS, context, loop="page", event_id=f"r{i}")
                client.reward(one.event_id, float(one.chosen_action_id == "tips"), loop="page")
            clock.advance(1)
        clock.advance(11)
        wait_for(lambda: (live := server.store.models.live("page")) is not None and live.learned_seq == 72)
        live = server.store.models.live("page")
        model = policies.load(live.spec, live.data)
    with open_store(str(store)) as opened:
        out = io.StringIO()
        assert export(opened, "page", out).written == 72
    lines = out.getvalue().splitlines()
    first = json.loads(lines[0])
    assert list(first["c"]) == ["u", "_multi", "_slots"] and list(first)[-4:] == ["_outcomes", "o", "VWState", "Seq"]
    assert [s["_id"] for s in first["_outcomes"]] == ["hero", "side"]
    replayed = vw_replay(lines, spec, tmp_path)
    examples = [policies.Example(namespaces({"u": {"seg": f"s{k}", "visits": k}}), ACTIONS) for k in range(3)]
    slots = [policies.Slot(namespaces(s.features), (0, 1, 2, 3)) for s in SLOTS]
    fresh = policies.create(spec)
    gap = learned = 0.0
    for example in examples:
        for chosen in ([], [1], [2]):
            probe = slots[: len(chosen) + 1]
            a, b = model.slot_pmf(example, probe, chosen), replayed.slot_pmf(example, probe, chosen)
            gap = max(gap, float(np.max(np.abs(a - b))))
            learned = max(learned, float(np.max(np.abs(a - fresh.slot_pmf(example, probe, chosen)))))
    assert gap <= 1e-4 and learned > 0.05  # the same model, and one that learned


SEND = [action("email-a", "email"), action("push-a", "push"), action("nothing")]
SEND_SLOTS = [slot("lead", baseline="email-a"), slot("second", baseline="push-a"), slot("extra", baseline="nothing")]


def test_each_filled_slot_that_is_a_contact_counts_in_the_subject_history(served_fake_clock, clock):
    server, client = served_fake_clock
    client.create_loop("send", policy=CCB, learning_mode=types_pb2.LEARNING_MODE_LOGGING_ONLY, reward_wait_seconds=60)
    client.set_contact_policy(json.dumps({"rules": [{"name": "two", "max": 2, "per_seconds": 86400}]}))
    r = client.rank_multi_slot(SEND, SEND_SLOTS, loop="send", subject_id="ann", event_id="d", deferred=True)
    assert [s.chosen_action_id for s in r.slots] == ["email-a", "push-a", "nothing"]
    assert contacts(server.store.subjects.get("ann"), clock()) == []  # deferred: no contact until activated
    client.activate("d", loop="send", slot_id="lead")  # the lead slot was shown: a contact
    assert [c.slot_id for c in contacts(server.store.subjects.get("ann"), clock())] == ["lead"]
    client.activate("d", loop="send")  # the whole send: every slot (the lead's contact kept once)
    kept = contacts(server.store.subjects.get("ann"), clock())
    assert [(c.slot_id, c.action_id, c.channel) for c in kept] == [
        ("lead", "email-a", "email"),
        ("second", "push-a", "push"),
    ]
    # two contacts today: the cap suppresses every channel, for Rank and RankMultiSlot alike
    again = client.rank_multi_slot(SEND, [slot("only")], loop="send", subject_id="ann")
    assert {s.action_id for s in again.suppressed} == {"email-a", "push-a"}
    assert again.slots[0].chosen_action_id == "nothing"
    client.reward("d", 1.0, loop="send", slot_id="second")
    clock.advance(61)
    wait_for(lambda: sum(c.joined for c in contacts(server.store.subjects.get("ann"), 0.0)) == 2)
    outcome = {c.slot_id: (c.reward, c.clicked) for c in contacts(server.store.subjects.get("ann"), 0.0)}
    assert outcome == {"lead": (0.0, False), "second": (1.0, True)}


def test_apprentice_answers_each_slots_baseline_and_logs_the_policys_top_candidate(served):
    server, client = served
    client.create_loop("page", policy=CCB, learning_mode=types_pb2.LEARNING_MODE_APPRENTICE)
    slots = [slot("hero", {"s": {"pos": "hero"}}, baseline="tips"), slot("side", {"s": {"pos": "side"}})]
    r = client.rank_multi_slot(ACTIONS, slots, {"u": {"seg": "a"}}, loop="page", event_id="e")
    assert [(s.chosen_action_id, s.probability) for s in r.slots] == [("tips", 1.0), ("hero-sale", 1.0)]
    assert r.policy == "baseline" and r.learning_mode == types_pb2.LEARNING_MODE_APPRENTICE
    logged = _logged(server, "page", "e")
    assert all(0 <= s.policy_top_index < len(s.candidates) for s in logged.slots)


def test_the_work_limit_counts_each_slot_evaluation(tmp_path):
    context = {"u": {"seg": "a", "tokens": [f"t{i}" for i in range(20)]}}
    example = policies.Example(namespaces(context), ACTIONS)
    work = policies.create(CCB).work(example)
    with running_server(tmp_path / "store", limits=Limits(max_generated_features=3 * work)) as (server, client):
        client.create_loop("page", policy=CCB)
        two = [slot("a"), slot("b")]  # asked 1 + 2 times
        assert len(client.rank_multi_slot(ACTIONS, two, context, loop="page").slots) == 2
        with pytest.raises(grpc.RpcError) as e:
            client.rank_multi_slot(ACTIONS, [*two, slot("c")], context, loop="page")  # 1 + 2 + 3
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_generated_features" in e.value.details()


def test_a_holdout_subjects_slots_are_each_decided_by_the_holdout_policy(served):
    server, client = served
    client.create_loop("page", policy=CCB, holdout_fraction=0.5, holdout_policy="random")
    subjects = [f"u{i}" for i in range(20)]
    answers = {
        s: client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "a"}}, loop="page", subject_id=s) for s in subjects
    }
    held = [r for r in answers.values() if r.holdout]
    assert held and len(held) < len(subjects)
    for r in held:
        assert r.policy == "random"
        side = 3 - (r.slots[0].chosen_action_id != "hero-sale")  # not hero-sale, nor the hero's choice
        assert [len(s.ranking) for s in r.slots] == [4, side]
        assert all(p.probability == pytest.approx(1 / len(s.ranking)) for s in r.slots for p in s.ranking)  # uniform


def _slot_join_run(store, max_held):
    """Multi-slot decisions with rewards per slot, for the whole event and for an unknown slot, joined by a joiner
    holding at most `max_held` folds (the others spilled to the store and read back); the joined events and
    counters."""
    clock = FakeClock()
    joiner = Joiner(store.log, "j", clock, max_held=max_held)
    config = normalized(types_pb2.LoopConfig(name="j", reward_wait_seconds=60, default_reward=-1.0))
    rng = np.random.default_rng(4)
    for i in range(30):
        record = records_pb2.DecisionRecord(loop="j", event_id=f"e{i}", pmf=[1.0], config=config, timestamp=clock())
        record.actions.add(id="a")
        record.slots.add(id="hero", candidates=[0], pmf=[1.0])
        record.slots.add(id="side", candidates=[0], pmf=[1.0])
        store.log.append(Stream.DECISIONS, "j", [Entry(f"e{i}", record.SerializeToString())])
        for _ in range(3):
            target = f"e{rng.integers(max(i - 5, 0), i + 1)}"
            slot_id = ["hero", "side", "", "footer"][rng.integers(4)]
            value = float(rng.integers(1, 5))
            reward = records_pb2.RewardRecord(
                loop="j", event_id=target, kind=records_pb2.RewardRecord.KIND_REWARD, value=value, slot_id=slot_id
            )
            reward.timestamp = clock()
            store.log.append(Stream.REWARDS, "j", [Entry(None, reward.SerializeToString())])
        clock.advance(1)
        joiner.step(60)
    clock.advance(120)
    while joiner.step(60):
        pass
    joined = {}
    for _, data in store.log.read(Stream.JOINED, "j", 0, 1000):
        event = records_pb2.JoinedEvent.FromString(data)
        joined[event.decision.event_id] = [(s.slot_id, s.reward, s.reward_count) for s in event.slots]
    s = joiner.state
    return joined, (s.rewards, s.joined, s.defaulted, s.orphans, s.late, s.reward_sum)


@pytest.mark.slow
def test_slot_rewards_join_the_same_when_folds_are_spilled_to_the_store(tmp_path):
    with open_store(str(tmp_path / "a")) as store:
        expected, counters = _slot_join_run(store, max_held=10**6)
    with open_store(str(tmp_path / "b")) as store:
        assert _slot_join_run(store, max_held=2) == (expected, counters)
    assert len(expected) == 30 and counters[3] > 0  # rewards for the unknown slot 'footer' are orphans
    assert any(count > 1 for slots in expected.values() for _, _, count in slots)


def test_deferred_slots_are_learned_once_activated_each_or_all(served_fake_clock, clock, tmp_path):
    server, client = served_fake_clock
    client.create_loop("page", policy=CCB, reward_wait_seconds=10)
    for event_id in ("none", "side", "all"):
        client.rank_multi_slot(ACTIONS, SLOTS, {"u": {"seg": "a"}}, loop="page", event_id=event_id, deferred=True)
        client.reward(event_id, 1.0, loop="page")
    assert client.activate("side", loop="page", slot_id="side") is False
    assert client.activate("side", loop="page", slot_id="side") is True  # a retry
    client.activate("all", loop="page")
    with pytest.raises(grpc.RpcError) as e:
        client.activate("none", loop="page", slot_id="footer")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "slot_id: 'footer'" in e.value.details()
    clock.advance(11)
    wait_for(lambda: client.stats("page").joined == 3)
    activated = {}
    for _, data in server.store.log.read(Stream.JOINED, "page", 0, 10):
        joined = records_pb2.JoinedEvent.FromString(data)
        activated[joined.decision.event_id] = (joined.activated, [s.activated for s in joined.slots])
    assert activated == {"none": (False, [False, False]), "side": (True, [False, True]), "all": (True, [True, True])}
    out = io.StringIO()
    export(server.store, "page", out)
    lines = {(line := json.loads(text))["EventId"]: line for text in out.getvalue().splitlines()}
    assert lines["none"]["_skipLearn"] is True and len(lines["none"]["_outcomes"]) == 2
    # what the learner learned: the activated slots (each slot's candidates are logged with it)
    assert [s["_id"] for s in lines["side"]["c"]["_slots"]] == ["side"] and "_skipLearn" not in lines["side"]
    assert [s["_id"] for s in lines["all"]["_outcomes"]] == ["hero", "side"]
