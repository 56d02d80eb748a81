"""`python:<module>:<Class>[:<params>]`: your own policy class, imported by name.

The class subclasses `policies.Policy` and implements what the built-in
families do: `_pmf(example, event_id)`, `_learn(events)`, `_save()`, and the
class methods `_create(spec, params)` and `_load(spec, params, data)`, where
`params` is the text after `<Class>:` (empty when there is none) and `spec`
the whole spec, which the policy must pass to `Policy.__init__`. It may set
`learns` and `explores` like the built-in families.

Importing a module runs its code, so the module must have been allowed by the
server's configuration (`nextbest serve --policy-module <module>`, which calls
`allow_python_modules`); any other is refused. `policies.examples` holds an
example: `python:policies.examples:SegmentGreedy:epsilon=0.1 segment=user.segment`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable

from nextbest.policies.base import Policy, PolicySpecError
from nextbest.policies.registry import register

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

_allowed: frozenset[str] = frozenset()


def allow_python_modules(names: Iterable[str]) -> frozenset[str]:
    """Allow `python:` policies from exactly these modules (none by default); returns the previous allowlist.

    A module is allowed by its full dotted name; its submodules are not.
    Raises ValueError for a name that is not a dotted Python module name.
    """
    global _allowed
    names = frozenset(names)
    bad = sorted(n for n in names if not _MODULE_NAME.fullmatch(n))
    if bad:
        raise ValueError(f"not a Python module name: {bad[0]!r}")
    previous, _allowed = _allowed, names
    return previous


def _user_class(spec: str, params: str) -> tuple[type[Policy], str]:
    module_name, _, rest = params.partition(":")
    class_name, _, user_params = rest.partition(":")
    if not (module_name and class_name):
        raise PolicySpecError(f"expected python:<module>:<Class>[:<params>], got {spec!r}")
    if module_name not in _allowed:
        raise PolicySpecError(
            f"python policies must be allowed by the server's configuration (--policy-module {module_name})"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # importing runs the module's code: any error means the spec cannot be used
        raise PolicySpecError(f"python: cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    cls = getattr(module, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, Policy)) or inspect.isabstract(cls):
        raise PolicySpecError(f"python: {module_name}.{class_name} is not a concrete policies.Policy subclass")
    return cls, user_params.strip()


def _checked(policy: object, spec: str, cls: type[Policy]) -> Policy:
    if not isinstance(policy, Policy) or policy.spec != spec:
        raise PolicySpecError(f"python: {cls.__qualname__} must return a policy built with the spec it was given")
    return policy


@register("python")
class PythonPolicy(Policy):
    """The `python` family: builds instances of the user's class; abstract, never instantiated itself."""

    contract_specs = ("python:nextbest.policies.examples:SegmentGreedy:epsilon=0.1 segment=user.segment",)

    @classmethod
    def _create(cls, spec: str, params: str) -> Policy:
        user, user_params = _user_class(spec, params)
        return _checked(user._create(spec, user_params), spec, user)

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> Policy:
        user, user_params = _user_class(spec, params)
        return _checked(user._load(spec, user_params, data), spec, user)
