"""Offline evaluation of candidate policies on a log: estimates, a ranking, namespace importance, a table and a plot.

`evaluate(events, specs)` is what `nextbest evaluate` and the admin RPC call.
It replays every candidate through the events (`policies.ope.replay`),
fits one reward model for DM and DR by cross-fitting on the events' hashed
features (`Example.hashed(64)`, held in memory: 256 bytes per action of each
event), and returns an `EvaluationReport`. Its `to_dict()` is the JSON
document of `nextbest evaluate --json` and `EvaluateResponse.report_json`::

    {"events": 2000, "interval": "gaussian", "alpha": 0.05,
     "policies": [
       {"spec": "logged",
        "estimates": {"ips": {"value": 0.27, "ci": [0.25, 0.29]}, "snips": {...}, "clipped_ips": {...},
                      "dm": {...}, "dr": {...}},
        "ess": 2000.0, "max_weight": 1.0, "warnings": [],
        "curve": {"events": [10, 20, ...], "snips": [0.3, 0.28, ...]}},
       {"spec": "baseline", ...}, {"spec": "random", ...}, {"spec": "vw:--cb_explore_adf -q ::", ...}],
     "best": "vw:--cb_explore_adf -q ::",
     "importance": {"spec": "vw:...", "estimator": "dr", "value": 0.71,
                    "namespaces": [{"side": "context", "namespace": "user", "value": 0.3, "ci": [...],
                                    "drop": 0.41}, ...]}}

- `logged` is the policy that chose the logged actions: its value is the
  average logged reward (every estimator reduces to it, all weights being 1).
  Events of a loop's holdout (`LoggedEvent.holdout`) are left out of it: the
  live policy did not choose them. Every other row uses every event (each
  logged probability is the one sampled with, whichever policy sampled).
  `baseline` and `random` are always reported for comparison, then the
  candidates in the order given.
- `ci` is the interval named by `interval` at level 1 − `alpha`; `ess`,
  `max_weight` and `warnings` describe the candidate's importance weights
  (see `policies.ope.estimators`); `curve` is the cumulative SNIPS estimate
  after each of up to 200 event counts (the value over time).
- `best` is the candidate with the highest DR value (null without candidates);
  `importance` (when asked) replays it once per namespace left out and
  reports the drop in DR value, largest first.

Numbers that do not exist (an interval from one event, SNIPS of a policy that
never picks a logged action) are null. The dataclasses hold the same fields by
the same names (tuples for lists, None for null); a namespace's "value" and
"ci" are its `estimate`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from nextbest import policies
from nextbest.policies.ope.estimators import DM, DR, IPS, SNIPS, BanditFeedback, ClippedIPS, Estimate, cross_fit
from nextbest.policies.ope.logged import LoggedEvent
from nextbest.policies.ope.replay import hashed_features, namespaces, replay_specs

LOGGED = "logged"
REFERENCES = ("baseline", "random")
FEATURE_DIM = 64
CURVE_POINTS = 200
PLOT_CURVES = 5  # candidates whose value over time is drawn, besides logged and the references

EXPLORATIONS = ("--epsilon 0.05", "--squarecb", "--softmax --lambda 10")
INTERACTIONS = ("::", "")
LEARNING_RATES = (0.1, 0.5, 1.0)
CB_TYPES = ("ips", "dm", "mtr")


def search_grid(
    explorations: Sequence[str] = EXPLORATIONS,
    interactions: Sequence[str] = INTERACTIONS,
    learning_rates: Sequence[float] = LEARNING_RATES,
    cb_types: Sequence[str] = CB_TYPES,
) -> tuple[list[str], list[tuple[str, str]]]:
    """`vw:` specs for every combination of the arguments VW accepts, and (spec, reason) for those it refuses.

    An exploration is VW arguments (`--squarecb`, `--epsilon 0.05`, …); an
    interaction is a `-q` value (`::` for all pairs; "" for none). VW 9.11
    refuses e.g. `--squarecb` with any `--cb_type` but `mtr`.
    """
    specs, refused = [], []
    for explore, q, rate, cb_type in itertools.product(explorations, interactions, learning_rates, cb_types):
        spec = f"vw:--cb_explore_adf {explore} --cb_type {cb_type}{f' -q {q}' if q else ''} -l {rate:g}"
        try:
            policies.create(spec)
        except policies.PolicySpecError as e:
            refused.append((spec, str(e)))
        else:
            specs.append(spec)
    return specs, refused


def _order(value: float | None) -> float:
    """A sort key that puts missing values last in descending order."""
    return -math.inf if value is None else value


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class EstimateReport:
    """One estimator's value and interval; None where the number does not exist.

    JSON: {"value": 0.27, "ci": [0.25, 0.29]}.
    """

    value: float | None
    ci: tuple[float | None, float | None]

    @classmethod
    def of(cls, estimate: Estimate) -> EstimateReport:
        lo, hi = estimate.ci
        return cls(_number(estimate.value), (_number(lo), _number(hi)))

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": list(self.ci)}


@dataclass(frozen=True)
class Curve:
    """The cumulative SNIPS estimate (None before any weight) after each of `events` (up to 200 event counts).

    JSON: {"events": [10, 20, ...], "snips": [0.3, 0.28, ...]}.
    """

    events: tuple[int, ...]
    snips: tuple[float | None, ...]

    @classmethod
    def of(cls, weights: np.ndarray, reward: np.ndarray) -> Curve:
        at = np.unique(np.linspace(1, len(reward), min(len(reward), CURVE_POINTS)).round().astype(int))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.cumsum(weights * reward)[at - 1] / np.cumsum(weights)[at - 1]
        return cls(tuple(at.tolist()), tuple(_number(v) for v in values))

    def to_dict(self) -> dict[str, Any]:
        return {"events": list(self.events), "snips": list(self.snips)}


@dataclass(frozen=True)
class PolicyReport:
    """One policy's estimates by estimator name (`ips`, `snips`, `clipped_ips`, `dm`, `dr`), its importance
    weights' effective sample size, largest weight and warnings, and its value over time.

    JSON: {"spec": ..., "estimates": {"ips": {...}, ...}, "ess": 2000.0, "max_weight": 1.0, "warnings": [...],
    "curve": {...}}.
    """

    spec: str
    estimates: Mapping[str, EstimateReport]
    ess: float
    max_weight: float
    warnings: tuple[str, ...]
    curve: Curve

    @classmethod
    def of(cls, spec: str, estimates: Mapping[str, Estimate], feedback: BanditFeedback) -> PolicyReport:
        first = next(iter(estimates.values()))  # the weights' ESS, largest weight and warnings: alike in every estimate
        return cls(
            spec,
            {name: EstimateReport.of(e) for name, e in estimates.items()},
            first.ess,
            first.max_weight,
            first.warnings,
            Curve.of(feedback.weights, feedback.reward),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "estimates": {name: e.to_dict() for name, e in self.estimates.items()},
            "ess": self.ess,
            "max_weight": self.max_weight,
            "warnings": list(self.warnings),
            "curve": self.curve.to_dict(),
        }


@dataclass(frozen=True)
class NamespaceImportance:
    """The best candidate's DR estimate with one namespace left out, and the drop from its value with all.

    JSON: {"side": "context", "namespace": "user", "value": 0.3, "ci": [...], "drop": 0.41}.
    """

    side: str
    namespace: str
    estimate: EstimateReport
    drop: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "namespace": self.namespace, **self.estimate.to_dict(), "drop": self.drop}


@dataclass(frozen=True)
class ImportanceReport:
    """Namespace importance of candidate `spec` (DR `value` with every namespace), largest drop first.

    JSON: {"spec": ..., "estimator": "dr", "value": 0.71, "namespaces": [...]}.
    """

    spec: str
    estimator: str
    value: float | None
    namespaces: tuple[NamespaceImportance, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "estimator": self.estimator,
            "value": self.value,
            "namespaces": [r.to_dict() for r in self.namespaces],
        }


@dataclass(frozen=True)
class EvaluationReport:
    """What `evaluate` returns (the module doc): the events, the intervals' kind and level, every policy's
    report in order, the best candidate by DR and, when asked, its namespace importance.

    JSON: `to_dict()`, whose "importance" key is present only with an importance.
    """

    events: int
    interval: str
    alpha: float
    policies: tuple[PolicyReport, ...]
    best: str | None
    importance: ImportanceReport | None = None

    def policy(self, spec: str) -> PolicyReport:
        """The report of policy `spec`; KeyError if it was not evaluated."""
        for p in self.policies:
            if p.spec == spec:
                return p
        raise KeyError(spec)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the report (the module doc): plain dicts, lists, strings, numbers and None."""
        out: dict[str, Any] = {
            "events": self.events,
            "interval": self.interval,
            "alpha": self.alpha,
            "policies": [p.to_dict() for p in self.policies],
            "best": self.best,
        }
        if self.importance is not None:
            out["importance"] = self.importance.to_dict()
        return out

    def to_json(self, indent: int | None = None) -> str:
        """`to_dict()` as JSON text (`json.dumps`; numbers that are not finite do not occur, they are null)."""
        return json.dumps(self.to_dict(), indent=indent)


def evaluate(
    events: Iterable[LoggedEvent],
    specs: Sequence[str],
    *,
    interval: str = "gaussian",
    alpha: float = 0.05,
    max_weight: float = 100.0,
    folds: int = 5,
    seed: int = 0,
    importance: bool = False,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Replay each candidate spec through `events` and estimate its value (the report in the module doc).

    `interval`: `gaussian`, `clopper-pearson` (rewards in [0, 1]) or
    `bootstrap` (seeded by `seed`, as are the cross-fitting folds).
    `max_weight` clips the weights of `clipped_ips`; `folds` is the number of
    cross-fitting folds. `importance` adds the namespace importance of the best
    candidate. `jobs` > 1 replays in forked worker processes (see
    `replay_specs`). `progress(done, total)` is called as events are processed.
    Raises ValueError (PolicySpecError for a bad spec) on unusable input.
    """
    candidates = list(dict.fromkeys(s.strip() for s in specs))
    for spec in candidates:
        policies.create(spec)  # a bad spec is refused whatever the events, and before the long part
    events = list(events)
    n = len(events)
    if n < 2:
        raise ValueError(f"evaluation needs at least 2 events, got {n}")
    if importance and not candidates:
        raise ValueError("namespace importance needs a candidate policy")
    all_specs = [*REFERENCES, *(s for s in candidates if s not in REFERENCES)]
    ablations = namespaces(events) if importance else []
    done, total = 0, n * (1 + len(all_specs) + len(ablations))

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    reward = np.array([e.reward for e in events])
    logged = np.array([e.probability for e in events])
    chosen = np.array([e.chosen_index for e in events])
    estimators = (IPS(), SNIPS(), ClippedIPS(max_weight), DM(), DR())
    live = _live_decided(events)
    on_policy = BanditFeedback(reward[live], logged[live], logged[live])
    average = IPS().estimate(on_policy, interval, alpha, seed=seed)  # also checks interval and alpha, early
    features = hashed_features(events, FEATURE_DIM, jobs, tick)
    reward_hat = cross_fit(features, chosen, reward, folds=min(folds, n), seed=seed)

    def estimate(pmf: np.ndarray) -> tuple[dict[str, Estimate], BanditFeedback]:
        feedback = BanditFeedback(reward, logged, chosen=chosen, target_pmf=pmf, reward_hat=reward_hat)
        return {e.name: e.estimate(feedback, interval, alpha, seed=seed) for e in estimators}, feedback

    entries = [PolicyReport.of(LOGGED, {e.name: average for e in estimators}, on_policy)]
    for spec, pmf in zip(all_specs, replay_specs(events, [(s, None) for s in all_specs], jobs, tick), strict=True):
        entries.append(PolicyReport.of(spec, *estimate(pmf)))
    dr = {e.spec: e.estimates["dr"].value for e in entries}
    best = max(candidates, key=lambda s: _order(dr[s]), default=None)
    importance_report = None
    if importance:
        rows = []
        pmfs = replay_specs(events, [(best, a) for a in ablations], jobs, tick)
        for (side, name), pmf in zip(ablations, pmfs, strict=True):
            without = estimate(pmf)[0]["dr"]
            drop = dr[best] - without.value if dr[best] is not None else math.nan
            rows.append(NamespaceImportance(side, name, EstimateReport.of(without), _number(drop)))
        rows.sort(key=lambda r: _order(r.drop), reverse=True)
        importance_report = ImportanceReport(best, "dr", dr[best], tuple(rows))
    return EvaluationReport(n, interval, alpha, tuple(entries), best, importance_report)


def _live_decided(events: Sequence[LoggedEvent]) -> np.ndarray:
    """Which events the logged row averages: those the live policy decided, without the holdout's (every event
    when fewer than 2 are left)."""
    live = np.array([not e.holdout for e in events])
    return live if live.sum() >= 2 else np.ones(len(events), dtype=bool)


def _cell(estimate: EstimateReport) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    lo, hi = estimate.ci
    return f"{fmt(estimate.value)} [{fmt(lo)}, {fmt(hi)}]"


class _Named(Protocol):
    spec: str


P = TypeVar("P", bound=_Named)


def ranked(policies: Sequence[P], dr: Callable[[P], float | None]) -> list[P]:
    """Logged and the references first, then the candidates by their DR value `dr(policy)`, best first."""
    head = [p for p in policies if p.spec in (LOGGED, *REFERENCES)]
    rest = [p for p in policies if p not in head]
    return head + sorted(rest, key=lambda p: _order(dr(p)), reverse=True)


def _ranked(report: EvaluationReport) -> list[PolicyReport]:
    return ranked(report.policies, lambda p: p.estimates["dr"].value)


def format_report(report: EvaluationReport) -> str:
    """The report as text for a terminal: the table, the warnings, the best candidate and the importance."""
    level = f"{100 * (1 - report.alpha):g}% {report.interval}"
    lines = [
        f"{report.events} events; values with {level} intervals",
        f"{'IPS':<27} {'SNIPS':<27} {'DR':<27} {'ESS':>9}  policy",
    ]
    for p in _ranked(report):
        cells = " ".join(f"{_cell(p.estimates[k]):<27}" for k in ("ips", "snips", "dr"))
        lines.append(f"{cells} {p.ess:>9.0f}  {p.spec}")
    lines += [f"warning: {p.spec}: {w}" for p in report.policies for w in p.warnings]
    if report.best:
        best = report.policy(report.best)
        lines += [f"best (by DR): {_cell(best.estimates['dr'])}", f"spec for SetPolicy: {report.best}"]
    if report.importance is not None:
        imp = report.importance
        lines.append(f"namespace importance for {imp.spec} (DR without the namespace; drop from {imp.value:.4f}):")
        for r in imp.namespaces:
            drop = "n/a" if r.drop is None else f"{r.drop:+.4f}"
            lines.append(f"  {r.side:<8} {r.namespace:<24} {_cell(r.estimate):<27} drop {drop}")
    return "\n".join(lines)


def plot(report: EvaluationReport, path: str) -> None:
    """A PNG at `path`: the value over time (cumulative SNIPS) of logged, the references and the best
    candidates, above each policy's IPS, SNIPS and DR with intervals."""
    from matplotlib.figure import Figure

    entries = _ranked(report)
    bars_height = 0.8 + 0.3 * len(entries)
    fig = Figure(figsize=(11, 4.5 + bars_height), layout="constrained")
    curves, bars = fig.subplots(2, 1, height_ratios=[4, bars_height])
    for p in entries[: 1 + len(REFERENCES) + PLOT_CURVES]:
        values = [math.nan if v is None else v for v in p.curve.snips]
        curves.plot(p.curve.events, values, label=_short(p.spec), lw=1.2)
    curves.set_xlabel("events")
    curves.set_ylabel("cumulative SNIPS estimate")
    curves.legend(loc="lower right", fontsize=7)
    curves.grid(alpha=0.3)
    for j, (key, color) in enumerate((("ips", "tab:blue"), ("snips", "tab:orange"), ("dr", "tab:green"))):
        for i, p in enumerate(entries):
            est = p.estimates[key]
            if est.value is None:
                continue
            lo, hi = (est.value if c is None else c for c in est.ci)
            xerr = [[est.value - lo], [hi - est.value]]
            label = key.upper() if i == 0 else None
            bars.errorbar(est.value, -i + (j - 1) * 0.22, xerr=xerr, fmt="o", ms=3, capsize=2, color=color, label=label)
    bars.set_yticks([-i for i in range(len(entries))], [_short(p.spec) for p in entries], fontsize=8)
    bars.set_xlabel(f"estimated value ({100 * (1 - report.alpha):g}% {report.interval} interval)")
    bars.legend(loc="best", fontsize=8)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Offline evaluation on {report.events} logged events")
    fig.savefig(path, dpi=110)


def _short(spec: str, width: int = 60) -> str:
    """A spec as a label: without the `--cb_explore_adf` every vw: spec has, cut to `width` characters."""
    spec = spec.replace("--cb_explore_adf ", "")
    return spec if len(spec) <= width else spec[: width - 1] + "…"
