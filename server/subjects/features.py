"""History features: what Rank adds to the example of a decision with a subject id, under namespaces reserved for
them (a request may not use these names). They are logged with the decision, so the learner, export, replay and
offline evaluation see exactly what the model saw.

    context  nb_subject  contacts_7d, days_since_contact (absent before the first contact)
    action   nb_history  channel_days_since=<bucket> (never, 0-1, 1-3, 3-7, 7-30, 30+), channel_contacts_7d and
                         channel_ignored_run on the action's channel; shown_7d and clicked_30d of the action itself

Counts of 0 are left out: a linear model gives a feature of value 0 no weight, and every feature costs the
model's interactions time.
"""

from __future__ import annotations

from nextbest.policies.featurize import Namespace
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


def _add_action_features(summary: Summary, action: types_pb2.Action, features: types_pb2.Features) -> None:
    """Write the history features of `action` into `features` (its `nb_history` namespace)."""
    numeric = features.numeric
    own = summary.actions.get(action.id)
    if own is not None:
        if own.shown_7d:
            numeric["shown_7d"] = own.shown_7d
        if own.clicked_30d:
            numeric["clicked_30d"] = own.clicked_30d
    if not action.channel:
        return
    channel = summary.channels.get(action.channel)
    if channel is None:
        features.categorical["channel_days_since"] = "never"
        return
    features.categorical["channel_days_since"] = _bucket((summary.now - channel.last) / DAY)
    if channel.contacts_7d:
        numeric["channel_contacts_7d"] = channel.contacts_7d
    if channel.ignored_run:
        numeric["channel_ignored_run"] = channel.ignored_run


def with_features(summary: Summary, action: types_pb2.Action) -> types_pb2.Action:
    """A copy of `action` with its history features."""
    out = types_pb2.Action()
    out.CopyFrom(action)
    _add_action_features(summary, action, out.features[ACTION_NAMESPACE])
    return out
