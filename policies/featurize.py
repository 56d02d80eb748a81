"""The one featurizer: a request's context and candidate actions as model input.

Serving, learning, offline replay and DSJSON export all go through `Example`,
so the model sees the same features everywhere.

VW text layout (one multi-line example per decision)::

    shared |<ns> name:1.5 key=value token ...      (one `|ns` group per context namespace)
    |action id=<action id> |channel <channel> |<ns> ...   (one line per candidate action)

Names are sanitized for VW's text format: white space, `|` and `:` become `_`.
Namespaces and features are emitted in sorted order so that the same input
always gives the same floating-point sums.

For models outside VW (`linucb`, `lints`), `Example.hashed(dim)` gives the same
features as hashed vectors, with the context × action crosses that let a linear
model personalize.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from functools import cached_property, lru_cache
from typing import NamedTuple, Protocol

import numpy as np

from nextbest.policies.cache import BoundedCache

_SANITIZE = str.maketrans({" ": "_", "\t": "_", "\n": "_", "\r": "_", "\v": "_", "\f": "_", "|": "_", ":": "_"})

ACTION_NAMESPACE = "action"
CHANNEL_NAMESPACE = "channel"
# Caches by serialized action (candidates repeat from request to request): entries, and the largest action kept.
ACTION_CACHE_SIZE = 4096
CACHEABLE_ACTION_BYTES = 2048


class FeaturesLike(Protocol):
    """What a namespace's features look like (nextbest.v1.Features satisfies it)."""

    numeric: Mapping[str, float]
    categorical: Mapping[str, str]
    tokens: Sequence[str]


class ActionLike(Protocol):
    """A candidate action (nextbest.v1.Action satisfies it)."""

    id: str
    channel: str
    features: Mapping[str, FeaturesLike]


class Namespace(NamedTuple):
    """One namespace's features in plain Python containers (satisfies FeaturesLike).

    Reading a protobuf map is slow: the serving path copies each namespace once with `plain`, then
    validates and featurizes the copy.
    """

    numeric: dict[str, float]
    categorical: dict[str, str]
    tokens: list[str]


def plain(namespaces: Mapping[str, FeaturesLike]) -> dict[str, Namespace]:
    """The namespaces with their features copied into plain Python containers."""
    return {ns: Namespace(dict(f.numeric), dict(f.categorical), list(f.tokens)) for ns, f in namespaces.items()}


@lru_cache(maxsize=1 << 16)  # names repeat from request to request
def sanitize(name: str) -> str:
    """`name` made safe for VW's text format."""
    return name.translate(_SANITIZE)


def namespace_items(features: FeaturesLike) -> list[tuple[str, float]]:
    """The (feature name, value) pairs of one namespace, sorted, as VW sees them."""
    items = [(sanitize(k), float(v)) for k, v in features.numeric.items()]
    items += [(f"{sanitize(k)}={sanitize(v)}", 1.0) for k, v in features.categorical.items()]
    items += [(sanitize(t), 1.0) for t in features.tokens]
    items.sort()
    return items


def _namespace_text(name: str, features: FeaturesLike) -> str:
    parts = [f"|{sanitize(name)}"]
    for feature, value in namespace_items(features):
        parts.append(feature if value == 1.0 else f"{feature}:{value:.9g}")
    return " ".join(parts)


def _namespaces_text(namespaces: Mapping[str, FeaturesLike]) -> str:
    return " ".join(_namespace_text(ns, namespaces[ns]) for ns in sorted(namespaces))


def _action_line(action: ActionLike) -> str:
    head = f"|{ACTION_NAMESPACE} id={sanitize(action.id)}"
    if action.channel:
        head += f" |{CHANNEL_NAMESPACE} {sanitize(action.channel)}"
    rest = _namespaces_text(action.features)
    return f"{head} {rest}" if rest else head


_action_lines: BoundedCache[bytes, str] = BoundedCache(ACTION_CACHE_SIZE)


def action_line(action: ActionLike) -> str:
    """The unlabeled VW line of one action; cached by the serialized action for protobuf messages."""
    serialize = getattr(action, "SerializeToString", None)
    if serialize is None:
        return _action_line(action)
    key = serialize()  # the same bytes always parse to the same action, so give the same line
    line = _action_lines.get(key)
    if line is None:
        line = _action_line(action)
        if len(key) <= CACHEABLE_ACTION_BYTES:
            _action_lines.put(key, line)
    return line


def action_namespaces(action: ActionLike) -> dict[str, dict[str, float]]:
    """All namespaces of one action line, including the implicit id and channel ones."""
    out: dict[str, dict[str, float]] = {ACTION_NAMESPACE: {f"id={sanitize(action.id)}": 1.0}}
    if action.channel:
        out[CHANNEL_NAMESPACE] = {sanitize(action.channel): 1.0}
    for ns in sorted(action.features):
        out[sanitize(ns)] = dict(namespace_items(action.features[ns]))
    return out


def context_namespaces(context: Mapping[str, FeaturesLike]) -> dict[str, dict[str, float]]:
    """All namespaces of the shared context."""
    return {sanitize(ns): dict(namespace_items(context[ns])) for ns in sorted(context)}


def _feature_hashes(namespaces: Mapping[str, Mapping[str, float]]) -> tuple[list[int], list[float]]:
    keys, values = [], []
    for ns, features in namespaces.items():
        for name, value in features.items():
            keys.append(zlib.crc32(f"{ns}^{name}".encode()))
            values.append(value)
    return keys, values


def _mix(keys: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: 64 well-mixed bits from any uint64 key."""
    z = keys ^ (keys >> np.uint64(30))
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_CONSTANT_KEY = zlib.crc32(b"constant^")


class Example:
    """One decision's input: the shared context and the candidate actions, in order.

    Built from protobuf messages (or anything shaped like them); computes each
    representation once and caches it.
    """

    def __init__(self, context: Mapping[str, FeaturesLike], actions: Sequence[ActionLike]) -> None:
        self.context = context
        self.actions = actions
        self._hashed: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def action_ids(self) -> list[str]:
        return [a.id for a in self.actions]

    @cached_property
    def _shared_line(self) -> str:
        return ("shared " + _namespaces_text(self.context)) if self.context else ""

    @cached_property
    def _action_lines(self) -> list[str]:
        return [action_line(action) for action in self.actions]

    def vw_lines(self) -> list[str]:
        """The unlabeled VW multi-line example (shared line first when there is context)."""
        shared = [self._shared_line] if self._shared_line else []
        return shared + self._action_lines

    def vw_labeled_lines(self, chosen_index: int, cost: float, probability: float) -> list[str]:
        """The VW multi-line example with the cb label `0:cost:probability` on the chosen action."""
        lines = list(self._action_lines)
        lines[chosen_index] = f"0:{cost:.9g}:{probability:.9g} {lines[chosen_index]}"
        return ([self._shared_line] if self._shared_line else []) + lines

    def hashed(self, dim: int) -> np.ndarray:
        """The example as a read-only float64 array of shape (actions, dim), one row per action.

        Row i holds every product of (1 or a context feature) with (1 or a
        feature of action i, including its `action` id and `channel`
        namespaces): a constant, each context feature, each action feature and
        each context × action cross, so that a linear model can make the best
        action depend on the context. Each product goes to a bucket chosen by a
        stable hash of the two `ns^name` feature names (names as in the VW
        lines; CRC-32 of each, combined and mixed by splitmix64, never Python's
        `hash()`), with a hashed sign; each row is then scaled to unit length.
        """
        cached = self._hashed.get(dim)
        if cached is not None:
            return cached
        context_keys, context_values = _feature_hashes(context_namespaces(self.context))
        rows, action_keys, action_values = [], [], []
        for i, action in enumerate(self.actions):
            keys, values = _feature_hashes(action_namespaces(action))
            rows += [i] * (len(keys) + 1)
            action_keys += [*keys, _CONSTANT_KEY]
            action_values += [*values, 1.0]
        ck = np.array([*context_keys, _CONSTANT_KEY], dtype=np.uint64)
        keys = _mix((ck[:, None] << np.uint64(32)) | np.array(action_keys, dtype=np.uint64)).ravel()
        values = np.outer([*context_values, 1.0], action_values).ravel()
        signs = 1.0 - 2.0 * (keys >> np.uint64(63)).astype(np.float64)
        flat = np.tile(np.array(rows) * dim, len(ck)) + (keys % np.uint64(dim)).astype(np.int64)
        x = np.bincount(flat, weights=values * signs, minlength=len(self.actions) * dim).reshape(-1, dim)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x /= np.where(norms > 0, norms, 1.0)
        x.flags.writeable = False
        self._hashed[dim] = x
        return x
