"""Every parameter of the pinball world in one place: `WorldConfig`.

Tastes are logits added to a customer's chance to click; missing entries count
as 0, so a small test world can set only what it checks. Time is in days.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Table = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class WorldConfig:
    """The population, the response model and the drift schedule of a pinball world.

    Response model for customer i, offer o on channel c, at time t::

        z     = click_base + channel_taste[seg][c] + offer_taste[seg][o] + taste_i(c, o, t)
                + daypart_effect[c][dp] + device_effect[device][c] + stage_click[stage]
                + stage_offer[stage][o]
                - fatigue_weight * f_c - ignored_weight * ignored_c
                - offer_fatigue_weight * g_o - crowding_weight * sum_c f_c
        click ~ Bernoulli(sigmoid(z))
        buy   ~ Bernoulli(sigmoid(buy_base + offer_taste[seg][o] + taste_i(o, t) + stage_offer[stage][o]))
                (only after a click)
        unsubscribe ~ Bernoulli(min(unsubscribe_cap, unsubscribe_rate * (f_c + ignored_c)))
                (only without a click; withdraws the consent of channel c)
        reward = -channel_cost[c] + click_value * click + offer_value[o] * buy - unsubscribe_penalty * unsubscribe

    where f_c is the channel's fatigue (every past contact on c counts
    2^(-age / fatigue_halflife_days)), g_o the same for offer o on any channel,
    ignored_c the number of latest contacts on c in a row without a click, and
    taste_i the customer's own deviation: a N(0, individual_sd) offset per
    channel and per offer that drifts linearly by N(0, drift_sd) over the run.
    `nothing` earns 0. Each customer states a preferred channel when they sign
    up: the best of their channel tastes plus N(0, stated_preference_sd) noise
    among the channels they can be reached on; it does not follow drift.

    Drift events, at fractions of the run: `shift` is added to the channel
    tastes of its segments from `shift_at`; offer `launched_offer` exists only
    from `launch_at`; consent for `withdrawn_channel` is withdrawn from
    everyone at `withdraw_at`.
    """

    customers: int = 300
    days: float = 28.0
    occasions_per_day: float = 1.0  # per customer: moments when an action may be taken
    individual_sd: float = 0.2
    drift_sd: float = 0.2
    stated_preference_sd: float = 0.5  # noise between the channel a customer says they prefer and their taste

    click_base: float = -1.0
    buy_base: float = -0.4
    channel_taste: Table = field(
        default_factory=lambda: {
            "student": {"email": -0.8, "push": 0.9, "sms": 0.2, "web": 0.1, "inapp": 0.6, "call": -2.0},
            "family": {"email": 0.6, "push": 0.1, "sms": 0.4, "web": 0.3, "inapp": -0.2, "call": -1.5},
            "professional": {"email": 0.7, "push": -0.4, "sms": -0.6, "web": 0.4, "inapp": 0.1, "call": 0.9},
            "retiree": {"email": 0.4, "push": -1.0, "sms": 0.3, "web": -0.6, "inapp": -1.5, "call": 1.1},
        }
    )
    offer_taste: Table = field(
        default_factory=lambda: {
            "student": {"discount": 0.9, "new-arrivals": 0.2, "loyalty": -0.5, "bundle": -0.3},
            "family": {"discount": 0.4, "new-arrivals": -0.2, "loyalty": 0.5, "bundle": 1.1},
            "professional": {"discount": -0.4, "new-arrivals": 0.8, "loyalty": 0.1, "bundle": 0.6},
            "retiree": {"discount": 0.2, "new-arrivals": -0.6, "loyalty": 0.8, "bundle": 0.0},
        }
    )
    daypart_effect: Table = field(
        default_factory=lambda: {
            "email": {"night": -0.4, "morning": 0.3},
            "push": {"night": -1.5, "evening": 0.3},
            "sms": {"night": -1.2, "morning": -0.2},
            "inapp": {"evening": 0.4},
        }
    )
    device_effect: Table = field(
        default_factory=lambda: {
            "desktop": {"email": 0.3, "web": 0.4},
            "ios": {"push": 0.2, "inapp": 0.2},
            "android": {"push": 0.2, "inapp": 0.2},
        }
    )
    stage_click: Mapping[str, float] = field(
        default_factory=lambda: {"new": 0.3, "active": 0.3, "lapsing": -0.3, "dormant": -0.8}
    )
    stage_offer: Table = field(
        default_factory=lambda: {
            "new": {"discount": 0.6},
            "active": {"new-arrivals": 0.3, "loyalty": 0.5},
            "lapsing": {"discount": 0.5},
            "dormant": {"discount": 0.5},
        }
    )

    fatigue_halflife_days: float = 1.0
    fatigue_weight: float = 0.25
    ignored_weight: float = 0.1
    offer_fatigue_weight: float = 0.1
    crowding_weight: float = 0.05
    unsubscribe_rate: float = 0.01
    unsubscribe_cap: float = 0.2

    click_value: float = 0.1
    offer_value: Mapping[str, float] = field(
        default_factory=lambda: {"discount": 0.6, "new-arrivals": 1.0, "loyalty": 0.8, "bundle": 1.2}
    )
    channel_cost: Mapping[str, float] = field(default_factory=lambda: {"sms": 0.03, "call": 0.25})
    unsubscribe_penalty: float = 0.5

    # delays: clicks after an exponential time with this mean (hours) per channel;
    # purchases after the click, log-normally (median hours, sigma of the log)
    click_delay_hours: Mapping[str, float] = field(
        default_factory=lambda: {"email": 3.0, "push": 0.3, "sms": 0.5, "web": 0.1, "inapp": 0.1, "call": 0.0}
    )
    purchase_delay_median_hours: float = 10.0
    purchase_delay_sigma: float = 1.0

    # population
    segment_share: Mapping[str, float] = field(
        default_factory=lambda: {"student": 0.25, "family": 0.3, "professional": 0.25, "retiree": 0.2}
    )
    device_share: Mapping[str, float] = field(default_factory=lambda: {"ios": 0.35, "android": 0.35, "desktop": 0.3})
    app_share: Mapping[str, float] = field(default_factory=lambda: {"ios": 0.75, "android": 0.65, "desktop": 0.25})
    consent_share: Mapping[str, float] = field(
        default_factory=lambda: {"email": 0.9, "push": 0.8, "sms": 0.55, "call": 0.45}
    )
    timezones: tuple[int, ...] = (-8, -6, -5, 0, 1)  # hours from the world clock, one per customer
    new_share: float = 0.15  # customers within their first two weeks
    purchase_gap_days: float = 40.0  # mean days since the last purchase of the others

    # drift
    shift_at: float = 0.35
    shift: Table = field(default_factory=lambda: {"student": {"push": -1.4, "inapp": 0.9}})
    launched_offer: str = "bundle"
    launch_at: float = 0.5
    withdrawn_channel: str = "sms"
    withdraw_at: float = 0.7
