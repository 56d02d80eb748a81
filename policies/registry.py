"""Policy families by name, and building policies from spec strings.

A spec string is `family` or `family:params`, e.g. `random` or
`vw:--cb_explore_adf --epsilon 0.05`.
"""

from __future__ import annotations

from collections.abc import Callable

from nextbest.policies.base import Policy, PolicySpecError
from nextbest.policies.envelope import is_sealed, seal, unseal

_FAMILIES: dict[str, type[Policy]] = {}


def register(family: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator that makes a Policy subclass buildable from `family:...` specs."""

    def add(cls: type[Policy]) -> type[Policy]:
        if family in _FAMILIES:
            raise ValueError(f"policy family {family!r} registered twice")
        _FAMILIES[family] = cls
        return cls

    return add


def families() -> list[str]:
    """Names of every registered policy family."""
    return sorted(_FAMILIES)


def family(name: str) -> type[Policy]:
    """The class registered for family `name`; PolicySpecError when there is none."""
    cls = _FAMILIES.get(name)
    if cls is None:
        raise PolicySpecError(f"unknown policy family {name!r}; known: {', '.join(families())}")
    return cls


def _split(spec: str) -> tuple[str, type[Policy], str]:
    name, _, params = spec.strip().partition(":")
    name = name.strip()
    if name not in _FAMILIES:
        raise PolicySpecError(f"unknown policy family {name!r} in {spec!r}; known: {', '.join(families())}")
    return name, _FAMILIES[name], params.strip()


def create(spec: str) -> Policy:
    """A fresh, untrained policy from its spec string; raises PolicySpecError with the reason."""
    _, cls, params = _split(spec)
    return cls._create(spec.strip(), params)


def load(spec: str, data: bytes) -> Policy:
    """A policy restored from `Policy.save()` bytes; raises ValueError on corrupt bytes.

    Raises PolicySpecError (a ValueError too) when the spec itself cannot be used.
    """
    name, cls, params = _split(spec)
    return cls._load(spec.strip(), params, unseal(name, data))


def export_state(spec: str, data: bytes) -> bytes:
    """The family's own model bytes inside `Policy.save()` bytes (for VW: a file `vw -i` reads)."""
    name, _, _ = _split(spec)
    return unseal(name, data)


def import_state(spec: str, state: bytes) -> bytes:
    """`Policy.save()` bytes around a family's own model bytes (e.g. a model trained by `vw -f`).

    Bytes that already are `Policy.save()` bytes are returned as they are.
    """
    name, _, _ = _split(spec)
    return state if is_sealed(state) else seal(name, state)
