"""Rank: ranking, seeded sampling, the durable decision record, idempotent retries."""

import math

import pytest

from nextbest.client import action
from nextbest.server.config import DEFAULT_POLICY
from nextbest.server.sampling import sample_index, seeded_uniform
from nextbest.server.store import Stream
from nextbest.v1 import records_pb2

ACTIONS = [
    action("welcome-email", "email", {"offer": {"kind": "welcome"}}),
    action("app-tip", "push", {"offer": {"kind": "tip", "value": 2.5}}),
    action("sms-coupon", "sms", {"offer": {"kind": "coupon"}}),
]
CONTEXT = {"user": {"segment": "student", "visits": 3, "tokens": ["likes", "sports"]}}


def logged(server, loop, event_id):
    data = server.store.log.get(Stream.DECISIONS, loop, event_id)
    return records_pb2.DecisionRecord.FromString(data) if data else None


def test_rank_answers_a_ranking_that_sums_to_one_and_logs_it(served):
    server, client = served
    r = client.rank(ACTIONS, CONTEXT, event_id="e-1")
    assert r.event_id == "e-1"
    assert [a.action_id for a in r.ranking] and {a.action_id for a in r.ranking} == {a.id for a in ACTIONS}
    probs = [a.probability for a in r.ranking]
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-12)
    assert probs == sorted(probs, reverse=True)
    assert r.chosen_action_id in {a.id for a in ACTIONS}
    assert r.policy == DEFAULT_POLICY
    assert r.model_version == "0"

    record = logged(server, "default", "e-1")
    assert [a.id for a in record.actions] == [a.id for a in ACTIONS]
    assert record.actions[record.chosen_index].id == r.chosen_action_id
    assert dict(zip([a.id for a in record.actions], record.pmf, strict=True)) == {
        a.action_id: a.probability for a in r.ranking
    }
    assert record.context["user"].categorical["segment"] == "student"
    assert record.model_version == "0" and record.config.name == "default" and record.timestamp > 0


def test_chosen_action_is_reproducible_from_the_log(served):
    server, client = served
    for i in range(50):
        client.rank(ACTIONS, CONTEXT, event_id=f"rep-{i}")
    for i in range(50):
        record = logged(server, "default", f"rep-{i}")
        assert record.chosen_index == sample_index(record.pmf, seeded_uniform("default", f"rep-{i}"))
        assert record.pmf[record.chosen_index] > 0


def test_sampling_follows_the_pmf():
    pmf = [0.7, 0.0, 0.2, 0.1]
    counts = [0, 0, 0, 0]
    for i in range(20000):
        counts[sample_index(pmf, seeded_uniform("loop", f"e{i}"))] += 1
    assert counts[1] == 0
    for c, p in zip(counts, pmf, strict=True):
        assert abs(c / 20000 - p) < 0.015


def test_sampling_never_picks_a_zero_probability_action():
    assert sample_index([0.5, 0.5, 0.0], 0.9999999999999999) == 1
    with pytest.raises(ValueError, match="no positive"):
        sample_index([0.0, 0.0], 0.5)


def test_excluded_actions_are_not_ranked(served):
    server, client = served
    r = client.rank(ACTIONS, CONTEXT, event_id="ex-1", excluded=["app-tip"])
    assert {a.action_id for a in r.ranking} == {"welcome-email", "sms-coupon"}
    assert list(logged(server, "default", "ex-1").excluded_action_ids) == ["app-tip"]


def test_empty_event_id_gets_a_generated_one(served):
    _, client = served
    a = client.rank(ACTIONS, CONTEXT)
    b = client.rank(ACTIONS, CONTEXT)
    assert a.event_id and b.event_id and a.event_id != b.event_id


def test_retried_rank_returns_the_logged_decision_and_logs_nothing(served):
    server, client = served
    first = client.rank(ACTIONS, CONTEXT, event_id="retry-1")
    decisions = server.store.log.last_seq(Stream.DECISIONS, "default")
    # A retry with other candidates still answers with what was logged.
    again = client.rank(ACTIONS[:2], {"user": {"segment": "other"}}, event_id="retry-1")
    assert again == first
    assert server.store.log.last_seq(Stream.DECISIONS, "default") == decisions


def test_single_action_gets_probability_one(served):
    _, client = served
    r = client.rank([action("only", "web")])
    assert r.chosen_action_id == "only" and r.ranking[0].probability == 1.0
