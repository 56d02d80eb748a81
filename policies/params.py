"""`key=value` policy parameters, as `linucb:`, `lints:` and user policies take them.

Pairs are separated by commas and/or white space (`alpha=1.0, dim=256` or
`alpha=1.0 dim=256`); keys are case-sensitive, each may appear once, and an
absent key takes its default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from nextbest.policies.base import PolicySpecError

_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Param:
    """One parameter: its default (whose type, int, float or str, is the parameter's type) and,
    for numbers, the allowed range `[low, high]` (`(low, high]` when `low_open`)."""

    default: int | float | str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False

    def describe(self) -> str:
        kind = "an integer" if isinstance(self.default, int) else "a number"
        if self.high == math.inf:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def parse(self, family: str, key: str, raw: str) -> int | float | str:
        if isinstance(self.default, str):
            return raw
        try:
            value: int | float = int(raw) if isinstance(self.default, int) else float(raw)
        except ValueError:
            value = math.nan
        low_ok = value > self.low if self.low_open else value >= self.low
        if not (math.isfinite(value) and low_ok and value <= self.high):
            raise PolicySpecError(f"{family}: {key} must be {self.describe()}, got {raw!r}")
        return value


def parse_params(family: str, params: str, schema: Mapping[str, Param]) -> dict[str, int | float | str]:
    """The values of every parameter of `schema` given `params`; PolicySpecError naming the problem
    (syntax, unknown or repeated key, value out of range)."""
    given: dict[str, str] = {}
    for item in _SEPARATORS.split(params.strip()):
        if not item:
            continue
        key, eq, raw = item.partition("=")
        if not (eq and key and raw):
            raise PolicySpecError(f"{family}: expected key=value, got {item!r}")
        if key not in schema:
            raise PolicySpecError(f"{family}: unknown parameter {key!r}; known: {', '.join(schema)}")
        if key in given:
            raise PolicySpecError(f"{family}: parameter {key!r} given twice")
        given[key] = raw
    return {key: p.parse(family, key, given[key]) if key in given else p.default for key, p in schema.items()}
