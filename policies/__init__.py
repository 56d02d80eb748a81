"""Policies: what decides, behind one small interface, chosen by a spec string.

>>> from nextbest import policies
>>> from nextbest.v1.types_pb2 import Action, Features
>>> p = policies.create("vw:--cb_explore_adf --epsilon 0.05")
>>> context = {"user": Features(categorical={"segment": "student"})}
>>> actions = [Action(id="email-offer", channel="email"), Action(id="push-tip", channel="push")]
>>> p.pmf(policies.Example(context, actions), "event-1").round(3).tolist()  # nothing learned: a tie
[0.5, 0.5]

Families: `vw:<VW arguments>` (policies.vw), `random`, `baseline`,
`fixed:<json>` (policies.simple), `rules:<journey>` (policies.rules),
`linucb:<params>`, `lints:<params>` (policies.linear) and
`python:<module>:<Class>[:<params>]` (policies.python).
"""

from nextbest.policies import linear, python, rules, simple, vw  # noqa: F401  (registers the families)
from nextbest.policies.base import LearnEvent, Policy, PolicyInputError, PolicySpecError, SlotOutcome
from nextbest.policies.featurize import Example, Slot
from nextbest.policies.python import allow_python_modules
from nextbest.policies.registry import (
    create,
    export_state,
    families,
    family,
    import_state,
    load,
    register,
    work_counter,
)

__all__ = [
    "Example",
    "LearnEvent",
    "Policy",
    "PolicyInputError",
    "PolicySpecError",
    "Slot",
    "SlotOutcome",
    "allow_python_modules",
    "create",
    "export_state",
    "families",
    "family",
    "import_state",
    "load",
    "register",
    "work_counter",
]
