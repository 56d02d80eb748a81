"""The trainer: for every loop, a joiner and a learner, run by one background thread.

A trainer works on a loop only while it holds the loop's lease in the store
(`train/<loop>`), renewed every third of `lease_seconds`, both on the trainer's
clock (every trainer of a store must share it: the wall clock by default); a
second trainer on the same store stands by and takes over when the lease
expires, resuming from the joiner's saved position and the learner's checkpoint. A trainer
that lost its lease without knowing it cannot double-learn: joined events
are appended idempotently by event id and a model is published only over
the version it started from (compare-and-set), so exactly one checkpoint
holds each learned position.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from nextbest.policies import PolicySpecError
from nextbest.server.joiner import Joiner, JoinerState
from nextbest.server.learner import DEFAULT_KEEP_MODELS, Learner
from nextbest.server.lift import LiftCounter
from nextbest.server.retention import retain
from nextbest.server.stats import loop_stats
from nextbest.server.store import Store, StoreFullError, StoreUnavailableError, cursor_name, process_holder
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.subjects.history import trimmed
from nextbest.server.subjects.outcomes import SubjectOutcomes
from nextbest.v1 import admin_pb2, records_pb2, types_pb2

log = logging.getLogger("nextbest")

_FULL_BACKOFF_SECONDS = 1.0
_BACKLOG = 500  # events a pass handles beyond which the next pass starts at once
_FULL_WARNING_SECONDS = 60.0
_REPEAT_WARNING_SECONDS = 60.0  # a loop failing the same way again is logged at most this often
DEFAULT_LEASE_SECONDS = 10.0
_DELETE_CHECK_SECONDS = 1.0  # how often a trainer looks for a request to delete a loop's log
STOP_SECONDS = 5.0  # the most a stop waits for the store to take the final checkpoints and lease releases


def _lease_name(loop: str) -> str:
    return f"train/{loop}"


@dataclass
class _LoopWork:
    loop: str
    joiner: Joiner
    learner: Learner
    lift: LiftCounter
    outcomes: SubjectOutcomes
    retained_at: float = float("-inf")  # monotonic time of the last retention pass
    delete_checked_at: float = float("-inf")  # monotonic time the last log deletion request was looked for

    def checkpoint(self) -> None:
        """Save the joiner's position, publish the learner's model and save the lift (the final checkpoint of a
        stop)."""
        self.joiner.save()
        self.learner.publish()
        self.lift.save()


def _delete_cursor(loop: str) -> str:
    return cursor_name(loop, "delete-logs")


def request_log_deletion(store: Store, loop: str) -> None:
    """Ask the loop's trainer to delete, at its next look (within about a second), the logged decisions, rewards
    and joined events the loop is done with (joined, learned, counted), whatever their age; those still in their
    reward window or not yet learned stay, and so do the models."""
    store.log.set_cursor(_delete_cursor(loop), b"1")


def _run_until(steps: list[tuple[str, Callable[[], None]]], deadline: float) -> dict[str, str]:
    """Run the steps in order in a daemon thread until `deadline` (monotonic); why each that did not succeed did
    not (a step still running at the deadline is left to finish or fail unreported)."""
    outcomes: dict[str, str | None] = {}

    def run() -> None:
        for what, step in steps:
            try:
                step()
                outcomes[what] = None
            except StoreUnavailableError as e:
                outcomes[what] = str(e)
            except Exception as e:
                log.exception("%s failed", what)
                outcomes[what] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=run, name="trainer-stop", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    ended = {what: outcomes.get(what, "the store did not answer in time") for what, _ in steps}
    return {what: why for what, why in ended.items() if why is not None}


@dataclass
class _Failing:
    """A loop whose passes fail the same way: logged with a traceback once, then repeats counted."""

    error: str
    logged_at: float  # monotonic
    repeats: int = 0


class Trainer:
    """Joins and learns every loop of the store until stopped; saves its positions on stop.

    `trainers` trainers share the store's loops: each holds at most its share of the leases (the number of loops
    over `trainers`, rounded up), so that the loops spread over them and learn in parallel; a loop whose holder is
    gone is taken by a trainer below its share. A pass starts every `pass_seconds`, or at once after a pass that found
    a backlog: passes write (joined events, positions) in few transactions, so that they seldom hold the store's one
    writer from Rank.
    """

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        pass_seconds: float = 0.05,
        keep_models: int = DEFAULT_KEEP_MODELS,
        retention_interval_seconds: float = 60.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        trainers: int = 1,
    ) -> None:
        if trainers < 1:
            raise ValueError(f"trainers must be at least 1, got {trainers}")
        self._store = store
        self._trainers = trainers
        self._share = 0  # the most leases this trainer takes, of the current pass
        self.holder = process_holder()
        self._lease_seconds = lease_seconds
        self._renewed_at: dict[str, float] = {}  # when this trainer last took or renewed each lease it holds (clock)
        self._clock = clock
        self._pass_seconds = pass_seconds
        self._keep_models = keep_models
        self._retention_interval = retention_interval_seconds
        self._loops: dict[str, _LoopWork] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._full = False  # whether a loop of the current pass found the store full
        self._warned_full = float("-inf")
        self._failing: dict[str, _Failing] = {}
        self._refused: dict[str, str] = {}  # loop -> why this trainer refuses its spec, logged once
        self._contact_policy = PolicyCache(store.subjects)
        self._swept_at = float("-inf")  # monotonic time of the last sweep of expired contacts

    def stats(self, loop: str) -> admin_pb2.LoopStats:
        """The loop's statistics with this trainer's live joiner and learner state."""
        work = self._loops.get(loop)
        lift = work.lift.state if work else None
        return loop_stats(self._store, loop, self.joiner_state(loop), self.learner_state(loop), lift)

    def learner_state(self, loop: str) -> records_pb2.LearnerState | None:
        """The live learner's estimates of `loop` (None when this trainer has not started it)."""
        work = self._loops.get(loop)
        return work.learner.state() if work else None

    def joiner_state(self, loop: str) -> JoinerState | None:
        """A copy of the live joiner's state of `loop` (None when this trainer has not started it)."""
        work = self._loops.get(loop)
        return copy.deepcopy(work.joiner.state) if work else None

    def step(self) -> int:
        """One pass over every loop; returns how many events were joined or learned."""
        configs = {name: types_pb2.LoopConfig.FromString(data) for name, data in self._store.configs.list().items()}
        for name in set(self._loops) - set(configs):
            del self._loops[name]
        self._failing = {name: f for name, f in self._failing.items() if name in configs}
        for name in set(self._renewed_at) - set(configs):
            self._release(name)
        self._share = math.ceil(len(configs) / self._trainers)
        done = 0
        if time.monotonic() - self._swept_at >= self._retention_interval:
            self._sweep()
        for name, config in configs.items():
            try:
                if not self._holds(name):
                    continue
                work = self._loops.get(name)
                if work is None:
                    work = self._loops[name] = _LoopWork(
                        name,
                        Joiner(self._store.log, name, self._clock),
                        Learner(self._store, name, config, self._keep_models),
                        LiftCounter(self._store.log, name),
                        SubjectOutcomes(self._store, name, self._contact_policy, self._clock),
                    )
                if config.retention_days > 0 and time.monotonic() - work.retained_at >= self._retention_interval:
                    # first: when the store is full, it frees the space
                    self._retain(name, work, self._clock() - config.retention_days * 86400)
                if time.monotonic() - work.delete_checked_at >= _DELETE_CHECK_SECONDS:
                    self._delete_logs_if_asked(name, work)
                done += work.joiner.step(config.reward_wait_seconds)
                work.outcomes.step()  # at most a batch a pass, at the joiner's pace
                done += work.learner.step(config)
                work.lift.step()  # a batch a pass: never a backlog that holds the joiner and learner back
                if self._failing.pop(name, None) is not None:
                    log.info("loop %s: the trainer works again", name)
                self._refused.pop(name, None)
            except StoreUnavailableError as e:  # a cluster electing a leader, a reconnect: retried next pass
                if not self._stop.is_set():  # else stop() reports what is left undone
                    log.warning("loop %s: store unavailable; retrying: %s", name, e)
            except PolicySpecError as e:  # refused by this process's --rules-dir / --policy-module, until changed
                if self._refused.get(name) != str(e):
                    self._refused[name] = str(e)
                    log.error("loop %s: cannot train it: %s", name, e)
            except StoreFullError as e:  # expected until space is freed: no traceback, a warning a minute
                self._full = True
                if time.monotonic() - self._warned_full >= _FULL_WARNING_SECONDS:
                    self._warned_full = time.monotonic()
                    log.warning("loop %s: cannot join or learn while the store is full; retrying: %s", name, e)
            except Exception as e:
                self._failed(name, e)
        return done

    def _failed(self, loop: str, error: Exception) -> None:
        """Log a loop's failed pass: with its traceback the first time, then once a minute while it repeats."""
        text, now = repr(error), time.monotonic()
        failing = self._failing.get(loop)
        if failing is None or failing.error != text:
            self._failing[loop] = _Failing(text, now)
            log.exception("loop %s: trainer step failed; retrying", loop)
            return
        failing.repeats += 1
        if now - failing.logged_at >= _REPEAT_WARNING_SECONDS:
            log.error("loop %s: trainer step still failing (%d more times): %s", loop, failing.repeats, text)
            failing.logged_at, failing.repeats = now, 0

    def _holds(self, loop: str) -> bool:
        """Take or renew `loop`'s lease when due (also when the clock went back); on losing it, forget the loop's state
        (a new holder moves on)."""
        now = self._clock()
        renewed_at = self._renewed_at.get(loop)
        if renewed_at is not None and renewed_at <= now < renewed_at + self._lease_seconds / 3:
            return True
        if renewed_at is None and len(self._renewed_at) >= self._share:  # its share taken: the loop is another's
            return False
        if self._store.leases.acquire(_lease_name(loop), self.holder, self._lease_seconds, now):
            if renewed_at is None:
                log.info("trainer %s: training loop %s", self.holder, loop)
            self._renewed_at[loop] = now
            return True
        if self._renewed_at.pop(loop, None) is not None:
            log.warning("trainer %s: lost the lease of loop %s; standing by", self.holder, loop)
        self._loops.pop(loop, None)
        return False

    def _release(self, loop: str) -> None:
        self._renewed_at.pop(loop, None)
        self._loops.pop(loop, None)
        try:
            self._store.leases.release(_lease_name(loop), self.holder)
        except StoreUnavailableError as e:  # the lease expires by itself
            log.warning("loop %s: cannot release the trainer lease: %s", loop, e)
        except Exception:
            log.exception("loop %s: cannot release the trainer lease", loop)

    def _sweep(self) -> None:
        """Drop expired contacts from every subject history (a subject not contacted again is never rewritten)."""
        self._swept_at = time.monotonic()
        now = self._clock()
        try:
            deleted = self._store.subjects.sweep(lambda data: trimmed(data, now))
        except StoreUnavailableError as e:
            log.warning("subject histories: store unavailable; sweeping again later: %s", e)
            return
        if deleted:
            log.info("subject histories: %d expired", deleted)

    def _delete_logs_if_asked(self, loop: str, work: _LoopWork) -> None:
        """Delete what the loop is done with, whatever its age, when `request_log_deletion` asked for it."""
        work.delete_checked_at = time.monotonic()
        if self._store.log.get_cursor(_delete_cursor(loop)) is not None:
            self._retain(loop, work, math.inf)
            self._store.log.delete_cursor(_delete_cursor(loop))

    def _retain(self, loop: str, work: _LoopWork, cutoff: float) -> None:
        work.retained_at = time.monotonic()
        work.joiner.save()  # the bounds `retain` reads must be as far as they go before anything is deleted
        work.lift.save()
        deleted = retain(self._store, loop, cutoff)
        if any(deleted.values()):
            log.info("loop %s: retention deleted %s", loop, {s.value: n for s, n in deleted.items()})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trainer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop after the current pass, then save every joiner, publish every learner and release the leases,
        all within `timeout` seconds: a step the store does not take in time is left, with one warning each
        (the next trainer resumes from the last saved positions; an unreleased lease expires)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        steps: list[tuple[str, Callable[[], None]]] = []
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is not None and self._thread.is_alive():  # checkpointing under a running pass would race it
            log.warning("trainer: the current pass did not finish within %.0f s; no final checkpoints", timeout)
        else:
            steps += [(f"loop {name}: final checkpoint", work.checkpoint) for name, work in self._loops.items()]
        steps += [
            (f"loop {name}: lease release", partial(self._store.leases.release, _lease_name(name), self.holder))
            for name in self._renewed_at
        ]
        for what, why in _run_until(steps, deadline).items():
            log.warning("%s: not done before stopping (%s); left", what, why)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._full = False
            started = time.monotonic()
            try:
                done = self.step()
            except Exception:
                log.exception("trainer pass failed; retrying")
                done = 0
            if self._full:
                self._stop.wait(_FULL_BACKOFF_SECONDS)
            elif done < _BACKLOG:
                self._stop.wait(started + self._pass_seconds - time.monotonic())
