"""History features: what Rank adds to the example of a decision with a subject id, under namespaces reserved for
them (a request may not use these names). They are logged with the decision, so the learner, export, replay and
offline evaluation see exactly what the model saw.

    context  nb_subject  contacts_7d, days_since_contact (absent before the first contact)
    action   nb_history  channel_days_since=<bucket> (never, 0-1, 1-3, 3-7, 7-30, 30+), channel_contacts_7d and
                         channel_ignored_run on the action's channel; shown_7d and clicked_30d of the action itself

Counts of 0 are left out: a linear model gives a feature of value 0 no weight, and every feature costs the
model's interactions time.

An action's history features take few distinct values (a bucket and small counts), so its featured copy, the
copy's bytes and its VW line are cached by the action and those values; a copy not cached is made from the
action's bytes and line (both cached by the featurizer) and those of the values.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from nextbest.policies.cache import BoundedCache
from nextbest.policies.featurize import ACTION_CACHE_SIZE, CACHEABLE_ACTION_BYTES, Namespace, action_line_with
from nextbest.server.subjects.history import DAY, Summary
from nextbest.v1 import types_pb2

CONTEXT_NAMESPACE = "nb_subject"
ACTION_NAMESPACE = "nb_history"
RESERVED = frozenset({CONTEXT_NAMESPACE, ACTION_NAMESPACE})
_BUCKETS = ((1.0, "0-1"), (3.0, "1-3"), (7.0, "3-7"), (30.0, "7-30"))


def _bucket(days: float) -> str:
    for limit, name in _BUCKETS:
        if days < limit:
            return name
    return "30+"


def context_features(summary: Summary) -> Namespace:
    numeric = {"contacts_7d": float(summary.contacts_7d)} if summary.contacts_7d else {}
    if summary.last > float("-inf"):
        numeric["days_since_contact"] = (summary.now - summary.last) / DAY
    return Namespace(numeric, {}, [])


# (days-since bucket or "" when the action has no channel, channel contacts in 7 days, ignored run, shown, clicked)
_Values = tuple[str, int, int, int, int]


class Featured(NamedTuple):
    """An action with its history features: the message, its serialization and its VW line."""

    action: types_pb2.Action
    data: bytes
    line: str


_featured: BoundedCache[tuple[bytes, _Values], Featured] = BoundedCache(ACTION_CACHE_SIZE)


def _values(summary: Summary, action: types_pb2.Action) -> _Values:
    own = summary.actions.get(action.id)
    shown, clicked = (own.shown_7d, own.clicked_30d) if own is not None else (0, 0)
    if not action.channel:
        return "", 0, 0, shown, clicked
    channel = summary.channels.get(action.channel)
    if channel is None:
        return "never", 0, 0, shown, clicked
    return _bucket((summary.now - channel.last) / DAY), channel.contacts_7d, channel.ignored_run, shown, clicked


@lru_cache(maxsize=ACTION_CACHE_SIZE)  # a bucket and small counts: few distinct values
def _history(values: _Values) -> tuple[types_pb2.Features, bytes]:
    """The `nb_history` namespace of these values, and its serialization as a field of an Action (appended to an
    action's bytes, it adds the namespace: a parsed map keeps every entry)."""
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
    return features, types_pb2.Action(features={ACTION_NAMESPACE: features}).SerializeToString()


def featured(summary: Summary, action: types_pb2.Action) -> Featured:
    """`action` with its history features; the message may be shared with other decisions: do not modify it."""
    serialized = action.SerializeToString()
    key = (serialized, _values(summary, action))
    out = _featured.get(key)
    if out is None:
        features, entry = _history(key[1])
        data = serialized + entry
        line = action_line_with(action, ACTION_NAMESPACE, features)
        out = Featured(types_pb2.Action.FromString(data), data, line)
        if len(serialized) <= CACHEABLE_ACTION_BYTES:
            _featured.put(key, out)
    return out
