"""Running off-policy estimates on live traffic: self-normalized IPS with a confidence interval.

For each joined event the policy under evaluation gives the logged action a
probability p; with the logged probability p0, its weight is w = p / p0. The
learner keeps only the sums of w, w r, w², w² r and w² r² (checkpointed with
each model); `policies.ope.SNIPS.from_sums` turns them into the same value,
95% interval and effective sample size as the offline SNIPS estimator.
"""

from __future__ import annotations

from nextbest.policies.ope.estimators import SNIPS
from nextbest.v1 import admin_pb2, records_pb2


def add(sums: records_pb2.EstimateSums, weight: float, reward: float) -> None:
    """Account one event with importance weight `weight` and reward `reward`."""
    sums.n += 1
    sums.sum_w += weight
    sums.sum_wr += weight * reward
    sums.sum_w2 += weight * weight
    sums.sum_w2r += weight * weight * reward
    sums.sum_w2r2 += weight * weight * reward * reward


def estimate(spec: str, sums: records_pb2.EstimateSums, live: bool = False) -> admin_pb2.PolicyEstimate:
    """The SNIPS estimate of `sums`, with its 95% interval and effective sample size.

    Without any weight (no event, or the policy never chose a logged action) only the counts are set;
    with a single event the interval does not exist and is NaN.
    """
    out = admin_pb2.PolicyEstimate(spec=spec, live=live, events=sums.n, skipped_events=sums.skipped)
    if sums.sum_w <= 0:
        return out
    snips = SNIPS.from_sums(sums)
    out.value = snips.value
    out.ci_low, out.ci_high = snips.ci
    out.effective_sample_size = snips.ess
    return out
