"""Offline evaluation of candidate policies on a log: estimates, a ranking, namespace importance, a table and a plot.

`evaluate(events, specs)` is what `nextbest evaluate` and the admin RPC call.
It replays every candidate through the events (`policies.ope.replay`),
fits one reward model for DM and DR by cross-fitting on the events' hashed
features (`Example.hashed(64)`, held in memory: 256 bytes per action of each
event), and returns a JSON-ready report::

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
never picks a logged action) are null.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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

EXPLORATIONS = ("--epsilon 0.05", "--squarecb", "--cover 3")
INTERACTIONS = ("::", "")
LEARNING_RATES = (0.1, 0.5, 1.0)
CB_TYPES = ("ips", "dr", "mtr")


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


def _curve(weights: np.ndarray, reward: np.ndarray) -> dict[str, list]:
    at = np.unique(np.linspace(1, len(reward), min(len(reward), CURVE_POINTS)).round().astype(int))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.cumsum(weights * reward)[at - 1] / np.cumsum(weights)[at - 1]
    return {"events": at.tolist(), "snips": [_number(v) for v in values]}


def _entry(spec: str, estimates: dict[str, Estimate], feedback: BanditFeedback) -> dict[str, Any]:
    first = next(iter(estimates.values()))
    return {
        "spec": spec,
        "estimates": {k: {"value": _number(e.value), "ci": [_number(c) for c in e.ci]} for k, e in estimates.items()},
        "ess": first.ess,
        "max_weight": first.max_weight,
        "warnings": list(first.warnings),
        "curve": _curve(feedback.weights, feedback.reward),
    }


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
) -> dict[str, Any]:
    """Replay each candidate spec through `events` and estimate its value (the report in the module doc).

    `interval`: `gaussian`, `clopper-pearson` (rewards in [0, 1]) or
    `bootstrap` (seeded by `seed`, as are the cross-fitting folds).
    `max_weight` clips the weights of `clipped_ips`; `folds` is the number of
    cross-fitting folds. `importance` adds the namespace importance of the best
    candidate. `jobs` > 1 replays in forked worker processes (see
    `replay_specs`). `progress(done, total)` is called as events are processed.
    Raises ValueError (PolicySpecError for a bad spec) on unusable input.
    """
    events = list(events)
    n = len(events)
    if n < 2:
        raise ValueError(f"evaluation needs at least 2 events, got {n}")
    candidates = list(dict.fromkeys(s.strip() for s in specs))
    if importance and not candidates:
        raise ValueError("namespace importance needs a candidate policy")
    for spec in candidates:
        policies.create(spec)  # fail before the long part
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
    on_policy = BanditFeedback(reward, logged, logged)
    average = IPS().estimate(on_policy, interval, alpha, seed=seed)  # also checks interval and alpha, early
    features = hashed_features(events, FEATURE_DIM, jobs, tick)
    reward_hat = cross_fit(features, chosen, reward, folds=min(folds, n), seed=seed)

    def estimate(pmf: np.ndarray) -> tuple[dict[str, Estimate], BanditFeedback]:
        feedback = BanditFeedback(reward, logged, chosen=chosen, target_pmf=pmf, reward_hat=reward_hat)
        return {e.name: e.estimate(feedback, interval, alpha, seed=seed) for e in estimators}, feedback

    entries = [_entry(LOGGED, {e.name: average for e in estimators}, on_policy)]
    for spec, pmf in zip(all_specs, replay_specs(events, [(s, None) for s in all_specs], jobs, tick), strict=True):
        entries.append(_entry(spec, *estimate(pmf)))
    dr = {e["spec"]: e["estimates"]["dr"]["value"] for e in entries}
    best = max(candidates, key=lambda s: _order(dr[s]), default=None)
    report: dict[str, Any] = {"events": n, "interval": interval, "alpha": alpha, "policies": entries, "best": best}
    if importance:
        rows = []
        pmfs = replay_specs(events, [(best, a) for a in ablations], jobs, tick)
        for (side, name), pmf in zip(ablations, pmfs, strict=True):
            without = estimate(pmf)[0]["dr"]
            drop = dr[best] - without.value if dr[best] is not None else math.nan
            rows.append(
                {
                    "side": side,
                    "namespace": name,
                    "value": _number(without.value),
                    "ci": [_number(c) for c in without.ci],
                    "drop": _number(drop),
                }
            )
        rows.sort(key=lambda r: _order(r["drop"]), reverse=True)
        report["importance"] = {"spec": best, "estimator": "dr", "value": dr[best], "namespaces": rows}
    return report


def _cell(estimate: dict[str, Any]) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    lo, hi = estimate["ci"]
    return f"{fmt(estimate['value'])} [{fmt(lo)}, {fmt(hi)}]"


def _ranked(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Logged and the references first, then the candidates by DR value, best first."""
    entries = report["policies"]
    head = [e for e in entries if e["spec"] in (LOGGED, *REFERENCES)]
    return head + sorted(
        (e for e in entries if e not in head), key=lambda e: _order(e["estimates"]["dr"]["value"]), reverse=True
    )


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal: the table, the warnings, the best candidate and the importance."""
    level = f"{100 * (1 - report['alpha']):g}% {report['interval']}"
    lines = [
        f"{report['events']} events; values with {level} intervals",
        f"{'IPS':<27} {'SNIPS':<27} {'DR':<27} {'ESS':>9}  policy",
    ]
    for e in _ranked(report):
        cells = " ".join(f"{_cell(e['estimates'][k]):<27}" for k in ("ips", "snips", "dr"))
        lines.append(f"{cells} {e['ess']:>9.0f}  {e['spec']}")
    lines += [f"warning: {e['spec']}: {w}" for e in report["policies"] for w in e["warnings"]]
    if report["best"]:
        best = next(e for e in report["policies"] if e["spec"] == report["best"])
        lines += [f"best (by DR): {_cell(best['estimates']['dr'])}", f"spec for SetPolicy: {report['best']}"]
    if "importance" in report:
        imp = report["importance"]
        lines.append(
            f"namespace importance for {imp['spec']} (DR without the namespace; drop from {imp['value']:.4f}):"
        )
        for r in imp["namespaces"]:
            drop = "n/a" if r["drop"] is None else f"{r['drop']:+.4f}"
            lines.append(f"  {r['side']:<8} {r['namespace']:<24} {_cell(r):<27} drop {drop}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str) -> None:
    """A PNG at `path`: the value over time (cumulative SNIPS) of logged, the references and the best
    candidates, above each policy's IPS, SNIPS and DR with intervals."""
    from matplotlib.figure import Figure

    entries = _ranked(report)
    bars_height = 0.8 + 0.3 * len(entries)
    fig = Figure(figsize=(11, 4.5 + bars_height), layout="constrained")
    curves, bars = fig.subplots(2, 1, height_ratios=[4, bars_height])
    for e in entries[: 1 + len(REFERENCES) + PLOT_CURVES]:
        values = [math.nan if v is None else v for v in e["curve"]["snips"]]
        curves.plot(e["curve"]["events"], values, label=_short(e["spec"]), lw=1.2)
    curves.set_xlabel("events")
    curves.set_ylabel("cumulative SNIPS estimate")
    curves.legend(loc="lower right", fontsize=7)
    curves.grid(alpha=0.3)
    for j, (key, color) in enumerate((("ips", "tab:blue"), ("snips", "tab:orange"), ("dr", "tab:green"))):
        for i, e in enumerate(entries):
            est = e["estimates"][key]
            if est["value"] is None:
                continue
            lo, hi = (est["value"] if c is None else c for c in est["ci"])
            xerr = [[est["value"] - lo], [hi - est["value"]]]
            label = key.upper() if i == 0 else None
            bars.errorbar(
                est["value"], -i + (j - 1) * 0.22, xerr=xerr, fmt="o", ms=3, capsize=2, color=color, label=label
            )
    bars.set_yticks([-i for i in range(len(entries))], [_short(e["spec"]) for e in entries], fontsize=8)
    bars.set_xlabel(f"estimated value ({100 * (1 - report['alpha']):g}% {report['interval']} interval)")
    bars.legend(loc="best", fontsize=8)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Offline evaluation on {report['events']} logged events")
    fig.savefig(path, dpi=110)


def _short(spec: str, width: int = 60) -> str:
    """A spec as a label: without the `--cb_explore_adf` every vw: spec has, cut to `width` characters."""
    spec = spec.replace("--cb_explore_adf ", "")
    return spec if len(spec) <= width else spec[: width - 1] + "…"
