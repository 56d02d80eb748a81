"""Outcomes into subject histories: a loop's joined events, followed from a saved position, put each contact's
outcome (its reward; ignored or clicked) into its subject's history, and record a contact Rank or Activate did
not (a crash between logging and recording it). It also counts what each contact rule did in the loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from nextbest.server.store import EventLog, Store, Stream, cursor_name
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.subjects.history import Contact, contact_of, set_outcome, with_outcome
from nextbest.v1 import admin_pb2, records_pb2

_BATCH = 1000


def _cursor(loop: str) -> str:
    return cursor_name(loop, "subjects")


@dataclass
class OutcomesState:
    """Where the loop's outcomes resume, and per rule how many candidates it removed and how often it was skipped."""

    seq: int = 0
    rules: dict[str, list[int]] = field(default_factory=dict)  # rule -> [suppressed, skipped]

    @classmethod
    def saved(cls, log: EventLog, loop: str) -> OutcomesState:
        raw = log.get_cursor(_cursor(loop))
        return cls(**json.loads(raw)) if raw else cls()

    def rule_counts(self) -> list[admin_pb2.RuleCount]:
        return [admin_pb2.RuleCount(rule=r, suppressed=s, skipped=k) for r, (s, k) in sorted(self.rules.items())]

    def count(self, decision: records_pb2.DecisionRecord) -> None:
        for s in decision.suppressed:
            self.rules.setdefault(s.rule, [0, 0])[0] += 1
        for rule in decision.skipped_rules:
            self.rules.setdefault(rule, [0, 0])[1] += 1


class SubjectOutcomes:
    """Follows one loop's joined events into subject histories (run by the trainer, after the joiner)."""

    def __init__(self, store: Store, loop: str, policy: PolicyCache, clock: Callable[[], float]) -> None:
        self._store = store
        self._loop = loop
        self._policy = policy
        self._clock = clock
        self.state = OutcomesState.saved(store.log, loop)

    def step(self) -> int:
        """Apply the next batch of joined events; how many there were."""
        batch = self._store.log.read(Stream.JOINED, self._loop, self.state.seq, _BATCH)
        if not batch:
            return 0
        now = self._clock()
        policy = self._policy.current()
        joined_contacts: dict[str, list[Contact]] = {}  # by subject, each with its outcome
        for _, data in batch:
            joined = records_pb2.JoinedEvent.FromString(data)
            d = joined.decision
            self.state.count(d)
            if not d.subject_id or (d.deferred and not joined.activated):
                continue
            expires = policy.expiry(d.config, d.timestamp)
            outcomes: list[tuple[str, int, records_pb2.JoinedEvent | records_pb2.SlotOutcome]] = [
                (slot.id, slot.candidates[slot.chosen_index], outcome)
                for slot, outcome in zip(d.slots, joined.slots, strict=True)
                if outcome.activated or not d.deferred
            ] or [("", d.chosen_index, joined)]
            for slot_id, chosen, outcome in outcomes:
                contact = contact_of(d.loop, d.event_id, d.actions[chosen], d.timestamp, expires, slot_id)
                if contact is not None:  # the outcome on the contact: the batch's events are not kept alive
                    joined_contacts.setdefault(d.subject_id, []).append(set_outcome(contact, outcome, joined.joined_at))
        self._store.subjects.update({s: partial(_with_outcomes, cs, now) for s, cs in joined_contacts.items()})
        self.state.seq = batch[-1][0]
        self._store.log.set_cursor(_cursor(self._loop), json.dumps(self.state.__dict__).encode())
        return len(batch)


def _with_outcomes(contacts: list[Contact], now: float, data: bytes | None) -> bytes | None:
    for contact in contacts:
        data = with_outcome(data, contact, now)
    return data
