"""History features: what Rank adds to the example of a decision with a subject id, under namespaces reserved for
them (a request may not use these names). They are logged with the decision, so the learner, export, replay and
offline evaluation see exactly what the model saw.

    context  nb_subject  contacts_7d, days_since_contact (absent before the first contact)
    action   nb_history  channel_days_since=<bucket> (never, 0-1, 1-3, 3-7, 7-30, 30+), channel_contacts_7d and
                         channel_ignored_run on the action's channel; shown_7d and clicked_30d of the action itself

Counts of 0 are left out: a linear model gives a feature of value 0 no weight, and every feature costs the
model's interactions time.

An action's history features take few distinct values (a bucket and small counts), so its featured copy is cached
by the action and those values: the same message comes back for the same input, and the featurizer's caches (keyed
by the serialized action and its line) hit instead of rebuilding the line for every request.
"""

from __future__ import annotations

from nextbest.policies.cache import BoundedCache
from nextbest.policies.featurize import ACTION_CACHE_SIZE, CACHEABLE_ACTION_BYTES, Namespace
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
_featured: BoundedCache[tuple[bytes, _Values], types_pb2.Action] = BoundedCache(ACTION_CACHE_SIZE)


def _values(summary: Summary, action: types_pb2.Action) -> _Values:
    own = summary.actions.get(action.id)
    shown, clicked = (own.shown_7d, own.clicked_30d) if own is not None else (0, 0)
    if not action.channel:
        return "", 0, 0, shown, clicked
    channel = summary.channels.get(action.channel)
    if channel is None:
        return "never", 0, 0, shown, clicked
    return _bucket((summary.now - channel.last) / DAY), channel.contacts_7d, channel.ignored_run, shown, clicked


def _featured_action(action: types_pb2.Action, values: _Values) -> types_pb2.Action:
    """A copy of `action` with the history features `values` in its `nb_history` namespace."""
    out = types_pb2.Action()
    out.CopyFrom(action)
    features = out.features[ACTION_NAMESPACE]
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
    return out


def with_features(summary: Summary, action: types_pb2.Action) -> types_pb2.Action:
    """`action` with its history features; the message may be shared with other decisions: do not modify it."""
    serialized = action.SerializeToString()
    key = (serialized, _values(summary, action))
    out = _featured.get(key)
    if out is None:
        out = _featured_action(action, key[1])
        if len(serialized) <= CACHEABLE_ACTION_BYTES:
            _featured.put(key, out)
    return out
