"""`rules:<journey>`: a scripted customer journey — ordered if-context-then-action rules with a fallback.

The journey is JSON or TOML::

    {"epsilon": 0.05,
     "rules": [{"if": {"user.segment": "student", "user.visits": {">=": 3}}, "then": ["push-tip", "app-banner"]},
               {"if": {"user": {"has": "sports"}}, "then": ["channel:push"]}],
     "fallback": ["email-offer"]}

or the same in TOML (keys with dots must be quoted)::

    epsilon = 0.05
    fallback = ["email-offer"]

    [[rules]]
    if = { "user.segment" = "student", "user.visits" = { ">=" = 3 } }
    then = ["push-tip", "app-banner"]

`<journey>` is inline JSON when it starts with `{`; otherwise inline TOML when
it parses as TOML; otherwise the path of a `.json` or `.toml` file (at most
1 MiB), read when the policy is created. The saved policy holds the journey
itself, so a published model keeps behaving the same when the file changes.
Any readable file may be named until `restrict_rules_files` confines them to
one directory (relative paths then start there) or forbids them: a server
does, since its specs come from requests (`nextbest serve --rules-dir DIR`).

- `rules` (required, non-empty): tried in order. A rule applies when every
  condition of its `if` holds (an empty or absent `if` always holds) and one
  of its `then` targets is among the candidates.
- `then` and `fallback`: targets in order of preference, a string or a list.
  A target is an action id, `channel:<channel>` (the first candidate on that
  channel) or `id:<action id>` (for ids that start with `channel:` or `id:`).
- Conditions, keyed `namespace.feature` on the request's context (the
  namespace ends at the first dot):
  `"ns.f": "v"` — categorical feature f equals v; `"ns.f": 3` — numeric f equals 3;
  `"ns.f": {"<": 3, ">=": 1}` — comparisons `<`, `<=`, `>`, `>=`, `==`, `!=`
  (all must hold; `==`/`!=` also take a string for a categorical feature);
  `"ns.f": {"in": ["a", "b"]}` — one of these values (all strings or all numbers);
  `"ns": {"has": "token"}` or `{"has": ["a", "b"]}` — the namespace's tokens
  include all of them. A condition on a feature the request lacks is false
  (also for `!=`).
- The chosen action is the first available target of the first rule that
  applies, else the first available target of `fallback`, else the first
  candidate. pmf: 1 − ε on it and ε spread evenly over all candidates;
  `epsilon` is in [0, 1], 0 by default.
- Unknown keys are refused, so are rules files whose content is invalid;
  messages locate the problem and never quote a file's content.

The journey does not learn (`learn` is a no-op).
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nextbest.policies.base import LearnEvent, Policy, PolicySpecError
from nextbest.policies.featurize import Example, FeaturesLike
from nextbest.policies.registry import register

_MAX_FILE_BYTES = 1 << 20

_restricted = False  # whether journey files are confined to _files_dir (None: none may be read)
_files_dir: str | None = None
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


class _Invalid(Exception):
    """A problem in a journey; `where` locates it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class _Condition:
    namespace: str
    feature: str  # empty for `has`
    op: str
    operand: Any  # a number, a string, or a frozenset for `in` and `has`

    def holds(self, context: Mapping[str, FeaturesLike]) -> bool:
        if self.namespace not in context:  # never index a protobuf map with a missing key: that inserts it
            return False
        features = context[self.namespace]
        if self.op == "has":
            return self.operand <= set(features.tokens)
        categorical = isinstance(self.operand, str) or (
            isinstance(self.operand, frozenset) and all(isinstance(v, str) for v in self.operand)
        )
        values = features.categorical if categorical else features.numeric
        if self.feature not in values:
            return False
        value = values[self.feature]
        return value in self.operand if self.op == "in" else _COMPARISONS[self.op](value, self.operand)


@dataclass(frozen=True)
class _Target:
    channel: bool  # True: `channel:<name>`, False: an action id
    name: str

    def find(self, example: Example) -> int | None:
        for i, action in enumerate(example.actions):
            if (action.channel if self.channel else action.id) == self.name:
                return i
        return None


@dataclass(frozen=True)
class _Rule:
    conditions: tuple[_Condition, ...]
    targets: tuple[_Target, ...]


@dataclass(frozen=True)
class _Journey:
    epsilon: float
    rules: tuple[_Rule, ...]
    fallback: tuple[_Target, ...]

    def choose(self, example: Example) -> int:
        for rule in self.rules:
            if all(c.holds(example.context) for c in rule.conditions):
                chosen = _first_available(rule.targets, example)
                if chosen is not None:
                    return chosen
        chosen = _first_available(self.fallback, example)
        return 0 if chosen is None else chosen


def _first_available(targets: Sequence[_Target], example: Example) -> int | None:
    for target in targets:
        i = target.find(example)
        if i is not None:
            return i
    return None


class _Compiler:
    """Checks a parsed journey and builds it; `echo` says whether messages may quote it."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo

    def show(self, value: object) -> str:
        return repr(value) if self.echo else "(not shown: from a file)"

    def journey(self, raw: object) -> _Journey:
        if not isinstance(raw, dict):
            raise _Invalid("", "the journey must be an object with `rules` (and optionally `fallback`, `epsilon`)")
        unknown = [k for k in raw if k not in ("rules", "fallback", "epsilon")]
        if unknown:
            raise _Invalid("", f"unknown key {self.show(unknown[0])}; known: rules, fallback, epsilon")
        epsilon = raw.get("epsilon", 0.0)
        if not (_is_number(epsilon) and 0 <= epsilon <= 1):
            raise _Invalid("epsilon", f"must be a number in [0, 1], got {self.show(epsilon)}")
        rules = raw.get("rules")
        if not isinstance(rules, list) or not rules:
            raise _Invalid("rules", "must be a non-empty list of rules")
        fallback = self.targets("fallback", raw["fallback"]) if "fallback" in raw else ()
        return _Journey(float(epsilon), tuple(self.rule(f"rules[{i}]", r) for i, r in enumerate(rules)), fallback)

    def rule(self, where: str, raw: object) -> _Rule:
        if not isinstance(raw, dict):
            raise _Invalid(where, "must be an object with `then` and optionally `if`")
        unknown = [k for k in raw if k not in ("if", "then")]
        if unknown:
            raise _Invalid(where, f"unknown key {self.show(unknown[0])}; known: if, then")
        if "then" not in raw:
            raise _Invalid(where, "has no `then`")
        conditions = raw.get("if", {})
        if not isinstance(conditions, dict):
            raise _Invalid(f"{where}.if", "must be an object of conditions")
        built: list[_Condition] = []
        for i, (key, value) in enumerate(conditions.items()):
            built += self.condition(f"{where}.if[{self.show(key) if self.echo else i}]", key, value)
        return _Rule(tuple(built), self.targets(f"{where}.then", raw["then"]))

    def condition(self, where: str, key: str, raw: object) -> list[_Condition]:
        namespace, dot, feature = key.partition(".")
        if not namespace or (dot and not feature):
            raise _Invalid(where, "a condition's key must be `namespace.feature`, or `namespace` for `has`")
        if not dot:
            if not (isinstance(raw, dict) and list(raw) == ["has"]):
                raise _Invalid(where, 'a condition on a namespace must be {"has": token or [tokens]}')
            return [_Condition(namespace, "", "has", self.strings(where, raw["has"]))]
        if isinstance(raw, str) or _is_number(raw):
            return [_Condition(namespace, feature, "==", raw)]
        if not isinstance(raw, dict) or not raw:
            raise _Invalid(where, "must be a string, a number or an object of operators")
        out = []
        for op, operand in raw.items():
            if op == "in":
                out.append(_Condition(namespace, feature, op, self.values(where, operand)))
            elif (op in ("==", "!=") and isinstance(operand, str)) or (op in _COMPARISONS and _is_number(operand)):
                out.append(_Condition(namespace, feature, op, operand))
            elif op in _COMPARISONS:
                kind = "a number or a string" if op in ("==", "!=") else "a number"
                raise _Invalid(where, f"{op} needs {kind}, got {self.show(operand)}")
            else:
                raise _Invalid(
                    where, f"unknown operator {self.show(op)}; use <, <=, >, >=, ==, !=, in (or has on a namespace)"
                )
        return out

    def strings(self, where: str, raw: object) -> frozenset[str]:
        items = [raw] if isinstance(raw, str) else raw
        if not (isinstance(items, list) and items and all(isinstance(t, str) and t for t in items)):
            raise _Invalid(where, "`has` needs a token or a non-empty list of tokens")
        return frozenset(items)

    def values(self, where: str, raw: object) -> frozenset[str | float]:
        ok = isinstance(raw, list) and raw and (all(isinstance(v, str) for v in raw) or all(_is_number(v) for v in raw))
        if not ok:
            raise _Invalid(where, "`in` needs a non-empty list of strings or of numbers")
        return frozenset(raw)

    def targets(self, where: str, raw: object) -> tuple[_Target, ...]:
        items = [raw] if isinstance(raw, str) else raw
        if not (isinstance(items, list) and items and all(isinstance(t, str) and t for t in items)):
            raise _Invalid(where, "must be an action id, `channel:<channel>`, or a non-empty list of them")
        out = []
        for t in items:
            kind, colon, name = t.partition(":")
            if colon and kind in ("channel", "id"):
                if not name:
                    raise _Invalid(where, f"`{kind}:` needs a name after the colon")
                out.append(_Target(kind == "channel", name))
            else:
                out.append(_Target(False, t))
        return tuple(out)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _parse(params: str) -> tuple[object, bool, str]:
    """The parsed journey, whether it came inline, and how to name its source in messages."""
    if not params:
        raise PolicySpecError("rules: needs a journey (inline JSON or TOML) or the path of a .json or .toml file")
    if params.startswith("{"):
        try:
            return json.loads(params), True, "rules"
        except json.JSONDecodeError as e:
            raise PolicySpecError(f"rules: invalid JSON: {e}") from e
    try:
        return tomllib.loads(params), True, "rules"
    except tomllib.TOMLDecodeError as e:
        if os.path.splitext(params)[1].lower() not in (".json", ".toml"):
            raise PolicySpecError(
                f"rules: the journey is not inline JSON (it does not start with {{), not TOML ({e}), "
                "nor the path of a .json or .toml file"
            ) from None
    return _read_file(_allowed_path(params)), False, f"rules (file {params})"


def restrict_rules_files(directory: str | os.PathLike[str] | None) -> Callable[[], None]:
    """From now on read journey files only inside `directory` (None: read none); returns a function that
    restores the previous setting. Symbolic links are resolved before the check."""
    global _restricted, _files_dir
    previous = (_restricted, _files_dir)
    _restricted, _files_dir = True, None if directory is None else os.path.realpath(directory)

    def restore() -> None:
        global _restricted, _files_dir
        _restricted, _files_dir = previous

    return restore


def _allowed_path(path: str) -> str:
    if not _restricted:
        return path
    if _files_dir is None:
        raise PolicySpecError(
            "rules: this server reads no journey files (start it with --rules-dir DIR); send the journey inline"
        )
    full = os.path.realpath(os.path.join(_files_dir, path))
    if os.path.commonpath([full, _files_dir]) != _files_dir:
        raise PolicySpecError(f"rules: {path!r} is outside the server's rules directory")
    return full


def _read_file(path: str) -> object:
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise PolicySpecError(f"rules: no file {path!r}")
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as e:
        raise PolicySpecError(f"rules: cannot read {path!r}: {e.strerror}") from e
    if len(data) > _MAX_FILE_BYTES:
        raise PolicySpecError(f"rules: {path!r} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        return json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise PolicySpecError(f"rules: {path!r} is not UTF-8 text (byte {e.start})") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        # these messages give a position, never the text
        raise PolicySpecError(f"rules: {path!r} is not valid {suffix[1:].upper()}: {e}") from None


@register("rules")
class RulesPolicy(Policy):
    """A scripted journey: the action of the first rule whose conditions hold (see the module doc)."""

    contract_specs = (
        'rules:{"epsilon": 0.1, "rules": [{"if": {"user.segment": "s0"}, "then": ["a1"]},'
        ' {"if": {"user.visits": {">=": 4}}, "then": ["nowhere", "channel:sms"]}], "fallback": ["a3"]}',
        'rules:fallback = "a2"\n[[rules]]\nif = { user = { has = "sports" } }\nthen = ["id:a0"]',
    )
    learns = False

    def __init__(self, spec: str, raw: object, journey: _Journey) -> None:
        super().__init__(spec)
        self._raw = raw
        self._journey = journey
        self.explores = journey.epsilon > 0

    @classmethod
    def _create(cls, spec: str, params: str) -> RulesPolicy:
        raw, inline, source = _parse(params)
        try:
            return cls(spec, raw, _Compiler(echo=inline).journey(raw))
        except _Invalid as e:
            raise PolicySpecError(f"{source}: {e}") from None

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> RulesPolicy:
        try:
            raw = json.loads(data)
            return cls(spec, raw, _Compiler(echo=False).journey(raw))
        except (UnicodeDecodeError, json.JSONDecodeError, _Invalid) as e:
            raise ValueError(f"not a saved rules policy: {e}") from None

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        n = len(example)
        p = np.full(n, self._journey.epsilon / n)
        p[self._journey.choose(example)] += 1.0 - self._journey.epsilon
        return p

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        pass

    def _save(self) -> bytes:
        return json.dumps(self._raw, separators=(",", ":")).encode()
