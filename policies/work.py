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
from functools import lru_cache
from math import comb, prod

from nextbest.policies.featurize import ACTION_CACHE_SIZE, CACHEABLE_ACTION_BYTES, Example, FeaturesLike

WorkCounter = Callable[[Example], int]
WILDCARD = ord(":")
LINEAR_WEIGHT = 32
PRODUCTS_PER_UNIT = 16
DRAW_WEIGHT = 8


def no_work(example: Example) -> int:
    """The counter of policies whose work is proportional to the request (bounded by its size)."""
    return 0


def _sizes(line: str) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for group in line.split("|")[1:]:
        if group:
            index = ord(group[0]) if group[0] < "\x80" else group[0].encode()[0]
            sizes[index] = sizes.get(index, 0) + group.count(" ") - group.endswith(" ")
    return sizes


_cached_sizes = lru_cache(maxsize=ACTION_CACHE_SIZE)(_sizes)  # short action lines repeat from request to request


def _named_sizes(line: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for group in line.split("|")[1:]:
        name, _, features = group.partition(" ")
        sizes[name] = sizes.get(name, 0) + features.count(" ") + bool(features) - features.endswith(" ")
    return sizes


_cached_named_sizes = lru_cache(maxsize=ACTION_CACHE_SIZE)(_named_sizes)


def named_sizes(line: str) -> dict[str, int]:
    """Features per full namespace name of one VW text line (see `namespace_sizes`)."""
    return _cached_named_sizes(line) if len(line) <= CACHEABLE_ACTION_BYTES else _named_sizes(line)


def namespace_sizes(line: str) -> dict[int, int]:
    """Features per VW namespace index (the first byte of the name) of one VW text line; names never hold `|`
    or white space (see `policies.featurize`), so each `|` starts a namespace and each space a feature."""
    return _cached_sizes(line) if len(line) <= CACHEABLE_ACTION_BYTES else _sizes(line)


def vw_counter(terms: Iterable[str], full_names: Iterable[str] = ()) -> WorkCounter:
    """The counter of a VW policy with these interaction terms (e.g. `::`, `ua`) and full-name terms (e.g.
    `action|:`)."""
    wildcards = [len(t) for t in terms if set(t) == {":"}]  # `::`, `:::`
    literals = [t.encode() for t in terms if set(t) != {":"}]
    named = [t.split("|") for t in full_names]

    def count(example: Example) -> int:
        lines = example.vw_lines()  # cached: the policy decides from the same lines
        shared = namespace_sizes(lines[0]) if len(lines) > len(example) else {}
        shared_features = sum(shared.values())
        shared_names = named_sizes(lines[0]) if named and shared else {}
        total = 0
        for line in lines[len(lines) - len(example) :]:
            own = namespace_sizes(line)
            n = shared_features + sum(own.values())
            total += n + 1 + sum(comb(n + k - 1, k) for k in wildcards)  # and the constant
            for term in literals:
                total += prod(n if c == WILDCARD else shared.get(c, 0) + own.get(c, 0) for c in term)
            if named:
                total += _named_products(named, n, shared_names, named_sizes(line))
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
