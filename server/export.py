"""Joined events out of the log: as `LoggedEvent`s for evaluation, and as DSJSON for VW and other tools.

`export` streams a loop's joined stream (page by page, in join order) as DSJSON lines written by
`policies.ope.dsjson.to_dsjson`; it only reads the store, so it can run while a server writes it
(from another process: LMDB lets a process open a directory only once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

from nextbest.policies import Example
from nextbest.policies.featurize import action_namespaces, context_namespaces
from nextbest.policies.ope.dsjson import _namespaces_json, to_dsjson
from nextbest.policies.ope.logged import LoggedEvent
from nextbest.server.learner import learn_event
from nextbest.server.store import Store, Stream
from nextbest.v1 import records_pb2

PAGE = 1000


def logged_event(joined: records_pb2.JoinedEvent) -> LoggedEvent:
    """A joined event as off-policy evaluation reads it.

    The features are the featurizer's, the probability and pmf are the logged ones, and
    `skip_learn` is set when the learner does not learn from the event (`learn_event`: a
    deferred decision never activated, a LOGGING_ONLY decision, a holdout one without holdout_learn).
    """
    d = joined.decision
    return LoggedEvent(
        event_id=d.event_id,
        example=Example(d.context, d.actions),
        chosen_index=d.chosen_index,
        probability=d.pmf[d.chosen_index],
        reward=joined.reward,
        pmf=tuple(d.pmf),
        timestamp=d.timestamp,
        skip_learn=learn_event(joined) is None,
        holdout=d.holdout,
    )


def _ranking(pmf: list[float], chosen: int) -> list[int]:
    """The chosen index, then the others by decreasing probability (ties in order)."""
    return [chosen, *sorted((i for i in range(len(pmf)) if i != chosen), key=lambda i: -pmf[i])]


def to_ccb_dsjson(joined: records_pb2.JoinedEvent, extra: Mapping[str, Any]) -> str:
    """A joined multi-slot event as one line of VW's CCB DSJSON, which `vw --ccb_explore_adf --dsjson` learns as the
    learner did: `c` holds the context's namespaces, `_multi` (each action with its `_tag`, the id) and `_slots`
    (each slot's `_id`, `_inc`, its candidates, 0-based into `_multi`, and its namespaces); then `_outcomes`, one per
    slot: `_id`, `_label_cost` (-reward), `_a` (the chosen action, then the slot's other candidates by decreasing
    probability, 0-based) and `_p` (their logged probabilities). VW reads `_outcomes` only after `c`.
    `_skipLearn` marks an event the learner does not learn from; of a deferred decision with some slots
    activated, only those are written (what the learner learned: each slot's `_inc` holds its candidates, so
    a slot is learned the same without the slots before it). ValueError when VW's JSON cannot hold a name."""
    d = joined.decision
    line: dict[str, Any] = {"EventId": d.event_id}
    pairs = list(zip(d.slots, joined.slots, strict=True))
    if learn_event(joined) is None:
        line["_skipLearn"] = True
    elif d.deferred:
        pairs = [(slot, outcome) for slot, outcome in pairs if outcome.activated]
    if d.holdout:
        line["_holdout"] = True
    line["Timestamp"] = (
        datetime.fromtimestamp(d.timestamp, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )
    try:
        context = _namespaces_json(context_namespaces(d.context))
        context["_multi"] = [{"_tag": a.id, **_namespaces_json(action_namespaces(a))} for a in d.actions]
        context["_slots"] = [
            {"_id": s.id, "_inc": list(s.candidates), **_namespaces_json(context_namespaces(s.features))}
            for s, _ in pairs
        ]
    except ValueError as e:
        raise ValueError(f"event {d.event_id!r}: {e}") from None
    line["c"] = context
    outcomes = []
    for slot, outcome in pairs:
        ranking = _ranking(list(slot.pmf), slot.chosen_index)
        outcomes.append(
            {
                "_id": slot.id,
                "_label_cost": -outcome.reward,
                "_a": [slot.candidates[i] for i in ranking],
                "_p": [slot.pmf[i] for i in ranking],
            }
        )
    line["_outcomes"] = outcomes
    line.update(extra)
    return json.dumps(line, separators=(",", ":"))


def joined_events(
    store: Store, loop: str, since: float | None = None, until: float | None = None
) -> Iterator[records_pb2.JoinedEvent]:
    """`loop`'s joined events in join order, read a page at a time, with decisions made at `since`
    or later and before `until` (seconds since the epoch; None: unbounded)."""
    for _, joined in _numbered(store, loop, since, until):
        yield joined


def _numbered(
    store: Store, loop: str, since: float | None, until: float | None
) -> Iterator[tuple[int, records_pb2.JoinedEvent]]:
    seq = 0
    while page := store.log.read(Stream.JOINED, loop, seq, PAGE):
        for number, data in page:
            joined = records_pb2.JoinedEvent.FromString(data)
            t = joined.decision.timestamp
            if (since is None or t >= since) and (until is None or t < until):
                yield number, joined
        seq = page[-1][0]


def live_replay(store: Store, loop: str) -> str | None:
    """What the live model learned, in the export's terms: its spec and the `Seq` range of the lines
    (None when the loop has no model yet). A swap (SetPolicy, PromotePolicy) starts a spec's range."""
    live = store.models.live(loop)
    if live is None:
        return None
    state = records_pb2.LearnerState.FromString(live.state)
    start = state.live_start_seq if state.live_spec == live.spec else 0
    seqs = f"{start} < Seq <= {live.learned_seq}"
    return f"the live model (version {live.version}) is {live.spec} learning the lines with {seqs}"


class Exported(NamedTuple):
    """How many events `export` wrote, and how many it skipped because VW's JSON cannot hold them."""

    written: int
    skipped: int


def export(
    store: Store,
    loop: str,
    out: TextIO,
    since: float | None = None,
    until: float | None = None,
    skip: Callable[[str], None] | None = None,
) -> Exported:
    """Write `loop`'s joined events to `out` as DSJSON, one line each, in join order.

    Only decisions made at `since` or later and before `until` (seconds since the epoch) are
    written. Besides the fields of `to_dsjson`, each line has Personalizer's outcome list `o`
    (`[{"v": reward, "EventId": id, "ActionTaken": activated}]`), `VWState.m`, the version of the
    model that decided, and `Seq`, the event's position in the loop's joined stream (the learner's
    `learned_seq` and swap points count in it); a holdout decision has `_holdout` (`to_dsjson`). An
    event VW's JSON cannot hold (logged before Rank refused such names) is skipped, not written in
    part: `skip(reason)` is told, and the export goes on. Memory stays constant: the stream is read
    a page at a time. A multi-slot decision is written as VW's CCB DSJSON (`to_ccb_dsjson`), its `o`
    with one outcome per slot (`{"v": reward, "EventId": id, "SlotId": slot id, "ActionTaken": activated}`).
    """
    written = skipped = 0
    for seq, joined in _numbered(store, loop, since, until):
        d = joined.decision
        outcomes = [{"v": joined.reward, "EventId": d.event_id, "ActionTaken": joined.activated}]
        if d.slots:
            outcomes = [
                {"v": s.reward, "EventId": d.event_id, "SlotId": s.slot_id, "ActionTaken": joined.activated}
                for s in joined.slots
            ]
        extra = {
            "o": outcomes,
            "VWState": {"m": d.model_version},
            "Seq": seq,
        }
        try:
            line = to_ccb_dsjson(joined, extra) if d.slots else to_dsjson(logged_event(joined), extra)
        except ValueError as e:
            skipped += 1
            if skip is not None:
                skip(str(e))
            continue
        out.write(line + "\n")
        written += 1
    return Exported(written, skipped)
