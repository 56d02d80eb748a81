"""A subject's contact history: the contacts the store keeps of one customer across every loop, and what rules and
features ask of them.

A contact is a logged decision, not deferred (or activated), whose chosen action has a channel. Rank records it
as soon as the decision is logged; the joined event brings its outcome (a reward above 0 is a click, a contact
joined without one was ignored). Each contact carries its expiry; every contact written drops the expired ones and
keeps the newest MAX_CONTACTS, so a record stays bounded (an outcome changes its contact in place; the sweep
drops expired contacts of records no longer written).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nextbest.policies.featurize import ActionLike
from nextbest.v1 import records_pb2, types_pb2

DAY = 86400.0
WEEK, MONTH = 7 * DAY, 30 * DAY
MIN_HORIZON_SECONDS = 90 * DAY  # the least time a contact is kept (features look back 30 days)
MAX_CONTACTS = 1000  # per subject, the newest kept

Contact = records_pb2.Contact


# A candidate action with its id and channel, read from the message once per decision: rules and features ask for
# them, and each read of a message's field costs more than a tuple's (a plain tuple: a NamedTuple's constructor
# costs as much as the reads).
Candidate = tuple[types_pb2.Action, str, str]


def candidates_of(actions: Iterable[types_pb2.Action]) -> list[Candidate]:
    return [(a, a.id, a.channel) for a in actions]


def contact_of(
    loop: str, event_id: str, chosen: ActionLike, timestamp: float, expires: float, slot_id: str = ""
) -> Contact | None:
    """The contact a decision (or a slot of one) that chose `chosen` makes at `timestamp` (its own time, or its
    activation's), or None when the action has no channel."""
    if not chosen.channel:
        return None
    return Contact(
        loop=loop,
        event_id=event_id,
        action_id=chosen.id,
        channel=chosen.channel,
        timestamp=timestamp,
        expires=expires,
        slot_id=slot_id,
    )


def contacts(data: bytes | None, now: float) -> list[Contact]:
    """The unexpired contacts of a stored history, oldest first."""
    return read(data, now).kept


def _encoded(kept: Iterable[Contact]) -> bytes | None:
    record = records_pb2.SubjectHistory(contacts=sorted(kept, key=lambda c: c.timestamp)[-MAX_CONTACTS:])
    return record.SerializeToString() if record.contacts else None


def _find(contacts: Sequence[Contact], key: Contact) -> Contact | None:
    """The contact of the same loop, event id and slot as `key` (the last one)."""
    for c in reversed(contacts):  # the newest first: an update is most often about a recent contact
        if c.event_id == key.event_id and c.loop == key.loop and c.slot_id == key.slot_id:
            return c
    return None


@dataclass(slots=True)  # not frozen: Rank makes one, and a frozen dataclass costs three times as much to make
class Read:
    """A stored history as read at `now`: its record, and the unexpired contacts (oldest first, the record's own
    messages); what a write at the same `now` decodes again when the record has not changed since. Not changed
    once made."""

    data: bytes | None
    record: records_pb2.SubjectHistory
    kept: list[Contact]
    now: float

    @property
    def whole(self) -> bool:
        """Whether every stored contact is kept: then the stored bytes are the kept contacts, in order."""
        return len(self.kept) == len(self.record.contacts)

    def follows(self, contact: Contact) -> bool:
        """Whether `contact` may follow the kept contacts as they are stored: none expired, room for one more, and
        none later than it (a record's contacts are kept in order of time)."""
        kept = self.kept
        return self.whole and len(kept) < MAX_CONTACTS and (not kept or kept[-1].timestamp <= contact.timestamp)


def by_channel(kept: Iterable[Contact]) -> dict[str, list[Contact]]:
    """The contacts of each channel, in their order."""
    out: dict[str, list[Contact]] = {}
    for c in kept:
        channel = out.get(name := c.channel)
        if channel is None:
            out[name] = [c]
        else:
            channel.append(c)
    return out


def read(data: bytes | None, now: float) -> Read:
    return _read(data, records_pb2.SubjectHistory.FromString(data) if data else records_pb2.SubjectHistory(), now)


def _read(data: bytes | None, record: records_pb2.SubjectHistory, now: float) -> Read:
    return Read(data, record, [c for c in record.contacts if c.expires > now], now)


def _appended(data: bytes | None, contact: Contact) -> bytes:
    """The stored history `data` with `contact` after its contacts (a parsed repeated field keeps every entry)."""
    return (data or b"") + records_pb2.SubjectHistory(contacts=[contact]).SerializeToString()


def with_contact(data: bytes | None, contact: Contact, now: float, known: Read | None = None) -> bytes | None:
    """The history with `contact` in it (once: a contact is keyed by loop, event id and slot), the expired ones
    out; `known`: the history read before, decoded again only when it is not `data` as of `now`."""
    history = known if known is not None and known.now == now and known.data == data else read(data, now)
    # a stored contact's event id is in the record's bytes: a new one (a Rank's) is not, found without reading the
    # contacts
    if data and contact.event_id.encode() in data and _find(history.kept, contact) is not None:
        return (data or None) if history.whole else _encoded(history.kept)
    if history.follows(contact):
        return _appended(data, contact)
    return _encoded([*history.kept, contact])


def set_outcome(
    contact: Contact, outcome: records_pb2.JoinedEvent | records_pb2.SlotOutcome, joined_at: float
) -> Contact:
    """`contact` with the joined outcome (of the event, or of the contact's slot) on it: its reward, clicked when
    a reward above 0 arrived, and when it was joined."""
    contact.joined = True
    contact.reward = outcome.reward
    contact.clicked = not outcome.defaulted and outcome.reward > 0
    contact.joined_at = joined_at
    return contact


def with_outcome(data: bytes | None, contact: Contact, now: float) -> bytes | None:
    """The history with the outcome of `contact` (`set_outcome`) on its stored contact. A recorded contact is changed
    where it is stored and the record left otherwise as it was (its expired contacts leave it with the next contact
    written, or the sweep): no other contact is decoded. A contact Rank had not recorded is added, unless it has
    expired."""
    record = records_pb2.SubjectHistory.FromString(data) if data else records_pb2.SubjectHistory()
    found = _find(record.contacts, contact)
    if found is not None:
        found.joined = True
        found.reward = contact.reward
        found.clicked = contact.clicked
        found.joined_at = contact.joined_at
        return record.SerializeToString()
    history = _read(data, record, now)
    if contact.expires <= now:
        return (data or None) if history.whole else _encoded(history.kept)
    if history.follows(contact):
        return _appended(data, contact)
    return _encoded([*history.kept, contact])


def trimmed(data: bytes, now: float) -> bytes | None:
    """The history without its expired contacts (None when none is left)."""
    return _encoded(contacts(data, now))


# A channel's state at a summary's time: its newest contact's time, its contacts in the last 7 days and its ignored
# run (a plain tuple: a channel's is made at every Rank, and a NamedTuple's constructor costs three times as much)
ChannelState = tuple[float, int, int]


@dataclass
class Summary:
    """What the history features say of a subject at `now`: per channel (`ChannelState`) and per action (contacts in
    the last 7 days, clicks in the last 30; actions without any are left out)."""

    now: float
    contacts_7d: int = 0
    last: float = float("-inf")
    channels: dict[str, ChannelState] = field(default_factory=dict)
    shown_7d: dict[str, int] = field(default_factory=dict)
    clicked_30d: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, channels: Mapping[str, list[Contact]], now: float) -> Summary:
        """The summary at `now` of a history's contacts by channel (`by_channel`, each in order of time). Each channel
        is walked newest first (the ignored run counts back from the newest joined contact) and only as far as a
        feature needs: past 30 days, to the end of the ignored run."""
        summary = cls(now)
        states, shown, clicked = summary.channels, summary.shown_7d, summary.clicked_30d
        for name, kept in channels.items():
            contacts_7d = run = 0
            in_run = True
            for c in reversed(kept):
                age = now - c.timestamp
                if age < MONTH:
                    action = c.action_id
                    if age < WEEK:
                        contacts_7d += 1
                        shown[action] = shown.get(action, 0) + 1
                    if c.clicked:
                        clicked[action] = clicked.get(action, 0) + 1
                        in_run = False
                    elif in_run and c.joined:
                        run += 1
                elif not in_run:
                    break
                elif c.joined:
                    if c.clicked:
                        in_run = False
                    else:
                        run += 1
            last = kept[-1].timestamp  # the newest: a history is kept in order of time
            states[name] = (last, contacts_7d, run)
            summary.contacts_7d += contacts_7d
            if last > summary.last:
                summary.last = last
        return summary
