"""The joiner, learner and trainer as units: the in-memory store, a fake clock, the services called in-process
(no gRPC, no polling)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nextbest.client import action, namespaces
from nextbest.server.admin_service import AdminService
from nextbest.server.catalog import Catalog
from nextbest.server.config import Limits
from nextbest.server.decision_service import DecisionService
from nextbest.server.joiner import Joiner
from nextbest.server.learner import Learner, learned_position
from nextbest.server.store import Store, Stream
from nextbest.server.store.base import Lease
from nextbest.server.store.memory import MemoryBackend, open_memory
from nextbest.server.trainer import Trainer
from nextbest.testing import FakeClock
from nextbest.v1 import admin_pb2, decision_pb2, records_pb2, types_pb2

WAIT = 10.0
LEASE = 30.0  # longer than WAIT: the clock passes reward windows without passing the lease's TTL
ACTIONS = [action("a", "email"), action("b", "push")]


@dataclass
class Loop:
    """A loop's services over one in-memory store."""

    store: Store
    clock: FakeClock
    decisions: DecisionService
    admin: AdminService

    def rank(self, event_id: str, x: float = 0.0) -> decision_pb2.RankResponse:
        request = decision_pb2.RankRequest(
            loop="l", event_id=event_id, actions=ACTIONS, context=namespaces({"u": {"x": x}})
        )
        return self.decisions.Rank(request, None)

    def reward(self, event_id: str, value: float) -> None:
        self.decisions.Reward(decision_pb2.RewardRequest(loop="l", event_id=event_id, value=value), None)

    def joined(self) -> dict[str, records_pb2.JoinedEvent]:
        events = (records_pb2.JoinedEvent.FromString(d) for _, d in self.store.log.read(Stream.JOINED, "l", 0, 10**6))
        return {j.decision.event_id: j for j in events}

    def config(self) -> types_pb2.LoopConfig:
        return types_pb2.LoopConfig.FromString(self.store.configs.get("l"))


def make_loop(store: Store, clock: FakeClock, **config: object) -> Loop:
    catalog = Catalog(store)
    admin = AdminService(store, catalog, Limits())
    config.setdefault("reward_wait_seconds", WAIT)
    config.setdefault("default_reward", -0.5)
    admin.CreateLoop(admin_pb2.CreateLoopRequest(config=types_pb2.LoopConfig(name="l", **config)), None)
    return Loop(store, clock, DecisionService(store.log, catalog, Limits(), clock), admin)


@pytest.fixture
def loop(clock: FakeClock) -> Loop:
    return make_loop(open_memory(clock=clock), clock)


def test_the_joiner_joins_in_the_window_defaults_and_counts_late_and_orphan_rewards(loop: Loop) -> None:
    joiner = Joiner(loop.store.log, "l", loop.clock)
    for e in ("rewarded", "silent"):
        loop.rank(e)
    loop.clock.advance(3)
    loop.reward("rewarded", 2.0)
    loop.reward("nobody", 1.0)
    assert joiner.step(WAIT) == 0 and loop.joined() == {}  # windows still open
    loop.clock.advance(WAIT)
    joiner.step(WAIT)
    joined = loop.joined()
    assert (joined["rewarded"].reward, joined["rewarded"].defaulted) == (2.0, False)
    assert (joined["silent"].reward, joined["silent"].defaulted) == (-0.5, True)
    loop.reward("silent", 5.0)  # after its window closed
    loop.clock.advance(WAIT + 1)
    joiner.step(WAIT)
    state = joiner.state
    assert (state.joined, state.defaulted, state.late, state.orphans, state.rewards) == (2, 1, 1, 1, 3)


def test_a_joiner_restarted_from_its_saved_state_joins_each_decision_once(loop: Loop) -> None:
    joiner = Joiner(loop.store.log, "l", loop.clock)
    loop.rank("e1")
    loop.clock.advance(WAIT + 1)
    joiner.step(WAIT)
    joiner.save()
    loop.rank("e2")
    loop.clock.advance(WAIT + 1)
    again = Joiner(loop.store.log, "l", loop.clock)
    again.step(WAIT)
    assert sorted(loop.joined()) == ["e1", "e2"]
    assert loop.store.log.last_seq(Stream.JOINED, "l") == 2


def test_the_learner_learns_the_logged_probability_and_resumes_exactly_once(loop: Loop) -> None:
    joiner = Joiner(loop.store.log, "l", loop.clock)
    for i in range(20):
        r = loop.rank(f"e{i}", x=i % 2)
        loop.reward(r.event_id, 1.0 if r.chosen_action_id == "a" else 0.0)
    loop.clock.advance(WAIT + 1)
    joiner.step(WAIT)
    learner = Learner(loop.store, "l", loop.config())
    assert learner.step(loop.config()) == 20
    learner.publish()
    live = loop.store.models.live("l")
    assert live.learned_seq == 20 and learned_position(loop.store, "l") == 20

    restarted = Learner(loop.store, "l", loop.config())
    assert restarted.step(loop.config()) == 0  # nothing learned twice
    loop.rank("late-comer")
    loop.clock.advance(WAIT + 1)
    joiner.step(WAIT)
    assert restarted.step(loop.config()) == 1
    restarted.publish()
    assert loop.store.models.live("l").learned_seq == 21


def test_the_trainer_joins_learns_and_publishes_every_loop(loop: Loop) -> None:
    trainer = Trainer(loop.store, loop.clock)
    for i in range(5):
        loop.rank(f"e{i}")
    loop.clock.advance(WAIT + 1)
    assert trainer.step() >= 10  # 5 joined + 5 learned
    trainer.stop()  # saves the joiner and publishes the learner
    stats = trainer.stats("l")
    assert (stats.joined, stats.learned) == (5, 5)
    assert loop.store.models.live("l").learned_seq == 5


def test_two_trainers_on_one_store_share_no_loop(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    loop = make_loop(open_memory(backend), clock)
    first, second = Trainer(open_memory(backend), clock), Trainer(open_memory(backend), clock)
    loop.rank("e1")
    clock.advance(WAIT + 1)
    assert first.step() == 2
    assert second.step() == 0  # stands by: the first holds the loop's lease
    assert first.learner_state("l") is not None and second.learner_state("l") is None


def test_trainers_sharing_a_store_spread_its_loops_and_a_replacement_takes_a_stopped_ones(clock: FakeClock) -> None:
    """With `trainers=3`, each trainer takes at most a third of the loops (rounded up): the first one to pass does not
    take every loop, so each loop is learned by one trainer and all three learn. When one stops (releasing its
    leases), the others stay at their share and its replacement (`nextbest serve` starts one) takes its loops."""
    backend = MemoryBackend(clock=clock)
    loop = make_loop(open_memory(backend), clock)
    names = set("lmnopq")
    for name in sorted(names - {"l"}):
        loop.admin.CreateLoop(admin_pb2.CreateLoopRequest(config=types_pb2.LoopConfig(name=name)), None)

    def spread(trainers: list[Trainer]) -> list[set[str]]:
        for trainer in trainers:
            trainer.step()
        return [{name for name in names if t.learner_state(name) is not None} for t in trainers]

    trainers = [Trainer(open_memory(backend), clock, lease_seconds=LEASE, trainers=3) for _ in range(3)]
    held = spread(trainers)
    assert [len(h) for h in held] == [2, 2, 2] and set().union(*held) == names
    trainers[0].stop()
    replacement = Trainer(open_memory(backend), clock, lease_seconds=LEASE, trainers=3)
    assert spread([*trainers[1:], replacement]) == [held[1], held[2], held[0]]


def test_a_standby_trainer_takes_over_a_lease_left_to_expire_on_the_trainers_clock(clock: FakeClock) -> None:
    """The lease and its renewals follow the trainers' clock: when it passes the lease's TTL without a renewal,
    the standby takes the loop on its next step and the former holder stands by on its next step."""
    backend = MemoryBackend(clock=clock)
    loop = make_loop(open_memory(backend), clock)
    first, second = (Trainer(open_memory(backend), clock, lease_seconds=LEASE) for _ in range(2))
    loop.rank("e1")
    clock.advance(WAIT + 1)
    assert first.step() == 2
    assert second.step() == 0
    clock.advance(LEASE / 2)  # not expired yet: the first still holds the loop
    assert second.step() == 0 and second.learner_state("l") is None
    clock.advance(LEASE / 2 + 0.1)  # the first did not renew within the TTL
    loop.rank("e2")
    clock.advance(WAIT + 1)
    assert second.step() >= 2  # takes over: joins and learns e2 (and e1, which the first never checkpointed)
    assert first.step() == 0  # stands by: the second holds the lease now
    assert first.learner_state("l") is None and second.learner_state("l") is not None
    assert sorted(loop.joined()) == ["e1", "e2"] and loop.store.log.last_seq(Stream.JOINED, "l") == 2


def test_a_trainer_whose_clock_went_back_renews_its_lease_at_once(clock: FakeClock) -> None:
    """Renewing only once the clock is a third of the TTL past the last renewal would wait as long as the clock
    went back, while the lease record (by other trainers' clocks) runs out."""
    backend = MemoryBackend(clock=clock)
    make_loop(open_memory(backend), clock)
    trainer = Trainer(open_memory(backend), clock, lease_seconds=LEASE)
    trainer.step()
    clock.advance(-3600)
    trainer.step()
    assert backend.leases["train/l"] == Lease(trainer.holder, clock() + LEASE)


def test_a_model_imported_while_the_trainer_holds_an_older_config_is_adopted_not_overwritten(loop: Loop) -> None:
    """ImportModel changes the config, then publishes; a learner step with the config read before both must take
    the imported model (it used to start the new spec fresh on the next step and publish over the import)."""
    from nextbest import policies

    stale = loop.config()  # policy: the default
    learner = Learner(loop.store, "l", stale)
    learner.step(stale)
    spec = "vw:--cb_explore_adf --epsilon 0.1 -q ::"
    raw = policies.export_state(spec, policies.create(spec).save())
    request = admin_pb2.ImportModelRequest(loop="l", spec=spec, data=raw)
    info = loop.admin.ImportModel(iter([request]), None)
    assert loop.config().policy == spec
    learner.step(stale)  # the trainer's pass read the config before the import
    learner.step(loop.config())
    assert loop.store.models.live_version("l") == info.version


def test_a_learner_started_after_an_import_with_a_config_read_before_it_keeps_the_imported_model(loop: Loop) -> None:
    """A trainer's pass reads the configs, an import changes the config and publishes, then the pass starts the
    loop's learner with its copy (seen on a fresh clone: the learner published a fresh model over the import)."""
    from nextbest import policies

    stale = loop.config()
    spec = "vw:--cb_explore_adf --epsilon 0.1 -q ::"
    raw = policies.export_state(spec, policies.create(spec).save())
    info = loop.admin.ImportModel(iter([admin_pb2.ImportModelRequest(loop="l", spec=spec, data=raw)]), None)
    learner = Learner(loop.store, "l", stale)
    learner.step(stale)
    learner.step(loop.config())
    assert loop.store.models.live_version("l") == info.version
    assert policies.export_state(spec, loop.store.models.live("l").data) == raw
