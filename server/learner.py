"""The learner: trains a loop's policy on its joined events and publishes models.

It is the only writer of models. Each publish stores the model together with
the seq of the last joined event it learned from, in one write; a restarted
learner loads the live model and resumes right after that seq, so no event is
skipped or learned twice.
"""

from __future__ import annotations

import json
import logging
import time

import policies
from server.config import Mode
from server.pb import records_pb2, types_pb2
from server.store import Store, Stream

log = logging.getLogger("nextbest")

_BATCH = 500


def learn_event(joined: records_pb2.JoinedEvent) -> policies.LearnEvent | None:
    """What a policy learns from a joined event, or None when it must not learn from it.

    LOGGING_ONLY decisions and deferred decisions never activated are not
    learned from. The probability is the logged one.
    """
    d = joined.decision
    if d.config.learning_mode == Mode.LEARNING_MODE_LOGGING_ONLY or (d.deferred and not joined.activated):
        return None
    return policies.LearnEvent(
        example=policies.Example(d.context, d.actions),
        chosen_index=d.chosen_index,
        probability=d.pmf[d.chosen_index],
        reward=joined.reward,
    )


def learned_position(store: Store, loop: str) -> int:
    """The seq of the last joined event the loop's learner has consumed, as durably recorded.

    That is the live model's `learned_seq`, or further when the learner has
    since only skipped events (their position is saved with the unchanged
    model's version in the cursor `<loop>/learner`).
    """
    live = store.models.live(loop)
    seq = live.learned_seq if live else 0
    saved = store.log.get_cursor(f"{loop}/learner")
    if saved:
        cursor = json.loads(saved)
        if cursor["version"] == (live.version if live else 0):
            seq = max(seq, cursor["seq"])
    return seq


class Learner:
    """Learns one loop's joined stream in order; `step()` does what is due."""

    def __init__(self, store: Store, loop: str, config: types_pb2.LoopConfig) -> None:
        self._store = store
        self._loop = loop
        live = store.models.live(loop)
        self._version = live.version if live else 0
        self.learned_seq = learned_position(store, loop)
        if live is not None and live.spec == config.policy:
            self._policy = policies.load(live.spec, live.data)
            self._dirty = False
        else:  # a new loop, or a new policy spec: start fresh from here
            self._policy = policies.create(config.policy)
            self._dirty = live is not None
        self._last_publish = time.monotonic()

    def step(self, config: types_pb2.LoopConfig) -> int:
        """Learn from new joined events; publish when the interval has passed. Returns events consumed."""
        if config.policy != self._policy.spec:
            log.info("loop %s: policy changed to %s; learning a new model", self._loop, config.policy)
            self._policy = policies.create(config.policy)
            self._dirty = True
            self._last_publish = float("-inf")  # a new spec takes effect at once
        batch = self._store.log.read(Stream.JOINED, self._loop, self.learned_seq, _BATCH)
        if batch:
            events = [e for _, d in batch if (e := learn_event(records_pb2.JoinedEvent.FromString(d))) is not None]
            self._policy.learn(events)
            self.learned_seq = batch[-1][0]
            if events:
                self._dirty = True
            elif not self._dirty:  # only skipped: the model is unchanged, record the position alone
                position = {"version": self._version, "seq": self.learned_seq}
                self._store.log.set_cursor(f"{self._loop}/learner", json.dumps(position).encode())
        if self._dirty and time.monotonic() - self._last_publish >= config.publish_interval_seconds:
            self.publish()
        return len(batch)

    def publish(self) -> None:
        """Publish the current model (with its position) if it changed since the last publish."""
        if not self._dirty:
            return
        model = self._store.models.publish(self._loop, self._policy.spec, self._policy.save(), self.learned_seq)
        self._version = model.version
        log.info(
            "loop %s: published model version %d (learned through %d)", self._loop, model.version, model.learned_seq
        )
        self._dirty = False
        self._last_publish = time.monotonic()
