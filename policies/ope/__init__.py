"""Off-policy evaluation: logged bandit events, DSJSON logs, estimators and counterfactual replay."""

from policies.ope.logged import LoggedEvent

__all__ = ["LoggedEvent"]
