"""The scripted customer journey the bandits are compared with, as a `rules:` policy.

It is scripted the way marketers script journeys, from what they believe
about each segment: a weekly frequency cap, a welcome discount for new
customers, a win-back discount for lapsing ones, then one favourite channel
and offer per segment with fallbacks for customers who cannot be reached
there. It never explores, ignores the time of day, and does not notice drift.

Three forms of the same journey: `JOURNEY_SPEC` caps on the contacts the
caller counted itself (`recent.total_7d`); `SCRIPT_SPEC` is the script alone,
for a service that keeps the history and applies the cap as the contact rule
`CONTACT_POLICY` (the customer gets `nothing` when the cap forbids every
contact); `KEPT_JOURNEY_SPEC` caps on the contacts the service counted
(`nb_subject.contacts_7d`, a history feature), for requests with subject ids
where the cap is not the whole store's rule (a holdout kept on the journey).
"""

from __future__ import annotations

import json

WEEKLY_CAP = 6  # contacts in any 7 days
WEEK_SECONDS = 7 * 86_400


def _cap(feature: str) -> dict:
    return {"if": {feature: {">=": WEEKLY_CAP}}, "then": ["nothing"]}


_SCRIPT = {
    "rules": [
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
JOURNEY = {**_SCRIPT, "rules": [_cap("recent.total_7d"), *_SCRIPT["rules"]]}


def _spec(journey: dict) -> str:
    return "rules:" + json.dumps(journey, separators=(",", ":"))


JOURNEY_SPEC = _spec(JOURNEY)
SCRIPT_SPEC = _spec(_SCRIPT)
KEPT_JOURNEY_SPEC = _spec({**_SCRIPT, "rules": [_cap("nb_subject.contacts_7d"), *_SCRIPT["rules"]]})
CONTACT_POLICY = json.dumps({"rules": [{"name": "weekly", "max": WEEKLY_CAP, "per_seconds": WEEK_SECONDS}]})
