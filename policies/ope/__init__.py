"""Off-policy evaluation: logged bandit events, DSJSON logs, estimators and counterfactual replay
(single-slot here and in `report`; multi-slot, CCB, in `multislot`)."""

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
)
from nextbest.policies.ope.logged import LoggedEvent, LoggedSlot, MultiSlotEvent
from nextbest.policies.ope.replay import replay
from nextbest.policies.ope.report import (
    EstimateReport,
    EvaluationReport,
    ImportanceReport,
    PolicyReport,
    evaluate,
    search_grid,
)

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNIPS",
    "BanditFeedback",
    "ClippedIPS",
    "Estimate",
    "EstimateReport",
    "EvaluationReport",
    "Estimator",
    "ImportanceReport",
    "LoggedEvent",
    "LoggedSlot",
    "MultiSlotEvent",
    "PolicyReport",
    "cross_fit",
    "evaluate",
    "replay",
    "search_grid",
]
