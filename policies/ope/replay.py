"""Counterfactual replay: what a candidate policy would have done on each logged event.

Replay is progressive validation: the policy scores event i (its pmf) as it
is after learning from events 0 … i−1 only, then learns from event i. So no
score ever uses its own event's reward, and a learning policy is judged as it
would have behaved live. The policy scores every event, so that every
candidate, the logged policy included, is compared on the same events; it
learns only from events without `skip_learn` (e.g. deferred decisions never
activated), as the service's learner does, and always with the logged
probability.

Namespace importance replays a policy on events with one namespace left out
(`without_namespace`). `replay_specs` and `hashed_features` (the reward
model's input) spread their work over forked processes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from nextbest import policies
from nextbest.policies.base import LearnEvent, Policy
from nextbest.policies.featurize import CHANNEL_NAMESPACE, Example, FeaturesLike
from nextbest.policies.ope.estimators import pad
from nextbest.policies.ope.logged import LoggedEvent

TICK = 256  # events between two progress reports
HASH_CHUNK = 2048  # events per task of hashed_features
CONTEXT, ACTION = "context", "action"

# (spec, namespace left out as (side, name) or None): one replay of a parallel run.
Task = tuple[str, tuple[str, str] | None]


def replay(events: Iterable[LoggedEvent], policy: Policy, tick: Callable[[int], None] | None = None) -> np.ndarray:
    """The policy's pmf on every event, in order, by progressive validation (see the module doc).

    Returns an (events, actions) array, rows padded with 0 to the largest
    number of actions. `tick(k)` reports k more events scored, every `TICK`
    events and at the end. A pmf the policy cannot give raises ValueError
    naming the event.
    """
    rows = []
    for e in events:
        try:
            rows.append(policy.pmf(e.example, e.event_id))
        except ValueError as err:
            raise ValueError(f"{policy.spec}: event {e.event_id!r}: {err}") from err
        if policy.learns and not e.skip_learn:
            policy.learn([LearnEvent(e.example, e.chosen_index, e.probability, e.reward)])
        if tick is not None and len(rows) % TICK == 0:
            tick(TICK)
    if tick is not None:
        tick(len(rows) % TICK)
    return pad(rows)


def namespaces(events: Iterable[LoggedEvent]) -> list[tuple[str, str]]:
    """Every namespace the events use, as sorted (side, name) pairs: ("context", ns) and ("action", ns).

    The action side includes `channel` when an action has one, not the
    `action` id namespace: policies know actions by their id.
    """
    found: set[tuple[str, str]] = set()
    for e in events:
        found.update((CONTEXT, ns) for ns in e.example.context)
        for a in e.example.actions:
            found.update((ACTION, ns) for ns in a.features)
            if a.channel:
                found.add((ACTION, CHANNEL_NAMESPACE))
    return sorted(found)


@dataclass(frozen=True)
class _Action:
    id: str
    channel: str
    features: Mapping[str, FeaturesLike]


def without_namespace(event: LoggedEvent, side: str, name: str) -> LoggedEvent:
    """The event with one context or action namespace (or the actions' channel) left out of its example."""
    ex = event.example
    if side == CONTEXT:
        example = Example({ns: f for ns, f in ex.context.items() if ns != name}, ex.actions)
    elif side == ACTION:
        actions = [
            _Action(
                a.id,
                "" if name == CHANNEL_NAMESPACE else a.channel,
                {ns: f for ns, f in a.features.items() if ns != name},
            )
            for a in ex.actions
        ]
        example = Example(ex.context, actions)
    else:
        raise ValueError(f"side must be {CONTEXT!r} or {ACTION!r}, got {side!r}")
    return replace(event, example=example)


# A parallel run's events and progress counter, inherited by forked workers rather than pickled.
_events: Sequence[LoggedEvent] = ()
_counter: multiprocessing.sharedctypes.Synchronized | None = None

Work = Callable[[Sequence[LoggedEvent], Any, Callable[[int], None] | None], Any]


def _count(k: int) -> None:
    with _counter.get_lock():
        _counter.value += k


def _in_worker(work: Work, item: object) -> object:
    return work(_events, item, _count)


def _map(
    work: Work, events: Sequence[LoggedEvent], items: Sequence[Any], jobs: int, progress: Callable[[int], None] | None
) -> list:
    """[work(events, item, tick) for item in items], in `jobs` forked processes when jobs > 1."""
    if jobs <= 1 or len(items) <= 1:
        return [work(events, item, progress) for item in items]
    global _events, _counter
    ctx = multiprocessing.get_context("fork")
    _events, _counter = events, ctx.Value("q", 0)
    reported = 0
    try:
        with ctx.Pool(min(jobs, len(items))) as pool:
            result = pool.map_async(partial(_in_worker, work), items, chunksize=1)
            while True:
                result.wait(0.2)
                done = result.ready()  # before reading the counter, so that the last ticks are reported
                if progress is not None and _counter.value > reported:
                    progress(_counter.value - reported)
                    reported = _counter.value
                if done:
                    return result.get()
    finally:
        _events, _counter = (), None


def _replay_task(events: Sequence[LoggedEvent], task: Task, tick: Callable[[int], None] | None) -> np.ndarray:
    spec, drop = task
    if drop is not None:
        events = (without_namespace(e, *drop) for e in events)
    return replay(events, policies.create(spec), tick)


def replay_specs(
    events: Sequence[LoggedEvent],
    tasks: Sequence[Task],
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """`replay` of a fresh policy per task (spec, namespace left out or None), in `jobs` processes.

    With jobs > 1 the worker processes are forked (they inherit the events
    rather than receive copies): do not use it from a process running threads
    that must not be forked (e.g. a gRPC server). `progress(k)` is called from
    this process with the number of events processed since its last call.
    """
    return _map(_replay_task, events, tasks, jobs, progress)


def _hash_task(events: Sequence[LoggedEvent], span: tuple[int, int, int], tick: Callable[[int], None] | None) -> list:
    start, stop, dim = span
    # A fresh Example, so that the event's own does not keep a float64 copy cached.
    out = [Example(e.example.context, e.example.actions).hashed(dim).astype(np.float32) for e in events[start:stop]]
    if tick is not None:
        tick(stop - start)
    return out


def hashed_features(
    events: Sequence[LoggedEvent], dim: int, jobs: int = 1, progress: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """Each event's `Example.hashed(dim)` as float32, computed in `jobs` processes (as in `replay_specs`)."""
    spans = [(start, min(start + HASH_CHUNK, len(events)), dim) for start in range(0, len(events), HASH_CHUNK)]
    return [f for chunk in _map(_hash_task, events, spans, jobs, progress) for f in chunk]
