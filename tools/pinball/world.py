"""The pinball world as one policy lives it: customers' contact histories, their responses, the truth.

Each policy compared gets its own `World` over a shared `Population`: the same
customers and occasions, but histories (fatigue, consent, purchases) that
follow that policy's own choices. `observe` tells what is true at an occasion,
including the expected reward of every action (what an oracle knows);
`respond` plays out the customer's response to the chosen action.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nextbest.sim.catalog import (
    APP_CHANNELS,
    BUSINESS_DAYPARTS,
    CHANNELS,
    CONSENTED,
    DAYPARTS,
    DEVICES,
    NOTHING,
    OFFERS,
    SEGMENTS,
    STAGES,
    action_id,
)
from nextbest.sim.population import Customer, Occasion, Population

HISTORY_DAYS = 30.0  # contacts older than this are forgotten (their fatigue is < 2^-15)


def _row(table: Mapping[str, Mapping[str, float]], key: str, names: Sequence[str]) -> np.ndarray:
    row = table.get(key, {})
    return np.array([row.get(n, 0.0) for n in names])


@dataclass
class Contact:
    """An action taken for a customer and what came of it (times in days; inf: never)."""

    time: float
    channel: int
    offer: int
    clicked: float = math.inf
    bought: float = math.inf
    unsubscribed: float = math.inf


@dataclass
class _History:
    contacts: list[Contact] = field(default_factory=list)
    last_purchase: float = -math.inf
    withdrawn: dict[str, float] = field(default_factory=dict)  # channel -> day its consent was withdrawn


@dataclass(frozen=True)
class Reward:
    """One reward of a decision as the business would report it: when, what kind, how much."""

    time: float  # days since the start of the run
    reward_id: str  # cost, click, purchase or unsubscribe
    value: float


@dataclass(frozen=True)
class ChannelHistory:
    """What the business knows of its contacts with a customer on one channel, as of an occasion."""

    contacts_7d: int
    days_since: float  # inf when never (within HISTORY_DAYS)
    ignored: int  # latest contacts in a row without a click
    clicks_30d: int


@dataclass(frozen=True)
class OfferHistory:
    """What the business knows of the offers it showed a customer, on any channel, as of an occasion."""

    shown_7d: int
    clicks_30d: int


@dataclass(frozen=True)
class Moment:
    """Everything about one occasion: what the service may see, and the hidden truth.

    `action_ids` are every action of the moment (an offer on each channel, then
    `nothing`); `excluded` those that consent or eligibility forbid;
    `expected[i]` is the expected reward of action i (for excluded ones too).
    """

    occasion: Occasion
    customer: Customer
    stage: str
    daypart: str
    last_response: str
    consent: frozenset[str]
    offers: tuple[str, ...]
    channels: dict[str, ChannelHistory]
    offer_history: dict[str, OfferHistory]
    action_ids: list[str]
    excluded: frozenset[str]
    expected: np.ndarray
    eligible: np.ndarray  # bool per action
    p_click: np.ndarray  # per (channel, offer) action, in action order
    p_buy: np.ndarray
    p_unsubscribe: np.ndarray

    @property
    def best(self) -> float:
        """The expected reward of the best eligible action: the oracle's."""
        return float(self.expected[self.eligible].max())

    def best_index(self) -> int:
        return int(np.argmax(np.where(self.eligible, self.expected, -np.inf)))


class _Tally:
    """What a customer's recent contacts add up to at time t: fatigue (hidden) and history (known)."""

    def __init__(self, contacts: list[Contact], t: float, halflife: float) -> None:
        self.fatigue = np.zeros(len(CHANNELS))
        self.offer_fatigue = np.zeros(len(OFFERS))
        count_7d, clicks, ignored = [0] * len(CHANNELS), [0] * len(CHANNELS), [0] * len(CHANNELS)
        last = [math.inf] * len(CHANNELS)
        streak_open = [True] * len(CHANNELS)
        shown_7d, offer_clicks = [0] * len(OFFERS), [0] * len(OFFERS)
        for k in reversed(contacts):  # newest first
            age = t - k.time
            decay = 0.5 ** (age / halflife)
            self.fatigue[k.channel] += decay
            self.offer_fatigue[k.offer] += decay
            last[k.channel] = min(last[k.channel], age)
            clicked = k.clicked <= t
            clicks[k.channel] += clicked
            offer_clicks[k.offer] += clicked
            streak_open[k.channel] &= not clicked
            ignored[k.channel] += streak_open[k.channel]
            if age < 7:
                count_7d[k.channel] += 1
                shown_7d[k.offer] += 1
        self.channels = [ChannelHistory(*row) for row in zip(count_7d, last, ignored, clicks, strict=True)]
        self.offers = [OfferHistory(*row) for row in zip(shown_7d, offer_clicks, strict=True)]


class World:
    """The state of a population's customers under one policy; deterministic given the choices made."""

    def __init__(self, population: Population) -> None:
        self.population = population
        c = self.config = population.config
        self._histories = [_History(last_purchase=cu.last_purchase) for cu in population.customers]
        self._channel_taste = {s: _row(c.channel_taste, s, CHANNELS) for s in SEGMENTS}
        self._offer_taste = {s: _row(c.offer_taste, s, OFFERS) for s in SEGMENTS}
        self._shift = {s: _row(c.shift, s, CHANNELS) for s in SEGMENTS}
        self._daypart = {d: np.array([c.daypart_effect.get(ch, {}).get(d, 0.0) for ch in CHANNELS]) for d in DAYPARTS}
        self._device = {d: _row(c.device_effect, d, CHANNELS) for d in DEVICES}
        self._stage_offer = {s: _row(c.stage_offer, s, OFFERS) for s in STAGES}
        self._value = np.array([c.offer_value.get(o, 0.0) for o in OFFERS])
        self._cost = np.array([c.channel_cost.get(ch, 0.0) for ch in CHANNELS])
        self._delay = np.array([c.click_delay_hours.get(ch, 0.0) / 24.0 for ch in CHANNELS])

    # events of the run

    def offers(self, time: float) -> tuple[str, ...]:
        """The offers that exist at `time` (the launched offer only after its launch)."""
        launched = time >= self.config.launch_at * self.config.days
        return tuple(o for o in OFFERS if o != self.config.launched_offer or launched)

    def consent(self, customer: Customer, time: float) -> frozenset[str]:
        """The channels the customer consents to at `time`."""
        c = self.config
        withdrawn = self._histories[customer.index].withdrawn
        return frozenset(
            ch
            for ch in customer.consent
            if withdrawn.get(ch, math.inf) > time and not (ch == c.withdrawn_channel and time >= c.withdraw_at * c.days)
        )

    # the truth at an occasion

    def observe(self, occasion: Occasion) -> Moment:
        """The occasion's situation and the expected reward of every action."""
        t = occasion.time
        customer = self.population.customers[occasion.customer]
        history = self._histories[customer.index]
        contacts = history.contacts = self._forget(history, t)
        stage = self._stage(customer, history, t)
        part = occasion.daypart(customer.timezone)
        consent = self.consent(customer, t)
        offers = self.offers(t)
        tally = _Tally(contacts, t, self.config.fatigue_halflife_days)
        p_click, p_buy, p_unsub, mu = self._response(customer, stage, part, t, tally)
        columns = [OFFERS.index(o) for o in offers]
        ids = [action_id(ch, o) for ch in CHANNELS for o in offers] + [NOTHING]
        allowed = self._allowed(customer, consent, part, stage, offers)
        return Moment(
            occasion=occasion,
            customer=customer,
            stage=stage,
            daypart=part,
            last_response=self._last_response(contacts, t),
            consent=consent,
            offers=offers,
            channels=dict(zip(CHANNELS, tally.channels, strict=True)),
            offer_history={o: tally.offers[i] for o, i in zip(offers, columns, strict=True)},
            action_ids=ids,
            excluded=frozenset(a for a, ok in zip(ids, allowed, strict=True) if not ok),
            expected=np.append(mu[:, columns].ravel(), 0.0),
            eligible=np.array(allowed),
            p_click=p_click[:, columns].ravel(),
            p_buy=np.tile(p_buy[columns], len(CHANNELS)),
            p_unsubscribe=np.repeat(p_unsub, len(columns)),
        )

    def _response(
        self, customer: Customer, stage: str, part: str, t: float, tally: _Tally
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """P(click) per (channel, offer), P(buy | click) per offer, P(unsubscribe | no click) per channel, and
        the expected reward per (channel, offer): the model of WorldConfig's docstring."""
        c = self.config
        frac = t / c.days
        channel_taste = self._channel_taste[customer.segment] + customer.channel_taste + customer.channel_drift * frac
        if frac >= c.shift_at:
            channel_taste = channel_taste + self._shift[customer.segment]
        offer_taste = self._offer_taste[customer.segment] + customer.offer_taste + customer.offer_drift * frac
        stage_offer = self._stage_offer[stage]
        ignored = np.array([h.ignored for h in tally.channels], dtype=float)
        per_channel = (
            channel_taste
            + self._daypart[part]
            + self._device[customer.device]
            - c.fatigue_weight * tally.fatigue
            - c.ignored_weight * ignored
        )
        per_offer = offer_taste + stage_offer - c.offer_fatigue_weight * tally.offer_fatigue
        base = c.click_base + c.stage_click.get(stage, 0.0) - c.crowding_weight * tally.fatigue.sum()
        p_click = 1.0 / (1.0 + np.exp(-(base + per_channel[:, None] + per_offer[None, :])))
        p_buy = 1.0 / (1.0 + np.exp(-(c.buy_base + offer_taste + stage_offer)))
        p_unsub = np.minimum(c.unsubscribe_cap, c.unsubscribe_rate * (tally.fatigue + ignored))
        mu = (
            -self._cost[:, None]
            + p_click * (c.click_value + p_buy[None, :] * self._value[None, :])
            - (1.0 - p_click) * p_unsub[:, None] * c.unsubscribe_penalty
        )
        return p_click, p_buy, p_unsub, mu

    @staticmethod
    def _forget(history: _History, t: float) -> list[Contact]:
        """The contacts of the last HISTORY_DAYS (and older ones whose purchase is still to come)."""
        kept = []
        for k in history.contacts:
            if t - k.time < HISTORY_DAYS or t < k.bought < math.inf:
                kept.append(k)
            elif k.bought <= t:
                history.last_purchase = max(history.last_purchase, k.bought)
        return kept

    @staticmethod
    def _stage(customer: Customer, history: _History, t: float) -> str:
        bought = [k.bought for k in history.contacts if k.bought <= t]
        last = max([history.last_purchase, *bought])
        if last == -math.inf and customer.tenure_days + t < 14:
            return "new"
        since = t - last if last > -math.inf else customer.tenure_days + t
        if last > -math.inf and since < 30:
            return "active"
        return "lapsing" if since < 90 else "dormant"

    @staticmethod
    def _last_response(contacts: list[Contact], t: float) -> str:
        if not contacts:
            return "none"
        k = contacts[-1]
        if k.bought <= t:
            return "purchase"
        if k.clicked <= t:
            return "click"
        return "unsubscribe" if k.unsubscribed <= t else "ignored"

    @staticmethod
    def _allowed(
        customer: Customer, consent: frozenset[str], part: str, stage: str, offers: tuple[str, ...]
    ) -> list[bool]:
        out = []
        for ch in CHANNELS:
            reachable = (
                (ch not in CONSENTED or ch in consent)
                and (ch not in APP_CHANNELS or customer.has_app)
                and (ch != "call" or part in BUSINESS_DAYPARTS)
            )
            out += [reachable and (o != "loyalty" or stage == "active") for o in offers]
        return [*out, True]

    # what the customer does

    def respond(self, moment: Moment, index: int) -> list[Reward]:
        """Play out the response to action `index` of `moment`; its rewards, in no particular order.

        The outcome follows the occasion's draws, so two policies taking the
        same action in the same situation see the same response.
        """
        if moment.action_ids[index] == NOTHING:
            return []
        c = self.config
        t = moment.occasion.time
        u_click, u_buy, u_unsub, e_delay, n_delay = moment.occasion.draws
        channel = index // len(moment.offers)
        offer = OFFERS.index(moment.offers[index % len(moment.offers)])
        contact = Contact(t, channel, offer)
        history = self._histories[moment.customer.index]
        history.contacts.append(contact)
        rewards = []
        if self._cost[channel]:
            rewards.append(Reward(t, "cost", -float(self._cost[channel])))
        respond_at = t + e_delay * float(self._delay[channel])
        if u_click < moment.p_click[index]:
            contact.clicked = respond_at
            rewards.append(Reward(respond_at, "click", c.click_value))
            if u_buy < moment.p_buy[index]:
                hours = math.exp(math.log(c.purchase_delay_median_hours) + c.purchase_delay_sigma * n_delay)
                contact.bought = respond_at + hours / 24.0
                rewards.append(Reward(contact.bought, "purchase", float(self._value[offer])))
        elif u_unsub < moment.p_unsubscribe[index]:
            contact.unsubscribed = respond_at
            history.withdrawn[CHANNELS[channel]] = respond_at
            rewards.append(Reward(respond_at, "unsubscribe", -c.unsubscribe_penalty))
        return rewards
