"""The joiner on a real LMDB store with a fake clock: every accepted reward ends up joined or counted (late or
orphan), and what it holds in memory is bounded: no decision records, a capped number of unmatched rewards."""

import pytest

from nextbest.server.config import normalized
from nextbest.server.joiner import GRACE_SECONDS, Joiner
from nextbest.server.store import Entry, Stream, open_store
from nextbest.testing import FakeClock
from nextbest.v1 import records_pb2, types_pb2

LOOP = "j"
WAIT = 10.0
REWARD = records_pb2.RewardRecord.KIND_REWARD


@pytest.fixture
def store(tmp_path):
    with open_store(str(tmp_path / "store")) as s:
        yield s


def decide(store, event_id, timestamp, wait=WAIT):
    config = normalized(types_pb2.LoopConfig(name=LOOP, reward_wait_seconds=wait, default_reward=-1.0))
    record = records_pb2.DecisionRecord(
        loop=LOOP, event_id=event_id, pmf=[1.0], chosen_index=0, config=config, timestamp=timestamp
    )
    record.actions.add(id="a")
    store.log.append(Stream.DECISIONS, LOOP, [Entry(event_id, record.SerializeToString())])


def reward(store, event_id, timestamp, value=1.0):
    record = records_pb2.RewardRecord(loop=LOOP, event_id=event_id, kind=REWARD, value=value, timestamp=timestamp)
    store.log.append(Stream.REWARDS, LOOP, [Entry(None, record.SerializeToString())])


def accounted(joiner, store):
    """Rewards joined + late + orphans, from the joined events and the joiner's counters."""
    joined = sum(
        records_pb2.JoinedEvent.FromString(data).reward_count
        for _, data in store.log.read(Stream.JOINED, LOOP, 0, 10**6)
    )
    return joined + joiner.state.late + joiner.state.orphans


def test_a_reward_stamped_in_the_window_but_committed_after_the_join_is_counted_late(store):
    clock = FakeClock()
    t = clock()
    decide(store, "e", t)
    joiner = Joiner(store.log, LOOP, clock)
    clock.advance(WAIT + 2 * GRACE_SECONDS)
    assert joiner.step(WAIT) == 1  # the window closed: joined with the default reward
    reward(store, "e", t + WAIT - 0.01)  # stamped inside the window, committed after the join
    joiner.step(WAIT)
    clock.advance(WAIT + 1)  # the reward is past its own window: dropped
    joiner.step(WAIT)
    assert (joiner.state.rewards, joiner.state.late, joiner.state.orphans) == (1, 1, 0)
    assert accounted(joiner, store) == joiner.state.rewards
    joiner.save()
    again = Joiner(store.log, LOOP, clock)  # a restart reads nothing twice
    again.step(WAIT)
    assert (again.state.late, again.state.orphans) == (1, 0)


def test_a_reward_consumed_before_a_restart_is_not_counted_again(store):
    clock = FakeClock()
    t = clock()
    decide(store, "e", t)
    reward(store, "e", t + 1)
    reward(store, "ghost", t + 1)  # held, unmatched: the saved position stays before both rewards
    joiner = Joiner(store.log, LOOP, clock)
    joiner.step(WAIT)
    clock.advance(WAIT + 2 * GRACE_SECONDS)
    assert joiner.step(WAIT) == 1
    joiner.save()
    again = Joiner(store.log, LOOP, clock)  # reads both rewards again
    clock.advance(WAIT + 1)
    again.step(WAIT)
    assert (again.state.joined, again.state.late, again.state.orphans) == (1, 0, 1)
    assert accounted(again, store) == again.state.rewards == 2


def test_unmatched_rewards_beyond_the_cap_are_dropped_as_orphans_and_matched_ones_still_join(store):
    clock = FakeClock()
    t = clock()
    decide(store, "real", t, wait=3600.0)
    reward(store, "real", t + 1, value=5.0)
    for i in range(50):
        reward(store, f"ghost-{i}", t + 1)
    joiner = Joiner(store.log, LOOP, clock, max_unmatched=20)
    joiner.step(3600.0)
    assert joiner.unmatched_rewards == 20 and joiner.state.orphans == 30
    reward(store, "early", t + 2, value=2.0)  # arrives before its decision: held, and joined once it comes
    decide(store, "early", t + 3, wait=3600.0)
    clock.advance(3600.0 + 4)
    assert joiner.step(3600.0) == 2
    joined = {
        j.decision.event_id: j.reward
        for j in (records_pb2.JoinedEvent.FromString(d) for _, d in store.log.read(Stream.JOINED, LOOP, 0, 100))
    }
    assert joined == {"real": 5.0, "early": 2.0}
    clock.advance(1)
    joiner.step(3600.0)  # the remaining orphans are past their window: dropped, counted
    assert joiner.unmatched_rewards == 0 and joiner.state.orphans == 50
    assert accounted(joiner, store) == joiner.state.rewards == 52


def test_the_rewards_of_an_open_decision_are_folded_as_they_arrive(store):
    clock = FakeClock()
    t = clock()
    config = normalized(
        types_pb2.LoopConfig(name=LOOP, reward_wait_seconds=WAIT, reward_aggregation=types_pb2.REWARD_AGGREGATION_SUM)
    )
    record = records_pb2.DecisionRecord(loop=LOOP, event_id="e", pmf=[1.0], config=config, timestamp=t)
    store.log.append(Stream.DECISIONS, LOOP, [Entry("e", record.SerializeToString())])
    reward(store, "e", t - 1, value=0.5)  # stamped before the decision, inside its window
    joiner = Joiner(store.log, LOOP, clock)
    for i in range(1, 1001):
        reward(store, "e", t + i / 1000, value=0.25)
    reward(store, "e", t + 2 * WAIT, value=100.0)  # outside the window: late
    joiner.step(WAIT)
    assert joiner.unmatched_rewards == 0
    clock.advance(2 * WAIT + 1)
    assert joiner.step(WAIT) == 1
    joined = records_pb2.JoinedEvent.FromString(store.log.get(Stream.JOINED, LOOP, "e"))
    assert (joined.reward, joined.reward_count, joiner.state.late) == (0.5 + 250.0, 1001, 1)


def test_open_decisions_are_not_held_as_records(store):
    clock = FakeClock()
    for i in range(30):
        decide(store, f"e{i}", clock(), wait=3600.0)
    joiner = Joiner(store.log, LOOP, clock)
    joiner.step(3600.0)
    assert joiner.pending == 30
    assert not any(isinstance(x, (bytes, records_pb2.DecisionRecord)) for entry in joiner._open for x in entry)


def test_dropped_seqs_are_saved_as_ranges_and_read_back():
    import random

    from nextbest.server.joiner import _SeqRanges

    rng = random.Random(7)
    seqs = set(range(100, 5000)) | {rng.randrange(1, 20000) for _ in range(300)}
    ranges = _SeqRanges([])
    for seq in rng.sample(sorted(seqs), len(seqs)):
        ranges.add(seq)
    assert all((s in ranges) == (s in seqs) for s in range(20001))
    assert len(ranges.ranges()) < 320
    again = _SeqRanges([3, 4, *ranges.ranges()])  # what older versions saved: single seqs
    ranges.forget_through(2000)
    again.forget_through(2000)
    assert again.ranges() == ranges.ranges()
    assert all((s in ranges) == (s in seqs and s > 2000) for s in range(20001))


@pytest.mark.slow
def test_a_flood_of_orphan_rewards_is_capped_and_counted_in_get_stats(served):
    from nextbest.server.joiner import MAX_UNMATCHED_REWARDS
    from nextbest.testing import wait_for
    from nextbest.v1 import decision_pb2

    _, client = served
    client.create_loop("flood", reward_wait_seconds=3600.0)
    over = 25
    flood = (
        decision_pb2.RewardRequest(loop="flood", event_id=f"{i:0200d}", value=1.0)
        for i in range(MAX_UNMATCHED_REWARDS + over)
    )
    assert client.reward_stream(flood).accepted == MAX_UNMATCHED_REWARDS + over
    wait_for(lambda: (s := client.stats("flood")).rewards == MAX_UNMATCHED_REWARDS + over and s.orphan_rewards == over)


def _bounded_run(store, max_held, restart_every=0):
    """Decisions with long and short windows, rewards before and after their decision (and for decisions the joiner
    has not read yet), activations and orphans, seeded; the joiner steps (and, with `restart_every`, is dropped
    without saving and started again) as they come. Returns the joined events by event id, the final counters and the
    most the joiner held after any step."""
    import random

    from nextbest.server.joiner import JoinerState

    rng = random.Random(11)
    clock = FakeClock()
    aggregations = [types_pb2.REWARD_AGGREGATION_SUM, types_pb2.REWARD_AGGREGATION_EARLIEST]

    def start():
        return Joiner(store.log, LOOP, clock, max_unmatched=20, max_held=max_held)

    joiner, most, steps = start(), 0, 0
    for i in range(250):
        event_id, t = f"e{i:04d}", clock()
        if rng.random() < 0.2:  # a reward before its decision
            reward(store, event_id, t - 0.5, value=rng.random())
        config = normalized(
            types_pb2.LoopConfig(
                name=LOOP, reward_wait_seconds=rng.choice([2.0, 3600.0]), reward_aggregation=rng.choice(aggregations)
            )
        )
        record = records_pb2.DecisionRecord(loop=LOOP, event_id=event_id, pmf=[1.0], config=config, timestamp=t)
        store.log.append(Stream.DECISIONS, LOOP, [Entry(event_id, record.SerializeToString())])
        for _ in range(rng.randrange(3)):  # rewards for this or an earlier decision, some of them late
            reward(store, f"e{rng.randrange(max(i - 30, 0), i + 1):04d}", clock(), value=rng.random())
        if rng.random() < 0.1:
            kind = records_pb2.RewardRecord.KIND_ACTIVATION
            activation = records_pb2.RewardRecord(loop=LOOP, event_id=event_id, kind=kind, timestamp=clock())
            store.log.append(Stream.REWARDS, LOOP, [Entry(None, activation.SerializeToString())])
        if rng.random() < 0.05:
            reward(store, f"orphan{i}", clock())
        clock.advance(0.1)
        if i % 7 == 6:
            joiner.step(3600.0)
            most, steps = max(most, joiner.held), steps + 1
            if restart_every and steps % restart_every == 0:
                joiner = start()  # a crash: nothing saved since the last periodic save
    clock.advance(2 * 3600.0 + 1)
    while joiner.step(3600.0):
        most = max(most, joiner.held)
    joiner.save()
    joined = {}
    for _, data in store.log.read(Stream.JOINED, LOOP, 0, 10**6):
        event = records_pb2.JoinedEvent.FromString(data)
        event.ClearField("rewards_seq")  # how far the rewards had been read when it joined
        joined[event.decision.event_id] = event.SerializeToString()
    state = JoinerState.saved(store.log, LOOP)
    counters = (state.rewards, state.activations, state.joined, state.defaulted, state.orphans, state.late)
    return joined, counters, most, state.reward_sum


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "lmdb"])
def test_the_joiner_holds_a_bounded_state_however_many_decisions_are_open_and_joins_the_same(backend, tmp_path):
    from nextbest.server.store.memory import open_memory

    def opened(name):
        return open_memory() if backend == "memory" else open_store(str(tmp_path / name))

    with opened("unbounded") as store:
        expected_joined, expected_counters, _, expected_sum = _bounded_run(store, max_held=10**9)
    for restart_every in (0, 5):
        with opened(f"bounded{restart_every}") as store:
            joined, counters, most, reward_sum = _bounded_run(store, max_held=10, restart_every=restart_every)
            assert store.log.get_cursor(f"{LOOP}/joiner-fold/e0000") is None
            leftover = [i for i in range(250) if store.log.get_cursor(f"{LOOP}/joiner-fold/e{i:04d}") is not None]
        # open decisions, folds and their seqs (10 each), unmatched rewards (20), ranges between those seqs (31)
        assert most <= 3 * 10 + 20 + (10 + 20 + 1)
        assert len(expected_joined) == 250 and joined == expected_joined
        assert counters == expected_counters and reward_sum == pytest.approx(expected_sum)
        assert leftover == []  # every spilled fold is deleted once joined


def test_dropped_rewards_behind_an_old_fold_are_not_held_for_its_whole_window(store):
    """A fold kept from the start of a long window holds the saved rewards position back; the orphans dropped
    behind it would each be held (and saved) until the window closed: past `max_held` rewards folded in memory it is
    spilled, and the rewards it holds are done with."""
    clock = FakeClock()
    decide(store, "old", clock(), wait=3600.0)
    reward(store, "old", clock())
    joiner = Joiner(store.log, LOOP, clock, max_unmatched=5, max_held=10)
    most = 0
    for i in range(200):
        reward(store, "old", clock(), value=0.0)  # folded: the orphans dropped between these are not consecutive
        reward(store, f"orphan{i}", clock())
        clock.advance(0.1)
        if i % 10 == 9:
            joiner.step(3600.0)
            most = max(most, joiner.held)
    assert joiner.state.orphans == 195
    # open decisions, folds and their seqs (10 each), unmatched rewards (5), ranges between those seqs (16)
    assert most <= 3 * 10 + 5 + (10 + 5 + 1)
    clock.advance(2 * 3600.0 + 1)
    while joiner.step(3600.0):
        pass
    old = records_pb2.JoinedEvent.FromString(store.log.get(Stream.JOINED, LOOP, "old"))
    assert (old.reward_count, old.reward, joiner.state.joined) == (201, 1.0, 1)
    assert accounted(joiner, store) == joiner.state.rewards == 401


def test_rewards_dropped_behind_an_unmatched_one_are_not_held_one_range_each_for_its_window(store):
    """An unmatched reward holds the saved rewards position back until it is dropped; the rewards dropped after it
    (here: later rewards of orphans that waited ahead of it, evicted over the cap), separated by rewards that joins
    consumed, must not each be held (and saved) as a range of their own: consumed and dropped rewards are
    remembered together, so the ranges are no more than the rewards still held."""
    clock = FakeClock()
    joiner = Joiner(store.log, LOOP, clock, max_unmatched=50, max_held=10)
    reward(store, "ghost", clock())  # its decision never comes
    clock.advance(5.0)
    reward(store, "ghost", clock())  # its second reward waits on once the first has expired...
    for j in range(25):
        reward(store, f"orphan{j}", clock())  # ...behind these, which came later and wait ahead of it
    clock.advance(5.1)
    joiner.step(10.0)
    most = 0
    for i in range(25 * 26):
        decide(store, f"d{i}", clock(), wait=0.05)  # short windows: their rewards are consumed at once
        reward(store, f"d{i}", clock())
        reward(store, f"orphan{i // 26}", clock())  # the oldest orphan's rewards, evicted together over the cap
        clock.advance(0.005)
        if i % 10 == 9:
            joiner.step(10.0)
            most = max(most, len(joiner.state.rewards_dropped), joiner.held)
    assert joiner.state.rewards_from < 3  # the ghost's second reward still holds the position
    assert joiner.state.orphans > 500 and joiner.state.joined > 600
    # open decisions, folds and their seqs (10 each), unmatched rewards (50), ranges between those seqs (61)
    assert most <= 3 * 10 + 50 + (10 + 50 + 1)
    clock.advance(2 * 3600.0 + 1)
    while joiner.step(10.0):
        pass
    joiner.save()
    assert accounted(joiner, store) == joiner.state.rewards == 2 + 25 + 2 * 25 * 26
