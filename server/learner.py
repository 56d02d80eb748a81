"""The learner: trains a loop's policy (and its shadows) on joined events and publishes models.

It is the only writer of models besides the admin's rollback and import,
which publish conditionally too. Each publish stores the model with the seq
of the last joined event it learned from and the shadows' state, in one
write; a restarted learner loads the live model and resumes right after that
seq, so no event is skipped or learned twice.
"""

from __future__ import annotations

import json
import logging
import math
import time

from nextbest import policies
from nextbest.policies.base import PolicyInputError
from nextbest.server import estimates
from nextbest.server.config import Mode
from nextbest.server.store import PublishConflictError, Store, Stream, cursor_name
from nextbest.v1 import admin_pb2, records_pb2, types_pb2

log = logging.getLogger("nextbest")

_BATCH = 500
DEFAULT_KEEP_MODELS = 10


def learn_event(joined: records_pb2.JoinedEvent) -> policies.LearnEvent | None:
    """What a policy learns from a joined event, or None when it must not learn from it.

    LOGGING_ONLY decisions, deferred decisions never activated (of a
    multi-slot one, the slots not activated), and holdout decisions (unless
    the config logged with them says `holdout_learn`) are not learned from.
    The probability is the logged one.
    """
    d = joined.decision
    if d.config.learning_mode == Mode.LEARNING_MODE_LOGGING_ONLY or (d.deferred and not joined.activated):
        return None
    if d.holdout and not d.config.holdout_learn:
        return None
    example = policies.Example(d.context, d.actions)
    if d.slots:
        return _multi_slot_event(example, d, joined)
    return policies.LearnEvent(
        example=example,
        chosen_index=d.chosen_index,
        probability=d.pmf[d.chosen_index],
        reward=joined.reward,
    )


def _multi_slot_event(
    example: policies.Example, d: records_pb2.DecisionRecord, joined: records_pb2.JoinedEvent
) -> policies.LearnEvent:
    """A multi-slot event: each slot with its logged candidates, choice and probability, and its joined reward (of a
    deferred decision, only the slots activated: each slot's candidates are logged, so a slot learns the same
    without the slots before it)."""
    slots = tuple(
        policies.SlotOutcome(
            slot=policies.Slot(slot.features, tuple(slot.candidates)),
            chosen_index=slot.chosen_index,
            probability=slot.pmf[slot.chosen_index],
            reward=outcome.reward,
        )
        for slot, outcome in zip(d.slots, joined.slots, strict=True)
        if outcome.activated or not d.deferred
    )
    first = slots[0]
    return policies.LearnEvent(example, first.action_index, first.probability, first.reward, slots)


def learned_position(store: Store, loop: str) -> int:
    """The seq of the last joined event the loop's learner has consumed, as durably recorded.

    That is the live model's `learned_seq`, or further when the learner has
    since only skipped events (their position is saved with the unchanged
    model's version in the cursor `<loop>/learner`).
    """
    live = store.models.live(loop)
    seq = live.learned_seq if live else 0
    saved = store.log.get_cursor(cursor_name(loop, "learner"))
    if saved:
        cursor = json.loads(saved)
        if cursor["version"] == (live.version if live else 0):
            seq = max(seq, cursor["seq"])
    return seq


def state_estimates(state: records_pb2.LearnerState) -> list[admin_pb2.PolicyEstimate]:
    """The live policy's and every shadow's estimate, live first."""
    out = [estimates.estimate(state.live_spec, state.live_estimate, live=True)] if state.live_spec else []
    return out + [estimates.estimate(s.spec, s.estimate) for s in state.shadows]


def _finite(policy: policies.Policy, example: policies.Example) -> bool:
    """Whether the policy's prediction on `example` is a finite pmf (`pmf` raises on a NaN or inf one)."""
    try:
        policy.pmf(example)
    except PolicyInputError:  # the input, not the model: e.g. a fixed policy with no positive weight here
        return True
    except ValueError:
        return False
    return True


def _probability(policy: policies.Policy, event: policies.LearnEvent, event_id: str) -> float:
    """The policy's probability of the logged decision: of the chosen action, or (multi-slot) of every slot's choice,
    each slot given the earlier slots' logged choices."""
    if not event.slots:
        return float(policy.pmf(event.example, event_id)[event.chosen_index])
    slots = [s.slot for s in event.slots]
    p = 1.0
    for i, s in enumerate(event.slots):
        chosen = [earlier.action_index for earlier in event.slots[:i]]
        p *= float(policy.slot_pmf(event.example, slots, chosen, event_id)[s.chosen_index])
    return p


def _logged_probability(event: policies.LearnEvent) -> float:
    """The logged probability of the decision: of the chosen action, or the product over the slots."""
    return math.prod(s.probability for s in event.slots) if event.slots else event.probability


def _counted(n: int) -> bool:
    """Whether the n-th occurrence of something is logged: the 1st, 2nd, 4th, 8th… (bounded log volume)."""
    return n & (n - 1) == 0


class _Shadow:
    def __init__(self, policy: policies.Policy, start_seq: int, sums: records_pb2.EstimateSums | None = None) -> None:
        self.policy = policy
        self.start_seq = start_seq
        self.sums = sums or records_pb2.EstimateSums()


class Learner:
    """Learns one loop's joined stream in order; `step()` does what is due.

    A shadow never touches the live policy or the learner's progress: an event it cannot score or
    learn is skipped for it alone and counted. A model whose prediction on the last event learned is
    not finite is not published: the last good model keeps serving, the refusal is counted, and the
    learner goes back to that model and relearns the events since, one at a time, skipping (and
    counting) each one that makes the prediction not finite.
    """

    def __init__(self, store: Store, loop: str, config: types_pb2.LoopConfig, keep_models: int = DEFAULT_KEEP_MODELS):
        self._store = store
        self._loop = loop
        self._keep = keep_models
        self._shadows: dict[str, _Shadow] = {}
        self._live_sums = records_pb2.EstimateSums()
        self._version = -1
        self._refused = 0
        self._careful_until = 0  # relearn event by event, checking each, up to this seq
        self._rewind = False  # a model was refused: go back to the last good one
        self._adopt_live(config)

    def _saved_config(self, config: types_pb2.LoopConfig) -> types_pb2.LoopConfig:
        """The loop's stored config: an admin call changes it before it publishes, so a caller's copy (read at the
        start of a trainer's pass) may predate a model published since; `config` when the loop is gone."""
        saved = self._store.configs.get(self._loop)
        return types_pb2.LoopConfig.FromString(saved) if saved is not None else config

    def _adopt_live(self, config: types_pb2.LoopConfig) -> None:
        """Take the live model (and its shadows) as the learner's state, when it is of the configured spec,
        else the configured spec's checkpointed shadow (a promotion the learner had not acted on yet)."""
        live = self._store.models.live(self._loop)
        config = self._saved_config(config)  # read after the live model: as new as the call that published it
        self._version = live.version if live else 0
        self.learned_seq = learned_position(self._store, self._loop)
        state = records_pb2.LearnerState.FromString(live.state) if live else records_pb2.LearnerState()
        shadows = {s.spec: s for s in state.shadows}
        promoted = shadows.pop(config.policy, None)
        if live is not None and live.spec == config.policy:
            self._policy = policies.load(live.spec, live.data)
            self._start_seq = state.live_start_seq
            self._dirty = False
        elif promoted is not None:
            log.info("loop %s: policy is now %s (warm, promoted)", self._loop, config.policy)
            self._policy = policies.load(promoted.spec, promoted.model)
            self._start_seq = promoted.start_seq
            self._dirty = True
        else:  # a new loop, or a new spec that no model has yet: start fresh from here
            self._policy = policies.create(config.policy)
            self._start_seq = self.learned_seq
            self._dirty = live is not None
        self._live_sums = state.live_estimate if state.live_spec == self._policy.spec else records_pb2.EstimateSums()
        self._shadows = {
            spec: _Shadow(policies.load(spec, s.model), s.start_seq, s.estimate) for spec, s in shadows.items()
        }
        self._refused = max(self._refused, state.refused_models)
        self._rewind = False
        self._last_example: policies.Example | None = None
        self._last_publish = float("-inf") if self._dirty else time.monotonic()

    def step(self, config: types_pb2.LoopConfig) -> int:
        """Learn from new joined events; publish when the interval has passed. Returns events consumed."""
        if self._store.models.live_version(self._loop) != self._version:
            log.info("loop %s: a model was published by an admin call; adopting it", self._loop)
            self._adopt_live(config)
        elif self._rewind:
            self._adopt_live(config)
        if config.policy != self._policy.spec or set(config.shadow_policies) != set(self._shadows):
            config = self._saved_config(config)  # a change: only when the caller's copy is not older than the model
        self._sync_policies(config)
        batch = self._store.log.read(Stream.JOINED, self._loop, self.learned_seq, _BATCH)
        if batch:
            learned = 0
            for seq, data in batch:
                joined = records_pb2.JoinedEvent.FromString(data)
                event = learn_event(joined)
                if event is not None:
                    self._learn(joined, event, careful=seq <= self._careful_until)
                    learned += 1
            self.learned_seq = batch[-1][0]
            if learned and (self._policy.learns or self._shadows):
                self._dirty = True
            elif not self._dirty:  # nothing learned (skipped, or a policy that does not learn): position alone
                position = {"version": self._version, "seq": self.learned_seq}
                self._store.log.set_cursor(cursor_name(self._loop, "learner"), json.dumps(position).encode())
        if self._dirty and time.monotonic() - self._last_publish >= config.publish_interval_seconds:
            self.publish()
        return len(batch)

    def _sync_policies(self, config: types_pb2.LoopConfig) -> None:
        if config.policy != self._policy.spec:
            shadow = self._shadows.pop(config.policy, None)
            log.info(
                "loop %s: policy is now %s (%s) from joined seq %d",
                self._loop,
                config.policy,
                "warm" if shadow else "fresh",
                shadow.start_seq if shadow else self.learned_seq,
            )
            self._policy = shadow.policy if shadow else policies.create(config.policy)
            self._start_seq = shadow.start_seq if shadow else self.learned_seq
            self._live_sums = records_pb2.EstimateSums()
            self._last_example = None
            self._dirty = True
            self._last_publish = float("-inf")  # a new spec takes effect at once
        wanted = set(config.shadow_policies)
        for spec in set(self._shadows) - wanted:
            del self._shadows[spec]
        for spec in wanted - set(self._shadows):
            self._shadows[spec] = _Shadow(policies.create(spec), self.learned_seq)
            self._dirty = True

    def _learn(self, joined: records_pb2.JoinedEvent, event: policies.LearnEvent, careful: bool) -> None:
        d = joined.decision
        for spec, shadow in self._shadows.items():
            self._shadow_learn(spec, shadow, d, event, joined.reward)
        if careful:
            before = self._policy.save()
            self._policy.learn([event])
            if not _finite(self._policy, event.example):
                self._policy = policies.load(self._policy.spec, before)
                self._live_sums.skipped += 1
                log.warning(
                    "loop %s: skipped event %r: learning it made the live policy's predictions not finite",
                    self._loop,
                    d.event_id,
                )
                return
        else:
            self._policy.learn([event])
        if d.policy == self._policy.spec and not d.holdout:
            estimates.add(self._live_sums, 1.0, joined.reward)
        self._last_example = event.example

    def _shadow_learn(
        self,
        spec: str,
        shadow: _Shadow,
        decision: records_pb2.DecisionRecord,
        event: policies.LearnEvent,
        joined_reward: float,
    ) -> None:
        """Learn the event; estimate on it unless it is a holdout decision (the estimates are of the treatment's
        traffic, which the holdout's policy would skew). A multi-slot decision is estimated as a whole: the ratio
        of the products of its slots' probabilities, and the sum of its slots' rewards."""
        event_id = decision.event_id
        try:
            p = _probability(shadow.policy, event, event_id)
            shadow.policy.learn([event])
        except Exception as e:  # whatever a shadow raises must not reach the live policy or the position
            shadow.sums.skipped += 1
            if _counted(shadow.sums.skipped):
                log.warning(
                    "loop %s: shadow %s skipped event %r (%d skipped so far): %s",
                    self._loop,
                    spec,
                    event_id,
                    shadow.sums.skipped,
                    e,
                )
            return
        if not decision.holdout:
            estimates.add(shadow.sums, p / _logged_probability(event), joined_reward)

    def state(self) -> records_pb2.LearnerState:
        """The live policy's and the shadows' estimates as of now (without model bytes)."""
        return self._state(with_models=False)

    def _state(self, with_models: bool) -> records_pb2.LearnerState:
        return records_pb2.LearnerState(
            live_spec=self._policy.spec,
            live_estimate=self._live_sums,
            live_start_seq=self._start_seq,
            refused_models=self._refused,
            shadows=[
                records_pb2.ShadowState(
                    spec=spec, estimate=s.sums, model=s.policy.save() if with_models else b"", start_seq=s.start_seq
                )
                for spec, s in sorted(self._shadows.items())
            ],
        )

    def publish(self) -> None:
        """Publish the current model (with position and shadows) if it changed since the last publish,
        unless its predictions are not finite (then the next step goes back to the last good model)."""
        if not self._dirty:
            return
        if self._policy.learns and self._last_example is not None and not _finite(self._policy, self._last_example):
            self._refused += 1
            self._careful_until = self.learned_seq
            self._rewind = True
            log.error(
                "loop %s: refused to publish a model whose predictions are not finite (learned through %d); "
                "the last good model keeps serving, and the events since are relearned one by one",
                self._loop,
                self.learned_seq,
            )
            return
        state = self._state(with_models=True).SerializeToString()
        try:
            model = self._store.models.publish(
                self._loop, self._policy.spec, self._policy.save(), self.learned_seq, state, if_live=self._version
            )
        except PublishConflictError:
            return  # an admin call published meanwhile; the next step adopts its model
        log.info(
            "loop %s: published model version %d (learned through %d)",
            self._loop,
            model.version,
            model.learned_seq,
            extra={"loop": self._loop},
        )
        self._version = model.version
        self._dirty = False
        self._last_publish = time.monotonic()
        self._store.models.prune(self._loop, self._keep)
