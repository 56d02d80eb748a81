"""The scripted customer journey the bandits are compared with, as a `rules:` policy.

It is scripted the way marketers script journeys, from what they believe
about each segment: a weekly frequency cap, a welcome discount for new
customers, a win-back discount for lapsing ones, then one favourite channel
and offer per segment with fallbacks for customers who cannot be reached
there. It never explores, ignores the time of day, and does not notice drift.
"""

from __future__ import annotations

import json

JOURNEY = {
    "rules": [
        {"if": {"recent.total_7d": {">=": 6}}, "then": ["nothing"]},
        {"if": {"user.stage": "new"}, "then": ["email-discount", "web-discount"]},
        {
            "if": {"user.stage": {"in": ["lapsing", "dormant"]}},
            "then": ["email-discount", "sms-discount", "web-discount"],
        },
        {"if": {"user.segment": "student"}, "then": ["push-discount", "inapp-discount", "web-discount"]},
        {"if": {"user.segment": "family"}, "then": ["email-loyalty", "email-discount", "web-discount"]},
        {"if": {"user.segment": "professional"}, "then": ["email-new-arrivals", "web-new-arrivals"]},
        {"if": {"user.segment": "retiree"}, "then": ["call-loyalty", "email-loyalty", "email-discount"]},
    ],
    "fallback": ["web-discount"],
}

JOURNEY_SPEC = "rules:" + json.dumps(JOURNEY, separators=(",", ":"))
