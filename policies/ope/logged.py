"""A logged bandit event: what off-policy evaluation reads, whatever the log's origin."""

from __future__ import annotations

from dataclasses import dataclass

from nextbest.policies.featurize import Example


@dataclass(frozen=True)
class LoggedEvent:
    """One decision as logged, with its (joined) reward.

    `probability` is the logged probability of the chosen action, already
    divided by any drop probability correction (DSJSON `pdrop`); `pmf` is the
    full logged distribution over `example.actions` when the log has it.
    Action ids are the actions' ids (DSJSON: `_tag`, else the 1-based
    position); the first action is the baseline.
    """

    event_id: str
    example: Example
    chosen_index: int
    probability: float
    reward: float
    pmf: tuple[float, ...] | None = None
    timestamp: float = 0.0
    skip_learn: bool = False  # e.g. a deferred decision never activated
    holdout: bool = False  # decided by the loop's holdout policy, not the live one (DSJSON `_holdout`)

    @property
    def action_ids(self) -> list[str]:
        return self.example.action_ids
