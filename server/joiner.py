"""The joiner: a left outer join of decisions with their rewards, by event id.

A decision's window is [t - wait, t + wait] around its timestamp t, where
`wait` is the reward_wait_seconds of the config logged with it: rewards (and
activations) stamped inside it count, so rewards that arrive before their
decision are joined too. When the window has closed (plus a small grace for
writes still committing), the rewards are aggregated as configured, or the
default reward is used, and the joined event is appended to the JOINED stream
in decision order, keyed by event id.

Which rewards join is decided by timestamps alone, so replaying the log after
a crash joins the same way; appends are idempotent, so a replay never
duplicates. The joiner's position and counters are saved in its cursor.
"""

from __future__ import annotations

import heapq
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from nextbest.server.config import Aggregation, Mode
from nextbest.server.store import Entry, EventLog, Stream
from nextbest.v1 import records_pb2

GRACE_SECONDS = 0.05
SAVE_SECONDS = 0.25
_BATCH = 1000
_KIND = records_pb2.RewardRecord


@dataclass
class JoinerState:
    """What the joiner saves: where to resume and what it has counted."""

    decisions_closed: int = 0  # every decision with seq <= this is joined
    rewards_from: int = 0  # rewards with seq > this may still be needed...
    rewards_dropped: list[int] = field(default_factory=list)  # ...except these, dropped and counted
    rewards_counted: int = 0  # rewards with seq <= this are counted in rewards/activations
    rewards: int = 0
    activations: int = 0
    joined: int = 0
    defaulted: int = 0
    orphans: int = 0
    late: int = 0
    reward_sum: float = 0.0
    apprentice_joined: int = 0
    apprentice_matches: int = 0


def aggregate(values: list[float], how: int) -> float:
    """Aggregate rewards given in arrival order."""
    if how == Aggregation.REWARD_AGGREGATION_SUM:
        return sum(values)
    if how == Aggregation.REWARD_AGGREGATION_AVERAGE:
        return sum(values) / len(values)
    if how == Aggregation.REWARD_AGGREGATION_MIN:
        return min(values)
    if how == Aggregation.REWARD_AGGREGATION_MAX:
        return max(values)
    return values[0]  # EARLIEST


def _in_window(decision: records_pb2.DecisionRecord, timestamp: float) -> bool:
    wait = decision.config.reward_wait_seconds
    return decision.timestamp - wait <= timestamp <= decision.timestamp + wait


def join(
    decision: records_pb2.DecisionRecord, rewards: list[records_pb2.RewardRecord], now: float
) -> records_pb2.JoinedEvent:
    """The joined event of `decision` given every reward record seen for its event id, without its `decision`
    field: `joined_data` puts the logged decision's bytes there."""
    inside = [r for r in rewards if _in_window(decision, r.timestamp)]
    values = [r.value for r in inside if r.kind == _KIND.KIND_REWARD]
    joined = records_pb2.JoinedEvent(
        reward_count=len(values),
        defaulted=not values,
        activated=any(r.kind == _KIND.KIND_ACTIVATION for r in inside),
        joined_at=now,
    )
    joined.reward = aggregate(values, decision.config.reward_aggregation) if values else decision.config.default_reward
    return joined


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def joined_data(decision_data: bytes, joined: records_pb2.JoinedEvent) -> bytes:
    """The serialized JoinedEvent of `joined` (from `join`) with the logged decision as is in field 1: the
    decision is neither copied nor serialized again (joining costs half as much)."""
    return b"\x0a" + _varint(len(decision_data)) + decision_data + joined.SerializeToString()


class Joiner:
    """Joins one loop's decisions and rewards; `step()` does the work that is due."""

    def __init__(self, log: EventLog, loop: str, clock: Callable[[], float]) -> None:
        self._log = log
        self._loop = loop
        self._clock = clock
        self._cursor = f"{loop}/joiner"
        saved = log.get_cursor(self._cursor)
        self.state = JoinerState(**json.loads(saved)) if saved else JoinerState()
        self._open: deque[tuple[int, records_pb2.DecisionRecord, bytes]] = deque()  # (seq, decision, its bytes)
        self._decisions_read = self.state.decisions_closed
        # event id -> [(seq, reward)] not yet consumed by a closed decision nor dropped
        self._rewards: dict[str, list[tuple[int, records_pb2.RewardRecord]]] = {}
        self._rewards_read = self.state.rewards_from
        self._dropped = set(self.state.rewards_dropped)
        self._buffered: set[int] = set()  # seqs in self._rewards
        self._buffered_heap: list[int] = []  # the same, lazily cleaned, for the oldest one
        self._last_save = 0.0
        self._dirty = False
        self._open_ids: set[str] = set()
        self._arrivals: deque[tuple[float, str]] = deque()  # (timestamp, event id) of buffered rewards

    @property
    def pending(self) -> int:
        """Decisions read whose window is still open."""
        return len(self._open)

    def step(self, reward_wait: float) -> int:
        """Read what is new, close ripe windows, drop expired unmatched rewards; return how many joined.

        `reward_wait` (the loop's current setting) bounds how long an
        unmatched reward is kept waiting for its decision.
        """
        changed = self._read()
        now = self._clock()
        closing: list[tuple[records_pb2.JoinedEvent, int]] = []
        for _, decision, data in self._open:
            if decision.timestamp + decision.config.reward_wait_seconds + GRACE_SECONDS > now:
                break
            records = [r for _, r in self._rewards.get(decision.event_id, [])]
            late = sum(not _in_window(decision, r.timestamp) for r in records)
            closing.append((join(decision, records, now), data, late))
        if closing:  # closed only once appended: when the append fails (a full store), the next step retries
            entries = [Entry(self._open[i][1].event_id, joined_data(data, j)) for i, (j, data, _) in enumerate(closing)]
            appended_all = self._log.append(Stream.JOINED, self._loop, entries)
            for appended, (joined, _, late) in zip(appended_all, closing, strict=True):
                seq, decision, _ = self._open.popleft()
                self._open_ids.discard(decision.event_id)
                self._buffered.difference_update(s for s, _ in self._rewards.pop(decision.event_id, []))
                self.state.decisions_closed = seq
                if not appended.created:  # joined before a crash: count what was joined then
                    joined = records_pb2.JoinedEvent.FromString(appended.data)
                    decision = joined.decision
                # Counted even when a crash came after the append: the counters are saved with decisions_closed.
                self._count(decision, joined, late)
        changed |= self._drop_expired(now - reward_wait - GRACE_SECONDS)
        self._dirty |= bool(closing) or changed
        if self._dirty and time.monotonic() - self._last_save >= SAVE_SECONDS:
            self.save()
        return len(closing)

    def _read(self) -> bool:
        changed = False
        while batch := self._log.read(Stream.DECISIONS, self._loop, self._decisions_read, _BATCH):
            for seq, data in batch:
                decision = records_pb2.DecisionRecord.FromString(data)
                self._open.append((seq, decision, data))
                self._open_ids.add(decision.event_id)
            self._decisions_read = batch[-1][0]
        while batch := self._log.read(Stream.REWARDS, self._loop, self._rewards_read, _BATCH):
            for seq, data in batch:
                if seq in self._dropped:
                    continue
                reward = records_pb2.RewardRecord.FromString(data)
                self._rewards.setdefault(reward.event_id, []).append((seq, reward))
                self._buffered.add(seq)
                heapq.heappush(self._buffered_heap, seq)
                self._arrivals.append((reward.timestamp, reward.event_id))
                if seq > self.state.rewards_counted:
                    if reward.kind == _KIND.KIND_ACTIVATION:
                        self.state.activations += 1
                    else:
                        self.state.rewards += 1
                    self.state.rewards_counted = seq
                    changed = True
            self._rewards_read = batch[-1][0]
        return changed

    def _count(self, decision: records_pb2.DecisionRecord, joined: records_pb2.JoinedEvent, late: int) -> None:
        s = self.state
        s.joined += 1
        s.defaulted += joined.defaulted
        s.reward_sum += joined.reward
        s.late += late
        if decision.config.learning_mode == Mode.LEARNING_MODE_APPRENTICE:
            s.apprentice_joined += 1
            s.apprentice_matches += decision.policy_top_index == decision.chosen_index

    def _drop_expired(self, cutoff: float) -> bool:
        """Drop unmatched rewards stamped before `cutoff` whose decision is not waiting."""
        dropped = False
        while self._arrivals and self._arrivals[0][0] < cutoff:
            _, event_id = self._arrivals.popleft()
            rewards = self._rewards.get(event_id)
            if rewards is None or event_id in self._open_ids:
                continue  # already consumed, or its decision's close will consume it
            gone = [(seq, r) for seq, r in rewards if r.timestamp < cutoff]
            found = self._log.get(Stream.JOINED, self._loop, event_id)
            decision = records_pb2.JoinedEvent.FromString(found).decision if found else None
            for seq, r in gone:
                if decision is None:
                    self.state.orphans += 1
                elif not _in_window(decision, r.timestamp):
                    self.state.late += 1
                # else: consumed by a join before a restart, and read again; counted then
                self._dropped.add(seq)
                self._buffered.discard(seq)
            keep = [(seq, r) for seq, r in rewards if r.timestamp >= cutoff]
            if keep:
                self._rewards[event_id] = keep
            else:
                del self._rewards[event_id]
            dropped = True
        return dropped

    def save(self) -> None:
        """Save position and counters now (step() saves at most every SAVE_SECONDS)."""
        s = self.state
        heap = self._buffered_heap
        while heap and heap[0] not in self._buffered:
            heapq.heappop(heap)
        s.rewards_from = heap[0] - 1 if heap else self._rewards_read
        self._dropped = {seq for seq in self._dropped if seq > s.rewards_from}
        s.rewards_dropped = sorted(self._dropped)
        self._log.set_cursor(self._cursor, json.dumps(asdict(s)).encode())
        self._last_save = time.monotonic()
        self._dirty = False
