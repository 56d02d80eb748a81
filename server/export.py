"""Joined events out of the log: as `LoggedEvent`s for evaluation, and as DSJSON for VW and other tools.

`export` streams a loop's joined stream (page by page, in join order) as DSJSON lines written by
`policies.ope.dsjson.to_dsjson`; it only reads the store, so it can run while a server writes it
(from another process: LMDB lets a process open a directory only once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from nextbest.policies import Example
from nextbest.policies.ope.dsjson import to_dsjson
from nextbest.policies.ope.logged import LoggedEvent
from nextbest.server.learner import learn_event
from nextbest.server.store import Store, Stream
from nextbest.v1 import records_pb2

PAGE = 1000


def logged_event(joined: records_pb2.JoinedEvent) -> LoggedEvent:
    """A joined event as off-policy evaluation reads it.

    The features are the featurizer's, the probability and pmf are the logged ones, and
    `skip_learn` is set when the learner does not learn from the event (`learn_event`: a
    deferred decision never activated, or a LOGGING_ONLY decision).
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
    )


def joined_events(
    store: Store, loop: str, since: float | None = None, until: float | None = None
) -> Iterator[records_pb2.JoinedEvent]:
    """`loop`'s joined events in join order, read a page at a time, with decisions made at `since`
    or later and before `until` (seconds since the epoch; None: unbounded)."""
    seq = 0
    while page := store.log.read(Stream.JOINED, loop, seq, PAGE):
        for _, data in page:
            joined = records_pb2.JoinedEvent.FromString(data)
            t = joined.decision.timestamp
            if (since is None or t >= since) and (until is None or t < until):
                yield joined
        seq = page[-1][0]


def export(store: Store, loop: str, out: TextIO, since: float | None = None, until: float | None = None) -> int:
    """Write `loop`'s joined events to `out` as DSJSON, one line each, in join order; return how many.

    Only decisions made at `since` or later and before `until` (seconds since the epoch) are
    written. Besides the fields of `to_dsjson`, each line has Personalizer's outcome list `o`
    (`[{"v": reward, "EventId": id, "ActionTaken": activated}]`) and `VWState.m`, the version
    of the model that decided. Memory stays constant: the stream is read a page at a time.
    """
    written = 0
    for joined in joined_events(store, loop, since, until):
        d = joined.decision
        extra = {
            "o": [{"v": joined.reward, "EventId": d.event_id, "ActionTaken": joined.activated}],
            "VWState": {"m": d.model_version},
        }
        out.write(to_dsjson(logged_event(joined), extra) + "\n")
        written += 1
    return written
