"""Retention: delete a loop's events older than its `retention_days` once nothing needs them.

A decision is deleted only after it has been joined, a reward only after the
joiner is past it, a joined event only after the learner has consumed it; so
retention never changes what is learned.
"""

from __future__ import annotations

from collections.abc import Callable

from nextbest.server.joiner import JoinerState
from nextbest.server.learner import learned_position
from nextbest.server.lift import LiftState
from nextbest.server.store import EventLog, Store, Stream
from nextbest.server.subjects.outcomes import OutcomesState
from nextbest.v1 import records_pb2

_PAGE = 1000

_TIMESTAMP: dict[Stream, Callable[[bytes], float]] = {
    Stream.DECISIONS: lambda data: records_pb2.DecisionRecord.FromString(data).timestamp,
    Stream.REWARDS: lambda data: records_pb2.RewardRecord.FromString(data).timestamp,
    Stream.JOINED: lambda data: records_pb2.JoinedEvent.FromString(data).decision.timestamp,
}


def _first_kept(log: EventLog, stream: Stream, loop: str, cutoff: float, bound: int) -> int:
    """The seq of the first entry to keep: stamped at or after `cutoff`, or past `bound`."""
    after = 0
    while page := log.read(stream, loop, after, _PAGE):
        for seq, data in page:
            if seq > bound or _TIMESTAMP[stream](data) >= cutoff:
                return seq
        after = page[-1][0]
    return min(after, bound) + 1


def apply_retention(log: EventLog, loop: str, cutoff: float, bounds: dict[Stream, int]) -> dict[Stream, int]:
    """Trim each stream of `loop` below `cutoff`, never past its bound (the seq its consumer is done with), in the
    order of `bounds`: decisions before their joined events, so that a decision found in the store is never one
    joined whose joined event is gone (the joiner takes such a decision for one not read yet).

    Returns how many entries were deleted per stream.
    """
    return {
        stream: log.trim(stream, loop, _first_kept(log, stream, loop, cutoff, bound))
        for stream, bound in bounds.items()
    }


def consumed_bounds(store: Store, loop: str) -> dict[Stream, int]:
    """Per stream of `loop`, the seq its consumers have durably saved they are done with (what is at or below it
    may be deleted): decisions joined, rewards read past, joined events learned, counted in the lift and applied
    to the subject histories. In the order `apply_retention` must trim them."""
    joiner = JoinerState.saved(store.log, loop)
    joined = min(
        learned_position(store, loop), LiftState.saved(store.log, loop).seq, OutcomesState.saved(store.log, loop).seq
    )
    return {Stream.DECISIONS: joiner.decisions_closed, Stream.REWARDS: joiner.rewards_from, Stream.JOINED: joined}


def retain(store: Store, loop: str, cutoff: float) -> dict[Stream, int]:
    """Delete what `loop`'s consumers are done with and is older than `cutoff` (inf: whatever its age); how many
    entries were deleted per stream."""
    return apply_retention(store.log, loop, cutoff, consumed_bounds(store, loop))
