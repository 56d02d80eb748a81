"""Policies: what decides, behind one small interface, chosen by a spec string.

>>> from nextbest import policies
>>> p = policies.create("vw:--cb_explore_adf --epsilon 0.05")
>>> p.pmf(policies.Example(context, actions), event_id)

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
