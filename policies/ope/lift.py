"""Lift: the average reward per decision of a treatment group against a holdout group, clustered by subject.

Subjects, not decisions, are the unit: a subject is in one group (its hash decides) and its decisions share
whatever makes that subject respond, so its decisions are not independent. For a group with subjects
i = 1..n, Y_i the sum of subject i's rewards and N_i its number of decisions, the group's value is the ratio
estimator R = Σ Y_i / Σ N_i (the average reward per decision), and its cluster-robust (delta-method) variance
is

    Var(R) ≈ n / (n − 1) · Σ (Y_i − R N_i)² / (Σ N_i)²

which is `RatioSums` with t = Y and d = N: one term per subject. The groups are disjoint sets of subjects, so
the difference D = R_treatment − R_holdout has Var(D) = Var(R_t) + Var(R_h), and the (1 − alpha) interval is
D ± z · √Var(D). It needs at least 2 subjects in each group (else the interval is nan).

Shapes (OBP style): `subject_rewards` and `subject_decisions` are float arrays of shape (n_subjects,),
`subject_holdout` a bool array of the same shape; row i is one subject (a subject whose decisions fell in both
groups, when the holdout fraction changed, is one row per group).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from nextbest.policies.ope.estimators import RatioSums


@dataclass(frozen=True)
class LiftEstimate:
    """Average reward per decision of each group, their difference and its interval, and the subjects counted."""

    treatment: float
    holdout: float
    difference: float
    ci: tuple[float, float]
    treatment_subjects: int
    holdout_subjects: int


def lift_of_sums(treatment: RatioSums, holdout: RatioSums, alpha: float = 0.05) -> LiftEstimate:
    """The lift from each group's sums over subjects (t = a subject's reward sum, d = its decisions)."""
    t, h = treatment.value(), holdout.value()
    se = math.sqrt(treatment.standard_error() ** 2 + holdout.standard_error() ** 2)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    difference = t - h
    ci = (difference - z * se, difference + z * se) if math.isfinite(se) else (math.nan, math.nan)
    return LiftEstimate(t, h, difference, ci, treatment.n, holdout.n)


def lift(
    subject_rewards: np.ndarray, subject_decisions: np.ndarray, subject_holdout: np.ndarray, alpha: float = 0.05
) -> LiftEstimate:
    """The lift of per-subject sums (shapes in the module doc); raises ValueError on mismatched shapes."""
    rewards = np.asarray(subject_rewards, dtype=np.float64)
    decisions = np.asarray(subject_decisions, dtype=np.float64)
    held = np.asarray(subject_holdout, dtype=bool)
    if not (rewards.ndim == 1 and rewards.shape == decisions.shape == held.shape):
        raise ValueError(
            f"subject_rewards, subject_decisions and subject_holdout must have one shape (n_subjects,), got "
            f"{rewards.shape}, {decisions.shape} and {held.shape}"
        )
    treated = ~held
    return lift_of_sums(
        RatioSums.of(rewards[treated], decisions[treated]), RatioSums.of(rewards[held], decisions[held]), alpha
    )
