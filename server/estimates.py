"""Running off-policy estimates on live traffic: self-normalized IPS with a confidence interval.

For each joined event the policy under evaluation gives the logged action a
probability p; with the logged probability p0, its weight is w = p / p0.
SNIPS = Σ w r / Σ w; its variance follows from the delta method:
Var ≈ Σ w² (r - V)² / (Σ w)².
"""

from __future__ import annotations

import math

from nextbest.v1 import admin_pb2, records_pb2

Z_95 = 1.959963984540054


def add(sums: records_pb2.EstimateSums, weight: float, reward: float) -> None:
    """Account one event with importance weight `weight` and reward `reward`."""
    sums.n += 1
    sums.sum_w += weight
    sums.sum_wr += weight * reward
    sums.sum_w2 += weight * weight
    sums.sum_w2r += weight * weight * reward
    sums.sum_w2r2 += weight * weight * reward * reward


def estimate(spec: str, sums: records_pb2.EstimateSums, live: bool = False) -> admin_pb2.PolicyEstimate:
    """The SNIPS estimate of `sums`, with its 95% interval and effective sample size."""
    out = admin_pb2.PolicyEstimate(spec=spec, live=live, events=sums.n)
    if sums.sum_w <= 0:
        return out
    value = sums.sum_wr / sums.sum_w
    spread = sums.sum_w2r2 - 2 * value * sums.sum_w2r + value * value * sums.sum_w2
    half = Z_95 * math.sqrt(max(spread, 0.0)) / sums.sum_w
    out.value = value
    out.ci_low, out.ci_high = value - half, value + half
    out.effective_sample_size = sums.sum_w**2 / sums.sum_w2 if sums.sum_w2 > 0 else 0.0
    return out
