"""History features: what Rank adds to the example of a decision with a subject id, under namespaces reserved for
them (a request may not use these names). They are logged with the decision, so the learner, export, replay and
offline evaluation see exactly what the model saw.

    context  nb_subject  contacts_7d, days_since_contact (absent before the first contact)
    action   nb_history  channel_days_since=<bucket> (never, 0-1, 1-3, 3-7, 7-30, 30+), channel_contacts_7d and
                         channel_ignored_run on the action's channel; shown_7d and clicked_30d of the action itself

Counts of 0 are left out: a linear model gives a feature of value 0 no weight, and every feature costs the
model's interactions time.

A featured copy of an action is made from the action's bytes and the parts of its VW line (cached by the
action) and its history namespace's bytes and text (cached by its values: a bucket and small counts).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import NamedTuple

from nextbest.policies.cache import BoundedCache
from nextbest.policies.featurize import (
    ACTION_CACHE_SIZE,
    CACHEABLE_ACTION_BYTES,
    LineSizes,
    Namespace,
    action_line,
    action_line_around,
    line_sizes,
    namespace_text,
    sizes_with,
)
from nextbest.server.subjects.history import DAY, Candidate, Summary
from nextbest.v1 import types_pb2

CONTEXT_NAMESPACE = "nb_subject"
ACTION_NAMESPACE = "nb_history"
RESERVED = frozenset({CONTEXT_NAMESPACE, ACTION_NAMESPACE})
_MAX_HISTORY_FEATURES = 5  # an action's: the days-since bucket and four counts
_BUCKET_LIMITS = (1.0, 3.0, 7.0, 30.0)  # days
_BUCKETS = ("0-1", "1-3", "3-7", "7-30", "30+")


def _bucket(days: float) -> str:
    """The days-since bucket of `days`: each bucket holds its lower limit.

    >>> [_bucket(d) for d in (0.0, 0.99, 1.0, 6.5, 7.0, 29.9, 30.0, 400.0)]
    ['0-1', '0-1', '1-3', '3-7', '7-30', '7-30', '30+', '30+']
    """
    return _BUCKETS[bisect_right(_BUCKET_LIMITS, days)]


def context_features(summary: Summary) -> Namespace:
    numeric = {"contacts_7d": float(summary.contacts_7d)} if summary.contacts_7d else {}
    if summary.last > float("-inf"):
        numeric["days_since_contact"] = (summary.now - summary.last) / DAY
    return Namespace(numeric, {}, [])


# (days-since bucket or "" when the action has no channel, channel contacts in 7 days, ignored run, shown, clicked)
_Values = tuple[str, int, int, int, int]


class Featured:
    """An action with its history features (a `policies.featurize.ActionLike`): its serialization, its VW line and
    the line's sizes, and the message, parsed from the serialization the first time it is asked for (a VW policy
    decides from the line alone)."""

    __slots__ = ("id", "channel", "data", "line", "sizes", "_action")

    def __init__(self, id: str, channel: str, data: bytes, line: str, sizes: LineSizes) -> None:
        self.id, self.channel, self.data, self.line, self.sizes = id, channel, data, line, sizes
        self._action: types_pb2.Action | None = None

    @property
    def action(self) -> types_pb2.Action:
        if self._action is None:
            self._action = types_pb2.Action.FromString(self.data)
        return self._action

    @property
    def features(self) -> Mapping[str, types_pb2.Features]:
        return self.action.features


class _History(NamedTuple):
    """The `nb_history` namespace of some values: its text, and its serialization as a field of an Action (appended
    to an action's bytes, it adds the namespace: a parsed map keeps every entry)."""

    text: str
    data: bytes
    features: int


@lru_cache(maxsize=ACTION_CACHE_SIZE)  # a bucket and small counts: few distinct values
def _history(values: _Values) -> _History:
    features = types_pb2.Features()
    days_since, channel_contacts, ignored_run, shown, clicked = values
    for name, count in (
        ("shown_7d", shown),
        ("clicked_30d", clicked),
        ("channel_contacts_7d", channel_contacts),
        ("channel_ignored_run", ignored_run),
    ):
        if count:
            features.numeric[name] = count
    if days_since:
        features.categorical["channel_days_since"] = days_since
    data = types_pb2.Action(features={ACTION_NAMESPACE: features}).SerializeToString()
    text = namespace_text(ACTION_NAMESPACE, features)
    return _History(text, data, text.count(" "))


class _Parts:
    """What every featured copy of one action is made from: the action's VW line split where its history namespace
    goes (`action_line_around`), and the line's sizes with a history namespace of each feature count (`sizes[n]`: a
    history namespace has at most five features)."""

    __slots__ = ("before", "after", "sizes")

    def __init__(self, action: types_pb2.Action) -> None:
        self.before, self.after = action_line_around(action, ACTION_NAMESPACE)
        own = line_sizes(action_line(action))
        self.sizes = [sizes_with(own, ACTION_NAMESPACE, n) for n in range(_MAX_HISTORY_FEATURES + 1)]


_parts: BoundedCache[bytes, _Parts] = BoundedCache(ACTION_CACHE_SIZE)  # by the serialized action


def featured(summary: Summary, candidates: Iterable[Candidate]) -> list[Featured]:
    """Each candidate's action with its history features, made from the action's parts (cached) and its history
    namespace's (cached per distinct values): a copy is cheaper to make than to cache, as each subject's counts
    differ. One loop, a channel's values found once: Rank makes a copy of every candidate."""
    now, channels, shown, clicked = summary.now, summary.channels, summary.shown_7d, summary.clicked_30d
    channel_values: dict[str, tuple[str, int, int]] = {}
    copies = []
    for action, action_id, channel in candidates:
        values = channel_values.get(channel)
        if values is None:
            state = channels.get(channel)
            if not channel:
                values = ("", 0, 0)
            elif state is None:
                values = ("never", 0, 0)
            else:
                last, contacts_7d, ignored_run = state
                values = (_bucket((now - last) / DAY), contacts_7d, ignored_run)
            channel_values[channel] = values
        history = _history(values + (shown.get(action_id, 0), clicked.get(action_id, 0)))
        serialized = action.SerializeToString()
        parts = _parts.get(serialized)  # not get_or_make: its call and lambda cost 1,400 instructions a copy
        if parts is None:
            parts = _Parts(action)
            if len(serialized) <= CACHEABLE_ACTION_BYTES:
                _parts.put(serialized, parts)
        line = f"{parts.before} {history.text}{parts.after}"
        copies.append(Featured(action_id, channel, serialized + history.data, line, parts.sizes[history.features]))
    return copies
