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


def _counts(**counts: float) -> dict[str, float]:
    return {name: float(count) for name, count in counts.items() if count}


def context_features(summary: Summary) -> Namespace:
    numeric = _counts(contacts_7d=summary.contacts_7d)
    if summary.last > float("-inf"):
        numeric["days_since_contact"] = (summary.now - summary.last) / DAY
    return Namespace(numeric, {}, [])


def action_features(summary: Summary, action: types_pb2.Action) -> types_pb2.Features:
    own = summary.actions.get(action.id)
    numeric = _counts(shown_7d=own.shown_7d, clicked_30d=own.clicked_30d) if own is not None else {}
    if not action.channel:
        return types_pb2.Features(numeric=numeric)
    channel = summary.channels.get(action.channel)
    if channel is None:
        return types_pb2.Features(numeric=numeric, categorical={"channel_days_since": "never"})
    numeric |= _counts(channel_contacts_7d=channel.contacts_7d, channel_ignored_run=channel.ignored_run)
    bucket = _bucket((summary.now - channel.last) / DAY)
    return types_pb2.Features(numeric=numeric, categorical={"channel_days_since": bucket})


def with_features(summary: Summary, action: types_pb2.Action) -> types_pb2.Action:
    """A copy of `action` with its history features."""
    out = types_pb2.Action()
    out.CopyFrom(action)
    out.features[ACTION_NAMESPACE].CopyFrom(action_features(summary, action))
    return out
