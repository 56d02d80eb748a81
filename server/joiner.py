"""The joiner: a left outer join of decisions with their rewards, by event id.

A decision's window is [t - wait, t + wait] around its timestamp t, where
`wait` is the reward_wait_seconds of the config logged with it: rewards (and
activations) stamped inside it count, so rewards that arrive before their
decision are joined too. When the window has closed (plus a small grace for
writes still committing), the rewards are aggregated as configured, or the
default reward is used, and the joined event is appended to the JOINED stream
in decision order, keyed by event id.

A multi-slot decision is joined per slot: a reward with a slot id counts for
that slot, one without for every slot, each slot's are aggregated (or
defaulted) alone, and the joined event's reward is the sum over its slots. A
reward (or activation) for a slot the decision does not have is counted as an
orphan. An activation of a slot activates that slot, one without a slot id
every slot.

Which rewards join is decided by timestamps alone, so replaying the log after
a crash joins the same way; appends are idempotent, so a replay never
duplicates. The joiner's position and counters are saved in its cursor.
Every reward read ends up joined, or counted: late (its decision's window had
closed, or its join had happened, when it was committed) or orphan (no
decision came within its window, or more than `max_unmatched` rewards were
waiting for a decision and it was the oldest).

Memory is bounded whatever the window and the rate. Decisions are read in seq
order, and windows close in about that order, so only the next `max_held`
open decisions are held (seq, event id and window: the record stays in the
store and its bytes are read again when the window closes); the others wait
in the decisions stream. A reward whose decision is not held is looked up
there (by event id) while decisions wait unread. The rewards of an open
decision are folded into a count, a sum, a minimum, a maximum and a first
value; at most `max_held` folds stay in memory, and the oldest beyond them
are spilled to the store (a cursor per event id, deleted when the decision
is joined), saved with the seq of the last reward folded in, so that a
restart, which reads the rewards again from the oldest one not yet durable,
folds none twice. A reward without a decision is held as its seq, time, kind
and value until its own window has passed; at most `max_unmatched` wait.
Rewards done with after the oldest one held (dropped as late or orphan,
consumed by a join, or folded into a spilled fold) are remembered as seq
ranges until the saved position passes them, so that a restart reads none of
them again; remembered together, the ranges are no more than the rewards
still held between them: the unmatched ones and the seqs of the folds in
memory (at most `max_held` of them: the oldest folds beyond are spilled).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import logging
import math
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import ClassVar, NamedTuple

from nextbest.server import wire
from nextbest.server.config import Aggregation, Mode
from nextbest.server.store import Entry, EventLog, Stream, cursor_name
from nextbest.v1 import records_pb2

log = logging.getLogger("nextbest")

GRACE_SECONDS = 0.05
SAVE_SECONDS = 0.25
# Rewards waiting for a decision not (yet) logged, per loop: beyond it the oldest are dropped as orphans.
MAX_UNMATCHED_REWARDS = 10_000
# Open decisions held (read ahead of their join), and folds of rewards held in memory, per loop: beyond it they stay
# in the store.
MAX_HELD = 50_000
_BATCH = 1000
_KIND = records_pb2.RewardRecord
_OVER_CAP_WARNING_SECONDS = 60.0


@dataclass
class JoinerState:
    """What the joiner saves: where to resume and what it has counted."""

    decisions_closed: int = 0  # every decision with seq <= this is joined
    rewards_from: int = 0  # rewards with seq > this may still be needed...
    # ...except these [first, last] ranges: dropped, or consumed by a join, or folded into a spilled fold
    rewards_dropped: list[list[int]] = field(default_factory=list)
    rewards_counted: int = 0  # rewards with seq <= this are counted in rewards/activations
    folds_spilled: int = 0  # at least as many folds as are in the store (saved before they are written)
    rewards: int = 0
    activations: int = 0
    joined: int = 0
    defaulted: int = 0
    orphans: int = 0
    late: int = 0
    reward_sum: float = 0.0
    apprentice_joined: int = 0
    apprentice_matches: int = 0

    @classmethod
    def saved(cls, log: EventLog, loop: str) -> JoinerState:
        """The state the loop's joiner last saved (a fresh one when none)."""
        raw = log.get_cursor(_cursor(loop))
        return cls(**json.loads(raw)) if raw else cls()


def _cursor(loop: str) -> str:
    return cursor_name(loop, "joiner")


def _fold_cursor(loop: str, event_id: str) -> str:
    return cursor_name(loop, "joiner-fold/" + event_id)


class HeldReward(NamedTuple):
    """What the joiner keeps of a reward record until it is joined or dropped."""

    seq: int
    timestamp: float
    kind: int
    value: float
    slot_id: str = ""


class Window(NamedTuple):
    """What joining a decision needs of it: its reward window, how rewards combine and its slots (multi-slot)."""

    timestamp: float
    wait: float
    aggregation: int
    default_reward: float
    slots: tuple[str, ...] = ()

    @classmethod
    def of(cls, decision: records_pb2.DecisionRecord) -> Window:
        c = decision.config
        slots = tuple(slot.id for slot in decision.slots)
        return cls(decision.timestamp, c.reward_wait_seconds, c.reward_aggregation, c.default_reward, slots)

    def contains(self, timestamp: float) -> bool:
        return self.timestamp - self.wait <= timestamp <= self.timestamp + self.wait

    @property
    def closes_at(self) -> float:
        """When the window has closed and the writes still committing into it are done."""
        return self.timestamp + self.wait + GRACE_SECONDS


class _Fold:
    """A decision's rewards folded in the order they were read: all that joining needs of them, in constant space
    however many arrive (per slot for a multi-slot decision: a reward for the whole event counts in every slot)."""

    __slots__ = (
        "seqs",
        "last_seq",
        "stored",
        "count",
        "first",
        "total",
        "low",
        "high",
        "activated",
        "late",
        "unknown",
        "slots",
    )

    _FORMAT: ClassVar = struct.Struct(">qqddddBq")
    _SLOTS: ClassVar = struct.Struct(">qH")  # unknown, the number of slot folds (each: id length, id, _VALUES)
    _VALUES: ClassVar = struct.Struct(">qddddB")

    def __init__(self) -> None:
        self.seqs: list[int] = []  # the rewards folded in since the last spill: a restart reads them again
        self.last_seq = 0  # the newest reward folded in: one read again after a restart is not folded twice
        self.stored = False  # a copy is in the store
        self.count = 0  # rewards inside the window
        self.first = self.total = 0.0
        self.low, self.high = math.inf, -math.inf
        self.activated = False
        self.late = 0  # rewards and activations outside the window
        self.unknown = 0  # rewards for a slot the decision does not have
        self.slots: dict[str, _Fold] = {}  # a multi-slot decision's rewards, by slot id

    def encode(self) -> bytes:
        raw = self._FORMAT.pack(
            self.last_seq, self.count, self.first, self.total, self.low, self.high, self.activated, self.late
        )
        if not self.slots and not self.unknown:
            return raw
        parts = [raw, self._SLOTS.pack(self.unknown, len(self.slots))]
        for slot_id, fold in self.slots.items():
            key = slot_id.encode()
            parts += [struct.pack(">H", len(key)), key, fold._VALUES.pack(*fold._values())]
        return b"".join(parts)

    def _values(self) -> tuple[int, float, float, float, float, bool]:
        return self.count, self.first, self.total, self.low, self.high, self.activated

    @classmethod
    def decode(cls, raw: bytes) -> _Fold:
        fold = cls()
        fold.last_seq, fold.count, fold.first, fold.total, fold.low, fold.high, activated, fold.late = (
            cls._FORMAT.unpack_from(raw)
        )
        fold.activated, fold.stored = bool(activated), True
        at = cls._FORMAT.size
        if at < len(raw):
            fold.unknown, n = cls._SLOTS.unpack_from(raw, at)
            at += cls._SLOTS.size
            for _ in range(n):
                (length,) = struct.unpack_from(">H", raw, at)
                slot_id = raw[at + 2 : at + 2 + length].decode()
                at += 2 + length
                slot = fold.slots[slot_id] = cls()
                slot.count, slot.first, slot.total, slot.low, slot.high, activated = cls._VALUES.unpack_from(raw, at)
                slot.activated = bool(activated)
                at += cls._VALUES.size
        return fold

    def add(self, window: Window, reward: HeldReward | records_pb2.RewardRecord) -> None:
        slot_id = reward.slot_id
        if not window.contains(reward.timestamp):
            self.late += 1
        elif slot_id and slot_id not in window.slots:
            self.unknown += 1
        elif reward.kind == _KIND.KIND_ACTIVATION:
            (self._slot(slot_id) if slot_id else self).activated = True
        elif reward.kind == _KIND.KIND_REWARD:
            if not window.slots:
                self._value(reward.value)
            elif not slot_id:  # the whole event's: every slot's
                for slot in window.slots:
                    self._slot(slot)._value(reward.value)
            else:
                self._slot(slot_id)._value(reward.value)

    def _slot(self, slot_id: str) -> _Fold:
        fold = self.slots.get(slot_id)
        if fold is None:
            fold = self.slots[slot_id] = _Fold()
        return fold

    def _value(self, value: float) -> None:
        if not self.count:
            self.first = value
        self.count += 1
        self.total += value
        self.low, self.high = min(self.low, value), max(self.high, value)

    def _reward(self, window: Window) -> float:
        return self._aggregate(window.aggregation) if self.count else window.default_reward

    def joined(self, window: Window, now: float) -> records_pb2.JoinedEvent:
        """The joined event, without its `decision` field: `joined_data` puts the logged decision's bytes there.

        A multi-slot decision's has each slot's outcome; its reward is their sum, its count the rewards joined."""
        if not window.slots:
            joined = records_pb2.JoinedEvent(
                reward_count=self.count, defaulted=not self.count, activated=self.activated, joined_at=now
            )
            joined.reward = self._reward(window)
            return joined
        joined = records_pb2.JoinedEvent(joined_at=now)
        for slot_id in window.slots:
            fold = self.slots.get(slot_id) or _Fold()
            joined.slots.add(
                slot_id=slot_id,
                reward=fold._reward(window),
                reward_count=fold.count,
                defaulted=not fold.count,
                activated=self.activated or fold.activated,
            )
        joined.reward = sum(slot.reward for slot in joined.slots)
        joined.reward_count = sum(slot.reward_count for slot in joined.slots)
        joined.defaulted = not joined.reward_count
        joined.activated = any(slot.activated for slot in joined.slots)
        return joined

    def _aggregate(self, how: int) -> float:
        if how == Aggregation.REWARD_AGGREGATION_SUM:
            return self.total
        if how == Aggregation.REWARD_AGGREGATION_AVERAGE:
            return self.total / self.count
        if how == Aggregation.REWARD_AGGREGATION_MIN:
            return self.low
        if how == Aggregation.REWARD_AGGREGATION_MAX:
            return self.high
        return self.first  # EARLIEST


def join(
    window: Window, rewards: Iterable[HeldReward | records_pb2.RewardRecord], now: float
) -> records_pb2.JoinedEvent:
    """The joined event of the decision with `window` given every reward record seen for its event id (in arrival
    order), without its `decision` field."""
    fold = _Fold()
    for reward in rewards:
        fold.add(window, reward)
    return fold.joined(window, now)


def _apprentice_match(decision: records_pb2.DecisionRecord) -> bool | None:
    """APPRENTICE: whether the policy's top action was the baseline's (None in other modes, and for the holdout's
    decisions: neither the policy nor the baseline chose those)."""
    if decision.config.learning_mode != Mode.LEARNING_MODE_APPRENTICE or decision.holdout:
        return None
    return decision.policy_top_index == decision.chosen_index


def _seen_through(joined: records_pb2.JoinedEvent) -> float:
    """The last reward seq the join had read (every seq, for an event joined before this was recorded)."""
    return joined.rewards_seq if joined.HasField("rewards_seq") else float("inf")


def joined_data(decision_data: bytes, joined: records_pb2.JoinedEvent) -> bytes:
    """The serialized JoinedEvent of `joined` (from `join`) with the logged decision as is in field 1: the
    decision is neither copied nor serialized again (joining costs half as much)."""
    return wire.field(1, decision_data) + joined.SerializeToString()


class _Open(NamedTuple):
    """A decision whose window is open: its record stays in the store."""

    seq: int
    event_id: str
    window: Window
    apprentice_match: bool | None


class _SeqRanges:
    """A set of seqs as sorted disjoint [first, last] ranges: rewards dropped together are mostly consecutive."""

    def __init__(self, saved: Iterable[int | list[int]]) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        for first, last in sorted([item, item] if isinstance(item, int) else item for item in saved):
            if self._lasts and first <= self._lasts[-1] + 1:  # a seq (as older versions saved them) or a range
                self._lasts[-1] = max(self._lasts[-1], last)
            else:
                self._firsts.append(first)
                self._lasts.append(last)

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self._firsts, seq) - 1
        return i >= 0 and seq <= self._lasts[i]

    def add(self, seq: int) -> None:
        i = bisect.bisect_right(self._firsts, seq) - 1
        if i >= 0 and seq <= self._lasts[i]:
            return
        if i >= 0 and self._lasts[i] == seq - 1:
            self._lasts[i] = seq
        else:
            i += 1
            self._firsts.insert(i, seq)
            self._lasts.insert(i, seq)
        if i + 1 < len(self._firsts) and self._firsts[i + 1] == seq + 1:
            self._lasts[i] = self._lasts.pop(i + 1)
            del self._firsts[i + 1]

    def forget_through(self, seq: int) -> None:
        """Forget every seq <= `seq`."""
        i = bisect.bisect_right(self._lasts, seq)
        del self._firsts[:i], self._lasts[:i]
        if self._firsts and self._firsts[0] <= seq:
            self._firsts[0] = seq + 1

    def __len__(self) -> int:
        return len(self._firsts)

    def ranges(self) -> list[list[int]]:
        return [[first, last] for first, last in zip(self._firsts, self._lasts, strict=True)]


class Joiner:
    """Joins one loop's decisions and rewards; `step()` does the work that is due."""

    def __init__(
        self,
        log: EventLog,
        loop: str,
        clock: Callable[[], float],
        max_unmatched: int = MAX_UNMATCHED_REWARDS,
        max_held: int = MAX_HELD,
    ) -> None:
        self._log = log
        self._loop = loop
        self._clock = clock
        self._max_unmatched = max_unmatched
        self._max_held = max_held
        self.state = JoinerState.saved(log, loop)
        self._open: deque[_Open] = deque()  # the next open decisions, at most max_held
        self._windows: dict[str, Window] = {}  # of the held open decisions, by event id
        self._decisions_read = self.state.decisions_closed
        self._behind = False  # decisions may wait unread in the store
        # Rewards not yet consumed by a closed decision nor dropped, by event id: folded, for open decisions (at most
        # max_held, the others in the store); one by one, oldest first, while they wait for a decision.
        self._folds: OrderedDict[str, _Fold] = OrderedDict()
        self._unmatched: OrderedDict[str, list[HeldReward]] = OrderedDict()
        self._unmatched_count = 0
        self._rewards_read = self.state.rewards_from
        self._done = _SeqRanges(self.state.rewards_dropped)
        self._fold_seqs = 0  # seqs held by the folds in memory
        self._buffered: set[int] = set()  # the seqs of unmatched rewards and the first seq of each fold in memory
        self._buffered_heap: list[int] = []  # the same, lazily cleaned, for the oldest one
        self._last_save = 0.0
        self._dirty = False
        self._warned_over_cap = float("-inf")

    @property
    def pending(self) -> int:
        """Open decisions held (at most `max_held`; more may wait in the store)."""
        return len(self._open)

    @property
    def unmatched_rewards(self) -> int:
        """Rewards held one by one: those waiting for a decision (the rewards of open decisions are folded)."""
        return self._unmatched_count

    @property
    def held(self) -> int:
        """Everything held per event or reward: open decisions, folds and the seqs folded into them, unmatched rewards
        and ranges of the rewards done with."""
        return len(self._open) + len(self._folds) + self._fold_seqs + self._unmatched_count + len(self._done)

    def step(self, reward_wait: float) -> int:
        """Read what is new, close ripe windows (up to a batch), drop expired unmatched rewards; return how many
        joined.

        `reward_wait` (the loop's current setting) bounds how long an
        unmatched reward is kept waiting for its decision.
        """
        changed = self._read()
        now = self._clock()
        closing = list(itertools.islice(self._ripe(now), _BATCH))  # a backlog closes over several steps
        if closing:  # closed only once appended: when the append fails (a full store), the next step retries
            self._close(closing, now)
        changed |= self._drop_expired(now - reward_wait - GRACE_SECONDS)
        self._dirty |= bool(closing) or changed
        if self._dirty and time.monotonic() - self._last_save >= SAVE_SECONDS:
            self.save()
        return len(closing)

    def _ripe(self, now: float) -> Iterable[_Open]:
        for entry in self._open:
            if entry.window.closes_at > now:
                return
            yield entry

    def _close(self, closing: list[_Open], now: float) -> None:
        records = self._log.read(Stream.DECISIONS, self._loop, closing[0].seq - 1, len(closing))
        if [seq for seq, _ in records] != [entry.seq for entry in closing]:
            raise RuntimeError(f"loop {self._loop}: the decisions to join changed in the store")
        joins = []
        for entry, (_, data) in zip(closing, records, strict=True):
            fold = self._folds.get(entry.event_id) or self._load(entry.event_id) or _Fold()
            joined = fold.joined(entry.window, now)
            joined.rewards_seq = self._rewards_read
            joins.append((joined, fold, Entry(entry.event_id, joined_data(data, joined))))
        appended_all = self._log.append(Stream.JOINED, self._loop, [e for *_, e in joins])
        for appended, (joined, fold, _) in zip(appended_all, joins, strict=True):
            entry = self._open.popleft()
            del self._windows[entry.event_id]
            if self._folds.pop(entry.event_id, None) is not None:
                self._forget_seqs(fold)
            if fold.stored:
                self._log.delete_cursor(_fold_cursor(self._loop, entry.event_id))
                self.state.folds_spilled -= 1
            self.state.decisions_closed = entry.seq
            match = entry.apprentice_match
            if not appended.created:  # joined before a crash: count what was joined then
                joined = records_pb2.JoinedEvent.FromString(appended.data)
                match = _apprentice_match(joined.decision)
            # Counted even when a crash came after the append: the counters are saved with decisions_closed.
            self._count(joined, fold, match)

    def _read(self) -> bool:
        while room := self._max_held - len(self._open):
            batch = self._log.read(Stream.DECISIONS, self._loop, self._decisions_read, min(room, _BATCH))
            if not batch:
                break
            for seq, data in batch:
                decision = records_pb2.DecisionRecord.FromString(data)
                window = Window.of(decision)
                self._open.append(_Open(seq, decision.event_id, window, _apprentice_match(decision)))
                self._windows[decision.event_id] = window
                if decision.event_id in self._unmatched:  # rewards that came before their decision
                    self._fold_for(decision.event_id, window)
            self._decisions_read = batch[-1][0]
        self._behind = len(self._open) >= self._max_held
        changed = False
        while batch := self._log.read(Stream.REWARDS, self._loop, self._rewards_read, _BATCH):
            for seq, data in batch:
                if seq in self._done:
                    continue
                reward = records_pb2.RewardRecord.FromString(data)
                held = HeldReward(seq, reward.timestamp, reward.kind, reward.value, reward.slot_id)
                self._hold(reward.event_id, held)
                if seq > self.state.rewards_counted:
                    if reward.kind == _KIND.KIND_ACTIVATION:
                        self.state.activations += 1
                    else:
                        self.state.rewards += 1
                    self.state.rewards_counted = seq
                    changed = True
            self._rewards_read = batch[-1][0]
            changed |= self._evict_over_cap()
            self._spill_over_cap()
        self._spill_over_cap()  # decisions read may have taken up waiting rewards
        return changed

    def _hold(self, event_id: str, reward: HeldReward) -> None:
        window = self._windows.get(event_id) or self._unread_window(event_id)
        if window is not None:  # its decision is open
            self._take(self._fold_for(event_id, window), window, reward)
        else:
            self._unmatched.setdefault(event_id, []).append(reward)
            self._unmatched_count += 1
            self._track(reward.seq)

    def _unread_window(self, event_id: str) -> Window | None:
        """The window of a decision logged but not read yet (None when there is none, or it is joined)."""
        if not self._behind:
            return None
        data = self._log.get(Stream.DECISIONS, self._loop, event_id)
        if data is None or self._log.get(Stream.JOINED, self._loop, event_id) is not None:
            return None
        return Window.of(records_pb2.DecisionRecord.FromString(data))

    def _fold_for(self, event_id: str, window: Window) -> _Fold:
        """The fold of an open decision's rewards (from memory, the store or new), with the rewards that waited for
        the decision folded in."""
        fold = self._folds.get(event_id)
        if fold is None:
            fold = self._folds[event_id] = self._load(event_id) or _Fold()
        waiting = self._unmatched.pop(event_id, None)
        if waiting is not None:
            self._unmatched_count -= len(waiting)
            self._buffered.difference_update(r.seq for r in waiting)
            for reward in waiting:
                self._take(fold, window, reward)
        return fold

    def _take(self, fold: _Fold, window: Window, reward: HeldReward) -> None:
        if reward.seq <= fold.last_seq:  # folded in before a restart, and read again
            self._done.add(reward.seq)
            return
        if not fold.seqs:
            self._track(reward.seq)
        fold.seqs.append(reward.seq)
        self._fold_seqs += 1
        fold.last_seq = reward.seq
        fold.add(window, reward)

    def _load(self, event_id: str) -> _Fold | None:
        """The fold spilled to the store for `event_id`, if any."""
        if not self.state.folds_spilled:
            return None
        raw = self._log.get_cursor(_fold_cursor(self._loop, event_id))
        return _Fold.decode(raw) if raw else None

    def _spill_over_cap(self) -> None:
        """Write the oldest folds to the store and forget them while more than `max_held` folds, or seqs folded into
        them, are in memory."""
        spilling = []
        folds, seqs = len(self._folds), self._fold_seqs
        for event_id, fold in self._folds.items():
            if folds <= self._max_held and seqs <= self._max_held:
                break
            spilling.append((event_id, fold))
            folds, seqs = folds - 1, seqs - len(fold.seqs)
        if spilling:
            for event_id, _ in spilling:
                del self._folds[event_id]
            self._spill(spilling)

    def _spill(self, spilling: list[tuple[str, _Fold]]) -> None:
        self.state.folds_spilled += sum(not fold.stored for _, fold in spilling)
        self.save()  # the count first: a restart then looks for every fold that may be in the store
        for event_id, fold in spilling:
            self._log.set_cursor(_fold_cursor(self._loop, event_id), fold.encode())
            fold.stored = True
            self._forget_seqs(fold)

    def _forget_seqs(self, fold: _Fold) -> None:
        """The fold's rewards are joined or in the store: done with."""
        if fold.seqs:
            self._buffered.discard(fold.seqs[0])
            for seq in fold.seqs:
                self._done.add(seq)
            self._fold_seqs -= len(fold.seqs)
            fold.seqs = []

    def _track(self, seq: int) -> None:
        self._buffered.add(seq)
        if len(self._buffered_heap) > 2 * len(self._buffered) + _BATCH:  # mostly seqs no longer held: rebuilt
            self._buffered_heap = sorted(self._buffered)  # a sorted list is a heap
        else:
            heapq.heappush(self._buffered_heap, seq)

    def _count(self, joined: records_pb2.JoinedEvent, fold: _Fold, apprentice_match: bool | None) -> None:
        s = self.state
        s.joined += 1
        s.defaulted += joined.defaulted
        s.reward_sum += joined.reward
        s.late += fold.late
        s.orphans += fold.unknown
        if apprentice_match is not None:
            s.apprentice_joined += 1
            s.apprentice_matches += apprentice_match

    def _evict_over_cap(self) -> bool:
        """Drop the oldest unmatched rewards beyond `max_unmatched` (a reward sent before its decision is among
        them when its decision was logged after this step read the decisions)."""
        if self._unmatched_count <= self._max_unmatched:
            return False
        if time.monotonic() - self._warned_over_cap >= _OVER_CAP_WARNING_SECONDS:
            self._warned_over_cap = time.monotonic()
            log.warning(
                "loop %s: more than %d rewards wait for a decision; dropping the oldest as orphans",
                self._loop,
                self._max_unmatched,
            )
        while self._unmatched_count > self._max_unmatched:
            event_id, rewards = self._unmatched.popitem(last=False)
            self._unmatched_count -= len(rewards)
            self._drop(event_id, rewards)
        return True

    def _drop_expired(self, cutoff: float) -> bool:
        """Drop unmatched rewards stamped before `cutoff` (oldest first: they were read in about time order)."""
        dropped = False
        while self._unmatched:
            event_id, rewards = next(iter(self._unmatched.items()))
            if rewards[0].timestamp >= cutoff:
                break
            del self._unmatched[event_id]
            keep = [r for r in rewards if r.timestamp >= cutoff]
            if keep:  # newer rewards of the same event id wait on, behind the others
                self._unmatched[event_id] = keep
            self._unmatched_count -= len(rewards) - len(keep)
            self._drop(event_id, [r for r in rewards if r.timestamp < cutoff])
            dropped = True
        return dropped

    def _drop(self, event_id: str, rewards: list[HeldReward]) -> None:
        """Count unmatched rewards as late or orphan (or not again: consumed by a join before a restart)."""
        found = self._log.get(Stream.JOINED, self._loop, event_id)
        joined = records_pb2.JoinedEvent.FromString(found) if found else None
        for r in rewards:
            if joined is None:
                self.state.orphans += 1
            elif not Window.of(joined.decision).contains(r.timestamp) or r.seq > _seen_through(joined):
                self.state.late += 1
            # else: consumed by a join before a restart, and read again; counted then
            self._done.add(r.seq)
            self._buffered.discard(r.seq)

    def save(self) -> None:
        """Save position and counters now (step() saves at most every SAVE_SECONDS)."""
        s = self.state
        heap = self._buffered_heap
        while heap and heap[0] not in self._buffered:
            heapq.heappop(heap)
        s.rewards_from = heap[0] - 1 if heap else self._rewards_read
        self._done.forget_through(s.rewards_from)
        s.rewards_dropped = self._done.ranges()
        self._log.set_cursor(_cursor(self._loop), json.dumps(asdict(s)).encode())
        self._last_save = time.monotonic()
        self._dirty = False
