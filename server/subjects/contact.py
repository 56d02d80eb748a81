"""The store's contact policy: rules that forbid contacting a subject, checked against its history at Rank.

A spec is JSON (TOML accepted) `{"rules": [...]}`; each rule has a unique `name`, optional `channels` and
`actions` (the contacts it counts and the candidates it may remove; none named: all), and the fields of one kind:

    cap      max, per_seconds                      at most `max` contacts in any `per_seconds`
    gap      min_gap_seconds                       no contact within `min_gap_seconds` of the last one
    quiet    quiet_hours, utc_offset_feature       no contact in the subject's local hours [start, end) (or a list
                                                   of such ranges); the UTC offset in hours is the context feature
                                                   `namespace.feature` (without it the rule is skipped)
    fatigue  after_ignored, pause_seconds          after `after_ignored` ignored contacts in a row, none for
                                                   `pause_seconds` from the last one's outcome
    bought   after_reward_at_least, pause_seconds  after a reward of at least this much, none for `pause_seconds`

A rule counts the contacts of its channels and actions together. Actions without a channel are never removed.
"""

from __future__ import annotations

import json
import math
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from nextbest.policies.cache import BoundedCache
from nextbest.policies.featurize import ACTION_CACHE_SIZE, Namespace
from nextbest.server.config import MAX_REWARD_WAIT_SECONDS
from nextbest.server.errors import InvalidArgument
from nextbest.server.store import SubjectStore
from nextbest.server.subjects.history import DAY, MIN_HORIZON_SECONDS, Candidate, Contact
from nextbest.v1 import admin_pb2, types_pb2

MAX_RULES = 100
MAX_SPEC_CHARACTERS = 1 << 16
MAX_NAME_CHARACTERS = 256
_REFRESH_SECONDS = 1.0  # how soon a process sees a policy another process stored
_COMMON = {"name", "channels", "actions"}
_KINDS: dict[str, frozenset[str]] = {
    "cap": frozenset({"max", "per_seconds"}),
    "gap": frozenset({"min_gap_seconds"}),
    "quiet": frozenset({"quiet_hours", "utc_offset_feature"}),
    "fatigue": frozenset({"after_ignored", "pause_seconds"}),
    "bought": frozenset({"after_reward_at_least", "pause_seconds"}),
}
_KIND_FIELDS = frozenset().union(*_KINDS.values())
_KIND_LIST = "; ".join(" + ".join(sorted(fields)) for fields in _KINDS.values())


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    channels: frozenset[str]
    actions: frozenset[str]
    max: int = 0
    seconds: float = 0.0  # per_seconds, min_gap_seconds or pause_seconds
    threshold: float = 0.0  # after_ignored or after_reward_at_least
    quiet_hours: tuple[tuple[float, float], ...] = ()
    offset_feature: tuple[str, str] = ("", "")

    @property
    def window(self) -> float:
        """How long after a contact the rule may still need it (fatigue and bought: the pause runs from its outcome,
        at most the longest reward window later)."""
        return self.seconds + (MAX_REWARD_WAIT_SECONDS if self.kind in ("fatigue", "bought") else 0.0)

    def covers(self, action_id: str, channel: str) -> bool:
        return (not self.channels or channel in self.channels) and (not self.actions or action_id in self.actions)

    def forbids(
        self,
        history: Sequence[Contact],
        channels: Mapping[str, Sequence[Contact]],
        context: Mapping[str, Namespace],
        now: float,
    ) -> bool | None:
        """Whether the rule forbids its candidates now, given the subject's contacts (oldest first) and those of each
        channel (`history.by_channel`); None when it is skipped (no UTC offset for quiet hours)."""
        if self.kind == "quiet":
            return self._quiet(context, now)
        if self.kind == "bought":
            return self._bought(history, channels, now)
        scope = self._scope(history, channels)
        if self.kind == "cap":
            return sum(now - c.timestamp < self.seconds for c in scope) >= self.max
        if self.kind == "gap":
            return any(now - c.timestamp < self.seconds for c in scope)
        return self._fatigued(scope, now)

    def _bought(self, history: Sequence[Contact], channels: Mapping[str, Sequence[Contact]], now: float) -> bool:
        """Whether a contact the rule counts brought a reward of at least the threshold, joined less than the pause
        ago. A rule naming actions checks a contact's reward before its action id (rewards are few, and a read of
        the id costs more than its scope's list would save)."""
        threshold, seconds, actions = self.threshold, self.seconds, self.actions
        return any(
            c.reward >= threshold
            and c.joined
            and now - c.joined_at < seconds
            and (not actions or self.covers(c.action_id, c.channel))
            for c in (history if actions else self._scope(history, channels))
        )

    def _scope(self, history: Sequence[Contact], by_channel: Mapping[str, Sequence[Contact]]) -> Sequence[Contact]:
        """The contacts the rule counts (`covers`, with the common one-sided rules checked inline: Rank screens
        every candidate of every decision), in the history's order."""
        channels, actions = self.channels, self.actions
        if not actions:
            if len(channels) == 1:
                (channel,) = channels
                return by_channel.get(channel, ())
            return [c for c in history if c.channel in channels] if channels else history
        if not channels:
            return [c for c in history if c.action_id in actions]
        return [c for c in history if self.covers(c.action_id, c.channel)]

    def _quiet(self, context: Mapping[str, Namespace], now: float) -> bool | None:
        namespace, feature = self.offset_feature
        features = context.get(namespace)
        offset = features.numeric.get(feature) if features is not None else None
        if offset is None:
            return None
        hour = (now / 3600.0 + offset) % 24.0
        return any(_in_hours(hour, start, end) for start, end in self.quiet_hours)

    def _fatigued(self, scope: Sequence[Contact], now: float) -> bool:
        """Whether the ignored run (joined contacts without a click, counted back from the newest in the history's
        order, as the `channel_ignored_run` feature counts it) is long and recent enough."""
        run, last = 0, float("-inf")
        for c in reversed(scope):  # newest first: a history is kept in order of time
            if not c.joined:
                continue
            if c.clicked:
                break
            run += 1
            last = max(last, c.joined_at)
        return run >= self.threshold and now - last < self.seconds


def _in_hours(hour: float, start: float, end: float) -> bool:
    return start <= hour < end if start < end else hour >= start or hour < end


@dataclass(frozen=True)
class ContactPolicy:
    """The store's rules, in order, and the version they were stored as."""

    rules: tuple[Rule, ...] = ()
    version: int = 0
    # the rules that cover the candidates of an (action id some rule names, or "", channel): they repeat from request
    # to request
    _covering: BoundedCache[tuple[str, str], tuple[Rule, ...]] = field(
        default_factory=lambda: BoundedCache(ACTION_CACHE_SIZE), compare=False, repr=False
    )

    @cached_property  # asked for every contact recorded
    def horizon(self) -> float:
        """How long contacts are kept: the longest rule window, at least MIN_HORIZON_SECONDS."""
        return max([MIN_HORIZON_SECONDS, *(r.window for r in self.rules)])

    def expiry(self, config: types_pb2.LoopConfig, timestamp: float) -> float:
        """When a contact made at `timestamp` in a loop of `config` leaves the history: after the horizon, or
        after the loop's retention when shorter."""
        keep = self.horizon
        if config.retention_days > 0:
            keep = min(keep, config.retention_days * DAY)
        return timestamp + keep

    @cached_property
    def _named_actions(self) -> frozenset[str]:
        """The action ids some rule names: the rules covering any other action depend on its channel alone."""
        return frozenset().union(*(r.actions for r in self.rules))

    def screen(
        self,
        history: Sequence[Contact],
        channels: Mapping[str, Sequence[Contact]],
        candidates: Sequence[Candidate],
        context: Mapping[str, Namespace],
        now: float,
    ) -> tuple[list[Candidate], list[types_pb2.SuppressedAction], list[str]]:
        """The candidates no rule forbids given the subject's contacts (oldest first, and by channel:
        `history.by_channel`), those removed (with the first rule that forbids each), and the rules skipped; only
        rules that cover a candidate are checked, each once, and each key of `_covering` (an action id some rule
        names, or "", and a channel) once: candidates share channels."""
        verdicts: dict[str, bool | None] = {}
        forbidding: dict[tuple[str, str], str | None] = {}  # the first rule that forbids, by key
        allowed: list[Candidate] = []
        suppressed: list[types_pb2.SuppressedAction] = []
        named, covering = self._named_actions, self._covering
        for candidate in candidates:
            _, action_id, channel = candidate
            if not channel:  # no contact
                allowed.append(candidate)
                continue
            key = (action_id if action_id in named else "", channel)
            rule = forbidding.get(key, _UNSEEN)
            if rule is _UNSEEN:
                rules = covering.get(key)
                if rules is None:
                    rules = tuple(r for r in self.rules if r.covers(*key))
                    covering.put(key, rules)
                rule = None
                for r in rules:  # the first that forbids, each rule's verdict found once
                    name = r.name
                    if name in verdicts:
                        verdict = verdicts[name]
                    else:
                        verdict = verdicts[name] = r.forbids(history, channels, context, now)
                    if verdict:
                        rule = name
                        break
                forbidding[key] = rule
            if rule is None:
                allowed.append(candidate)
            else:
                suppressed.append(types_pb2.SuppressedAction(action_id=action_id, rule=rule))
        return allowed, suppressed, [name for name, verdict in verdicts.items() if verdict is None]


_UNSEEN = ""  # never a rule's name: a key not looked at yet


def _where(i: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    return f"rules[{i}] ({name!r})" if isinstance(name, str) and name else f"rules[{i}]"


def _number(raw: Mapping[str, Any], key: str, where: str, *, integer: bool = False, positive: bool = True) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{where}.{key}: must be a finite number, got {value!r}")
    if integer and value != int(value):
        raise InvalidArgument(f"{where}.{key}: must be a whole number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise InvalidArgument(f"{where}.{key}: must be {'above' if positive else 'at least'} 0, got {value!r}")
    return value


def _names(raw: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"{where}.{key}: must be a list of non-empty strings")
    return frozenset(value)


def _quiet_hours(raw: Mapping[str, Any], where: str) -> tuple[tuple[float, float], ...]:
    value = raw["quiet_hours"]
    ranges = [value] if isinstance(value, list) and value and not isinstance(value[0], list) else value
    if not isinstance(ranges, list) or not ranges:
        raise InvalidArgument(f"{where}.quiet_hours: must be [start, end] or a list of them (hours 0 to 24)")
    out: list[tuple[float, float]] = []
    for r in ranges:
        ok = (
            isinstance(r, list)
            and len(r) == 2
            and all(isinstance(h, int | float) and not isinstance(h, bool) for h in r)
        )
        if not ok or not all(0 <= h <= 24 for h in r) or r[0] % 24 == r[1] % 24:
            raise InvalidArgument(
                f"{where}.quiet_hours: {r!r} is not a range [start, end] of hours 0 to 24, start != end"
            )
        out.append((r[0] % 24, r[1] % 24))
    for i, (start, end) in enumerate(out):
        for other in out[:i]:
            if _overlap((start, end), other):
                raise InvalidArgument(f"{where}.quiet_hours: {[start, end]} overlaps {list(other)}")
    return tuple(out)


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two ranges of hours (each may wrap past midnight) share an hour."""

    def pieces(r: tuple[float, float]) -> list[tuple[float, float]]:
        return [r] if r[0] < r[1] else [(r[0], 24.0), (0.0, r[1])]

    return any(s1 < e2 and s2 < e1 for s1, e1 in pieces(a) for s2, e2 in pieces(b))


def _offset_feature(raw: Mapping[str, Any], where: str) -> tuple[str, str]:
    value = raw["utc_offset_feature"]
    namespace, dot, feature = value.partition(".") if isinstance(value, str) else ("", "", "")
    if not (dot and namespace and feature):
        raise InvalidArgument(f"{where}.utc_offset_feature: must name a context feature as 'namespace.feature'")
    return namespace, feature


def _rule(i: int, raw: Any, seen: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"rules[{i}]: must be an object")
    where = _where(i, raw)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{where}.name: every rule needs a name")
    if len(name) > MAX_NAME_CHARACTERS or "\x00" in name:
        raise InvalidArgument(f"{where}.name: at most {MAX_NAME_CHARACTERS} characters, no NUL")
    if name in seen:
        raise InvalidArgument(f"{where}.name: duplicate rule name {name!r}")
    unknown = sorted(set(raw) - _COMMON - _KIND_FIELDS)
    if unknown:
        raise InvalidArgument(f"{where}.{unknown[0]}: unknown field")
    given = set(raw) & _KIND_FIELDS
    kinds = [kind for kind, fields in _KINDS.items() if given == fields]
    if not kinds:
        raise InvalidArgument(
            f"{where}: unknown rule kind with fields {sorted(given)}; a rule has one of: {_KIND_LIST}"
        )
    kind = kinds[0]
    rule = Rule(name, kind, _names(raw, "channels", where), _names(raw, "actions", where))
    if kind == "cap":
        return _replace(rule, max=int(_number(raw, "max", where, integer=True, positive=False)),
                        seconds=_number(raw, "per_seconds", where))  # fmt: skip
    if kind == "gap":
        return _replace(rule, seconds=_number(raw, "min_gap_seconds", where))
    if kind == "quiet":
        return _replace(rule, quiet_hours=_quiet_hours(raw, where), offset_feature=_offset_feature(raw, where))
    threshold_key = "after_ignored" if kind == "fatigue" else "after_reward_at_least"
    threshold = _number(raw, threshold_key, where, integer=kind == "fatigue", positive=kind == "fatigue")
    return _replace(rule, threshold=threshold, seconds=_number(raw, "pause_seconds", where))


def _replace(rule: Rule, **changes: Any) -> Rule:
    return Rule(**{**rule.__dict__, **changes})


def _document(spec: str) -> Any:
    if len(spec) > MAX_SPEC_CHARACTERS:
        raise InvalidArgument(f"spec: longer than {MAX_SPEC_CHARACTERS} characters")
    try:
        return json.loads(spec)
    except (json.JSONDecodeError, RecursionError) as json_error:
        try:
            return tomllib.loads(spec)
        except (tomllib.TOMLDecodeError, RecursionError):
            raise InvalidArgument(f"spec: neither JSON ({json_error}) nor TOML") from None


def parse(spec: str, version: int = 0) -> tuple[ContactPolicy, str]:
    """The policy of a spec and its canonical JSON; InvalidArgument naming the rule and field of a problem."""
    if not spec.strip():
        return ContactPolicy((), version), ""
    document = _document(spec)
    if not isinstance(document, dict) or set(document) - {"rules"}:
        raise InvalidArgument('spec: must be an object with one field, "rules"')
    raws = document.get("rules", [])
    if not isinstance(raws, list):
        raise InvalidArgument("spec.rules: must be a list of rules")
    if len(raws) > MAX_RULES:
        raise InvalidArgument(f"spec.rules: {len(raws)} rules, more than {MAX_RULES}")
    seen: set[str] = set()
    rules = []
    for i, raw in enumerate(raws):
        rules.append(_rule(i, raw, seen))
        seen.add(rules[-1].name)
    return ContactPolicy(tuple(rules), version), json.dumps({"rules": raws}, sort_keys=True, separators=(",", ":"))


class PolicyCache:
    """The store's contact policy as this process knows it: read again at most every second (a change made in
    this process is seen at once)."""

    def __init__(self, store: SubjectStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._policy = ContactPolicy()
        self._read_at = float("-inf")

    def current(self) -> ContactPolicy:
        if self._clock() - self._read_at >= _REFRESH_SECONDS:
            self.load(self._store.get_policy())
        return self._policy

    def load(self, data: bytes | None) -> admin_pb2.ContactPolicy:
        """Take the stored policy `data` (None: none stored) and return it."""
        stored = admin_pb2.ContactPolicy.FromString(data) if data else admin_pb2.ContactPolicy()
        with self._lock:
            self._read_at = self._clock()
            if stored.version != self._policy.version:
                self._policy = parse(stored.spec, stored.version)[0]
        return stored

    def set(self, spec: str) -> admin_pb2.ContactPolicy:
        """Validate `spec` and store it as the next version."""
        canonical = parse(spec)[1]

        def change(current: bytes | None) -> bytes:
            version = admin_pb2.ContactPolicy.FromString(current).version if current else 0
            return admin_pb2.ContactPolicy(spec=canonical, version=version + 1).SerializeToString()

        return self.load(self._store.update_policy(change))
