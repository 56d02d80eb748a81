"""Policy families by name, and building policies from spec strings.

A spec string is `family` or `family:params`, e.g. `random` or
`vw:--cb_explore_adf --epsilon 0.05`.
"""

from __future__ import annotations

from collections.abc import Callable

from policies.base import Policy, PolicySpecError

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


def _split(spec: str) -> tuple[type[Policy], str]:
    family, _, params = spec.strip().partition(":")
    cls = _FAMILIES.get(family)
    if cls is None:
        raise PolicySpecError(f"unknown policy family {family!r} in {spec!r}; known: {', '.join(families())}")
    return cls, params.strip()


def create(spec: str) -> Policy:
    """A fresh, untrained policy from its spec string; raises PolicySpecError with the reason."""
    cls, params = _split(spec)
    return cls._create(spec.strip(), params)


def load(spec: str, data: bytes) -> Policy:
    """A policy restored from `Policy.save()` bytes; raises ValueError on corrupt bytes."""
    cls, params = _split(spec)
    return cls._load(spec.strip(), params, data)
