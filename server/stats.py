"""A loop's statistics (GetStats, the metrics endpoint): from the store, or from a live joiner's and learner's
state."""

from __future__ import annotations

import time

from nextbest.server.joiner import JoinerState
from nextbest.server.learner import learned_position, state_estimates
from nextbest.server.lift import LiftState
from nextbest.server.store import Store, Stream
from nextbest.server.subjects.outcomes import OutcomesState
from nextbest.v1 import admin_pb2, records_pb2


def loop_stats(
    store: Store,
    loop: str,
    joiner: JoinerState | None = None,
    learner: records_pb2.LearnerState | None = None,
    lift: LiftState | None = None,
) -> admin_pb2.LoopStats:
    """Statistics of one loop from what the store holds, or from the live joiner's, learner's and lift's state."""
    if joiner is None:
        joiner = JoinerState.saved(store.log, loop)
    j = joiner
    live = store.models.live(loop)
    if learner is None:
        learner = records_pb2.LearnerState.FromString(live.state) if live else records_pb2.LearnerState()
    learned = learned_position(store, loop)
    joined_last = store.log.last_seq(Stream.JOINED, loop)
    lag_seconds = 0.0
    if joined_last > learned:
        oldest = store.log.read(Stream.JOINED, loop, learned, 1)
        if oldest:
            lag_seconds = max(0.0, time.time() - records_pb2.JoinedEvent.FromString(oldest[0][1]).joined_at)
    decisions = store.log.last_seq(Stream.DECISIONS, loop)
    if lift is None:
        lift = LiftState.saved(store.log, loop)
    return admin_pb2.LoopStats(
        loop=loop,
        decisions=decisions,
        rewards=j.rewards,
        activations=j.activations,
        joined=j.joined,
        default_rewarded=j.defaulted,
        orphan_rewards=j.orphans,
        late_rewards=j.late,
        average_reward=j.reward_sum / j.joined if j.joined else 0.0,
        learned=learned,
        learner_lag_events=joined_last - learned,
        learner_lag_seconds=lag_seconds,
        pending_decisions=decisions - j.decisions_closed,
        model_version=str(live.version if live else 0),
        apprentice_match_rate=j.apprentice_matches / j.apprentice_joined if j.apprentice_joined else 0.0,
        policies=state_estimates(learner),
        refused_models=learner.refused_models,
        lift=lift.lift(),
        suppressed=OutcomesState.saved(store.log, loop).rule_counts(),
    )
