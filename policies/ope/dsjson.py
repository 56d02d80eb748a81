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
- other keys starting with `_` are ignored, but `_slots` (conditional bandits) is refused;
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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
from nextbest.policies.ope.logged import LoggedEvent

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


def _event(line: str) -> LoggedEvent:
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    context = obj.get("c")
    if not isinstance(context, dict) or not isinstance(context.get("_multi"), list) or not context["_multi"]:
        raise ValueError("no actions: the context 'c' must hold a non-empty '_multi' list")
    actions = [_action(item, i) for i, item in enumerate(context["_multi"], 1)]
    shared = _Namespaces()
    shared.walk(context, DEFAULT_NAMESPACE)
    label = {k.lower(): v for k, v in obj.items() if k[:6].lower() == "_label"}  # VW ignores their case
    probability = _number(label, "_label_probability")
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"_label_probability must be in (0, 1], got {probability}")
    pdrop = _number(obj, "pdrop", 0.0)
    if not 0.0 <= pdrop <= 1.0:
        raise ValueError(f"pdrop must be in [0, 1], got {pdrop}")
    skip = obj.get("_skipLearn", False)
    if not isinstance(skip, bool):
        raise ValueError(f"_skipLearn must be true or false, got {skip!r}")
    holdout = obj.get("_holdout", False)
    if not isinstance(holdout, bool):
        raise ValueError(f"_holdout must be true or false, got {holdout!r}")
    event_id = obj.get("EventId", "")
    if not isinstance(event_id, str):
        raise ValueError(f"EventId must be a string, got {event_id!r}")
    return LoggedEvent(
        event_id=event_id,
        example=Example(shared.features(), actions),
        chosen_index=_chosen_index(label, len(actions)),
        probability=probability * (1.0 - pdrop) if pdrop < 1.0 else probability,
        reward=-_number(label, "_label_cost"),
        pmf=_pmf(obj, len(actions)),
        timestamp=_timestamp(obj),
        skip_learn=skip or not obj.get("a") or pdrop == 1.0,
        holdout=holdout,
    )


def read(source: str | os.PathLike[str] | Iterable[str]) -> Iterator[LoggedEvent]:
    """The events of a DSJSON log, one per non-blank line, read lazily (constant memory).

    `source` is a file path or an iterable of lines (an open file, a list of strings). A line
    that is not a valid event raises ValueError("line N: ...", with the path when known).
    """
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            yield from _read(f, f"{os.fspath(source)}, ")
    else:
        yield from _read(source, "")


def _read(lines: Iterable[str], where: str) -> Iterator[LoggedEvent]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                event = _event(line)
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
