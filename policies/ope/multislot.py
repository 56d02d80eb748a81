"""Off-policy evaluation of multi-slot (CCB) decisions: per-slot replay, per-slot estimates and their total.

A multi-slot event fills slots 0, 1, … in order; slot k's action a_k is sampled among its eligible
actions (those it may take, less the earlier slots' choices) with the logged probability
μ_k = μ(a_k | x, a_<k), and earns the reward r_k.

**Replay.** Every candidate scores each slot k as it would after the earlier slots were filled as
logged, π_k = π(a_k | x, a_<k), by progressive validation (as `policies.ope.replay`: each event is
scored before the candidate learns from it; events with `skip_learn` are scored, not learned from).

- `vw:--ccb_explore_adf …` (the exploration and learning options of `vw:` policies, checked the same
  way) is one VW CCB workspace. Slot k is scored on an example holding slots 0 … k, the earlier ones
  restricted (`_inc`) to their logged action, so that VW's own removal of already chosen actions
  leaves slot k the eligible actions; VW injects the slot's position itself. It learns each event
  with every slot's logged label (action, −reward, logged probability).
- Any other spec (`baseline`, `random`, `vw:--cb_explore_adf …`, `fixed:…`, …) runs as independent
  single-slot loops, one policy per slot id: slot k's example is the shared context with the slot's
  namespaces (a slot namespace replaces a context one of the same name) and the eligible actions.

**Estimates per slot.** Slot k's action depends on the earlier ones, so the candidate's value of slot
k weighs the event by W_k = Π_{j≤k} π_j / μ_j (OBP's reward-interaction IPS; DM and DR weigh the
reward model's term by W_{k−1}, cascade DR): unbiased when slot k's reward depends on the actions of
slots 0 … k, not on later ones — the order in which CCB decides. Slot 0's estimate is the usual
single-slot one. Each slot has its own reward model for DM and DR (cross-fitted on the slot's
events, on the hashed features of its example). `logged` is the average logged reward per slot.

**Total.** The reward of a whole event, Σ_k c_k V_k, where V_k is slot k's value and c_k the share
of the events that have slot k (1 when every event has every slot): the sum over slots, because
each filled slot earns its own reward and a multi-slot decision maximizes their sum. Its intervals
account for slots of one event being correlated: gaussian by the delta method on the per-event
influence Σ_k [V_k (e_ik − c_k) + c_k (t_ik − V_k d_ik) / d̄_k] (e_ik: event i has slot k; t, d the
estimator's per-round terms and normalizers; d̄_k their mean), bootstrap by resampling events,
clopper-pearson as the sum of the per-slot intervals at level 1 − alpha / slots (Bonferroni).

Shapes (OBP style): a replay gives, per event, one pmf per slot over the event's actions (0 outside
the slot's eligible ones); an estimator's per-round terms and normalizers are arrays of shape
(events with the slot,); the total's terms are (events, slots) arrays, 0 where an event has no such slot.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np
import vowpalwabbit

from nextbest import policies
from nextbest.policies.base import LearnEvent, Policy, PolicySpecError
from nextbest.policies.featurize import Example, _namespaces_text, action_line
from nextbest.policies.ope.estimators import (
    DM,
    DR,
    IPS,
    SNIPS,
    BanditFeedback,
    ClippedIPS,
    Estimate,
    Estimator,
    cross_fit,
    pad,
)
from nextbest.policies.ope.logged import LoggedSlot, MultiSlotEvent
from nextbest.policies.ope.replay import TICK, _map
from nextbest.policies.ope.report import LOGGED, REFERENCES, Curve, EstimateReport, _cell, _order, _short, ranked
from nextbest.policies.vw_options import check_options

CCB = "--ccb_explore_adf"
FEATURE_DIM = 64
BOOTSTRAP_SAMPLES = 1000
TOTAL = "total"

# One event's replay: the candidate's pmf for each of its slots, over the event's actions.
SlotPmfs = tuple[np.ndarray, ...]


def is_ccb(spec: str) -> bool:
    """Whether `spec` is a VW conditional contextual bandit spec (`vw:--ccb_explore_adf …`)."""
    family, _, params = spec.partition(":")
    return family.strip() == "vw" and CCB in params.split()


def _ccb_args(spec: str) -> list[str]:
    """The canonical VW arguments of a `vw:--ccb_explore_adf …` spec; PolicySpecError as for `vw:` specs."""
    try:
        tokens = shlex.split(spec.partition(":")[2])
    except ValueError as e:
        raise PolicySpecError(f"cannot parse VW arguments: {e}") from e
    return [CCB, *check_options([t for t in tokens if t != CCB])]


def _workspace(spec: str) -> vowpalwabbit.Workspace:
    try:
        return vowpalwabbit.Workspace(arg_list=[*_ccb_args(spec), "--quiet"])
    except RuntimeError as e:
        raise PolicySpecError(f"{spec}: VW rejected the arguments: {str(e).strip().splitlines()[0][:200]}") from e


def check_spec(spec: str) -> None:
    """Raise PolicySpecError (naming the problem) unless `spec` can be replayed on multi-slot events."""
    if is_ccb(spec):
        _workspace(spec).finish()
    else:
        policies.create(spec)


def _slot_text(slot: LoggedSlot, head: str) -> str:
    features = _namespaces_text(slot.features) if slot.features else "|"
    return f"ccb slot {head} {features}" if head else f"ccb slot {features}"


def _included(slot: LoggedSlot, n_actions: int, taken: int) -> str:
    """Slot's eligible actions as VW's `_inc`, or "" when that is every action not taken by earlier slots."""
    return "" if len(slot.eligible) + taken == n_actions else ",".join(map(str, slot.eligible))


class _CCBCandidate:
    """A VW CCB workspace replayed slot by slot (see the module doc)."""

    def __init__(self, spec: str) -> None:
        self._ws = _workspace(spec)

    def _head(self, event: MultiSlotEvent) -> list[str]:
        shared = _namespaces_text(event.example.context) if event.example.context else "|"
        return [f"ccb shared {shared}", *(f"ccb action {action_line(a)}" for a in event.example.actions)]

    def pmfs(self, event: MultiSlotEvent) -> SlotPmfs:
        head, n = self._head(event), len(event.example)
        out = []
        for k, slot in enumerate(event.slots):
            forced = [_slot_text(s, str(s.chosen_index)) for s in event.slots[:k]]
            scores = self._ws.predict([*head, *forced, _slot_text(slot, _included(slot, n, k))])
            pmf = np.zeros(n)
            for action, probability in scores[k]:
                pmf[action] = probability
            out.append(pmf / pmf.sum())
        return tuple(out)

    def learn(self, event: MultiSlotEvent) -> None:
        n = len(event.example)
        lines = self._head(event)
        for k, s in enumerate(event.slots):
            label = f"{s.chosen_index}:{-s.reward:.9g}:{s.probability:.9g} {_included(s, n, k)}".strip()
            lines.append(_slot_text(s, label))
        self._ws.learn(lines)


@dataclass(frozen=True)
class _Action:
    id: str
    channel: str
    features: Mapping[str, Any]


def slot_example(event: MultiSlotEvent, slot: LoggedSlot, actions: Sequence[int] | None = None) -> Example:
    """Slot's single-slot example: the shared context with the slot's namespaces, and `actions` (default: all)."""
    chosen = range(len(event.example)) if actions is None else actions
    return Example({**event.example.context, **slot.features}, [event.example.actions[i] for i in chosen])


class _IndependentCandidate:
    """One single-slot policy per slot id, as independent loops (see the module doc)."""

    def __init__(self, spec: str) -> None:
        self._spec = spec
        self._policies: dict[str, Policy] = {}

    def _policy(self, slot_id: str) -> Policy:
        if slot_id not in self._policies:
            self._policies[slot_id] = policies.create(self._spec)
        return self._policies[slot_id]

    def pmfs(self, event: MultiSlotEvent) -> SlotPmfs:
        out = []
        for slot in event.slots:
            pmf = np.zeros(len(event.example))
            pmf[list(slot.eligible)] = self._policy(slot.id).pmf(slot_example(event, slot, slot.eligible))
            out.append(pmf)
        return tuple(out)

    def learn(self, event: MultiSlotEvent) -> None:
        for slot in event.slots:
            policy = self._policy(slot.id)
            if policy.learns:
                example = slot_example(event, slot, slot.eligible)
                index = slot.eligible.index(slot.chosen_index)
                policy.learn([LearnEvent(example, index, slot.probability, slot.reward)])


def replay(events: Iterable[MultiSlotEvent], spec: str, tick: Callable[[int], None] | None = None) -> list[SlotPmfs]:
    """The candidate's per-slot pmfs on every event, in order, by progressive validation (the module doc).

    `tick(k)` reports k more events scored, every `TICK` events and at the end. A pmf the candidate
    cannot give raises ValueError naming the event.
    """
    candidate = _CCBCandidate(spec) if is_ccb(spec) else _IndependentCandidate(spec)
    out: list[SlotPmfs] = []
    for e in events:
        try:
            out.append(candidate.pmfs(e))
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{spec}: event {e.event_id!r}: {err}") from err
        if not e.skip_learn:
            candidate.learn(e)
        if tick is not None and len(out) % TICK == 0:
            tick(TICK)
    if tick is not None:
        tick(len(out) % TICK)
    return out


def _replay_task(events: Sequence[MultiSlotEvent], spec: str, tick: Callable[[int], None] | None) -> list[SlotPmfs]:
    return replay(events, spec, tick)


@dataclass(frozen=True)
class _Slot:
    """Where slot `id` occurs: the events (indices) that have it and its position in each."""

    id: str
    rows: np.ndarray
    positions: np.ndarray


def _slots(events: Sequence[MultiSlotEvent]) -> list[_Slot]:
    found: dict[str, tuple[list[int], list[int]]] = {}
    for i, e in enumerate(events):
        for k, s in enumerate(e.slots):
            rows, positions = found.setdefault(s.id, ([], []))
            rows.append(i)
            positions.append(k)
    return [_Slot(s, np.array(r), np.array(p)) for s, (r, p) in found.items()]


def _feedback(
    events: Sequence[MultiSlotEvent],
    slot: _Slot,
    pmfs: Sequence[SlotPmfs],
    reward_hat: np.ndarray,
) -> BanditFeedback:
    """Slot's feedback for a candidate: its pmf at the slot and the prefix weight of the earlier slots."""
    logged = [events[i].slots[k] for i, k in zip(slot.rows, slot.positions, strict=True)]
    target = pad([pmfs[i][k] for i, k in zip(slot.rows, slot.positions, strict=True)])
    prefix = [
        math.prod(pmfs[i][j][s.chosen_index] / s.probability for j, s in enumerate(events[i].slots[:k]))
        for i, k in zip(slot.rows, slot.positions, strict=True)
    ]
    return BanditFeedback(
        [s.reward for s in logged],
        [s.probability for s in logged],
        chosen=[s.chosen_index for s in logged],
        target_pmf=target,
        reward_hat=reward_hat,
        prefix_weight=prefix,
    )


def _reward_model(events: Sequence[MultiSlotEvent], slot: _Slot, folds: int, seed: int) -> np.ndarray:
    """q̂ for the slot's events: cross-fitted on the hashed features of each event's slot example; 0 for a slot
    with a single event (DR is then IPS)."""
    logged = [events[i].slots[k] for i, k in zip(slot.rows, slot.positions, strict=True)]
    if len(logged) < 2:
        return np.zeros((1, len(events[slot.rows[0]].example)))
    features = [slot_example(events[i], s).hashed(FEATURE_DIM) for i, s in zip(slot.rows, logged, strict=True)]
    chosen, reward = [s.chosen_index for s in logged], [s.reward for s in logged]
    return cross_fit(features, chosen, reward, folds=min(folds, len(logged)), seed=seed)


@dataclass(frozen=True)
class SlotReport:
    """One policy's estimates for one slot, its weights' ESS, largest weight and warnings, and its value over time.

    JSON: {"slot": "hero", "events": 2000, "estimates": {"ips": {...}, ...}, "ess": ..., "max_weight": ...,
    "warnings": [...], "curve": {...}}.
    """

    slot: str
    events: int
    estimates: Mapping[str, EstimateReport]
    ess: float
    max_weight: float
    warnings: tuple[str, ...]
    curve: Curve

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "events": self.events,
            "estimates": {name: e.to_dict() for name, e in self.estimates.items()},
            "ess": self.ess,
            "max_weight": self.max_weight,
            "warnings": list(self.warnings),
            "curve": self.curve.to_dict(),
        }


@dataclass(frozen=True)
class MultiSlotPolicyReport:
    """One policy's per-slot reports, in slot order, and its total (the module doc) by estimator name.

    JSON: {"spec": ..., "slots": [{...}, ...], "total": {"ips": {"value": ..., "ci": [...]}, ...}}.
    """

    spec: str
    slots: tuple[SlotReport, ...]
    total: Mapping[str, EstimateReport]

    def slot(self, slot_id: str) -> SlotReport:
        """The report of slot `slot_id`; KeyError if it has none."""
        for s in self.slots:
            if s.slot == slot_id:
                return s
        raise KeyError(slot_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "slots": [s.to_dict() for s in self.slots],
            "total": {name: e.to_dict() for name, e in self.total.items()},
        }


@dataclass(frozen=True)
class MultiSlotReport:
    """What `evaluate` returns: the events, the slot ids (in order of first appearance), the intervals' kind
    and level, every policy's report (logged, the references, then the candidates in order) and the best
    candidate by total DR.

    JSON: {"events": 2000, "slots": ["hero", "side"], "interval": "gaussian", "alpha": 0.05,
    "total": "sum over slots of the reward per event", "policies": [...], "best": ...}.
    """

    events: int
    slots: tuple[str, ...]
    interval: str
    alpha: float
    policies: tuple[MultiSlotPolicyReport, ...]
    best: str | None

    def policy(self, spec: str) -> MultiSlotPolicyReport:
        """The report of policy `spec`; KeyError if it was not evaluated."""
        for p in self.policies:
            if p.spec == spec:
                return p
        raise KeyError(spec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "slots": list(self.slots),
            "interval": self.interval,
            "alpha": self.alpha,
            "total": "sum over slots of the reward per event",
            "policies": [p.to_dict() for p in self.policies],
            "best": self.best,
        }

    def to_json(self, indent: int | None = None) -> str:
        """`to_dict()` as JSON text (numbers that are not finite are null)."""
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class _SlotTerms:
    """One slot's per-round terms t and normalizers d for one estimator, and the rows (events) they belong to."""

    rows: np.ndarray
    t: np.ndarray
    d: np.ndarray


def _total_matrices(terms: Sequence[_SlotTerms], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, D, E), each (events, slots): the terms, the normalizers and whether the event has the slot."""
    shape = (n, len(terms))
    t, d, e = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for k, s in enumerate(terms):
        t[s.rows, k], d[s.rows, k], e[s.rows, k] = s.t, s.d, 1.0
    return t, d, e


def _total_value(t: np.ndarray, d: np.ndarray, e: np.ndarray) -> float:
    """Σ_k c_k T_k / D_k (nan when a slot has no positive Σ d)."""
    return float(_total_values(t.sum(axis=0), d.sum(axis=0), e.mean(axis=0)))


def _total_values(sum_t: np.ndarray, sum_d: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Σ_k c_k T_k / D_k along the last axis, from the per-slot sums and shares (nan where a Σ d is not positive)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(sum_d > 0, sum_t / np.where(sum_d > 0, sum_d, 1.0), np.nan)
    return (share * ratio).sum(axis=-1)


def _total_gaussian(t: np.ndarray, d: np.ndarray, e: np.ndarray, alpha: float) -> tuple[float, float]:
    n = len(t)
    value = _total_value(t, d, e)
    if n < 2 or math.isnan(value):
        return math.nan, math.nan
    share, mean_d = e.mean(axis=0), d.mean(axis=0)
    ratio = t.sum(axis=0) / d.sum(axis=0)
    influence = (ratio * (e - share) + share * (t - ratio * d) / mean_d).sum(axis=1)
    se = math.sqrt(float(influence @ influence) * n / (n - 1)) / n
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return value - z * se, value + z * se


def _total_bootstrap(t: np.ndarray, d: np.ndarray, e: np.ndarray, alpha: float, seed: int) -> tuple[float, float]:
    """The percentile interval of the total over resamples of the events (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    n = len(t)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=BOOTSTRAP_SAMPLES)  # how often each event is drawn
    values = _total_values(counts @ t, counts @ d, counts @ e / n)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def total_estimate(
    estimator: Estimator,
    feedbacks: Sequence[BanditFeedback],
    rows: Sequence[np.ndarray],
    n: int,
    interval: str,
    alpha: float,
    seed: int = 0,
) -> EstimateReport:
    """The total (module doc) of one estimator over slots with these feedbacks, each on the events `rows`
    (indices among `n` events)."""
    terms = [_SlotTerms(r, *estimator.terms(f)) for f, r in zip(feedbacks, rows, strict=True)]
    t, d, e = _total_matrices(terms, n)
    value = _total_value(t, d, e)
    if interval == "gaussian":
        ci = _total_gaussian(t, d, e, alpha)
    elif interval == "bootstrap":
        ci = _total_bootstrap(t, d, e, alpha, seed)
    else:
        share = e.mean(axis=0)
        bounds = [estimator.estimate(f, interval, alpha / len(feedbacks)).ci for f in feedbacks]
        lows, highs = np.array(bounds).T
        ci = (float(share @ lows), float(share @ highs))
    return EstimateReport.of(Estimate(estimator.name, value, ci, interval, n, math.nan, math.nan, ()))


def _slot_report(slot_id: str, estimates: Mapping[str, Estimate], feedback: BanditFeedback) -> SlotReport:
    first = next(iter(estimates.values()))
    return SlotReport(
        slot_id,
        feedback.n,
        {name: EstimateReport.of(e) for name, e in estimates.items()},
        first.ess,
        first.max_weight,
        first.warnings,
        Curve.of(feedback.weights, feedback.reward),
    )


def evaluate(
    events: Iterable[MultiSlotEvent],
    specs: Sequence[str],
    *,
    interval: str = "gaussian",
    alpha: float = 0.05,
    max_weight: float = 100.0,
    folds: int = 5,
    seed: int = 0,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> MultiSlotReport:
    """Replay each candidate spec through multi-slot `events` and estimate its value per slot and in total.

    Arguments as `policies.ope.report.evaluate` (no namespace importance). Raises ValueError
    (PolicySpecError for a bad spec) on unusable input.
    """
    candidates = list(dict.fromkeys(s.strip() for s in specs))
    for spec in candidates:
        check_spec(spec)  # a bad spec is refused whatever the events, and before the long part
    events = list(events)
    n = len(events)
    if n < 2:
        raise ValueError(f"evaluation needs at least 2 events, got {n}")
    all_specs = [*REFERENCES, *(s for s in candidates if s not in REFERENCES)]
    done, total = 0, n * len(all_specs)

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    estimators = (IPS(), SNIPS(), ClippedIPS(max_weight), DM(), DR())
    slots = _slots(events)
    entries = [_logged(events, slots, estimators, interval, alpha, seed)]
    models = [_reward_model(events, s, folds, seed) for s in slots]
    for spec, pmfs in zip(all_specs, _map(_replay_task, events, all_specs, jobs, tick), strict=True):
        feedbacks = [_feedback(events, s, pmfs, hat) for s, hat in zip(slots, models, strict=True)]
        entries.append(
            _policy_report(spec, slots, feedbacks, [s.rows for s in slots], n, estimators, interval, alpha, seed)
        )
    dr = {e.spec: e.total["dr"].value for e in entries}
    best = max(candidates, key=lambda s: _order(dr[s]), default=None)
    return MultiSlotReport(n, tuple(s.id for s in slots), interval, alpha, tuple(entries), best)


def _policy_report(
    spec: str,
    slots: Sequence[_Slot],
    feedbacks: Sequence[BanditFeedback],
    rows: Sequence[np.ndarray],
    n: int,
    estimators: Sequence[Estimator],
    interval: str,
    alpha: float,
    seed: int,
) -> MultiSlotPolicyReport:
    reports = [
        _slot_report(s.id, {e.name: e.estimate(f, interval, alpha, seed=seed) for e in estimators}, f)
        for s, f in zip(slots, feedbacks, strict=True)
    ]
    totals = {e.name: total_estimate(e, feedbacks, rows, n, interval, alpha, seed) for e in estimators}
    return MultiSlotPolicyReport(spec, tuple(reports), totals)


def _logged(
    events: Sequence[MultiSlotEvent],
    slots: Sequence[_Slot],
    estimators: Sequence[Estimator],
    interval: str,
    alpha: float,
    seed: int,
) -> MultiSlotPolicyReport:
    """The logged policy's row: each slot's average logged reward (every estimator's value, all weights being
    1), on the events the live policy decided: without the holdout's, unless that leaves fewer than 2 events
    or a slot without any."""
    live = np.array([not e.holdout for e in events])
    if live.sum() < 2 or not all(live[s.rows].any() for s in slots):
        live[:] = True
    index = np.cumsum(live) - 1  # an event's position among the live ones
    feedbacks, rows = [], []
    for s in slots:
        keep = live[s.rows]
        logged = [events[i].slots[k] for i, k in zip(s.rows[keep], s.positions[keep], strict=True)]
        mu = [x.probability for x in logged]
        feedbacks.append(BanditFeedback([x.reward for x in logged], mu, mu))
        rows.append(index[s.rows[keep]])
    ips = IPS()
    report = _policy_report(LOGGED, slots, feedbacks, rows, int(live.sum()), [ips], interval, alpha, seed)
    slot_reports = (replace(r, estimates={e.name: r.estimates[ips.name] for e in estimators}) for r in report.slots)
    return MultiSlotPolicyReport(LOGGED, tuple(slot_reports), {e.name: report.total[ips.name] for e in estimators})


def _ranked(report: MultiSlotReport) -> list[MultiSlotPolicyReport]:
    return ranked(report.policies, lambda p: p.total["dr"].value)


def format_report(report: MultiSlotReport) -> str:
    """The report as text for a terminal: per policy a row per slot and the total, the warnings, the best."""
    level = f"{100 * (1 - report.alpha):g}% {report.interval}"
    lines = [
        f"{report.events} multi-slot events, slots {', '.join(report.slots)}; values with {level} intervals; "
        "total = sum over slots of the reward per event",
        f"{'IPS':<27} {'SNIPS':<27} {'DR':<27} {'ESS':>9}  {'slot':<12} policy",
    ]
    for p in _ranked(report):
        for s in p.slots:
            cells = " ".join(f"{_cell(s.estimates[k]):<27}" for k in ("ips", "snips", "dr"))
            lines.append(f"{cells} {s.ess:>9.0f}  {s.slot:<12} {p.spec}")
        cells = " ".join(f"{_cell(p.total[k]):<27}" for k in ("ips", "snips", "dr"))
        lines.append(f"{cells} {'':>9}  {TOTAL:<12} {p.spec}")
    lines += [f"warning: {p.spec}: slot {s.slot}: {w}" for p in report.policies for s in p.slots for w in s.warnings]
    if report.best:
        best = report.policy(report.best)
        lines += [f"best (by total DR): {_cell(best.total['dr'])}", f"spec for SetPolicy: {report.best}"]
    return "\n".join(lines)


def plot(report: MultiSlotReport, path: str) -> None:
    """A PNG at `path`: each slot's value over time (cumulative SNIPS) for logged and the best candidate, above
    each policy's IPS, SNIPS and DR with intervals, per slot and in total."""
    from matplotlib.figure import Figure

    entries = _ranked(report)
    rows = [(p, s.slot, s.estimates) for p in entries for s in p.slots] + [(p, TOTAL, p.total) for p in entries]
    rows.sort(key=lambda r: entries.index(r[0]))
    bars_height = 0.8 + 0.25 * len(rows)
    fig = Figure(figsize=(11, 4.5 + bars_height), layout="constrained")
    curves, bars = fig.subplots(2, 1, height_ratios=[4, bars_height])
    shown = [entries[0]] + ([report.policy(report.best)] if report.best else [])
    for p in shown:
        for s in p.slots:
            values = [math.nan if v is None else v for v in s.curve.snips]
            curves.plot(s.curve.events, values, label=f"{_short(p.spec)} · {s.slot}", lw=1.2)
    curves.set_xlabel("events with the slot")
    curves.set_ylabel("cumulative SNIPS estimate")
    curves.legend(loc="lower right", fontsize=7)
    curves.grid(alpha=0.3)
    for j, (key, color) in enumerate((("ips", "tab:blue"), ("snips", "tab:orange"), ("dr", "tab:green"))):
        for i, (_, _, estimates) in enumerate(rows):
            est = estimates[key]
            if est.value is None:
                continue
            lo, hi = (est.value if c is None else c for c in est.ci)
            label = key.upper() if i == 0 else None
            y = -i + (j - 1) * 0.22
            bars.errorbar(
                est.value,
                y,
                xerr=[[est.value - lo], [hi - est.value]],
                fmt="o",
                ms=3,
                capsize=2,
                color=color,
                label=label,
            )
    bars.set_yticks(
        [-i for i in range(len(rows))], [f"{_short(p.spec, 48)} · {slot}" for p, slot, _ in rows], fontsize=8
    )
    bars.set_xlabel(f"estimated value ({100 * (1 - report.alpha):g}% {report.interval} interval)")
    bars.legend(loc="best", fontsize=8)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Offline evaluation on {report.events} logged multi-slot events")
    fig.savefig(path, dpi=110)
