"""The one featurizer: a request's context and candidate actions as model input.

Serving, learning, offline replay and DSJSON export all go through `Example`,
so the model sees the same features everywhere.

VW text layout (one multi-line example per decision)::

    shared |<ns> name:1.5 key=value token ...      (one `|ns` group per context namespace)
    |action id=<action id> |channel <channel> |<ns> ...   (one line per candidate action)

Names are sanitized for VW's text format: white space, `|` and `:` become `_`.
Namespaces and features are emitted in sorted order so that the same input
always gives the same floating-point sums, except that within a namespace the
features VW's JSON must write as `_text` words (a name starting with `_`, a
name repeated) come last, in order: the DSJSON export then holds the very
features of the text line in the very same order, so VW learns the same model
from either. Every feature is kept: a repeated token is two features, as VW's
text keeps it. `unwritable` names what VW's JSON cannot hold that way (Rank
refuses it).

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
# Action lines by serialized action: the learner featurizes logged actions, and an action logged with history
# features is a copy per distinct history (the bench's 640 actions of 1,000 subjects: ~58% of lookups missed at
# 4,096 entries; a miss builds the line and evicts another). About 10 MB when full of ~300-byte actions.
ACTION_LINE_CACHE_SIZE = 16384


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


Items = list[tuple[str, float]]


def _order(item: tuple[str, float]) -> tuple[str, bool]:
    return item[0], item[1] == 1.0  # a name's value other than 1 first: it is the one VW's JSON writes as a key


def _split(items: Items) -> tuple[Items, Items]:
    """The pairs VW's JSON writes as keys (each name's first, unless it starts with `_`), and the others."""
    keyed: Items = []
    words: Items = []
    seen: set[str] = set()
    for item in items:
        if item[0][:1] == "_" or item[0] in seen:
            words.append(item)
        else:
            seen.add(item[0])
            keyed.append(item)
    return keyed, words


def namespace_items(features: FeaturesLike) -> Items:
    """The (feature name, value) pairs of one namespace, in the order VW sees them (see the module doc):
    sorted, then the ones VW's JSON writes as keys before the others (its `_text` words)."""
    items = [(sanitize(k), float(v)) for k, v in features.numeric.items()]
    items += [(f"{sanitize(k)}={sanitize(v)}", 1.0) for k, v in features.categorical.items()]
    items += [(sanitize(t), 1.0) for t in features.tokens]
    items.sort()
    names = [name for name, _ in items]
    if len(set(names)) == len(names) and "\x00_" not in "\x00" + "\x00".join(names):
        return items  # the common case, checked at C speed: no name repeated, none starting with `_`
    items.sort(key=_order)
    keyed, words = _split(items)
    return keyed + words


def text_words(items: Items) -> int:
    """Where the pairs VW's JSON writes as `_text` words start in `namespace_items`."""
    return len(_split(items)[0])


RESERVED_NAMESPACES = frozenset({ACTION_NAMESPACE, CHANNEL_NAMESPACE})
_SANITIZED = "once white space, '|' and ':' become '_'"


def json_namespace_problem(name: str) -> str | None:
    """Why VW's JSON cannot hold a namespace of this sanitized name, or None."""
    if name[:1] == "_":
        return f"starts with '_' {_SANITIZED}, which VW's JSON reserves"
    if not name[:1].isascii():  # VW 9's JSON parser corrupts its memory on such a namespace
        return "starts with a non-ASCII character, which VW's JSON parser cannot read"
    return None


def _plainly_unique(names: list[str]) -> bool:
    """Whether the names are distinct, ASCII and none starts with `_`, checked at C speed."""
    joined = "\x00" + "\x00".join(names)
    return len(set(names)) == len(names) and joined.isascii() and "\x00_" not in joined


def unwritable(namespaces: Mapping[str, FeaturesLike], reserved: frozenset[str] = frozenset()) -> str | None:
    """Why VW's JSON could not hold these namespaces as the featurizer's text does, or None.

    The reason starts with the offending part (`['ns'] (namespace name)`, `['ns'].numeric['x']`) for
    the caller to prefix with its field. VW's JSON reserves names starting with `_` and cannot read a
    namespace starting with a non-ASCII character; it holds a name once as a key; an action's own
    `action` and `channel` namespaces (`reserved`) are the featurizer's.
    """
    sanitized = [sanitize(ns) for ns in namespaces]
    if (
        _plainly_unique(sanitized)
        and reserved.isdisjoint(sanitized)
        and all(_plainly_unique([sanitize(k) for k in f.numeric]) for f in namespaces.values() if f.numeric)
    ):
        return None
    names: dict[str, str] = {}
    for ns in sorted(namespaces):  # the first in order is the one kept, the next one named
        features = namespaces[ns]
        name = sanitize(ns)
        where = f"[{ns!r}]"
        problem = json_namespace_problem(name)
        if problem is not None:
            return f"{where} (namespace name): {problem}"
        if name in reserved:
            return f"{where} (namespace name): {name!r} is reserved for the action's id and channel"
        if name in names:
            return f"{where} (namespace name): the same namespace as {names[name]!r} {_SANITIZED}"
        names[name] = ns
        numeric: dict[str, str] = {}
        for key in sorted(features.numeric):
            feature = sanitize(key)
            if feature[:1] == "_":
                return f"{where}.numeric[{key!r}]: starts with '_' {_SANITIZED}; VW's JSON holds that only as a token"
            if feature in numeric:
                return f"{where}.numeric[{key!r}]: the same feature as {numeric[feature]!r} {_SANITIZED}"
            numeric[feature] = key
    return None


def namespace_text(name: str, features: FeaturesLike) -> str:
    """The VW text of one namespace: `|name feature[:value] ...`."""
    parts = [f"|{sanitize(name)}"]
    for feature, value in namespace_items(features):
        parts.append(feature if value == 1.0 else f"{feature}:{value:.9g}")
    return " ".join(parts)


def _namespaces_text(namespaces: Mapping[str, FeaturesLike]) -> str:
    return " ".join(namespace_text(ns, namespaces[ns]) for ns in sorted(namespaces))


# An action's namespace texts by (name, serialized features), for the lines the line cache misses: an action whose
# line is new often differs from one seen before in one namespace only (e.g. the history features Rank adds to it).
_action_namespace_texts: BoundedCache[tuple[str, bytes], str] = BoundedCache(ACTION_CACHE_SIZE)


def _action_namespace_text(name: str, features: FeaturesLike) -> str:
    serialize = getattr(features, "SerializeToString", None)
    if serialize is None:
        return namespace_text(name, features)
    key = (name, serialize())
    return _action_namespace_texts.get_or_make(
        key, lambda: namespace_text(name, features), len(key[1]) <= CACHEABLE_ACTION_BYTES
    )


def _action_line(action: ActionLike) -> str:
    head = f"|{ACTION_NAMESPACE} id={sanitize(action.id)}"
    if action.channel:
        head += f" |{CHANNEL_NAMESPACE} {sanitize(action.channel)}"
    if not action.features:
        return head
    return " ".join([head, *(_action_namespace_text(ns, action.features[ns]) for ns in sorted(action.features))])


_action_lines: BoundedCache[bytes, str] = BoundedCache(ACTION_LINE_CACHE_SIZE)


def action_line(action: ActionLike) -> str:
    """The unlabeled VW line of one action; cached by the serialized action for protobuf messages."""
    serialize = getattr(action, "SerializeToString", None)
    if serialize is None:
        return _action_line(action)
    key = serialize()  # the same bytes always parse to the same action, so give the same line
    return _action_lines.get_or_make(key, lambda: _action_line(action), len(key) <= CACHEABLE_ACTION_BYTES)


def action_line_around(action: ActionLike, name: str) -> tuple[str, str]:
    """`action_line` of `action` split where a namespace `name` (not one of its own) goes: with that namespace's
    text (`namespace_text`), the line is `before + " " + text + after`. Each namespace of a line starts with ` |`
    (names and features never hold `|`), and the action's own come after its id and channel, ordered by name.

    >>> from nextbest.v1.types_pb2 import Action, Features
    >>> a = Action(id="a", channel="email", features={"x": Features(numeric={"n": 2}), "z": Features(tokens=["t"])})
    >>> before, after = action_line_around(a, "y")
    >>> before + " " + namespace_text("y", Features(numeric={"m": 1})) + after
    '|action id=a |channel email |x n:2 |y m |z t'
    """
    parts = action_line(action).split(" |")
    at = 1 + bool(action.channel) + sum(own < name for own in action.features)
    return " |".join(parts[:at]), "".join(f" |{part}" for part in parts[at:])


class LineSizes(NamedTuple):
    """Features per VW namespace index (the first byte of its name) and per full namespace name of one VW text
    line (what a decision costs VW: `policies.work`); names never hold `|` or white space, so each `|` starts a
    namespace and each space a feature."""

    by_index: dict[int, int]
    by_name: dict[str, int]


def _add(sizes: LineSizes, name: str, n: int) -> None:
    """Count `n` more features in a namespace `name` (sanitized) of `sizes` (one being made: cached ones are shared);
    VW's namespace index is the name's first byte."""
    sizes.by_name[name] = sizes.by_name.get(name, 0) + n
    if name:
        index = ord(name[0]) if name[0] < "\x80" else name[0].encode()[0]
        sizes.by_index[index] = sizes.by_index.get(index, 0) + n


def _sizes(line: str) -> LineSizes:
    sizes = LineSizes({}, {})
    for group in line.split("|")[1:]:
        name, _, features = group.partition(" ")
        _add(sizes, name, features.count(" ") + bool(features) - features.endswith(" "))
    return sizes


_line_sizes: BoundedCache[str, LineSizes] = BoundedCache(ACTION_CACHE_SIZE)  # short action lines repeat


def line_sizes(line: str) -> LineSizes:
    """The sizes of one VW text line's namespaces; cached for short lines."""
    return _line_sizes.get_or_make(line, lambda: _sizes(line), len(line) <= CACHEABLE_ACTION_BYTES)


def sizes_with(sizes: LineSizes, name: str, features: int) -> LineSizes:
    """`sizes` of a line with a namespace `name` (sanitized) of `features` features added, without parsing it.

    >>> sizes_with(line_sizes("|a x |b y z"), "a2", 1) == line_sizes("|a x |b y z |a2 w")
    True
    """
    out = LineSizes(dict(sizes.by_index), dict(sizes.by_name))
    _add(out, name, features)
    return out


Namespaces = list[tuple[str, Items]]


def action_namespaces(action: ActionLike) -> Namespaces:
    """All namespaces of one action line, in order, including the implicit id and channel ones:
    (sanitized name, `namespace_items`) pairs, every one kept even when two names are the same."""
    out: Namespaces = [(ACTION_NAMESPACE, [(f"id={sanitize(action.id)}", 1.0)])]
    if action.channel:
        out.append((CHANNEL_NAMESPACE, [(sanitize(action.channel), 1.0)]))
    out += context_namespaces(action.features)
    return out


def context_namespaces(context: Mapping[str, FeaturesLike]) -> Namespaces:
    """All namespaces of the shared context, as `action_namespaces`."""
    return [(sanitize(ns), namespace_items(context[ns])) for ns in sorted(context)]


def _feature_hashes(namespaces: Namespaces) -> tuple[list[int], list[float]]:
    keys, values = [], []
    for ns, items in namespaces:
        for name, value in items:
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


class Slot(NamedTuple):
    """One slot of a multi-slot decision as a policy sees it: the slot's own features, and the indices into the
    example's actions of the candidates it may take (none an earlier slot took), in order."""

    features: Mapping[str, FeaturesLike]
    candidates: tuple[int, ...]


# VW's CCB parser crashes on a shared line without a namespace (`ccb shared |`): an empty namespace adds no feature.
_CCB_EMPTY_SHARED = "ccb shared |shared"


def ccb_slot_line(slot: Slot, label: str = "") -> str:
    """The VW CCB line of a slot: `ccb slot [label] <candidates> [|ns features ...]` (`label`: `action:cost:prob`)."""
    parts = ["ccb slot", label, ",".join(map(str, slot.candidates)), _namespaces_text(slot.features)]
    return " ".join(part for part in parts if part)


class Example:
    """One decision's input: the shared context and the candidate actions, in order.

    Built from protobuf messages (or anything shaped like them); computes each
    representation once and caches it.
    """

    def __init__(
        self,
        context: Mapping[str, FeaturesLike],
        actions: Sequence[ActionLike],
        action_lines: Sequence[str] | None = None,
        action_sizes: Sequence[LineSizes] | None = None,
    ) -> None:
        """`action_lines`, `action_sizes`: the actions' VW lines and their sizes when the caller already has them
        (each `action_line` of its action, and `line_sizes` of that)."""
        self.context = context
        self.actions = actions
        self._hashed: dict[int, np.ndarray] = {}
        if action_lines is not None:
            self._action_lines = list(action_lines)
        if action_sizes is not None:
            self._action_sizes = list(action_sizes)

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

    @cached_property
    def _action_sizes(self) -> list[LineSizes]:
        return [line_sizes(line) for line in self._action_lines]

    def action_line_sizes(self) -> list[LineSizes]:
        """The sizes of the actions' VW lines (`line_sizes`), in order."""
        return self._action_sizes

    def shared_sizes(self) -> LineSizes:
        """The sizes of the shared line (`line_sizes` of it), counted from the context: every feature is written."""
        sizes = LineSizes({}, {})
        for ns, features in self.context.items():
            _add(sizes, sanitize(ns), len(features.numeric) + len(features.categorical) + len(features.tokens))
        return sizes

    def vw_lines(self) -> list[str]:
        """The unlabeled VW multi-line example (shared line first when there is context)."""
        shared = [self._shared_line] if self._shared_line else []
        return shared + self._action_lines

    def vw_labeled_lines(self, chosen_index: int, cost: float, probability: float) -> list[str]:
        """The VW multi-line example with the cb label `0:cost:probability` on the chosen action."""
        lines = list(self._action_lines)
        lines[chosen_index] = f"0:{cost:.9g}:{probability:.9g} {lines[chosen_index]}"
        return ([self._shared_line] if self._shared_line else []) + lines

    def ccb_lines(self, slots: Sequence[Slot], labels: Sequence[str] = ()) -> list[str]:
        """The VW CCB multi-line example: shared, actions, then one line per slot (labeled when `labels` are given,
        one per slot: `action:cost:prob` or empty)."""
        shared = f"ccb {self._shared_line}" if self._shared_line else _CCB_EMPTY_SHARED
        lines = [shared] + [f"ccb action {line}" for line in self._action_lines]
        return lines + [ccb_slot_line(slot, labels[i] if labels else "") for i, slot in enumerate(slots)]

    def slot_example(self, slot: Slot) -> Example:
        """The single-slot example a policy that decides each slot alone sees: the context with the slot's features,
        and the slot's candidates."""
        return Example({**self.context, **slot.features}, [self.actions[i] for i in slot.candidates])

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
