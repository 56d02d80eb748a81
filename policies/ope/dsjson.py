"""DSJSON, the decision-service log format of Vowpal Wabbit (`vw --dsjson`) and Azure Personalizer.

One JSON object per line and per decision::

    {"_label_cost": -1.0, "_label_probability": 0.8, "_label_Action": 2, "_labelIndex": 1,
     "EventId": "e1", "Timestamp": "2024-05-01T12:00:00.000000Z", "a": [2, 1], "p": [0.8, 0.2],
     "c": {"user": {"segment=student": 1.0}, "_multi": [{"_tag": "a1", ...}, {"_tag": "a2", ...}]}}

`read` turns lines from nextbest or from any other system into `LoggedEvent`s, with VW's JSON
semantics for features (VW 9, `parse_example_json.cc`, without `--chain_hash`):

- an object is a namespace named by its key, at any depth; the top level of `c` and of each
  `_multi` entry is the default namespace `" "`;
- a number is the feature `key:value` (VW drops it when 0); `true` is the feature `key` (`false`
  and `null` are nothing);
- a string is the one feature `key` + value, with ` `, tab, `|` and `:` in the value made `_`
  (`"type": "hot"` is `typehot`);
- an array is the namespace `key`: its numbers are features named by their position among the
  numbers (`"v": [0.5, 2]` is `|v 0:0.5 1:2`; nulls are skipped), its objects add to that namespace;
- `"_text": "a b"` is one feature per word (split on spaces and tabs) of the enclosing namespace;
- other keys starting with `_` are ignored, but `_slots` (conditional bandits) is refused (`read_multi_slot`
  reads `c._slots`, see below);
- a number repeated in a namespace (say in two objects of an array) is one feature, the sum: VW
  keeps both, which predicts the same but updates a little differently.

Lines must be JSON objects with a label (`_label_cost`, `_label_probability`, and `_labelIndex`,
else `_label_Action`: the chosen action, 0- or 1-based; these keys in any case, as VW) and actions
in `c._multi`; a line that is not raises ValueError naming its line number. Blank lines are skipped.

An action's id is its `_tag`, else its 1-based position; the first action is the baseline. An
action's namespace `action` holding just `id=<id>`, and its namespace `channel` holding one feature
of value 1, are the ones nextbest's featurizer adds by itself: they are not read as features (the
second gives the action's channel), so that reading an export gives back the logged example.

`a` (1-based actions, the chosen one first) with `p` (their probabilities) gives the event's pmf
when `a` names each action once. `pdrop`, the probability that the logger dropped the event, is
folded into the probability: VW weights such an example by 1 / (1 - pdrop), which for importance
weighting is the same as the probability `_label_probability * (1 - pdrop)`. VW does not learn
from events with `_skipLearn`, with no `a`, or with `pdrop` 1 (it cannot weight them); those come
with `skip_learn` set (and with `pdrop` 1, the probability as logged). `_holdout: true` (nextbest's
export: the loop's holdout policy decided, not the live one; VW ignores the key) sets `holdout`.

`read_multi_slot` reads VW's conditional contextual bandit (CCB, `vw --ccb_explore_adf --dsjson`) lines
into `MultiSlotEvent`s::

    {"EventId": "e1", "c": {"user": {"segment": "student"}, "_multi": [{"_tag": "a1", ...}, ...],
                            "_slots": [{"_id": "hero", "size": "large"}, {"_id": "side", "_inc": [1, 2]}]},
     "_outcomes": [{"_id": "hero", "_label_cost": -1.0, "_a": [2, 0, 1], "_p": [0.8, 0.1, 0.1]},
                   {"_id": "side", "_label_cost": 0.0, "_a": [1], "_p": [1.0]}]}

`c` holds the shared context and the actions as above, and `_slots` the slots in decision order: each
an object of the slot's features (read as the context's), with optional `_id` (else the slot's 0-based
position) and `_inc`, the 0-based indices of the actions it may take (else all). `_outcomes` holds one
outcome per slot, in the same order (an `_id` there must be the slot's): `_label_cost` (−reward), `_a`
(0-based action indices, the chosen one first; VW's own logs list the slot's eligible actions) and `_p`
(their probabilities). A slot's eligible actions are its included ones less those chosen for earlier
slots: its chosen action must be one of them, and its probability is the one it was sampled with
among them. `_a` naming every eligible action once gives the slot's pmf. `pdrop` is folded into the
first slot's probability (each slot's cumulative weight then carries it once); `_skipLearn`,
`_holdout`, `EventId` and `Timestamp` are read as above. Other keys (`_o`, `_ba`, `VWState`, ...)
are ignored. A line that is not such an event raises ValueError naming its line and field.

`to_dsjson` writes an event as such a line, with the features of `policies.featurize` (sanitized
names; categorical `name=value` and tokens as the number 1) in the featurizer's order, so that VW
learns from it exactly what it learns from the featurizer's VW text: each namespace's keyed
features, then as `_text` the features VW's JSON cannot write as keys (names starting with `_`,
repeated names), all of value 1. What VW's JSON cannot hold that way (a namespace starting with
`_` or a non-ASCII character or named twice, a feature of another value among the `_text` ones; Rank refuses them, see
`policies.featurize.unwritable`) raises ValueError naming the event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from nextbest.policies.featurize import (
    ACTION_NAMESPACE,
    CHANNEL_NAMESPACE,
    Example,
    Items,
    Namespaces,
    action_namespaces,
    context_namespaces,
    json_namespace_problem,
    sanitize,
    text_words,
)
from nextbest.policies.ope.logged import LoggedEvent, LoggedSlot, MultiSlotEvent

T = TypeVar("T")

DEFAULT_NAMESPACE = " "
_VALUE_ESCAPE = str.maketrans({" ": "_", "\t": "_", "|": "_", ":": "_"})
_TEXT_ESCAPE = str.maketrans({"|": "_", ":": "_", "\t": " "})


@dataclass(frozen=True)
class Features:
    """One namespace's features as read from DSJSON (satisfies `policies.featurize.FeaturesLike`)."""

    numeric: Mapping[str, float] = field(default_factory=dict)
    categorical: Mapping[str, str] = field(default_factory=dict)
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    """One candidate action as read from DSJSON (satisfies `policies.featurize.ActionLike`)."""

    id: str
    channel: str = ""
    features: Mapping[str, Features] = field(default_factory=dict)


class _Namespaces:
    """Features gathered per namespace name while walking one example's JSON."""

    def __init__(self) -> None:
        self.numeric: dict[str, dict[str, float]] = {}
        self.tokens: dict[str, list[str]] = {}

    def walk(self, obj: Mapping[str, Any], ns: str) -> None:
        numeric = self.numeric.setdefault(ns, {})
        tokens = self.tokens.setdefault(ns, [])
        for key, value in obj.items():
            kind = type(value)  # json.loads makes exactly these types
            if key[:1] == "_":
                if key == "_text":
                    if kind is not str:
                        raise ValueError(f"namespace {ns!r}: _text must be a string")
                    tokens += [word for word in value.translate(_TEXT_ESCAPE).split(" ") if word]
                elif key == "_slots":
                    raise ValueError("_slots: conditional contextual bandit events are not supported")
            elif kind is float or kind is int:
                numeric[key] = numeric.get(key, 0.0) + value
            elif kind is str:
                tokens.append(key + value.translate(_VALUE_ESCAPE))
            elif kind is bool:
                if value:
                    tokens.append(key)
            elif kind is dict:
                self.walk(value, key)
            elif kind is list:
                self._array(value, key)

    def _array(self, values: list[Any], ns: str) -> None:
        numeric = self.numeric.setdefault(ns, {})
        position = 0
        for value in values:
            kind = type(value)
            if kind is float or kind is int:
                name = str(position)
                numeric[name] = numeric.get(name, 0.0) + value
                position += 1
            elif kind is dict:
                self.walk(value, ns)
            elif value is not None:
                raise ValueError(f"array {ns!r}: only numbers, objects and nulls are supported, got {value!r}")

    def features(self) -> dict[str, Features]:
        numeric, tokens = self.numeric, self.tokens
        return {
            ns: _with_categoricals(numeric.get(ns, {}), tuple(tokens.get(ns, ())))
            for ns in sorted(numeric.keys() | tokens.keys())
            if numeric.get(ns) or tokens.get(ns)
        }


def namespaces(objects: Iterable[Mapping[str, Any]], default: str = DEFAULT_NAMESPACE) -> dict[str, Features]:
    """The features of JSON objects read together as one VW JSON example, keys at their top level in `default`.

    Azure Personalizer's features are such a list of objects (its `contextFeatures`, an action's `features`).
    Raises ValueError for what VW's JSON cannot read (an array of strings, `_slots`, a non-string `_text`).
    """
    gathered = _Namespaces()
    for obj in objects:
        gathered.walk(obj, default)
    return gathered.features()


def _with_categoricals(numeric: dict[str, float], tokens: tuple[str, ...]) -> Features:
    """Features where each `name=value` feature of value 1 is the categorical name → value again.

    That is how the featurizer writes a categorical feature, so its VW text (and
    hash) is unchanged, and rules on `ns.name` match events read back from DSJSON.
    """
    categorical = {}
    for key in [k for k, v in numeric.items() if v == 1.0 and "=" in k[1:]]:
        name, _, value = key.partition("=")
        if name not in categorical and name not in numeric:
            categorical[name] = value
            del numeric[key]
    return Features(numeric, categorical, tokens)


def _pairs(features: Features | None) -> list[tuple[str, float]]:
    if not features:
        return []
    categorical = ((f"{k}={v}", 1.0) for k, v in features.categorical.items())
    return [*features.numeric.items(), *categorical, *((t, 1.0) for t in features.tokens)]


def _action(item: Any, position: int) -> Action:
    if type(item) is not dict:
        raise ValueError(f"_multi[{position - 1}]: an action must be an object")
    tag = item.get("_tag")
    if tag is None:  # VW reads the key whatever its case
        tag = next((v for k, v in item.items() if len(k) == 4 and k.lower() == "_tag"), None)
    if tag is not None and type(tag) is not str:
        raise ValueError(f"_multi[{position - 1}]: _tag must be a string")
    action_id = str(position) if tag is None else tag
    namespaces = _Namespaces()
    namespaces.walk(item, DEFAULT_NAMESPACE)
    features = namespaces.features()
    if ACTION_NAMESPACE in features and _pairs(features[ACTION_NAMESPACE]) == [(f"id={sanitize(action_id)}", 1.0)]:
        del features[ACTION_NAMESPACE]
    channel = _pairs(features.get(CHANNEL_NAMESPACE))
    if len(channel) == 1 and channel[0][1] == 1.0 and sanitize(channel[0][0]) == channel[0][0]:
        del features[CHANNEL_NAMESPACE]
        return Action(action_id, channel[0][0], features)
    return Action(action_id, "", features)


def _number(obj: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if value is None:
        raise ValueError(f"{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def _chosen_index(label: Mapping[str, Any], n_actions: int) -> int:
    if "_labelindex" in label:
        index = label["_labelindex"]
    elif isinstance(label.get("_label_action"), int):
        index = label["_label_action"] - 1
    else:
        raise ValueError("_labelIndex (or an integer _label_Action) is missing")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_actions:
        raise ValueError(f"the chosen action ({index!r}, 0-based) is not one of the {n_actions} actions")
    return index


def _pmf(obj: Mapping[str, Any], n_actions: int) -> tuple[float, ...] | None:
    ranking, probabilities = obj.get("a"), obj.get("p", obj.get("_p"))
    if not isinstance(ranking, list) or not isinstance(probabilities, list) or len(ranking) != len(probabilities):
        return None
    if any(isinstance(p, bool) or not isinstance(p, int | float) for p in probabilities):
        raise ValueError(f"p must be a list of numbers, got {probabilities!r}")
    if not all(type(a) is int for a in ranking) or sorted(ranking) != list(range(1, n_actions + 1)):
        return None
    pmf = [0.0] * n_actions
    for action, probability in zip(ranking, probabilities, strict=True):
        pmf[action - 1] = float(probability)
    return tuple(pmf)


def utc_seconds(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time, UTC unless it says otherwise (ValueError if not one)."""
    t = datetime.fromisoformat(text)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _timestamp(obj: Mapping[str, Any]) -> float:
    value = obj.get("Timestamp")
    if value is None:
        return 0.0
    try:
        return utc_seconds(value)
    except (TypeError, ValueError):
        raise ValueError(f"Timestamp must be an ISO 8601 time, got {value!r}") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _object(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _flag(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class _Common:
    """What single- and multi-slot lines share: the example, the drop probability and the event's fields."""

    example: Example
    pdrop: float
    skip: bool
    holdout: bool
    event_id: str
    timestamp: float


def _common(obj: Mapping[str, Any]) -> _Common:
    context = obj.get("c")
    if not isinstance(context, dict) or not isinstance(context.get("_multi"), list) or not context["_multi"]:
        raise ValueError("no actions: the context 'c' must hold a non-empty '_multi' list")
    actions = [_action(item, i) for i, item in enumerate(context["_multi"], 1)]
    shared = _Namespaces()
    shared.walk({k: v for k, v in context.items() if k != "_slots"}, DEFAULT_NAMESPACE)  # slots: read_multi_slot
    pdrop = _number(obj, "pdrop", 0.0)
    if not 0.0 <= pdrop <= 1.0:
        raise ValueError(f"pdrop must be in [0, 1], got {pdrop}")
    skip, holdout = _flag(obj, "_skipLearn"), _flag(obj, "_holdout")
    event_id = obj.get("EventId", "")
    if not isinstance(event_id, str):
        raise ValueError(f"EventId must be a string, got {event_id!r}")
    return _Common(Example(shared.features(), actions), pdrop, skip, holdout, event_id, _timestamp(obj))


def _event(line: str) -> LoggedEvent:
    obj = _object(line)
    if isinstance(obj.get("c"), dict) and "_slots" in obj["c"]:
        raise ValueError("_slots: a multi-slot (CCB) event; read CCB logs with read_multi_slot")
    common = _common(obj)
    label = {k.lower(): v for k, v in obj.items() if k[:6].lower() == "_label"}  # VW ignores their case
    probability = _number(label, "_label_probability")
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"_label_probability must be in (0, 1], got {probability}")
    pdrop = common.pdrop
    n_actions = len(common.example)
    return LoggedEvent(
        event_id=common.event_id,
        example=common.example,
        chosen_index=_chosen_index(label, n_actions),
        probability=probability * (1.0 - pdrop) if pdrop < 1.0 else probability,
        reward=-_number(label, "_label_cost"),
        pmf=_pmf(obj, n_actions),
        timestamp=common.timestamp,
        skip_learn=common.skip or not obj.get("a") or pdrop == 1.0,
        holdout=common.holdout,
    )


def _indices(value: Any, field: str, n_actions: int) -> list[int]:
    """A list of distinct 0-based action indices (a single integer is a list of one, as VW reads it)."""
    values = [value] if type(value) is int else value
    if not isinstance(values, list) or not values or any(type(a) is not int for a in values):
        raise ValueError(f"{field} must be a non-empty list of action indices, got {value!r}")
    for a in values:
        if not 0 <= a < n_actions:
            raise ValueError(f"{field}: action {a} is not one of the {n_actions} actions (0-based)")
    if len(set(values)) != len(values):
        raise ValueError(f"{field} names an action twice: {value!r}")
    return values


def _slot(item: Any, outcome: Any, k: int, n_actions: int, taken: dict[int, int], scale: float) -> LoggedSlot:
    """Slot k from `_slots[k]` and `_outcomes[k]`; `taken` maps the actions of earlier slots to their slot."""
    if type(item) is not dict:
        raise ValueError(f"_slots[{k}]: a slot must be an object")
    if type(outcome) is not dict:
        raise ValueError(f"_outcomes[{k}]: an outcome must be an object")
    slot_id = item.get("_id", outcome.get("_id", str(k)))
    if type(slot_id) is not str:
        raise ValueError(f"_slots[{k}]._id must be a string, got {slot_id!r}")
    if outcome.get("_id", slot_id) != slot_id:
        raise ValueError(f"_outcomes[{k}]._id {outcome['_id']!r} is not the slot's _id {slot_id!r}")
    included = _indices(item["_inc"], f"_slots[{k}]._inc", n_actions) if "_inc" in item else range(n_actions)
    eligible = tuple(a for a in included if a not in taken)
    ranking = _indices(outcome.get("_a"), f"_outcomes[{k}]._a", n_actions)
    probabilities = outcome.get("_p")
    probabilities = [probabilities] if isinstance(probabilities, int | float) else probabilities
    if (
        not isinstance(probabilities, list)
        or len(probabilities) != len(ranking)
        or any(isinstance(p, bool) or not isinstance(p, int | float) for p in probabilities)
    ):
        raise ValueError(f"_outcomes[{k}]._p must be a list of numbers as long as _a, got {outcome.get('_p')!r}")
    chosen = ranking[0]
    if chosen in taken:
        raise ValueError(f"_outcomes[{k}]._a: action {chosen} was chosen for slot {taken[chosen]} already")
    if chosen not in eligible:
        raise ValueError(f"_outcomes[{k}]._a: action {chosen} is not in the slot's _inc")
    if not 0.0 < probabilities[0] <= 1.0:
        chosen_p = probabilities[0]
        raise ValueError(f"_outcomes[{k}]._p: the chosen one's probability must be in (0, 1], got {chosen_p}")
    try:
        cost = _number(outcome, "_label_cost")
    except ValueError as e:
        raise ValueError(f"_outcomes[{k}].{e}") from None
    pmf = None
    if sorted(ranking) == sorted(eligible):
        pmf = [0.0] * n_actions
        for a, p in zip(ranking, probabilities, strict=True):
            pmf[a] = float(p)
    features = _Namespaces()
    features.walk(item, DEFAULT_NAMESPACE)
    return LoggedSlot(
        slot_id,
        features.features(),
        eligible,
        chosen,
        probabilities[0] * scale,
        -cost,
        tuple(pmf) if pmf is not None else None,
    )


def _multi_slot_event(line: str) -> MultiSlotEvent:
    obj = _object(line)
    common = _common(obj)
    slots, outcomes = obj["c"].get("_slots"), obj.get("_outcomes")
    if not isinstance(slots, list) or not slots:
        raise ValueError("no slots: the context 'c' must hold a non-empty '_slots' list")
    if not isinstance(outcomes, list) or len(outcomes) != len(slots):
        raise ValueError(f"_outcomes must be a list with one outcome per slot ({len(slots)}), got {outcomes!r:.80}")
    pdrop = common.pdrop
    taken: dict[int, int] = {}
    read_slots = []
    for k, (item, outcome) in enumerate(zip(slots, outcomes, strict=True)):
        scale = 1.0 - pdrop if k == 0 and pdrop < 1.0 else 1.0
        slot = _slot(item, outcome, k, len(common.example), taken, scale)
        taken[slot.chosen_index] = k
        read_slots.append(slot)
    ids = [s.id for s in read_slots]
    if len(set(ids)) != len(ids):
        raise ValueError(f"_slots: two slots have one _id: {ids}")
    return MultiSlotEvent(
        event_id=common.event_id,
        example=common.example,
        slots=tuple(read_slots),
        timestamp=common.timestamp,
        skip_learn=common.skip or pdrop == 1.0,
        holdout=common.holdout,
    )


def read(source: str | os.PathLike[str] | Iterable[str]) -> Iterator[LoggedEvent]:
    """The events of a DSJSON log, one per non-blank line, read lazily (constant memory).

    `source` is a file path or an iterable of lines (an open file, a list of strings). A line
    that is not a valid event raises ValueError("line N: ...", with the path when known).
    """
    return _read(source, _event)


def read_multi_slot(source: str | os.PathLike[str] | Iterable[str]) -> Iterator[MultiSlotEvent]:
    """The events of a CCB DSJSON log (VW's `--ccb_explore_adf --dsjson` format, see the module doc), as `read`."""
    return _read(source, _multi_slot_event)


def is_multi_slot(path: str | os.PathLike[str]) -> bool:
    """Whether the log's first non-blank line is a multi-slot (CCB) event: one with `_outcomes` or `c._slots`."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return False
                if not isinstance(obj, dict):
                    return False
                context = obj.get("c")
                return "_outcomes" in obj or isinstance(context, dict) and "_slots" in context
    return False


def _read(source: str | os.PathLike[str] | Iterable[str], parse: Callable[[str], T]) -> Iterator[T]:
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            yield from _parsed(f, f"{os.fspath(source)}, ", parse)
    else:
        yield from _parsed(source, "", parse)


def _parsed(lines: Iterable[str], where: str, parse: Callable[[str], T]) -> Iterator[T]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                event = parse(line)
            except ValueError as e:
                raise ValueError(f"{where}line {number}: {e}") from None
            yield event


def _namespace_json(ns: str, items: Items) -> dict[str, Any]:
    """The namespace's features as VW's JSON object: the featurizer's keyed pairs, then its `_text` words."""
    split = text_words(items)
    out: dict[str, Any] = dict(items[:split])
    words = items[split:]
    for name, value in words:
        if value != 1.0:
            raise ValueError(f"VW's JSON cannot hold feature {name!r} = {value} of namespace {ns!r}")
    if words:
        out["_text"] = " ".join(name for name, _ in words)
    return out


def _namespaces_json(namespaces: Namespaces) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ns, items in namespaces:
        problem = json_namespace_problem(ns)
        if problem is not None:
            raise ValueError(f"VW's JSON cannot hold namespace {ns!r}: it {problem}")
        if ns in out:
            raise ValueError(f"VW's JSON cannot hold namespace {ns!r} twice")
        out[ns] = _namespace_json(ns, items)
    return out


def to_dsjson(event: LoggedEvent, extra: Mapping[str, Any] | None = None) -> str:
    """`event` as one DSJSON line (no newline), which `read` reads back and `vw --dsjson` learns from.

    Writes `_label_cost` (-reward), `_label_probability`, `_label_Action` (1-based), `_labelIndex`,
    `_skipLearn` and `_holdout` (when set), `EventId`, `Timestamp` (ISO 8601 UTC, when known), `a` (the chosen
    action then the others by decreasing probability, 1-based), `p` (their probabilities, when the
    pmf is known) and `c`: the context's namespaces and `_multi`, one object per action with its
    `_tag` (the id) and its namespaces, including the featurizer's `action` and `channel`.
    `extra` adds further top-level fields (VW ignores unknown ones), e.g. Personalizer's `o`.
    """
    n = len(event.example)
    chosen = event.chosen_index
    pmf = event.pmf
    others = sorted((i for i in range(n) if i != chosen), key=lambda i: -pmf[i] if pmf else 0.0)
    ranking = [chosen, *others]
    line: dict[str, Any] = {
        "_label_cost": -event.reward,
        "_label_probability": event.probability,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
    }
    if event.skip_learn:
        line["_skipLearn"] = True
    if event.holdout:
        line["_holdout"] = True
    line["EventId"] = event.event_id
    if event.timestamp:
        t = datetime.fromtimestamp(event.timestamp, UTC).isoformat(timespec="microseconds")
        line["Timestamp"] = t.replace("+00:00", "Z")
    line["a"] = [i + 1 for i in ranking]
    if pmf is not None:
        line["p"] = [pmf[i] for i in ranking]
    try:
        context = _namespaces_json(context_namespaces(event.example.context))
        context["_multi"] = [{"_tag": a.id, **_namespaces_json(action_namespaces(a))} for a in event.example.actions]
    except ValueError as e:
        raise ValueError(f"event {event.event_id!r}: {e}") from None
    line["c"] = context
    if extra:
        line.update(extra)
    return json.dumps(line, separators=(",", ":"))
