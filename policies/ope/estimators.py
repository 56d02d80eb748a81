"""Off-policy estimators: the value of a target policy from events another (logging) policy chose.

Structured after Open Bandit Pipeline: each estimator computes one term per
event (`_round_terms`), and the base class turns the terms into a value and a
confidence interval through one public method, `Estimator.estimate(feedback)`.

For event i the logging policy chose action a_i with the logged probability
μ_i and got reward r_i; the target policy π gives a_i the probability π_i, and
w_i = π_i / μ_i is its importance weight. q̂(x, a) is a reward model
(`cross_fit`), q̂_i^π = Σ_a π(a | x_i) q̂(x_i, a). For a decision that follows
others (a CCB slot after the first), w_i and q̂_i^π carry the earlier decisions'
weight ρ_i too (`BanditFeedback.prefix_weight`).

| estimator | value |
| --- | --- |
| `IPS` | mean(w r) |
| `SNIPS` | Σ w r / Σ w |
| `ClippedIPS(max_weight)` | mean(min(w, max_weight) r) |
| `DM` | mean(q̂^π) |
| `DR` | mean(q̂^π + w (r − q̂(x, a))) |

Each value is a ratio Σ t_i / Σ d_i of per-round terms t_i and normalizers d_i
(d_i = 1, except d_i = w_i for SNIPS). Intervals at level 1 − alpha:

- `gaussian`: the normal approximation, with the delta-method standard error
  √(Σ (t_i − V d_i)² · n/(n−1)) / Σ d_i (for d = 1: the sample standard
  deviation of the terms over √n). It needs only the sums n, Σ d, Σ t, Σ d²,
  Σ t d and Σ t² (`RatioSums`), since Σ (t − V d)² = Σ t² − 2 V Σ t d + V² Σ d²:
  so a running estimate keeps them and no events (`SNIPS.from_sums`, the
  server's live estimates of its policies).
- `bootstrap`: the percentile interval of the estimate over `samples`
  resamples of the events (seeded, so reproducible); the reward model is not refitted.
- `clopper-pearson`: needs rewards (and q̂) in [0, 1]. The terms of the
  mean-type estimators lie in a known range [lo, hi] (IPS [0, max w], clipped
  IPS [0, max clipped w], DM [0, 1], DR [−max w, 1 + max w]); scaled to [0, 1],
  their sum counts as the successes of n trials. That is exact when every
  scaled term is 0 or 1 (a deterministic target, uniform logging, 0/1
  rewards) and conservative otherwise, but wide when the range is (DR). SNIPS,
  a weighted average of rewards, uses V · ESS successes in ESS trials (Kish's
  approximation). The interval is then intersected with [0, 1].
  (vw-estimators' `clopper_pearson.Interval` counts n / max w trials instead of
  n: narrower, and it under-covers, e.g. 87% for a nominal 95% with a
  deterministic target, 5 uniformly logged actions and 500 events.)

Every estimate carries the weights' effective sample size ESS = (Σ w)² / Σ w²,
the largest weight, and `warnings` when ESS is under 10% of the events or one
event carries over 10% of the total weight: then the estimate rests on few events.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar, Protocol

import numpy as np
from scipy.special import betaincinv

INTERVALS = ("gaussian", "clopper-pearson", "bootstrap")
MIN_ESS_SHARE = 0.1
MAX_WEIGHT_SHARE = 0.1


def pad(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows of different lengths as one float64 array, each padded with 0 to the longest."""
    out = np.zeros((len(rows), max((len(r) for r in rows), default=0)))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _first_bad(name: str, values: np.ndarray, ok: np.ndarray, expected: str) -> None:
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise ValueError(f"{name} must be {expected} (event {bad[0]}: {values[bad[0]]})")


class BanditFeedback:
    """The estimators' per-event input, validated (all arrays float64, one entry or row per event).

    - `reward`: r_i, finite.
    - `logged_probability`: μ_i in (0, 1], the probability that was logged.
    - `target_probability`: π_i in [0, 1]; or instead `target_pmf` with `chosen`:
      the target's full distribution per event (rows sum to 1, padded with 0 to
      the largest number of actions, see `pad`) and the logged action's index,
      from which π_i is taken.
    - `reward_hat`: q̂(x_i, a) for every action, shaped like `target_pmf` (`cross_fit`).
    - `prefix_weight`: ρ_i ≥ 0, the importance weight of what was decided before this decision, 1 by
      default. For slot k of a multi-slot (CCB) event it is Π_{j<k} w_j: slot k's action depends on the
      earlier slots' actions, so the target's value of slot k weighs event i by W_i = ρ_i w_i (and DM and
      DR weigh q̂^π by ρ_i), as OBP's reward-interaction IPS and cascade DR do.

    DM and DR need `target_pmf`, `chosen` and `reward_hat`; the others need π_i only.
    Raises ValueError naming the first offending event.
    """

    def __init__(
        self,
        reward: Sequence[float] | np.ndarray,
        logged_probability: Sequence[float] | np.ndarray,
        target_probability: Sequence[float] | np.ndarray | None = None,
        *,
        chosen: Sequence[int] | np.ndarray | None = None,
        target_pmf: np.ndarray | None = None,
        reward_hat: np.ndarray | None = None,
        prefix_weight: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.reward = np.asarray(reward, dtype=np.float64)
        if self.reward.ndim != 1:
            raise ValueError(f"reward has shape {self.reward.shape}, expected one entry per event")
        self.n = len(self.reward)
        if self.n == 0:
            raise ValueError("no events")
        self.logged_probability = self._shaped("logged_probability", logged_probability, np.float64, 1)
        _first_bad("reward", self.reward, np.isfinite(self.reward), "finite")
        mu = self.logged_probability
        _first_bad("logged_probability", mu, (mu > 0) & (mu <= 1), "in (0, 1]")
        if (target_probability is None) == (target_pmf is None):
            raise ValueError("give either target_probability or target_pmf (with chosen)")
        self.chosen: np.ndarray | None = None
        self.target_pmf: np.ndarray | None = None
        self.reward_hat: np.ndarray | None = None
        if target_pmf is not None:
            if chosen is None:
                raise ValueError("target_pmf needs chosen, the index of each logged action")
            self.target_pmf = p = self._shaped("target_pmf", target_pmf, np.float64, 2)
            self.chosen = self._shaped("chosen", chosen, None, 1)
            if not np.issubdtype(self.chosen.dtype, np.integer):
                raise ValueError(f"chosen must hold integer indices, got {self.chosen.dtype}")
            in_range = (self.chosen >= 0) & (self.chosen < p.shape[1])
            _first_bad("chosen", self.chosen, in_range, f"an index in [0, {p.shape[1]})")
            sums = p.sum(axis=1)
            valid = np.all(np.isfinite(p) & (p >= 0), axis=1) & (np.abs(sums - 1) < 1e-6)
            _first_bad("target_pmf rows", sums, valid, "non-negative and sum to 1")
            target_probability = p[np.arange(self.n), self.chosen]
        self.target_probability = pi = self._shaped("target_probability", target_probability, np.float64, 1)
        _first_bad("target_probability", pi, (pi >= 0) & (pi <= 1), "in [0, 1]")
        if reward_hat is not None:
            if self.target_pmf is None:
                raise ValueError("reward_hat needs target_pmf")
            self.reward_hat = self._shaped("reward_hat", reward_hat, np.float64, 2)
            if self.reward_hat.shape != self.target_pmf.shape:
                raise ValueError(f"reward_hat has shape {self.reward_hat.shape}, target_pmf {self.target_pmf.shape}")
            flat = self.reward_hat.ravel()
            _first_bad("reward_hat", flat, np.isfinite(flat), "finite")
        self.prefix_weight = (
            np.ones(self.n) if prefix_weight is None else self._shaped("prefix_weight", prefix_weight, np.float64, 1)
        )
        rho = self.prefix_weight
        _first_bad("prefix_weight", rho, np.isfinite(rho) & (rho >= 0), "finite and non-negative")
        self.weights = rho * pi / mu

    def _shaped(self, name: str, values: object, dtype: type | None, ndim: int) -> np.ndarray:
        out = np.asarray(values, dtype=dtype)
        if out.ndim != ndim or out.shape[0] != self.n:
            expected = "one entry per event" if ndim == 1 else "one row per event"
            raise ValueError(f"{name} has shape {out.shape}, expected {self.n} events: {expected}")
        return out

    def expected_reward_hat(self) -> np.ndarray:
        """ρ_i q̂_i^π = ρ_i Σ_a π(a | x_i) q̂(x_i, a); ValueError unless target_pmf and reward_hat were given."""
        if self.reward_hat is None:
            raise ValueError("this estimator needs target_pmf, chosen and reward_hat")
        return self.prefix_weight * (self.target_pmf * self.reward_hat).sum(axis=1)

    def logged_reward_hat(self) -> np.ndarray:
        """q̂(x_i, a_i), the reward model's prediction for the logged action."""
        if self.reward_hat is None:
            raise ValueError("this estimator needs target_pmf, chosen and reward_hat")
        return self.reward_hat[np.arange(self.n), self.chosen]


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of the target policy, with its interval and the weights' reliability.

    `ci` is (nan, nan) when there is no interval (fewer than 2 events, or no
    weight at all); `warnings` is empty when the weights look sound.
    """

    estimator: str
    value: float
    ci: tuple[float, float]
    interval: str
    events: int
    ess: float
    max_weight: float
    warnings: tuple[str, ...]


def overlap(weights: np.ndarray) -> tuple[float, float, tuple[str, ...]]:
    """(effective sample size, largest weight, warnings) of importance weights, as reported with every estimate."""
    n, total, top = len(weights), float(weights.sum()), float(weights.max())
    if total <= 0:
        return 0.0, top, ("the policy never chooses a logged action (every weight is 0): no estimate is reliable",)
    ess = effective_sample_size(total, float((weights**2).sum()))
    warnings = []
    if ess < MIN_ESS_SHARE * n:
        warnings.append(
            f"effective sample size {ess:.0f} is {100 * ess / n:.1f}% of {n} events "
            f"(under {100 * MIN_ESS_SHARE:.0f}%): the estimate rests on few events"
        )
    if top / total > MAX_WEIGHT_SHARE:
        warnings.append(
            f"one event carries {100 * top / total:.0f}% of the total weight (max weight {top:.3g}): "
            "the estimate hinges on it"
        )
    return ess, top, tuple(warnings)


def effective_sample_size(sum_w: float, sum_w2: float) -> float:
    """Kish's effective sample size (Σ w)² / Σ w² from the sums of weights and of their squares; 0 without weight."""
    return sum_w**2 / sum_w2 if sum_w > 0 else 0.0


@dataclass(frozen=True)
class RatioSums:
    """What a ratio estimate V = Σ t / Σ d and its gaussian interval need: n events, Σ d, Σ t, Σ d², Σ t d, Σ t²."""

    n: int
    sum_d: float
    sum_t: float
    sum_d2: float
    sum_td: float
    sum_t2: float

    @classmethod
    def of(cls, t: np.ndarray, d: np.ndarray) -> RatioSums:
        """The sums of per-round terms `t` and normalizers `d`."""
        return cls(len(t), float(d.sum()), float(t.sum()), float(d @ d), float(t @ d), float(t @ t))

    def value(self) -> float:
        """Σ t / Σ d; nan when Σ d is not positive."""
        return self.sum_t / self.sum_d if self.sum_d > 0 else math.nan

    def standard_error(self) -> float:
        """The delta-method standard error of the value (module doc); nan with fewer than 2 events or no value."""
        n, value = self.n, self.value()
        if n < 2 or math.isnan(value):
            return math.nan
        spread = self.sum_t2 - 2 * value * self.sum_td + value * value * self.sum_d2  # Σ (t − V d)²
        return math.sqrt(max(spread, 0.0) * n / (n - 1)) / self.sum_d

    def gaussian(self, alpha: float) -> tuple[float, float]:
        """The (1 − alpha) normal interval with the delta-method standard error; nan without one."""
        value, se = self.value(), self.standard_error()
        if math.isnan(se):
            return math.nan, math.nan
        z = NormalDist().inv_cdf(1 - alpha / 2)
        return value - z * se, value + z * se


class SnipsSumsLike(Protocol):
    """Running sums over events of the importance weight w and the reward r (nextbest.v1.EstimateSums satisfies it)."""

    n: int
    sum_w: float
    sum_wr: float
    sum_w2: float
    sum_w2r: float
    sum_w2r2: float


def _bootstrap(t: np.ndarray, d: np.ndarray, alpha: float, samples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n = len(t)
    chunk = max(1, (1 << 22) // n)
    stats = []
    for start in range(0, samples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, samples - start), n))
        with np.errstate(invalid="ignore", divide="ignore"):
            stats.append(t[idx].sum(axis=1) / d[idx].sum(axis=1))
    s = np.concatenate(stats)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def clopper_pearson(successes: float, trials: float, alpha: float = 0.05) -> tuple[float, float]:
    """The Clopper-Pearson interval of a proportion, with real-valued `successes` and `trials` (beta quantiles)."""
    lo = float(betaincinv(successes, trials - successes + 1, alpha / 2)) if successes > 0 else 0.0
    hi = float(betaincinv(successes + 1, trials - successes, 1 - alpha / 2)) if successes < trials else 1.0
    return lo, hi


class Estimator(ABC):
    """Base of the estimators: subclasses give the per-round terms, the base aggregates them.

    Subclasses implement `_round_terms` and `_bounds` (the range of a term and
    the number of trials, for Clopper-Pearson) and may override `_normalizers`.
    """

    name: ClassVar[str]

    def estimate(
        self,
        feedback: BanditFeedback,
        interval: str = "gaussian",
        alpha: float = 0.05,
        *,
        samples: int = 1000,
        seed: int = 0,
    ) -> Estimate:
        """The target policy's estimated value with a (1 − alpha) interval: `gaussian`, `clopper-pearson`
        (rewards in [0, 1] only; ValueError otherwise) or `bootstrap` (`samples` resamples, seeded by `seed`)."""
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}; known: {', '.join(INTERVALS)}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        t, d = self.terms(feedback)
        sums = RatioSums.of(t, d)
        value = sums.value()
        if interval == "gaussian":
            ci = sums.gaussian(alpha)
        elif interval == "bootstrap":
            if samples < 1:
                raise ValueError(f"samples must be at least 1, got {samples}")
            ci = _bootstrap(t, d, alpha, samples, seed)
        else:
            ci = self._clopper_pearson(feedback, value, alpha)
        ess, max_weight, warnings = overlap(feedback.weights)
        return Estimate(self.name, value, ci, interval, feedback.n, ess, max_weight, warnings)

    def terms(self, feedback: BanditFeedback) -> tuple[np.ndarray, np.ndarray]:
        """The per-round terms t and normalizers d, each of shape (events,): the value is Σ t / Σ d."""
        return self._round_terms(feedback), self._normalizers(feedback)

    def _clopper_pearson(self, feedback: BanditFeedback, value: float, alpha: float) -> tuple[float, float]:
        in_unit = [feedback.reward] + ([feedback.reward_hat.ravel()] if feedback.reward_hat is not None else [])
        if any(np.any((v < 0) | (v > 1)) for v in in_unit):
            raise ValueError("the clopper-pearson interval needs rewards (and reward_hat) in [0, 1]")
        lo, hi, trials = self._bounds(feedback)
        if not (hi > lo and trials > 0 and math.isfinite(value)):
            return math.nan, math.nan
        share = min(max((value - lo) / (hi - lo), 0.0), 1.0)
        low, high = clopper_pearson(share * trials, trials, alpha)
        return max(lo + low * (hi - lo), 0.0), min(lo + high * (hi - lo), 1.0)

    @abstractmethod
    def _round_terms(self, feedback: BanditFeedback) -> np.ndarray:
        """t_i, one per event."""

    @abstractmethod
    def _bounds(self, feedback: BanditFeedback) -> tuple[float, float, float]:
        """(lo, hi, trials): the value scaled from [lo, hi] to [0, 1] is a proportion over `trials` trials."""

    def _normalizers(self, feedback: BanditFeedback) -> np.ndarray:
        return np.ones(feedback.n)


class IPS(Estimator):
    """Inverse propensity scoring: mean(w r). Unbiased when the logging policy gives every action π may take
    a positive probability; its variance grows with the weights."""

    name = "ips"

    def _round_terms(self, feedback: BanditFeedback) -> np.ndarray:
        return feedback.weights * feedback.reward

    def _bounds(self, feedback: BanditFeedback) -> tuple[float, float, float]:
        return 0.0, float(feedback.weights.max()), feedback.n


class SNIPS(IPS):
    """Self-normalized IPS: Σ w r / Σ w. Slightly biased, much less variable; undefined (nan) when Σ w = 0."""

    name = "snips"

    @classmethod
    def from_sums(cls, sums: SnipsSumsLike, alpha: float = 0.05) -> Estimate:
        """The estimate with its gaussian interval from running sums instead of the events: the same value,
        interval and ESS as `estimate(feedback)` on those events. The sums keep no largest weight, so
        `max_weight` is nan and there are no `warnings`."""
        ratio = RatioSums(sums.n, sums.sum_w, sums.sum_wr, sums.sum_w2, sums.sum_w2r, sums.sum_w2r2)  # t = w r, d = w
        ess = effective_sample_size(sums.sum_w, sums.sum_w2)
        return Estimate(cls.name, ratio.value(), ratio.gaussian(alpha), "gaussian", sums.n, ess, math.nan, ())

    def _normalizers(self, feedback: BanditFeedback) -> np.ndarray:
        return feedback.weights

    def _bounds(self, feedback: BanditFeedback) -> tuple[float, float, float]:
        return 0.0, 1.0, overlap(feedback.weights)[0]


class ClippedIPS(Estimator):
    """IPS with each weight clipped at `max_weight`: mean(min(w, max_weight) r); less variance, biased toward 0
    (for non-negative rewards) when weights are clipped."""

    name = "clipped_ips"

    def __init__(self, max_weight: float) -> None:
        if not max_weight > 0:
            raise ValueError(f"max_weight must be positive, got {max_weight}")
        self.max_weight = max_weight

    def _clipped(self, feedback: BanditFeedback) -> np.ndarray:
        return np.minimum(feedback.weights, self.max_weight)

    def _round_terms(self, feedback: BanditFeedback) -> np.ndarray:
        return self._clipped(feedback) * feedback.reward

    def _bounds(self, feedback: BanditFeedback) -> tuple[float, float, float]:
        return 0.0, float(self._clipped(feedback).max()), feedback.n


class DM(Estimator):
    """The direct method: mean over events of q̂^π, the reward model's value of the target's pmf.

    No weights, so little variance, but as biased as the reward model; its
    interval reflects only the spread over events, not the model's error.
    """

    name = "dm"

    def _round_terms(self, feedback: BanditFeedback) -> np.ndarray:
        return feedback.expected_reward_hat()

    def _bounds(self, feedback: BanditFeedback) -> tuple[float, float, float]:
        return 0.0, float(feedback.prefix_weight.max()), feedback.n


class DR(Estimator):
    """Doubly robust: DM plus the IPS-weighted residual of the reward model at the logged action,
    mean(q̂^π + w (r − q̂(x, a))). Unbiased when either the weights or the reward model are right."""

    name = "dr"

    def _round_terms(self, feedback: BanditFeedback) -> np.ndarray:
        residual = feedback.reward - feedback.logged_reward_hat()
        return feedback.expected_reward_hat() + feedback.weights * residual

    def _bounds(self, feedback: BanditFeedback) -> tuple[float, float, float]:
        top = float(feedback.weights.max())
        return -top, float(feedback.prefix_weight.max()) + top, feedback.n


def cross_fit(
    features: Sequence[np.ndarray],
    chosen: Sequence[int] | np.ndarray,
    reward: Sequence[float] | np.ndarray,
    *,
    folds: int = 5,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """The reward model q̂(x_i, a) for every event and action, by K-fold cross-fitting; (events, actions), padded with 0.

    `features[i]` holds event i's feature rows, one per action (e.g.
    `Example.hashed(dim)`). The events are split into `folds` folds at random
    (seeded); for the events of fold k, q̂ is a ridge regression (penalty
    `ridge`) of the reward on the logged action's feature row, fitted on the
    other folds, centered on their mean reward. So no event's prediction saw
    its own reward, which keeps DR unbiased. Predictions are clipped to the
    range of the observed rewards.
    """
    n = len(features)
    reward = np.asarray(reward, dtype=np.float64)
    chosen = np.asarray(chosen)
    if not (len(chosen) == len(reward) == n):
        raise ValueError(f"features, chosen and reward differ in length: {n}, {len(chosen)}, {len(reward)}")
    if not 2 <= folds <= n:
        raise ValueError(f"cross-fitting needs 2 <= folds <= events, got {folds} folds for {n} events")
    x = np.stack([np.asarray(f, dtype=np.float64)[c] for f, c in zip(features, chosen, strict=True)])
    fold = np.random.default_rng(seed).permutation(n) % folds
    grams = np.stack([x[fold == k].T @ x[fold == k] for k in range(folds)])
    moments = np.stack([x[fold == k].T @ reward[fold == k] for k in range(folds)])
    sums = np.bincount(fold, weights=reward, minlength=folds)
    counts = np.bincount(fold, minlength=folds)
    means, thetas = [], []
    for k in range(folds):
        mean = (sums.sum() - sums[k]) / (n - counts[k])
        train_x_sum = x[fold != k].sum(axis=0)
        gram = ridge * np.eye(x.shape[1]) + grams.sum(axis=0) - grams[k]
        thetas.append(np.linalg.solve(gram, moments.sum(axis=0) - moments[k] - mean * train_x_sum))
        means.append(mean)
    lo, hi = reward.min(), reward.max()
    return pad([np.clip(f @ thetas[fold[i]] + means[fold[i]], lo, hi) for i, f in enumerate(features)])
