"""What a decision costs a policy, counted from the example before the policy decides it.

The unit is a generated feature: a feature of an action's example, or one
product of an interaction, as VW generates them. Counts are upper bounds:

- VW (`vw:`): per action, N features (the shared ones and the action's), the
  constant, and each interaction term's products: an all-wildcard term of
  length k (`::`, `:::`) generates the combinations with repetition of k of
  the N features, C(N + k - 1, k), as VW 9 expands it (checked against VW's
  own counts in the tests); any other term the product of its namespaces'
  sizes (VW's namespace is the first byte of its name; a `:` counts N), and a
  full-name term (`--experimental_full_name_interactions action|:`) the
  product of the sizes of the namespaces so named (a `:` counts N).
- linucb/lints: each context × action cross of `Example.hashed` (an action's
  features including its id, channel and a constant, times the context's
  features and a constant) counts `LINEAR_WEIGHT` (numpy spends about 30 times
  what VW spends on a feature, and ~48 bytes of memory), and the matrix
  products count one per `PRODUCTS_PER_UNIT` multiply-adds: actions × dim² for
  both, and for lints also actions² × dim, 9 × actions³ (the
  eigendecomposition) and samples × actions², plus `DRAW_WEIGHT` per drawn
  score (samples × actions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from math import comb, prod

from nextbest.policies.featurize import Example, FeaturesLike, LineSizes

WorkCounter = Callable[[Example], int]
WILDCARD = ord(":")
LINEAR_WEIGHT = 32
PRODUCTS_PER_UNIT = 16
DRAW_WEIGHT = 8


def no_work(example: Example) -> int:
    """The counter of policies whose work is proportional to the request (bounded by its size)."""
    return 0


def vw_counter(terms: Iterable[str], full_names: Iterable[str] = ()) -> WorkCounter:
    """The counter of a VW policy with these interaction terms (e.g. `::`, `ua`) and full-name terms (e.g.
    `action|:`)."""
    wildcards = [len(t) for t in terms if set(t) == {":"}]  # `::`, `:::`
    literals = [t.encode() for t in terms if set(t) != {":"}]
    named = [t.split("|") for t in full_names]

    def count(example: Example) -> int:
        lines = example.vw_lines()  # cached: the policy decides from the same lines
        shared, shared_names = example.shared_sizes() if len(lines) > len(example) else LineSizes({}, {})
        shared_features = sum(shared.values())
        total = 0
        for own, own_names in example.action_line_sizes():
            n = shared_features + sum(own.values())
            total += n + 1 + sum(comb(n + k - 1, k) for k in wildcards)  # and the constant
            for term in literals:
                total += prod(n if c == WILDCARD else shared.get(c, 0) + own.get(c, 0) for c in term)
            if named:
                total += _named_products(named, n, shared_names, own_names)
        return total

    return count


def _named_products(terms: list[list[str]], n: int, shared: dict[str, int], own: dict[str, int]) -> int:
    return sum(prod(n if name == ":" else shared.get(name, 0) + own.get(name, 0) for name in term) for term in terms)


def _features(namespaces: Mapping[str, FeaturesLike]) -> int:
    return sum(len(f.numeric) + len(f.categorical) + len(f.tokens) for f in namespaces.values())


def linear_counter(dim: int, samples: int = 0) -> WorkCounter:
    """The counter of linucb (`samples` 0) or lints with `dim` buckets (see the module doc)."""

    def count(example: Example) -> int:
        actions = len(example)
        context = _features(example.context) + 1
        crosses = context * sum(2 + bool(a.channel) + _features(a.features) for a in example.actions)
        products = actions * dim * dim  # x A⁻¹
        if samples:  # x A⁻¹ xᵀ, its eigendecomposition, and the draws
            products += actions * actions * dim + 9 * actions**3 + samples * actions * actions
        draws = samples * actions * DRAW_WEIGHT  # drawn, scored and compared element by element
        return crosses * LINEAR_WEIGHT + products // PRODUCTS_PER_UNIT + draws

    return count
