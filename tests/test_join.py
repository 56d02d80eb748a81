"""The joiner, over a real server whose clock the test moves: windows, defaults, aggregation, deferral."""

import grpc
import pytest

from nextbest.client import RewardAggregation, action
from nextbest.server.store import Stream
from nextbest.testing import wait_for
from nextbest.v1 import decision_pb2, records_pb2

ACTIONS = [action("a", "email"), action("b", "push")]
WAIT = 10.0


def joined_events(server, loop):
    return {
        j.decision.event_id: j
        for j in (
            records_pb2.JoinedEvent.FromString(d) for _, d in server.store.log.read(Stream.JOINED, loop, 0, 10**6)
        )
    }


def wait_joined(server, client, loop, count):
    wait_for(lambda: client.stats(loop).joined >= count)
    return joined_events(server, loop)


def make_loop(client, name, **config):
    config.setdefault("reward_wait_seconds", WAIT)
    config.setdefault("default_reward", -0.5)
    return client.create_loop(name, **config)


def test_rewards_in_the_window_join_and_the_default_fills_in(served_fake_clock, clock):
    server, client = served_fake_clock
    make_loop(client, "w")
    for e in ("rewarded", "silent", "late"):
        client.rank(ACTIONS, loop="w", event_id=e)
    clock.advance(3)
    client.reward("rewarded", 2.0, loop="w")
    clock.advance(WAIT - 3 + 1)  # every window has closed
    client.reward("late", 5.0, loop="w")
    joined = wait_joined(server, client, "w", 3)
    assert (joined["rewarded"].reward, joined["rewarded"].reward_count, joined["rewarded"].defaulted) == (2.0, 1, False)
    assert (joined["silent"].reward, joined["silent"].defaulted) == (-0.5, True)
    assert (joined["late"].reward, joined["late"].defaulted) == (-0.5, True)
    clock.advance(WAIT + 1)
    stats = wait_for(lambda: (s := client.stats("w")).late_rewards == 1 and s)
    assert (stats.decisions, stats.rewards, stats.joined, stats.default_rewarded) == (3, 2, 3, 2)
    assert stats.average_reward == pytest.approx((2.0 - 0.5 - 0.5) / 3)
    assert stats.pending_decisions == 0


def test_a_decision_waits_for_its_window(served_fake_clock, clock):
    server, client = served_fake_clock
    make_loop(client, "open")
    client.rank(ACTIONS, loop="open", event_id="e")
    clock.advance(WAIT / 2)
    client.reward("e", 1.0, loop="open")
    wait_for(lambda: client.stats("open").rewards == 1)
    assert client.stats("open").joined == 0 and client.stats("open").pending_decisions == 1
    clock.advance(WAIT)
    assert wait_joined(server, client, "open", 1)["e"].reward == 1.0


def test_rewards_that_arrive_before_their_decision_are_joined(served_fake_clock, clock):
    server, client = served_fake_clock
    make_loop(client, "early")
    client.reward("e1", 3.0, loop="early")
    clock.advance(2)
    client.rank(ACTIONS, loop="early", event_id="e1")
    clock.advance(WAIT + 1)
    joined = wait_joined(server, client, "early", 1)
    assert (joined["e1"].reward, joined["e1"].reward_count) == (3.0, 1)


def test_rewards_for_unknown_events_are_counted_as_orphans_and_dropped(served_fake_clock, clock):
    server, client = served_fake_clock
    make_loop(client, "orph")
    client.reward("ghost", 1.0, loop="orph")
    client.reward("ghost", 2.0, loop="orph")
    clock.advance(WAIT + 1)
    assert wait_for(lambda: client.stats("orph").orphan_rewards == 2)
    assert client.stats("orph").joined == 0


@pytest.mark.parametrize(
    "aggregation,expected",
    [
        (RewardAggregation.REWARD_AGGREGATION_EARLIEST, 0.5),
        (RewardAggregation.REWARD_AGGREGATION_SUM, 1.75),
        (RewardAggregation.REWARD_AGGREGATION_AVERAGE, 1.75 / 3),
        (RewardAggregation.REWARD_AGGREGATION_MIN, -0.25),
        (RewardAggregation.REWARD_AGGREGATION_MAX, 1.5),
        (RewardAggregation.REWARD_AGGREGATION_UNSPECIFIED, 0.5),  # the default is EARLIEST
    ],
)
def test_every_aggregation(served_fake_clock, clock, aggregation, expected):
    server, client = served_fake_clock
    make_loop(client, "agg", reward_aggregation=aggregation)
    client.rank(ACTIONS, loop="agg", event_id="e")
    for value in (0.5, 1.5, -0.25):
        clock.advance(1)
        client.reward("e", value, loop="agg")
    clock.advance(WAIT)
    joined = wait_joined(server, client, "agg", 1)["e"]
    assert joined.reward == pytest.approx(expected) and joined.reward_count == 3


def test_deferred_decisions_are_learned_only_once_activated(served_fake_clock, clock):
    server, client = served_fake_clock
    make_loop(client, "def", publish_interval_seconds=0.05)
    client.rank(ACTIONS, loop="def", event_id="shown", deferred=True)
    client.rank(ACTIONS, loop="def", event_id="never-shown", deferred=True)
    clock.advance(1)
    assert client.activate("shown", loop="def") is False
    assert client.activate("shown", loop="def") is True  # idempotent
    client.reward("shown", 1.0, loop="def")
    client.reward("never-shown", 1.0, loop="def")
    clock.advance(WAIT)
    joined = wait_joined(server, client, "def", 2)
    assert joined["shown"].activated and not joined["never-shown"].activated
    assert client.stats("def").activations == 1

    from nextbest.server.learner import learn_event

    assert learn_event(joined["shown"]) is not None
    assert learn_event(joined["never-shown"]) is None
    wait_for(lambda: client.stats("def").learned == 2)


def test_rewards_with_the_same_reward_id_count_once(served_fake_clock, clock):
    server, client = served_fake_clock
    make_loop(client, "idem", reward_aggregation=RewardAggregation.REWARD_AGGREGATION_SUM)
    client.rank(ACTIONS, loop="idem", event_id="e")
    assert client.reward("e", 1.0, loop="idem", reward_id="click") is False
    assert client.reward("e", 1.0, loop="idem", reward_id="click") is True
    assert client.reward("e", 2.0, loop="idem", reward_id="purchase") is False
    summary = client.reward_stream(
        [decision_pb2.RewardRequest(loop="idem", event_id="e", value=1.0, reward_id=r) for r in ("click", "visit")]
    )
    assert (summary.accepted, summary.duplicates) == (1, 1)
    clock.advance(WAIT + 1)
    joined = wait_joined(server, client, "idem", 1)["e"]
    assert (joined.reward, joined.reward_count) == (4.0, 3)


def test_reward_for_unknown_loop_is_not_found(served_fake_clock):
    _, client = served_fake_clock
    with pytest.raises(grpc.RpcError) as err:
        client.reward("e", 1.0, loop="missing")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_joined_data_is_the_joined_event_with_the_logged_decision():
    from nextbest.server.joiner import join, joined_data
    from nextbest.v1 import records_pb2

    decision = records_pb2.DecisionRecord(
        loop="l", event_id="e" * 200, pmf=[0.25, 0.75], chosen_index=1, timestamp=10.0
    )
    decision.config.reward_wait_seconds = 5.0
    kind = records_pb2.RewardRecord.KIND_REWARD
    reward = records_pb2.RewardRecord(event_id=decision.event_id, kind=kind, value=0.5, timestamp=12.0)
    data = decision.SerializeToString()  # over 127 bytes: a two-byte length
    joined = join(decision, [reward], now=20.0)
    expected = records_pb2.JoinedEvent(decision=decision, reward=0.5, reward_count=1, joined_at=20.0)
    assert records_pb2.JoinedEvent.FromString(joined_data(data, joined)) == expected
