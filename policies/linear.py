"""`linucb:<params>` and `lints:<params>`: linear contextual bandits in numpy, outside VW.

Both fit one ridge regression of the reward on `Example.hashed(dim)` (the
context, action and context × action features, hashed into `dim` buckets and
scaled to unit length): `A = λI + Σ x xᵀ`, `b = Σ reward · x`, `θ = A⁻¹ b`, with
`A⁻¹` kept current by Sherman–Morrison updates. Each joined event updates it
with the chosen action's features and its reward, unweighted: a regression of
the reward on the features needs no importance weight when the linear model
fits, and unit weights keep the confidence `xᵀA⁻¹x` honest (an importance
weight of 1/p would make a rare action look well known after one event). The
logged probability is validated but not used.

Parameters are `key=value`, separated by commas or spaces:

- `linucb:alpha=1.0 dim=256 lambda=1.0 epsilon=0.01` — upper confidence bound.
  The action with the highest `xᵀθ + alpha·√(xᵀA⁻¹x)` gets 1 − ε (split evenly
  among ties), and ε is spread evenly over all candidates.
- `lints:v=0.5 dim=256 lambda=1.0 samples=64 epsilon=0.01` — Thompson
  sampling. Each action gets the share of `samples` draws of the scores from
  the posterior `N(Xθ, v²·X A⁻¹ Xᵀ)` in which it is the best, times 1 − ε,
  plus ε / candidates. The draws come from a generator seeded with a hash of
  the event id, so the same request always gets the same pmf.

Ranges: `alpha` ≥ 0, `v` > 0, `dim` an integer in [2, 2048], `lambda` > 0,
`samples` an integer in [1, 10000], `epsilon` in [0, 1] (with ε > 0 every
candidate keeps a positive probability). The model takes 8·dim² bytes (about
0.5 MB at dim=256).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from nextbest.policies.base import LearnEvent, Policy
from nextbest.policies.featurize import Example
from nextbest.policies.params import Param, parse_params
from nextbest.policies.registry import register

_COMMON = {
    "dim": Param(256, 2, 2048),
    "lambda": Param(1.0, 0.0, low_open=True),
    "epsilon": Param(0.01, 0.0, 1.0),
}


def _best(scores: np.ndarray) -> np.ndarray:
    """1 on the highest score, split evenly among (near-)ties."""
    top = scores.max()
    best = scores >= top - 1e-9 * max(1.0, abs(top))
    return best / best.sum()


def _seed(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


class _LinearPolicy(Policy):
    """Ridge regression over hashed features; subclasses turn it into a pmf."""

    name: ClassVar[str]
    schema: ClassVar[dict[str, Param]]

    def __init__(self, spec: str, params: dict[str, int | float | str], a_inv: np.ndarray, b: np.ndarray) -> None:
        super().__init__(spec)
        self._params = params
        self._dim = int(params["dim"])
        self._epsilon = float(params["epsilon"])
        self._a_inv = a_inv
        self._b = b
        self._theta = a_inv @ b
        self.explores = self._epsilon > 0

    @classmethod
    def _create(cls, spec: str, params: str) -> _LinearPolicy:
        p = parse_params(cls.name, params, cls.schema)
        dim = int(p["dim"])
        return cls(spec, p, np.eye(dim) / float(p["lambda"]), np.zeros(dim))

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> _LinearPolicy:
        p = parse_params(cls.name, params, cls.schema)
        dim = int(p["dim"])
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                a_inv, b = z["a_inv"], z["b"]
        except (ValueError, OSError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile) as e:
            raise ValueError(f"not a saved {cls.name} policy: {e}") from None
        if a_inv.shape != (dim, dim) or b.shape != (dim,) or a_inv.dtype != np.float64 or b.dtype != np.float64:
            raise ValueError(f"saved {cls.name} policy does not have dim={dim} float64 arrays")
        if not (np.all(np.isfinite(a_inv)) and np.all(np.isfinite(b))):
            raise ValueError(f"saved {cls.name} policy has non-finite values")
        return cls(spec, p, a_inv, b)

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        a_inv, b = self._a_inv.copy(), self._b.copy()
        for e in events:
            x = e.example.hashed(self._dim)[e.chosen_index]
            ax = a_inv @ x
            a_inv -= np.outer(ax, ax / (1.0 + x @ ax))
            b += e.reward * x
        self._a_inv = (a_inv + a_inv.T) / 2  # rounding must not make A⁻¹ drift from symmetric
        self._b = b
        self._theta = self._a_inv @ b

    def _save(self) -> bytes:
        out = io.BytesIO()
        np.savez(out, a_inv=self._a_inv, b=self._b)
        return out.getvalue()

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        x = example.hashed(self._dim)
        greedy = self._greedy(x, x @ self._a_inv, event_id)
        return (1.0 - self._epsilon) * greedy + self._epsilon / len(example)

    @abstractmethod
    def _greedy(self, x: np.ndarray, xa: np.ndarray, event_id: str) -> np.ndarray:
        """The exploitation distribution, given the features `x` and `x A⁻¹`."""


@register("linucb")
class LinUCBPolicy(_LinearPolicy):
    """LinUCB: 1 − ε on the highest upper confidence bound (see the module doc)."""

    name = "linucb"
    schema = {"alpha": Param(1.0, 0.0), **_COMMON}
    contract_specs = ("linucb", "linucb:alpha=0.5, dim=64, lambda=2, epsilon=0.05")

    def _greedy(self, x: np.ndarray, xa: np.ndarray, event_id: str) -> np.ndarray:
        width = np.sqrt(np.maximum(np.einsum("ij,ij->i", xa, x), 0.0))
        return _best(x @ self._theta + float(self._params["alpha"]) * width)


@register("lints")
class LinTSPolicy(_LinearPolicy):
    """Linear Thompson sampling: each action's share of posterior draws it wins (see the module doc)."""

    name = "lints"
    schema = {"v": Param(0.5, 0.0, low_open=True), "samples": Param(64, 1, 10000), **_COMMON}
    contract_specs = ("lints", "lints:v=0.2 dim=128 samples=200 epsilon=0.02")

    def _greedy(self, x: np.ndarray, xa: np.ndarray, event_id: str) -> np.ndarray:
        cov = xa @ x.T
        w, vectors = np.linalg.eigh((cov + cov.T) / 2)
        root = vectors * np.sqrt(np.maximum(w, 0.0))
        rng = np.random.default_rng(_seed(event_id))
        z = rng.standard_normal((int(self._params["samples"]), len(x)))
        draws = x @ self._theta + float(self._params["v"]) * z @ root.T
        wins = draws >= draws.max(axis=1, keepdims=True)
        return (wins / wins.sum(axis=1, keepdims=True)).mean(axis=0)
