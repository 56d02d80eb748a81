"""Summaries of a run: the comparison table, the JSON document and the PNG of learning curves.

Per arm and slice of the run: `reward` (the average reward that came of its
decisions), `expected` (the average expected reward of its choices, what the
reward averages to without the noise), `regret` (the average shortfall of its
choice against the best action in the same situation) and `of_oracle` (its
expected reward over the oracle arm's, on the same occasions).
"""

from __future__ import annotations

import bisect
from dataclasses import asdict
from typing import Any

import numpy as np

from nextbest.sim.arms import ORACLE
from nextbest.sim.catalog import CHANNELS, NOTHING
from nextbest.sim.simulate import ArmRecord, Run

LANES = (*CHANNELS, NOTHING)


def _lane(action_id: str) -> str:
    return action_id.split("-", 1)[0] if action_id != NOTHING else NOTHING


def summary(run: Run, record: ArmRecord, since: float = 0.0) -> dict[str, Any]:
    """The arm's figures over its decisions from day `since` on (see the module doc)."""
    time = np.asarray(record.time)
    keep = time >= since
    expected = np.asarray(record.expected)[keep]
    reward = np.asarray(record.reward)[keep]
    lanes = np.array([_lane(a) for a in record.action])[keep]
    oracle = next((a for a in run.arms if a.name == ORACLE), None)
    oracle_expected = np.asarray(oracle.expected)[np.asarray(oracle.time) >= since] if oracle else None
    channels = {}
    for lane in LANES:
        chosen = lanes == lane
        channels[lane] = {
            "share": float(chosen.mean()),
            "reward": float(reward[chosen].mean()) if chosen.any() else None,
        }
    return {
        "decisions": int(keep.sum()),
        "reward": float(reward.mean()),
        "expected": float(expected.mean()),
        "regret": float((np.asarray(record.best)[keep] - expected).mean()),
        "of_oracle": float(expected.mean() / oracle_expected.mean()) if oracle_expected is not None else None,
        "channels": channels,
    }


def last_fifth(run: Run) -> float:
    """The day the last fifth of the run starts."""
    return 0.8 * run.config.days


def curve(record: ArmRecord, days: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin middles in days, average expected reward per bin) over `bins` equal spans of the run."""
    edges = np.linspace(0.0, days, bins + 1)
    which = np.clip(np.digitize(record.time, edges) - 1, 0, bins - 1)
    sums = np.bincount(which, weights=record.expected, minlength=bins)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        return (edges[:-1] + edges[1:]) / 2, sums / counts


def table(run: Run) -> str:
    """The comparison table: one row per arm over the whole run, then the channel mix."""
    since = last_fifth(run)
    rows = [(a, summary(run, a), summary(run, a, since)) for a in run.arms]
    name_width = max(len(a.name) for a in run.arms) + 2
    lines = [
        f"{'':{name_width}}{'decisions':>10}{'reward':>9}{'expected':>10}{'regret':>9}{'of oracle':>11}"
        f"{'last fifth':>12}"
    ]
    for arm, s, tail in rows:
        of = f"{s['of_oracle']:.0%}" if s["of_oracle"] is not None else "—"
        lines.append(
            f"{arm.name:{name_width}}{s['decisions']:>10}{s['reward']:>9.3f}{s['expected']:>10.3f}"
            f"{s['regret']:>9.3f}{of:>11}{tail['expected']:>12.3f}"
        )
    lines += ["", "channel mix: share of decisions, average reward"]
    lines.append(f"{'':{name_width}}" + "".join(f"{lane:>13}" for lane in LANES))
    for arm, s, _ in rows:
        cells = []
        for lane in LANES:
            c = s["channels"][lane]
            cells.append(f"{c['share']:>6.0%} {c['reward']:>6.2f}" if c["reward"] is not None else f"{'—':>13}")
        lines.append(f"{arm.name:{name_width}}" + "".join(cells))
    return "\n".join(lines)


def document(run: Run, bins: int = 56, **extra: Any) -> dict[str, Any]:
    """The run as a JSON-ready dict: the world, each arm's figures (whole run, last fifth) and curve."""
    c = run.config
    arms = []
    for a in run.arms:
        days, values = curve(a, c.days, bins)
        arms.append(
            {
                "name": a.name,
                "policy": a.spec,
                "all": summary(run, a),
                "last_fifth": summary(run, a, last_fifth(run)),
                "curve": {"day": days.round(3).tolist(), "expected": [None if np.isnan(v) else v for v in values]},
            }
        )
    world = {k: v for k, v in asdict(c).items() if isinstance(v, int | float | str)}
    return {
        "seed": run.seed,
        "world": world,
        "events": [{"day": d, "event": e} for d, e in run.events],
        **extra,
        "arms": arms,
    }


def plot(run: Run, path: str, title: str, bins: int = 56, smooth: int = 5) -> None:
    """Write a PNG: expected reward per decision over the run for each arm, and each arm's channel mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, mix) = plt.subplots(
        1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [2.2, 1]}, constrained_layout=True
    )
    kernel = np.ones(smooth) / smooth
    for a in run.arms:
        days, values = curve(a, run.config.days, bins)
        ok = ~np.isnan(values)
        values = np.convolve(np.pad(values[ok], smooth // 2, mode="edge"), kernel, mode="valid")
        style = {"color": "black", "linestyle": "--"} if a.name == ORACLE else {}
        ax.plot(days[ok], values, label=a.name, linewidth=2, **style)
    top = ax.get_ylim()[1] * 1.12
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), top)
    for i, (day, label) in enumerate(run.events):
        ax.axvline(day, color="grey", linestyle=":", linewidth=1)
        ax.text(day, top * (0.99 - 0.04 * (i % 2)), f" {label}", va="top", ha="left", fontsize=8, color="dimgrey")
    ax.set_xlabel("day of the simulated run")
    ax.set_ylabel("expected reward per decision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower center", ncols=4, fontsize=8)
    _mix(mix, run)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mix(ax: Any, run: Run) -> None:
    names = [a.name for a in run.arms]
    left = np.zeros(len(names))
    colors = [*[f"C{i}" for i in range(len(CHANNELS))], "lightgrey"]
    shares = [summary(run, a)["channels"] for a in run.arms]
    for lane, color in zip(LANES, colors, strict=True):
        width = np.array([s[lane]["share"] for s in shares])
        ax.barh(names, width, left=left, color=color, label=lane)
        left += width
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of decisions")
    ax.set_title("channel mix")
    ax.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))


def status(run: Run, done: int, total: int) -> str:
    """One line of progress: the world day, and each arm's expected reward per decision over the last day."""
    day = run.arms[0].time[-1] if run.arms[0].time else 0.0
    start = bisect.bisect_left(run.arms[0].time, day - 1.0)
    recent = " · ".join(f"{a.name} {np.mean(a.expected[start:]):.2f}" for a in run.arms)
    return f"day {day:4.1f}/{run.config.days:g} {done / total:4.0%}  last day: {recent}"
