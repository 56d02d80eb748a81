"""The pinball world's vocabulary: channels, offers, segments, stages, dayparts and the action ids.

An action is an offer on a channel, `<channel>-<offer>` (e.g. `email-discount`), or `nothing`.
"""

from __future__ import annotations

CHANNELS = ("email", "push", "sms", "web", "inapp", "call")
OFFERS = ("discount", "new-arrivals", "loyalty", "bundle")
SEGMENTS = ("student", "family", "professional", "retiree")
STAGES = ("new", "active", "lapsing", "dormant")
DEVICES = ("ios", "android", "desktop")
DAYPARTS = ("night", "morning", "afternoon", "evening")  # local hours 0-6, 6-12, 12-18, 18-24
NOTHING = "nothing"
# channels that ask for consent; the others (web, in-app) are always allowed
CONSENTED = ("email", "push", "sms", "call")
# channels that need the customer's mobile app
APP_CHANNELS = ("push", "inapp")
BUSINESS_DAYPARTS = ("morning", "afternoon")  # when the sales team calls
INTRUSIVE = ("push", "sms")  # channels the business keeps quiet at night
# the lifecycle stages marketing meant each offer for
AUDIENCE = {
    "discount": ("new", "lapsing", "dormant"),
    "new-arrivals": ("active",),
    "loyalty": ("active",),
    "bundle": ("active", "lapsing"),
}


def action_id(channel: str, offer: str) -> str:
    """The id of `offer` sent on `channel`."""
    return f"{channel}-{offer}"


def daypart(hour: float) -> str:
    """The daypart of a local hour in [0, 24)."""
    return DAYPARTS[int(hour // 6) % 4]
