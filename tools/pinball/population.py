"""The seeded part of a pinball world that no policy can change: the customers and their occasions.

Every policy compared on a world meets the same customers at the same
occasions with the same random draws (common random numbers), so differences
between policies come from their choices, not from luck.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nextbest.sim.catalog import APP_CHANNELS, CHANNELS, CONSENTED, OFFERS, daypart
from nextbest.sim.config import WorldConfig


@dataclass(frozen=True)
class Customer:
    """One customer: what the service may see (segment, device, consents, ...) and their hidden taste.

    `channel_taste`/`offer_taste` are the customer's own deviations from their
    segment (logits, in CHANNELS/OFFERS order) at the start; `*_drift` is how
    far they move, linearly, by the end of the run.
    """

    index: int
    segment: str
    device: str
    has_app: bool
    preferred: str  # the channel they said they prefer when they signed up
    timezone: int
    consent: frozenset[str]
    tenure_days: float  # at the start of the run
    last_purchase: float  # day of the last purchase before the run (negative), -inf when none
    channel_taste: np.ndarray
    channel_drift: np.ndarray
    offer_taste: np.ndarray
    offer_drift: np.ndarray


@dataclass(frozen=True)
class Occasion:
    """A moment when an action may be taken for a customer, and the draws that decide what they do.

    `draws` are (click, purchase, unsubscribe) uniforms, an Exp(1) draw that
    scales the channel's response delay, and a N(0, 1) draw for the purchase delay.
    """

    index: int
    time: float  # days since the start of the run
    customer: int
    draws: tuple[float, float, float, float, float]

    def local_hour(self, timezone: int) -> float:
        return (self.time * 24.0 + timezone) % 24.0

    def daypart(self, timezone: int) -> str:
        return daypart(self.local_hour(timezone))


def _choice(rng: np.random.Generator, shares: Mapping[str, float]) -> str:
    names = list(shares)
    p = np.array([shares[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


class Population:
    """The customers and the time-ordered occasions of a world, a pure function of (config, seed)."""

    def __init__(self, config: WorldConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        people, moments = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        self.customers = [self._customer(people, i) for i in range(config.customers)]
        n = int(moments.poisson(config.customers * config.days * config.occasions_per_day))
        self._times = np.sort(moments.uniform(0.0, config.days, n))
        self._who = moments.integers(0, config.customers, n)
        self._draws = np.column_stack(
            [moments.random((n, 3)), moments.exponential(1.0, n), moments.standard_normal(n)]
        ).tolist()

    def _customer(self, rng: np.random.Generator, index: int) -> Customer:
        c = self.config
        device = _choice(rng, c.device_share)
        has_app = bool(rng.random() < c.app_share[device])
        consent = frozenset(
            ch for ch in CONSENTED if rng.random() < c.consent_share.get(ch, 0.0) and (ch != "push" or has_app)
        )
        new = rng.random() < c.new_share
        segment = _choice(rng, c.segment_share)
        channel_taste = rng.normal(0.0, c.individual_sd, len(CHANNELS))
        stated = channel_taste + rng.normal(0.0, c.stated_preference_sd, len(CHANNELS))
        stated += [c.channel_taste.get(segment, {}).get(ch, 0.0) for ch in CHANNELS]
        reachable = [ch not in APP_CHANNELS or has_app for ch in CHANNELS]
        return Customer(
            index=index,
            segment=segment,
            device=device,
            has_app=has_app,
            preferred=CHANNELS[int(np.argmax(np.where(reachable, stated, -np.inf)))],
            timezone=int(rng.choice(c.timezones)),
            consent=consent,
            tenure_days=float(rng.uniform(0, 14) if new else rng.uniform(30, 1000)),
            last_purchase=-np.inf if new else -float(rng.exponential(c.purchase_gap_days)),
            channel_taste=channel_taste,
            channel_drift=rng.normal(0.0, c.drift_sd, len(CHANNELS)),
            offer_taste=rng.normal(0.0, c.individual_sd, len(OFFERS)),
            offer_drift=rng.normal(0.0, c.drift_sd, len(OFFERS)),
        )

    def __len__(self) -> int:
        return len(self._times)

    def occasion(self, index: int) -> Occasion:
        return Occasion(index, float(self._times[index]), int(self._who[index]), tuple(self._draws[index]))

    def occasions(self) -> list[Occasion]:
        """Every occasion of the run, in time order."""
        return [self.occasion(i) for i in range(len(self))]
