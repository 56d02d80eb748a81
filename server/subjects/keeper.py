"""The serving path's side of subject histories: one read per Rank (rules and features), one write per contact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nextbest.policies.featurize import ActionLike, LineSizes, Namespace
from nextbest.server.errors import FailedPrecondition
from nextbest.server.store import SubjectChanges, SubjectStore
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.subjects.features import CONTEXT_NAMESPACE, Featured, context_features, featured
from nextbest.server.subjects.history import Read, Summary, by_channel, candidates_of, contact_of, read, with_contact
from nextbest.v1 import records_pb2, types_pb2


@dataclass
class Screened:
    """A decision's input once its subject's history has been applied."""

    context: dict[str, Namespace]  # what the policy sees
    candidates: Sequence[ActionLike]  # the request's actions, or the copies in `featured`
    featured: list[Featured] | None = None  # the candidates when they are copies with history features
    # the namespaces added to the request's context in the log (history features), if any
    added_context: dict[str, types_pb2.Features] | None = None
    suppressed: list[types_pb2.SuppressedAction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    history: Read | None = None  # the subject's history as read (for the write that records the contact)

    @property
    def candidate_data(self) -> list[bytes] | None:
        """The featured candidates' serializations (None: the candidates are the request's messages)."""
        return None if (f := self.featured) is None else [c.data for c in f]

    @property
    def candidate_lines(self) -> list[str] | None:
        """The featured candidates' VW lines."""
        return None if (f := self.featured) is None else [c.line for c in f]

    @property
    def candidate_sizes(self) -> list[LineSizes] | None:
        """The sizes of the featured candidates' VW lines."""
        return None if (f := self.featured) is None else [c.sizes for c in f]

    def messages(self) -> Sequence[types_pb2.Action]:
        """The candidates as messages."""
        return [c.action if isinstance(c, Featured) else c for c in self.candidates]


class SubjectKeeper:
    """Reads a subject's history to screen its candidates and featurize them; makes the change that records a
    contact."""

    def __init__(self, store: SubjectStore, policy: PolicyCache) -> None:
        self._store = store
        self._policy = policy

    def screen(
        self,
        subject: str,
        context: dict[str, Namespace],
        candidates: list[types_pb2.Action],
        config: types_pb2.LoopConfig,
        now: float,
    ) -> Screened:
        """Remove the candidates the contact policy forbids and add the history features (unless the loop turned
        them off); FailedPrecondition naming the rules when no candidate is left."""
        history = read(self._store.get(subject), now)
        channels = by_channel(history.kept)
        allowed, suppressed, skipped = self._policy.current().screen(
            history.kept, channels, candidates_of(candidates), context, now
        )
        if not allowed:
            rules = sorted({s.rule for s in suppressed})
            raise FailedPrecondition(
                f"actions: the contact policy forbids every candidate (rules {', '.join(rules)}); "
                "add a candidate without a channel (no contact) to be answered with it"
            )
        if config.subject_features == types_pb2.SUBJECT_FEATURES_OFF:
            return Screened(context, [action for action, _, _ in allowed], None, None, suppressed, skipped, history)
        summary = Summary.of(channels, now)
        own = context_features(summary)
        logged_features = types_pb2.Features()
        numeric = logged_features.numeric
        for name, value in own.numeric.items():  # item by item: a map given to the constructor costs twice as much
            numeric[name] = value
        copies = featured(summary, allowed)
        added = {CONTEXT_NAMESPACE: logged_features}
        return Screened({**context, CONTEXT_NAMESPACE: own}, copies, copies, added, suppressed, skipped, history)

    def contact(
        self,
        decision: records_pb2.DecisionRecord,
        chosen: ActionLike,
        config: types_pb2.LoopConfig,
        now: float,
        history: Read | None = None,
    ) -> SubjectChanges:
        """The change that records the contact a decision of a subject that chose `chosen` makes `now` (none when
        the action has no channel); `history`: the subject's history as the decision read it."""
        contact = contact_of(decision.loop, decision.event_id, chosen, now, self._policy.current().expiry(config, now))
        if contact is None:
            return {}
        return {decision.subject_id: lambda data: with_contact(data, contact, now, history)}

    def slot_contacts(
        self, decision: records_pb2.DecisionRecord, config: types_pb2.LoopConfig, now: float, only: str = ""
    ) -> SubjectChanges:
        """The change that records every filled slot (or the slot `only`) of a multi-slot decision that is a contact
        (none when no chosen action has a channel)."""
        expires = self._policy.current().expiry(config, now)
        slots = [s for s in decision.slots if not only or s.id == only]
        chosen = [(s.id, decision.actions[s.candidates[s.chosen_index]]) for s in slots]
        found = [contact_of(decision.loop, decision.event_id, a, now, expires, slot_id) for slot_id, a in chosen]
        kept = [c for c in found if c is not None]
        if not kept:
            return {}

        def change(data: bytes | None) -> bytes | None:
            for c in kept:
                data = with_contact(data, c, now)
            return data

        return {decision.subject_id: change}

    def update(self, changes: SubjectChanges) -> None:
        """Write changes on their own (a decision's contact is written with the decision)."""
        self._store.update(changes)
