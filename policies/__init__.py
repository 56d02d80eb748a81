"""Policies: what decides, behind one small interface, chosen by a spec string.

>>> import policies
>>> p = policies.create("vw:--cb_explore_adf --epsilon 0.05")
>>> p.pmf(policies.Example(context, actions), event_id)
"""

from policies import vw  # noqa: F401  (registers the family)
from policies.base import LearnEvent, Policy, PolicySpecError
from policies.featurize import Example
from policies.registry import create, families, load, register

__all__ = ["Example", "LearnEvent", "Policy", "PolicySpecError", "create", "families", "load", "register"]
