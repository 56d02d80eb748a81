"""What the service sees of a moment: the shared context and one feature line per candidate action.

Context namespaces (VW names them by their first letter):

- `user` (u): `segment`, `stage`, `device`, `app` (yes/no), `last` (the last
  contact's outcome: none, ignored, click, purchase, unsubscribe) and the
  consented channels as tokens;
- `time` (t): `daypart` (night, morning, afternoon, evening, local time);
- `recent` (r): `total_7d` contacts in the last 7 days on any channel and
  `days` since the last one (30 when none).

That is the caller-computed history (`history=True`): the simulator's own
bookkeeping of what it sent. With `history=False` the caller sends only what
it knows of the customer now, for a service that keeps the history itself
(requests with a subject id): `user` without `last`, `time`, no `recent`; the
service adds its `nb_subject` and `nb_history` namespaces instead.

Each action line carries its id (`action`, a) and channel (`channel`, c),
then `offer` (o): `kind=<offer>`, and `history` (h): the customer's recency
and count of contacts on this channel seen from this action: `last` (days
since the last contact on the channel, as a bucket: today, 1-2d, 3-6d, 7d+,
never), `contacts_7d`, `ignored` (latest contacts on the channel in a row
without a click), `clicks_30d`; `offer_7d` and `offer_clicks_30d` (this offer
shown and clicked, on any channel); and the tokens `preferred` (the channel
the customer said they prefer), `quiet` (push or sms at the customer's night)
and `fits` (the offer is meant for the customer's lifecycle stage, see
`catalog.AUDIENCE`). `nothing` carries only its id. Without caller-computed history, an action line
carries its id, channel and offer, and the three tokens in `fit` (f). Per-channel recency is on
the action lines rather than in the context: there a model without
interactions can use it, and `-q ::` does not cross a dozen context numbers
with every action.

Who can personalize: a linear model without interactions
(`vw:--cb_explore_adf --epsilon 0.05`) scores an action by its own features
only, since shared features add the same to every action: it learns the best
offer and channel overall, to rest a tired channel, to follow the `history`
flags and clicks, but not that students and retirees want different things.
It is one policy for everyone, so it tends to send the same thing to all and
tire them of it. With interactions (`-q ::` as in the default policy, or
`-q uo -q uc -q tc ...`) it learns those differences too.
"""

from __future__ import annotations

import functools
import math

from nextbest.client import action
from nextbest.sim.catalog import AUDIENCE, CHANNELS, INTRUSIVE, NOTHING, action_id
from nextbest.sim.world import Moment
from nextbest.v1 import types_pb2

NEVER_DAYS = 30.0


def _bucket(days: float) -> str:
    if math.isinf(days):
        return "never"
    if days < 1:
        return "today"
    return "1-2d" if days < 3 else "3-6d" if days < 7 else "7d+"


def context(moment: Moment, history: bool = True) -> dict[str, dict]:
    """The shared context of a moment, as client feature dicts; without `history`, what the caller knows of the
    customer now only."""
    user: dict[str, str | list[str]] = {
        "segment": moment.customer.segment,
        "stage": moment.stage,
        "device": moment.customer.device,
        "app": "yes" if moment.customer.has_app else "no",
        "tokens": sorted(moment.consent),
    }
    out: dict[str, dict] = {"user": user, "time": {"daypart": moment.daypart}}
    if history:
        user["last"] = moment.last_response
        total = sum(h.contacts_7d for h in moment.channels.values())
        since = min(h.days_since for h in moment.channels.values())
        out["recent"] = {"total_7d": float(total), "days": min(since, NEVER_DAYS)}
    return out


_COUNTS = ("contacts_7d", "ignored", "clicks_30d", "offer_7d", "offer_clicks_30d")


@functools.lru_cache(maxsize=65536)
def _action(channel: str, offer: str, flags: tuple[str, ...], last: str, *counts: int) -> types_pb2.Action:
    history: dict[str, float | str] = {"last": last, "tokens": list(flags)}
    for name, value in zip(_COUNTS, counts, strict=True):
        if value:
            history[name] = float(value)
    return action(action_id(channel, offer), channel, {"offer": {"kind": offer}, "history": history})


@functools.lru_cache(maxsize=4096)
def _action_now(channel: str, offer: str, flags: tuple[str, ...]) -> types_pb2.Action:
    return action(action_id(channel, offer), channel, {"offer": {"kind": offer}, "fit": {"tokens": list(flags)}})


_NOTHING = action(NOTHING)


def actions(moment: Moment, history: bool = True) -> list[types_pb2.Action]:
    """Every action of the moment (excluded ones too), with their features, in `moment.action_ids` order; without
    `history`, what the caller knows now only.

    The messages are shared between calls: do not modify them.
    """
    out = []
    for ch in CHANNELS:
        h = moment.channels[ch]
        channel_flags = ("preferred",) * (ch == moment.customer.preferred)
        channel_flags += ("quiet",) * (ch in INTRUSIVE and moment.daypart == "night")
        last = _bucket(h.days_since)
        for offer in moment.offers:
            flags = channel_flags + ("fits",) * (moment.stage in AUDIENCE[offer])
            if not history:
                out.append(_action_now(ch, offer, flags))
                continue
            o = moment.offer_history[offer]
            counts = (h.contacts_7d, h.ignored, h.clicks_30d, o.shown_7d, o.clicks_30d)
            out.append(_action(ch, offer, flags, last, *counts))
    out.append(_NOTHING)
    return out
